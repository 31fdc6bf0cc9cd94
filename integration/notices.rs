//! End-to-end tests of console notices (issue 16, item 4): what logd tells subscribers of its
//! own (`[logd: …]` lines: the greeting, the guest's comings and goings, the write lock's
//! moves), the marks `--mark-log` writes in the log, `--no-notices`, and a replay that starts
//! at a line boundary; and what a telnet BREAK gets (issue 16, item 5). The real logd, QEMU
//! booting the test guest (killed and restarted where the guest must come and go), or the test
//! itself as the guest where it must see every byte the guest gets; real `nc` and `telnet`
//! subscribers, and raw TCP clients.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const BANNER: &[u8] = b"LOGD-GUEST READY\r\n";
const T: Duration = Duration::from_secs(60);

/// A daemon and the test guest's image, or None (skipped) without QEMU, nasm, nc or telnet.
fn setup() -> Option<(Daemon, std::path::PathBuf)> {
    for tool in ["qemu-system-x86_64", "nc", "telnet"] {
        require_tool(tool)?;
    }
    let d = Daemon::start();
    let img = build_guest(d.dir.path())?;
    Some((d, img))
}

/// `logdctl console add` of console `serial0` of domain `vm`, its guest listening at
/// `NAME.sock`, its log `NAME.log`, on a TCP port; returns the port.
fn add(d: &Daemon, name: &str, extra: &[&str]) -> u16 {
    let mut a = vec!["--tcp", "0"];
    a.extend_from_slice(extra);
    port_of(&add_serial0(d, "vm", name, &a))
}

fn nc(port: u16) -> Proc {
    Proc::spawn(
        "nc",
        Command::new("nc").args(["127.0.0.1", &port.to_string()]),
    )
}

fn telnet(port: u16) -> Proc {
    Proc::spawn(
        "telnet",
        Command::new("telnet").args(["127.0.0.1", &port.to_string()]),
    )
}

/// The console's subscribers in `ps --json`: (id, peer), in write-lock order.
fn subscribers(d: &Daemon) -> Vec<(u64, String)> {
    let v: serde_json::Value = serde_json::from_slice(&d.ctl_ok(&["ps", "--json"])).unwrap();
    let domain = v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"]["name"] == "vm")
        .expect("the domain in ps --json")
        .clone();
    let stream = domain["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"]["console"]["name"] == "serial0")
        .expect("the console")
        .clone();
    stream["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_u64().unwrap(),
                s["peer"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The log's bytes, once the guest side is drained.
fn log_of(d: &Daemon, rel: &str) -> Vec<u8> {
    d.ctl_ok(&["position", "--log", rel]);
    std::fs::read(d.log(rel)).unwrap()
}

/// An `nc` and a `telnet` subscriber are greeted with their role and the lock's holder, told
/// when the guest goes and comes back, and when the lock moves; none of it is in the log.
#[test]
fn guest_notices_reach_nc_and_telnet_and_not_the_log() {
    let Some((d, img)) = setup() else { return };
    let port = add(&d, "n", &["--tcp-write"]);
    let q = qemu_on(&d, &img, "n");
    wait_logged(&d, "n.log", BANNER);

    let holder = nc(port);
    holder.wait_for(
        b"\r\n[logd: console vm/serial0; you are read-write and hold the write lock; the guest \
          is connected]\r\n",
        T,
    );
    let t = telnet(port);
    // Connected (greeted) before the next one starts: the order of the subscribers, and so
    // who is next in line for the lock, is the order they connected in, not the order their
    // processes were started in.
    t.wait_for(
        b"[logd: console vm/serial0; you are read-write; the write lock is held by",
        T,
    );
    let other = nc(port);
    let subs = wait_for(T, "three subscribers", || {
        let s = subscribers(&d);
        (s.len() == 3).then_some(s)
    });
    let (hid, hpeer) = &subs[0];
    let held_by = format!("the write lock is held by {hpeer} (subscriber {hid})");
    // telnet prints the line as it came (CR LF), after its own "Trying …" lines.
    t.wait_for(
        format!(
            "[logd: console vm/serial0; you are read-write; {held_by}; the guest is connected]"
        )
        .as_bytes(),
        T,
    );
    other.wait_for(format!("{held_by}; the guest is connected]").as_bytes(), T);

    drop(q); // SIGKILL
    for p in [&holder, &t, &other] {
        // (telnet prints CR LF its own way: the lines are matched without it.)
        p.wait_for(b"[logd: guest disconnected]", T);
    }
    let _q2 = qemu_on(&d, &img, "n");
    for p in [&holder, &t, &other] {
        p.wait_for(b"[logd: guest connected]", T);
        wait_for(T, "the second banner", || {
            (p.count(b"LOGD-GUEST READY") == 2).then_some(())
        });
        // Told once each.
        for what in [
            &b"[logd: guest disconnected]"[..],
            b"[logd: guest connected]",
        ] {
            assert_eq!(p.count(what), 1, "{}", p.name);
        }
    }

    // The holder leaves: the telnet client (next in line) holds the lock, the other is told.
    let (tid, tpeer) = subs[1].clone();
    drop(holder);
    t.wait_for(b"[logd: you now hold the write lock]", T);
    other.wait_for(
        format!("[logd: the write lock is now held by {tpeer} (subscriber {tid})]").as_bytes(),
        T,
    );

    // The log holds the guest's output only.
    assert_eq!(log_of(&d, "n.log"), [BANNER, BANNER].concat());
}

/// With `--mark-log`, the guest's comings and goings are lines of their own in the log; a
/// read-only subscriber that joined before any guest was told so, and that nobody holds the
/// lock.
#[test]
fn mark_log_marks_the_guest_in_the_log() {
    let Some((d, img)) = setup() else { return };
    let port = add(&d, "m", &["--mark-log"]);
    let watcher = nc(port);
    watcher.wait_for(
        b"\r\n[logd: console vm/serial0; you are read-only; nobody holds the write lock; the \
          guest is not connected]\r\n",
        T,
    );
    let q = qemu_on(&d, &img, "m");
    wait_logged(&d, "m.log", BANNER);
    drop(q);
    watcher.wait_for(b"[logd: guest disconnected]", T);
    let _q2 = qemu_on(&d, &img, "m");
    wait_for(T, "the second banner in the log", || {
        (count(&log_of(&d, "m.log"), BANNER) == 2).then_some(())
    });
    let log = String::from_utf8(log_of(&d, "m.log")).unwrap();
    let lines: Vec<&str> = log.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 5, "{log:?}");
    for (i, what) in [(0, "connected"), (2, "disconnected"), (3, "connected")] {
        let l = lines[i];
        let stamp = l
            .strip_prefix(&format!("[-- logd: guest {what} "))
            .and_then(|r| r.strip_suffix(" --]\r\n"))
            .unwrap_or_else(|| panic!("line {i}: {l:?}"));
        // 2026-12-06T13:40:40.123Z
        assert_eq!(stamp.len(), 24, "{stamp}");
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "{stamp}"
        );
    }
    assert_eq!(
        (lines[1], lines[4]),
        ("LOGD-GUEST READY\r\n", "LOGD-GUEST READY\r\n")
    );
    // The replay ring has none of it: a new subscriber's replay is the guest's output.
    let late = nc(port);
    late.wait_for(BANNER, T);
    wait_for(T, "the replay", || (late.count(BANNER) == 2).then_some(()));
    assert!(!contains(&late.output(), b"[--"), "a mark in the replay");
}

/// With `--no-notices`, an `nc` subscriber's stream is the console's output byte for byte,
/// across the guest's going and coming back.
#[test]
fn without_notices_an_nc_subscriber_gets_the_output_byte_for_byte() {
    let Some((d, img)) = setup() else { return };
    let port = add(&d, "x", &["--no-notices", "--tcp-write"]);
    let q = qemu_on(&d, &img, "x");
    wait_logged(&d, "x.log", BANNER);
    let mut sub = nc(port);
    sub.wait_for(BANNER, T);
    drop(q);
    wait_for(T, "the guest to be gone", || {
        let l: serde_json::Value =
            serde_json::from_slice(&d.ctl_ok(&["console", "list", "--json"])).unwrap();
        (l[0]["guest_connected"] == false).then_some(())
    });
    let _q2 = qemu_on(&d, &img, "x");
    wait_for(T, "the second banner", || {
        (sub.count(BANNER) == 2).then_some(())
    });
    sub.send(b"typed\n");
    sub.wait_for(b"TYPED\n", T);
    assert_eq!(sub.output(), [BANNER, BANNER, b"TYPED\n"].concat());
    assert_eq!(log_of(&d, "x.log"), sub.output());
}

/// A replay ring that dropped the start of a line is replayed from its first newline on: the
/// first line a new subscriber sees is whole.
#[test]
fn the_replay_starts_at_a_line_boundary() {
    let Some((d, img)) = setup() else { return };
    // 20 bytes: the banner (18) and the echo of "hello\n" (6) leave "-GUEST READY\r\nHELLO\n".
    let port = add(&d, "r", &["--replay", "20", "--tcp-write"]);
    let _q = qemu_on(&d, &img, "r");
    wait_logged(&d, "r.log", BANNER);
    let mut typist = nc(port);
    typist.wait_for(BANNER, T);
    typist.send(b"hello\n");
    typist.wait_for(b"HELLO\n", T);
    let late = nc(port);
    late.wait_for(b"HELLO\n", T);
    // The greeting, then the replay, whole: nothing of the banner's line.
    let (texts, stream) = split_notices(&late.output());
    assert_eq!(stream, b"HELLO\n", "{texts:?}");
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].starts_with("console vm/serial0; "), "{texts:?}");
}

/// Reads from `s` into `got` until `what` is in it (60 s at most).
fn read_until(s: &mut std::net::TcpStream, got: &mut Vec<u8>, what: &[u8]) {
    use std::io::Read;
    let deadline = std::time::Instant::now() + T;
    let mut buf = [0u8; 4096];
    while !contains(got, what) {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {:?} in {:?}",
            String::from_utf8_lossy(what),
            String::from_utf8_lossy(got)
        );
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before {what:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// A telnet BREAK (IAC BRK) from the write lock's holder is not passed to the guest, not even
/// as a stray byte: the holder is told why, and logd logs it. One from a subscriber that may
/// not type is discarded like its other input. This test is the guest, on the guest socket, so
/// it sees every byte that reaches the guest; raw TCP clients send the telnet commands.
#[test]
fn a_telnet_break_is_told_not_passed_to_the_guest() {
    use std::io::{Read, Write};
    const IAC: u8 = 255;
    const BRK: u8 = 243;
    let d = Daemon::start();
    let port = add(&d, "b", &["--telnet", "--tcp-write"]);
    let mut guest = std::os::unix::net::UnixStream::connect(d.log("b.sock")).unwrap();
    guest.set_read_timeout(Some(T)).unwrap();
    guest.write_all(BANNER).unwrap();
    wait_logged(&d, "b.log", BANNER);

    let mut holder = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    holder.set_read_timeout(Some(T)).unwrap();
    let mut held = Vec::new();
    read_until(&mut holder, &mut held, b"hold the write lock");
    let mut spy = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    spy.set_read_timeout(Some(T)).unwrap();
    let mut spied = Vec::new();
    read_until(&mut spy, &mut spied, b"the write lock is held by");

    // The holder: "a", BREAK, "b". The guest gets "ab" and nothing between.
    holder.write_all(&[b'a', IAC, BRK, b'b']).unwrap();
    let mut got = [0u8; 2];
    guest.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ab", "a BREAK left a byte in the guest's input");
    read_until(
        &mut holder,
        &mut held,
        b"[logd: BREAK cannot reach this guest: its chardev carries bytes only; see CONSOLES.md \
          \"BREAK\"]\r\n",
    );
    wait_for(T, "logd to log the BREAK", || {
        let e = d.stderr();
        (contains(e.as_bytes(), b"telnet BREAK not passed to the guest")
            && contains(e.as_bytes(), b"breaks=1"))
        .then_some(())
    });

    // The other subscriber's BREAK is discarded input: it is told so, the holder is not told
    // of it, and the guest's next byte is the holder's.
    spy.write_all(&[IAC, BRK]).unwrap();
    read_until(&mut spy, &mut spied, b"your input is discarded");
    assert!(
        !contains(&spied, b"BREAK cannot reach"),
        "a subscriber that may not type was told about the guest's chardev"
    );
    holder.write_all(b"c").unwrap();
    let mut got = [0u8; 1];
    guest.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"c", "the other subscriber's BREAK reached the guest");
    assert_eq!(
        count(
            d.stderr().as_bytes(),
            b"telnet BREAK not passed to the guest"
        ),
        1,
        "the discarded BREAK was logged as the holder's"
    );
    assert_eq!(count(&held, b"BREAK cannot reach"), 1);
    // The log is the guest's output only.
    assert_eq!(log_of(&d, "b.log"), BANNER);
}

/// The real `telnet`'s `send brk` (its escape character, then the command): the holder is told,
/// and the guest gets the keys around it and nothing else.
#[test]
fn telnet_send_brk_is_told_to_the_holder() {
    use std::io::{Read, Write};
    if require_tool("telnet").is_none() {
        return;
    }
    let d = Daemon::start();
    let port = add(&d, "t", &["--telnet", "--tcp-write"]);
    let mut guest = std::os::unix::net::UnixStream::connect(d.log("t.sock")).unwrap();
    guest.set_read_timeout(Some(T)).unwrap();
    guest.write_all(BANNER).unwrap();
    wait_logged(&d, "t.log", BANNER);
    let mut t = telnet(port);
    t.wait_for(b"hold the write lock", T);
    // "a", then Ctrl-] (telnet's escape) and its command, which sends IAC BRK.
    t.send(b"a\x1dsend brk\n");
    t.wait_for(b"[logd: BREAK cannot reach this guest", T);
    t.send(b"z");
    let mut got = [0u8; 2];
    guest.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"az", "the BREAK left a byte in the guest's input");
}
