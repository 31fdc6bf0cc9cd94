//! Crash survival with systemd's fd store (issue 15, item 2). The test plays systemd: a fake fd
//! store on the notify socket keeps the fds logd sends with `FDSTORE=1` by name, drops them on
//! `FDSTOREREMOVE=1`, and starts logd again after a SIGKILL with those fds at 3, 4, … and
//! `LISTEN_FDS`/`LISTEN_FDNAMES`, as systemd does. No real systemd runs.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use logd_protocol::{DomainId, OpenFlags};

use crate::harness::*;

/// What the fake store has heard: the fds it keeps, by name, and every other state string.
#[derive(Default)]
struct Heard {
    fds: BTreeMap<String, OwnedFd>,
    states: Vec<String>,
    stored: usize,
    removed: usize,
}

/// systemd's side of the notify socket, as far as the fd store goes.
struct FakeStore {
    heard: Arc<Mutex<Heard>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeStore {
    fn bind(path: &Path) -> FakeStore {
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let heard = Arc::new(Mutex::new(Heard::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (heard.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Some((text, fds)) = recv_with_fds(&sock) else {
                    continue;
                };
                let mut heard = h.lock().unwrap();
                let name = text
                    .lines()
                    .find_map(|l| l.strip_prefix("FDNAME="))
                    .map(str::to_owned);
                if text.lines().any(|l| l == "FDSTORE=1") {
                    let name = name.expect("FDSTORE=1 comes with FDNAME=");
                    assert_eq!(fds.len(), 1, "one fd per stored name: {text:?}");
                    heard.fds.insert(name, fds.into_iter().next().unwrap());
                    heard.stored += 1;
                } else if text.lines().any(|l| l == "FDSTOREREMOVE=1") {
                    let name = name.expect("FDSTOREREMOVE=1 comes with FDNAME=");
                    if heard.fds.remove(&name).is_some() {
                        heard.removed += 1;
                    }
                } else {
                    // BARRIER=1 and the like: their fds are closed here, as systemd would.
                    heard.states.push(text);
                }
            }
        });
        FakeStore {
            heard,
            stop,
            thread: Some(thread),
        }
    }

    /// systemd's restart after a crash: `logd ARGS` with the `N` stored fds at 3, 4, …, named
    /// in `LISTEN_FDNAMES` (the store keeps its copies), its stderr to `stderr`; returns once
    /// it has said `READY=1`.
    fn restart<const N: usize>(
        &self,
        notify: &Path,
        args: &str,
        stderr: &Path,
    ) -> std::process::Child {
        let (names, fds): (Vec<String>, Vec<i32>) = {
            let h = self.heard.lock().unwrap();
            h.fds
                .iter()
                .map(|(n, f)| (n.clone(), f.as_raw_fd()))
                .unzip()
        };
        let fds: [i32; N] = fds
            .try_into()
            .unwrap_or_else(|_| panic!("{N} fds stored: {names:?}"));
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "LISTEN_PID=$$ LISTEN_FDS={} LISTEN_FDNAMES={} exec {LOGD} {args}",
                names.len(),
                names.join(":")
            ))
            .env("NOTIFY_SOCKET", notify)
            .stderr(std::fs::File::create(stderr).unwrap())
            .stdout(Stdio::null());
        pass_fds_from_3(&mut cmd, fds);
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        self.wait("READY=1 from the restarted logd", |h| {
            h.states
                .iter()
                .any(|s| s.contains(&format!("READY=1\nMAINPID={pid}")))
                .then_some(())
        });
        child
    }

    fn wait<T>(&self, what: &str, mut f: impl FnMut(&mut Heard) -> Option<T>) -> T {
        wait_for(Duration::from_secs(30), what, || {
            f(&mut self.heard.lock().unwrap())
        })
    }
}

impl Drop for FakeStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One datagram and the fds it carried (close-on-exec), or None on a timeout.
#[allow(unsafe_code)]
fn recv_with_fds(sock: &UnixDatagram) -> Option<(String, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 8]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: SCM_RIGHTS just installed these fds in this process; nothing else
                // knows their numbers, so each is owned (and closed) once, here.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    let n = msg.bytes;
    Some((String::from_utf8_lossy(&buf[..n]).into_owned(), fds))
}

/// Writer `i`'s line number `n`: fixed width, so a stream's bytes are known from its length.
fn line(i: usize, n: u64) -> String {
    format!("w{i} {n:010}\n")
}

const WRITERS: usize = 3;
/// The most a writer sends: enough to be writing at full speed when logd is killed.
const CAP: u64 = 3_000_000;

/// The largest read logd makes from a pipe (`READ_CHUNK`): the widest a loss's bracket may be.
const MAX_READ: u64 = 1 << 20;

/// A SIGKILL under full write load loses no byte that was still in a pipe: logd stores each
/// pipe's read end in (fake) systemd's fd store, the restarted logd re-adopts them, the writers
/// never see EPIPE, and each log is its writer's stream with exactly the counted loss (bytes
/// logd had read and not yet written, counted from the tally that outlived it) missing at the
/// crash, or a loss within the bracket logd logged when it died around a read.
#[test]
fn a_sigkill_under_load_keeps_every_pipe_through_the_fd_store() {
    sigkill_under_load(false);
}

/// The same after a re-exec under load: the new image maps the tally again, and the carried
/// logs go on counting into their slots (a slot left behind would say nothing of the loss).
#[test]
fn a_sigkill_under_load_after_a_reexec_counts_from_the_carried_slots() {
    sigkill_under_load(true);
}

fn sigkill_under_load(reexec: bool) {
    let _cpu = cpu_heavy();
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let store = FakeStore::bind(&notify);
    let socket = dir.path().join("logd.sock");
    let logs = dir.path().join("logs");
    let config = dir.path().join("logd.toml");
    std::fs::write(&config, "fd_store = true\nmax_size = \"1 GiB\"\n").unwrap();
    let args = format!(
        "--config {} --socket {} --log-root {} --consoles-file {}",
        config.display(),
        socket.display(),
        logs.display(),
        dir.path().join("consoles.toml").display()
    );

    // The first logd: it stores each pipe as its log opens.
    let stderr1 = dir.path().join("stderr1");
    let mut first = Command::new(LOGD)
        .args(args.split(' '))
        .env("NOTIFY_SOCKET", &notify)
        .stderr(std::fs::File::create(&stderr1).unwrap())
        .spawn()
        .unwrap();
    store.wait("READY=1 from the first logd", |h| {
        h.states.iter().any(|s| s.contains("READY=1")).then_some(())
    });
    let mut client = logd_protocol::client::Client::connect(&socket).unwrap();
    let pipes: Vec<OwnedFd> = (0..WRITERS)
        .map(|i| {
            let (_, w) = client
                .open_log(
                    DomainId::from_name("qemu", &format!("vm{i}")),
                    &format!("w{i}.log"),
                    OpenFlags::default(),
                )
                .unwrap();
            w
        })
        .collect();
    drop(client);
    store.wait("every pipe stored", |h| {
        (h.fds.len() == WRITERS).then_some(())
    });
    assert!(
        dir.path().join("logd.sock.fdstore").exists(),
        "the record is written before any fd is stored"
    );
    let tally = dir.path().join("logd.sock.tally");
    assert!(tally.exists(), "the stored pipes count into the tally");

    // Writers at full speed, counting lines sent and any failed write.
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = pipes
        .into_iter()
        .enumerate()
        .map(|(i, fd)| {
            let (sent, failures) = (sent.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut f = std::fs::File::from(fd);
                let mut buf = Vec::with_capacity(64 * 1024);
                let mut n = 0;
                while n < CAP {
                    buf.clear();
                    let until = (n + 4096).min(CAP);
                    for k in n..until {
                        buf.extend_from_slice(line(i, k).as_bytes());
                    }
                    if let Err(e) = f.write_all(&buf) {
                        failures.lock().unwrap().push(format!("writer {i}: {e}"));
                        return;
                    }
                    n = until;
                    sent[i].store(n, Ordering::Relaxed);
                }
            })
        })
        .collect();

    if reexec {
        wait_for(Duration::from_secs(30), "the writers under way", || {
            sent.iter()
                .all(|s| s.load(Ordering::Relaxed) > 0)
                .then_some(())
        });
        let ready = |h: &Heard| h.states.iter().filter(|s| s.contains("READY=1")).count();
        let before = ready(&store.heard.lock().unwrap());
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(first.id() as i32),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
        store.wait("READY=1 after the re-exec", |h| {
            (ready(h) > before).then_some(())
        });
    }

    // The kill comes once logd has sampled the counters under load (the record is rewritten
    // after the writers started), while every writer is still writing.
    let record = dir.path().join("logd.sock.fdstore");
    let started = std::time::SystemTime::now();
    wait_for(Duration::from_secs(30), "a sample under load", || {
        let m = std::fs::metadata(&record).ok()?.modified().ok()?;
        (m > started && sent.iter().all(|s| s.load(Ordering::Relaxed) > 0)).then_some(())
    });
    let at_kill: Vec<u64> = sent.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    first.wait().unwrap();
    assert!(
        at_kill.iter().all(|&n| n < CAP),
        "every writer was still writing at the kill: {at_kill:?} of {CAP}"
    );
    let before = Instant::now();

    // systemd's restart: the stored fds at 3, 4, 5, named. The store keeps its copies.
    let stderr2 = dir.path().join("stderr2");
    let mut second = store.restart::<WRITERS>(&notify, &args, &stderr2);
    let second_pid = second.id();
    eprintln!(
        "logd restarted in {:?}; lines sent at the kill: {at_kill:?}",
        before.elapsed()
    );
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(
        *failures.lock().unwrap(),
        Vec::<String>::new(),
        "a writer saw its pipe fail"
    );
    // The writers closed their pipes: each log closes and leaves the store.
    store.wait("every pipe removed from the store", |h| {
        h.fds.is_empty().then_some(())
    });

    // Each log: a prefix of its stream, then a suffix, with the counted loss between.
    let stderr = std::fs::read_to_string(&stderr2).unwrap();
    for i in 0..WRITERS {
        let path = logs.join(format!("w{i}.log"));
        let want_len = line(i, 0).len() as u64 * CAP;
        wait_for(Duration::from_secs(30), "the log's last bytes", || {
            let now = std::fs::metadata(&path).ok()?.len();
            let stable = now > 0 && stderr_closed(&stderr2, &path);
            stable.then_some(())
        });
        let got = std::fs::read(&path).unwrap();
        let stream: Vec<u8> = (0..CAP).flat_map(|k| line(i, k).into_bytes()).collect();
        assert_eq!(stream.len() as u64, want_len);
        let lost = stream.len() - got.len();
        let prefix = got.iter().zip(&stream).take_while(|(a, b)| a == b).count();
        assert!(
            stream.ends_with(&got[prefix..]),
            "w{i}.log is not a prefix and a suffix of its stream (they part at byte {prefix})"
        );
        let readopted = line_for(&stderr, &path, "re-adopted after a crash");
        assert!(
            field(readopted, "lost_estimate").is_none(),
            "w{i}.log: the loss was estimated, not counted: {readopted}"
        );
        let (at_least, at_most) = match field(readopted, "lost") {
            Some(n) => (n, n),
            None => (
                field(readopted, "lost_at_least").expect(readopted),
                field(readopted, "lost_at_most").expect(readopted),
            ),
        };
        // Bytes dropped otherwise (a file system stalled past the bound, in either process) are
        // missing too, and counted apart: the log's drops at its close, less the crash's loss.
        let closed = line_for(&stderr, &path, "log closed");
        let dropped = field(closed, "dropped").expect(closed);
        let other = dropped - at_least;
        let crash = (lost as u64)
            .checked_sub(other)
            .unwrap_or_else(|| panic!("w{i}.log: {lost} bytes missing, {other} dropped"));
        let counted = if at_least == at_most {
            format!("exactly {at_least}")
        } else {
            format!(
                "between {at_least} and {at_most} (a read of {} in flight)",
                at_most - at_least
            )
        };
        eprintln!(
            "w{i}.log: {} of {} bytes, lost {crash} at byte {prefix} (and {other} dropped \
             otherwise); logd counted {counted}",
            got.len(),
            stream.len()
        );
        assert!(
            (at_least..=at_most).contains(&crash),
            "w{i}.log lost {crash} bytes in the crash; logd counted {counted}"
        );
        assert!(
            at_most - at_least <= MAX_READ,
            "w{i}.log: a bracket wider than one read: {counted}"
        );
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(second.wait().unwrap().success());
    assert!(
        !record.exists(),
        "a stop removes the record along with the stored fds"
    );
    assert!(!tally.exists(), "and the tally");
}

/// Whether the second logd has logged the log at `path` closed.
fn stderr_closed(stderr: &Path, path: &Path) -> bool {
    std::fs::read_to_string(stderr)
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains("log closed") && l.contains(&path.display().to_string()))
}

/// The line of the log at `path` that says `what`.
fn line_for<'a>(stderr: &'a str, path: &Path, what: &str) -> &'a str {
    let p = path.display().to_string();
    stderr
        .lines()
        .find(|l| l.contains(what) && l.contains(&p))
        .unwrap_or_else(|| panic!("no line for {p} saying {what:?}:\n{stderr}"))
}

/// The value of ` name=N` on `line`, if it has it.
fn field(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!(" {name}="))?;
    line[at + name.len() + 2..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A notify socket that systemd does not drain never holds logd: with its queue full (every
/// log's `FDSTORE=1`), notifications cannot be sent, and logd goes on all the same (the messages
/// are lost and logged, the pipes past the queue not stored). A re-exec answers at once: it
/// fails, since the guardian cannot be named `MAINPID`, and the same process goes on serving.
#[test]
fn a_notify_socket_nobody_reads_never_holds_logd() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    // Bound and never read.
    let _deaf = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    let socket = dir.path().join("logd.sock");
    let config = dir.path().join("logd.toml");
    std::fs::write(&config, "fd_store = true\n").unwrap();
    let logd = Command::new(LOGD)
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .arg("--log-root")
        .arg(dir.path().join("logs"))
        .arg("--consoles-file")
        .arg(dir.path().join("consoles.toml"))
        .env("NOTIFY_SOCKET", &notify)
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    // Killed whatever happens: a failing test must not leave it running.
    let _logd = KillOnDrop(logd);
    let mut client = wait_for(Duration::from_secs(20), "logd to serve", || {
        logd_protocol::client::Client::connect(&socket).ok()
    });
    // More stored pipes than the queue holds (net.unix.max_dgram_qlen is 512 by default).
    let pipes: Vec<OwnedFd> = (0..700)
        .map(|i| {
            client
                .open_log(
                    DomainId::from_name("qemu", "many"),
                    &format!("l{i}.log"),
                    OpenFlags::default(),
                )
                .unwrap()
                .1
        })
        .collect();
    // The recorder has tried them all once the record names the last one.
    let record = dir.path().join("logd.sock.fdstore");
    wait_for(
        Duration::from_secs(30),
        "the record to name every pipe",
        || {
            let n = std::fs::read(&record).map(|b| b.len()).unwrap_or(0);
            (n > 0
                && std::fs::read_to_string(dir.path().join("stderr"))
                    .unwrap_or_default()
                    .contains("not stored"))
            .then_some(())
        },
    );
    let out = run_bounded(
        Command::new(LOGDCTL)
            .arg("--socket")
            .arg(&socket)
            .args(["reexec", "--json"]),
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot name the guardian"),
        "the re-exec went on without naming the guardian MAINPID: {err}\n{}",
        std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
    );
    client = logd_protocol::client::Client::connect(&socket).unwrap();
    client.position("l699.log").expect("logd still serves");
    drop(pipes);
}

/// A SIGKILL keeps a console whole through the fd store: its guest's connection (a guest
/// chardev without `reconnect=` would never come back otherwise), its guest listener, and its
/// subscribers' listeners, on which a subscriber connects while logd is down and is served by
/// the restarted logd. Output the guest wrote meanwhile reaches the log and that subscriber,
/// and the subscriber's input reaches the guest. The stored connection is the guest's current
/// one: a guest that left and came back before the crash is the one kept.
#[test]
fn a_sigkill_keeps_a_console_s_guest_and_listeners_through_the_fd_store() {
    use logd_protocol::{ConsoleSpec, GuestSide};
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let store = FakeStore::bind(&notify);
    let socket = dir.path().join("logd.sock");
    let logs = dir.path().join("logs");
    let config = dir.path().join("logd.toml");
    std::fs::write(&config, "fd_store = true\n").unwrap();
    let args = format!(
        "--config {} --socket {} --log-root {} --consoles-file {}",
        config.display(),
        socket.display(),
        logs.display(),
        dir.path().join("consoles.toml").display()
    );
    let first = KillOnDrop(
        Command::new(LOGD)
            .args(args.split(' '))
            .env("NOTIFY_SOCKET", &notify)
            .stderr(std::fs::File::create(dir.path().join("stderr1")).unwrap())
            .spawn()
            .unwrap(),
    );
    store.wait("READY=1 from the first logd", |h| {
        h.states.iter().any(|s| s.contains("READY=1")).then_some(())
    });
    let guest_sock = logs.join("guest.sock");
    let sub_sock = logs.join("sub.sock");
    let mut client = logd_protocol::client::Client::connect(&socket).unwrap();
    let mut spec = ConsoleSpec::new(
        DomainId::from_name("qemu", "vm1"),
        "serial0",
        GuestSide::Listen {
            path: guest_sock.display().to_string(),
        },
        "console.log",
    );
    spec.tcp = Some("127.0.0.1:0".into());
    spec.unix = Some(sub_sock.display().to_string());
    // Its TCP subscriber types: the console opts in, and keeps that through the crash (the
    // record carries its access settings). Its stream is compared byte for byte: no notices,
    // which the record carries too.
    let (added, _) = client
        .add_console_with(
            spec,
            vec![
                logd_protocol::ConsoleOption::TcpWrite,
                logd_protocol::ConsoleOption::NoNotices,
            ],
        )
        .unwrap();
    let tcp = added.tcp.expect("a TCP listener");
    drop(client);
    let guest_name = |h: &Heard| {
        h.fds
            .keys()
            .find(|n| n.starts_with("logd-con-") && n.ends_with("-guest"))
            .cloned()
    };
    store.wait("the console's three listeners stored", |h| {
        (h.fds.keys().filter(|n| n.starts_with("logd-con-")).count() == 3).then_some(())
    });

    // A guest comes and goes; the second one is the one kept.
    let first_guest = UnixStream::connect(&guest_sock).unwrap();
    store.wait("the first guest's connection stored", |h| guest_name(h));
    drop(first_guest);
    store.wait("the first guest's connection removed", |h| {
        guest_name(h).is_none().then_some(())
    });
    let mut guest = UnixStream::connect(&guest_sock).unwrap();
    guest
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    store.wait("the second guest's connection stored", |h| guest_name(h));
    guest.write_all(b"before the crash\n").unwrap();
    let log = logs.join("console.log");
    wait_for(
        Duration::from_secs(20),
        "the guest's output in the log",
        || {
            let l = std::fs::read(&log).ok()?;
            (l == b"before the crash\n").then_some(())
        },
    );

    // The crash; while logd is down, the guest writes and a subscriber connects.
    let mut first = first;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.0.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    first.0.wait().unwrap();
    guest.write_all(b"while logd was down\n").unwrap();
    let mut sub = std::net::TcpStream::connect(&tcp).expect("the TCP listener outlives logd");
    sub.set_read_timeout(Some(Duration::from_secs(20))).unwrap();

    // systemd's restart with the four stored sockets.
    let stderr2 = dir.path().join("stderr2");
    let second = KillOnDrop(store.restart::<4>(&notify, &args, &stderr2));
    let second_pid = second.0.id();

    // The subscriber that waited in the backlog is served: what the guest wrote while logd was
    // down (live, or from the replay ring if the restarted logd read it first), then what it
    // writes now. The replay ring starts empty: what came before the crash is in the log only.
    guest.write_all(b"after the restart\n").unwrap();
    let want = b"while logd was down\nafter the restart\n";
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < want.len() {
        let n = sub
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("the subscriber is not served ({e}); it got {got:?}"));
        assert!(n > 0, "the subscriber was closed: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, want);
    wait_for(Duration::from_secs(20), "every line in the log", || {
        let l = std::fs::read(&log).ok()?;
        (l == b"before the crash\nwhile logd was down\nafter the restart\n").then_some(())
    });
    // Its input reaches the guest, on the connection it never lost: the console made again
    // kept `tcp_write`.
    sub.write_all(b"typed\n").unwrap();
    let mut typed = [0u8; 6];
    guest.read_exact(&mut typed).unwrap();
    assert_eq!(&typed, b"typed\n");
    // The UNIX listener was kept too.
    UnixStream::connect(&sub_sock).expect("the subscribers' UNIX listener is served");
    let mut client = logd_protocol::client::Client::connect(&socket).unwrap();
    let consoles = client.list_consoles().unwrap();
    assert_eq!(consoles.len(), 1);
    assert!(consoles[0].guest_connected);
    assert_eq!(consoles[0].tcp.as_deref(), Some(tcp.as_str()), "same port");
    let stderr = std::fs::read_to_string(&stderr2).unwrap();
    let made = stderr
        .lines()
        .find(|l| l.contains("console made again after a crash"))
        .unwrap_or_else(|| panic!("{stderr}"));
    // Its log's loss counted from the tally, not estimated.
    assert!(field(made, "lost").is_some(), "{made}");

    // After a re-exec, the new image keeps the store up to date: the guest leaving takes its
    // connection out.
    let ready = |h: &Heard| h.states.iter().filter(|s| s.contains("READY=1")).count();
    let before = ready(&store.heard.lock().unwrap());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second_pid as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    store.wait("READY=1 after the re-exec", |h| {
        (ready(h) > before).then_some(())
    });
    drop(guest);
    store.wait("the guest's connection removed after the re-exec", |h| {
        guest_name(h).is_none().then_some(())
    });
    assert_eq!(
        store.heard.lock().unwrap().fds.len(),
        3,
        "the listeners stay stored"
    );

    // A stop takes the console's sockets out of the store.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut second = second;
    assert!(second.0.wait().unwrap().success());
    store.wait("every socket removed from the store", |h| {
        h.fds.is_empty().then_some(())
    });
}
