//! `logd-bench`: how fast and how lean logd is, next to the limit it is compared to.
//!
//! Run it from a release build:
//!
//! ```text
//! cargo build --release --bins && target/release/logd-bench [--quick]
//! ```
//!
//! Options: `--quick` (one run, smaller transfers, no `virtlogd_reexec_log_gap_10000`; about a
//! minute and a half on a quiet machine), `--runs N` (default 3; every figure is the median over
//! the runs), `--logd PATH` (default: `logd` next to this executable), `--dir DIR` (where the
//! temporary directories go; default: the system temp dir),
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
//! `logd_virtlogd_one_stream_64k_vs_virtlogd` and `_100b_vs_virtlogd` in %, their
//! `_cpu_vs_virtlogd` in x; logd on its own socket against virtlogd:
//! `one_stream_64k_vs_virtlogd`, `one_stream_100b_vs_virtlogd` in %, their `_cpu_vs_virtlogd` in
//! x, and `reexec_log_gap_N_vs_virtlogd` in %) come last. Each scenario run starts a fresh `logd`
//! (max_size 2 MiB, 3 backups, default workers, `RUST_LOG` unset; the log-gap scenarios: max_size
//! 256 MiB) in its own directory, and kills it after.
//!
//! The scenarios (their names prefix their figures):
//! - `baseline_64k`, `baseline_100b`: the limit logd is compared to, with no daemon: in this
//!   process, one thread writes into a pipe in 64 KiB (resp. 100-byte) writes and another reads
//!   it with plain `read` into a 64 KiB buffer and appends with [`RotatingFile::write`](logd::rotate::RotatingFile::write).
//!   CPU is the reader thread's only (`/proc/thread-self/stat`).
//! - `baseline_64k_pipe1m`: the same with the pipe enlarged to 1 MiB, as logd enlarges a pipe it
//!   finds full: with the default 64 KiB pipe, every write wakes the reader.
//! - `baseline_splice_pipe1m`: `baseline_64k_pipe1m` with the reader moving the bytes by
//!   `splice(2)` into a plain file (no rotation), never through user space: the floor for a
//!   splicing logd (issue 18).
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
//!   is quiet, the kernel's slab memory ([`kernel_slab_bytes`](crate::slab::kernel_slab_bytes): `kernel_per_idle_domain_10000`,
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
//! - `virtlogd_one_stream_100b`, `logd_virtlogd_one_stream_100b`: the same with the
//!   `one_stream_100b` transfer (100-byte writes, as many bytes as `one_stream_100b` moves).
//! - `console_fanout_1`, `_8`, `_64`: a console (`GuestSide::Fd`, log on, raw, no replay) whose
//!   fake guest (this process, writing into its end of the socketpair) writes 512 MiB (quick:
//!   64 MiB) in 64 KiB writes, with 1, 8 or 64 TCP subscribers, each reading on its own thread
//!   into a 64 KiB buffer, counting and spot-checking the bytes. The time runs from the first
//!   write until every subscriber has every byte; CPU is the daemon's, per GiB of guest output.
//!   A run where logd cut a subscriber off, or a subscriber got other bytes, is left out.
//! - `console_fanout_64_baseline` (issue 18, target 5), run just before `console_fanout_64`: the
//!   limit it is compared to, with no daemon. In this process, one thread holds the accepting
//!   ends of 64 loopback TCP connections (127.0.0.1, the kernel's default buffers on both ends,
//!   as with logd), nonblocking, and sends each of them the same bytes as `console_fanout_64`'s
//!   guest writes: the 64 KiB chunks sit once in a 512 KiB ring (a chunk stays until the slowest
//!   socket has sent it; fewer chunks if `--console-queue-limit` is smaller, so one chunk with
//!   65536), each socket has its own offset into the stream, `writev` hands a socket up to 32
//!   chunks until it is full, and an edge-triggered epoll says when it has room again. The 64
//!   subscribers are `console_fanout_64`'s reading threads. The time runs from the first write
//!   until every subscriber has every byte; throughput counts each byte once, as the guest's
//!   bytes are counted in `console_fanout_64` (not once per subscriber); CPU is the sending
//!   thread's (`CLOCK_THREAD_CPUTIME_ID`), the counterpart of the daemon's. A note gives its
//!   `writev` calls and the subscribers' CPU. `console_fanout_64_vs_baseline` (%) and
//!   `console_fanout_64_cpu_vs_baseline` (x) compare the two.
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
//! - `reexec_blackout_1`, `_1000`, `_10000`: N domains open (N − 1 idle, opened as in
//!   `rss_per_idle_domain_N`, and one written with a 100-byte record every 100 µs), then 3
//!   re-execs per run, 300 ms apart, asked for on the admin socket: the blackout the new process
//!   reports (`reexec_blackout_N_ms`, `reexec_total_N_ms`) and the writer's longest write
//!   (`reexec_writer_stall_N_ms`). The log must hold every byte written.
//! - `reexec_log_gap_1`, `_1000`, `_10000` (logd, its domains opened on its own socket as in
//!   `reexec_blackout_N`) and `virtlogd_reexec_log_gap_1`, `_1000`, `_10000` (virtlogd, started
//!   as in `virtlogd_idle_10000`, its domains opened through its RPC; skipped without it, and the
//!   10,000 case with --quick): the re-exec's gap in a log, by one code for both daemons, each
//!   rotating at 256 MiB so that the log never rotates in a run. N domains are open (N − 1 idle,
//!   one written); a thread writes a numbered 100-byte line (ending in '\n') into the written
//!   one's pipe every 0.2 ms, and another stats its log by path every 50 µs (timer slack 1 µs).
//!   Three times per run, each once other work is quiet (at least 0.5 s of steady writing
//!   apart), the daemon gets `kill(pid, SIGUSR1)` (both re-exec in place, keeping their pid). A
//!   window opens 20 ms before the signal and closes once the exec has happened (the stack
//!   address in /proc/PID/stat changed), a fresh connection has answered the log's position
//!   (DOMAIN_GET_LOG_FILE_POSITION for virtlogd), and the log has since grown for 500 ms with no
//!   pause of 20 ms or more. The longest time the file's size did not grow within the window,
//!   from the sample that last saw it grow to the next that did, is the signal's gap;
//!   `reexec_log_gap_N_ms` (`virtlogd_reexec_log_gap_N_ms`) is the median over every signal of
//!   every run. Notes give each signal's gap and when it started, when the exec was seen and the
//!   daemon answered, the sampler's mean and longest interval (a gap is measured to within one),
//!   the writer's longest write and pause, and the other work. At the end the log must hold
//!   every line written, once and in order, and the daemon's position its end: for logd the
//!   bench fails otherwise; for virtlogd a note reports the loss.
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
//!
//! The source: this file holds the options and runs the scenarios in their order. Each family of
//! scenarios has its module (`throughput`, `idle`, `virtlogd`, `console`, `snapshot`, `reexec`,
//! whose `log_gap` measures virtlogd too, through `virtlogd::log_gap`),
//! over what they share: the bench's state and how a run is measured (`bench`), transfers into
//! a log's pipe (`transfer`), the notes and the ratios printed last (`report`), and readings of
//! the host (`host`, `slab`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use clap::Parser;
use logd::console::DEFAULT_QUEUE_LIMIT;
use logd::rotate::RotateConfig;

mod bench;
mod console;
mod host;
mod idle;
mod reexec;
mod report;
mod slab;
mod snapshot;
mod throughput;
mod transfer;
mod virtlogd;

use bench::Bench;
use console::baseline::console_fanout_baseline;
use console::fanout::console_fanout;
use console::latency::console_latency;
use console::stalled::console_stalled;
use console::CONSOLE_QUEUE_LIMIT;
use host::load_average;
use idle::{idle_then_stream, rss_per_idle_domain};
use reexec::{reexec_blackout, reexec_log_gap, GapDaemon};
use report::{comparisons, note};
use snapshot::snapshot_scenario;
use throughput::{
    baseline, baseline_splice, baseline_streams, one_stream, size_100b, streams_flood,
};
use virtlogd::Server;

pub(crate) const KIB: u64 = 1024;
pub(crate) const MIB: u64 = 1024 * KIB;
pub(crate) const GIB: u64 = 1024 * MIB;

/// The rotation every scenario uses, in the daemon's config and in the baseline.
pub(crate) const ROTATE: RotateConfig = RotateConfig {
    max_size: 2 * MIB,
    max_backups: 3,
};

/// The size of the baseline reader's buffer.
pub(crate) const READ_BUF: usize = 64 * 1024;

/// How long a client call may wait for logd (a position() drains at most one full pipe).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `idle10000_one_stream_64k` samples the daemon's CPU with every domain idle (resp.
/// with --quick).
const IDLE_CPU_WINDOW: Duration = Duration::from_secs(5);
const IDLE_CPU_WINDOW_QUICK: Duration = Duration::from_secs(2);

/// Every scenario, in the order they run; `--only` picks among these names.
const SCENARIOS: [&str; 34] = [
    "baseline_64k",
    "baseline_64k_pipe1m",
    "baseline_splice_pipe1m",
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
    "virtlogd_one_stream_100b",
    "logd_virtlogd_one_stream_100b",
    "console_fanout_1",
    "console_fanout_8",
    "console_fanout_64_baseline",
    "console_fanout_64",
    "console_latency",
    "console_stalled",
    "snapshot_10000",
    "reexec_blackout_1",
    "reexec_blackout_1000",
    "reexec_blackout_10000",
    "reexec_log_gap_1",
    "reexec_log_gap_1000",
    "reexec_log_gap_10000",
    "virtlogd_reexec_log_gap_1",
    "virtlogd_reexec_log_gap_1000",
    "virtlogd_reexec_log_gap_10000",
];

/// Measures logd's throughput, CPU and memory against a no-daemon baseline.
#[derive(Debug, Parser)]
#[command(name = "logd-bench", about, long_about = None)]
pub(crate) struct Args {
    /// One run of each scenario with smaller transfers, skipping virtlogd's 10,000-domain re-exec
    /// (about a minute and a half).
    #[arg(long)]
    pub(crate) quick: bool,
    /// Runs per scenario; every figure is the median (default 3, or 1 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) runs: Option<u32>,
    /// The logd binary (default: `logd` next to this executable).
    #[arg(long, value_name = "PATH")]
    pub(crate) logd: Option<PathBuf>,
    /// Where the temporary directories go (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// Run only the scenario called NAME, or else those whose name contains it (e.g. `100b`);
    /// several NAMEs are separated by commas (e.g. `one_stream_64k,console`).
    #[arg(long, value_name = "NAME[,NAME…]")]
    pub(crate) only: Option<String>,
    /// The queue limit of the console scenarios' subscribers, in bytes (logd's default is
    /// 1048576, which cuts off even subscribers that keep up: see docs/PERFORMANCE.md).
    #[arg(long, value_name = "BYTES", default_value_t = CONSOLE_QUEUE_LIMIT)]
    pub(crate) console_queue_limit: u64,
    /// Run the daemons with `fd_store = true` and a notify socket the bench reads and drops
    /// (systemd's side): every log then has a tally slot, which its byte path counts into.
    #[arg(long)]
    pub(crate) fd_store: bool,
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
    if b.selected("baseline_splice_pipe1m") {
        baseline_splice(&mut b, "baseline_splice_pipe1m", size_64k)?;
    }
    if b.selected("one_stream_64k") {
        one_stream(&mut b, "one_stream_64k", 64 * 1024, size_64k)?;
    }
    let size_100b = if b.scenarios.iter().any(|s| s.ends_with("_100b")) {
        size_100b(&b)?
    } else {
        0
    };
    if b.selected("baseline_100b") {
        baseline(&mut b, "baseline_100b", 100, size_100b, None)?;
    }
    if b.selected("one_stream_100b") {
        one_stream(&mut b, "one_stream_100b", 100, size_100b)?;
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
            virtlogd::one_stream(&mut b, server, "one_stream_64k", 64 * 1024, size_64k)?;
        }
    }
    for server in [Server::Virtlogd, Server::Logd] {
        if b.selected(&format!("{}_one_stream_100b", server.prefix())) {
            virtlogd::one_stream(&mut b, server, "one_stream_100b", 100, size_100b)?;
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
        if subscribers == 64 && b.selected("console_fanout_64_baseline") {
            console_fanout_baseline(&mut b, subscribers, console_size)?;
        }
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
    for daemon in [GapDaemon::Logd, GapDaemon::Virtlogd] {
        for count in [1, 1000, 10_000] {
            if b.selected(&daemon.scenario(count)) {
                reexec_log_gap(&mut b, daemon, count)?;
            }
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

/// The scenarios `--only NAME[,NAME…]` names: for each NAME, the one called NAME, else every one
/// whose name contains it. They run in their usual order.
pub(crate) fn pick_scenarios(only: Option<&str>) -> Result<Vec<&'static str>> {
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
