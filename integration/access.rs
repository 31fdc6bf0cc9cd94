//! End-to-end tests of who may reach logd and how much one client may hold (issue 12, cases 7,
//! 9 and 10): the real `logd` and `logdctl`, other uids through `setpriv`, real sockets.
//!
//! The tests of case 7 use the real non-root default directory, `/tmp/logd-$UID`, for uids
//! that no other test uses (54321, 54322), and remove it when they end.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;
use logd_protocol::admin::EventKind;
use logd_protocol::client::{AdminClient, ClientError};
use logd_protocol::codec::{decode, encode_frame, MAX_REQUEST_FRAME};
use logd_protocol::{ErrorCode, Hello, ReadFrom, Request, Response, MAX_READ_LEN};

const MIB: usize = 1024 * 1024;
/// The uid that plants things for the victims below.
const ATTACKER: u32 = 65534;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A home directory owned by `uid`, with a file the attacker wants to overwrite.
struct Victim {
    uid: u32,
    home: tempfile::TempDir,
    file: PathBuf,
}

const PRECIOUS: &[u8] = b"the victim's precious data\n";

impl Victim {
    fn new(uid: u32) -> Victim {
        let home = tempfile::Builder::new()
            .prefix("logd-victim-")
            .tempdir()
            .unwrap();
        let file = home.path().join("precious.txt");
        std::fs::write(&file, PRECIOUS).unwrap();
        chown(home.path(), uid);
        chown(&file, uid);
        Victim { uid, home, file }
    }

    /// The non-root default socket directory of this uid (XDG_RUNTIME_DIR unset).
    fn tmp_dir(&self) -> PathBuf {
        PathBuf::from(format!("/tmp/logd-{}", self.uid))
    }

    /// A command run as this uid, with XDG_RUNTIME_DIR unset.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("setpriv");
        c.args([
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.uid),
            "--clear-groups".into(),
            program.into(),
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", self.home.path());
        c
    }

    fn file_untouched(&self) {
        let m = std::fs::symlink_metadata(&self.file).unwrap();
        assert!(m.file_type().is_file());
        assert_eq!(
            std::fs::read(&self.file).unwrap(),
            PRECIOUS,
            "the victim's file was written through a planted symlink"
        );
    }
}

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
}

/// Removes a directory tree when dropped (the /tmp directories of the tests below).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills a process when dropped (a daemon that a test expects to refuse to start).
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `cmd` (a logd) with stderr to `stderr`, and waits until it exits or `socket` answers.
/// Returns its exit status if it exited (the process is killed at the end of the test otherwise).
fn start_or_exit(
    mut cmd: Command,
    stderr: &Path,
    socket: &Path,
) -> (KillOnDrop, Option<std::process::ExitStatus>) {
    let err = std::fs::File::create(stderr).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn logd");
    let mut guard = KillOnDrop(Some(child));
    let status = wait_for(Duration::from_secs(30), "logd to start or exit", || {
        let c = guard.0.as_mut().unwrap();
        if let Some(st) = c.try_wait().unwrap() {
            return Some(Some(st));
        }
        UnixStream::connect(socket).is_ok().then_some(None)
    });
    if status.is_some() {
        guard.0 = None;
    }
    (guard, status)
}

/// Sets up `/tmp/logd-UID` as an attacker would: created first, with a `logd.sock.lock` and a
/// `logd.log` symlink to the victim's file.
fn plant(victim: &Victim, owner: u32, mode: u32) -> RemoveOnDrop {
    let dir = victim.tmp_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let guard = RemoveOnDrop(dir.clone());
    chown(&dir, owner);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    for name in ["logd.sock.lock", "logd.log"] {
        let link = dir.join(name);
        std::os::unix::fs::symlink(&victim.file, &link).unwrap();
        chown(&link, ATTACKER);
    }
    guard
}

/// A raw connection to a socket that has done the handshake (or was refused).
fn hello(socket: &Path) -> (UnixStream, Response) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // A refused peer is answered before its hello is read, and the write may then fail.
    let _ = s.write_all(&encode_frame(&Hello::current(), MAX_REQUEST_FRAME).unwrap());
    let resp = read_response(&mut s).expect("an answer to the hello");
    (s, resp)
}

/// Reads one response frame; None at EOF.
fn read_response(s: &mut UnixStream) -> Option<Response> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut payload).unwrap();
    Some(decode(&payload).unwrap())
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Case 7: the socket directory and the server's identity

/// Case 7: another user created `/tmp/logd-$UID` first (or the victim's own directory is open to
/// others), and planted `logd.sock.lock` as a symlink to the victim's file. logd refuses the
/// directory, naming it, its owner and its mode, and writes nothing through the symlink.
#[test]
fn a_foreign_or_open_socket_dir_in_tmp_is_refused() {
    if require_tool("setpriv").is_none() {
        return;
    }
    let victim = Victim::new(54321);
    for (owner, mode, says) in [
        (ATTACKER, 0o777, "owned by uid 65534"),
        (victim.uid, 0o777, "mode 0777"),
        (victim.uid, 0o750, "mode 0750"),
    ] {
        let _dir = plant(&victim, owner, mode);
        let socket = victim.tmp_dir().join("logd.sock");
        let mut cmd = victim.command(LOGD);
        cmd.args(["--log-root"])
            .arg(victim.home.path().join("logs"));
        let stderr = victim.home.path().join("logd.stderr");
        let (_logd, status) = start_or_exit(cmd, &stderr, &socket);
        let text = std::fs::read_to_string(&stderr).unwrap();
        victim.file_untouched();
        let status = status.unwrap_or_else(|| {
            panic!("logd served from a directory owned by uid {owner} with mode {mode:o}:\n{text}")
        });
        assert!(!status.success());
        assert!(text.contains("/tmp/logd-54321"), "{text}");
        assert!(text.contains(says), "{says:?} not in {text}");
        assert!(
            !socket.exists(),
            "a socket was created in the refused directory"
        );
    }
    // A missing directory is created, mode 0700, and served from.
    let dir = RemoveOnDrop(victim.tmp_dir());
    let _ = std::fs::remove_dir_all(&dir.0);
    let socket = dir.0.join("logd.sock");
    let mut cmd = victim.command(LOGD);
    cmd.args(["--log-root"])
        .arg(victim.home.path().join("logs"));
    let stderr = victim.home.path().join("logd.stderr");
    let (_logd, status) = start_or_exit(cmd, &stderr, &socket);
    assert!(
        status.is_none(),
        "{}",
        std::fs::read_to_string(&stderr).unwrap()
    );
    let m = std::fs::symlink_metadata(&dir.0).unwrap();
    assert!(m.is_dir());
    assert_eq!(m.uid(), victim.uid);
    assert_eq!(m.mode() & 0o777, 0o700);
}

/// Case 7: a lock file that is a symlink is not followed, even in a directory that passes the
/// checks (its owner planted it, or a daemon of an older logd left one).
#[test]
fn a_symlinked_lock_file_is_not_followed() {
    let dir = tempfile::Builder::new()
        .prefix("logd-access-")
        .tempdir()
        .unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, PRECIOUS).unwrap();
    let socket = dir.path().join("logd.sock");
    std::os::unix::fs::symlink(&victim, dir.path().join("logd.sock.lock")).unwrap();
    let mut cmd = Command::new(LOGD);
    cmd.arg("--socket")
        .arg(&socket)
        .arg("--log-root")
        .arg(dir.path().join("logs"))
        .arg("--consoles-file")
        .arg(dir.path().join("consoles.toml"));
    let stderr = dir.path().join("logd.stderr");
    let (_logd, status) = start_or_exit(cmd, &stderr, &socket);
    let text = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        PRECIOUS,
        "the pid was written through the symlink:\n{text}"
    );
    let status = status.unwrap_or_else(|| panic!("logd started with a symlinked lock:\n{text}"));
    assert!(!status.success());
    assert!(text.contains("logd.sock.lock"), "{text}");
    assert!(text.contains("symlink"), "{text}");
}

/// Case 7: the non-root `logdctl` autostarts a daemon in `/tmp/logd-$UID`. In a directory the
/// attacker made, it refuses before it opens `logd.log` (a planted symlink) or starts anything.
#[test]
fn logdctl_autostart_refuses_a_foreign_socket_dir() {
    if require_tool("setpriv").is_none() {
        return;
    }
    let victim = Victim::new(54322);
    let _dir = plant(&victim, ATTACKER, 0o777);
    let out = run_bounded(
        victim.command(LOGDCTL).args([
            "run", "--domain", "v", "--log", "v.log", "--", "echo", "secret",
        ]),
        Duration::from_secs(60),
    );
    let err = stderr_of(&out);
    // Before the fix a daemon was started there: stop it.
    if let Some(pid) = err
        .split("(pid ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    victim.file_untouched();
    assert!(
        !out.status.success(),
        "logdctl ran in a foreign directory: {err}"
    );
    assert!(err.contains("/tmp/logd-54322"), "{err}");
    assert!(err.contains("owned by uid 65534"), "{err}");
    assert!(!victim.tmp_dir().join("logd.sock").exists());
}

/// Case 7: `logdctl` checks who serves the socket (SO_PEERCRED) before it sends anything: a
/// daemon run by another uid (here a real logd, run by the attacker, which serves root) gets
/// neither the command's output nor a request.
#[test]
fn logdctl_refuses_a_daemon_of_another_uid() {
    if require_tool("setpriv").is_none() {
        return;
    }
    let d = Daemon::start_with(Opts {
        as_uid: Some(ATTACKER),
        ..Opts::default()
    });
    let out = d.ctl_run(&[
        "run", "--domain", "v", "--log", "v.log", "--", "echo", "secret",
    ]);
    let err = stderr_of(&out);
    assert!(
        !out.status.success(),
        "logdctl talked to uid {ATTACKER}'s logd"
    );
    assert!(
        err.contains("uid 65534") && err.contains(&d.socket.display().to_string()),
        "{err}"
    );
    assert!(!d.log("v.log").exists(), "the output went to the attacker");
    // Nothing was sent: the daemon saw no request.
    assert!(!d.stderr().contains("OpenLog"), "{}", d.stderr());
    // The admin socket too.
    let out = d.ctl_run(&["ps"]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("uid 65534"), "{}", stderr_of(&out));
    // An operator who runs logd as a dedicated user says so.
    let out = run_bounded(
        d.ctl()
            .args([
                "--server-uid",
                "65534",
                "append",
                "--domain",
                "t",
                "--log",
                "x.log",
                "hi",
            ])
            .env_remove("LOGD_SERVER_UID"),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
}

// ---------------------------------------------------------------------------------------------
// Case 9: connections and memory

/// Case 9a: connections that say hello and then nothing are closed after `client_idle_timeout`,
/// so they cannot lock every client out; an event stream is not idle and stays.
#[test]
fn idle_connections_do_not_lock_clients_out() {
    let d =
        Daemon::with_config("max_clients = 4\nmax_clients_per_peer = 4\nclient_idle_timeout = 1\n");
    // An event stream, older than every idle connection below.
    let mut events = AdminClient::connect(&d.dir.path().join("logd-admin.sock")).unwrap();
    events.subscribe_events().unwrap();
    let mut idle: Vec<UnixStream> = (0..4)
        .map(|_| {
            let (s, r) = hello(&d.socket);
            assert!(matches!(r, Response::Welcome(_)), "{r:?}");
            s
        })
        .collect();
    // Every slot is taken; a client gets in once the idle ones are gone.
    wait_for(Duration::from_secs(60), "a client to be served", || {
        d.ctl_run(&["append", "--domain", "t", "--log", "x.log", "hi"])
            .status
            .success()
            .then_some(())
    });
    // Each idle connection was told why it was closed.
    for s in &mut idle {
        match read_response(s) {
            Some(Response::Error(e)) => {
                assert_eq!(e.code, ErrorCode::TimedOut, "{}", e.message);
                assert!(e.message.contains("idle"), "{}", e.message);
            }
            other => panic!("expected an idle notice, got {other:?}"),
        }
        assert!(read_response(s).is_none(), "the idle connection is closed");
    }
    // The event stream, idle just as long, still streams.
    let _pipe = d.open_pipe("ev", "ev.log");
    loop {
        let ev = events.next_event().expect("the event stream is still open");
        if matches!(ev.kind, EventKind::LogOpened { .. }) {
            break;
        }
    }
}

/// Case 9a: one process cannot take every `max_clients` slot: beyond `max_clients_per_peer`
/// its connections are refused with an error naming the limit, and other clients are served.
#[test]
fn one_peer_cannot_take_every_slot() {
    let d = Daemon::with_config("max_clients = 8\nmax_clients_per_peer = 3\n");
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..8 {
        match hello(&d.socket) {
            (s, Response::Welcome(_)) => held.push(s),
            (_, Response::Error(e)) => refused.push(e),
            (_, other) => panic!("unexpected {other:?}"),
        }
    }
    // Another process is served although this one tried to take every slot.
    let out = d.ctl_run(&["append", "--domain", "t", "--log", "x.log", "hi"]);
    assert!(out.status.success(), "locked out: {}", stderr_of(&out));
    assert_eq!(held.len(), 3);
    assert_eq!(refused.len(), 5);
    for e in &refused {
        assert_eq!(e.code, ErrorCode::TooManyClients, "{}", e.message);
        assert!(
            e.message.contains("max_clients_per_peer")
                && e.message.contains(&std::process::id().to_string()),
            "{}",
            e.message
        );
    }
    // A slot of this process frees when one of its connections closes.
    drop(held.pop());
    wait_for(Duration::from_secs(30), "a free slot for this pid", || {
        matches!(hello(&d.socket).1, Response::Welcome(_)).then_some(())
    });
}

/// Case 9b: clients that ask for 4 MiB reads and never read the replies cannot make logd hold
/// 8 MiB each: replies wait for a bounded budget (`reply_budget`), or are refused with an error
/// naming it, and the daemon's memory stays bounded.
#[test]
fn unread_read_replies_are_bounded() {
    let d =
        Daemon::with_config("max_size = \"64 MiB\"\nreply_budget = \"8 MiB\"\nreply_wait = 1\n");
    // An 8 MiB log.
    {
        let mut w = d.open_pipe("big", "big.log");
        w.write_all(&numbered_lines(8 * MIB)).unwrap();
    }
    d.ctl_ok(&["position", "--log", "big.log"]);
    let pid = d.pid();
    let before = status_kib(pid, "VmRSS:").unwrap();
    const CLIENTS: usize = 24;
    let read = encode_frame(
        &Request::ReadLog {
            path: "big.log".into(),
            from: ReadFrom::Start,
            max_len: MAX_READ_LEN,
        },
        MAX_REQUEST_FRAME,
    )
    .unwrap();
    let mut greedy = Vec::new();
    for _ in 0..CLIENTS {
        let (mut s, r) = hello(&d.socket);
        assert!(matches!(r, Response::Welcome(_)), "{r:?}");
        s.write_all(&read).unwrap();
        greedy.push(s); // never read
    }
    // Without a budget every reply is built and held (about 8 MiB each); with one, all but
    // two wait, then are refused.
    let bound_kib = 48 * 1024;
    wait_for(
        Duration::from_secs(120),
        "the reads to be held or refused",
        || {
            let grown = status_kib(pid, "VmRSS:").unwrap().saturating_sub(before);
            assert!(
                grown < bound_kib,
                "logd grew by {} MiB for {CLIENTS} unread replies",
                grown / 1024
            );
            (d.stderr()
                .matches("refused a read: the reply budget")
                .count()
                >= CLIENTS - 2)
                .then_some(())
        },
    );
    let grown = status_kib(pid, "VmRSS:").unwrap().saturating_sub(before);
    eprintln!("logd grew by {grown} KiB for {CLIENTS} unread 4 MiB reads");
    assert!(grown < bound_kib, "logd grew by {} MiB", grown / 1024);
    // A new client's read is refused with a clear error while the budget is held.
    let mut c = d.client();
    match c.read_log("big.log", ReadFrom::Start, MAX_READ_LEN) {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::Busy, "{}", e.message);
            assert!(e.message.contains("reply_budget"), "{}", e.message);
        }
        other => panic!("expected a refusal, got {:?}", other.map(|r| r.0.len())),
    }
    // Once the greedy clients are gone, reads are served again.
    drop(greedy);
    wait_for(Duration::from_secs(60), "reads to be served again", || {
        c.read_log("big.log", ReadFrom::Start, MAX_READ_LEN)
            .ok()
            .filter(|r| r.0.len() == MAX_READ_LEN as usize)
    });
}

// ---------------------------------------------------------------------------------------------
// Case 10: log levels and metrics

/// Case 10a: a level that is not one (`warning`, `verbose`, `inf`) is refused with the list of
/// valid ones, instead of silencing every log line.
#[test]
fn an_invalid_log_level_is_refused() {
    let d = Daemon::start();
    for bad in ["warning", "verbose", "inf", "logd=loud", "logd::server"] {
        let out = d.ctl_run(&["log-level", bad]);
        let err = stderr_of(&out);
        assert!(!out.status.success(), "log-level {bad} was accepted");
        assert!(err.contains(bad), "{err}");
        assert!(
            err.contains("off, error, warn, info, debug, trace"),
            "{err}"
        );
    }
    // The daemon still logs at its level (debug, from -v).
    d.ctl_ok(&["append", "--domain", "t", "--log", "x.log", "hi"]);
    wait_for(Duration::from_secs(10), "a debug line", || {
        d.stderr().contains("client left").then_some(())
    });
    for good in [
        "WARN",
        "logd=debug,logd::server=trace",
        "info,logd=debug",
        "off",
    ] {
        d.ctl_ok(&["log-level", good]);
    }
}

/// Case 10a: a level set with `logdctl log-level` stays in force across a re-exec.
#[test]
fn the_log_level_survives_a_reexec() {
    let d = Daemon::start();
    d.ctl_ok(&["log-level", "warn"]);
    let from = d.stderr().len();
    let old = d.pid();
    let out = d.ctl_ok(&["reexec", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(report["error"].is_null(), "{report}");
    assert_eq!(d.pid(), old, "a re-exec keeps the pid");
    for _ in 0..3 {
        d.ctl_ok(&["append", "--domain", "t", "--log", "x.log", "hi"]);
    }
    // A warn line of the new process marks the end of what is checked.
    d.ctl_ok(&["log-level", "info"]);
    let text = d.stderr()[from..].to_owned();
    let end = text.find("log filter changed").expect("the marker");
    for line in text[..end].lines() {
        assert!(
            !line.contains(" INFO ") && !line.contains(" DEBUG ") && !line.contains(" TRACE "),
            "logged below warn after the re-exec: {line}\n{text}"
        );
    }
}

/// Case 10c: the metrics endpoint can be a UNIX socket, mode 0600, that only root and logd's
/// user can read; it is carried across a re-exec.
#[test]
fn metrics_on_a_unix_socket() {
    let dir = tempfile::Builder::new()
        .prefix("logd-metrics-")
        .tempdir()
        .unwrap();
    let sock = dir.path().join("metrics.sock");
    let d = Daemon::with_config(&format!("metrics_listen = \"unix:{}\"\n", sock.display()));
    let m = std::fs::symlink_metadata(&sock).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
    assert_eq!(m.mode() & 0o777, 0o600);
    d.ctl_ok(&["append", "--domain", "m", "--log", "m.log", "hello"]);
    let scrape = || {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    let text = scrape();
    assert!(text.starts_with("HTTP/1.0 200 OK"), "{text}");
    assert!(text.contains("logd_domains"), "{text}");
    // Another uid is refused even past the file mode (CAP_DAC_OVERRIDE).
    if require_tool("setpriv").is_some() && require_tool("python3").is_some() {
        let out = run_bounded(
            past_file_modes_as(65534, "python3")
                .args([
                    "-c",
                    "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n\
                     s.sendall(b'GET /metrics HTTP/1.0\\r\\n\\r\\n')\nd=b''\nwhile True:\n  b=s.recv(65536)\n  \
                     if not b: break\n  d+=b\nsys.stdout.write(d.decode())\n",
                ])
                .arg(&sock),
            Duration::from_secs(30),
        );
        let got = String::from_utf8_lossy(&out.stdout);
        assert!(
            !got.contains("logd_domains"),
            "uid 65534 read the metrics: {got}"
        );
    }
    // Carried across a re-exec.
    let old = d.pid();
    let out = d.ctl_ok(&["reexec", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(report["error"].is_null(), "{report}");
    assert_eq!(d.pid(), old, "a re-exec keeps the pid");
    assert!(scrape().contains("logd_domains"));
}
