//! `snapshot_10000`: the admin snapshot of many idle domains, timed on fresh connections, and
//! what snapshots taken back to back do to a stream beside them.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use logd_kit::Daemon;
use logd_protocol::admin::DaemonSnapshot;
use logd_protocol::client::AdminClient;
use logd_protocol::{DomainId, OpenFlags};

use crate::bench::Bench;
use crate::host::thread_cpu_seconds;
use crate::idle::IdleDomains;
use crate::report::{median, note};
use crate::transfer::{pipe_transfer, Transfer};
use crate::{CALL_TIMEOUT, KIB};

/// The domain whose two logs carry `snapshot_10000`'s transfers; it is listed with the idle ones.
const SNAPSHOT_STREAM_DOMAIN: &str = "bench-stream";
/// Its log for the transfer without snapshots …
const SNAPSHOT_ALONE_LOG: &str = "bench/alone.log";
/// … and for the one with snapshots taken back to back.
const SNAPSHOT_BUSY_LOG: &str = "bench/busy.log";

/// `snapshot_10000`: the admin snapshot of `count` idle domains (fewer if the fd limit says so),
/// timed `snapshots` times per run on fresh connections; then a `total`-byte stream in one more
/// domain, alone and while snapshots are taken back to back.
pub(crate) fn snapshot_scenario(
    b: &mut Bench,
    count: usize,
    snapshots: usize,
    total: u64,
) -> Result<()> {
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
pub(crate) struct TimedSnapshot {
    pub(crate) snapshot: DaemonSnapshot,
    took: Duration,
    /// The connection and handshake before it.
    connect: Duration,
}

/// Connects to the admin socket and times one `snapshot()`, on a thread of its own: the admin
/// client has no timeout, and a daemon that never answers must fail the run, not hang it.
pub(crate) fn timed_snapshot(admin: &Path) -> Result<TimedSnapshot> {
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
