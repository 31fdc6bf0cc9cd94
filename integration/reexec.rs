//! End-to-end tests of re-exec (issue #5): SIGUSR1 and `logdctl reexec` hand every pipe,
//! console, subscriber and client connection to a new process. Real binaries, real QEMU, the
//! real `telnet`, real signals; writers push at full speed while it happens.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::harness::*;
use logd_protocol::{DomainId, OpenFlags};
use nix::sys::signal::Signal;

const BANNER: &[u8] = b"LOGD-GUEST READY\r\n";
const T: Duration = Duration::from_secs(60);

/// The admin snapshot, as `logdctl ps --json` prints it.
fn ps(d: &Daemon) -> serde_json::Value {
    serde_json::from_slice(&d.ctl_ok(&["ps", "--json"])).unwrap()
}

/// A stream's snapshot by log path.
fn stream(snap: &serde_json::Value, path: &Path) -> Option<serde_json::Value> {
    snap["domains"]
        .as_array()?
        .iter()
        .flat_map(|d| d["streams"].as_array().cloned().unwrap_or_default())
        .find(|s| s["path"] == path.display().to_string())
}

/// Sends SIGUSR1 and waits until the new image serves (its snapshot counts one more re-exec);
/// returns the pid, which a re-exec keeps.
fn reexec_by_signal(d: &Daemon) -> i32 {
    let old = d.pid();
    let before = ps(d)["reexecs"].as_u64().unwrap();
    d.signal(Signal::SIGUSR1);
    wait_for(T, "the new image to serve", || {
        let snap =
            serde_json::from_slice::<serde_json::Value>(&d.ctl_run(&["ps", "--json"]).stdout)
                .ok()?;
        (snap["reexecs"] == before + 1).then_some(())
    });
    assert_eq!(d.pid(), old, "a re-exec keeps the pid");
    old
}

/// Line `i` of a writer's stream: 13 bytes.
fn line(i: u64) -> String {
    format!("{i:012}\n")
}

/// A writer pushing numbered lines into a log's pipe as fast as it can until `stop`; returns
/// the bytes written. A write error (EPIPE: the reader vanished) fails the test.
fn writer(fd: OwnedFd, stop: Arc<AtomicBool>) -> JoinHandle<(u64, File)> {
    std::thread::spawn(move || {
        let mut f = File::from(fd);
        let (mut i, mut total) = (0u64, 0u64);
        let mut buf = Vec::with_capacity(70_000);
        while !stop.load(Ordering::Relaxed) {
            buf.clear();
            while buf.len() < 65_000 {
                buf.extend_from_slice(line(i).as_bytes());
                i += 1;
            }
            f.write_all(&buf)
                .expect("the pipe stays open across re-execs");
            total += buf.len() as u64;
        }
        (total, f)
    })
}

/// Checks that `log` is exactly the last `log.len()` bytes of a writer's `total` bytes.
fn assert_suffix(log: &[u8], total: u64, what: &str) {
    assert!(log.len() as u64 <= total, "{what}: more bytes than written");
    let start = total - log.len() as u64;
    let mut i = start / 13;
    let mut expect = line(i).into_bytes()[(start % 13) as usize..].to_vec();
    let mut at = 0;
    while at < log.len() {
        let n = expect.len().min(log.len() - at);
        assert_eq!(
            &log[at..at + n],
            &expect[..n],
            "{what}: byte {} of the stream differs (line {i})",
            start + at as u64
        );
        at += n;
        i += 1;
        expect = line(i).into_bytes();
    }
}

/// The data a telnet subscriber got: negotiation removed, 0xFF 0xFF unescaped, logd's
/// `[logd: …]` notices removed.
fn telnet_data(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != 0xFF {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        match raw.get(i + 1) {
            Some(0xFF) => {
                out.push(0xFF);
                i += 2;
            }
            Some(251..=254) => i += 3,
            Some(250) => {
                // Subnegotiation: up to IAC SE.
                i += 2;
                while i + 1 < raw.len() && !(raw[i] == 0xFF && raw[i + 1] == 240) {
                    i += 1;
                }
                i += 2;
            }
            _ => i += 2,
        }
    }
    let mut clean = Vec::with_capacity(out.len());
    let mut rest = &out[..];
    while let Some(p) = find(rest, b"\r\n[logd: ") {
        clean.extend_from_slice(&rest[..p]);
        let end = find(&rest[p..], b"]\r\n").expect("a notice ends") + p + 3;
        rest = &rest[end..];
    }
    clean.extend_from_slice(rest);
    clean
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Acceptance 1: three writers at full speed, a console under a QEMU burst and three TCP
/// subscribers (a raw one holding the write lock, the real telnet, another raw one); five
/// SIGUSR1 in a row. No byte is lost or doubled anywhere, nobody is disconnected, the write
/// lock stays put and still types into the guest, and the counters carry over.
#[test]
fn five_reexecs_under_full_load_lose_nothing_and_drop_nobody() {
    let _heavy = cpu_heavy();
    for tool in ["qemu-system-x86_64", "telnet"] {
        if require_tool(tool).is_none() {
            return;
        }
    }
    let d = Daemon::with_config("max_size = \"4 MiB\"\nmax_backups = 3\n");
    let Some(img) = build_guest(d.dir.path()) else {
        return;
    };
    // The console: telnet protocol, exclusive write lock; its TCP subscribers may type (a
    // setting the re-execs carry, with each subscriber's role).
    let out = d.ctl_ok(&[
        "console",
        "add",
        "--domain",
        "vm",
        "--name",
        "serial0",
        "--tcp",
        "0",
        "--tcp-write",
        "--telnet",
        "--guest-listen",
        "vm.sock",
        "--log",
        "vm/console.log",
    ]);
    let port = port_of(&out);
    let _qemu = qemu(
        &img,
        &format!(
            "socket,id=s0,path={},server=off,reconnect=1",
            d.log("vm.sock").display()
        ),
    );
    let console_log = d.log("vm/console.log");
    wait_for(T, "the guest's banner in the log", || {
        d.ctl_ok(&["position", "--log", "vm/console.log"]);
        (read_rotated(&console_log, 3) == BANNER).then_some(())
    });
    let (mut holder, got_a) = tcp_reader(port);
    wait_for(T, "the write lock holder to join", || {
        let s = stream(&ps(&d), &console_log)?;
        (s["subscribers"].as_array()?.len() == 1).then_some(())
    });
    let telnet = Proc::spawn(
        "telnet",
        Command::new("telnet").args(["127.0.0.1", &port.to_string()]),
    );
    let (_other, got_c) = tcp_reader(port);
    let before = wait_for(T, "three subscribers", || {
        let s = stream(&ps(&d), &console_log)?;
        (s["subscribers"].as_array()?.len() == 3).then_some(s)
    });
    let holder_id = before["subscribers"][0]["id"].clone();
    assert_eq!(before["subscribers"][0]["writer"], true, "{before}");
    for who in [&got_a, &got_c] {
        wait_for(T, "the replayed banner", || {
            find(&telnet_data(&who.lock().unwrap()), BANNER).map(|_| ())
        });
    }

    // Three writers at full speed, each its own log.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let mut c = d.client();
        let (_, fd) = c
            .open_log(
                DomainId::from_name("qemu", &format!("writer{w}")),
                &format!("w{w}.log"),
                OpenFlags::default(),
            )
            .unwrap();
        writers.push(writer(fd, stop.clone()));
    }
    // The burst: typed by the lock holder, so its input reaches the guest.
    holder.write_all(b"\x02").unwrap();
    wait_for(T, "the burst to start", || {
        find(&got_a.lock().unwrap(), b"00001000 abc").map(|_| ())
    });
    let bytes_in_before = stream(&ps(&d), &d.log("w0.log")).unwrap()["bytes_in"]
        .as_u64()
        .unwrap();
    assert!(bytes_in_before > 0);

    let first = d.pid();
    let mut pids = vec![first];
    let writer_logs: Vec<_> = (0..3).map(|w| d.log(&format!("w{w}.log"))).collect();
    let bytes_in = || -> Vec<u64> {
        let snap = ps(&d);
        writer_logs
            .iter()
            .map(|p| {
                stream(&snap, p)
                    .and_then(|s| s["bytes_in"].as_u64())
                    .unwrap_or(0)
            })
            .collect()
    };
    for _ in 0..5 {
        pids.push(reexec_by_signal(&d));
        // Each re-exec under load: the new process reads from every writer before the next.
        let carried = bytes_in();
        wait_for(T, "the new process to read from every writer", || {
            let now = bytes_in();
            now.iter().zip(&carried).all(|(n, c)| n > c).then_some(())
        });
    }
    let snap = ps(&d);
    assert_eq!(snap["reexecs"], 5, "{snap}");
    assert!(
        pids.iter().all(|p| *p == pids[0]),
        "one pid throughout: {pids:?}"
    );
    assert_eq!(snap["pid"], pids[0]);
    // The guest still bursts (nothing stalled it), and everyone gets all of it.
    wait_for(Duration::from_secs(300), "the burst to end", || {
        find(&got_a.lock().unwrap(), b"BURST DONE\r\n").map(|_| ())
    });
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(u64, File)> = writers.into_iter().map(|w| w.join().unwrap()).collect();

    // Every log is exactly its writer's stream (suffix), and its counter carried over: bytes in
    // after = before + since, i.e. every byte ever written, none counted twice.
    for (w, (total, _f)) in results.iter().enumerate() {
        let path = d.log(&format!("w{w}.log"));
        let s = wait_for(T, "the writers' bytes to be in", || {
            let s = stream(&ps(&d), &path)?;
            (s["bytes_in"].as_u64()? == *total).then_some(s)
        });
        assert!(s["bytes_in"].as_u64().unwrap() >= bytes_in_before);
        assert_eq!(s["bytes_written"].as_u64().unwrap(), *total, "{s}");
        assert_eq!(s["dropped_disk"], 0, "{s}");
        let log = read_rotated(&path, 3);
        assert!(
            log.len() > 1 << 20,
            "w{w}.log holds only {} bytes",
            log.len()
        );
        assert_suffix(&log, *total, &format!("w{w}.log"));
    }
    drop(results);

    // The console log is the guest's whole output; each raw-socket subscriber got exactly it,
    // and the real telnet client got the whole burst.
    let mut expect = BANNER.to_vec();
    expect.extend(burst());
    d.ctl_ok(&["position", "--log", "vm/console.log"]);
    assert_eq!(read_rotated(&console_log, 3), expect, "the console log");
    for (name, who) in [("holder", &got_a), ("other", &got_c)] {
        let data = telnet_data(&who.lock().unwrap());
        assert!(
            data == expect,
            "{name} got {} bytes, expected {}",
            data.len(),
            expect.len()
        );
    }
    let b = burst();
    wait_for(T, "telnet to show the end of the burst", || {
        find(&telnet.output(), b"BURST DONE").map(|_| ())
    });
    let t = telnet.output();
    let at = find(&t, &b[..64]).expect("telnet shows the burst");
    assert!(
        t[at..].starts_with(&b),
        "telnet got the whole burst in order"
    );

    // Still three subscribers, the lock with the same one, and its keys reach the guest.
    let s = stream(&ps(&d), &console_log).unwrap();
    let subs = s["subscribers"].as_array().unwrap();
    assert_eq!(subs.len(), 3, "{s}");
    assert_eq!(subs[0]["id"], holder_id, "{s}");
    assert_eq!(subs[0]["writer"], true, "{s}");
    assert!(subs.iter().all(|u| u["role"] == "read-write"), "{s}");
    assert_eq!(s["bytes_in"], expect.len() as u64, "{s}");
    holder.write_all(b"typed after five re-execs\n").unwrap();
    wait_for(T, "the guest's echo", || {
        find(&got_a.lock().unwrap(), b"TYPED AFTER FIVE RE-EXECS").map(|_| ())
    });
    let log = d.stderr();
    assert_eq!(log.matches("took over (re-exec").count(), 5, "{log}");
}

/// A `logd` binary of its own in `dir/bin`, so a test can replace it.
fn own_binary(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = bin.join("logd");
    std::fs::copy(LOGD, &path).unwrap();
    path
}

/// Acceptance 2: the binary at the configured path is replaced between two re-execs; the new
/// file takes over (`ps` shows its mtime, and /proc shows the new inode running), and a stream
/// opened before both re-execs flows on.
#[test]
fn a_replaced_binary_takes_over_at_the_next_reexec() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = own_binary(tmp.path());
    let d = Daemon::start_with(Opts {
        binary: Some(bin.clone()),
        ..Opts::default()
    });
    let snap = ps(&d);
    assert_eq!(snap["exe"], bin.display().to_string(), "{snap}");
    assert!(
        snap["build_id"].as_str().unwrap().len() >= 16,
        "a build id: {snap}"
    );
    let mut f = d.open_pipe("keep", "keep.log");
    f.write_all(b"before\n").unwrap();

    let first = reexec_by_signal(&d);
    f.write_all(b"between\n").unwrap();
    // Replace the binary as a package upgrade does: a new file renamed over the old one.
    let fresh = tmp.path().join("bin/logd.new");
    std::fs::copy(LOGD, &fresh).unwrap();
    let st = Command::new("touch")
        .args(["-d", "2030-01-02 03:04:05"])
        .arg(&fresh)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::rename(&fresh, &bin).unwrap();
    let second = reexec_by_signal(&d);
    assert_eq!(first, second, "the same pid, the new file");
    f.write_all(b"after\n").unwrap();

    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&bin).unwrap();
    let snap = ps(&d);
    assert_eq!(snap["pid"], second);
    assert_eq!(snap["reexecs"], 2, "{snap}");
    assert_eq!(
        snap["exe_mtime_ms"].as_u64().unwrap(),
        meta.mtime() as u64 * 1000,
        "ps shows the new binary's mtime: {snap}"
    );
    let running = std::fs::metadata(format!("/proc/{second}/exe")).unwrap();
    assert_eq!(running.ino(), meta.ino(), "the new file runs");
    d.ctl_ok(&["position", "--log", "keep.log"]);
    assert_eq!(
        std::fs::read(d.log("keep.log")).unwrap(),
        b"before\nbetween\nafter\n"
    );
}

/// Acceptance 3: a re-exec to a binary that does not exist (the exec fails: the old image goes
/// on), that exits at once, or that cannot take over (a logd whose configuration has become
/// invalid; in both, the guardian takes over) keeps every stream open, and says why: in the
/// log, in `logdctl reexec`'s error, and in `ps`.
#[test]
fn a_missing_or_failing_binary_leaves_the_old_daemon_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nothing-here/logd");
    let d = Daemon::with_config(&format!("binary = \"{}\"\n", missing.display()));
    let pid = d.pid();
    let mut f = d.open_pipe("steady", "steady.log");
    f.write_all(b"one\n").unwrap();

    // SIGUSR1 with the configured binary missing: the exec fails, and the same image goes on.
    d.signal(Signal::SIGUSR1);
    wait_for(T, "the failure in the log", || {
        d.stderr().contains("re-exec failed").then_some(())
    });
    assert!(d.stderr().contains("No such file"), "{}", d.stderr());
    assert_eq!(d.pid(), pid);
    f.write_all(b"two\n").unwrap();

    // A binary that exits at once.
    let quits = tmp.path().join("quits");
    std::fs::write(&quits, "#!/bin/sh\nexit 3\n").unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&quits)
        .status()
        .unwrap();
    let out = d.ctl_run(&["reexec", "--binary", quits.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exited before it was ready") && err.contains("the old binary took over"),
        "{err}"
    );
    f.write_all(b"three\n").unwrap();

    // A real logd that cannot take over: its configuration is invalid by now.
    let bad = tmp.path().join("bad-config");
    std::fs::write(
        &bad,
        format!(
            "#!/bin/sh\necho 'no_such_key = 1' >> {}\nexec {LOGD} \"$@\"\n",
            d.dir.path().join("logd.toml").display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("755").arg(&bad).status().unwrap();
    let out = d.ctl_run(&["reexec", "--binary", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("could not take over") && err.contains("no_such_key"),
        "{err}"
    );
    f.write_all(b"four\n").unwrap();

    // A binary that could not be run left the pid as it was; the two that ran and failed left
    // the guardian (the old binary) serving in their place. The stream is intact, every byte
    // in once, and no re-exec counted.
    let snap = ps(&d);
    assert_eq!(snap["pid"], d.pid());
    assert_ne!(d.pid(), pid, "a guardian took over");
    assert_eq!(snap["reexecs"], 0);
    assert!(
        snap["last_reexec"]["error"]
            .as_str()
            .unwrap()
            .contains("could not take over"),
        "{snap}"
    );
    drop(f);
    wait_for(T, "the log to close", || {
        stream(&ps(&d), &d.log("steady.log"))
            .is_none()
            .then_some(())
    });
    assert_eq!(
        std::fs::read(d.log("steady.log")).unwrap(),
        b"one\ntwo\nthree\nfour\n"
    );
}

/// Issue 15: a new image that starts and then fails loses nothing: one SIGKILLed while it
/// rebuilds the domains, one that hangs there (the guardian kills it after 5 s), and one that
/// panics after it said `Ready` and before it heard `Go`. Each time the guardian takes over;
/// the guest's pipe never breaks and every byte is in the log once.
#[test]
fn a_new_image_that_dies_during_its_take_over_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start();
    let mut f = d.open_pipe("steady", "steady.log");
    f.write_all(b"one\n").unwrap();
    // What the old process says (the panic may come before or after it has sent `Go`).
    let faults = [
        ("killed-in-restore", &["exited before it was ready"][..]),
        (
            "hang-in-restore",
            &["was not ready within 5 s (killed)"][..],
        ),
        (
            "panic-after-ready",
            &["was told to go and died before it ran", "handshake"][..],
        ),
    ];
    for (n, (fault, why)) in (2..).zip(faults) {
        let wrapper = tmp.path().join(fault);
        std::fs::write(
            &wrapper,
            format!("#!/bin/sh\nLOGD_REEXEC_FAULT={fault} exec {LOGD} \"$@\"\n"),
        )
        .unwrap();
        Command::new("chmod")
            .arg("755")
            .arg(&wrapper)
            .status()
            .unwrap();
        let out = d.ctl_run(&["reexec", "--binary", wrapper.to_str().unwrap()]);
        assert!(
            !out.status.success(),
            "{fault}: the re-exec did not fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(why.iter().any(|w| err.contains(w)), "{fault}: {err}");
        // Whoever serves now holds the pipe: the guest goes on writing.
        wait_for(T, "a process serving after the failed re-exec", || {
            d.ctl_run(&["ps", "--json"]).status.success().then_some(())
        });
        f.write_all(format!("after {fault}\n").as_bytes())
            .unwrap_or_else(|e| panic!("{fault}: the guest's pipe broke: {e}\n{}", d.stderr()));
        wait_for(T, "the line in the log", || {
            let log = std::fs::read_to_string(d.log("steady.log")).unwrap_or_default();
            (log.lines().count() == n).then_some(())
        });
    }
    drop(f);
    wait_for(T, "the log to close", || {
        stream(&ps(&d), &d.log("steady.log"))
            .is_none()
            .then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(d.log("steady.log")).unwrap(),
        "one\nafter killed-in-restore\nafter hang-in-restore\nafter panic-after-ready\n"
    );
}

/// A wrapper that runs logd as a re-exec's new binary with `LOGD_REEXEC_FAULT=fault`.
fn faulty_binary(dir: &Path, fault: &str) -> std::path::PathBuf {
    let wrapper = dir.join(fault.replace(':', "-"));
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nLOGD_REEXEC_FAULT={fault} exec {LOGD} \"$@\"\n"),
    )
    .unwrap();
    let st = Command::new("chmod").arg("755").arg(&wrapper).status();
    assert!(st.unwrap().success());
    wrapper
}

/// The children of process `pid` (from every thread's `children` list).
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .map(|t| std::fs::read_to_string(t.path().join("children")).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Starts `logdctl reexec --binary BINARY` and waits until the old image has spawned its
/// guardian: from then on every domain is frozen (the freeze, O4, comes before the guardian,
/// O5), so what a source writes now is read by the new image, not the old one. Returns the
/// running `logdctl`.
fn reexec_until_frozen(d: &Daemon, binary: &Path) -> KillOnDrop {
    let pid = d.pid();
    let ctl = KillOnDrop(
        d.ctl()
            .args(["reexec", "--binary"])
            .arg(binary)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    poll(T, Duration::from_millis(1), || {
        (!children(pid).is_empty()).then_some(())
    })
    .unwrap_or_else(|| panic!("{}", d.failed("the guardian to start")));
    ctl
}

/// The outcome of a `logdctl reexec` started by [`reexec_until_frozen`]: (success, stderr).
fn reexec_outcome(ctl: KillOnDrop) -> (bool, String) {
    let mut ctl = ctl;
    let mut err = String::new();
    std::io::Read::read_to_string(ctl.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    let ok = ctl.0.wait().unwrap().success();
    (ok, err)
}

/// Bytes queued on a UNIX stream socket that its peer has not read yet (`SIOCOUTQ`).
#[allow(unsafe_code)]
fn unread_by_peer(s: &std::os::unix::net::UnixStream) -> usize {
    use std::os::fd::AsRawFd;
    nix::ioctl_read_bad!(outq, nix::libc::TIOCOUTQ, nix::libc::c_int);
    let mut n: nix::libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one int through the pointer, which points at `n`, alive for the
    // call; the fd is open (borrowed from `s`).
    unsafe { outq(s.as_raw_fd(), &mut n) }.expect("SIOCOUTQ");
    n as usize
}

/// Review finding: a new image that dies after `Go` may have rotated a log before it died. The
/// guardian then takes over a state whose file fd is no longer the log's live file (it is
/// `NAME.0` now): it must open the log by its path again, as a crash recovery does, or it
/// appends to the backup and its rotation counter is wrong. Here the lines the new image reads
/// make it rotate once, and it is SIGKILLed (`killed-after-go:1`) once they are in the files;
/// the lines written after the take-over must follow them in the live file, and the files
/// together must hold the stream once, in order.
#[test]
fn a_guardian_taking_over_after_go_writes_the_live_file_not_a_rotated_one() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::with_config("max_size = \"4 KiB\"\nmax_backups = 8\n");
    let path = d.log("rot.log");
    let mut f = d.open_pipe("rot", "rot.log");
    let lines = |r: std::ops::Range<u64>| r.map(line).collect::<String>();
    // 230 lines of 13 bytes: 2,990 bytes, in the old image's file.
    f.write_all(lines(0..230).as_bytes()).unwrap();
    wait_for(T, "the first lines in the file", || {
        (std::fs::metadata(&path).ok()?.len() == 230 * 13).then_some(())
    });

    let ctl = reexec_until_frozen(&d, &faulty_binary(tmp.path(), "killed-after-go:1"));
    // Read by the new image, which rotates in the middle of them.
    f.write_all(lines(230..530).as_bytes()).unwrap();
    let (ok, err) = reexec_outcome(ctl);
    assert!(!ok, "the new image was to die");
    assert!(
        err.contains("was told to go and died before it ran"),
        "{err}\n{}",
        d.stderr()
    );
    // The guardian serves now: these go to whatever file it writes.
    f.write_all(lines(530..560).as_bytes()).unwrap();
    d.ctl_ok(&["position", "--log", "rot.log"]);
    let backups = (0..8)
        .filter(|i| std::path::Path::new(&format!("{}.{i}", path.display())).exists())
        .count() as u64;
    assert!(backups >= 1, "the new image rotated");
    let snap = stream(&ps(&d), &path).expect("the log is open");
    assert_eq!(
        snap["rotations"], backups,
        "the rotations counted are the files': {snap}"
    );
    let live = std::fs::read_to_string(&path).unwrap();
    assert!(
        live.ends_with(&lines(500..560)),
        "the lines after the take-over follow the others in the live file: {live:?}"
    );
    assert_eq!(
        String::from_utf8(read_rotated(&path, 8)).unwrap(),
        lines(0..560),
        "the files hold the stream once, in order"
    );
}

/// Review finding: console input logd had accepted and not yet written to the guest when the
/// domains froze is carried in the state. A new image that writes it to the guest and then dies
/// before `Running` leaves a guardian whose state still holds it: it must not type it into the
/// guest a second time. Here the input waits because no guest is connected; the guest connects
/// while the domains are frozen, the new image gives it the input and is SIGKILLed
/// (`killed-after-go`); the guest connects again to the guardian, and gets only what is typed
/// after.
#[test]
fn a_guardian_taking_over_after_go_does_not_type_carried_input_again() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start();
    d.ctl_ok(&[
        "console",
        "add",
        "--domain",
        "vm",
        "--name",
        "s0",
        "--guest-listen",
        "in.sock",
        "--log",
        "in.log",
        "--unix",
        "in-subs.sock",
    ]);
    let mut sub = UnixStream::connect(d.log("in-subs.sock")).unwrap();
    wait_for(T, "the subscriber", || {
        let v: serde_json::Value =
            serde_json::from_slice(&d.ctl_ok(&["console", "list", "--json"])).unwrap();
        (v[0]["subscribers"] == 1).then_some(())
    });
    // No guest yet: once logd has read the line, it waits in the console's input buffer.
    sub.write_all(b"typed before\n").unwrap();
    wait_for(T, "logd to read the typed line", || {
        (unread_by_peer(&sub) == 0).then_some(())
    });

    let ctl = reexec_until_frozen(&d, &faulty_binary(tmp.path(), "killed-after-go"));
    // Accepted by the new image once it thaws; it writes the input, then dies.
    let mut guest = UnixStream::connect(d.log("in.sock")).unwrap();
    guest.set_read_timeout(Some(T)).unwrap();
    let mut first = Vec::new();
    guest.read_to_end(&mut first).unwrap();
    assert_eq!(first, b"typed before\n", "the new image typed it");
    let (ok, err) = reexec_outcome(ctl);
    assert!(!ok, "the new image was to die");
    assert!(
        err.contains("was told to go and died before it ran"),
        "{err}\n{}",
        d.stderr()
    );

    // The guest comes back (as QEMU's reconnect=1 would), to the guardian.
    let mut guest = UnixStream::connect(d.log("in.sock")).unwrap();
    guest.set_read_timeout(Some(T)).unwrap();
    sub.write_all(b"typed after\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"typed after\n") {
        let n = guest.read(&mut buf).expect("the guest reads its input");
        assert!(n > 0, "the guardian closed the guest: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        String::from_utf8_lossy(&got),
        "typed after\n",
        "the input typed before the re-exec reached the guest twice"
    );
}

/// Acceptance 4: `logdctl reexec` does what SIGUSR1 does, answers with the new process's
/// report on the same connection, and carries client connections too: an `events` stream
/// started before sees the take-over, and a protocol client goes on with its next request.
#[test]
fn logdctl_reexec_hands_over_and_keeps_client_connections() {
    let d = Daemon::start();
    let old = d.pid();
    // One protocol connection, used before and after the re-exec.
    let mut c = d.client();
    let (_, fd) = c
        .open_log(
            DomainId::from_name("qemu", "ctl"),
            "ctl.log",
            OpenFlags::default(),
        )
        .unwrap();
    let mut f = File::from(fd);
    f.write_all(b"before\n").unwrap();
    // Live once it has seen a probe's event; the probe's domain is gone when `append` returns.
    let (mut events, seen) = event_stream(&d);

    let out = d.ctl_ok(&["reexec", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let new = d.pid();
    assert_eq!(new, old, "a re-exec keeps the pid");
    assert_eq!(report["from_pid"], old, "{report}");
    assert_eq!(report["to_pid"], new, "{report}");
    assert_eq!(report["domains"], 1, "{report}");
    assert!(report["error"].is_null());
    f.write_all(b"after\n").unwrap();
    // The same protocol connection, now served by the new process.
    let pos = c.position("ctl.log").unwrap();
    assert_eq!(pos.offset, 13);
    let reexeced = wait_for(T, "the reexeced event", || {
        let seen = seen.lock().unwrap();
        seen.iter().find(|e| e["event"] == "reexeced").cloned()
    });
    assert_eq!(reexeced["to_pid"], new, "{reexeced}");
    let _ = events.kill();
    let _ = events.wait();
}

/// A guardian whose binary cannot read the config file now (a key only the new binary knows,
/// or, here, a file broken for both) takes over with the settings the old process ran with,
/// carried to it by the old image, not with the defaults: a log opened after the take-over
/// rotates at the file's `max_size`, not at the default 2 MiB.
#[test]
fn a_guardian_that_cannot_read_the_file_takes_over_with_the_old_settings() {
    let d = Daemon::with_config("max_size = \"8 KiB\"\nmax_backups = 2\n");
    let old = d.pid();
    let config = d.config_path();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("a_key_no_logd_knows = 1\n");
    std::fs::write(&config, text).unwrap();
    // The new image cannot read the file either: it refuses, and the guardian takes over.
    let out = d.ctl_run(&["reexec"]);
    assert!(!out.status.success(), "the re-exec did not fail");
    wait_for(T, "the guardian to serve", || {
        let pid = d.pid();
        (pid != old && d.ctl_run(&["ps", "--json"]).status.success()).then_some(pid)
    });
    let log = d.stderr();
    assert!(
        log.contains("guarding with the settings the old process ran with"),
        "{log}"
    );
    let mut w = d.open_pipe("after", "after.log");
    let data: Vec<u8> = (0..400)
        .flat_map(|i| format!("line {i:05} of the guardian's log\n").into_bytes())
        .collect();
    w.write_all(&data).unwrap();
    d.ctl_ok(&["position", "--log", "after.log"]);
    assert!(
        d.log("after.log.0").exists(),
        "a log opened by the guardian rotates at the old process's max_size (8 KiB)"
    );
    assert!(
        std::fs::metadata(d.log("after.log")).unwrap().len() <= 8 * 1024,
        "the active file is within 8 KiB"
    );
}

/// The fds of process `pid` (3 and up) that lack close-on-exec, from /proc/PID/fdinfo.
fn inheritable_fds(pid: i32) -> Vec<(u32, String)> {
    const O_CLOEXEC: u32 = 0o2000000;
    let mut open = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let Ok(e) = e else { continue };
        let Ok(n) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(info) = std::fs::read_to_string(e.path()) else {
            continue; // closed meanwhile
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .unwrap();
        if n >= 3 && flags & O_CLOEXEC == 0 {
            let target = std::fs::read_link(format!("/proc/{pid}/fd/{n}"))
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            open.push((n, target));
        }
    }
    open
}

/// Every fd the new image inherited gets close-on-exec again (all at once, with
/// `close_range(2)`, once every one is adopted): none leaks into a process logd starts, such
/// as the next re-exec's guardian, unless that re-exec names it. Logs written to (their files
/// open) and idle ones, a console with a subscriber, and the daemon's own sockets; and fds its
/// parent left inheritable, which close at the next exec.
#[test]
fn after_a_reexec_every_fd_is_close_on_exec_again() {
    let d = Daemon::start();
    let mut c = d.client();
    let mut pipes = Vec::new();
    for i in 0..4 {
        let (_, fd) = c
            .open_log(
                DomainId::from_name("qemu", &format!("cloexec{i}")),
                &format!("cloexec{i}.log"),
                OpenFlags::default(),
            )
            .unwrap();
        let mut f = File::from(fd);
        if i % 2 == 0 {
            f.write_all(b"written before the re-exec\n").unwrap();
        }
        pipes.push(f);
    }
    c.position("cloexec0.log").unwrap();
    let out = add_serial0(&d, "cloexec-con", "serial0", &["--tcp", "127.0.0.1:0"]);
    let port = port_of(&out);
    let (_sub, _seen) = subscriber(port);
    let pid = d.pid();
    // (Before it, logd may hold fds its own parent left inheritable, such as cargo's jobserver
    // pipe: not its own, and left as they came. The new image seals those too.)
    reexec_by_signal(&d);
    assert_eq!(inheritable_fds(pid), vec![], "after the re-exec");
    // And they still work.
    pipes[1].write_all(b"after\n").unwrap();
    assert_eq!(c.position("cloexec1.log").unwrap().offset, 6);
}
