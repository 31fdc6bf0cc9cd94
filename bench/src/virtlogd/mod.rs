//! The scenarios driven through virtlogd's RPC: libvirt's virtlogd, the daemon logd replaces, and
//! logd itself through its virtlogd socket (`logd --virtlogd-socket`), both by the one client
//! of [`rpc`] ([`RpcClient`]), so that the two do exactly the same calls.
//!
//! - `virtlogd_idle_N`, `logd_virtlogd_idle_N`: the test of `rss_per_idle_domain_10000`
//!   (memory per idle domain, with the open rates over the first and the last 100 opens).
//! - `virtlogd_one_stream_64k`, `logd_virtlogd_one_stream_64k` (and `_100b`): the
//!   `one_stream_64k` (`one_stream_100b`) transfer into a pipe that DOMAIN_OPEN_LOG_FILE handed
//!   out, ended by DOMAIN_GET_LOG_FILE_POSITION (both daemons drain the pipe into the file
//!   before they answer it).
//! - `virtlogd_reexec_log_gap_N`: virtlogd's side of the re-exec log gap ([`log_gap`]; the
//!   method is `crate::reexec::log_gap`'s).
//!
//! The client encodes and decodes the wire itself rather than with `logd_protocol::virtlogd`:
//! it is checked against the real virtlogd in every run, so driving logd with it checks logd's
//! server against the bytes virtlogd speaks, not against logd's own reading of them.
//!
//! How the bench starts a virtlogd of its own, without touching the system's, is in [`process`].
//! logd is started as in every other scenario, with `--virtlogd-socket` in its temporary
//! directory.

use std::fs::{self, File};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use logd_kit::{fd_count, stat_cpu_seconds, status_kib, Daemon};

use crate::bench::{settle, Bench};
use crate::host::others_cpu_seconds_pid;
use crate::idle::IdleDomains;
use crate::report::{median, note};
use crate::slab::KernelMemory;
use crate::transfer::{pipe_capacity, write_chunks, Transfer};
use crate::{CALL_TIMEOUT, ROTATE};

pub(crate) mod log_gap;
mod process;
mod rpc;

use process::Virtlogd;
use rpc::RpcClient;

/// Where Debian's `libvirt-daemon` package installs virtlogd.
const VIRTLOGD: &str = "/usr/sbin/virtlogd";
/// The state a root virtlogd leaves for itself when it re-executes (SIGUSR1); a virtlogd that
/// starts reads and deletes it, so the bench starts none while one is there.
const RESTART_STATE: &str = "/run/virtlogd-restart-exec.json";
/// How long a daemon may take to answer its first call.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the line written through a pipe may take to reach its log.
const WRITE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The line the bench writes through one pipe to check that the client works end to end.
const CHECK_LINE: &[u8] = b"logd-bench: one line through the virtlogd protocol\n";

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
            Server::Virtlogd => Running::Virtlogd(Virtlogd::spawn(&b.dir, tag, ROTATE)?),
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
    let mut pinned = Vec::new();
    for run in 1..=b.runs {
        let mut daemon = server.start(b, &name)?;
        let mut client = daemon.client()?;
        let (pid, who) = (daemon.pid(), daemon.name());
        b.wait_for_quiet_pid(Some(pid))?;
        settle();
        // The kernel first: listing /proc/PID/fd makes an inode and a dentry per fd.
        // Reclaimed first, so that both readings start from what cannot be reclaimed.
        let pinned0 = KernelMemory::read_pinned()?;
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
        let pinned1 = KernelMemory::read_pinned()?;
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
        note(format!(
            "{name} run {run}/{}: pinned (after reclaiming what can be): {}",
            b.runs,
            pinned1.describe_delta(&pinned0, n)
        ));
        rss.push(kib);
        kernel.push(kernel1.per_domain_kib(&kernel0, n));
        pinned.push(pinned1.per_domain_kib(&pinned0, n));
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
    let (rss, kernel, pinned) = (median(&rss), median(&kernel), median(&pinned));
    b.figure(
        &format!("{prefix}_kernel_pinned_per_idle_domain_{count}"),
        pinned,
        "KiB",
    );
    b.figure(
        &format!("{prefix}_host_pinned_per_idle_domain_{count}"),
        rss + pinned,
        "KiB",
    );
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

/// `virtlogd_one_stream_64k`, `logd_virtlogd_one_stream_64k` (and `_100b`): the
/// `one_stream_64k` (`one_stream_100b`) transfer through a pipe the daemon handed out on its
/// virtlogd socket; `test` names it (`one_stream_64k`). Each run starts a fresh daemon, opens a
/// log with DOMAIN_OPEN_LOG_FILE, writes `total` bytes into its pipe in `chunk`-byte writes and
/// calls DOMAIN_GET_LOG_FILE_POSITION, which both daemons answer only once they have drained the
/// pipe into the file. The time runs from the first write to that answer; CPU is the daemon's
/// over it.
pub(super) fn one_stream(
    b: &mut Bench,
    server: Server,
    test: &str,
    chunk: usize,
    total: u64,
) -> Result<()> {
    let name = format!("{}_{test}", server.prefix());
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
