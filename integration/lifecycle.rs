//! End-to-end tests of the daemon's lifecycle with systemd (issue #5, first part): readiness
//! notification and socket activation, with a fake notify socket and LISTEN_FDS set by the test
//! (systemd itself does not run here).

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

fn recv_state(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A logd with a fake notify socket: its directory, the socket systemd would read, logd's
/// main socket, and the process.
fn notified_logd() -> (
    tempfile::TempDir,
    UnixDatagram,
    std::path::PathBuf,
    std::process::Child,
) {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let socket = dir.path().join("logd.sock");
    let child = Command::new(LOGD)
        .arg("--socket")
        .arg(&socket)
        .arg("--log-root")
        .arg(dir.path().join("logs"))
        .arg("--consoles-file")
        .arg(dir.path().join("consoles.toml"))
        .env("NOTIFY_SOCKET", &notify)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (dir, sock, socket, child)
}

/// `Type=notify`: READY=1 once logd serves, STOPPING=1 when it shuts down.
#[test]
fn notifies_systemd_when_ready_and_when_stopping() {
    let (_dir, sock, socket, mut child) = notified_logd();
    let ready = recv_state(&sock);
    assert!(ready.contains("READY=1"), "{ready:?}");
    assert!(
        ready.contains(&format!("MAINPID={}", child.id())),
        "{ready:?}"
    );
    // Ready means serving.
    logd_protocol::client::Client::connect(&socket).expect("serving once READY=1 is sent");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(recv_state(&sock).contains("STOPPING=1"));
    assert!(child.wait().unwrap().success());
}

/// Socket activation: with LISTEN_FDS set, logd serves the sockets it was given and creates
/// none of its own; at exit it leaves them to systemd.
#[test]
fn uses_the_sockets_systemd_passes() {
    let dir = tempfile::tempdir().unwrap();
    let main_path = dir.path().join("logd.sock");
    let admin_path = dir.path().join("logd-admin.sock");
    let main = UnixListener::bind(&main_path).unwrap();
    let admin = UnixListener::bind(&admin_path).unwrap();
    let inode = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
    let (main_ino, admin_ino) = (inode(&main_path), inode(&admin_path));
    let (m, a) = (main.as_raw_fd(), admin.as_raw_fd());
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=main:admin exec {LOGD} --socket {} --log-root {}",
            main_path.display(),
            dir.path().join("logs").display()
        ))
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
    pass_fds_from_3(&mut cmd, [m, a]);
    let mut child = cmd.spawn().unwrap();
    drop((main, admin)); // only logd holds them now
    let stderr_path = dir.path().join("stderr");
    let mut c = wait_for(Duration::from_secs(20), "logd on the passed socket", || {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "logd exited ({st}): {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        logd_protocol::client::Client::connect(&main_path).ok()
    });
    c.append_log(
        logd_protocol::DomainId::from_name("qemu", "sa"),
        "sa.log",
        b"activated\n",
    )
    .unwrap();
    let mut admin_client = logd_protocol::client::AdminClient::connect(&admin_path).unwrap();
    assert!(admin_client
        .snapshot()
        .unwrap()
        .version
        .starts_with("logd "));
    // logd did not replace the sockets with its own.
    assert_eq!(inode(&main_path), main_ino);
    assert_eq!(inode(&admin_path), admin_ino);
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(stderr.contains("socket from systemd"), "{stderr}");
    // A re-exec carries systemd's sockets as systemd's: the new image serves them and
    // leaves them at exit too.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    wait_for(
        Duration::from_secs(20),
        "the new image to take over",
        || {
            std::fs::read_to_string(&stderr_path)
                .unwrap_or_default()
                .contains("took over (re-exec 1)")
                .then_some(())
        },
    );
    let lock = dir.path().join("logd.sock.lock");
    let new_pid: i32 = std::fs::read_to_string(&lock)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(new_pid, child.id() as i32, "a re-exec keeps the pid");
    c.append_log(
        logd_protocol::DomainId::from_name("qemu", "sa"),
        "sa.log",
        b"re-executed\n",
    )
    .unwrap();
    assert_eq!(inode(&main_path), main_ino);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(new_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success(), "logd exits 0");
    assert!(
        main_path.exists() && admin_path.exists(),
        "systemd's sockets were removed"
    );
    assert_eq!(
        std::fs::read(dir.path().join("logs/sa.log")).unwrap(),
        b"activated\nre-executed\n"
    );
}

/// A re-exec under systemd: RELOADING=1; the guardian is named MAINPID (behind a barrier) while
/// the pid changes images, so that a new image that died would not end the service; the pid is
/// named back before the new image goes on; READY=1 from the new image, in the same pid.
/// Under socket activation the sockets systemd passed are what logd serves, wherever the
/// configuration (here `--socket`) pointed: the lock file goes beside the activated main
/// socket, the ready line names it, the console socket's default follows it, and the
/// configured directory is not even made.
#[test]
fn the_activated_sockets_paths_win_over_the_configured_ones() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let main_path = run.join("activated.sock");
    let admin_path = run.join("activated-admin.sock");
    let configured = dir.path().join("elsewhere").join("logd.sock");
    let main = UnixListener::bind(&main_path).unwrap();
    let admin = UnixListener::bind(&admin_path).unwrap();
    let (m, a) = (main.as_raw_fd(), admin.as_raw_fd());
    let stderr_path = dir.path().join("stderr");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=main:admin exec {LOGD} --socket {} --log-root {}",
            configured.display(),
            dir.path().join("logs").display()
        ))
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    pass_fds_from_3(&mut cmd, [m, a]);
    let mut child = cmd.spawn().unwrap();
    drop((main, admin));
    let _c = wait_for(Duration::from_secs(20), "logd on the passed socket", || {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "logd exited ({st}): {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        logd_protocol::client::Client::connect(&main_path).ok()
    });
    let lock = run.join("activated.sock.lock");
    let pid = std::fs::read_to_string(&lock).unwrap_or_default();
    assert_eq!(
        pid.trim(),
        child.id().to_string(),
        "the lock beside the activated socket"
    );
    assert!(
        run.join("activated-console.sock").exists(),
        "the console socket's default follows the activated main socket"
    );
    assert!(
        !configured.parent().unwrap().exists(),
        "logd made the configured socket's directory, which it does not serve"
    );
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    let ready = stderr
        .lines()
        .find(|l| l.contains(" ready"))
        .unwrap_or_else(|| panic!("no ready line: {stderr}"));
    assert!(ready.contains(&main_path.display().to_string()), "{ready}");
    assert!(ready.contains(&admin_path.display().to_string()), "{ready}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_reexec_tells_systemd_reloading_then_the_guardian_then_the_same_pid() {
    let (dir, sock, _socket, mut child) = notified_logd();
    assert!(recv_state(&sock).contains("READY=1"));
    let old = child.id();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let reloading = recv_state(&sock);
    assert!(
        reloading.contains("RELOADING=1") && reloading.contains("MONOTONIC_USEC="),
        "{reloading:?}"
    );
    // Everything up to the new image's READY=1 (the barrier's fd is dropped by recv, which is
    // what systemd does once it has read the messages before it).
    let mut seen = Vec::new();
    let ready = loop {
        let m = recv_state(&sock);
        seen.push(m.clone());
        if m.contains("READY=1") {
            break m;
        }
    };
    let lock = dir.path().join("logd.sock.lock");
    let now: u32 = std::fs::read_to_string(lock)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(now, old, "a re-exec keeps the pid");
    assert_eq!(seen.len(), 5, "{seen:?}");
    let guardian: u32 = seen[0]
        .strip_prefix("MAINPID=")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the guardian named first: {seen:?}"));
    assert_ne!(guardian, old, "{seen:?}");
    assert_eq!(seen[1], "BARRIER=1", "{seen:?}");
    assert_eq!(seen[2], format!("MAINPID={old}"), "{seen:?}");
    assert_eq!(seen[3], "BARRIER=1", "{seen:?}");
    assert!(ready.contains(&format!("MAINPID={old}")), "{ready:?}");
    assert!(ready.contains("STATUS=serving (re-exec 1)"), "{ready:?}");
    // The guardian is gone, reaped by the new image (its parent).
    wait_for(Duration::from_secs(20), "the guardian to be gone", || {
        (proc_state(guardian as i32).is_none()).then_some(())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(recv_state(&sock).contains("STOPPING=1"));
    assert!(child.wait().unwrap().success());
}

/// systemd may pass more fds than logd takes (a unit's mistake). logd closes every one it does
/// not use, past its limit too: left open, they would stay open for its life and pass, unnamed,
/// to every re-exec's new process. Here the extras are pipes' write ends, so the test sees each
/// one closed as an end of file on its read end.
#[test]
fn fds_from_systemd_that_logd_does_not_use_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let main_path = dir.path().join("logd.sock");
    let admin_path = dir.path().join("logd-admin.sock");
    let main = UnixListener::bind(&main_path).unwrap();
    let admin = UnixListener::bind(&admin_path).unwrap();
    // Eight extras, so that two are past the eight fds logd looks at.
    let pipes: Vec<_> = (0..8)
        .map(|_| nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap())
        .collect();
    let mut fds = [main.as_raw_fd(), admin.as_raw_fd(), 0, 0, 0, 0, 0, 0, 0, 0];
    for (slot, (_, w)) in fds[2..].iter_mut().zip(&pipes) {
        *slot = w.as_raw_fd();
    }
    // The first six extras carry a name logd ignores; the last two are past its limit.
    let names = ["main", "admin"]
        .into_iter()
        .chain(std::iter::repeat_n("virtlogd-admin.socket", 8))
        .collect::<Vec<_>>()
        .join(":");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ LISTEN_FDS=10 LISTEN_FDNAMES={names} exec {LOGD} --socket {} --log-root {}",
            main_path.display(),
            dir.path().join("logs").display()
        ))
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
    pass_fds_from_3(&mut cmd, fds);
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let readers: Vec<_> = pipes.into_iter().map(|(r, _w)| r).collect(); // logd's are the only writers
    drop((main, admin));
    let stderr_path = dir.path().join("stderr");
    wait_for(Duration::from_secs(20), "logd on the passed socket", || {
        if let Ok(Some(st)) = child.0.try_wait() {
            panic!(
                "logd exited ({st}): {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        logd_protocol::client::Client::connect(&main_path).ok()
    });
    for (i, r) in readers.iter().enumerate() {
        nix::fcntl::fcntl(
            r,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        // logd is serving, so it is past the adoption: an extra still open now stays open.
        let mut buf = [0u8; 1];
        match nix::unistd::read(r, &mut buf) {
            Ok(0) => {}
            other => panic!(
                "extra fd {} (the {}th passed) is still open in logd: read gave {other:?}",
                i + 5,
                i + 3
            ),
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.0.wait().unwrap().success());
}

/// Under systemd, a new image that dies in its take-over leaves the guardian serving, and
/// systemd follows it: the guardian was named `MAINPID` before the exec, so the new image's
/// death was not the unit's, and the guardian's READY=1 names it.
#[test]
fn under_systemd_a_new_image_that_dies_leaves_the_guardian_main() {
    let (dir, sock, socket, mut child) = notified_logd();
    assert!(recv_state(&sock).contains("READY=1"));
    let old = child.id();
    let wrapper = dir.path().join("dies");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nLOGD_REEXEC_FAULT=killed-in-restore exec {LOGD} \"$@\"\n"),
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&wrapper)
        .status()
        .unwrap();
    let out = run_bounded(
        Command::new(LOGDCTL)
            .arg("--socket")
            .arg(&socket)
            .args(["reexec", "--binary"])
            .arg(&wrapper),
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the old binary took over"), "{err}");
    let mut seen = Vec::new();
    let ready = loop {
        let m = recv_state(&sock);
        seen.push(m.clone());
        if m.contains("READY=1") {
            break m;
        }
    };
    assert!(seen[0].contains("RELOADING=1"), "{seen:?}");
    let guardian: u32 = seen[1]
        .strip_prefix("MAINPID=")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the guardian named: {seen:?}"));
    assert_ne!(guardian, old);
    assert_eq!(seen[2], "BARRIER=1", "{seen:?}");
    assert!(ready.contains(&format!("MAINPID={guardian}")), "{ready:?}");
    let lock: u32 = std::fs::read_to_string(dir.path().join("logd.sock.lock"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(lock, guardian, "the guardian serves");
    // The first pid is gone (the new image in it was killed).
    assert!(!child.wait().unwrap().success());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(guardian as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(recv_state(&sock).contains("STOPPING=1"));
    wait_for(Duration::from_secs(20), "the guardian to stop", || {
        (!process_alive(guardian as i32)).then_some(())
    });
}

/// An fd from systemd that is not a UNIX socket (a pipe stored by another logd under a name
/// this one does not know) is closed, never taken as the admin socket by its position: logd
/// binds its own admin socket, which answers.
#[test]
fn an_fd_from_systemd_that_is_not_a_socket_is_not_a_listener() {
    let dir = tempfile::tempdir().unwrap();
    let main_path = dir.path().join("logd.sock");
    let main = UnixListener::bind(&main_path).unwrap();
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=main:something-else exec {LOGD} --socket {} --log-root {}",
            main_path.display(),
            dir.path().join("logs").display()
        ))
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
    pass_fds_from_3(&mut cmd, [main.as_raw_fd(), w.as_raw_fd()]);
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    drop((main, w));
    let admin = dir.path().join("logd-admin.sock");
    wait_for(
        Duration::from_secs(20),
        "the admin socket to answer",
        || {
            if let Ok(Some(st)) = child.0.try_wait() {
                panic!(
                    "logd exited ({st}): {}",
                    std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
                );
            }
            logd_protocol::client::AdminClient::connect(&admin)
                .ok()?
                .snapshot()
                .ok()
        },
    );
    // logd held the pipe's only writer: closed, the reader sees the end.
    nix::fcntl::fcntl(
        &r,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(nix::unistd::read(&r, &mut buf), Ok(0), "logd kept the pipe");
}

/// The state of a `logdctl reexec` that failed: its stderr, with the pid then serving.
fn failed_reexec(socket: &std::path::Path, dir: &std::path::Path) -> (String, u32) {
    let out = run_bounded(
        Command::new(LOGDCTL)
            .arg("--socket")
            .arg(socket)
            .arg("reexec"),
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the re-exec went on: {err}");
    let lock: u32 = std::fs::read_to_string(dir.join("logd.sock.lock"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (err, lock)
}

/// Fills the queue of the datagram socket at `path` until it takes no more (each sender's own
/// buffer is used up first, so fresh senders go on until a fresh one is refused at once).
fn fill_queue(path: &std::path::Path) -> usize {
    let mut sent = 0;
    loop {
        let s = UnixDatagram::unbound().unwrap();
        s.set_nonblocking(true).unwrap();
        let mut this = 0;
        loop {
            match s.send_to(b"X", path) {
                Ok(_) => this += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("filling the notify queue: {e}"),
            }
        }
        sent += this;
        if this == 0 {
            return sent;
        }
    }
}

/// Review finding: under systemd, the old image names the guardian `MAINPID` before the exec,
/// so that a new image that dies is not the unit's main process dying. If that message cannot
/// be sent (the notify socket is gone, or its queue is full), the exec must not happen: the
/// old image undoes the re-exec and goes on, in the same pid, and says why. Once the socket
/// takes messages again, a re-exec goes through.
#[test]
fn a_reexec_that_cannot_name_the_guardian_to_systemd_does_not_exec() {
    let (dir, sock, socket, child) = notified_logd();
    // Killed if the test fails: it would otherwise hold the test's stdout open.
    let mut child = KillOnDrop(child);
    assert!(recv_state(&sock).contains("READY=1"));
    let pid = child.0.id();
    let notify = dir.path().join("notify.sock");

    // The socket is gone.
    drop(sock);
    std::fs::remove_file(&notify).unwrap();
    let (err, serving) = failed_reexec(&socket, dir.path());
    assert!(err.contains("MAINPID"), "{err}");
    assert_eq!(serving, pid, "the same process goes on");
    logd_protocol::client::Client::connect(&socket).expect("still serving");

    // The socket is back, with its queue full.
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let filled = fill_queue(&notify);
    assert!(filled > 0);
    let (err, serving) = failed_reexec(&socket, dir.path());
    assert!(err.contains("MAINPID"), "{err}");
    assert_eq!(serving, pid, "the same process goes on");

    // Read again: the next re-exec goes through, in the same pid.
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    while sock.recv(&mut buf).is_ok() {}
    sock.set_nonblocking(false).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let ready = loop {
        let m = recv_state(&sock);
        if m.contains("READY=1") {
            break m;
        }
    };
    assert!(ready.contains("STATUS=serving (re-exec 1)"), "{ready:?}");
    assert!(ready.contains(&format!("MAINPID={pid}")), "{ready:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(recv_state(&sock).contains("STOPPING=1"));
    assert!(child.0.wait().unwrap().success());
}
