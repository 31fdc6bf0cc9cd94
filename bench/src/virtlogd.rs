//! The scenarios driven through virtlogd's RPC: libvirt's virtlogd, the daemon logd replaces, and
//! logd itself through its virtlogd socket (`logd --virtlogd-socket`), both by the one client
//! written here ([`RpcClient`]), so that the two do exactly the same calls.
//!
//! - `virtlogd_idle_N`, `logd_virtlogd_idle_N`: the test of `rss_per_idle_domain_10000`
//!   (memory per idle domain, with the open rates over the first and the last 100 opens).
//! - `virtlogd_one_stream_64k`, `logd_virtlogd_one_stream_64k`: the `one_stream_64k` transfer
//!   into a pipe that DOMAIN_OPEN_LOG_FILE handed out, ended by DOMAIN_GET_LOG_FILE_POSITION
//!   (both daemons drain the pipe into the file before they answer it).
//!
//! The client encodes and decodes the wire itself rather than with `logd_protocol::virtlogd`:
//! it is checked against the real virtlogd in every run, so driving logd with it checks logd's
//! server against the bytes virtlogd speaks, not against logd's own reading of them.
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
//!   and offset, 64 bits each) and the write end of a pipe whose read end the daemon keeps.
//!   DOMAIN_GET_LOG_FILE_POSITION (2) takes a path and flags and returns the position.
//!
//! Running as root, virtlogd listens on `/run/libvirt/virtlogd-sock` and
//! `/run/libvirt/virtlogd-admin-sock`; no option moves them. But it takes its listening sockets
//! from systemd socket activation, as on a systemd host (`LISTEN_PID`, `LISTEN_FDS` and
//! `LISTEN_FDNAMES` naming `virtlogd.socket` and `virtlogd-admin.socket`). So the bench binds
//! both sockets in its own temporary directory and passes them that way: a virtlogd of the
//! system, if any, is left alone. The pid file goes to the temporary directory too (`-p`).
//! virtlogd still creates `/run/libvirt` and a token in `/run/libvirt/common` at start; the
//! bench removes them afterwards if `/run/libvirt` was not there before. logd is started as in
//! every other scenario, with `--virtlogd-socket` in its temporary directory.

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

use logd_kit::{fd_count, last_lines, stat_cpu_seconds, status_kib, temp_dir, Daemon, TempDir};

use crate::bench::{settle, Bench};
use crate::host::others_cpu_seconds_pid;
use crate::idle::IdleDomains;
use crate::report::{median, note};
use crate::slab::KernelMemory;
use crate::transfer::{pipe_capacity, write_chunks, Transfer};
use crate::{CALL_TIMEOUT, ROTATE};

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
/// How long a daemon may take to answer its first call.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the line written through a pipe may take to reach its log.
const WRITE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The line the bench writes through one pipe to check that the client works end to end.
const CHECK_LINE: &[u8] = b"logd-bench: one line through the virtlogd protocol\n";

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

/// The daemon a scenario drives through virtlogd's RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Server {
    /// libvirt's virtlogd, `/usr/sbin/virtlogd`.
    Virtlogd,
    /// logd, through its virtlogd socket.
    Logd,
}

impl Server {
    /// What its scenarios' and figures' names start with.
    pub(super) fn prefix(self) -> &'static str {
        match self {
            Server::Virtlogd => "virtlogd",
            Server::Logd => "logd_virtlogd",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Server::Virtlogd => "virtlogd",
            Server::Logd => "logd",
        }
    }

    /// Whether it can run here; when it cannot, a note says why and `scenario` gives no figure.
    fn available(self, scenario: &str) -> bool {
        if self == Server::Logd {
            return true;
        }
        if !Path::new(VIRTLOGD).is_file() {
            note(format!(
                "{scenario}: skipped: {VIRTLOGD} is not installed (Debian's libvirt-daemon \
                 package has it)"
            ));
            return false;
        }
        if Path::new(RESTART_STATE).exists() {
            note(format!(
                "{scenario}: skipped: {RESTART_STATE} exists (a virtlogd is re-executing itself) \
                 and a new root virtlogd would take it"
            ));
            return false;
        }
        note(format!("{scenario}: {}", virtlogd_version()));
        true
    }

    /// A fresh daemon in its own temporary directory, with the bench's rotation and fd limit.
    fn start(self, b: &Bench, tag: &str) -> Result<Running> {
        Ok(match self {
            Server::Virtlogd => Running::Virtlogd(Virtlogd::spawn(&b.dir, tag)?),
            Server::Logd => Running::Logd(b.daemon_serving_virtlogd(tag)?),
        })
    }
}

/// A daemon that serves virtlogd's RPC, killed (its directory removed) when dropped.
enum Running {
    Virtlogd(Virtlogd),
    Logd(Daemon),
}

impl Running {
    fn name(&self) -> &'static str {
        match self {
            Running::Virtlogd(_) => Server::Virtlogd.name(),
            Running::Logd(_) => Server::Logd.name(),
        }
    }

    /// A client on its virtlogd socket, once it answers.
    fn client(&mut self) -> Result<RpcClient> {
        match self {
            Running::Virtlogd(v) => v.client(),
            Running::Logd(d) => {
                let socket = d
                    .virtlogd_socket
                    .as_deref()
                    .context("logd was started without a virtlogd socket")?;
                let mut client = RpcClient::connect(socket, "logd", START_TIMEOUT)?;
                client.ping().with_context(|| {
                    d.failed("waiting for logd's first answer on its virtlogd socket")
                })?;
                client.set_timeout(CALL_TIMEOUT)?;
                Ok(client)
            }
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Running::Virtlogd(v) => v.pid(),
            Running::Logd(d) => d.pid() as u32,
        }
    }

    /// The directory the logs go to: virtlogd's, or logd's log root.
    fn logs(&self) -> PathBuf {
        match self {
            Running::Virtlogd(v) => v.logs(),
            Running::Logd(d) => d.dir.path().join("logs"),
        }
    }

    /// A context line for a failed step: the step, and what the daemon said last.
    fn failed(&self, what: &str) -> String {
        match self {
            Running::Virtlogd(v) => v.failed(what),
            Running::Logd(d) => d.failed(what),
        }
    }
}

/// `virtlogd_idle_N`, `logd_virtlogd_idle_N`: a fresh daemon per run, with the bench's rotation
/// settings and fd limit; `count` idle domains opened through its virtlogd socket (fewer if the
/// fd limit says so: both daemons hold two fds per domain), their pipes' write ends kept open and
/// nothing written. Measured as `rss_per_idle_domain_10000` measures logd: the daemon's VmRSS,
/// its fds and the kernel's slab before and after the opens, and the open rate over the first
/// and the last 100 opens. Then one line written through the first domain's pipe must reach its
/// log. Without virtlogd installed, its scenario says so and gives no figure.
pub(super) fn idle_domains(b: &mut Bench, server: Server, count: usize) -> Result<()> {
    let prefix = server.prefix();
    let name = format!("{prefix}_idle_{count}");
    if !server.available(&name) {
        return Ok(());
    }
    let n = b.domains_that_fit(count, &name);
    let (mut rss, mut kernel, mut first_100, mut last_100) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 1..=b.runs {
        let mut daemon = server.start(b, &name)?;
        let mut client = daemon.client()?;
        let (pid, who) = (daemon.pid(), daemon.name());
        b.wait_for_quiet_pid(Some(pid))?;
        settle();
        // The kernel first: listing /proc/PID/fd makes an inode and a dentry per fd.
        let kernel0 = KernelMemory::read()?;
        let (rss0, fds0) = (status_kib(pid, "VmRSS:")?, fd_count(pid)?);
        let logs = daemon.logs();
        let others0 = others_cpu_seconds_pid(Some(pid))?;
        let domains = IdleDomains::open_each(n, |i| {
            let (_, fd) =
                client.open_log_file("qemu", &uuid(i), &domain_name(i), &log(&logs, i), 0)?;
            Ok(fd)
        })
        .with_context(|| daemon.failed(&name))?;
        let others_busy =
            (others_cpu_seconds_pid(Some(pid))? - others0) / domains.elapsed().as_secs_f64();
        settle();
        let kernel1 = KernelMemory::read()?;
        let (rss1, fds1) = (status_kib(pid, "VmRSS:")?, fd_count(pid)?);
        let kib = (rss1 as f64 - rss0 as f64) / n as f64;
        note(format!(
            "{name} run {run}/{}: VmRSS {rss0} -> {rss1} KiB over {n} domains ({kib:.2} KiB \
             each); {who} holds {fds0} -> {fds1} fds ({:.2} per domain); opens took {:.1} s",
            b.runs,
            (fds1 as f64 - fds0 as f64) / n as f64,
            domains.elapsed().as_secs_f64()
        ));
        // A rate over 100 opens takes in any preemption among them: the median single open
        // says whether the opens themselves got slower.
        let last = (n.saturating_sub(99).max(1), n);
        let us = |from, to| domains.median_open(from, to).as_secs_f64() * 1e6;
        note(format!(
            "{name} run {run}/{}: the median open took {:.0} µs among opens 1–20 and {:.0} µs \
             among opens {}–{}; other work kept {others_busy:.2} CPUs busy during the opens",
            b.runs,
            us(1, 20.min(n)),
            us(last.0, last.1),
            last.0,
            last.1
        ));
        note(format!(
            "{name} run {run}/{}: {}",
            b.runs,
            kernel1.describe_delta(&kernel0, n)
        ));
        rss.push(kib);
        kernel.push(kernel1.per_domain_kib(&kernel0, n));
        first_100.push(domains.open_rate(1, 100.min(n)));
        last_100.push(domains.open_rate(last.0, last.1));
        let took = check_write(&mut client, domains.pipe(1), &log(&logs, 1))
            .with_context(|| daemon.failed(&format!("{name}: the write check")))?;
        note(format!(
            "{name} run {run}/{}: a line written into domain 1's pipe was in its log after \
             {:.1} ms, at the position {who} reports",
            b.runs,
            took.as_secs_f64() * 1000.0
        ));
        drop(domains);
    }
    let (rss, kernel) = (median(&rss), median(&kernel));
    b.figure(&format!("{prefix}_rss_per_idle_domain_{count}"), rss, "KiB");
    b.figure(
        &format!("{prefix}_kernel_per_idle_domain_{count}"),
        kernel,
        "KiB",
    );
    b.figure(
        &format!("{prefix}_host_per_idle_domain_{count}"),
        rss + kernel,
        "KiB",
    );
    b.figure(
        &format!("{prefix}_open_rate_at_10"),
        median(&first_100),
        "opens/s",
    );
    b.figure(
        &format!("{prefix}_open_rate_at_{count}"),
        median(&last_100),
        "opens/s",
    );
    Ok(())
}

/// `virtlogd_one_stream_64k`, `logd_virtlogd_one_stream_64k`: the `one_stream_64k` transfer
/// through a pipe the daemon handed out on its virtlogd socket. Each run starts a fresh daemon,
/// opens a log with DOMAIN_OPEN_LOG_FILE, writes `total` bytes into its pipe in `chunk`-byte
/// writes and calls DOMAIN_GET_LOG_FILE_POSITION, which both daemons answer only once they have
/// drained the pipe into the file. The time runs from the first write to that answer; CPU is the
/// daemon's over it.
pub(super) fn one_stream(b: &mut Bench, server: Server, chunk: usize, total: u64) -> Result<()> {
    let name = format!("{}_one_stream_64k", server.prefix());
    if !server.available(&name) {
        return Ok(());
    }
    let mut runs = Vec::new();
    for run in 1..=b.runs {
        let mut daemon = server.start(b, &name)?;
        let mut client = daemon.client()?;
        let (pid, logs) = (daemon.pid(), daemon.logs());
        // A try measured again writes another log: the last one's may not be closed yet.
        let mut tries = 0;
        let t = b.measure_pid(Some(pid), &name, run, || {
            tries += 1;
            let path = logs.join(format!("stream-{tries}.log"));
            rpc_transfer(pid, &mut client, &path, chunk, total)
                .with_context(|| daemon.failed(&name))
        })?;
        runs.push(t);
    }
    b.transfer_figures(&name, &runs);
    Ok(())
}

/// Opens the log at `path` through `client`, writes `total` bytes into its pipe in `chunk`-byte
/// writes, and asks for its position, which the daemon (`pid`) answers once it has drained the
/// pipe into the file. The answer must name the file at `path` and its end.
fn rpc_transfer(
    pid: u32,
    client: &mut RpcClient,
    path: &Path,
    chunk: usize,
    total: u64,
) -> Result<Transfer> {
    let (_, fd) = client
        .open_log_file("qemu", &uuid(0), "bench-stream", path, 0)
        .context("opening the stream's log")?;
    let mut pipe = File::from(fd);
    let stat = format!("/proc/{pid}/stat");
    let cpu0 = stat_cpu_seconds(&stat)?;
    let others0 = others_cpu_seconds_pid(Some(pid))?;
    let start = Instant::now();
    write_chunks(&mut pipe, chunk, total).context("writing into the log pipe")?;
    let end = client
        .log_file_position(path)
        .context("asking for the position")?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = stat_cpu_seconds(&stat)? - cpu0;
    let others_busy = (others_cpu_seconds_pid(Some(pid))? - others0) / seconds;
    let pipe_size = pipe_capacity(&pipe)?;
    let meta = fs::metadata(path)
        .with_context(|| format!("reading the metadata of {}", path.display()))?;
    ensure!(
        end.offset > 0 && end.inode == meta.ino() && end.offset == meta.len(),
        "after the transfer, the daemon places its log at inode {} offset {}; the file is inode \
         {} with {} bytes",
        end.inode,
        end.offset,
        meta.ino(),
        meta.len()
    );
    Ok(Transfer {
        bytes: total,
        seconds,
        cpu_seconds,
        others_busy,
        pipe_size: Some(pipe_size),
    })
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
/// the daemon where the log is: the same file and just past the line. Returns how long the line
/// took to reach the file.
fn check_write(client: &mut RpcClient, pipe: &OwnedFd, path: &Path) -> Result<Duration> {
    let start = Instant::now();
    let written = nix::unistd::write(pipe, CHECK_LINE).context("writing into the pipe")?;
    ensure!(
        written == CHECK_LINE.len(),
        "a short write ({written} bytes)"
    );
    loop {
        let got = match fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            got => got.with_context(|| format!("reading {}", path.display()))?,
        };
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
        "the daemon places its log at inode {} offset {}; the file is inode {inode} with {} \
         bytes",
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
    #[allow(unsafe_code)] // one block: the fork hook that puts the sockets at fds 3 and 4
    fn spawn(parent: &Path, tag: &str) -> Result<Virtlogd> {
        let dir = temp_dir(parent, &format!("logd-bench-{tag}-"))?;
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
    fn client(&mut self) -> Result<RpcClient> {
        let mut client = RpcClient::connect(&self.socket, "virtlogd", START_TIMEOUT)?;
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
        last_lines(&self.dir.path().join("virtlogd.stderr"), 5)
    }

    /// A context line for a failed step: the step, and what virtlogd said last.
    fn failed(&self, what: &str) -> String {
        format!("{what} (virtlogd's last words: {:?})", self.stderr_tail())
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

/// One connection to a server of virtlogd's RPC (virtlogd, or logd's virtlogd socket), one
/// call at a time.
struct RpcClient {
    sock: UnixStream,
    /// The daemon, for messages.
    peer: &'static str,
    serial: u32,
}

/// Where the daemon is in a log: the file's inode and the offset of its end.
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
    /// The daemon that reported it.
    peer: &'static str,
    code: i32,
    domain: i32,
    message: Option<String>,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (error code {}, domain {})",
            self.peer,
            self.message.as_deref().unwrap_or("no message"),
            self.code,
            self.domain
        )
    }
}

impl std::error::Error for RemoteError {}

impl RpcClient {
    fn connect(path: &Path, peer: &'static str, timeout: Duration) -> Result<RpcClient> {
        let sock = UnixStream::connect(path)
            .with_context(|| format!("connecting to {peer} at {}", path.display()))?;
        let client = RpcClient {
            sock,
            peer,
            serial: 0,
        };
        client.set_timeout(timeout)?;
        Ok(client)
    }

    fn set_timeout(&self, timeout: Duration) -> Result<()> {
        self.sock
            .set_read_timeout(Some(timeout))
            .and_then(|()| self.sock.set_write_timeout(Some(timeout)))
            .context("setting the RPC client's timeouts")
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
    /// the daemon answers with an error.
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
            .with_context(|| format!("sending a call to {}", self.peer))?;

        // Exactly the reply's bytes: a read past them would take the byte that carries the
        // first fd, and the kernel would drop the fd.
        let mut word = [0; 4];
        self.sock
            .read_exact(&mut word)
            .with_context(|| format!("reading the length of {}'s reply", self.peer))?;
        let len = u32::from_be_bytes(word) as usize;
        ensure!(
            (4 + HEADER_LEN..=4 + MESSAGE_MAX).contains(&len),
            "{}'s reply claims {len} bytes",
            self.peer
        );
        let mut body = vec![0; len - 4];
        self.sock
            .read_exact(&mut body)
            .with_context(|| format!("reading {}'s reply", self.peer))?;
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
            other => bail!("{} sent a message of type {other}, not a reply", self.peer),
        };
        ensure!(nfds <= NUM_FDS_MAX, "{} announces {nfds} fds", self.peer);
        let fds = (0..nfds)
            .map(|_| self.recv_fd())
            .collect::<Result<Vec<_>>>()?;
        match status {
            STATUS_OK => Ok(Reply {
                payload: r.0.to_vec(),
                fds,
            }),
            STATUS_ERROR => Err(RemoteError {
                peer: self.peer,
                ..r.remote_error()?
            }
            .into()),
            other => bail!("{}'s reply has status {other}", self.peer),
        }
    }

    /// One fd, on its one-byte message.
    fn recv_fd(&mut self) -> Result<OwnedFd> {
        let (mut byte, mut fds) = ([0; 1], Vec::new());
        let n = recv_with_fds(self.sock.as_fd(), &mut byte, &mut fds)
            .with_context(|| format!("receiving an fd from {}", self.peer))?;
        ensure!(
            n == 1 && fds.len() == 1,
            "expected one fd on one byte from {}, got {} fds on {n} bytes",
            self.peer,
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
            "the reply ends early ({} bytes left, {n} wanted)",
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
            peer: "the server",
            code: self.i32()?,
            domain: self.i32()?,
            message: self.optional_string()?,
        })
    }

    fn end(&self) -> Result<()> {
        ensure!(
            self.0.is_empty(),
            "{} bytes more than expected in the reply",
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
        let mut c = RpcClient {
            sock: client,
            peer: "virtlogd",
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
        let mut c = RpcClient {
            sock: client,
            peer: "virtlogd",
            serial: 0,
        };
        let e = c.log_file_position(Path::new("/x")).unwrap_err();
        fake.join().unwrap();
        let remote = e.downcast_ref::<RemoteError>().expect("a RemoteError");
        assert_eq!(remote.message.as_deref(), Some("No open log file /x"));
        assert_eq!((remote.code, remote.domain), (1, 56));
    }
}
