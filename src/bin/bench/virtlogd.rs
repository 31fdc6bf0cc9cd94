//! `virtlogd_idle_N`: libvirt's virtlogd, the daemon logd replaces, on the test of
//! `rss_per_idle_domain_10000`, through a client of its RPC protocol written here.
//!
//! The wire, as libvirt's `src/rpc/virnetprotocol.x` and `src/logging/log_protocol.x` define it
//! (XDR: big-endian 32-bit words, strings and opaques padded to 4 bytes):
//! - A message is a length word that counts itself, a header of six words (program, version,
//!   procedure, type, serial, status), then the payload.
//! - A reply that passes fds has the type REPLY_WITH_FDS (5) and one more word after the header,
//!   the number of fds. The fds come after the message's last byte, each on a one-byte message
//!   of its own with SCM_RIGHTS ancillary data.
//! - A failed call's reply has the status ERROR (1) and a `virNetMessageError` payload: code,
//!   domain, an optional message, and more that the bench does not read.
//! - Program 0x87539319 version 1: DOMAIN_OPEN_LOG_FILE (1) takes a driver name, a domain (a
//!   16-byte uuid and a name), the log's path and flags, and returns the log's position (inode
//!   and offset, 64 bits each) and the write end of a pipe whose read end virtlogd keeps.
//!   DOMAIN_GET_LOG_FILE_POSITION (2) takes a path and flags and returns the position.
//!
//! Running as root, virtlogd listens on `/run/libvirt/virtlogd-sock` and
//! `/run/libvirt/virtlogd-admin-sock`; no option moves them. But it takes its listening sockets
//! from systemd socket activation, as on a systemd host (`LISTEN_PID`, `LISTEN_FDS` and
//! `LISTEN_FDNAMES` naming `virtlogd.socket` and `virtlogd-admin.socket`). So the bench binds
//! both sockets in its own temporary directory and passes them that way: a virtlogd of the
//! system, if any, is left alone. The pid file goes to the temporary directory too (`-p`).
//! virtlogd still creates `/run/libvirt` and a token in `/run/libvirt/common` at start; the
//! bench removes them afterwards if `/run/libvirt` was not there before.

use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use logd_protocol::fdpass::recv_with_fds;

use super::{
    fd_count, median, note, settle, status_kib, Bench, IdleDomains, KernelMemory, TempDir,
    CALL_TIMEOUT, ROTATE,
};

/// Where Debian's `libvirt-daemon` package installs virtlogd.
const VIRTLOGD: &str = "/usr/sbin/virtlogd";
/// The directory a root virtlogd creates at start, even when its sockets come from activation,
/// and what it puts there (libvirt's system identity token): the bench removes these, and only
/// these, when it was its virtlogd that made the directory.
const RUN_DIR: &str = "/run/libvirt";
const RUN_DIR_MADE: [&str; 3] = [
    "/run/libvirt/common/system.token",
    "/run/libvirt/common",
    RUN_DIR,
];
/// The state a root virtlogd leaves for itself when it re-executes (SIGUSR1); a virtlogd that
/// starts reads and deletes it, so the bench starts none while one is there.
const RESTART_STATE: &str = "/run/virtlogd-restart-exec.json";
/// The socket names virtlogd looks for in `LISTEN_FDNAMES`, in the order of fds 3 and 4.
const ACTIVATION_NAMES: &str = "virtlogd.socket:virtlogd-admin.socket";
/// How long virtlogd may take to answer its first call.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the line written through a pipe may take to reach its log.
const WRITE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The line the bench writes through one pipe to check that the client works end to end.
const CHECK_LINE: &[u8] = b"logd-bench: one line through virtlogd\n";

// The RPC protocol's numbers.
const PROGRAM: u32 = 0x8753_9319;
const PROGRAM_VERSION: u32 = 1;
const PROC_DOMAIN_OPEN_LOG_FILE: u32 = 1;
const PROC_DOMAIN_GET_LOG_FILE_POSITION: u32 = 2;
const TYPE_CALL: u32 = 0;
const TYPE_REPLY: u32 = 1;
const TYPE_REPLY_WITH_FDS: u32 = 5;
const STATUS_OK: u32 = 0;
const STATUS_ERROR: u32 = 1;
/// The header's six words.
const HEADER_LEN: usize = 24;
/// The largest message, length word not included (`VIR_NET_MESSAGE_MAX`).
const MESSAGE_MAX: usize = 16 * 1024 * 1024;
/// The most fds one message may pass (`VIR_NET_MESSAGE_NUM_FDS_MAX`).
const NUM_FDS_MAX: u32 = 32;
/// The longest string the log protocol allows (`VIR_LOG_MANAGER_PROTOCOL_STRING_MAX`).
const STRING_MAX: usize = 4 * 1024 * 1024;

/// `virtlogd_idle_N`: a fresh virtlogd per run, with the bench's rotation settings and fd limit;
/// `count` idle domains opened through it (fewer if the fd limit says so: virtlogd holds two fds
/// per domain, like logd), their pipes' write ends kept open and nothing written. Measured as
/// `rss_per_idle_domain_10000` measures logd: the daemon's VmRSS, its fds and the kernel's slab
/// before and after the opens, and the open rate over the first and the last 100 opens. Then one
/// line written through the first domain's pipe must reach its log. Without virtlogd installed,
/// the scenario says so and gives no figure.
pub(super) fn idle_domains(b: &mut Bench, count: usize) -> Result<()> {
    let name = format!("virtlogd_idle_{count}");
    if !Path::new(VIRTLOGD).is_file() {
        note(format!(
            "{name}: skipped: {VIRTLOGD} is not installed (Debian's libvirt-daemon package has it)"
        ));
        return Ok(());
    }
    if Path::new(RESTART_STATE).exists() {
        note(format!(
            "{name}: skipped: {RESTART_STATE} exists (a virtlogd is re-executing itself) and a \
             new root virtlogd would take it"
        ));
        return Ok(());
    }
    note(format!("{name}: {}", virtlogd_version()));
    let n = b.domains_that_fit(count, &name);
    let (mut rss, mut kernel, mut first_100, mut last_100) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 1..=b.runs {
        let mut virtlogd = Virtlogd::spawn(&b.dir, &name)?;
        let mut client = virtlogd.client()?;
        let pid = virtlogd.pid();
        b.wait_for_quiet_pid(Some(pid))?;
        settle();
        // The kernel first: listing /proc/PID/fd makes an inode and a dentry per fd.
        let kernel0 = KernelMemory::read()?;
        let (rss0, fds0) = (status_kib(pid, "VmRSS:")?, fd_count(pid)?);
        let logs = virtlogd.logs();
        let domains = IdleDomains::open_each(n, |i| {
            let (_, fd) =
                client.open_log_file("qemu", &uuid(i), &domain_name(i), &log(&logs, i), 0)?;
            Ok(fd)
        })
        .with_context(|| virtlogd.failed(&name))?;
        settle();
        let kernel1 = KernelMemory::read()?;
        let (rss1, fds1) = (status_kib(pid, "VmRSS:")?, fd_count(pid)?);
        let kib = (rss1 as f64 - rss0 as f64) / n as f64;
        note(format!(
            "{name} run {run}/{}: VmRSS {rss0} -> {rss1} KiB over {n} domains ({kib:.2} KiB \
             each); virtlogd holds {fds0} -> {fds1} fds ({:.2} per domain); opens took {:.1} s",
            b.runs,
            (fds1 as f64 - fds0 as f64) / n as f64,
            domains.elapsed().as_secs_f64()
        ));
        note(format!(
            "{name} run {run}/{}: {}",
            b.runs,
            kernel1.describe_delta(&kernel0, n)
        ));
        rss.push(kib);
        kernel.push(kernel1.per_domain_kib(&kernel0, n));
        first_100.push(domains.open_rate(1, 100.min(n)));
        last_100.push(domains.open_rate(n.saturating_sub(99).max(1), n));
        let took = check_write(&mut client, domains.pipe(1), &log(&logs, 1))
            .with_context(|| virtlogd.failed(&format!("{name}: the write check")))?;
        note(format!(
            "{name} run {run}/{}: a line written into domain 1's pipe was in its log after \
             {:.1} ms, at the position virtlogd reports",
            b.runs,
            took.as_secs_f64() * 1000.0
        ));
        drop(domains);
        virtlogd.stop();
    }
    let (rss, kernel) = (median(&rss), median(&kernel));
    b.figure(&format!("virtlogd_rss_per_idle_domain_{count}"), rss, "KiB");
    b.figure(
        &format!("virtlogd_kernel_per_idle_domain_{count}"),
        kernel,
        "KiB",
    );
    b.figure(
        &format!("virtlogd_host_per_idle_domain_{count}"),
        rss + kernel,
        "KiB",
    );
    b.figure("virtlogd_open_rate_at_10", median(&first_100), "opens/s");
    b.figure(
        &format!("virtlogd_open_rate_at_{count}"),
        median(&last_100),
        "opens/s",
    );
    Ok(())
}

/// Domain `i`'s uuid: distinct for each `i`.
fn uuid(i: usize) -> [u8; 16] {
    // "logd-b" then a version-4, variant-1 layout, then the domain's number.
    (0x6c6f_6764_2d62_4000_8000_0000_0000_0000_u128 | i as u128).to_be_bytes()
}

fn domain_name(i: usize) -> String {
    format!("idle-{i:05}")
}

/// Domain `i`'s log under `logs`.
fn log(logs: &Path, i: usize) -> PathBuf {
    logs.join(format!("{}.log", domain_name(i)))
}

/// `virtlogd --version`'s line, or why there is none.
fn virtlogd_version() -> String {
    match Command::new(VIRTLOGD).arg("--version").output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Err(e) => format!("{VIRTLOGD} --version failed: {e}"),
    }
}

/// Writes [`CHECK_LINE`] into `pipe` and waits until the log at `path` holds it, then asks
/// virtlogd where the log is: the same file and just past the line. Returns how long the line
/// took to reach the file.
fn check_write(client: &mut VirtlogdClient, pipe: &OwnedFd, path: &Path) -> Result<Duration> {
    let start = Instant::now();
    let written = nix::unistd::write(pipe, CHECK_LINE).context("writing into the pipe")?;
    ensure!(
        written == CHECK_LINE.len(),
        "a short write ({written} bytes)"
    );
    loop {
        let got = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if got == CHECK_LINE {
            break;
        }
        ensure!(
            CHECK_LINE.starts_with(&got),
            "{} holds {:?}, not the line written",
            path.display(),
            String::from_utf8_lossy(&got)
        );
        if start.elapsed() > WRITE_CHECK_TIMEOUT {
            bail!(
                "the line did not reach {} within {} s ({} of {} bytes there)",
                path.display(),
                WRITE_CHECK_TIMEOUT.as_secs(),
                got.len(),
                CHECK_LINE.len()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = start.elapsed();
    let pos = client.log_file_position(path)?;
    let inode = fs::metadata(path)
        .with_context(|| format!("reading the metadata of {}", path.display()))?
        .ino();
    ensure!(
        pos.inode == inode && pos.offset == CHECK_LINE.len() as u64,
        "virtlogd places its log at inode {} offset {}; the file is inode {inode} with {} bytes",
        pos.inode,
        pos.offset,
        CHECK_LINE.len()
    );
    Ok(took)
}

// ---------------------------------------------------------------------------------------------
// The daemon

/// A virtlogd in its own temporary directory, with sockets passed by activation; killed when
/// dropped (and `/run/libvirt` removed if it made it).
struct Virtlogd {
    child: Child,
    dir: TempDir,
    socket: PathBuf,
    /// `/run/libvirt` was not there before this virtlogd started.
    made_run_dir: bool,
}

impl Virtlogd {
    fn spawn(parent: &Path, tag: &str) -> Result<Virtlogd> {
        let dir = TempDir::new(parent, tag)?;
        let config = dir.path().join("virtlogd.conf");
        fs::write(&config, config_text()).context("writing virtlogd's config")?;
        fs::create_dir(dir.path().join("logs")).context("creating the logs' directory")?;
        let socket = dir.path().join("virtlogd-sock");
        let admin = dir.path().join("virtlogd-admin-sock");
        let bind = |path: &Path| {
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))
        };
        let listeners = [bind(&socket)?, bind(&admin)?];
        let raw = listeners.each_ref().map(AsRawFd::as_raw_fd);
        let stderr = File::create(dir.path().join("virtlogd.stderr"))
            .context("creating virtlogd's stderr file")?;
        let made_run_dir = !Path::new(RUN_DIR).exists();
        let mut cmd = Command::new("/bin/sh");
        // The shell's pid is the one virtlogd will have once the shell execs it.
        cmd.arg("-c")
            .arg(r#"LISTEN_PID=$$ && export LISTEN_PID && exec "$0" "$@""#)
            .arg(VIRTLOGD)
            .arg("-f")
            .arg(&config)
            .arg("-p")
            .arg(dir.path().join("virtlogd.pid"))
            .env("LISTEN_FDS", "2")
            .env("LISTEN_FDNAMES", ACTIVATION_NAMES)
            .env_remove("LISTEN_PID")
            .env_remove("NOTIFY_SOCKET")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(
                stderr
                    .try_clone()
                    .context("duplicating virtlogd's stderr file")?,
            )
            .stderr(stderr);
        // SAFETY: the closure runs in the child between fork and exec and only calls fcntl and
        // dup2, which are async-signal-safe; `raw` stays open in the parent until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                // Out of the way of fds 3 and 4 first (close-on-exec, so these copies go at
                // exec), then onto them (dup2 clears close-on-exec).
                let mut moved = [0; 2];
                for (to, from) in moved.iter_mut().zip(raw) {
                    *to = nix::libc::fcntl(from, nix::libc::F_DUPFD_CLOEXEC, 5);
                    if *to < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (to, from) in (3..).zip(moved) {
                    if nix::libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {VIRTLOGD}"))?;
        // virtlogd has its copies: with ours closed, its exit closes the sockets, and a client
        // waiting for its first answer sees that at once.
        drop(listeners);
        Ok(Virtlogd {
            child,
            dir,
            socket,
            made_run_dir,
        })
    }

    /// A client on the daemon's socket, once the daemon answers. The socket listens from the
    /// start (this process bound it), so only an answer says that virtlogd runs.
    fn client(&mut self) -> Result<VirtlogdClient> {
        let mut client = VirtlogdClient::connect(&self.socket, START_TIMEOUT)?;
        if let Err(e) = client.ping() {
            if let Ok(Some(st)) = self.child.try_wait() {
                bail!("virtlogd exited at start ({st}): {}", self.stderr_tail());
            }
            return Err(e.context(self.failed("waiting for virtlogd's first answer")));
        }
        let comm = fs::read_to_string(format!("/proc/{}/comm", self.pid())).unwrap_or_default();
        ensure!(
            comm.trim() == "virtlogd",
            "pid {} is {:?}, not virtlogd",
            self.pid(),
            comm.trim()
        );
        client.set_timeout(CALL_TIMEOUT)?;
        Ok(client)
    }

    /// virtlogd's pid: the shell's, which exec'd it.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// The last lines virtlogd wrote to stderr, to explain a failure.
    fn stderr_tail(&self) -> String {
        let all = fs::read_to_string(self.dir.path().join("virtlogd.stderr")).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// A context line for a failed step: the step, and what virtlogd said last.
    fn failed(&self, what: &str) -> String {
        format!("{what} (virtlogd's last words: {:?})", self.stderr_tail())
    }

    /// Kills virtlogd and waits for it; the temporary directory goes with `self`.
    fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.made_run_dir {
            self.made_run_dir = false;
            for path in RUN_DIR_MADE.map(Path::new) {
                let removed = if path.is_dir() {
                    fs::remove_dir(path)
                } else {
                    fs::remove_file(path)
                };
                if let Err(e) = removed.or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                }) {
                    note(format!(
                        "virtlogd made {RUN_DIR}; the bench could not remove {}: {e}",
                        path.display()
                    ));
                }
            }
        }
    }
}

impl Drop for Virtlogd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// virtlogd's config: logd-bench's rotation (as given to logd), errors only, to stderr.
fn config_text() -> String {
    format!(
        "log_level = 4\nlog_outputs = \"4:stderr\"\nmax_size = {}\nmax_backups = {}\n",
        { ROTATE.max_size },
        { ROTATE.max_backups }
    )
}

// ---------------------------------------------------------------------------------------------
// The client

/// One connection to virtlogd, one call at a time.
struct VirtlogdClient {
    sock: UnixStream,
    serial: u32,
}

/// Where virtlogd is in a log: the file's inode and the offset of its end.
#[derive(Debug)]
struct LogFilePosition {
    inode: u64,
    offset: u64,
}

/// A call's answer: its payload and the fds that came with it.
struct Reply {
    payload: Vec<u8>,
    fds: Vec<OwnedFd>,
}

/// The error a failed call reports.
#[derive(Debug)]
struct RemoteError {
    code: i32,
    domain: i32,
    message: Option<String>,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "virtlogd: {} (error code {}, domain {})",
            self.message.as_deref().unwrap_or("no message"),
            self.code,
            self.domain
        )
    }
}

impl std::error::Error for RemoteError {}

impl VirtlogdClient {
    fn connect(path: &Path, timeout: Duration) -> Result<VirtlogdClient> {
        let sock = UnixStream::connect(path)
            .with_context(|| format!("connecting to virtlogd at {}", path.display()))?;
        let client = VirtlogdClient { sock, serial: 0 };
        client.set_timeout(timeout)?;
        Ok(client)
    }

    fn set_timeout(&self, timeout: Duration) -> Result<()> {
        self.sock
            .set_read_timeout(Some(timeout))
            .and_then(|()| self.sock.set_write_timeout(Some(timeout)))
            .context("setting the virtlogd client's timeouts")
    }

    /// DOMAIN_OPEN_LOG_FILE: the log at `path` for the domain, and its pipe's write end.
    fn open_log_file(
        &mut self,
        driver: &str,
        uuid: &[u8; 16],
        name: &str,
        path: &Path,
        flags: u32,
    ) -> Result<(LogFilePosition, OwnedFd)> {
        let mut args = XdrWriter::default();
        args.string(driver.as_bytes());
        args.opaque(uuid);
        args.string(name.as_bytes());
        args.string(path.as_os_str().as_bytes());
        args.u32(flags);
        let reply = self
            .call(PROC_DOMAIN_OPEN_LOG_FILE, &args.0)
            .with_context(|| format!("DOMAIN_OPEN_LOG_FILE {}", path.display()))?;
        let mut ret = XdrReader(&reply.payload);
        let pos = ret.position()?;
        ret.end()?;
        let [fd]: [OwnedFd; 1] = reply.fds.try_into().map_err(|fds: Vec<OwnedFd>| {
            anyhow!(
                "DOMAIN_OPEN_LOG_FILE answered with {} fds, not one",
                fds.len()
            )
        })?;
        Ok((pos, fd))
    }

    /// DOMAIN_GET_LOG_FILE_POSITION for the log at `path`, which must be open.
    fn log_file_position(&mut self, path: &Path) -> Result<LogFilePosition> {
        let mut args = XdrWriter::default();
        args.string(path.as_os_str().as_bytes());
        args.u32(0);
        let reply = self
            .call(PROC_DOMAIN_GET_LOG_FILE_POSITION, &args.0)
            .with_context(|| format!("DOMAIN_GET_LOG_FILE_POSITION {}", path.display()))?;
        let mut ret = XdrReader(&reply.payload);
        let pos = ret.position()?;
        ret.end()?;
        Ok(pos)
    }

    /// One round trip that needs no open log: the position of a log that is not open, which
    /// virtlogd answers with an error.
    fn ping(&mut self) -> Result<()> {
        match self.log_file_position(Path::new("/nonexistent/logd-bench.log")) {
            Ok(_) => Ok(()),
            Err(e) if e.is::<RemoteError>() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends a call of `procedure` with the encoded `args` and reads its reply and fds. A
    /// failed call is an error that downcasts to [`RemoteError`].
    fn call(&mut self, procedure: u32, args: &[u8]) -> Result<Reply> {
        self.serial = self.serial.wrapping_add(1);
        let mut msg = XdrWriter::default();
        let len = 4 + HEADER_LEN + args.len();
        msg.u32(u32::try_from(len).context("a call too large")?);
        for word in [
            PROGRAM,
            PROGRAM_VERSION,
            procedure,
            TYPE_CALL,
            self.serial,
            STATUS_OK,
        ] {
            msg.u32(word);
        }
        msg.0.extend_from_slice(args);
        self.sock
            .write_all(&msg.0)
            .context("sending a call to virtlogd")?;

        // Exactly the reply's bytes: a read past them would take the byte that carries the
        // first fd, and the kernel would drop the fd.
        let mut word = [0; 4];
        self.sock
            .read_exact(&mut word)
            .context("reading the length of virtlogd's reply")?;
        let len = u32::from_be_bytes(word) as usize;
        ensure!(
            (4 + HEADER_LEN..=4 + MESSAGE_MAX).contains(&len),
            "virtlogd's reply claims {len} bytes"
        );
        let mut body = vec![0; len - 4];
        self.sock
            .read_exact(&mut body)
            .context("reading virtlogd's reply")?;
        let mut r = XdrReader(&body);
        let [prog, vers, proc_, kind, serial, status] = [(); 6].map(|()| r.u32());
        let (prog, vers, proc_, kind, serial, status) =
            (prog?, vers?, proc_?, kind?, serial?, status?);
        ensure!(
            (prog, vers, proc_, serial) == (PROGRAM, PROGRAM_VERSION, procedure, self.serial),
            "a reply to another call: program {prog:#x} version {vers} procedure {proc_} serial \
             {serial}, for procedure {procedure} serial {}",
            self.serial
        );
        let nfds = match kind {
            TYPE_REPLY => 0,
            TYPE_REPLY_WITH_FDS => r.u32()?,
            other => bail!("virtlogd sent a message of type {other}, not a reply"),
        };
        ensure!(nfds <= NUM_FDS_MAX, "virtlogd announces {nfds} fds");
        let fds = (0..nfds)
            .map(|_| self.recv_fd())
            .collect::<Result<Vec<_>>>()?;
        match status {
            STATUS_OK => Ok(Reply {
                payload: r.0.to_vec(),
                fds,
            }),
            STATUS_ERROR => Err(r.remote_error()?.into()),
            other => bail!("virtlogd's reply has status {other}"),
        }
    }

    /// One fd, on its one-byte message.
    fn recv_fd(&mut self) -> Result<OwnedFd> {
        let (mut byte, mut fds) = ([0; 1], Vec::new());
        let n = recv_with_fds(self.sock.as_fd(), &mut byte, &mut fds)
            .context("receiving an fd from virtlogd")?;
        ensure!(
            n == 1 && fds.len() == 1,
            "expected one fd on one byte from virtlogd, got {} fds on {n} bytes",
            fds.len()
        );
        fds.pop().context("no fd")
    }
}

/// XDR encoding: big-endian words, variable-length data after its length, padded to 4 bytes.
#[derive(Default)]
struct XdrWriter(Vec<u8>);

impl XdrWriter {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    /// Fixed-length opaque data (its length is in the type, not on the wire).
    fn opaque(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
    }

    /// A string: its length, then its bytes.
    fn string(&mut self, bytes: &[u8]) {
        self.u32(bytes.len() as u32);
        self.opaque(bytes);
    }
}

/// XDR decoding from the front of a buffer.
struct XdrReader<'a>(&'a [u8]);

impl<'a> XdrReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(
            n <= self.0.len(),
            "virtlogd's reply ends early ({} bytes left, {n} wanted)",
            self.0.len()
        );
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into()?))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(self.u32()? as i32)
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into()?))
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u32()? as usize;
        ensure!(len <= STRING_MAX, "a string of {len} bytes");
        let bytes = self.take(len)?;
        self.take(len.next_multiple_of(4) - len)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// An optional value: a word saying whether it is there, then the value.
    fn optional_string(&mut self) -> Result<Option<String>> {
        match self.u32()? {
            0 => Ok(None),
            _ => self.string().map(Some),
        }
    }

    fn position(&mut self) -> Result<LogFilePosition> {
        Ok(LogFilePosition {
            inode: self.u64()?,
            offset: self.u64()?,
        })
    }

    /// The start of a `virNetMessageError`: code, domain, message (the rest is not read).
    fn remote_error(&mut self) -> Result<RemoteError> {
        Ok(RemoteError {
            code: self.i32()?,
            domain: self.i32()?,
            message: self.optional_string()?,
        })
    }

    fn end(&self) -> Result<()> {
        ensure!(
            self.0.is_empty(),
            "{} bytes more than expected in virtlogd's reply",
            self.0.len()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;
    use std::thread;

    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

    #[test]
    fn xdr_pads_to_four_bytes_both_ways() {
        let mut w = XdrWriter::default();
        w.string(b"qemu1");
        w.opaque(&[7; 16]);
        w.u32(5);
        assert_eq!(w.0.len(), 4 + 8 + 16 + 4);
        assert_eq!(&w.0[..12], b"\0\0\0\x05qemu1\0\0\0");
        let mut r = XdrReader(&w.0);
        assert_eq!(r.string().unwrap(), "qemu1");
        assert_eq!(r.take(16).unwrap(), &[7; 16]);
        assert_eq!(r.u32().unwrap(), 5);
        r.end().unwrap();
        assert!(r.u32().is_err());
    }

    /// A fake virtlogd on the other end of `server`: checks one call, answers with `reply`
    /// (header type, status, payload) and passes `fd` after it.
    fn serve_one(
        mut server: UnixStream,
        want_proc: u32,
        kind: u32,
        status: u32,
        payload: Vec<u8>,
        fd: Option<OwnedFd>,
    ) -> thread::JoinHandle<Vec<u8>> {
        thread::spawn(move || {
            let mut len = [0; 4];
            server.read_exact(&mut len).unwrap();
            let mut call = vec![0; u32::from_be_bytes(len) as usize - 4];
            server.read_exact(&mut call).unwrap();
            let mut r = XdrReader(&call);
            let header = [(); 6].map(|()| r.u32().unwrap());
            assert_eq!(
                header,
                [PROGRAM, PROGRAM_VERSION, want_proc, TYPE_CALL, 1, STATUS_OK]
            );
            let args = r.0.to_vec();
            let mut reply = XdrWriter::default();
            let fds = u32::from(fd.is_some());
            let len = 4 + HEADER_LEN + if kind == TYPE_REPLY_WITH_FDS { 4 } else { 0 };
            reply.u32((len + payload.len()) as u32);
            for word in [PROGRAM, PROGRAM_VERSION, want_proc, kind, 1, status] {
                reply.u32(word);
            }
            if kind == TYPE_REPLY_WITH_FDS {
                reply.u32(fds);
            }
            reply.0.extend_from_slice(&payload);
            server.write_all(&reply.0).unwrap();
            if let Some(fd) = fd {
                let raw = [fd.as_raw_fd()];
                let cmsg = [ControlMessage::ScmRights(&raw)];
                sendmsg::<()>(
                    server.as_raw_fd(),
                    &[IoSlice::new(&[0])],
                    &cmsg,
                    MsgFlags::empty(),
                    None,
                )
                .unwrap();
            }
            args
        })
    }

    #[test]
    fn an_open_sends_its_arguments_and_receives_the_pipe_after_the_reply() {
        let (client, server) = UnixStream::pair().unwrap();
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        let mut ret = XdrWriter::default();
        for word in [0, 42, 0, 7] {
            ret.u32(word); // inode 42, offset 7, as two hypers
        }
        let fake = serve_one(
            server,
            PROC_DOMAIN_OPEN_LOG_FILE,
            TYPE_REPLY_WITH_FDS,
            STATUS_OK,
            ret.0,
            Some(write_end),
        );
        let mut c = VirtlogdClient {
            sock: client,
            serial: 0,
        };
        let (pos, fd) = c
            .open_log_file("qemu", &uuid(3), "idle-00003", Path::new("/l/3.log"), 0)
            .unwrap();
        assert_eq!((pos.inode, pos.offset), (42, 7));
        let args = fake.join().unwrap();
        let mut want = XdrWriter::default();
        want.string(b"qemu");
        want.opaque(&uuid(3));
        want.string(b"idle-00003");
        want.string(b"/l/3.log");
        want.u32(0);
        assert_eq!(args, want.0);
        // The fd received is the pipe's write end.
        nix::unistd::write(&fd, b"x").unwrap();
        let mut byte = [0];
        assert_eq!(nix::unistd::read(&read_end, &mut byte).unwrap(), 1);
        assert_eq!(&byte, b"x");
    }

    #[test]
    fn a_failed_call_is_a_remote_error_with_virtlogds_message() {
        let (client, server) = UnixStream::pair().unwrap();
        let mut err = XdrWriter::default();
        err.u32(1); // code
        err.u32(56); // domain
        err.u32(1); // the message is there
        err.string(b"No open log file /x");
        let fake = serve_one(
            server,
            PROC_DOMAIN_GET_LOG_FILE_POSITION,
            TYPE_REPLY,
            STATUS_ERROR,
            err.0,
            None,
        );
        let mut c = VirtlogdClient {
            sock: client,
            serial: 0,
        };
        let e = c.log_file_position(Path::new("/x")).unwrap_err();
        fake.join().unwrap();
        let remote = e.downcast_ref::<RemoteError>().expect("a RemoteError");
        assert_eq!(remote.message.as_deref(), Some("No open log file /x"));
        assert_eq!((remote.code, remote.domain), (1, 56));
    }
}
