//! The integration tests' kit: the shared `logd-kit` crate (a real `logd` in a temporary
//! directory, the real `logdctl`, bounded waits, /proc readings), aimed at the binaries this
//! package builds, and what only the tests use: the test guest and QEMU, subscribers, a real
//! terminal, the event stream, and a libvirt host ([`libvirt_host`]).

pub mod libvirt_host;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use logd_kit::*;

pub const LOGD: &str = env!("CARGO_BIN_EXE_logd");
pub const LOGDCTL: &str = env!("CARGO_BIN_EXE_logdctl");

/// The binaries under test: the ones this package builds.
pub fn bins() -> Bins {
    Bins {
        logd: LOGD.into(),
        logdctl: LOGDCTL.into(),
    }
}

/// The tests' ways to start a [`Daemon`] on [`bins`], failing the test if it does not start.
pub trait Start {
    fn start() -> Daemon;
    fn with_config(config: &str) -> Daemon;
    fn start_with(opts: Opts) -> Daemon;
}

impl Start for Daemon {
    fn start() -> Daemon {
        Self::start_with(Opts::default())
    }

    fn with_config(config: &str) -> Daemon {
        Self::start_with(Opts {
            config: config.to_owned(),
            ..Opts::default()
        })
    }

    fn start_with(opts: Opts) -> Daemon {
        Daemon::spawn(&bins(), opts).unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// The TCP port at the end of `logdctl console add`'s output (`ADDR:PORT`).
pub fn port_of(output: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(output);
    let port = text.trim().rsplit(':').next().unwrap_or_default();
    port.parse()
        .unwrap_or_else(|_| panic!("no port at the end of {text:?}"))
}

/// `logdctl run --domain DOMAIN --log LOG -- cat SRC`, then `logdctl position`, which drains
/// the pipe: every byte of SRC is in the log's files when this returns.
pub fn cat_into_log(d: &Daemon, domain: &str, log: &str, src: &Path) {
    d.ctl_ok(&[
        "run",
        "--domain",
        domain,
        "--log",
        log,
        "--",
        "cat",
        src.to_str().unwrap(),
    ]);
    d.ctl_ok(&["position", "--log", log]);
}

/// The bytes of a log: backups oldest first, then the active file.
pub fn read_rotated(path: &Path, max_backups: u32) -> Vec<u8> {
    rotated_files(path, max_backups)
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap_or_default())
        .collect()
}

/// Assembles the test guest (integration/guest/guest.asm) into `dir`; None if nasm is absent.
pub fn build_guest(dir: &Path) -> Option<PathBuf> {
    let nasm = require_tool("nasm")?;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/guest/guest.asm");
    let img = dir.join("guest.img");
    let st = Command::new(nasm)
        .args(["-f", "bin", "-o"])
        .arg(&img)
        .arg(&src)
        .status()
        .expect("run nasm");
    assert!(st.success(), "nasm failed on {}", src.display());
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 512);
    Some(img)
}

/// The QEMU command line that boots the test guest with COM1 on `serial`: `None` for stdio,
/// or a `-chardev` value whose id is `s0`.
pub fn qemu_args(img: &Path, serial: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = [
        "qemu-system-x86_64",
        "-display",
        "none",
        "-no-user-config",
        "-nodefaults",
        "-machine",
        "pc,accel=tcg",
        "-m",
        "16",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-boot",
        "a",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push("-drive".into());
    args.push(format!(
        "file={},format=raw,if=floppy,readonly=on",
        img.display()
    ));
    match serial {
        None => args.extend(["-serial".into(), "stdio".into()]),
        Some(chardev) => args.extend([
            "-chardev".into(),
            chardev.to_owned(),
            "-serial".into(),
            "chardev:s0".into(),
        ]),
    }
    args
}

/// The test guest's first line, once it boots.
pub const GUEST_BANNER: &[u8] = b"LOGD-GUEST READY\r\n";

/// `logdctl console add` of console `serial0` of `domain`, its guest listening at `NAME.sock`,
/// its log `NAME.log`, with `extra`; returns logdctl's output (the TCP port, if any).
pub fn add_serial0(d: &Daemon, domain: &str, name: &str, extra: &[&str]) -> Vec<u8> {
    let (sock, log) = (format!("{name}.sock"), format!("{name}.log"));
    let mut a = vec![
        "console",
        "add",
        "--domain",
        domain,
        "--name",
        "serial0",
        "--guest-listen",
        &sock,
        "--log",
        &log,
    ];
    a.extend_from_slice(extra);
    d.ctl_ok(&a)
}

/// QEMU booting the test guest on console `NAME`'s guest socket (`NAME.sock`, which it
/// reconnects to); returns at once.
pub fn qemu_on(d: &Daemon, img: &Path, name: &str) -> Proc {
    qemu(
        img,
        &format!(
            "socket,id=s0,path={},server=off,reconnect=1",
            d.log(&format!("{name}.sock")).display()
        ),
    )
}

/// [`qemu_on`], returning once the guest's banner is in the console's log (`NAME.log`).
pub fn boot_on(d: &Daemon, img: &Path, name: &str) -> Proc {
    let q = qemu_on(d, img, name);
    wait_logged(d, &format!("{name}.log"), GUEST_BANNER);
    q
}

/// A real terminal for programs that put it in raw mode: a detached 80×24 tmux session running
/// a shell script. The session is killed when this is dropped.
pub struct Terminal {
    session: String,
}

/// Where a [`Terminal::run_recorded`] script writes what the test checks.
pub struct Recorded {
    /// `stty -a` before the command ran.
    pub before: PathBuf,
    /// `exit=N` once the command has ended.
    pub status: PathBuf,
    /// `stty -a` after it ended.
    pub after: PathBuf,
}

impl Recorded {
    /// Waits for the command to end; returns its exit status line and whether the terminal's
    /// settings after it equal those before.
    pub fn wait(&self, limit: Duration) -> (String, bool) {
        let read = |p: &Path| std::fs::read_to_string(p).ok().filter(|s| !s.is_empty());
        let status = wait_for(limit, "the command to end", || read(&self.status));
        let after = wait_for(limit, "stty after the command", || read(&self.after));
        let before = std::fs::read_to_string(&self.before).unwrap_or_default();
        (status.trim().to_owned(), before == after)
    }
}

impl Terminal {
    fn tmux(args: &[&str]) -> String {
        let out = run_bounded(Command::new("tmux").args(args), Duration::from_secs(20));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `command` in a new terminal, recording in `dir` the terminal's settings before and
    /// after it, and its exit status. `tag` makes the session name unique.
    pub fn run_recorded(tag: &str, dir: &Path, command: &str) -> (Terminal, Recorded) {
        let rec = Recorded {
            before: dir.join(format!("{tag}.stty-before")),
            status: dir.join(format!("{tag}.status")),
            after: dir.join(format!("{tag}.stty-after")),
        };
        // The final `sleep` keeps the pane (and the session) open for `screen`; the test waits
        // on the recorded files, never on it.
        let script = format!(
            "stty -a > {}; {command}; echo exit=$? > {}; stty -a > {}; sleep 30",
            rec.before.display(),
            rec.status.display(),
            rec.after.display()
        );
        let session = format!("logd-{tag}-{}", std::process::id());
        Self::tmux(&[
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "80",
            "-y",
            "24",
            &script,
        ]);
        (Terminal { session }, rec)
    }

    /// What the terminal shows now.
    pub fn screen(&self) -> String {
        Self::tmux(&["capture-pane", "-p", "-t", &self.session])
    }

    /// Types keys (tmux `send-keys` arguments, e.g. `["-l", "text"]` or `["C-]"]`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        Self::tmux(&args);
    }

    /// Waits until the screen shows `what`.
    pub fn wait_for(&self, what: &str, limit: Duration) -> String {
        let start = std::time::Instant::now();
        loop {
            let s = self.screen();
            if s.contains(what) {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what:?} on the terminal; it shows:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

/// A process (QEMU, nc, telnet) whose stdout is collected by a thread.
pub struct Proc {
    pub child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Proc {
            child,
            out,
            name: name.to_owned(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    pub fn output(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }

    pub fn wait_for(&self, what: &[u8], limit: Duration) {
        let name = self.name.clone();
        wait_for(
            limit,
            &format!("{name} to see {:?}", String::from_utf8_lossy(what)),
            || contains(&self.output(), what).then_some(()),
        );
    }

    pub fn count(&self, what: &[u8]) -> usize {
        count(&self.output(), what)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    count(hay, needle) > 0
}

/// logd's notices in a subscriber's stream (`\r\n[logd: TEXT]\r\n`): their texts, in order,
/// and the stream without them.
pub fn split_notices(got: &[u8]) -> (Vec<String>, Vec<u8>) {
    let (mut texts, mut clean) = (Vec::new(), Vec::with_capacity(got.len()));
    let mut rest = got;
    while let Some(p) = rest.windows(9).position(|w| w == b"\r\n[logd: ") {
        clean.extend_from_slice(&rest[..p]);
        let after = &rest[p + 9..];
        let Some(end) = after.windows(3).position(|w| w == b"]\r\n") else {
            // Not whole yet: left in the stream.
            clean.extend_from_slice(&rest[p..]);
            return (texts, clean);
        };
        texts.push(String::from_utf8_lossy(&after[..end]).into_owned());
        rest = &after[end + 3..];
    }
    clean.extend_from_slice(rest);
    (texts, clean)
}

/// The notices in `got` other than the greeting and the guest's comings and goings: what a
/// subscriber is told when something happens to it (cut off, lock moved, console removed).
pub fn notices_beyond_routine(got: &[u8]) -> Vec<String> {
    split_notices(got)
        .0
        .into_iter()
        .filter(|t| {
            !t.starts_with("console ") && t != "guest connected" && t != "guest disconnected"
        })
        .collect()
}

pub fn count(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() || hay.len() < needle.len() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// QEMU booting the test guest with COM1 on the chardev `chardev` (a `-chardev` value).
pub fn qemu(img: &Path, chardev: &str) -> Proc {
    let args = qemu_args(img, Some(chardev));
    Proc::spawn("qemu", Command::new(&args[0]).args(&args[1..]))
}

/// The guest's burst: 100,000 numbered 64-byte lines, then "BURST DONE\r\n".
pub fn burst() -> Vec<u8> {
    let mut v = Vec::with_capacity(6_400_012);
    for i in 0..100_000 {
        v.extend_from_slice(
            format!("{i:08} abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzab\n").as_bytes(),
        );
    }
    v.extend_from_slice(b"BURST DONE\r\n");
    v
}

/// A TCP subscriber whose bytes a thread collects.
pub fn tcp_reader(port: u16) -> (TcpStream, Arc<Mutex<Vec<u8>>>) {
    tcp_reader_of(TcpStream::connect(("127.0.0.1", port)).unwrap())
}

/// [`tcp_reader`] on a connection made already.
pub fn tcp_reader_of(s: TcpStream) -> (TcpStream, Arc<Mutex<Vec<u8>>>) {
    let mut r = s.try_clone().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    (s, got)
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for a daemon's metrics listener).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The whole HTTP reply of the metrics endpoint on `port` to `GET path`.
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    all
}

/// Events as `logdctl events --json` prints them, collected by a thread.
pub type Events = Arc<Mutex<Vec<serde_json::Value>>>;

/// `logdctl events --json` on `d`, live (it has seen the event of a probe append) when this
/// returns. Kill the child to end it.
pub fn event_stream(d: &Daemon) -> (Child, Events) {
    let mut ev = d
        .ctl()
        .args(["events", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = ev.stdout.take().unwrap();
    let lines: Events = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            sink.lock().unwrap().push(serde_json::from_str(&l).unwrap());
        }
    });
    wait_for(Duration::from_secs(20), "the event stream", || {
        d.ctl_ok(&["append", "--domain", "probe", "--log", "probe.log", "p"]);
        let seen = lines.lock().unwrap();
        seen.iter()
            .any(|e| e["event"] == "domain_opened")
            .then_some(())
    });
    (ev, lines)
}

/// `program` run as `uid` (and gid) with CAP_DAC_OVERRIDE: it gets past every file mode, so only
/// logd's own checks (`SO_PEERCRED`) can stop it.
pub fn past_file_modes_as(uid: u32, program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".into(),
        "--inh-caps=+dac_override".into(),
        "--ambient-caps=+dac_override".into(),
        program.into(),
    ]);
    c
}

/// Makes `fds` the spawned child's fds 3, 4, … (as systemd passes sockets). The caller keeps
/// them open until `spawn` returns. Nothing is allocated between fork and exec.
#[allow(unsafe_code)]
pub fn pass_fds_from_3<const N: usize>(cmd: &mut Command, fds: [std::os::fd::RawFd; N]) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec. It calls only fcntl and
    // dup2, which are async-signal-safe, keeps its copies in a fixed array on its stack, and an
    // error from the OS is built without allocating. The fds are open in the parent, and so in
    // the child, until the caller's spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the way first: one may already sit at 3, 4, …, and dup2 onto itself would
            // keep its close-on-exec flag.
            let mut high = [0; N];
            for (h, fd) in high.iter_mut().zip(fds) {
                *h = nix::libc::fcntl(fd, nix::libc::F_DUPFD_CLOEXEC, 10);
                if *h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (to, from) in (3..).zip(high) {
                if nix::libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Taken by the tests that keep both cores busy for a minute or more, so that two of them never
/// run at once in this one test process: together each takes twice as long, and the suite's
/// wall time grows with the overlap.
pub fn cpu_heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child killed and reaped when dropped, so a failing test leaves no daemon behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// Consoles, as a user sees them: `logdctl console list`, a guest on the console's socket, a
// TCP subscriber.

/// How long the console helpers wait for a condition.
const WAIT: Duration = Duration::from_secs(30);

/// The consoles as `logdctl console list --json` prints them.
pub fn consoles(d: &Daemon) -> Vec<serde_json::Value> {
    serde_json::from_slice(&d.ctl_ok(&["console", "list", "--json"])).unwrap()
}

/// The console `domain/name` in the list, if there.
pub fn console(d: &Daemon, domain: &str, name: &str) -> Option<serde_json::Value> {
    consoles(d)
        .into_iter()
        .find(|c| c["domain"]["name"] == domain && c["name"] == name)
}

/// Connects as the guest to a console's listening socket (logd may still be binding it).
pub fn guest(path: &Path) -> std::os::unix::net::UnixStream {
    wait_for(
        WAIT,
        &format!("the guest socket {}", path.display()),
        || std::os::unix::net::UnixStream::connect(path).ok(),
    )
}

/// A TCP subscriber on `port` (logd may still be binding it). One connection only: a probe
/// that joined first would hold the write lock for a moment.
pub fn subscriber(port: u16) -> (TcpStream, Arc<Mutex<Vec<u8>>>) {
    tcp_reader_of(wait_for(WAIT, &format!("TCP port {port}"), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    }))
}

/// Waits until a subscriber has seen `what`.
pub fn wait_seen(got: &Arc<Mutex<Vec<u8>>>, what: &[u8]) {
    wait_for(
        WAIT,
        &format!("a subscriber to see {:?}", String::from_utf8_lossy(what)),
        || contains(&got.lock().unwrap(), what).then_some(()),
    );
}

/// Writes `what` as the guest until the log holds it (the guest side may be connecting).
pub fn wait_logged(d: &Daemon, rel: &str, what: &[u8]) {
    wait_for(
        WAIT,
        &format!("{:?} in {rel}", String::from_utf8_lossy(what)),
        || {
            d.ctl_run(&["position", "--log", rel]);
            contains(&std::fs::read(d.log(rel)).unwrap_or_default(), what).then_some(())
        },
    );
}

/// Whether `p` is a UNIX socket (not following a symlink).
pub fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket())
}
