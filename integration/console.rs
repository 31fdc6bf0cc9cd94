//! End-to-end tests of consoles (issue #3): the real logd, real QEMU booting the test guest, real
//! `nc` and `telnet` subscribers, and raw TCP clients where a test must see the bytes on the wire.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;

const BANNER: &str = "LOGD-GUEST READY\r\n";

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

/// Everything a console test needs, or None (skipped) without QEMU, nasm, nc or telnet.
struct Setup {
    d: Daemon,
    img: PathBuf,
}

fn setup(config: &str) -> Option<Setup> {
    for tool in ["qemu-system-x86_64", "nc", "telnet"] {
        require_tool(tool)?;
    }
    let d = Daemon::with_config(config);
    let img = build_guest(d.dir.path())?;
    Some(Setup { d, img })
}

impl Setup {
    /// `logdctl console add ...`; returns the TCP port.
    fn add(&self, args: &[&str]) -> u16 {
        self.add_named("serial0", args)
    }

    /// `logdctl console add ...` for a console of domain vm; returns the TCP port. These tests
    /// type over plain TCP, so the console opts in (`--tcp-write`; `roles.rs` tests the
    /// default, read-only).
    fn add_named(&self, name: &str, args: &[&str]) -> u16 {
        let mut a = vec![
            "console",
            "add",
            "--domain",
            "vm",
            "--name",
            name,
            "--tcp",
            "0",
            "--tcp-write",
        ];
        a.extend_from_slice(args);
        port_of(&self.d.ctl_ok(&a))
    }

    fn sock(&self, name: &str) -> PathBuf {
        self.d.log(name)
    }

    /// QEMU connecting to the console's guest socket `sock` (listen mode), reconnecting.
    fn qemu_listen(&self, sock: &str) -> Proc {
        qemu(
            &self.img,
            &format!(
                "socket,id=s0,path={},server=off,reconnect=1",
                self.sock(sock).display()
            ),
        )
    }

    /// The console log's bytes (backups first), after draining the guest side.
    fn log(&self, rel: &str) -> Vec<u8> {
        self.d.ctl_ok(&["position", "--log", rel]);
        read_rotated(&self.d.log(rel), 10)
    }

    fn wait_log(&self, rel: &str, what: &[u8], n: usize, limit: Duration) {
        wait_for(
            limit,
            &format!("{n}× {:?} in {rel}", String::from_utf8_lossy(what)),
            || {
                // The log may not exist yet (the console is being added).
                if !self.d.ctl_run(&["position", "--log", rel]).status.success() {
                    return None;
                }
                (count(&read_rotated(&self.d.log(rel), 10), what) >= n).then_some(())
            },
        );
    }

    fn info(&self) -> serde_json::Value {
        let out = self.d.ctl_ok(&["console", "list", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        v[0].clone()
    }
}

const T: Duration = Duration::from_secs(60);

/// Acceptance 1 (listen mode): three subscribers (nc, nc, telnet) see the banner by replay,
/// then the same live bytes; the writer's keys come back upper-cased; a read-only subscriber's
/// keys never reach the guest.
#[test]
fn listen_mode_fans_out_to_three_subscribers() {
    let Some(s) = setup("") else { return };
    let port = s.add(&["--guest-listen", "vm/s0.sock", "--log", "vm/s0.log"]);
    let sock = s.sock("vm/s0.sock");
    let _q = qemu(
        &s.img,
        &format!(
            "socket,id=s0,path={},server=off,reconnect=1",
            sock.display()
        ),
    );
    s.wait_log("vm/s0.log", BANNER.as_bytes(), 1, T);

    let mut w = nc(port);
    w.wait_for(BANNER.as_bytes(), T);
    let mut r = nc(port);
    r.wait_for(BANNER.as_bytes(), T);
    // The telnet client, facing a raw console, prints CR LF as a newline.
    let t = telnet(port);
    t.wait_for(b"LOGD-GUEST READY", T);

    w.send(b"typed by the writer\n");
    for p in [&w, &r, &t] {
        p.wait_for(b"TYPED BY THE WRITER\n", T);
    }
    r.send(b"intruder\n");
    r.wait_for(b"your input is discarded", T); // told once
    w.send(b"after\n");
    for p in [&w, &r, &t] {
        p.wait_for(b"AFTER\n", T);
    }
    let log = s.log("vm/s0.log");
    assert!(
        !contains(&log, b"INTRUDER"),
        "a read-only subscriber's input reached the guest"
    );
    assert_eq!(log, b"LOGD-GUEST READY\r\nTYPED BY THE WRITER\nAFTER\n");
    // Every subscriber saw the same console bytes, once.
    for p in [&w, &r, &t] {
        assert_eq!(p.count(b"LOGD-GUEST READY"), 1, "{}", p.name);
        assert_eq!(p.count(b"TYPED BY THE WRITER\n"), 1, "{}", p.name);
    }
    assert_eq!(s.info()["subscribers"], 3);
}

/// Acceptance 1 (connect mode): logd connects to QEMU's server socket, retrying while QEMU
/// starts; and the fd mode: `logdctl console add --guest-fd -- qemu ... fd=3`.
#[test]
fn connect_mode_and_fd_mode_reach_the_guest() {
    let Some(s) = setup("") else { return };
    // Each failed try to reach the guest is a trace line.
    s.d.ctl_ok(&["log-level", "logd=debug,logd::console=trace"]);
    let sock = s.d.log("qemu-s0.sock");
    let port = s.add(&["--guest-connect", sock.to_str().unwrap(), "--log", "c.log"]);
    // QEMU comes up once logd has found no guest and tried again; it waits for logd.
    wait_for(T, "logd to retry the guest's socket", || {
        (count(s.d.stderr().as_bytes(), b"guest not there yet") >= 2).then_some(())
    });
    let _q = qemu(
        &s.img,
        &format!("socket,id=s0,path={},server=on,wait=on", sock.display()),
    );
    s.wait_log("c.log", BANNER.as_bytes(), 1, T);
    let mut w = nc(port);
    w.wait_for(BANNER.as_bytes(), T);
    w.send(b"connect mode\n");
    w.wait_for(b"CONNECT MODE\n", T);

    // fd mode: logdctl hands the socketpair's end to QEMU as fd 3.
    let qemu_cmd = qemu_args(&s.img, Some("socket,id=s0,fd=3"));
    let mut args: Vec<String> = [
        "console",
        "add",
        "--domain",
        "vmfd",
        "--name",
        "serial0",
        "--tcp",
        "0",
        "--tcp-write",
        "--guest-fd",
        "--log",
        "fd.log",
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(qemu_cmd);
    let mut fdq = Proc::spawn("logdctl+qemu", s.d.ctl().args(&args));
    s.wait_log("fd.log", BANNER.as_bytes(), 1, T);
    let fd_port = port_of(&fdq.output());
    let mut w2 = nc(fd_port);
    w2.wait_for(BANNER.as_bytes(), T);
    w2.send(b"fd mode\n");
    w2.wait_for(b"FD MODE\n", T);
    fdq.send(b"");
}

/// Acceptance 4: when the writer leaves, the lock passes to the next subscriber; what the
/// writer typed just before leaving still reaches the guest.
#[test]
fn the_write_lock_passes_on_and_last_input_is_kept() {
    let Some(s) = setup("") else { return };
    let port = s.add(&["--guest-listen", "s.sock", "--log", "s.log"]);
    let _q = s.qemu_listen("s.sock");
    s.wait_log("s.log", BANNER.as_bytes(), 1, T);
    // The writer types and vanishes at once (a raw socket, closed right after the write).
    let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut second = nc(port);
    second.wait_for(BANNER.as_bytes(), T);
    first.write_all(b"last words\n").unwrap();
    drop(first);
    s.wait_log("s.log", b"LAST WORDS\n", 1, T);
    second.wait_for(b"you now hold the write lock", T);
    second.send(b"new writer\n");
    s.wait_log("s.log", b"NEW WRITER\n", 1, T);
    second.wait_for(b"NEW WRITER\n", T);
}

/// Acceptance 5: telnet mode. The guest's 0x00..0xFF dump reaches a telnet client intact (0xFF
/// doubled on the wire) and the log (single); negotiation reaches neither the log nor the guest.
#[test]
fn telnet_mode_escapes_0xff_and_keeps_negotiation_out() {
    let Some(s) = setup("") else { return };
    let port = s.add(&["--guest-listen", "t.sock", "--log", "t.log", "--telnet"]);
    let _q = s.qemu_listen("t.sock");
    s.wait_log("t.log", BANNER.as_bytes(), 1, T);

    // A raw client sees the wire: the greeting, then the banner by replay.
    let mut wire = TcpStream::connect(("127.0.0.1", port)).unwrap();
    wire.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut got = Vec::new();
    let greeting = [255, 251, 1, 255, 251, 3, 255, 251, 0, 255, 253, 0];
    read_until(&mut wire, &mut got, BANNER.as_bytes());
    assert!(got.starts_with(&greeting), "{got:?}");
    // The wire client answers like a telnet client would, then asks for the dump; the real
    // telnet client watches.
    let t = telnet(port);
    t.wait_for(BANNER.as_bytes(), T);
    wire.write_all(&[
        255, 253, 1, 255, 253, 3, 255, 251, 0, 255, 251, 31, 255, 250, 31, 0, 80, 0, 24, 255, 240,
    ])
    .unwrap();
    wire.write_all(b"x\x04").unwrap();
    read_until(&mut wire, &mut got, b"DUMP DONE\r\n");
    let all: Vec<u8> = (0..=255u8).collect();
    let mut escaped: Vec<u8> = (0..=254u8).collect();
    escaped.extend_from_slice(&[255, 255]);
    assert!(contains(&got, &escaped), "0xFF is not doubled on the wire");
    t.wait_for(b"DUMP DONE\r\n", T);
    assert!(
        contains(&t.output(), &all[1..]),
        "the telnet client did not get 0x01..0xFF intact"
    );
    let log = s.log("t.log");
    let mut want = BANNER.as_bytes().to_vec();
    want.push(b'X');
    want.extend_from_slice(&all);
    want.extend_from_slice(b"\r\nDUMP DONE\r\n");
    assert_eq!(
        log, want,
        "the log holds the guest's bytes, single 0xFF, and no negotiation"
    );
}

fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, what: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 65536];
    while !contains(got, what) {
        assert!(Instant::now() < deadline, "timed out waiting for {what:?}");
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before {what:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Acceptance 6: QEMU killed and restarted: subscribers stay, see the new banner, and the log
/// holds both boots in order.
#[test]
fn a_restarted_guest_finds_its_subscribers_still_there() {
    let Some(s) = setup("") else { return };
    let port = s.add(&["--guest-listen", "r.sock", "--log", "r.log"]);
    let chardev = format!(
        "socket,id=s0,path={},server=off,reconnect=1",
        s.sock("r.sock").display()
    );
    let q = qemu(&s.img, &chardev);
    s.wait_log("r.log", BANNER.as_bytes(), 1, T);
    let mut w = nc(port);
    w.wait_for(BANNER.as_bytes(), T);
    w.send(b"first boot\n");
    w.wait_for(b"FIRST BOOT\n", T);
    drop(q); // SIGKILL
    wait_for(T, "the guest side to be down", || {
        (s.info()["guest_connected"] == false).then_some(())
    });
    let _q2 = qemu(&s.img, &chardev);
    wait_for(T, "the second banner", || {
        (w.count(BANNER.as_bytes()) == 2).then_some(())
    });
    w.send(b"second boot\n");
    w.wait_for(b"SECOND BOOT\n", T);
    let log = s.log("r.log");
    assert_eq!(
        log,
        b"LOGD-GUEST READY\r\nFIRST BOOT\nLOGD-GUEST READY\r\nSECOND BOOT\n".to_vec()
    );
    assert_eq!(s.info()["subscribers"], 1);
}

/// Acceptance 7: the 33rd subscriber is refused with a message; the others go on.
#[test]
fn the_33rd_subscriber_is_refused() {
    let Some(s) = setup("") else { return };
    let port = s.add(&["--guest-listen", "m.sock", "--log", "m.log"]);
    let _q = s.qemu_listen("m.sock");
    s.wait_log("m.log", BANNER.as_bytes(), 1, T);
    let mut subs: Vec<TcpStream> = Vec::new();
    for _ in 0..32 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut got = Vec::new();
        read_until(&mut c, &mut got, BANNER.as_bytes());
        subs.push(c);
    }
    let mut extra = TcpStream::connect(("127.0.0.1", port)).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut refusal = Vec::new();
    extra.read_to_end(&mut refusal).unwrap();
    let text = String::from_utf8_lossy(&refusal);
    assert!(text.contains("full") && text.contains("32"), "{text:?}");
    // The others still work: the writer types, the last one sees the echo.
    subs[0].write_all(b"still here\n").unwrap();
    let mut got = Vec::new();
    read_until(&mut subs[31], &mut got, b"STILL HERE\n");
    assert_eq!(s.info()["subscribers"], 32);
}

/// A subscriber that connects with a tiny receive buffer and never reads.
fn stalled(port: u16) -> TcpStream {
    use nix::sys::socket::{
        connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    setsockopt(&fd, sockopt::RcvBuf, &4096).unwrap();
    let addr = SockaddrIn::new(127, 0, 0, 1, port);
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).unwrap();
    TcpStream::from(fd)
}

fn wait_count(got: &Arc<Mutex<Vec<u8>>>, what: &[u8], n: usize, limit: Duration) -> Duration {
    let start = Instant::now();
    wait_for(
        limit,
        &format!("{n}× {:?}", String::from_utf8_lossy(what)),
        || (count(&got.lock().unwrap(), what) >= n).then_some(()),
    );
    start.elapsed()
}

/// Acceptances 2 and 3: a 6.4 MB burst with max_size 256 KiB leaves rotated files holding exactly
/// the suffix of the guest's output; a subscriber that never reads does not slow the guest: it is
/// cut off and counted once it is `queue_limit` (1 MiB) behind, while the guest is still in the
/// middle of its burst, and the log and the other subscriber get every byte. (Had logd waited
/// for it, the burst would never end.) Once it reads again it gets what was in flight, then why
/// it was cut off and how many bytes it missed, then EOF. (`--no-notices`: the reader's stream
/// is compared byte for byte.)
#[test]
fn bursts_rotate_exactly_and_a_stalled_subscriber_costs_the_guest_nothing() {
    let _heavy = cpu_heavy();
    let Some(s) = setup("max_size = \"256 KiB\"\nmax_backups = 3\n") else {
        return;
    };
    let port = s.add(&["--guest-listen", "b.sock", "--log", "b.log", "--no-notices"]);
    let _q = s.qemu_listen("b.sock");
    s.wait_log("b.log", BANNER.as_bytes(), 1, T);
    let (mut writer, got) = tcp_reader(port);
    wait_count(&got, BANNER.as_bytes(), 1, T);
    let limit = Duration::from_secs(300);

    let stuck = stalled(port);
    wait_for(T, "the stalled subscriber to join", || {
        (s.info()["subscribers"] == 2).then_some(())
    });
    writer.write_all(b"\x02").unwrap();
    wait_for(limit, "the stalled subscriber to be cut off", || {
        (s.info()["slow_disconnects"] == 1).then_some(())
    });
    // It reads now: what logd had sent, then its last words, then EOF.
    let (_stuck, stuck_got) = tcp_reader_of(stuck);
    assert_eq!(
        count(&got.lock().unwrap(), b"BURST DONE\r\n"),
        0,
        "the stalled subscriber was cut off only after the burst: it held the guest back"
    );
    wait_count(&got, b"BURST DONE\r\n", 1, limit);

    // The stalled subscriber was cut off and counted; the other one got every byte.
    let info = s.info();
    assert_eq!(info["slow_disconnects"], 1, "{info}");
    assert_eq!(info["subscribers"], 1, "{info}");
    let mut stream = BANNER.as_bytes().to_vec();
    stream.extend_from_slice(&burst());
    assert!(
        *got.lock().unwrap() == stream,
        "the reading subscriber missed or doubled bytes"
    );
    wait_count(
        &stuck_got,
        b" bytes queued for you were not sent]\r\n",
        1,
        T,
    );
    let (words, seen) = split_notices(&stuck_got.lock().unwrap());
    let [words] = &words[..] else {
        panic!("{words:?}")
    };
    let missed: usize = words
        .strip_prefix("disconnected: you fell more than 1048576 bytes behind the console; ")
        .and_then(|w| w.strip_suffix(" bytes queued for you were not sent"))
        .unwrap_or_else(|| panic!("{words:?}"))
        .parse()
        .unwrap();
    // What it got is the output's start; what it missed is more than its limit, and no more
    // than the rest.
    assert!(
        stream.starts_with(&seen),
        "the stalled one's bytes are not the output's start"
    );
    assert!(
        missed > 1 << 20 && seen.len() + missed <= stream.len(),
        "got {}, missed {missed}",
        seen.len()
    );

    // The log: exactly the suffix of the guest's output, line by line.
    let log = s.log("b.log");
    assert!(
        log.len() > 3 * 256 * 1024 && log.len() <= 4 * 256 * 1024,
        "{} bytes kept",
        log.len()
    );
    assert!(
        stream.ends_with(&log),
        "the rotated files are not the exact suffix of the output"
    );
    assert!(!s.d.log("b.log.3").exists());
}

/// `logdctl attach` in a real terminal (tmux): raw mode, keys reach the guest, Ctrl-] . detaches,
/// and the terminal is restored afterwards.
#[test]
fn attach_connects_a_terminal_and_restores_it() {
    let Some(s) = setup("") else { return };
    if require_tool("tmux").is_none() {
        return;
    }
    s.add(&["--guest-listen", "a.sock", "--log", "a.log", "--telnet"]);
    let _q = s.qemu_listen("a.sock");
    s.wait_log("a.log", BANNER.as_bytes(), 1, T);
    let attach = format!(
        "{LOGDCTL} --socket {} attach --domain vm --name serial0",
        s.d.socket.display()
    );
    let (term, rec) = Terminal::run_recorded("attach", s.d.dir.path(), &attach);
    term.wait_for("LOGD-GUEST READY", T);
    assert!(term.screen().contains("^] then ? for help"));
    // Raw mode: keys go one by one, unechoed by the terminal; the guest echoes them upper-cased.
    term.keys(&["-l", "hello tmux"]);
    term.wait_for("HELLO TMUX", T);
    assert!(
        !term.screen().contains("hello tmux"),
        "the terminal echoed locally: not in raw mode"
    );
    term.keys(&["C-]", "."]);
    let (status, restored) = rec.wait(T);
    assert_eq!(status, "exit=0");
    assert!(restored, "the terminal was not restored after detaching");
    assert!(
        s.log("a.log").ends_with(b"HELLO TMUX"),
        "keys did not reach the guest"
    );

    // Killed with SIGTERM while attached: the terminal is restored too.
    let (term2, rec2) = Terminal::run_recorded("attach-term", s.d.dir.path(), &attach);
    term2.wait_for("then ? for help", T);
    let pattern = format!("^{LOGDCTL} --socket {} attach", s.d.socket.display());
    let _ = Command::new("pkill")
        .args(["-TERM", "-f", &pattern])
        .status();
    let (status, restored) = rec2.wait(T);
    assert_eq!(status, "exit=143");
    assert!(restored, "SIGTERM left the terminal raw");
}

/// `--write shared` merges everyone's input; `--replay 0` replays nothing; the UNIX listener
/// serves local subscribers (`nc -U`); `--write none` keeps everyone out.
#[test]
fn shared_and_none_policies_replay_off_and_unix_subscribers() {
    let Some(s) = setup("") else { return };
    let port = s.add(&[
        "--guest-listen",
        "sh.sock",
        "--log",
        "sh.log",
        "--write",
        "shared",
        "--replay",
        "0",
        "--unix",
        "sh-subs.sock",
    ]);
    let _q = s.qemu_listen("sh.sock");
    s.wait_log("sh.log", BANNER.as_bytes(), 1, T);
    let mut a = nc(port);
    let mut b = Proc::spawn(
        "nc -U",
        Command::new("nc").arg("-U").arg(s.sock("sh-subs.sock")),
    );
    wait_for(T, "two subscribers", || {
        (s.info()["subscribers"] == 2).then_some(())
    });
    a.send(b"from a\n");
    b.send(b"from b\n");
    for p in [&a, &b] {
        p.wait_for(b"FROM A\n", T);
        p.wait_for(b"FROM B\n", T);
        assert!(
            !contains(&p.output(), b"LOGD-GUEST"),
            "replay 0 still replayed"
        );
        assert!(!contains(&p.output(), b"write lock"));
    }

    let port = s.add_named(
        "ro",
        &[
            "--guest-listen",
            "ro.sock",
            "--log",
            "ro.log",
            "--write",
            "none",
        ],
    );
    // The read-only console's guest is this test, on the guest socket: it sees what reaches
    // the guest, rather than waiting for an echo that should not come.
    let mut guest = UnixStream::connect(s.sock("ro.sock")).unwrap();
    guest.write_all(BANNER.as_bytes()).unwrap();
    s.wait_log("ro.log", BANNER.as_bytes(), 1, T);
    let mut r = nc(port);
    r.wait_for(BANNER.as_bytes(), T);
    r.send(b"nobody writes\n");
    // Said when the console read the line, and each turn of the console passes input on to the
    // guest before it reads the guest's next output: once the guest's next line has reached
    // the subscriber, the typed line has been passed on, or never will be.
    r.wait_for(b"input is discarded", T);
    guest.write_all(b"later\r\n").unwrap();
    r.wait_for(b"later\r\n", T);
    guest.set_nonblocking(true).unwrap();
    let mut got = [0u8; 256];
    match guest.read(&mut got) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok(0) => panic!("logd closed the guest's socket"),
        Ok(n) => panic!(
            "a read-only subscriber's input reached the guest: {:?}",
            String::from_utf8_lossy(&got[..n])
        ),
        Err(e) => panic!("reading the guest's socket: {e}"),
    }
    assert_eq!(s.log("ro.log"), [BANNER.as_bytes(), b"later\r\n"].concat());
}

/// Bad console requests get a clear error naming the thing; nothing else is disturbed.
#[test]
fn bad_console_requests_get_clear_errors() {
    let d = Daemon::start();
    let add = |args: &[&str]| {
        let mut a = vec!["console", "add", "--domain", "vm", "--log", "x.log"];
        a.extend_from_slice(args);
        d.ctl_run(&a)
    };
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let ok = add(&[
        "--name",
        "serial0",
        "--guest-connect",
        "nothing-here.sock",
        "--tcp",
        "0",
    ]);
    assert!(ok.status.success(), "{}", err(&ok));
    let bound = String::from_utf8(ok.stdout).unwrap().trim().to_owned();

    // A duplicate name.
    let o = add(&["--name", "serial0", "--guest-connect", "other.sock"]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("serial0") && err(&o).contains("already"),
        "{}",
        err(&o)
    );
    // A port in use.
    let o = d.ctl_run(&[
        "console",
        "add",
        "--domain",
        "vm",
        "--name",
        "s1",
        "--log",
        "y.log",
        "--guest-connect",
        "g.sock",
        "--tcp",
        &bound,
    ]);
    assert!(!o.status.success());
    assert!(err(&o).contains(&bound), "{}", err(&o));
    // A log already open (by the first console).
    let o = d.ctl_run(&[
        "console",
        "add",
        "--domain",
        "vm",
        "--name",
        "s2",
        "--log",
        "x.log",
        "--guest-connect",
        "g.sock",
    ]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("x.log") && err(&o).contains("already open"),
        "{}",
        err(&o)
    );
    // Hostile socket paths and names, a bad address.
    let hostile: [&[&str]; 4] = [
        &["--name", "s3", "--guest-listen", "../escape.sock"],
        &["--name", "s3", "--guest-connect", "/etc/evil.sock"],
        &["--name", "a/b", "--guest-connect", "g.sock"],
        &[
            "--name",
            "s3",
            "--guest-connect",
            "g.sock",
            "--tcp",
            "not-an-address",
        ],
    ];
    for args in hostile {
        let mut a = vec!["console", "add", "--domain", "vm", "--log", "z.log"];
        a.extend_from_slice(args);
        let o = d.ctl_run(&a);
        assert!(!o.status.success(), "{args:?} was accepted");
        let e = err(&o);
        assert!(
            e.contains("escape.sock")
                || e.contains("/etc/evil.sock")
                || e.contains("a/b")
                || e.contains("not-an-address"),
            "{args:?}: {e}"
        );
    }
    // A UNIX listener path already served by a live socket.
    let o = d.ctl_run(&[
        "console",
        "add",
        "--domain",
        "vm",
        "--name",
        "s4",
        "--log",
        "w.log",
        "--guest-connect",
        "g.sock",
        "--unix",
        "logd-live.sock",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let o = d.ctl_run(&[
        "console",
        "add",
        "--domain",
        "vm",
        "--name",
        "s5",
        "--log",
        "v.log",
        "--guest-connect",
        "g.sock",
        "--unix",
        "logd-live.sock",
    ]);
    assert!(!o.status.success());
    assert!(err(&o).contains("logd-live.sock"), "{}", err(&o));
    // Unknown domain or console on remove.
    let o = d.ctl_run(&["console", "remove", "--domain", "nope", "--name", "serial0"]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("nope") && err(&o).contains("serial0"),
        "{}",
        err(&o)
    );
    let o = d.ctl_run(&["console", "remove", "--domain", "vm", "--name", "nope"]);
    assert!(err(&o).contains("nope"), "{}", err(&o));
    // The first console is still there, and removing it frees its log path.
    let list = String::from_utf8(d.ctl_ok(&["console", "list"])).unwrap();
    assert!(list.contains("serial0") && list.contains(&bound), "{list}");
    d.ctl_ok(&["console", "remove", "--domain", "vm", "--name", "serial0"]);
    d.ctl_ok(&["console", "remove", "--domain", "vm", "--name", "s4"]);
    let mut c = d.client();
    c.open_log(
        logd_protocol::DomainId::from_name("qemu", "vm"),
        "x.log",
        Default::default(),
    )
    .unwrap();
}

/// A console's log keeps getting guest output after `position` drained it, with nothing else
/// (no subscriber) to wake the console: draining must not steal the console's wake-ups.
#[test]
fn guest_output_keeps_flowing_after_a_drain() {
    let d = Daemon::start();
    let mut c = d.client();
    let spec = logd_protocol::ConsoleSpec::new(
        logd_protocol::DomainId::from_name("qemu", "fdvm"),
        "serial0",
        logd_protocol::GuestSide::Fd,
        "fd.log",
    );
    let (_, fd) = c.add_console(spec).unwrap();
    let mut guest = std::os::unix::net::UnixStream::from(fd.expect("a guest fd"));
    for round in 0..20 {
        let line = format!("round {round}\n");
        guest.write_all(line.as_bytes()).unwrap();
        if round % 2 == 0 {
            c.position("fd.log").unwrap(); // drains
        } else {
            // No request: only the console's own wake-up can bring this line in.
            let path = d.log("fd.log");
            wait_for(
                Duration::from_secs(10),
                &format!("{line:?} without a drain"),
                || {
                    std::fs::read(&path)
                        .ok()?
                        .ends_with(line.as_bytes())
                        .then_some(())
                },
            );
        }
    }
}
