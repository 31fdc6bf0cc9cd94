//! End-to-end tests of faults (issue 12): each test reproduces one way logd lost bytes, stalled
//! a guest or let someone in, on the real `logd` binary, with real files, sockets and signals.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;
use logd_protocol::client::ClientError;
use logd_protocol::{ConsoleSpec, DomainId, ErrorCode, GuestSide, OpenFlags, WireError};

const T: Duration = Duration::from_secs(30);

/// A console in fd mode with a TCP listener; returns the guest's socket and the TCP port.
fn fd_console(d: &Daemon, name: &str) -> (UnixStream, u16) {
    let mut spec = ConsoleSpec::new(
        DomainId::from_name("qemu", name),
        "serial0",
        GuestSide::Fd,
        &format!("{name}.log"),
    );
    spec.tcp = Some("127.0.0.1:0".into());
    // Its subscribers type over plain TCP: the console opts in.
    let (added, fd) = d
        .client()
        .add_console_with(spec, vec![logd_protocol::ConsoleOption::TcpWrite])
        .unwrap();
    let port = port_of(added.tcp.expect("a TCP listener").as_bytes());
    (UnixStream::from(fd.expect("a guest fd")), port)
}

/// A guest that reads everything it is sent, prints nothing, and counts.
fn silent_reader(mut guest: UnixStream) -> Arc<AtomicUsize> {
    let got = Arc::new(AtomicUsize::new(0));
    let count = got.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = guest.read(&mut buf) {
            if n == 0 {
                break;
            }
            count.fetch_add(n, Ordering::Relaxed);
        }
    });
    got
}

/// Case 8: the write-lock holder's input reaches a reading guest however much it sends, even
/// while the guest prints nothing (it stalled after one 64 KiB input buffer).
#[test]
fn console_input_flows_to_a_silent_guest() {
    let Some(_) = require_tool("nc") else { return };
    let d = Daemon::start();
    let (guest, port) = fd_console(&d, "quiet");
    let got = silent_reader(guest);
    // The issue saw it stop at 65,536 of 200,000 bytes; more makes the stall certain here.
    let total = 16 << 20;
    let mut nc = Command::new("sh")
        .arg("-c")
        .arg(format!("head -c {total} /dev/zero | nc 127.0.0.1 {port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(T, "all of nc's input at the guest", || {
        (got.load(Ordering::Relaxed) >= total).then_some(())
    });
    assert_eq!(got.load(Ordering::Relaxed), total);
    let _ = nc.kill();
    let _ = nc.wait();
}

/// Case 8, readers: a subscriber without the write lock has its input read and discarded
/// whatever its size, so it is never left blocked on a full socket.
#[test]
fn a_readers_input_is_discarded_without_stalling() {
    let d = Daemon::start();
    let (guest, port) = fd_console(&d, "reader");
    let _got = silent_reader(guest);
    // Accepted in connection order: the first holds the write lock.
    let (_writer, _) = tcp_reader(port);
    let (mut reader, seen) = tcp_reader(port);
    reader.set_write_timeout(Some(T)).unwrap();
    // Far more than the socket buffers on both sides can hold.
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..32 {
        reader
            .write_all(&chunk)
            .expect("logd stopped reading a reader's input");
    }
    wait_for(T, "the read-only notice", || {
        contains(&seen.lock().unwrap(), b"input is discarded").then_some(())
    });
}

/// Opens `path` for domain `name`; returns the daemon's error, if any.
fn open_err(d: &Daemon, name: &str, path: &str, truncate: bool) -> Option<WireError> {
    let flags = OpenFlags { truncate };
    match d
        .client()
        .open_log(DomainId::from_name("qemu", name), path, flags)
    {
        Ok((_, fd)) => {
            // Keep the writer: the log stays open for the rest of the test.
            std::mem::forget(fd);
            None
        }
        Err(ClientError::Server(e)) => Some(e),
        Err(e) => panic!("open {path}: {e}"),
    }
}

/// Case 3: a log claims its whole family of names (NAME, NAME.N, NAME.rotating), so another
/// domain's log can never be renamed, deleted or truncated by this one's rotation.
#[test]
fn a_log_claims_its_backup_and_temporary_names() {
    let d = Daemon::start();
    // Each pair: the first is opened, the second must be refused (either order).
    let pairs = [
        ("x.log.0", "x.log"),
        ("a.log", "a.log.0"),
        ("b.log", "b.log.17"),
        ("y.log.rotating", "y.log"),
        ("c.log", "c.log.rotating"),
    ];
    for (i, (first, second)) in pairs.iter().enumerate() {
        assert_eq!(open_err(&d, &format!("b{i}"), first, false), None);
        let e = open_err(&d, &format!("a{i}"), second, false)
            .unwrap_or_else(|| panic!("{second} was opened beside {first}"));
        assert_eq!(e.code, ErrorCode::Busy, "{second}: {e:?}");
        assert!(
            e.message.contains(first) && e.message.contains(second),
            "the error names both logs: {}",
            e.message
        );
    }
    // A truncate of u.log while another domain writes u.log.0 is refused, and u.log.0 stays.
    let mut w = d.open_pipe("b", "u.log.0");
    w.write_all(b"b's line\n").unwrap();
    let e = open_err(&d, "a", "u.log", true).expect("u.log was opened with truncate");
    assert_eq!(e.code, ErrorCode::Busy);
    d.ctl_ok(&["position", "--log", "u.log.0"]);
    assert_eq!(std::fs::read(d.log("u.log.0")).unwrap(), b"b's line\n");
    // Names that only look alike are not family.
    assert_eq!(open_err(&d, "c", "x.log.0x", false), None);
    assert_eq!(open_err(&d, "c", "z.log", false), None);
    assert_eq!(open_err(&d, "c", "z.log.0.1", false), None);
    assert_eq!(open_err(&d, "c", "x.logs", false), None);
}

/// Case 3, hard links: a path that is another name of a file (a hard link to a live log, or
/// to any file) is refused: two logs must never write one file.
#[test]
fn a_hard_linked_file_is_refused() {
    let d = Daemon::start();
    assert_eq!(open_err(&d, "a", "live.log", false), None);
    std::fs::hard_link(d.log("live.log"), d.log("link.log")).unwrap();
    let e = open_err(&d, "b", "link.log", false).expect("a hard link was opened");
    assert_eq!(e.code, ErrorCode::PathRefused, "{e:?}");
    assert!(
        e.message.contains("link.log") && e.message.contains("link"),
        "{}",
        e.message
    );
}

/// Case 5: a name whose derived names (NAME.rotating, NAME.N) would pass NAME_MAX is refused at
/// open, not accepted and then dropped at the first rotation.
#[test]
fn a_name_too_long_for_its_backups_is_refused_at_open() {
    let d = Daemon::start();
    let name = "n".repeat(250);
    let e = open_err(&d, "long", &name, false).expect("a 250-byte name was accepted");
    assert_eq!(e.code, ErrorCode::PathRefused, "{e:?}");
    assert!(
        e.message.contains(".rotating") && e.message.contains("255"),
        "{}",
        e.message
    );
    // The longest name that works does work, through rotations.
    let name = "m".repeat(255 - ".rotating".len());
    let d = Daemon::with_config("max_size = \"4 KiB\"\nmax_backups = 3\n");
    let mut w = d.open_pipe("long", &name);
    w.write_all(&numbered_lines(20_000)).unwrap();
    drop(w);
    wait_for(T, "rotations", || {
        d.log(&format!("{name}.2")).exists().then_some(())
    });
}

/// The first stream of domain `name` in `ps --json`.
fn first_stream(d: &Daemon, name: &str) -> serde_json::Value {
    let ps: serde_json::Value = serde_json::from_slice(&d.ctl_ok(&["ps", "--json"])).unwrap();
    ps["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|dom| dom["id"]["name"] == name)
        .map(|dom| dom["streams"][0].clone())
        .unwrap_or_else(|| panic!("no domain {name} in {ps}"))
}

/// Whether tests that need root's powers (mounts, other uids) must run: under CI they fail
/// instead of saying "skipped".
fn required() -> bool {
    std::env::var("LOGD_REQUIRE_QEMU").as_deref() == Ok("1") || std::env::var_os("CI").is_some()
}

/// A file system mounted for one test, unmounted when dropped.
struct Mount {
    at: std::path::PathBuf,
}

impl Mount {
    /// Mounts `mount ARGS... AT` (AT is created), or says why not: a test that cannot mount
    /// says "skipped" with the reason, except under CI, where it fails.
    fn new(at: &std::path::Path, args: &[&str]) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount").args(args).arg(at).output();
        match out {
            Ok(o) if o.status.success() => Some(Mount { at: at.to_owned() }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    !required(),
                    "cannot mount {args:?} on {}: {why}",
                    at.display()
                );
                eprintln!("skipped: cannot mount {args:?}: {why}");
                None
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// How long logd waits before it tries a failed log file again (`datapath::sink::RETRY_INTERVAL`).
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Writes `line(0)`, `line(1)`, … into a log whose disk is full, until logd has tried the file
/// again `retries` times after its first failure (each failed retry is a debug line, which the
/// kit's `-v` shows); returns the bytes written.
fn write_until_retried(
    d: &Daemon,
    w: &mut std::fs::File,
    retries: usize,
    line: impl Fn(usize) -> String,
) -> usize {
    let deadline = Instant::now() + T;
    let mut sent = 0;
    for i in 0.. {
        let l = line(i);
        w.write_all(l.as_bytes()).unwrap();
        sent += l.len();
        if count(d.stderr().as_bytes(), b"log file still unwritable") >= retries {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "logd did not retry the full disk {retries} times in {T:?}: {}",
            d.stderr_tail()
        );
        // Pacing: a retry is made by the first write after it is due, so writes keep coming.
        // How many fall between two retries does not matter to the checks.
        std::thread::sleep(Duration::from_millis(50));
    }
    sent
}

/// Waits until logd's next retry of domain `name`'s log is due: the retry interval after the
/// last failure, by logd's own clock (the failure's time in `ps`). Drain the log first
/// (`position`), so that no failure comes after the one read here.
fn wait_retry_due(d: &Daemon, name: &str) {
    let s = first_stream(d, name);
    let at = s["last_error"]["at_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no failure in {s}"));
    // `at_ms` is cut to the millisecond: one more, and a little for two clocks.
    let due = std::time::UNIX_EPOCH + Duration::from_millis(at + 1) + RETRY_INTERVAL;
    wait_for(T, "logd's next retry to be due", || {
        (std::time::SystemTime::now() > due + Duration::from_millis(20)).then_some(())
    });
}

/// `seq 1 n`'s output.
fn seq(n: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 1..=n {
        v.extend_from_slice(format!("{i}\n").as_bytes());
    }
    v
}

/// Case 2: when the disk is full of the log's own backups, logd makes room from the oldest of
/// them and keeps writing: the files hold exactly the newest bytes, and nothing is dropped.
#[test]
fn a_full_disk_gives_up_the_oldest_backups_not_the_newest_bytes() {
    let d = Daemon::with_config("max_size = \"1 MiB\"\nmax_backups = 3\n");
    let Some(_m) = Mount::new(&d.log("small"), &["-t", "tmpfs", "-o", "size=2m", "tmpfs"]) else {
        return;
    };
    let data = seq(1_000_000); // 6.9 MB into 2 MiB
    let mut w = d.open_pipe("full", "small/seq.log");
    w.write_all(&data).unwrap();
    d.ctl_ok(&["position", "--log", "small/seq.log"]); // drained
    let kept = read_rotated(&d.log("small/seq.log"), 3);
    assert!(
        data.ends_with(&kept),
        "the files are not the newest bytes ({} kept, ending {:?})",
        kept.len(),
        String::from_utf8_lossy(&kept[kept.len().saturating_sub(20)..])
    );
    assert!(kept.len() >= 1 << 20, "only {} bytes kept", kept.len());
    let ps: serde_json::Value = serde_json::from_slice(&d.ctl_ok(&["ps", "--json"])).unwrap();
    let s = &ps["domains"][0]["streams"][0];
    assert_eq!(s["dropped_disk"], 0, "{s}");
    assert_eq!(s["bytes_written"], data.len() as u64, "{s}");
    drop(w);
}

/// Case 2, the other half: a disk full of other files (the log has nothing to give) drops and
/// counts bytes, says so once, and says once that it recovered when room comes back: no
/// "cannot write" / "writable again" every second.
#[test]
fn a_disk_full_of_other_files_is_reported_once_and_recovers() {
    let d = Daemon::start();
    let Some(_m) = Mount::new(&d.log("tiny"), &["-t", "tmpfs", "-o", "size=64k", "tmpfs"]) else {
        return;
    };
    let mut w = d.open_pipe("crowded", "tiny/c.log");
    let filler = d.log("tiny/filler");
    let _ = std::fs::write(&filler, vec![0u8; 1 << 20]); // ENOSPC once the disk is full

    // The first failure, then two retries that fail too: still one "cannot write".
    let sent = write_until_retried(&d, &mut w, 2, |_| "a line that has nowhere to go\n".into());
    d.ctl_ok(&["position", "--log", "tiny/c.log"]);
    let ps: serde_json::Value = serde_json::from_slice(&d.ctl_ok(&["ps", "--json"])).unwrap();
    let s = &ps["domains"][0]["streams"][0];
    assert_eq!(s["dropped_disk"], sent as u64, "{s}");
    assert_eq!(s["bytes_written"], 0, "{s}");
    std::fs::remove_file(&filler).unwrap();
    wait_retry_due(&d, "crowded");
    w.write_all(b"room again\n").unwrap();
    d.ctl_ok(&["position", "--log", "tiny/c.log"]);
    assert_eq!(std::fs::read(d.log("tiny/c.log")).unwrap(), b"room again\n");
    let log = d.stderr();
    assert_eq!(count(log.as_bytes(), b"cannot write log file"), 1, "{log}");
    assert_eq!(count(log.as_bytes(), b"writable again"), 1, "{log}");
}

/// Case 6: a signal a daemon may be sent by habit (or by accident) neither kills nor stops
/// logd: each is handled or ignored, and the stream goes on byte for byte.
#[test]
fn stray_signals_neither_kill_nor_stop_logd() {
    use nix::sys::signal::Signal::*;
    let mut d = Daemon::start();
    let mut w = d.open_pipe("sig", "sig.log");
    let mut expected = Vec::new();
    let mut check = |d: &mut Daemon, signo: i32, what: &str| {
        // Taken by a thread of logd (or discarded, when ignored): whatever it does to logd, it
        // has done or is doing.
        wait_for(T, &format!("logd to take {what}"), || {
            let pid = d.pid();
            (!process_alive(pid) || signal_pending(pid, signo) == Some(false)).then_some(())
        });
        d.assert_alive();
        assert_ne!(proc_state(d.pid()), Some('T'), "logd was stopped by {what}");
        let line = format!("after {what}\n");
        w.write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("the pipe broke after {what}: {e}"));
        expected.extend_from_slice(line.as_bytes());
        d.ctl_ok(&["position", "--log", "sig.log"]);
        assert_eq!(
            std::fs::read(d.log("sig.log")).unwrap(),
            expected,
            "after {what}"
        );
    };
    for sig in [
        SIGHUP, SIGUSR2, SIGALRM, SIGTSTP, SIGTTIN, SIGTTOU, SIGXFSZ, SIGXCPU, SIGVTALRM, SIGPROF,
        SIGIO, SIGPWR, SIGSTKFLT, SIGWINCH, SIGURG, SIGCHLD, SIGPIPE,
    ] {
        d.signal(sig);
        check(&mut d, sig as i32, sig.as_str());
    }
    let max = String::from_utf8(Command::new("kill").arg("-l").output().unwrap().stdout).unwrap();
    for n in 0..=(if max.contains("RTMAX-") { 30 } else { 0 }) {
        let name = format!("RTMIN+{n}");
        let st = Command::new("kill")
            .args(["-s", &name, &d.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill -s {name}");
        check(&mut d, nix::libc::SIGRTMIN() + n, &name);
    }
    // Said by the main loop once it has the signal, which a check above need not wait for.
    wait_for(T, "logd to say it ignored SIGUSR2", || {
        let log = d.stderr();
        (log.contains("SIGUSR2") && log.contains("ignored")).then_some(())
    });
}

/// Case 6: SIGQUIT stops logd as SIGTERM does, draining every pipe first (no core dump, no
/// bytes lost).
#[test]
fn sigquit_stops_logd_after_draining() {
    let mut d = Daemon::start();
    let mut w = d.open_pipe("quit", "quit.log");
    let data = numbered_lines(100_000);
    w.write_all(&data).unwrap();
    assert_eq!(
        d.signal_and_wait(nix::sys::signal::Signal::SIGQUIT),
        Some(0)
    );
    assert_eq!(std::fs::read(d.log("quit.log")).unwrap(), data);
    assert!(!d.socket.exists(), "the socket file was left behind");
}

/// Case 6: SIGHUP reloads the configuration file without a re-exec (same pid): new logs take
/// the new rotation settings and `allowed_dirs`; an invalid file is refused and the running
/// configuration stays.
#[test]
fn sighup_reloads_the_config_and_keeps_it_when_the_file_is_bad() {
    let mut d = Daemon::with_config("max_size = \"1 MiB\"\nmax_backups = 2\n");
    let pid = d.pid();
    let config = d.dir.path().join("logd.toml");
    let extra = d.dir.path().join("extra");
    std::fs::create_dir(&extra).unwrap();
    let outside = extra.join("vm.log");
    let outside = outside.to_str().unwrap();
    assert!(
        open_err(&d, "x", outside, false).is_some(),
        "outside the roots"
    );

    let fill = |d: &Daemon, name: &str| {
        let mut w = d.open_pipe(name, &format!("{name}.log"));
        w.write_all(&numbered_lines(20_000)).unwrap();
        d.ctl_ok(&["position", "--log", &format!("{name}.log")]);
        d.log(&format!("{name}.log.0")).exists()
    };
    assert!(!fill(&d, "before"), "1 MiB logs do not rotate at 20 kB");

    std::fs::write(
        &config,
        format!(
            "max_size = \"4 KiB\"\nmax_backups = 2\nallowed_dirs = [{:?}]\n",
            extra
        ),
    )
    .unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for(T, "the reload", || {
        d.stderr().contains("configuration reloaded").then_some(())
    });
    assert!(fill(&d, "after"), "new logs take max_size = 4 KiB");
    assert_eq!(
        open_err(&d, "x", outside, false),
        None,
        "allowed_dirs applied"
    );

    // The log level: `warn` silences the `log opened` lines.
    std::fs::write(&config, "max_size = \"4 KiB\"\nlog_level = \"warn\"\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for(T, "the new level", || {
        d.stderr().contains("log filter changed").then_some(())
    });
    let opened = count(d.stderr().as_bytes(), b"log opened");
    fill(&d, "quiet");
    assert_eq!(count(d.stderr().as_bytes(), b"log opened"), opened);
    std::fs::write(&config, "log_level = \"warning\"\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for(T, "the refused level", || {
        d.stderr().contains("`log_level`").then_some(())
    });

    std::fs::write(&config, "max_size = \"lots\"\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for(T, "the refusal", || {
        d.stderr()
            .contains("configuration not reloaded")
            .then_some(())
    });
    assert!(d.stderr().contains("max_size"), "the error names the key");
    assert!(fill(&d, "kept"), "the running configuration stays");
    d.assert_alive();
    assert_eq!(d.pid(), pid, "no re-exec");
}

/// Case 10d: every byte dropped for the disk is counted once, and the count agrees everywhere:
/// the bytes missing from the file, `ps`, the metrics and the sum of `bytes_dropped` events.
#[test]
fn dropped_bytes_agree_in_ps_metrics_events_and_on_disk() {
    let port = free_port();
    let d = Daemon::with_config(&format!("metrics_listen = \"127.0.0.1:{port}\"\n"));
    let Some(_m) = Mount::new(&d.log("tiny"), &["-t", "tmpfs", "-o", "size=64k", "tmpfs"]) else {
        return;
    };
    let (mut ev, events) = event_stream(&d);
    let mut w = d.open_pipe("drops", "tiny/d.log");
    let filler = d.log("tiny/filler");
    let _ = std::fs::write(&filler, vec![0u8; 1 << 20]); // fills the disk

    // Drops at the first failure, silent drops between retries, and at each retry.
    let mut sent = write_until_retried(&d, &mut w, 2, |i| format!("line {i} has nowhere to go\n"));
    d.ctl_ok(&["position", "--log", "tiny/d.log"]);
    std::fs::remove_file(&filler).unwrap();
    wait_retry_due(&d, "drops");
    w.write_all(b"room again\n").unwrap();
    sent += 11;
    d.ctl_ok(&["position", "--log", "tiny/d.log"]);
    let on_disk = std::fs::metadata(d.log("tiny/d.log")).unwrap().len() as usize;
    let dropped = (sent - on_disk) as u64;
    assert!(dropped > 0);

    let s = first_stream(&d, "drops");
    assert_eq!(s["dropped_disk"], dropped, "ps: {s}");
    assert_eq!(s["bytes_in"], sent as u64, "ps: {s}");

    let metrics = http_get(port, "/metrics");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("logd_stream_dropped_bytes") && l.contains("d.log"))
        .unwrap_or_else(|| panic!("no dropped-bytes metric for d.log:\n{metrics}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(value as u64, dropped, "metrics: {line}");

    wait_for(T, "the events to add up", || {
        let sum: u64 = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "bytes_dropped")
            .map(|e| e["bytes"].as_u64().unwrap())
            .sum();
        (sum == dropped).then_some(())
    });
    let _ = ev.kill();
    let _ = ev.wait();
}

/// Whether `bytes` hold a control character other than newline and tab (a terminal would act
/// on it: ESC sequences, BEL, carriage returns).
fn has_control(bytes: &[u8]) -> bool {
    String::from_utf8_lossy(bytes)
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
}

/// Case 10b: control characters and ANSI escapes in a log path or a domain name reach neither
/// the daemon's log nor a terminal running `logdctl`: they are shown escaped.
#[test]
fn control_characters_in_names_are_escaped() {
    let d = Daemon::start();
    let path = "esc\x1b[2J\x1b[31mred\x07\r.log";
    // Domain names are refused outright.
    let e = open_err(&d, "vm\x1b]0;owned\x07", "named.log", false).expect("refused");
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    let name = "esc";
    let mut w = d.open_pipe(name, path);
    w.write_all(b"x\n").unwrap();
    d.ctl_ok(&["position", "--log", path]);
    for args in [&["ps"][..], &["stats", "esc"], &["console", "list"]] {
        let out = d.ctl_ok(args);
        assert!(
            !has_control(&out),
            "logdctl {args:?}: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    let ps = String::from_utf8(d.ctl_ok(&["ps"])).unwrap();
    assert!(ps.contains(r"esc\x1b[2J\x1b[31mred\x07\x0d.log"), "{ps}");
    // JSON output keeps the exact path (JSON escapes it itself).
    let json: serde_json::Value = serde_json::from_slice(&d.ctl_ok(&["ps", "--json"])).unwrap();
    let shown = json["domains"][0]["streams"][0]["path"].as_str().unwrap();
    assert!(shown.ends_with(path), "{shown:?}");
    // An error that names the path.
    let out = d.ctl_run(&[
        "append",
        "--domain",
        "other",
        "--log",
        &format!("{path}/x"),
        "m",
    ]);
    assert!(!out.status.success());
    assert!(
        !has_control(&out.stderr),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(w);
    d.ctl_ok(&["append", "--domain", "probe", "--log", "probe.log", "p"]);
    let log = d.stderr();
    assert!(!has_control(log.as_bytes()), "the daemon's log: {log:?}");
}

/// Case 4: a log's rotation works in the directory the log was opened in, through a handle
/// logd holds: a symlink swapped in for that directory is never followed (nothing is created
/// or deleted where it points), and the log goes on in the directory it was moved to.
#[test]
fn rotation_never_follows_a_symlink_swapped_in_for_the_directory() {
    let d = Daemon::with_config("max_size = \"4 KiB\"\nmax_backups = 3\n");
    let victim = tempfile::tempdir().unwrap();
    std::fs::write(victim.path().join("x.log.2"), b"the victim's file\n").unwrap();
    let mut w = d.open_pipe("swap", "d/x.log");
    let data = numbered_lines(40_000);
    w.write_all(&data[..2_000]).unwrap();
    d.ctl_ok(&["position", "--log", "d/x.log"]);
    std::fs::rename(d.log("d"), d.log("d.moved")).unwrap();
    std::os::unix::fs::symlink(victim.path(), d.log("d")).unwrap();
    w.write_all(&data[2_000..]).unwrap();
    // `position` would resolve the path through the symlink: wait on the moved file instead.
    wait_for(T, "every byte in the moved directory", || {
        let kept = read_rotated(&d.log("d.moved/x.log"), 3);
        (kept.len() > 4096 && data.ends_with(&kept)).then_some(())
    });
    let mut names: Vec<_> = std::fs::read_dir(victim.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["x.log.2"],
        "files appeared where the symlink points"
    );
    assert_eq!(
        std::fs::read(victim.path().join("x.log.2")).unwrap(),
        b"the victim's file\n"
    );
}

/// Case 4: a directory removed while its log is open is made again (mode 0700) at the next
/// rotation, and the log goes on there with the newest bytes.
#[test]
fn a_removed_directory_is_made_again_at_the_next_rotation() {
    let d = Daemon::with_config("max_size = \"4 KiB\"\nmax_backups = 3\n");
    let mut w = d.open_pipe("gone", "gone/y.log");
    w.write_all(b"before\n").unwrap();
    d.ctl_ok(&["position", "--log", "gone/y.log"]);
    std::fs::remove_dir_all(d.log("gone")).unwrap();
    let data = numbered_lines(40_000);
    w.write_all(&data).unwrap();
    d.ctl_ok(&["position", "--log", "gone/y.log"]);
    let kept = read_rotated(&d.log("gone/y.log"), 3);
    assert!(
        kept.len() > 4096 && data.ends_with(&kept),
        "{} bytes",
        kept.len()
    );
    let mode = std::fs::metadata(d.log("gone")).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700
    );
}

/// A loop-mounted ext4 file system in `dir`, frozen and thawed with `fsfreeze`; thawed and
/// unmounted when dropped.
struct LoopFs {
    mount: Option<Mount>,
    at: std::path::PathBuf,
}

impl LoopFs {
    fn new(image: &std::path::Path, at: &std::path::Path) -> Option<LoopFs> {
        let f = std::fs::File::create(image).unwrap();
        f.set_len(64 << 20).unwrap();
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(image)
            .output();
        match mkfs {
            Ok(o) if o.status.success() => {}
            other => {
                assert!(!required(), "mkfs.ext4 failed: {other:?}");
                eprintln!("skipped: mkfs.ext4 failed: {other:?}");
                return None;
            }
        }
        let mount = Mount::new(at, &["-o", "loop", image.to_str().unwrap()])?;
        Some(LoopFs {
            mount: Some(mount),
            at: at.to_owned(),
        })
    }

    fn freeze(&self, on: bool) {
        let st = Command::new("fsfreeze")
            .arg(if on { "-f" } else { "-u" })
            .arg(&self.at)
            .status()
            .unwrap();
        assert!(st.success() || !on, "fsfreeze -f failed");
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        self.freeze(false);
        self.mount.take();
    }
}

/// Case 1: a frozen file system holds up only the guests that write to it, and those for no
/// longer than the stall bound: with one worker thread, a guest on a healthy disk writes on,
/// `ps` and `position` answer, and the frozen log drops and counts what it cannot write, then
/// goes on when the file system thaws.
#[test]
fn a_frozen_file_system_stalls_only_its_own_guests() {
    let d = Daemon::with_config("workers = 1\n");
    let Some(fs) = LoopFs::new(&d.dir.path().join("fs.img"), &d.log("frozen")) else {
        return;
    };
    let mut frozen_w = d.open_pipe("icy", "frozen/a.log");
    let mut healthy_w = d.open_pipe("warm", "b.log");
    frozen_w.write_all(b"before the freeze\n").unwrap();
    d.ctl_ok(&["position", "--log", "frozen/a.log"]);
    fs.freeze(true);

    // The guest on the frozen disk: writes for 3 s, timing its longest write.
    let flood = std::thread::spawn(move || {
        let chunk = vec![b'f'; 64 * 1024];
        let (start, mut longest, mut sent) = (Instant::now(), Duration::ZERO, 0u64);
        while start.elapsed() < Duration::from_secs(3) {
            let t = Instant::now();
            frozen_w.write_all(&chunk).unwrap();
            longest = longest.max(t.elapsed());
            sent += chunk.len() as u64;
        }
        (frozen_w, longest, sent)
    });
    // A new log on the frozen disk waits for it (its own client only).
    let socket = d.socket.clone();
    let opener = std::thread::spawn(move || {
        let mut c = logd_protocol::client::Client::connect(&socket).unwrap();
        c.open_log(
            DomainId::from_name("qemu", "late"),
            "frozen/late.log",
            OpenFlags::default(),
        )
        .map(|(_, fd)| fd)
    });
    // Meanwhile the guest on the healthy disk, and the sockets, are served: probes until the
    // flood has ended (3 s, past the stall bound), so they span every phase of the stall.
    let mut expected = Vec::new();
    let mut slowest = Duration::ZERO;
    let probing = Instant::now();
    for i in 0.. {
        if i >= 20 && flood.is_finished() {
            break;
        }
        assert!(
            probing.elapsed() < T,
            "the frozen disk's guest has been held up for {T:?}"
        );
        let line = format!("healthy line {i}\n");
        let t = Instant::now();
        healthy_w.write_all(line.as_bytes()).unwrap();
        expected.extend_from_slice(line.as_bytes());
        let out = run_bounded(
            d.ctl().args(["position", "--log", "b.log"]),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "position: {:?}", out);
        let ps = run_bounded(d.ctl().arg("ps"), Duration::from_secs(60));
        assert!(ps.status.success());
        slowest = slowest.max(t.elapsed());
        // Pacing: spreads the probes over the flood; each is checked on its own.
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read(d.log("b.log")).unwrap(), expected);
    // Held up by the frozen disk, these would wait for the thaw (3 s); 2 s leaves room for a
    // loaded machine.
    assert!(
        slowest < Duration::from_secs(2),
        "the healthy guest and the sockets waited {slowest:?} for another's disk"
    );
    let (mut frozen_w, longest, sent) = flood.join().unwrap();
    assert!(
        longest < Duration::from_millis(2500),
        "the frozen disk's guest was held up {longest:?}, past the 1 s bound"
    );

    fs.freeze(false);
    opener
        .join()
        .unwrap()
        .expect("the open on the frozen disk went through after the thaw");
    // The log has every byte it took (its held write came back): it is no longer stalled, and
    // takes the next bytes instead of dropping them.
    let settled = || {
        run_bounded(
            d.ctl().args(["position", "--log", "frozen/a.log"]),
            Duration::from_secs(60),
        )
        .status
        .success()
        .then_some(())
    };
    wait_for(T, "the frozen log's disk to answer", settled);
    frozen_w.write_all(b"after the thaw\n").unwrap();
    wait_for(T, "the frozen log to go on", settled);
    let data = std::fs::read(d.log("frozen/a.log")).unwrap();
    assert!(data.starts_with(b"before the freeze\n"));
    assert!(data.ends_with(b"after the thaw\n"));
    let s = first_stream(&d, "icy");
    let total = 18 + sent + 15;
    assert_eq!(s["bytes_in"], total, "{s}");
    assert!(s["dropped_disk"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(
        s["bytes_in"].as_u64().unwrap(),
        s["bytes_written"].as_u64().unwrap() + s["dropped_disk"].as_u64().unwrap(),
        "{s}"
    );
}

/// A stop signal sent while a re-exec replaces the image is never lost: it stays pending (every
/// thread of logd blocks it and reads it from a signalfd) across the exec, and the new image,
/// once it has taken over, drains and stops. Before, a thread other than the main one took it
/// and the exec forgot it: logd went on serving. The fault hook sends the SIGTERM after the
/// old image's last look for a stop, just before `execve`.
#[test]
fn a_sigterm_sent_just_before_the_exec_stops_the_new_image_after_draining() {
    let mut d = Daemon::start_with(Opts {
        env: vec![(
            "LOGD_REEXEC_FAULT".to_owned(),
            "sigterm-before-exec".to_owned(),
        )],
        ..Opts::default()
    });
    let pid = d.pid();
    let mut w = d.open_pipe("term", "term.log");
    let data = numbered_lines(50_000);
    w.write_all(&data).unwrap();
    assert_eq!(
        d.signal_and_wait(nix::sys::signal::Signal::SIGUSR1),
        Some(0),
        "the re-exec's new image stops cleanly, with the same pid ({pid}):\n{}",
        d.stderr()
    );
    let log = d.stderr();
    assert!(
        log.contains("sending this process SIGTERM just before the exec"),
        "{log}"
    );
    assert!(
        log.contains("took over"),
        "the new image took over first:\n{log}"
    );
    assert_eq!(
        std::fs::read(d.log("term.log")).unwrap(),
        data,
        "every byte drained into the file"
    );
}

/// Scrapers that connect to the metrics endpoint and say nothing never hold up a stop: with
/// every scraper slot taken (each would be dropped after 10 s) and one more waiting, SIGTERM
/// stops logd at once. Before, the accept loop waited for a free slot without looking at the
/// stop, and the stop (or a re-exec, which needs the listener back) waited up to 10 s.
#[test]
fn silent_metrics_scrapers_never_hold_up_a_stop() {
    let port = free_port();
    let mut d = Daemon::with_config(&format!("metrics_listen = \"127.0.0.1:{port}\"\n"));
    // The connections logd holds on the metrics port: its socket fds that /proc/net/tcp shows
    // established with that local port.
    let accepted = |pid: i32| -> usize {
        let inodes: std::collections::HashSet<String> =
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect();
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        table
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 9
                    && f[1].ends_with(&format!(":{port:04X}"))
                    && f[3] == "01"
                    && inodes.contains(f[9])
            })
            .count()
    };
    // Every slot (8) taken by a scraper that sends nothing, and a ninth accepted, waiting for
    // a slot: logd holds all nine.
    let silent: Vec<std::net::TcpStream> = (0..9)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    wait_for(T, "logd to accept the nine silent scrapers", || {
        (accepted(d.pid()) == 9).then_some(())
    });
    let started = Instant::now();
    assert_eq!(
        d.signal_and_wait(nix::sys::signal::Signal::SIGTERM),
        Some(0)
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the stop waited {took:?} for the silent scrapers"
    );
    drop(silent);
}

/// A console that connects to its guest never blocks its thread on the connect: with the
/// guest's socket backlog full (QEMU busy, or a hostile listener that never accepts), a
/// blocking `connect(2)` would wait forever, and with it every domain of the worker thread.
/// With one worker, another domain's log still opens and its bytes still reach the file; the
/// console keeps trying and connects once there is room.
#[test]
fn a_guest_socket_with_a_full_backlog_never_blocks_the_worker() {
    use nix::sys::socket::{
        bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
    };
    let d = Daemon::with_config("workers = 1\n");
    let path = d.log("full.sock");
    let listener = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(listener.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
    listen(&listener, Backlog::new(0).unwrap()).unwrap();
    // The one connection a backlog of 0 queues: the next connect finds it full.
    let _queued = UnixStream::connect(&path).unwrap();
    let mut c = d.client();
    c.set_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut spec = ConsoleSpec::new(
        DomainId::from_name("qemu", "fullguest"),
        "serial0",
        GuestSide::Connect {
            path: path.display().to_string(),
        },
        "full-console.log",
    );
    spec.tcp = None;
    d.ctl_ok(&["log-level", "logd=debug,logd::console=trace"]);
    c.add_console(spec).unwrap();
    // The console has found the backlog full, and tried again.
    wait_for(T, "the console to try the guest's socket", || {
        (count(d.stderr().as_bytes(), b"guest not there yet") >= 2).then_some(())
    });
    let (_, fd) = c
        .open_log(
            DomainId::from_name("qemu", "neighbour"),
            "neighbour.log",
            OpenFlags::default(),
        )
        .expect("the worker thread answers while a console cannot connect");
    let mut w = std::fs::File::from(fd);
    w.write_all(b"still served\n").unwrap();
    d.ctl_ok(&["position", "--log", "neighbour.log"]);
    assert_eq!(
        std::fs::read(d.log("neighbour.log")).unwrap(),
        b"still served\n"
    );
    // Room in the backlog: the console connects.
    let l = std::os::unix::net::UnixListener::from(listener);
    let _first = l.accept().unwrap();
    let (_guest, _) = l.accept().unwrap();
    wait_for(T, "the console to connect", || {
        let list = c.list_consoles().ok()?;
        list.iter()
            .any(|i| i.name == "serial0" && i.guest_connected)
            .then_some(())
    });
}
