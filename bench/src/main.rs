//! `logd-bench`: how fast and how lean logd is, next to the limit it is compared to.
//!
//! Run it from a release build:
//!
//! ```text
//! cargo build --release --bins && target/release/logd-bench [--quick]
//! ```
//!
//! Options: `--quick` (one run, smaller transfers, under a minute), `--runs N` (default 3; every
//! figure is the median over the runs), `--logd PATH` (default: `logd` next to this executable),
//! `--dir DIR` (where the temporary directories go; default: the system temp dir),
//! `--only NAME[,NAME…]` (run only the scenario called NAME, or else those whose name contains
//! NAME, e.g. `100b`, `rss` or `one_stream_64k,console`) and `--console-queue-limit BYTES` (the
//! subscribers' queue limit in the console scenarios; default 16 MiB, see below).
//!
//! Every figure is one line `name: value unit` on stdout; progress and notes go to stderr.
//! MB is 10^6 bytes; CPU-s/GiB is CPU time per 2^30 bytes moved, from the /proc tick counters
//! (1/CLK_TCK s each, so a 1 GiB transfer at 2 GB/s is read to about ±2%). The ratios
//! (`*_vs_baseline*` in %, `*_cpu_vs_*` in x, `idle5000_vs_alone`, `idle10000_vs_alone`,
//! `open_rate_10000_vs_10`, `console_fanout_64_vs_one_stream_64k`,
//! `host_per_idle_domain_10000_vs_virtlogd`, and logd through its virtlogd socket against
//! virtlogd: `logd_virtlogd_open_rate_at_10_vs_virtlogd`, `_at_10000_vs_virtlogd` in %,
//! `logd_virtlogd_one_stream_64k_vs_virtlogd` in %, `_cpu_vs_virtlogd` in x) come last. Each
//! scenario run starts a fresh `logd` (max_size 2 MiB, 3 backups, default workers, `RUST_LOG`
//! unset) in its own directory, and kills it after.
//!
//! The scenarios (their names prefix their figures):
//! - `baseline_64k`, `baseline_100b`: the limit logd is compared to, with no daemon: in this
//!   process, one thread writes into a pipe in 64 KiB (resp. 100-byte) writes and another reads
//!   it with plain `read` into a 64 KiB buffer and appends with [`RotatingFile::write`].
//!   CPU is the reader thread's only (`/proc/thread-self/stat`).
//! - `baseline_64k_pipe1m`: the same with the pipe enlarged to 1 MiB, as logd enlarges a pipe it
//!   finds full: with the default 64 KiB pipe, every write wakes the reader.
//! - `one_stream_64k`, `one_stream_100b`: one domain writes the same amount through logd, then
//!   asks for `position()`, which answers only once logd has drained the pipe into the file.
//!   CPU is the daemon's (`/proc/PID/stat`, all threads) over the transfer.
//! - `baseline_16_streams`: 16 `baseline_64k` loops at once, each with its own pipe, writer
//!   thread, reader thread and rotating file; 1 GiB in all (quick: 256 MiB), 1/16 in each. The
//!   time runs until every reader has every byte; CPU is the readers' threads' summed, each from
//!   `CLOCK_THREAD_CPUTIME_ID` (/proc's whole ticks would lose most of 16 short counts).
//! - `streams_16`: the same amount through one logd: 16 domains, one log each, written at once by
//!   16 threads in 64 KiB writes; the time runs from the first write until `position()` has
//!   answered for every log; CPU is the daemon's. The admin snapshot must count every byte in
//!   and on disk in each stream. Also the daemon's VmRSS before the flood (the domains open),
//!   its peak (VmHWM) and its VmRSS 3 s after every stream was closed (`_rss_before`,
//!   `_peak_rss`, `_rss_after`, in KiB).
//! - `idle5000_one_stream_64k`: 5,000 idle domains are opened first (a log and a pipe each, write
//!   ends kept open, nothing written), timing the opens, then the `one_stream_64k` transfer runs.
//! - `idle10000_one_stream_64k`: the same with 10,000 idle domains (fewer if the fd limit says
//!   so). `open_rate_at_10` is opens/s over opens 1–100 and `open_rate_at_10000` over the last
//!   100; then, the machine quiet and every domain idle, the daemon's CPU is sampled over 5 s
//!   (quick: 2 s): `idle_cpu_10000`, in CPU-s per s (a note gives its context switches too).
//! - `rss_per_idle_domain_1000`, `rss_per_idle_domain_10000`: the daemon's VmRSS before opening
//!   any domain and after opening that many idle ones. For the 10,000 case also, once the machine
//!   is quiet, the kernel's slab memory ([`kernel_slab_bytes`]: `kernel_per_idle_domain_10000`,
//!   with a note naming the caches that grew most), their sum `host_per_idle_domain_10000`, and
//!   MemAvailable (noise: other processes and the page cache move it).
//! - `virtlogd_idle_10000`: the same test on libvirt's virtlogd (`/usr/sbin/virtlogd`; skipped
//!   with a note when it is not installed), started fresh in each run with the same rotation
//!   settings and fd limit and driven by a client of its RPC protocol (`virtlogd.rs`):
//!   `virtlogd_rss_per_idle_domain_10000`, `virtlogd_kernel_per_idle_domain_10000`,
//!   `virtlogd_host_per_idle_domain_10000`, `virtlogd_open_rate_at_10` and `_at_10000` (opens/s
//!   over the first and the last 100 opens). A line written through one pipe must reach its log.
//! - `logd_virtlogd_idle_10000`: the same test, by the same client, on a logd started with
//!   `--virtlogd-socket` in its directory: every domain is opened through that socket
//!   (`logd_virtlogd_rss_per_idle_domain_10000`, …, `logd_virtlogd_open_rate_at_10` and
//!   `_at_10000`).
//! - `virtlogd_one_stream_64k`, `logd_virtlogd_one_stream_64k`: the `one_stream_64k` transfer
//!   through virtlogd (skipped as above without it), and through logd's virtlogd socket, by the
//!   same client and with the same rotation settings: a fresh daemon per run, one log opened
//!   with DOMAIN_OPEN_LOG_FILE, the bytes written into the pipe it hands out, then
//!   DOMAIN_GET_LOG_FILE_POSITION, which both daemons answer only once they have drained the pipe
//!   into the file; the time runs from the first write to that answer. The answer must name the
//!   log's file and its end.
//! - `console_fanout_1`, `_8`, `_64`: a console (`GuestSide::Fd`, log on, raw, no replay) whose
//!   fake guest (this process, writing into its end of the socketpair) writes 512 MiB (quick:
//!   64 MiB) in 64 KiB writes, with 1, 8 or 64 TCP subscribers, each reading on its own thread
//!   into a 64 KiB buffer, counting and spot-checking the bytes. The time runs from the first
//!   write until every subscriber has every byte; CPU is the daemon's, per GiB of guest output.
//!   A run where logd cut a subscriber off, or a subscriber got other bytes, is left out.
//! - `console_latency`: one 16-byte probe at a time, ~1 ms apart, from a console's guest to its
//!   subscriber (2,000 probes; quick: 300), timed from just before the write to the end of the
//!   read: first on an idle daemon (`console_latency_idle_*`), then while a second domain's
//!   console streams 64 KiB writes to its own subscriber without pause (`console_latency_*`;
//!   logd puts domains on its workers round-robin, so that one is on the other worker), then
//!   with such a stream in a third domain, on the probed console's worker
//!   (`console_latency_same_worker_*`).
//! - `console_stalled`: the console transfer (256 MiB; quick: 64 MiB) with one reading
//!   subscriber, then on the same console with one more that never reads (4 KiB SO_RCVBUF);
//!   a note says whether logd cut the stalled one off.
//! - `snapshot_10000`: 10,000 idle domains (quick: 2,000) as above and one more with two logs.
//!   The admin snapshot is timed 5 times (quick: 3), each on a fresh admin connection, and its
//!   size measured as the pretty JSON of `logdctl ps --json`; a note says when it does not list
//!   every domain. Then the `one_stream_64k` transfer (256 MiB; quick: 64 MiB) runs into each
//!   log of the extra domain: once alone, once while a thread takes snapshots back to back (the
//!   order alternates between runs). Every 64 KiB write() is timed; the longest is the stall.
//!
//! The console scenarios set each subscriber's queue limit to 16 MiB: logd's default (1 MiB) is
//! less than what one poll of a console queues before it first writes to its subscribers, so a
//! guest writing at full speed gets every subscriber cut off at once however fast it reads.
//!
//! Other work on the machine skews every figure: before each measurement the bench waits (up to
//! 20 s; 5 s with --quick) until other processes keep fewer than a quarter of a CPU busy, and
//! each run's progress line says how busy they kept the machine during it.
//!
//! RLIMIT_NOFILE is raised to its hard limit first (logd inherits it). logd holds two fds per
//! domain (pipe read end, log file); when the hard limit cannot hold the wanted domains, their
//! number is scaled down and a note says so.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::Parser;
use logd::console::DEFAULT_QUEUE_LIMIT;
use logd::rotate::{RotateConfig, RotatingFile};
use logd_kit::{
    clock_ticks, kib_field, rotated_files, stat_cpu_seconds, temp_dir, Bins, Daemon, Opts,
};
use logd_protocol::admin::DaemonSnapshot;
use logd_protocol::client::{AdminClient, Client};
use logd_protocol::{ConsoleInfo, ConsoleSpec, DomainId, GuestSide, OpenFlags, WritePolicy};
use nix::fcntl::{fcntl, FcntlArg};

mod virtlogd;

use virtlogd::Server;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The rotation every scenario uses, in the daemon's config and in the baseline.
const ROTATE: RotateConfig = RotateConfig {
    max_size: 2 * MIB,
    max_backups: 3,
};
const DAEMON_CONFIG: &str = "max_size = \"2 MiB\"\nmax_backups = 3\n";

/// The size of the baseline reader's buffer.
const READ_BUF: usize = 64 * 1024;
/// Fds logd holds per open domain with one log: the pipe's read end and the log file.
const DAEMON_FDS_PER_DOMAIN: u64 = 2;
/// Fds logd and this process use besides the domains (sockets, epoll, lock, stdio, …).
const FD_RESERVE: u64 = 64;
/// Above this projected time for 1 GiB in 100-byte writes, the 100-byte scenarios move 256 MiB.
const MAX_100B_SECONDS: f64 = 60.0;
/// Before a measurement, wait until other work keeps fewer CPUs than this busy …
const QUIET_CPUS: f64 = 0.25;
/// … over this long …
const QUIET_SAMPLE: Duration = Duration::from_millis(500);
/// Other work (CPUs busy) above which a transfer's run is taken again.
const SKEWED: f64 = 0.2;
/// How many times a skewed run is taken again.
const SKEWED_RETRIES: u32 = 2;
/// … but no longer than this (resp. with --quick).
const QUIET_WAIT: Duration = Duration::from_secs(20);
const QUIET_WAIT_QUICK: Duration = Duration::from_secs(5);
/// How long a client call may wait for logd (a position() drains at most one full pipe).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The concurrent streams of `baseline_16_streams` and `streams_16`.
const STREAMS: usize = 16;
/// How long `streams_16` waits after closing its streams before it reads the daemon's VmRSS:
/// logd gives a worker's read buffer back 2 s after its last read.
const AFTER_FLOOD: Duration = Duration::from_secs(3);
/// How long `idle10000_one_stream_64k` samples the daemon's CPU with every domain idle (resp.
/// with --quick).
const IDLE_CPU_WINDOW: Duration = Duration::from_secs(5);
const IDLE_CPU_WINDOW_QUICK: Duration = Duration::from_secs(2);

/// Every scenario, in the order they run; `--only` picks among these names.
const SCENARIOS: [&str; 24] = [
    "baseline_64k",
    "baseline_64k_pipe1m",
    "one_stream_64k",
    "baseline_100b",
    "one_stream_100b",
    "baseline_16_streams",
    "streams_16",
    "idle5000_one_stream_64k",
    "idle10000_one_stream_64k",
    "rss_per_idle_domain_1000",
    "rss_per_idle_domain_10000",
    "virtlogd_idle_10000",
    "logd_virtlogd_idle_10000",
    "virtlogd_one_stream_64k",
    "logd_virtlogd_one_stream_64k",
    "console_fanout_1",
    "console_fanout_8",
    "console_fanout_64",
    "console_latency",
    "console_stalled",
    "snapshot_10000",
    "reexec_blackout_1",
    "reexec_blackout_1000",
    "reexec_blackout_10000",
];

/// Measures logd's throughput, CPU and memory against a no-daemon baseline.
#[derive(Debug, Parser)]
#[command(name = "logd-bench", about, long_about = None)]
struct Args {
    /// One run of each scenario with smaller transfers (under a minute).
    #[arg(long)]
    quick: bool,
    /// Runs per scenario; every figure is the median (default 3, or 1 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    runs: Option<u32>,
    /// The logd binary (default: `logd` next to this executable).
    #[arg(long, value_name = "PATH")]
    logd: Option<PathBuf>,
    /// Where the temporary directories go (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Run only the scenario called NAME, or else those whose name contains it (e.g. `100b`);
    /// several NAMEs are separated by commas (e.g. `one_stream_64k,console`).
    #[arg(long, value_name = "NAME[,NAME…]")]
    only: Option<String>,
    /// The queue limit of the console scenarios' subscribers, in bytes (logd's default is
    /// 1048576, which cuts off even subscribers that keep up: see docs/PERFORMANCE.md).
    #[arg(long, value_name = "BYTES", default_value_t = CONSOLE_QUEUE_LIMIT)]
    console_queue_limit: u64,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logd-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let mut b = Bench::new(args)?;
    note(format!("load average at start: {}", load_average()));
    let size_64k = if b.quick { 256 * MIB } else { GIB };
    if b.selected("baseline_64k") {
        baseline(&mut b, "baseline_64k", 64 * 1024, size_64k, None)?;
    }
    if b.selected("baseline_64k_pipe1m") {
        baseline(
            &mut b,
            "baseline_64k_pipe1m",
            64 * 1024,
            size_64k,
            Some(MIB),
        )?;
    }
    if b.selected("one_stream_64k") {
        one_stream(&mut b, "one_stream_64k", 64 * 1024, size_64k)?;
    }
    if b.selected("baseline_100b") || b.selected("one_stream_100b") {
        let size_100b = size_100b(&b)?;
        if b.selected("baseline_100b") {
            baseline(&mut b, "baseline_100b", 100, size_100b, None)?;
        }
        if b.selected("one_stream_100b") {
            one_stream(&mut b, "one_stream_100b", 100, size_100b)?;
        }
    }
    if b.selected("baseline_16_streams") {
        baseline_streams(&mut b, "baseline_16_streams", size_64k)?;
    }
    if b.selected("streams_16") {
        streams_flood(&mut b, "streams_16", size_64k)?;
    }
    if b.selected("idle5000_one_stream_64k") {
        let rates = ["open_rate_first_100", "open_rate_at_5000"];
        idle_then_stream(&mut b, 5000, size_64k, rates, None)?;
    }
    if b.selected("idle10000_one_stream_64k") {
        let rates = ["open_rate_at_10", "open_rate_at_10000"];
        let window = if b.quick {
            IDLE_CPU_WINDOW_QUICK
        } else {
            IDLE_CPU_WINDOW
        };
        let idle_cpu = Some(("idle_cpu_10000", window));
        idle_then_stream(&mut b, 10_000, size_64k, rates, idle_cpu)?;
    }
    if b.selected("rss_per_idle_domain_1000") {
        rss_per_idle_domain(&mut b, 1000)?;
    }
    if b.selected("rss_per_idle_domain_10000") {
        rss_per_idle_domain(&mut b, 10_000)?;
    }
    for server in [Server::Virtlogd, Server::Logd] {
        if b.selected(&format!("{}_idle_10000", server.prefix())) {
            virtlogd::idle_domains(&mut b, server, 10_000)?;
        }
    }
    for server in [Server::Virtlogd, Server::Logd] {
        if b.selected(&format!("{}_one_stream_64k", server.prefix())) {
            virtlogd::one_stream(&mut b, server, 64 * 1024, size_64k)?;
        }
    }
    if b.scenarios.iter().any(|s| s.starts_with("console_"))
        && b.console_queue_limit != DEFAULT_QUEUE_LIMIT as u64
    {
        note(format!(
            "the console scenarios set the subscribers' queue limit to {} bytes (logd's default: \
             {DEFAULT_QUEUE_LIMIT}; --console-queue-limit changes it)",
            b.console_queue_limit
        ));
    }
    let console_size = if b.quick { 64 * MIB } else { 512 * MIB };
    for subscribers in [1, 8, 64] {
        if b.selected(&format!("console_fanout_{subscribers}")) {
            console_fanout(&mut b, subscribers, console_size)?;
        }
    }
    if b.selected("console_latency") {
        let probes = if b.quick { 300 } else { 2000 };
        console_latency(&mut b, probes)?;
    }
    if b.selected("console_stalled") {
        let size = if b.quick { 64 * MIB } else { 256 * MIB };
        console_stalled(&mut b, size)?;
    }
    if b.selected("snapshot_10000") {
        let (domains, snapshots, size) = if b.quick {
            (2000, 3, 64 * MIB)
        } else {
            (10_000, 5, 256 * MIB)
        };
        snapshot_scenario(&mut b, domains, snapshots, size)?;
    }
    for count in [1, 1000, 10_000] {
        if b.selected(&format!("reexec_blackout_{count}")) {
            reexec_blackout(&mut b, count)?;
        }
    }
    comparisons(&mut b);
    note(format!(
        "done in {:.0} s; load average at the end: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// `baseline_*`: a pipe read into a rotating file by a thread of this process, no daemon. The
/// pipe has the kernel's default size, or `pipe_size` (logd enlarges a pipe it finds full).
fn baseline(
    b: &mut Bench,
    name: &str,
    chunk: usize,
    total: u64,
    pipe_size: Option<u64>,
) -> Result<()> {
    let mut runs = Vec::new();
    for run in 1..=b.runs {
        let dir = temp_dir(&b.dir, &format!("logd-bench-{name}-"))?;
        let t = b.measure(None, name, run, || {
            baseline_transfer(dir.path(), chunk, total, pipe_size).context(name.to_owned())
        })?;
        runs.push(t);
    }
    b.transfer_figures(name, &runs);
    Ok(())
}

/// `one_stream_*`: one domain writes `total` bytes in `chunk`-byte writes through a fresh logd.
fn one_stream(b: &mut Bench, name: &str, chunk: usize, total: u64) -> Result<()> {
    let mut runs = Vec::new();
    for run in 1..=b.runs {
        let daemon = b.daemon(name)?;
        let mut client = daemon.try_client(CALL_TIMEOUT)?;
        let t = b.measure(Some(&daemon), name, run, || {
            logd_transfer(&daemon, &mut client, chunk, total).with_context(|| daemon.failed(name))
        })?;
        runs.push(t);
    }
    b.transfer_figures(name, &runs);
    Ok(())
}

/// `idleN_one_stream_64k`: `idle` idle domains (fewer if the fd limit says so), then the
/// `one_stream_64k` transfer. The opens go one at a time on one connection; `rates` names the
/// figures for opens/s over the first 100 and over the last 100. With `idle_cpu` (a figure's
/// name and a window), the daemon's CPU is sampled over that window once the opens are done and
/// the machine is quiet, with every domain idle: the figure is in CPU-s per s, and ought to be 0.
fn idle_then_stream(
    b: &mut Bench,
    idle: usize,
    total: u64,
    rates: [&str; 2],
    idle_cpu: Option<(&str, Duration)>,
) -> Result<()> {
    let name = format!("idle{idle}_one_stream_64k");
    let idle = b.domains_that_fit(idle, &name);
    let mut runs = Vec::new();
    let (mut first_100, mut last_100, mut idle_busy) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=b.runs {
        let daemon = b.daemon(&name)?;
        let mut client = daemon.try_client(CALL_TIMEOUT)?;
        b.wait_for_quiet(Some(&daemon))?;
        let domains = IdleDomains::open(&mut client, idle).with_context(|| daemon.failed(&name))?;
        let last = (idle.saturating_sub(99).max(1), idle);
        first_100.push(domains.open_rate(1, 100.min(idle)));
        last_100.push(domains.open_rate(last.0, last.1));
        if let Some((_, window)) = idle_cpu {
            // A rate over 100 opens takes in any preemption among them: the median single open
            // says whether the opens themselves got slower.
            let us = |from, to| domains.median_open(from, to).as_secs_f64() * 1e6;
            note(format!(
                "{name} run {run}/{}: {idle} domains opened in {:.1} s; the median open took \
                 {:.0} µs among opens 1–20 and {:.0} µs among opens {}–{}",
                b.runs,
                domains.elapsed().as_secs_f64(),
                us(1, 20.min(idle)),
                us(last.0, last.1),
                last.0,
                last.1
            ));
            settle();
            b.wait_for_quiet(Some(&daemon))?;
            let (cpu0, switches0) = (daemon.cpu_seconds()?, daemon.context_switches()?);
            let start = Instant::now();
            std::thread::sleep(window);
            let seconds = start.elapsed().as_secs_f64();
            let cpu = daemon.cpu_seconds()? - cpu0;
            let switches = daemon.context_switches()? - switches0;
            note(format!(
                "{name} run {run}/{}: with every domain idle for {seconds:.1} s, logd used \
                 {cpu:.2} CPU-s and its threads were switched in {switches} times",
                b.runs
            ));
            idle_busy.push(cpu / seconds);
        }
        let t = b.measure(Some(&daemon), &name, run, || {
            logd_transfer(&daemon, &mut client, 64 * 1024, total)
                .with_context(|| daemon.failed(&name))
        })?;
        runs.push(t);
    }
    b.transfer_figures(&name, &runs);
    b.figure(rates[0], median(&first_100), "opens/s");
    b.figure(rates[1], median(&last_100), "opens/s");
    if let Some((figure, _)) = idle_cpu {
        b.figure(figure, median(&idle_busy), "CPU-s/s");
    }
    Ok(())
}

/// `baseline_16_streams`: [`STREAMS`] baseline loops at once in this process, each a writer
/// thread, a pipe of the kernel's default size and a reader thread appending to its own rotating
/// file; `total` bytes in all, in 64 KiB writes. The time runs until every reader has every byte;
/// CPU is the readers' threads', summed.
fn baseline_streams(b: &mut Bench, name: &str, total: u64) -> Result<()> {
    let mut runs = Vec::new();
    for run in 1..=b.runs {
        let dir = temp_dir(&b.dir, &format!("logd-bench-{name}-"))?;
        b.wait_for_quiet(None)?;
        let (t, pipes) =
            baseline_streams_transfer(dir.path(), 64 * 1024, total).context(name.to_owned())?;
        b.progress(name, run, &t);
        note(format!(
            "{name} run {run}/{}: {STREAMS} streams; {}",
            b.runs,
            pipes.describe()
        ));
        runs.push(t);
    }
    b.transfer_figures(name, &runs);
    Ok(())
}

/// `streams_16`: [`STREAMS`] domains in one logd, one log each, written at once by as many
/// threads in 64 KiB writes, `total` bytes in all. The time runs from the first write until
/// `position()` has answered for every log; CPU is the daemon's. Also the daemon's VmRSS before
/// the flood (with the domains open), its peak (VmHWM, since it started), and its VmRSS
/// [`AFTER_FLOOD`] after every stream is closed. The admin snapshot must count every byte in
/// and on disk in each stream.
fn streams_flood(b: &mut Bench, name: &str, total: u64) -> Result<()> {
    let mut runs = Vec::new();
    let (mut before, mut peak, mut after) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=b.runs {
        let daemon = b.daemon(name)?;
        let mut client = daemon.try_client(CALL_TIMEOUT)?;
        let r = flood_run(b, &daemon, &mut client, total).with_context(|| daemon.failed(name))?;
        b.progress(name, run, &r.transfer);
        note(format!(
            "{name} run {run}/{}: {STREAMS} streams; {}; logd's VmRSS {} KiB before, peak {} KiB, \
             {} KiB {:.0} s after closing every stream",
            b.runs,
            r.pipes.describe(),
            r.rss_before,
            r.peak_rss,
            r.rss_after,
            AFTER_FLOOD.as_secs_f64()
        ));
        before.push(r.rss_before as f64);
        peak.push(r.peak_rss as f64);
        after.push(r.rss_after as f64);
        runs.push(r.transfer);
    }
    b.transfer_figures(name, &runs);
    b.figure(&format!("{name}_peak_rss"), median(&peak), "KiB");
    b.figure(&format!("{name}_rss_before"), median(&before), "KiB");
    b.figure(&format!("{name}_rss_after"), median(&after), "KiB");
    Ok(())
}

/// What one `streams_16` run measured.
struct FloodRun {
    transfer: Transfer,
    pipes: PipeSizes,
    /// The daemon's VmRSS with the domains open, before the flood, in KiB.
    rss_before: u64,
    /// Its VmHWM after the flood, in KiB.
    peak_rss: u64,
    /// Its VmRSS [`AFTER_FLOOD`] after the streams were closed, in KiB.
    rss_after: u64,
}

/// One `streams_16` run on a fresh daemon.
fn flood_run(b: &Bench, daemon: &Daemon, client: &mut Client, total: u64) -> Result<FloodRun> {
    let per_stream = total / STREAMS as u64;
    let logs: Vec<(String, String)> = (0..STREAMS)
        .map(|i| {
            (
                format!("bench-flood-{i:02}"),
                format!("bench/flood-{i:02}.log"),
            )
        })
        .collect();
    let pipes = logs
        .iter()
        .map(|(domain, path)| {
            let (_, fd) = client
                .open_log(
                    DomainId::from_name("qemu", domain),
                    path,
                    OpenFlags::default(),
                )
                .with_context(|| format!("opening {path}"))?;
            Ok(File::from(fd))
        })
        .collect::<Result<Vec<File>>>()?;
    settle();
    b.wait_for_quiet(Some(daemon))?;
    let rss_before = daemon.rss_kib()?;

    let cpu0 = daemon.cpu_seconds()?;
    let others0 = others_cpu_seconds(Some(daemon))?;
    let (start, pipes) = concurrent_writes(pipes, 64 * 1024, per_stream)?;
    for (_, path) in &logs {
        client
            .position(path)
            .with_context(|| format!("asking for the position of {path}"))?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = daemon.cpu_seconds()? - cpu0;
    let others_busy = (others_cpu_seconds(Some(daemon))? - others0) / seconds;
    let peak_rss = daemon.peak_rss_kib()?;
    let sizes = PipeSizes::of(&pipes)?;

    // Every byte in, every byte on disk, in each stream.
    let admin = logd::config::admin_socket_for(&daemon.socket);
    let snap = timed_snapshot(&admin)?.snapshot;
    for (domain, path) in &logs {
        let stream = snap
            .domains
            .iter()
            .filter(|d| d.id.name == *domain)
            .flat_map(|d| &d.streams)
            .find(|s| s.path.ends_with(path.as_str()))
            .with_context(|| format!("the admin snapshot does not list {path}"))?;
        ensure!(
            stream.bytes_in == per_stream && stream.bytes_written == per_stream,
            "{path}: {per_stream} bytes written into its pipe, logd took in {} and wrote {} \
             ({} dropped)",
            stream.bytes_in,
            stream.bytes_written,
            stream.dropped_disk
        );
    }
    drop(snap);

    drop(pipes);
    std::thread::sleep(AFTER_FLOOD);
    let rss_after = daemon.rss_kib()?;
    Ok(FloodRun {
        transfer: Transfer {
            bytes: per_stream * STREAMS as u64,
            seconds,
            cpu_seconds,
            others_busy,
            pipe_size: None,
        },
        pipes: sizes,
        rss_before,
        peak_rss,
        rss_after,
    })
}

/// Writes `per_pipe` bytes into each pipe at once, one thread per pipe, in `chunk`-byte writes.
/// Returns when the first write began (every thread is started by then) and the pipes, still
/// open.
fn concurrent_writes(
    pipes: Vec<File>,
    chunk: usize,
    per_pipe: u64,
) -> Result<(Instant, Vec<File>)> {
    let go = Arc::new(Barrier::new(pipes.len() + 1));
    let writers: Vec<JoinHandle<std::io::Result<File>>> = pipes
        .into_iter()
        .map(|mut pipe| {
            let go = Arc::clone(&go);
            std::thread::spawn(move || {
                go.wait();
                write_chunks(&mut pipe, chunk, per_pipe)?;
                Ok(pipe)
            })
        })
        .collect();
    go.wait();
    let start = Instant::now();
    let pipes = writers
        .into_iter()
        .map(|w| {
            w.join()
                .map_err(|_| anyhow!("a writer thread panicked"))?
                .context("writing into a pipe")
        })
        .collect::<Result<Vec<File>>>()?;
    Ok((start, pipes))
}

/// The capacities of several pipes at the end of a transfer.
struct PipeSizes {
    min: usize,
    max: usize,
}

impl PipeSizes {
    fn of(pipes: &[File]) -> Result<PipeSizes> {
        let sizes = pipes
            .iter()
            .map(pipe_capacity)
            .collect::<Result<Vec<_>>>()?;
        Ok(PipeSizes {
            min: sizes.iter().copied().min().unwrap_or(0),
            max: sizes.iter().copied().max().unwrap_or(0),
        })
    }

    fn describe(&self) -> String {
        if self.min == self.max {
            format!("every pipe {} KiB at the end", self.max / 1024)
        } else {
            format!(
                "pipes {}–{} KiB at the end",
                self.min / 1024,
                self.max / 1024
            )
        }
    }
}

/// `rss_per_idle_domain_N`: the daemon's VmRSS before and after opening `count` idle domains;
/// for 10,000 also the kernel's slab memory ([`KernelMemory`]), which counts the kernel's side
/// (pipes, files, inodes, dentries, epoll items), and the machine's MemAvailable.
fn rss_per_idle_domain(b: &mut Bench, count: usize) -> Result<()> {
    let name = format!("rss_per_idle_domain_{count}");
    let n = b.domains_that_fit(count, &name);
    let with_kernel = count == 10_000;
    let (mut per_domain, mut baseline_rss, mut mem_per_domain, mut kernel_per_domain) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 1..=b.runs {
        let daemon = b.daemon(&name)?;
        let mut client = daemon.try_client(CALL_TIMEOUT)?;
        if with_kernel {
            // The slab figure is machine-wide: no other work may be allocating meanwhile.
            b.wait_for_quiet(Some(&daemon))?;
        }
        settle();
        let rss0 = daemon.rss_kib()?;
        let mem0 = mem_available_kib()?;
        let kernel0 = with_kernel.then(KernelMemory::read).transpose()?;
        let domains = IdleDomains::open(&mut client, n).with_context(|| daemon.failed(&name))?;
        settle();
        let rss1 = daemon.rss_kib()?;
        let mem1 = mem_available_kib()?;
        let kernel1 = with_kernel.then(KernelMemory::read).transpose()?;
        let fds = daemon.fd_count()?;
        let kib = (rss1 as f64 - rss0 as f64) / n as f64;
        note(format!(
            "{name} run {run}/{}: VmRSS {rss0} -> {rss1} KiB over {n} domains ({kib:.2} KiB each); \
             logd holds {fds} fds; opens took {:.1} s",
            b.runs,
            domains.elapsed().as_secs_f64()
        ));
        if let (Some(k0), Some(k1)) = (&kernel0, &kernel1) {
            kernel_per_domain.push(k1.per_domain_kib(k0, n));
            note(format!(
                "{name} run {run}/{}: {}",
                b.runs,
                k1.describe_delta(k0, n)
            ));
        }
        if let Some(secs) = std::env::var("LOGD_BENCH_HOLD")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        {
            // For profiling: keep the daemon and its domains for this long.
            note(format!("{name}: holding pid {} for {secs} s", daemon.pid()));
            std::thread::sleep(Duration::from_secs(secs));
        }
        per_domain.push(kib);
        baseline_rss.push(rss0 as f64);
        mem_per_domain.push((mem0 as f64 - mem1 as f64) / n as f64);
    }
    b.figure(&name, median(&per_domain), "KiB");
    if b.get("rss_baseline").is_none() {
        b.figure("rss_baseline", median(&baseline_rss), "KiB");
    }
    if with_kernel {
        note("MemAvailable is machine-wide and noisy: other processes, page cache and slab reclaim move it");
        b.figure(
            "mem_available_per_idle_domain_10000",
            median(&mem_per_domain),
            "KiB",
        );
        let kernel = median(&kernel_per_domain);
        b.figure("kernel_per_idle_domain_10000", kernel, "KiB");
        b.figure(
            "host_per_idle_domain_10000",
            median(&per_domain) + kernel,
            "KiB",
        );
    }
    Ok(())
}

/// Re-execs asked for in each run of a `reexec_blackout_*` scenario.
const REEXECS_PER_RUN: usize = 3;
/// The steady writer's record, and its period: 1 MB/s, so a 64 KiB pipe holds 64 ms of it.
const STEADY_RECORD: usize = 100;
const STEADY_PERIOD: Duration = Duration::from_micros(100);

/// `reexec_blackout_N`: `count` domains open (one written to steadily, the others idle), then
/// re-execs asked for on the admin socket. Figures: the blackout as the new process reports it
/// (from the freeze to every domain reading again), the same from the request, and the steady
/// writer's longest `write(2)` meanwhile (a stall would mean its pipe filled up).
fn reexec_blackout(b: &mut Bench, count: usize) -> Result<()> {
    let name = format!("reexec_blackout_{count}");
    let n = b.domains_that_fit(count, &name);
    let (mut blackout, mut total, mut stall) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=b.runs {
        let daemon = b.daemon(&name)?;
        let mut client = daemon.try_client(CALL_TIMEOUT)?;
        let _idle = IdleDomains::open(&mut client, n.saturating_sub(1))
            .with_context(|| daemon.failed(&name))?;
        let (_, fd) = client
            .open_log(
                DomainId::from_name("qemu", "bench-writer"),
                "bench/writer.log",
                OpenFlags::default(),
            )
            .with_context(|| daemon.failed(&name))?;
        settle();
        let writer = SteadyWriter::start(fd);
        let admin = logd::config::admin_socket_for(&daemon.socket);
        for i in 1..=REEXECS_PER_RUN {
            std::thread::sleep(Duration::from_millis(300));
            writer.reset_longest();
            let report = AdminClient::connect(&admin)
                .and_then(|mut c| c.reexec(None))
                .with_context(|| daemon.failed(&format!("{name}: re-exec {i}")))?;
            std::thread::sleep(Duration::from_millis(300));
            let longest = writer.longest();
            note(format!(
                "{name} run {run}/{} re-exec {i}: pid {} -> {}, {} domains and {} fds carried, \
                 blackout {:.2} ms, {:.2} ms from the request, writer's longest write {:.3} ms",
                b.runs,
                report.from_pid,
                report.to_pid,
                report.domains,
                report.fds,
                report.blackout_us as f64 / 1000.0,
                report.total_us as f64 / 1000.0,
                longest.as_secs_f64() * 1000.0
            ));
            ensure!(
                report.domains as usize == n,
                "{name}: {} domains carried, {n} open",
                report.domains
            );
            blackout.push(report.blackout_us as f64 / 1000.0);
            total.push(report.total_us as f64 / 1000.0);
            stall.push(longest.as_secs_f64() * 1000.0);
        }
        let written = writer.stop()?;
        if std::env::var_os("LOGD_BENCH_RUST_LOG").is_some() {
            let log = fs::read_to_string(daemon.dir.path().join("logd.stderr")).unwrap_or_default();
            for l in log
                .lines()
                .filter(|l| l.contains("re-exec:") || l.contains("take-over:"))
            {
                note(l);
            }
        }
        // Nothing lost, nothing doubled: the log holds every byte written.
        client
            .position("bench/writer.log")
            .with_context(|| daemon.failed(&name))?;
        let on_disk = read_all_rotated(&daemon.dir.path().join("logs/bench/writer.log"))?;
        ensure!(
            on_disk == written,
            "{name}: the writer wrote {written} bytes, its log holds {on_disk}"
        );
    }
    b.figure(&format!("{name}_ms"), median(&blackout), "ms");
    b.figure(&format!("reexec_total_{count}_ms"), median(&total), "ms");
    let worst = stall.iter().copied().fold(0.0, f64::max);
    b.figure(&format!("reexec_writer_stall_{count}_ms"), worst, "ms");
    Ok(())
}

/// Bytes in a log and its backups.
fn read_all_rotated(path: &Path) -> Result<u64> {
    Ok(rotated_files(path, ROTATE.max_backups)
        .iter()
        .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum())
}

/// A writer thread putting a record into a pipe every [`STEADY_PERIOD`], timing each write.
struct SteadyWriter {
    stop: Arc<AtomicBool>,
    /// The longest write since the last reset, ns.
    longest: Arc<AtomicU64>,
    thread: JoinHandle<std::io::Result<u64>>,
}

impl SteadyWriter {
    fn start(fd: OwnedFd) -> SteadyWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let longest = Arc::new(AtomicU64::new(0));
        let (s, l) = (stop.clone(), longest.clone());
        let thread = std::thread::spawn(move || {
            let mut f = File::from(fd);
            let record = text(STEADY_RECORD);
            let mut written = 0u64;
            let mut next = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let t = Instant::now();
                f.write_all(&record)?;
                l.fetch_max(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                written += record.len() as u64;
                next += STEADY_PERIOD;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            Ok(written)
        });
        SteadyWriter {
            stop,
            longest,
            thread,
        }
    }

    fn reset_longest(&self) {
        self.longest.store(0, Ordering::Relaxed);
    }

    fn longest(&self) -> Duration {
        Duration::from_nanos(self.longest.load(Ordering::Relaxed))
    }

    /// Stops the writer (its pipe closes); returns the bytes it wrote.
    fn stop(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("the steady writer panicked"))?
            .context("the steady writer's pipe failed")
    }
}

/// The ratios between scenarios, for those that ran.
fn comparisons(b: &mut Bench) {
    #[rustfmt::skip]
    let pairs = [
        // (figure prefix, scenario, compared with, figure suffix)
        ("one_stream_64k", "one_stream_64k", "baseline_64k", "vs_baseline"),
        ("one_stream_64k", "one_stream_64k", "baseline_64k_pipe1m", "vs_baseline_pipe1m"),
        ("one_stream_100b", "one_stream_100b", "baseline_100b", "vs_baseline"),
        ("idle5000", "idle5000_one_stream_64k", "one_stream_64k", "vs_alone"),
        ("idle10000", "idle10000_one_stream_64k", "one_stream_64k", "vs_alone"),
        ("streams_16", "streams_16", "baseline_16_streams", "vs_baseline"),
        // Issue 13: logd through its virtlogd socket, and virtlogd, on the same test.
        ("logd_virtlogd_one_stream_64k", "logd_virtlogd_one_stream_64k", "virtlogd_one_stream_64k", "vs_virtlogd"),
    ];
    for (prefix, num, den, suffix) in pairs {
        compare(b, prefix, num, den, suffix);
    }
    // Issue 6, target 3: opening the 10,000th domain costs no more than opening the 10th.
    if let (Some(late), Some(early)) = (b.get("open_rate_at_10000"), b.get("open_rate_at_10")) {
        if early > 0.0 {
            b.figure("open_rate_10000_vs_10", late / early * 100.0, "%");
        }
    }
    // Issue 13: opens/s through logd's virtlogd socket as a percentage of virtlogd's.
    for at in ["10", "10000"] {
        let (ours, theirs) = (
            format!("logd_virtlogd_open_rate_at_{at}"),
            format!("virtlogd_open_rate_at_{at}"),
        );
        let name = format!("{ours}_vs_virtlogd");
        match (b.get(&ours), b.get(&theirs)) {
            (Some(n), Some(d)) if d > 0.0 => b.figure(&name, n / d * 100.0, "%"),
            (Some(_), _) => note(format!("{name}: not computed ({theirs} is not measured)")),
            _ => {}
        }
    }
    // Issue 6, target 4b: host memory (user plus kernel) per idle domain no more than virtlogd's.
    if let (Some(ours), Some(theirs)) = (
        b.get("host_per_idle_domain_10000"),
        b.get("virtlogd_host_per_idle_domain_10000"),
    ) {
        if theirs > 0.0 {
            b.figure(
                "host_per_idle_domain_10000_vs_virtlogd",
                ours / theirs * 100.0,
                "%",
            );
        }
    }
    // Issue 6, target 6: 64 subscribers at no less than half the single-stream file throughput.
    let name = "console_fanout_64_vs_one_stream_64k";
    match (
        b.get("console_fanout_64_throughput"),
        b.get("one_stream_64k_throughput"),
    ) {
        (Some(n), Some(d)) if d > 0.0 => b.figure(name, n / d * 100.0, "%"),
        (Some(_), _) => note(format!("{name}: not computed (one_stream_64k did not run)")),
        _ => {}
    }
}

/// `PREFIX_SUFFIX`: the throughput of scenario `num` as a percentage of `den`'s, and
/// `PREFIX_cpu_SUFFIX`: the ratio of their CPU per GiB.
fn compare(b: &mut Bench, prefix: &str, num: &str, den: &str, suffix: &str) {
    for (figure, name, scale, unit) in [
        ("throughput", format!("{prefix}_{suffix}"), 100.0, "%"),
        ("cpu", format!("{prefix}_cpu_{suffix}"), 1.0, "x"),
    ] {
        let (n, d) = (format!("{num}_{figure}"), format!("{den}_{figure}"));
        match (b.get(&n), b.get(&d)) {
            (Some(n), Some(d)) if d > 0.0 => b.figure(&name, n / d * scale, unit),
            (Some(_), _) => note(format!("{name}: not computed ({d} did not run)")),
            _ => {}
        }
    }
}

/// The size of the 100-byte transfers: 64 MiB with --quick; otherwise 1 GiB, or 256 MiB when a
/// trial through logd projects 1 GiB to take more than [`MAX_100B_SECONDS`].
fn size_100b(b: &Bench) -> Result<u64> {
    if b.quick {
        return Ok(64 * MIB);
    }
    let trial = 16 * MIB;
    let daemon = b.daemon("calibrate_100b")?;
    let mut client = daemon.try_client(CALL_TIMEOUT)?;
    let t = logd_transfer(&daemon, &mut client, 100, trial)
        .with_context(|| daemon.failed("calibrating the 100-byte size"))?;
    let projected = t.seconds * (GIB / trial) as f64;
    if projected > MAX_100B_SECONDS {
        note(format!(
            "1 GiB in 100-byte writes would take ~{projected:.0} s through logd (over {MAX_100B_SECONDS:.0} s): \
             the 100b scenarios move 256 MiB"
        ));
        Ok(256 * MIB)
    } else {
        note(format!(
            "1 GiB in 100-byte writes should take ~{projected:.0} s through logd: the 100b scenarios move 1 GiB"
        ));
        Ok(GIB)
    }
}

// ---------------------------------------------------------------------------------------------
// Transfers

/// One measured transfer.
struct Transfer {
    bytes: u64,
    seconds: f64,
    /// CPU time of the side that moves the bytes to the file (reader thread or daemon).
    cpu_seconds: f64,
    /// CPUs kept busy on average by anything but this process and the daemon (other
    /// processes, the hypervisor's steal): a run with a high value is skewed.
    others_busy: f64,
    /// The pipe's capacity at the end, in bytes: logd enlarges a pipe only when a read finds it
    /// full, so a reader that keeps up leaves it small, and pays a wake-up per write. None for
    /// a console, which has no pipe.
    pipe_size: Option<usize>,
}

impl Transfer {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds
    }

    fn cpu_per_gib(&self) -> f64 {
        self.cpu_seconds / (self.bytes as f64 / GIB as f64)
    }
}

/// The baseline loop: this process writes into a pipe while one of its threads reads it into a
/// rotating file in `dir`.
fn baseline_transfer(
    dir: &Path,
    chunk: usize,
    total: u64,
    pipe_size: Option<u64>,
) -> Result<Transfer> {
    let file = RotatingFile::open(&dir.join("baseline.log"), ROTATE, true)
        .context("opening the baseline's log")?;
    let (r, w) = nix::unistd::pipe().context("creating the baseline's pipe")?;
    if let Some(size) = pipe_size {
        fcntl(&r, FcntlArg::F_SETPIPE_SZ(size as i32))
            .with_context(|| format!("enlarging the baseline's pipe to {size} bytes"))?;
    }
    let reader = baseline_reader(r, file, thread_cpu_seconds);
    let others0 = others_cpu_seconds(None)?;
    let start = Instant::now();
    let mut pipe = File::from(w);
    write_chunks(&mut pipe, chunk, total).context("writing into the baseline's pipe")?;
    let pipe_size = pipe_capacity(&pipe)?;
    drop(pipe);
    let (got, cpu_seconds) = reader
        .join()
        .map_err(|_| anyhow!("the baseline's reader thread panicked"))??;
    let seconds = start.elapsed().as_secs_f64();
    let others_busy = (others_cpu_seconds(None)? - others0) / seconds;
    ensure!(
        got == total,
        "the baseline's reader got {got} bytes of {total}"
    );
    Ok(Transfer {
        bytes: total,
        seconds,
        cpu_seconds,
        others_busy,
        pipe_size: Some(pipe_size),
    })
}

/// The baseline's reader: a thread that reads `pipe` into a 64 KiB buffer and appends each read
/// to `file` until EOF. It returns the bytes it read and its CPU time, from `cpu_clock`.
fn baseline_reader(
    pipe: OwnedFd,
    mut file: RotatingFile,
    cpu_clock: fn() -> Result<f64>,
) -> JoinHandle<Result<(u64, f64)>> {
    std::thread::spawn(move || -> Result<(u64, f64)> {
        let cpu0 = cpu_clock()?;
        let mut pipe = File::from(pipe);
        let mut buf = vec![0u8; READ_BUF];
        let mut got = 0u64;
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("reading the baseline's pipe"),
            };
            file.write(&buf[..n])
                .context("writing the baseline's log")?;
            got += n as u64;
        }
        Ok((got, cpu_clock()? - cpu0))
    })
}

/// [`STREAMS`] baseline loops at once: each a pipe of the kernel's default size, a reader thread
/// appending it to its own rotating file in `dir`, and a writer thread putting `total /
/// STREAMS` bytes into it in `chunk`-byte writes. CPU is the reader threads', summed, each from
/// [`thread_cpu_seconds_exact`]: /proc counts a thread's time in whole ticks (10 ms), and with
/// 16 readers of a few ms each that would lose most of it.
fn baseline_streams_transfer(
    dir: &Path,
    chunk: usize,
    total: u64,
) -> Result<(Transfer, PipeSizes)> {
    let per_stream = total / STREAMS as u64;
    let (mut readers, mut pipes) = (Vec::new(), Vec::new());
    for i in 0..STREAMS {
        let file = RotatingFile::open(&dir.join(format!("baseline-{i:02}.log")), ROTATE, true)
            .context("opening a baseline's log")?;
        let (r, w) = nix::unistd::pipe().context("creating a baseline's pipe")?;
        readers.push(baseline_reader(r, file, thread_cpu_seconds_exact));
        pipes.push(File::from(w));
    }
    let others0 = others_cpu_seconds(None)?;
    let (start, pipes) = concurrent_writes(pipes, chunk, per_stream)?;
    let sizes = PipeSizes::of(&pipes)?;
    drop(pipes);
    let mut cpu_seconds = 0.0;
    for (i, reader) in readers.into_iter().enumerate() {
        let (got, cpu) = reader
            .join()
            .map_err(|_| anyhow!("a baseline's reader thread panicked"))??;
        ensure!(
            got == per_stream,
            "baseline reader {i} got {got} bytes of {per_stream}"
        );
        cpu_seconds += cpu;
    }
    let seconds = start.elapsed().as_secs_f64();
    let others_busy = (others_cpu_seconds(None)? - others0) / seconds;
    let t = Transfer {
        bytes: per_stream * STREAMS as u64,
        seconds,
        cpu_seconds,
        others_busy,
        pipe_size: None,
    };
    Ok((t, sizes))
}

/// Opens a log on `daemon`, writes `total` bytes into its pipe in `chunk`-byte writes, and waits
/// for `position()`, which answers once logd has drained the pipe into the file.
fn logd_transfer(
    daemon: &Daemon,
    client: &mut Client,
    chunk: usize,
    total: u64,
) -> Result<Transfer> {
    let path = "bench/stream.log";
    let (_, fd) = client
        .open_log(
            DomainId::from_name("qemu", "bench-stream"),
            path,
            OpenFlags::default(),
        )
        .context("opening the stream's log")?;
    let mut pipe = File::from(fd);
    let (t, _) = pipe_transfer(daemon, client, &mut pipe, path, chunk, total, false)?;
    Ok(t)
}

/// Writes `total` bytes into `pipe`, the pipe of log `path`, in `chunk`-byte writes, and waits
/// for `position()`. With `time_writes`, every write() is timed and the longest is returned (the
/// timing is left out otherwise: it would weigh on 100-byte writes).
fn pipe_transfer(
    daemon: &Daemon,
    client: &mut Client,
    pipe: &mut File,
    path: &str,
    chunk: usize,
    total: u64,
    time_writes: bool,
) -> Result<(Transfer, Option<Duration>)> {
    let cpu0 = daemon.cpu_seconds()?;
    let others0 = others_cpu_seconds(Some(daemon))?;
    let start = Instant::now();
    let longest_write = if time_writes {
        Some(write_chunks_timed(pipe, chunk, total).context("writing into the log pipe")?)
    } else {
        write_chunks(pipe, chunk, total).context("writing into the log pipe")?;
        None
    };
    let end = client.position(path).context("asking for the position")?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = daemon.cpu_seconds()? - cpu0;
    let others_busy = (others_cpu_seconds(Some(daemon))? - others0) / seconds;
    let pipe_size = pipe_capacity(pipe)?;
    ensure!(
        end.offset > 0,
        "the log is empty after the transfer (position {end})"
    );
    let t = Transfer {
        bytes: total,
        seconds,
        cpu_seconds,
        others_busy,
        pipe_size: Some(pipe_size),
    };
    Ok((t, longest_write))
}

/// The capacity of a pipe, from either end.
fn pipe_capacity(pipe: &File) -> Result<usize> {
    let size = fcntl(pipe, FcntlArg::F_GETPIPE_SZ).context("F_GETPIPE_SZ on the pipe")?;
    Ok(size as usize)
}

/// Writes `total` bytes of text lines to `out`, `chunk` bytes per `write`.
fn write_chunks(out: &mut impl Write, chunk: usize, total: u64) -> std::io::Result<()> {
    let data = text(chunk);
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk as u64) as usize;
        out.write_all(&data[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// [`write_chunks`], timing each `write_all`: returns the longest.
fn write_chunks_timed(out: &mut impl Write, chunk: usize, total: u64) -> std::io::Result<Duration> {
    let data = text(chunk);
    let mut left = total;
    let mut longest = Duration::ZERO;
    while left > 0 {
        let n = left.min(chunk as u64) as usize;
        let start = Instant::now();
        out.write_all(&data[..n])?;
        longest = longest.max(start.elapsed());
        left -= n as u64;
    }
    Ok(longest)
}

/// `len` bytes of numbered lines, like a console's output (the rotation cuts after newlines).
fn text(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 80);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(
            format!("{i:08} logd-bench the quick brown fox jumps over the lazy dog\n").as_bytes(),
        );
        i += 1;
    }
    v.truncate(len);
    v
}

/// Idle domains: one log and one pipe each, write ends held open, nothing written.
struct IdleDomains {
    /// The write ends; dropping them closes the logs.
    pipes: Vec<OwnedFd>,
    /// When each open returned, from the start of the first.
    done_at: Vec<Duration>,
}

impl IdleDomains {
    fn open(client: &mut Client, count: usize) -> Result<IdleDomains> {
        IdleDomains::open_each(count, |i| {
            let domain = DomainId::from_name("qemu", &format!("idle-{i:05}"));
            let (_, fd) =
                client.open_log(domain, &format!("idle/{i:05}.log"), OpenFlags::default())?;
            Ok(fd)
        })
    }

    /// Opens domains 1 to `count` one at a time with `open`, which returns a domain's pipe.
    fn open_each(
        count: usize,
        mut open: impl FnMut(usize) -> Result<OwnedFd>,
    ) -> Result<IdleDomains> {
        let mut pipes = Vec::with_capacity(count);
        let mut done_at = Vec::with_capacity(count);
        let start = Instant::now();
        for i in 1..=count {
            let fd = open(i).with_context(|| format!("opening idle domain {i} of {count}"))?;
            pipes.push(fd);
            done_at.push(start.elapsed());
        }
        Ok(IdleDomains { pipes, done_at })
    }

    /// The pipe of domain `i` (1-based).
    fn pipe(&self, i: usize) -> &OwnedFd {
        &self.pipes[i - 1]
    }

    /// Opens per second over opens `first..=last` (1-based).
    fn open_rate(&self, first: usize, last: usize) -> f64 {
        let begin = match first {
            0 | 1 => Duration::ZERO,
            _ => self.done_at[first - 2],
        };
        let took = self.done_at[last - 1] - begin;
        (last + 1 - first) as f64 / took.as_secs_f64()
    }

    /// The median time one open took among opens `first..=last` (1-based).
    fn median_open(&self, first: usize, last: usize) -> Duration {
        let took: Vec<f64> = (first.max(1)..=last)
            .map(|i| {
                let begin = if i == 1 {
                    Duration::ZERO
                } else {
                    self.done_at[i - 2]
                };
                (self.done_at[i - 1] - begin).as_secs_f64()
            })
            .collect();
        Duration::from_secs_f64(median(&took))
    }

    fn elapsed(&self) -> Duration {
        self.done_at.last().copied().unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Consoles

/// The fake guest's write size, and the period of the text it writes.
const CONSOLE_CHUNK: usize = 64 * 1024;
/// Every bench console's name in its domain.
const CONSOLE_NAME: &str = "serial0";
/// Room for the 64 subscribers of `console_fanout_64` (logd's default is 32).
const CONSOLE_MAX_SUBSCRIBERS: u32 = 100;
/// The subscribers' queue limit in the console scenarios (`--console-queue-limit`). logd's
/// default, 1 MiB, is less than what one poll of a console can queue before it first writes to
/// a subscriber (16 reads from the guest of up to 256 KiB each), so at the default a guest
/// writing at full speed gets every subscriber disconnected as slow in the first poll, however
/// fast it reads. 16 MiB is above that burst, and still cuts off a subscriber that stalls.
const CONSOLE_QUEUE_LIMIT: u64 = 16 * MIB;
/// How long a subscriber waits for a byte before its run fails.
const SUBSCRIBER_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of each read a subscriber compares with what the guest wrote there: a lost, doubled
/// or reordered piece shifts everything after it, so the start of each read is enough to see it.
const SPOT_CHECK: usize = 16;
/// A latency probe, `probe NNNNNNNNN\n`: the guest's only bytes in flight.
const PROBE_LEN: usize = 16;
/// The pause between two probes.
const PROBE_PAUSE: Duration = Duration::from_millis(1);
/// Probes sent, and not counted, before the measured ones.
const PROBE_WARMUP: u32 = 20;
/// How long the bulk stream runs before the probes start.
const BULK_RAMP: Duration = Duration::from_millis(300);

/// `console_fanout_K`: one fake guest writes `total` bytes to a console with its log on and `K`
/// subscribers, each reading everything on its own thread.
fn console_fanout(b: &mut Bench, subscribers: usize, total: u64) -> Result<()> {
    let name = format!("console_fanout_{subscribers}");
    let mut runs = Vec::new();
    for run in 1..=b.runs {
        let daemon = b.daemon(&name)?;
        let mut client = daemon.try_client(CALL_TIMEOUT)?;
        let (t, ok) = fanout_run(b, &daemon, &mut client, subscribers, total)
            .with_context(|| daemon.failed(&name))?;
        if ok {
            b.progress(&name, run, &t.transfer);
            t.progress(&name, run, b.runs);
            runs.push(t.transfer);
        } else {
            t.progress(&name, run, b.runs);
            note(format!(
                "{name} run {run}: not every subscriber got every byte; the run is left out"
            ));
        }
    }
    if runs.is_empty() {
        note(format!(
            "{name}: no run delivered every byte to every subscriber: no figures"
        ));
    } else {
        b.transfer_figures(&name, &runs);
    }
    Ok(())
}

/// One `console_fanout_K` run; false when not every subscriber got exactly the guest's bytes.
fn fanout_run(
    b: &Bench,
    daemon: &Daemon,
    client: &mut Client,
    subscribers: usize,
    total: u64,
) -> Result<(ConsoleTransfer, bool)> {
    let mut console = FakeConsole::add(client, "bench-fanout", b.console_queue_limit)?;
    let subs = (0..subscribers)
        .map(|_| Ok((console.subscribe()?, 0)))
        .collect::<Result<Vec<_>>>()?;
    console.wait_subscribers(client, subscribers as u32)?;
    b.wait_for_quiet(Some(daemon))?;
    let t = console_transfer(daemon, &mut console.guest, subs, total)?;
    let info = console.info(client)?;
    let ok = t.check(
        &format!("console_fanout_{subscribers}"),
        total,
        &info,
        total,
    );
    Ok((t, ok))
}

/// `console_latency`: how long a small write takes from the guest to a subscriber, on an idle
/// daemon and while another domain's console streams in bulk, on another worker of logd's and
/// on the same one.
fn console_latency(b: &mut Bench, probes: u32) -> Result<()> {
    let name = "console_latency";
    let workers = logd_workers();
    if workers < 2 {
        note(format!(
            "{name}: logd runs {workers} worker: the bulk console cannot be put on another worker \
             than the probed one"
        ));
    }
    let mut runs = Vec::new();
    for run in 1..=b.runs {
        let daemon = b.daemon(name)?;
        let mut client = daemon.try_client(CALL_TIMEOUT)?;
        let r = latency_run(b, &daemon, &mut client, probes, workers)
            .with_context(|| daemon.failed(name))?;
        let show = |what: &str, l: &Latencies, bulk: Option<&BulkOutcome>| {
            let bulk = match bulk {
                None => String::new(),
                Some(o) => format!(
                    " (bulk stream {:.0} MB/s to its subscriber{})",
                    o.mb_per_s,
                    match o.cut_offs {
                        0 => String::new(),
                        n => format!(
                            ", which logd cut off as slow {n} time(s) and which reconnected"
                        ),
                    }
                ),
            };
            format!(
                "{what}: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs{bulk}",
                l.p50, l.p99, l.max
            )
        };
        note(format!(
            "{name} run {run}/{}: {probes} probes; {}; {}; {}",
            b.runs,
            show("idle", &r.idle, None),
            show(
                "bulk on the other worker",
                &r.other_worker.0,
                Some(&r.other_worker.1)
            ),
            show(
                "bulk on the same worker",
                &r.same_worker.0,
                Some(&r.same_worker.1)
            ),
        ));
        runs.push(r);
    }
    let pick = |f: &dyn Fn(&LatencyRun) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let figures = [
        ("console_latency_p50", pick(&|r| r.other_worker.0.p50)),
        ("console_latency_p99", pick(&|r| r.other_worker.0.p99)),
        ("console_latency_max", pick(&|r| r.other_worker.0.max)),
        ("console_latency_idle_p50", pick(&|r| r.idle.p50)),
        ("console_latency_idle_p99", pick(&|r| r.idle.p99)),
        (
            "console_latency_same_worker_p50",
            pick(&|r| r.same_worker.0.p50),
        ),
        (
            "console_latency_same_worker_p99",
            pick(&|r| r.same_worker.0.p99),
        ),
        (
            "console_latency_same_worker_max",
            pick(&|r| r.same_worker.0.max),
        ),
    ];
    for (figure, value) in figures {
        b.figure(figure, value, "µs");
    }
    Ok(())
}

/// The workers logd runs with the bench's config: its default, one per core.
fn logd_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The probes of one `console_latency` run.
struct LatencyRun {
    idle: Latencies,
    /// With the bulk stream in a domain on another worker than the probed console's.
    other_worker: (Latencies, BulkOutcome),
    /// With the bulk stream in a domain on the probed console's worker.
    same_worker: (Latencies, BulkOutcome),
}

/// One `console_latency` run: the probes alone, with a bulk stream in a domain on another
/// worker, then with one in a domain on the same worker. logd puts each new domain on the next
/// worker, round-robin; the probed console's domain is the first, so it is on worker 0.
fn latency_run(
    b: &Bench,
    daemon: &Daemon,
    client: &mut Client,
    probes: u32,
    workers: usize,
) -> Result<LatencyRun> {
    let mut probe = FakeConsole::add(client, "bench-probe", b.console_queue_limit)?;
    let mut sub = probe.subscribe()?;
    probe.wait_subscribers(client, 1)?;
    b.wait_for_quiet(Some(daemon))?;
    let per_phase = PROBE_WARMUP + probes;
    let idle = probe_latency(&mut probe.guest, &mut sub, probes, 0)?;
    // Domain 2: worker 1.
    let other_worker = latency_with_bulk(
        b,
        client,
        &mut probe,
        &mut sub,
        "bench-bulk",
        probes,
        per_phase,
    )?;
    // Idle domains until the next one comes round to worker 0 again.
    let fillers = (workers - 2 % workers) % workers;
    let _fillers = (0..fillers)
        .map(|i| {
            let domain = DomainId::from_name("qemu", &format!("bench-filler-{i}"));
            client
                .open_log(
                    domain,
                    &format!("bench/filler-{i}.log"),
                    OpenFlags::default(),
                )
                .map(|(_, fd)| fd)
                .context("opening a filler domain")
        })
        .collect::<Result<Vec<OwnedFd>>>()?;
    let same_worker = latency_with_bulk(
        b,
        client,
        &mut probe,
        &mut sub,
        "bench-bulk-same-worker",
        probes,
        2 * per_phase,
    )?;
    Ok(LatencyRun {
        idle,
        other_worker,
        same_worker,
    })
}

/// The probes while a new domain's console streams in bulk.
fn latency_with_bulk(
    b: &Bench,
    client: &mut Client,
    probe: &mut FakeConsole,
    sub: &mut TcpStream,
    domain: &str,
    probes: u32,
    first_seq: u32,
) -> Result<(Latencies, BulkOutcome)> {
    let bulk = FakeConsole::add(client, domain, b.console_queue_limit)?;
    let guest = bulk
        .guest
        .try_clone()
        .context("cloning the bulk guest's socket")?;
    let stream = BulkStream::start(guest, &bulk)?;
    bulk.wait_subscribers(client, 1)?;
    std::thread::sleep(BULK_RAMP);
    let took = probe_latency(&mut probe.guest, sub, probes, first_seq);
    let outcome = stream.stop();
    Ok((took?, outcome?))
}

/// Sends [`PROBE_WARMUP`] and then `count` probes through the console, one at a time with
/// [`PROBE_PAUSE`] between them, and times each from just before the guest's write to when the
/// subscriber has read all of it.
fn probe_latency(
    guest: &mut UnixStream,
    sub: &mut TcpStream,
    count: u32,
    first_seq: u32,
) -> Result<Latencies> {
    let mut took = Vec::with_capacity(count as usize);
    let mut buf = [0u8; PROBE_LEN];
    for i in 0..PROBE_WARMUP + count {
        let seq = first_seq + i;
        let msg = format!("probe {seq:09}\n");
        debug_assert_eq!(msg.len(), PROBE_LEN);
        let start = Instant::now();
        guest
            .write_all(msg.as_bytes())
            .with_context(|| format!("writing probe {seq}"))?;
        sub.read_exact(&mut buf)
            .with_context(|| format!("waiting for probe {seq}"))?;
        let t = start.elapsed();
        ensure!(
            buf == msg.as_bytes(),
            "probe {seq}: the subscriber read {:?}",
            String::from_utf8_lossy(&buf)
        );
        if i >= PROBE_WARMUP {
            took.push(t);
        }
        std::thread::sleep(PROBE_PAUSE);
    }
    Ok(Latencies::of(took))
}

/// Latency percentiles of one run, in µs.
struct Latencies {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Latencies {
    /// Nearest-rank percentiles.
    fn of(mut took: Vec<Duration>) -> Latencies {
        took.sort();
        let rank = |p: f64| {
            let i = ((p / 100.0 * took.len() as f64).ceil() as usize).clamp(1, took.len());
            took[i - 1].as_secs_f64() * 1e6
        };
        Latencies {
            p50: rank(50.0),
            p99: rank(99.0),
            max: rank(100.0),
        }
    }
}

/// A second console's guest writing 64 KiB after 64 KiB until stopped, while one subscriber
/// drains it. When logd cuts the subscriber off as slow, it reconnects at once (as a user
/// would), so that the stream keeps its subscriber; the cut-offs are counted.
struct BulkStream {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    started: Instant,
    writer: JoinHandle<Result<()>>,
    reader: JoinHandle<Result<u32>>,
}

/// What the bulk stream did.
struct BulkOutcome {
    /// Bytes per second its subscriber received, in MB/s.
    mb_per_s: f64,
    /// How many times logd cut its subscriber off.
    cut_offs: u32,
}

impl BulkStream {
    /// How often the subscriber's thread looks at the stop flag.
    const STOP_POLL: Duration = Duration::from_millis(50);

    fn start(mut guest: UnixStream, console: &FakeConsole) -> Result<BulkStream> {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let connect = {
            let addr = console.tcp.clone();
            move || -> Result<TcpStream> {
                let s = TcpStream::connect(&addr)
                    .with_context(|| format!("connecting to the bulk console at {addr}"))?;
                s.set_read_timeout(Some(Self::STOP_POLL))?;
                Ok(s)
            }
        };
        let mut sock = connect()?;
        let writer = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || -> Result<()> {
                let data = text(CONSOLE_CHUNK);
                while !stop.load(Ordering::Relaxed) {
                    guest
                        .write_all(&data)
                        .context("writing into the bulk console")?;
                }
                Ok(())
            })
        };
        let reader = {
            let (stop, received) = (Arc::clone(&stop), Arc::clone(&received));
            std::thread::spawn(move || -> Result<u32> {
                let mut buf = vec![0u8; READ_BUF];
                let mut cut_offs = 0;
                while !stop.load(Ordering::Relaxed) {
                    match sock.read(&mut buf) {
                        Ok(0) => {
                            cut_offs += 1;
                            sock = connect()?;
                        }
                        Ok(n) => {
                            received.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                ErrorKind::Interrupted
                                    | ErrorKind::WouldBlock
                                    | ErrorKind::TimedOut
                            ) => {}
                        Err(e) => return Err(e).context("reading the bulk console"),
                    }
                }
                Ok(cut_offs)
            })
        };
        Ok(BulkStream {
            stop,
            received,
            started: Instant::now(),
            writer,
            reader,
        })
    }

    fn stop(self) -> Result<BulkOutcome> {
        let seconds = self.started.elapsed().as_secs_f64();
        let bytes = self.received.load(Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        self.writer
            .join()
            .map_err(|_| anyhow!("the bulk writer panicked"))??;
        let cut_offs = self
            .reader
            .join()
            .map_err(|_| anyhow!("the bulk reader panicked"))??;
        Ok(BulkOutcome {
            mb_per_s: bytes as f64 / 1e6 / seconds,
            cut_offs,
        })
    }
}

/// `console_stalled`: the guest's throughput with one reading subscriber, then with one more
/// that never reads.
fn console_stalled(b: &mut Bench, total: u64) -> Result<()> {
    let name = "console_stalled";
    let (mut none, mut one) = (Vec::new(), Vec::new());
    for run in 1..=b.runs {
        let daemon = b.daemon(name)?;
        let mut client = daemon.try_client(CALL_TIMEOUT)?;
        match stalled_run(b, &daemon, &mut client, total, run)
            .with_context(|| daemon.failed(name))?
        {
            Some((n, o)) => {
                none.push(n);
                one.push(o);
            }
            None => note(format!(
                "{name} run {run}: the reading subscriber did not get every byte; the run is left out"
            )),
        }
    }
    if none.is_empty() {
        note(format!(
            "{name}: no run delivered every byte to the reading subscriber: no figures"
        ));
        return Ok(());
    }
    b.transfer_figures("console_stalled_none", &none);
    b.transfer_figures("console_stalled_one", &one);
    if let (Some(n), Some(o)) = (
        b.get("console_stalled_none_throughput"),
        b.get("console_stalled_one_throughput"),
    ) {
        b.figure("console_stalled_vs_none", o / n * 100.0, "%");
    }
    Ok(())
}

/// One `console_stalled` run, on one console: the transfer with the reading subscriber only,
/// then with a stalled one too. Notes whether logd disconnected the stalled one. None when the
/// reading subscriber did not get every byte.
fn stalled_run(
    b: &Bench,
    daemon: &Daemon,
    client: &mut Client,
    total: u64,
    run: u32,
) -> Result<Option<(Transfer, Transfer)>> {
    let mut console = FakeConsole::add(client, "bench-stalled", b.console_queue_limit)?;
    let reader = console.subscribe()?;
    console.wait_subscribers(client, 1)?;
    b.wait_for_quiet(Some(daemon))?;
    let none = console_transfer(daemon, &mut console.guest, vec![(reader, 0)], total)?;
    let ok = none.check("console_stalled_none", total, &console.info(client)?, total);
    if ok {
        b.progress("console_stalled_none", run, &none.transfer);
    }
    none.progress("console_stalled_none", run, b.runs);
    if !ok {
        return Ok(None);
    }
    let reader = none.received[0]
        .sock
        .try_clone()
        .context("cloning the reading subscriber")?;

    let mut stuck = console.subscribe_stalled()?;
    console.wait_subscribers(client, 2)?;
    b.wait_for_quiet(Some(daemon))?;
    let one = console_transfer(daemon, &mut console.guest, vec![(reader, total)], total)?;
    let info = console.info(client)?;
    let ok = one.check("console_stalled_one", total, &info, 2 * total);
    if ok {
        b.progress("console_stalled_one", run, &one.transfer);
    }
    one.progress("console_stalled_one", run, b.runs);

    // The stalled subscriber must have been cut off: logd counts it, and its socket ends.
    stuck.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut drained = 0u64;
    let mut buf = vec![0u8; READ_BUF];
    let end = loop {
        match stuck.read(&mut buf) {
            Ok(0) => break "EOF".to_owned(),
            Ok(n) => drained += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break format!("no EOF within 10 s ({e})"),
        }
    };
    let cut = info.slow_disconnects == 1 && end == "EOF";
    note(format!(
        "console_stalled run {run}: {} (logd: slow_disconnects {}, {} subscriber(s) left; the \
         stalled socket then read {drained} bytes, then {end})",
        if cut {
            "the stalled subscriber was disconnected"
        } else {
            "THE STALLED SUBSCRIBER WAS NOT DISCONNECTED as expected"
        },
        info.slow_disconnects,
        info.subscribers
    ));
    Ok(ok.then_some((none.transfer, one.transfer)))
}

/// A console added for the bench: the fake guest's end of its socketpair, and the TCP address
/// subscribers connect to.
struct FakeConsole {
    domain: String,
    /// The guest's end: the bench writes into it as a guest writes to its serial port.
    guest: UnixStream,
    tcp: String,
}

impl FakeConsole {
    /// Adds console [`CONSOLE_NAME`] to domain `domain`: log on (rotated as every scenario's),
    /// raw, read-only, no replay (subscribers get live bytes only).
    fn add(client: &mut Client, domain: &str, queue_limit: u64) -> Result<FakeConsole> {
        let spec = ConsoleSpec {
            tcp: Some("127.0.0.1:0".to_owned()),
            write: WritePolicy::None,
            replay: Some(0),
            max_subscribers: Some(CONSOLE_MAX_SUBSCRIBERS),
            queue_limit: Some(queue_limit),
            ..ConsoleSpec::new(
                DomainId::from_name("qemu", domain),
                CONSOLE_NAME,
                GuestSide::Fd,
                &format!("bench/{domain}.console.log"),
            )
        };
        let (added, fd) = client
            .add_console(spec)
            .with_context(|| format!("adding a console to {domain}"))?;
        let fd = fd.context("logd returned no guest fd for a GuestSide::Fd console")?;
        let tcp = added.tcp.context("logd bound no TCP listener")?;
        Ok(FakeConsole {
            domain: domain.to_owned(),
            guest: UnixStream::from(fd),
            tcp,
        })
    }

    /// Connects a subscriber.
    fn subscribe(&self) -> Result<TcpStream> {
        let s = TcpStream::connect(&self.tcp)
            .with_context(|| format!("connecting to the console at {}", self.tcp))?;
        s.set_read_timeout(Some(SUBSCRIBER_TIMEOUT))
            .context("setting a subscriber's timeout")?;
        Ok(s)
    }

    /// Connects a subscriber that will never read, with a 4 KiB receive buffer (set before
    /// connecting, so that the window it offers is small from the start).
    fn subscribe_stalled(&self) -> Result<TcpStream> {
        use nix::sys::socket::{
            connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
        };
        let addr: SocketAddrV4 = self
            .tcp
            .parse()
            .with_context(|| format!("parsing the console's address {}", self.tcp))?;
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .context("creating the stalled subscriber's socket")?;
        setsockopt(&fd, sockopt::RcvBuf, &4096).context("setting SO_RCVBUF")?;
        connect(fd.as_raw_fd(), &SockaddrIn::from(addr))
            .with_context(|| format!("connecting to the console at {}", self.tcp))?;
        Ok(TcpStream::from(fd))
    }

    /// What logd says about this console.
    fn info(&self, client: &mut Client) -> Result<ConsoleInfo> {
        client
            .list_consoles()
            .context("listing the consoles")?
            .into_iter()
            .find(|c| c.domain.name == self.domain && c.name == CONSOLE_NAME)
            .with_context(|| format!("logd does not list the console of {}", self.domain))
    }

    /// Waits until logd has accepted `n` subscribers: until then a connected subscriber sits in
    /// the listen backlog, and would miss what the guest writes (there is no replay).
    fn wait_subscribers(&self, client: &mut Client, n: u32) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let have = self.info(client)?.subscribers;
            if have == n {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "logd has {have} subscribers on {} after 20 s, not {n}",
                self.domain
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One console transfer.
struct ConsoleTransfer {
    /// Until every subscriber had every byte; CPU is the daemon's.
    transfer: Transfer,
    /// How long the guest's writes took. They run ahead of the subscribers by what the
    /// socketpair, logd's queues and the TCP buffers hold.
    guest_seconds: f64,
    /// CPU time of this process (the guest and the subscribers) over the transfer.
    bench_cpu_seconds: f64,
    /// The daemon's peak VmRSS so far (VmHWM), in KiB: the subscribers' queues share the
    /// guest's chunks, so it grows with how far the slowest subscriber falls behind.
    daemon_peak_kib: u64,
    received: Vec<Received>,
}

impl ConsoleTransfer {
    fn progress(&self, name: &str, run: u32, runs: u32) {
        note(format!(
            "{name} run {run}/{runs}: the guest's writes took {:.2} s ({:.0} MB/s); the bench \
             (guest and {} subscriber(s)) used {:.2} CPU-s; logd's peak VmRSS so far {} MiB",
            self.guest_seconds,
            self.transfer.bytes as f64 / 1e6 / self.guest_seconds,
            self.received.len(),
            self.bench_cpu_seconds,
            self.daemon_peak_kib / 1024
        ));
    }

    /// Whether every subscriber got exactly the `want` bytes the guest wrote, and logd counted
    /// `bytes_in` guest bytes in all; notes each problem.
    fn check(&self, what: &str, want: u64, info: &ConsoleInfo, bytes_in: u64) -> bool {
        let mut ok = true;
        let subs = self.received.len();
        let cut: Vec<u64> = self
            .received
            .iter()
            .filter(|r| r.cut_off)
            .map(|r| r.bytes)
            .collect();
        if !cut.is_empty() {
            ok = false;
            note(format!(
                "{what}: logd closed {} of {subs} subscribers early, after {}–{} of {want} bytes \
                 (its slow_disconnects counter: {})",
                cut.len(),
                cut.iter().min().unwrap_or(&0),
                cut.iter().max().unwrap_or(&0),
                info.slow_disconnects
            ));
        }
        let wrong: Vec<(usize, u64)> = self
            .received
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.cut_off && r.bytes != want)
            .map(|(i, r)| (i, r.bytes))
            .collect();
        if let Some((i, got)) = wrong.first() {
            ok = false;
            note(format!(
                "{what}: {} of {subs} subscribers received a wrong count (subscriber {i}: {got} \
                 bytes of {want})",
                wrong.len()
            ));
        }
        let differ: Vec<(usize, u64)> = self
            .received
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.mismatch.filter(|_| !r.cut_off).map(|at| (i, at)))
            .collect();
        if let Some((i, at)) = differ.first() {
            ok = false;
            note(format!(
                "{what}: {} of {subs} subscribers received bytes that differ from the guest's \
                 (subscriber {i} from stream offset {at})",
                differ.len()
            ));
        }
        if info.bytes_in != bytes_in {
            ok = false;
            note(format!(
                "{what}: logd counted {} guest bytes in, the guest wrote {bytes_in}",
                info.bytes_in
            ));
        }
        ok
    }
}

/// What one reading subscriber received in a transfer.
struct Received {
    sock: TcpStream,
    bytes: u64,
    /// When it had every byte, or logd closed the connection.
    at: Instant,
    /// logd closed the connection before the end (it disconnects a subscriber that falls
    /// behind).
    cut_off: bool,
    /// The first stream offset where a read began with bytes other than the guest's.
    mismatch: Option<u64>,
}

/// A subscriber's thread: reads into a 64 KiB buffer and counts until it has `want` bytes or
/// logd closes; spot-checks each read against the guest's text. `from` is the stream offset
/// it starts at (what it received in earlier transfers).
fn receive(mut sock: TcpStream, from: u64, want: u64, pattern: &[u8]) -> Result<Received> {
    let mut buf = vec![0u8; READ_BUF];
    let (mut got, mut mismatch, mut cut_off) = (0u64, None, false);
    while got < want {
        let n = match sock.read(&mut buf) {
            Ok(0) => {
                cut_off = true;
                break;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("a subscriber's read after {got} of {want} bytes"))
            }
        };
        if mismatch.is_none() {
            let at = from + got;
            let differs = buf[..n.min(SPOT_CHECK)]
                .iter()
                .enumerate()
                .any(|(i, &c)| c != pattern[((at + i as u64) % pattern.len() as u64) as usize]);
            if differs {
                mismatch = Some(at);
            }
        }
        got += n as u64;
    }
    Ok(Received {
        sock,
        bytes: got,
        at: Instant::now(),
        cut_off,
        mismatch,
    })
}

/// The guest writes `total` bytes in 64 KiB writes while each subscriber, on its own thread,
/// reads from its stream offset; done when every subscriber has every byte or was cut off.
fn console_transfer(
    daemon: &Daemon,
    guest: &mut UnixStream,
    subs: Vec<(TcpStream, u64)>,
    total: u64,
) -> Result<ConsoleTransfer> {
    let pattern: Arc<[u8]> = text(CONSOLE_CHUNK).into();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|(sock, from)| {
            let pattern = Arc::clone(&pattern);
            std::thread::spawn(move || receive(sock, from, total, &pattern))
        })
        .collect();
    let cpu0 = daemon.cpu_seconds()?;
    let bench0 = stat_cpu_seconds("/proc/self/stat")?;
    let others0 = others_cpu_seconds(Some(daemon))?;
    let start = Instant::now();
    write_chunks(guest, CONSOLE_CHUNK, total).context("writing into the console's guest side")?;
    let guest_seconds = start.elapsed().as_secs_f64();
    let mut received = Vec::with_capacity(readers.len());
    for r in readers {
        received.push(
            r.join()
                .map_err(|_| anyhow!("a subscriber's thread panicked"))??,
        );
    }
    let end = received
        .iter()
        .map(|r| r.at)
        .max()
        .unwrap_or_else(Instant::now);
    let seconds = end.saturating_duration_since(start).as_secs_f64();
    let cpu_seconds = daemon.cpu_seconds()? - cpu0;
    let bench_cpu_seconds = stat_cpu_seconds("/proc/self/stat")? - bench0;
    let daemon_peak_kib = daemon.peak_rss_kib()?;
    let others_busy = (others_cpu_seconds(Some(daemon))? - others0) / start.elapsed().as_secs_f64();
    Ok(ConsoleTransfer {
        transfer: Transfer {
            bytes: total,
            seconds,
            cpu_seconds,
            others_busy,
            pipe_size: None,
        },
        guest_seconds,
        bench_cpu_seconds,
        daemon_peak_kib,
        received,
    })
}

// ---------------------------------------------------------------------------------------------
// Admin snapshot

/// The domain whose two logs carry `snapshot_10000`'s transfers; it is listed with the idle ones.
const SNAPSHOT_STREAM_DOMAIN: &str = "bench-stream";
/// Its log for the transfer without snapshots …
const SNAPSHOT_ALONE_LOG: &str = "bench/alone.log";
/// … and for the one with snapshots taken back to back.
const SNAPSHOT_BUSY_LOG: &str = "bench/busy.log";

/// `snapshot_10000`: the admin snapshot of `count` idle domains (fewer if the fd limit says so),
/// timed `snapshots` times per run on fresh connections; then a `total`-byte stream in one more
/// domain, alone and while snapshots are taken back to back.
fn snapshot_scenario(b: &mut Bench, count: usize, snapshots: usize, total: u64) -> Result<()> {
    let name = "snapshot_10000";
    let n = b.domains_that_fit(count, name);
    if count != 10_000 {
        note(format!(
            "{name}: --quick uses {count} idle domains, not 10,000"
        ));
    }
    let mut runs = Vec::new();
    for run in 1..=b.runs {
        let daemon = b.daemon(name)?;
        let r = snapshot_run(b, &daemon, n, snapshots, total, run)
            .with_context(|| daemon.failed(name))?;
        runs.push(r);
    }
    let pick = |f: &dyn Fn(&SnapshotRun) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    let longest = |v: Vec<f64>| v.into_iter().fold(f64::NAN, f64::max);
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let median_ms = pick(&|r| median(&r.took.iter().map(ms).collect::<Vec<_>>()));
    let max_ms = longest(pick(&|r| r.took.iter().map(ms).fold(f64::NAN, f64::max)));
    b.figure("snapshot_10000_ms", median(&median_ms), "ms");
    b.figure("snapshot_10000_max_ms", max_ms, "ms");
    let kib = pick(&|r| r.json_bytes as f64 / KIB as f64);
    b.figure("snapshot_10000_bytes", median(&kib), "KiB");
    let stall = |which: &dyn Fn(&SnapshotRun) -> Duration| longest(pick(&|r| ms(&which(r))));
    let busy_stall = stall(&|r| r.busy.1);
    let alone_stall = stall(&|r| r.alone.1);
    let (alone, busy): (Vec<Transfer>, Vec<Transfer>) =
        runs.into_iter().map(|r| (r.alone.0, r.busy.0)).unzip();
    b.transfer_figures("snapshot_alone_stream", &alone);
    b.transfer_figures("snapshot_busy_stream", &busy);
    if let (Some(a), Some(s)) = (
        b.get("snapshot_alone_stream_throughput"),
        b.get("snapshot_busy_stream_throughput"),
    ) {
        b.figure("snapshot_busy_vs_alone", s / a * 100.0, "%");
    }
    b.figure("snapshot_busy_max_write_stall_ms", busy_stall, "ms");
    b.figure("snapshot_alone_max_write_stall_ms", alone_stall, "ms");
    Ok(())
}

/// What one `snapshot_10000` run measured.
struct SnapshotRun {
    /// Each timed `snapshot()` call (on a fresh connection, after the handshake).
    took: Vec<Duration>,
    /// The size of the last snapshot as `logdctl ps --json` prints it (pretty JSON).
    json_bytes: usize,
    /// The transfer without snapshots, and its longest write().
    alone: (Transfer, Duration),
    /// The transfer while snapshots are taken back to back, and its longest write().
    busy: (Transfer, Duration),
}

/// One `snapshot_10000` run on a fresh daemon.
fn snapshot_run(
    b: &Bench,
    daemon: &Daemon,
    idle: usize,
    snapshots: usize,
    total: u64,
    run: u32,
) -> Result<SnapshotRun> {
    let name = "snapshot_10000";
    let mut client = daemon.try_client(CALL_TIMEOUT)?;
    let domains = IdleDomains::open(&mut client, idle)?;
    let stream = DomainId::from_name("qemu", SNAPSHOT_STREAM_DOMAIN);
    let mut open = |path: &str| -> Result<File> {
        let (_, fd) = client
            .open_log(stream.clone(), path, OpenFlags::default())
            .with_context(|| format!("opening {path}"))?;
        Ok(File::from(fd))
    };
    let (mut alone_pipe, mut busy_pipe) = (open(SNAPSHOT_ALONE_LOG)?, open(SNAPSHOT_BUSY_LOG)?);
    let admin = logd::config::admin_socket_for(&daemon.socket);
    let mut expected: HashSet<String> = (1..=idle).map(|i| format!("idle-{i:05}")).collect();
    expected.insert(SNAPSHOT_STREAM_DOMAIN.to_owned());

    b.wait_for_quiet(Some(daemon))?;
    let cpu0 = daemon.cpu_seconds()?;
    let (mut took, mut connects, mut last) = (Vec::new(), Vec::new(), None);
    for i in 1..=snapshots {
        let s = timed_snapshot(&admin)?;
        check_snapshot(
            &s.snapshot,
            &expected,
            idle + 2,
            &format!("{name} run {run}, snapshot {i}"),
        );
        took.push(s.took);
        connects.push(s.connect);
        last = Some(s.snapshot);
    }
    let daemon_cpu = (daemon.cpu_seconds()? - cpu0) / snapshots as f64;
    let snap = last.context("no snapshot taken")?;
    let json_bytes = serde_json::to_vec_pretty(&snap)
        .context("serializing the snapshot as JSON")?
        .len();
    let wire_bytes = logd_protocol::codec::encode(&snap)
        .context("encoding the snapshot")?
        .len();
    let ms: Vec<String> = took
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
        .collect();
    note(format!(
        "{name} run {run}/{}: {idle} idle domains + 1 opened in {:.1} s; snapshots took {} ms \
         (connect and handshake {:.1} ms at most); logd used {daemon_cpu:.2} CPU-s per snapshot; \
         {} KiB on the wire, {} KiB as JSON",
        b.runs,
        domains.elapsed().as_secs_f64(),
        ms.join(", "),
        connects
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
        wire_bytes / 1024,
        json_bytes / 1024,
    ));
    drop(snap);

    // The transfers, in the other order every other run: the second might find the page cache
    // or the pipe in another state than the first.
    let busy_first = run.is_multiple_of(2);
    let (mut alone, mut busy) = (None, None);
    for with_snapshots in [busy_first, !busy_first] {
        let (pipe, log, label) = if with_snapshots {
            (&mut busy_pipe, SNAPSHOT_BUSY_LOG, "snapshot_busy_stream")
        } else {
            (&mut alone_pipe, SNAPSHOT_ALONE_LOG, "snapshot_alone_stream")
        };
        b.wait_for_quiet(Some(daemon))?;
        let snapper = with_snapshots
            .then(|| BackToBack::start(&admin))
            .transpose()?;
        let t = pipe_transfer(daemon, &mut client, pipe, log, 64 * 1024, total, true);
        let during = snapper.map(BackToBack::stop).transpose()?;
        let (t, longest) = t?;
        let longest = longest.unwrap_or_default();
        b.progress(label, run, &t);
        let during = match during {
            None => String::new(),
            Some(s) => format!(
                "; {} snapshot(s) back to back meanwhile (longest {:.0} ms); the bench's \
                 snapshot thread used {:.2} CPU-s (10 ms ticks)",
                s.took.len(),
                s.took
                    .iter()
                    .max()
                    .copied()
                    .unwrap_or_default()
                    .as_secs_f64()
                    * 1e3,
                s.cpu_seconds
            ),
        };
        note(format!(
            "{label} run {run}/{}: longest write() {:.1} ms{during}",
            b.runs,
            longest.as_secs_f64() * 1e3
        ));
        *(if with_snapshots {
            &mut busy
        } else {
            &mut alone
        }) = Some((t, longest));
    }
    drop(domains);
    Ok(SnapshotRun {
        took,
        json_bytes,
        alone: alone.context("no transfer without snapshots")?,
        busy: busy.context("no transfer with snapshots")?,
    })
}

/// A snapshot and how long `snapshot()` took.
struct TimedSnapshot {
    snapshot: DaemonSnapshot,
    took: Duration,
    /// The connection and handshake before it.
    connect: Duration,
}

/// Connects to the admin socket and times one `snapshot()`, on a thread of its own: the admin
/// client has no timeout, and a daemon that never answers must fail the run, not hang it.
fn timed_snapshot(admin: &Path) -> Result<TimedSnapshot> {
    let admin = admin.to_owned();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let take = || -> Result<TimedSnapshot> {
            let start = Instant::now();
            let mut c = AdminClient::connect(&admin)
                .with_context(|| format!("connecting to {}", admin.display()))?;
            let connect = start.elapsed();
            let start = Instant::now();
            let snapshot = c.snapshot().context("taking a snapshot")?;
            Ok(TimedSnapshot {
                snapshot,
                took: start.elapsed(),
                connect,
            })
        };
        let _ = tx.send(take());
    });
    rx.recv_timeout(CALL_TIMEOUT)
        .map_err(|_| anyhow!("no snapshot within {} s", CALL_TIMEOUT.as_secs()))?
}

/// Notes on stderr when `snap` does not list exactly the `expected` domains, or not `streams`
/// streams in all.
fn check_snapshot(snap: &DaemonSnapshot, expected: &HashSet<String>, streams: usize, what: &str) {
    let listed: HashSet<&str> = snap.domains.iter().map(|d| d.id.name.as_str()).collect();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|n| !listed.contains(n.as_str()))
        .collect();
    let listed_streams: usize = snap.domains.iter().map(|d| d.streams.len()).sum();
    if missing.is_empty() && snap.domains.len() == expected.len() && listed_streams == streams {
        return;
    }
    note(format!(
        "{what}: THE SNAPSHOT DOES NOT LIST EVERY DOMAIN: {} domains listed ({} distinct), {} \
         expected, {} missing (e.g. {:?}); {listed_streams} streams, {streams} expected",
        snap.domains.len(),
        listed.len(),
        expected.len(),
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>()
    ));
}

/// A thread that takes snapshots back to back on one admin connection until stopped.
struct BackToBack {
    stop: Arc<AtomicBool>,
    done: mpsc::Receiver<Result<BusySnapshots>>,
}

/// What a [`BackToBack`] thread did.
struct BusySnapshots {
    /// Each `snapshot()` call.
    took: Vec<Duration>,
    /// The thread's CPU time (receiving and decoding the snapshots), on the bench's side.
    cpu_seconds: f64,
}

impl BackToBack {
    /// Starts the thread; returns once it is connected, so that its first request goes out as
    /// the caller starts what it measures.
    fn start(admin: &Path) -> Result<BackToBack> {
        let admin = admin.to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = mpsc::channel();
        let (tx, done) = mpsc::channel();
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            let work = || -> Result<BusySnapshots> {
                let mut c = AdminClient::connect(&admin)
                    .with_context(|| format!("connecting to {}", admin.display()))?;
                let cpu0 = thread_cpu_seconds()?;
                let _ = ready_tx.send(());
                let mut took = Vec::new();
                while !flag.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let snap = c.snapshot().context("taking a snapshot back to back")?;
                    took.push(start.elapsed());
                    drop(snap);
                }
                Ok(BusySnapshots {
                    took,
                    cpu_seconds: thread_cpu_seconds()? - cpu0,
                })
            };
            let _ = tx.send(work());
        });
        match ready.recv_timeout(CALL_TIMEOUT) {
            Ok(()) => Ok(BackToBack { stop, done }),
            // The thread failed before it was connected: its error says why.
            Err(_) => done
                .recv_timeout(CALL_TIMEOUT)
                .map_err(|_| anyhow!("the snapshot thread did not connect"))?
                .and_then(|_| bail!("the snapshot thread ended at once")),
        }
    }

    /// Stops the thread after its current snapshot.
    fn stop(self) -> Result<BusySnapshots> {
        self.stop.store(true, Ordering::Relaxed);
        self.done.recv_timeout(CALL_TIMEOUT).map_err(|_| {
            anyhow!(
                "the snapshot thread's last snapshot took over {} s",
                CALL_TIMEOUT.as_secs()
            )
        })?
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon under test

/// Starts a `logd` (the bench's config, `RUST_LOG` unset) in a new directory under `parent`;
/// `with_virtlogd` also serves the virtlogd socket there. It is killed, and the directory
/// removed, when the [`Daemon`] is dropped.
fn spawn_daemon(bins: &Bins, parent: &Path, tag: &str, with_virtlogd: bool) -> Result<Daemon> {
    Daemon::spawn(
        bins,
        Opts {
            config: DAEMON_CONFIG.to_owned(),
            quiet: true,
            env_remove: vec!["RUST_LOG".to_owned()],
            // For profiling: LOGD_BENCH_RUST_LOG becomes the daemon's RUST_LOG (the re-exec
            // scenarios then print its timeline).
            env: std::env::var("LOGD_BENCH_RUST_LOG")
                .map(|v| ("RUST_LOG".to_owned(), v))
                .into_iter()
                .collect(),
            virtlogd_socket: with_virtlogd,
            parent: Some(parent.to_owned()),
            prefix: Some(format!("logd-bench-{tag}-")),
            ..Opts::default()
        },
    )
}

/// The pid of the process serving `daemon`.
fn pid_of(daemon: &Daemon) -> u32 {
    daemon.pid() as u32
}

// ---------------------------------------------------------------------------------------------
// The bench's state and its output

/// Options, the fd limit, and the figures so far.
struct Bench {
    quick: bool,
    runs: u32,
    /// The `logd` under test (and the `logdctl` beside it, unused).
    bins: Bins,
    dir: PathBuf,
    /// The scenarios to run.
    scenarios: Vec<&'static str>,
    fd_limit: u64,
    /// The subscribers' queue limit on the bench's consoles.
    console_queue_limit: u64,
    figures: Vec<Figure>,
}

impl Bench {
    fn new(args: Args) -> Result<Bench> {
        let scenarios = pick_scenarios(args.only.as_deref())?;
        let mut bins = Bins::beside(&std::env::current_exe().context("finding this executable")?);
        if let Some(p) = args.logd {
            bins.logd = p;
        }
        let logd = &bins.logd;
        ensure!(
            logd.is_file(),
            "no logd at {} (build it: `cargo build --release --bins`, or pass --logd PATH)",
            logd.display()
        );
        let dir = args.dir.unwrap_or_else(std::env::temp_dir);
        ensure!(dir.is_dir(), "--dir {} is not a directory", dir.display());
        let fd_limit = raise_fd_limit()?;
        let runs = args.runs.unwrap_or(if args.quick { 1 } else { 3 });
        note(format!(
            "{} run(s) per scenario{}; logd: {}; temp dirs under {}; RLIMIT_NOFILE {fd_limit}",
            runs,
            if args.quick { ", quick sizes" } else { "" },
            logd.display(),
            dir.display()
        ));
        Ok(Bench {
            quick: args.quick,
            runs,
            bins,
            dir,
            scenarios,
            fd_limit,
            console_queue_limit: args.console_queue_limit,
            figures: Vec::new(),
        })
    }

    /// Whether the scenario `name` is to run.
    fn selected(&self, name: &str) -> bool {
        self.scenarios.contains(&name)
    }

    fn daemon(&self, tag: &str) -> Result<Daemon> {
        spawn_daemon(&self.bins, &self.dir, tag, false)
    }

    /// A fresh logd that also serves the virtlogd socket, in its temporary directory.
    fn daemon_serving_virtlogd(&self, tag: &str) -> Result<Daemon> {
        spawn_daemon(&self.bins, &self.dir, tag, true)
    }

    /// How many of `wanted` domains fit in the fd limit, with a note when that is fewer.
    fn domains_that_fit(&self, wanted: usize, scenario: &str) -> usize {
        let fit = (self.fd_limit.saturating_sub(FD_RESERVE) / DAEMON_FDS_PER_DOMAIN) as usize;
        if fit >= wanted {
            return wanted;
        }
        note(format!(
            "{scenario}: the RLIMIT_NOFILE hard limit ({}) is too low for {wanted} domains \
             (logd needs {DAEMON_FDS_PER_DOMAIN} fds each): using {fit} domains instead",
            self.fd_limit
        ));
        fit.max(1)
    }

    /// Waits until other work keeps fewer than [`QUIET_CPUS`] busy for half a second (at most
    /// 20 s, 5 s with --quick), so that another job's burst does not land in a measurement.
    fn wait_for_quiet(&self, daemon: Option<&Daemon>) -> Result<()> {
        self.wait_for_quiet_pid(daemon.map(pid_of))
    }

    /// [`Bench::wait_for_quiet`] for a daemon known by its pid.
    fn wait_for_quiet_pid(&self, daemon: Option<u32>) -> Result<()> {
        let max_wait = if self.quick {
            QUIET_WAIT_QUICK
        } else {
            QUIET_WAIT
        };
        let start = Instant::now();
        loop {
            let before = others_cpu_seconds_pid(daemon)?;
            std::thread::sleep(QUIET_SAMPLE);
            let busy = (others_cpu_seconds_pid(daemon)? - before) / QUIET_SAMPLE.as_secs_f64();
            let waited = start.elapsed();
            if busy < QUIET_CPUS {
                if waited > 2 * QUIET_SAMPLE {
                    note(format!(
                        "waited {:.0} s for other work to calm down",
                        waited.as_secs_f64()
                    ));
                }
                return Ok(());
            }
            if waited > max_wait {
                note(format!(
                    "other work still keeps {busy:.2} CPUs busy after {} s: measuring anyway",
                    max_wait.as_secs()
                ));
                return Ok(());
            }
        }
    }

    /// One run of a transfer: waits for a quiet machine, runs it, and prints its progress line.
    /// A run during which other work kept more than [`SKEWED`] CPUs busy is run again, at most
    /// [`SKEWED_RETRIES`] times (each try is printed), and the last try counts.
    fn measure(
        &self,
        daemon: Option<&Daemon>,
        name: &str,
        run: u32,
        transfer: impl FnMut() -> Result<Transfer>,
    ) -> Result<Transfer> {
        self.measure_pid(daemon.map(pid_of), name, run, transfer)
    }

    /// [`Bench::measure`] for a daemon known by its pid.
    fn measure_pid(
        &self,
        daemon: Option<u32>,
        name: &str,
        run: u32,
        mut transfer: impl FnMut() -> Result<Transfer>,
    ) -> Result<Transfer> {
        let mut tries = 0;
        loop {
            self.wait_for_quiet_pid(daemon)?;
            let t = transfer()?;
            self.progress(name, run, &t);
            if t.others_busy <= SKEWED || tries == SKEWED_RETRIES {
                return Ok(t);
            }
            tries += 1;
            note(format!(
                "{name} run {run}: other work kept {:.2} CPUs busy during it: measuring again",
                t.others_busy
            ));
        }
    }

    fn progress(&self, name: &str, run: u32, t: &Transfer) {
        let pipe = match t.pipe_size {
            Some(size) => format!("pipe {} KiB; ", size / 1024),
            None => String::new(),
        };
        note(format!(
            "{name} run {run}/{}: {} MiB in {:.2} s = {:.1} MB/s, {:.2} CPU-s ({:.3} CPU-s/GiB); \
             {pipe}other work kept {:.2} CPUs busy",
            self.runs,
            t.bytes / MIB,
            t.seconds,
            t.mb_per_s(),
            t.cpu_seconds,
            t.cpu_per_gib(),
            t.others_busy
        ));
    }

    /// `NAME_throughput` and `NAME_cpu`, medians over the runs.
    fn transfer_figures(&mut self, name: &str, runs: &[Transfer]) {
        let mbs: Vec<f64> = runs.iter().map(Transfer::mb_per_s).collect();
        let cpu: Vec<f64> = runs.iter().map(Transfer::cpu_per_gib).collect();
        self.figure(&format!("{name}_throughput"), median(&mbs), "MB/s");
        self.figure(&format!("{name}_cpu"), median(&cpu), "CPU-s/GiB");
    }

    /// Records a figure and prints it on stdout.
    fn figure(&mut self, name: &str, value: f64, unit: &'static str) {
        let f = Figure {
            name: name.to_owned(),
            value,
            unit,
        };
        println!("{f}");
        self.figures.push(f);
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value)
    }
}

/// The scenarios `--only NAME[,NAME…]` names: for each NAME, the one called NAME, else every one
/// whose name contains it. They run in their usual order.
fn pick_scenarios(only: Option<&str>) -> Result<Vec<&'static str>> {
    let Some(only) = only else {
        return Ok(SCENARIOS.to_vec());
    };
    let mut picked = Vec::new();
    for name in only.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let matching: Vec<_> = match SCENARIOS.iter().find(|s| **s == name) {
            Some(exact) => vec![*exact],
            None => SCENARIOS.into_iter().filter(|s| s.contains(name)).collect(),
        };
        if matching.is_empty() {
            bail!(
                "--only {name:?} matches no scenario; they are: {}",
                SCENARIOS.join(", ")
            );
        }
        picked.extend(matching);
    }
    ensure!(!picked.is_empty(), "--only {only:?} names no scenario");
    Ok(SCENARIOS
        .into_iter()
        .filter(|s| picked.contains(s))
        .collect())
}

/// One result: printed as `name: value unit`.
struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.value;
        let digits = match v.abs() {
            a if a >= 100.0 => 0,
            a if a >= 10.0 => 1,
            a if a >= 1.0 => 2,
            _ => 3,
        };
        write!(f, "{}: {v:.digits$} {}", self.name, self.unit)
    }
}

fn note(msg: impl fmt::Display) {
    eprintln!("logd-bench: {msg}");
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Lets the daemon finish what an answer set going (freeing, logging) before a memory reading.
fn settle() {
    std::thread::sleep(Duration::from_millis(200));
}

// ---------------------------------------------------------------------------------------------
// /proc and limits

/// CPU seconds the machine spent on anything but this process and `daemon`: busy time from
/// /proc/stat (steal included), less theirs.
fn others_cpu_seconds(daemon: Option<&Daemon>) -> Result<f64> {
    others_cpu_seconds_pid(daemon.map(pid_of))
}

/// [`others_cpu_seconds`] for a daemon known by its pid.
fn others_cpu_seconds_pid(daemon: Option<u32>) -> Result<f64> {
    let stat = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let cpu = stat
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .context("no cpu line in /proc/stat")?;
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .map(|t| t.parse().context("unexpected format of /proc/stat"))
        .collect::<Result<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    let ours = stat_cpu_seconds("/proc/self/stat")?
        + match daemon {
            Some(pid) => stat_cpu_seconds(&format!("/proc/{pid}/stat"))?,
            None => 0.0,
        };
    Ok(busy as f64 / clock_ticks()? - ours)
}

/// The CPU time of the calling thread.
fn thread_cpu_seconds() -> Result<f64> {
    stat_cpu_seconds("/proc/thread-self/stat")
}

/// The CPU time of the calling thread, to the nanosecond (`CLOCK_THREAD_CPUTIME_ID`), where
/// [`thread_cpu_seconds`] counts whole ticks.
fn thread_cpu_seconds_exact() -> Result<f64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .context("clock_gettime(CLOCK_THREAD_CPUTIME_ID)")?;
    Ok(Duration::from(t).as_secs_f64())
}

fn mem_available_kib() -> Result<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    kib_field(&meminfo, "MemAvailable:").context("no MemAvailable in /proc/meminfo")
}

/// The bytes the kernel's slab caches hold: the sum over `/proc/slabinfo` (format 2.1, readable
/// by root only) of `active_objs * objsize` for every cache.
///
/// This is where an idle domain's kernel memory is: its pipe (`pipe_inode_info` and the array of
/// 16 `pipe_buffer`s are plain kmallocs: `kmalloc-cg-192` and `kmalloc-cg-1k` here), the pipe's
/// inode (`inode_cache`), dentry and two `filp`s, the log file's inode (`ext4_inode_cache`),
/// dentry and `filp`, an LSM blob per inode and per file, and a daemon's epoll items
/// (`eventpoll_epi`, `eventpoll_pwq`). Merged caches show under one name (this kernel has no
/// /sys/kernel/slab to tell them apart). With SLUB, `active_objs` counts the free objects of the
/// per-CPU slabs as active, so a reading is good to a few slabs, far below 10,000 domains.
///
/// The figure the scenarios print ([`KernelMemory::per_domain_kib`]) takes two things out,
/// both of which another process's work moves and no idle domain does:
/// - The proc inodes, dentries and LSM blobs that lookups in `/proc/PID/fd` leave cached
///   ([`KernelMemory::proc_lookup_bytes`]). A process of this sandbox (not the bench, not a
///   daemon) walks every process's `/proc/PID/fd` every few seconds, which caches about 0.9 KiB
///   per fd: up to 2.6 KiB per domain counting the bench's write end, depending on how far it
///   got. A domain never makes a proc inode, so every proc inode that appears comes from such a
///   lookup and is taken out together with its dentry and blob.
/// - The page cache's bookkeeping, `buffer_head` and `radix_tree_node` ([`PAGE_CACHE_SLABS`]):
///   page cache is not counted (an idle log is empty; the log directory's few blocks are shared
///   by every domain: some 80 buffer heads for 10,000 names), but writeback and reclaim of other
///   files free buffer heads during the opens: -0.2 to -0.3 KiB per domain in virtlogd's 22 s
///   of opens here.
///
/// Left out: `KernelStack` and `PageTables` from /proc/meminfo. No thread is started per domain,
/// and the page tables follow the daemon's RSS growth (a few MiB over 10,000 domains: some
/// tens of KiB of page tables, under 0.01 KiB per domain). What moves them during a run is other
/// processes starting and ending (±2 MiB in all with a build running alongside, ±0.2 KiB per
/// domain): adding them would add that noise and no information. [`KernelMemory::describe_delta`]
/// prints both with every reading so that this stays checked. Also left out: allocations too
/// large for a slab cache (the fd tables, which grow by doubling, in both processes: about 8
/// bytes per fd).
fn kernel_slab_bytes() -> Result<u64> {
    Ok(slab_caches()?.values().map(SlabCache::bytes).sum())
}

/// One cache of `/proc/slabinfo`.
#[derive(Clone, Copy, Default)]
struct SlabCache {
    active_objs: u64,
    objsize: u64,
}

impl SlabCache {
    fn bytes(&self) -> u64 {
        self.active_objs * self.objsize
    }
}

/// The caches of `/proc/slabinfo`, by name.
fn slab_caches() -> Result<BTreeMap<String, SlabCache>> {
    let path = "/proc/slabinfo";
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading {path} (it is readable by root only)"))?;
    parse_slabinfo(&text).with_context(|| format!("unexpected format of {path}"))
}

/// The caches of a `/proc/slabinfo` text: `name active_objs num_objs objsize …` after two
/// header lines, the first of which names version 2.1.
fn parse_slabinfo(text: &str) -> Result<BTreeMap<String, SlabCache>> {
    let mut lines = text.lines();
    let version = lines.next().unwrap_or_default();
    ensure!(
        version.trim() == "slabinfo - version: 2.1",
        "first line {version:?}, expected version 2.1"
    );
    let mut caches = BTreeMap::new();
    for line in lines.filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| -> Result<u64> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .with_context(|| format!("field {} of {line:?}", i + 1))
        };
        let cache = SlabCache {
            active_objs: number(1)?,
            objsize: number(3)?,
        };
        caches.insert(fields[0].to_owned(), cache);
    }
    ensure!(!caches.is_empty(), "no cache listed");
    Ok(caches)
}

/// What the kernel holds, read before and after opening idle domains: the slab total and its
/// caches, and the two /proc/meminfo lines [`kernel_slab_bytes`] leaves out.
struct KernelMemory {
    slab_bytes: u64,
    caches: BTreeMap<String, SlabCache>,
    kernel_stack_kib: u64,
    page_tables_kib: u64,
}

impl KernelMemory {
    /// The slab caches are read twice (total, then by cache), a moment apart.
    fn read() -> Result<KernelMemory> {
        let slab_bytes = kernel_slab_bytes()?;
        let caches = slab_caches()?;
        let meminfo = fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
        let kib = |key: &str| {
            kib_field(&meminfo, key).with_context(|| format!("no {key} in /proc/meminfo"))
        };
        Ok(KernelMemory {
            slab_bytes,
            caches,
            kernel_stack_kib: kib("KernelStack:")?,
            page_tables_kib: kib("PageTables:")?,
        })
    }

    fn cache(&self, name: &str) -> SlabCache {
        self.caches.get(name).copied().unwrap_or_default()
    }

    /// The bytes that lookups in `/proc/PID/fd` left cached since `before`: per new proc inode,
    /// the inode, its dentry and (where an LSM keeps a blob per inode) that blob.
    fn proc_lookup_bytes(&self, before: &KernelMemory) -> i64 {
        let inodes = self.cache("proc_inode_cache").active_objs as i64
            - before.cache("proc_inode_cache").active_objs as i64;
        let each = ["proc_inode_cache", "dentry", "lsm_inode_cache"]
            .map(|name| self.cache(name).objsize)
            .iter()
            .sum::<u64>();
        inodes * each as i64
    }

    /// How much the page cache's bookkeeping ([`PAGE_CACHE_SLABS`]) moved since `before`.
    fn page_cache_bytes(&self, before: &KernelMemory) -> i64 {
        PAGE_CACHE_SLABS
            .iter()
            .map(|name| self.cache(name).bytes() as i64 - before.cache(name).bytes() as i64)
            .sum()
    }

    /// The slab that `n` domains opened since `before` cost, per domain, in KiB: the slab's
    /// growth less what /proc lookups left ([`KernelMemory::proc_lookup_bytes`]) and less the
    /// page cache's bookkeeping ([`KernelMemory::page_cache_bytes`]).
    fn per_domain_kib(&self, before: &KernelMemory, n: usize) -> f64 {
        let grown = self.slab_bytes as i64 - before.slab_bytes as i64;
        let others = self.proc_lookup_bytes(before) + self.page_cache_bytes(before);
        (grown - others) as f64 / KIB as f64 / n as f64
    }

    /// The slab's growth per domain before and after taking out the /proc lookups and the page
    /// cache's bookkeeping, the
    /// [`TOP_SLAB_CACHES`] caches that moved most (in bytes per domain), and the meminfo lines
    /// left out of the figure.
    fn describe_delta(&self, before: &KernelMemory, n: usize) -> String {
        let mut moved: Vec<(&str, f64)> = self
            .caches
            .keys()
            .chain(before.caches.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|name| {
                let delta = self.cache(name).bytes() as f64 - before.cache(name).bytes() as f64;
                (name.as_str(), delta / n as f64)
            })
            .collect();
        moved.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        let top: Vec<String> = moved
            .iter()
            .take(TOP_SLAB_CACHES)
            .map(|(name, bytes)| format!("{name} {bytes:+.0}"))
            .collect();
        let grown = self.slab_bytes as f64 - before.slab_bytes as f64;
        let proc_inodes = self.cache("proc_inode_cache").active_objs as i64
            - before.cache("proc_inode_cache").active_objs as i64;
        let kib_each = |bytes: i64| bytes as f64 / KIB as f64 / n as f64;
        format!(
            "slab {:.1} -> {:.1} MiB = {:.3} KiB per domain, less {proc_inodes} proc inodes \
             left by /proc/PID/fd lookups with their dentries and LSM blobs ({:.3} KiB per \
             domain) and less the page cache's bookkeeping ({}: {:.3} KiB per domain) = {:.3} \
             KiB per domain; the caches that moved most, in bytes per domain: {}; left out: \
             KernelStack {:+} KiB, PageTables {:+} KiB in all",
            before.slab_bytes as f64 / MIB as f64,
            self.slab_bytes as f64 / MIB as f64,
            grown / KIB as f64 / n as f64,
            kib_each(self.proc_lookup_bytes(before)),
            PAGE_CACHE_SLABS.join(", "),
            kib_each(self.page_cache_bytes(before)),
            self.per_domain_kib(before, n),
            top.join(", "),
            self.kernel_stack_kib as i64 - before.kernel_stack_kib as i64,
            self.page_tables_kib as i64 - before.page_tables_kib as i64,
        )
    }
}

/// The slab caches that keep track of page cache, which the kernel figure does not count.
const PAGE_CACHE_SLABS: [&str; 2] = ["buffer_head", "radix_tree_node"];

/// How many slab caches a kernel-memory note names.
const TOP_SLAB_CACHES: usize = 8;

/// The 1, 5 and 15 minute load averages: other work on the machine skews every figure.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Raises this process's open-file limit to its hard limit (the daemon it starts inherits it,
/// and raises its own the same way).
fn raise_fd_limit() -> Result<u64> {
    Ok(logd::daemon::raise_fd_limit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLABINFO: &str = "slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
proc_inode_cache    1000   1100    696   23    4 : tunables    0    0    0 : slabdata     48     48      0
dentry            200000 201000    192   21    1 : tunables    0    0    0 : slabdata   9571   9571      0
lsm_inode_cache     5000   5100     32  128    1 : tunables    0    0    0 : slabdata     40     40      0
filp                3000   3100    192   21    1 : tunables    0    0    0 : slabdata    148    148      0
buffer_head       100000 100100    104   39    1 : tunables    0    0    0 : slabdata   2567   2567      0
";

    fn kernel(text: &str) -> KernelMemory {
        let caches = parse_slabinfo(text).unwrap();
        KernelMemory {
            slab_bytes: caches.values().map(SlabCache::bytes).sum(),
            caches,
            kernel_stack_kib: 0,
            page_tables_kib: 0,
        }
    }

    #[test]
    fn slabinfo_gives_each_caches_active_objects_and_size() {
        let caches = parse_slabinfo(SLABINFO).unwrap();
        assert_eq!(caches.len(), 5);
        assert_eq!(caches["filp"].active_objs, 3000);
        assert_eq!(caches["filp"].objsize, 192);
        assert_eq!(caches["proc_inode_cache"].bytes(), 696_000);
        assert!(parse_slabinfo("slabinfo - version: 1.1\n").is_err());
        assert!(parse_slabinfo("slabinfo - version: 2.1\n# name\nfilp x 1 192\n").is_err());
    }

    #[test]
    fn what_proc_lookups_leave_and_page_cache_bookkeeping_are_not_a_domains_cost() {
        let before = kernel(SLABINFO);
        // 10 domains, 3 filps each; 30 proc inodes, each with a dentry and an LSM blob; 500
        // buffer heads freed.
        let after = kernel(
            &SLABINFO
                .replace("proc_inode_cache    1000", "proc_inode_cache    1030")
                .replace("dentry            200000", "dentry            200030")
                .replace("lsm_inode_cache     5000", "lsm_inode_cache     5030")
                .replace("filp                3000", "filp                3030")
                .replace("buffer_head       100000", "buffer_head        99500"),
        );
        assert_eq!(after.proc_lookup_bytes(&before), 30 * (696 + 192 + 32));
        assert_eq!(after.page_cache_bytes(&before), -500 * 104);
        let per_domain = after.per_domain_kib(&before, 10);
        assert!(
            (per_domain - 3.0 * 192.0 / 1024.0).abs() < 1e-9,
            "{per_domain}"
        );
        let note = after.describe_delta(&before, 10);
        assert!(note.contains("less 30 proc inodes"), "{note}");
        assert!(note.contains("proc_inode_cache +2088"), "{note}");
    }
}
