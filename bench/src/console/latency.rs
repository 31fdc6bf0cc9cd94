//! `console_latency`: one small write at a time from a console's guest to its subscriber, on an
//! idle daemon and while another domain's console streams in bulk, on another worker and on the
//! same one.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use logd_kit::Daemon;
use logd_protocol::client::Client;
use logd_protocol::{DomainId, OpenFlags};

use crate::bench::Bench;
use crate::console::{FakeConsole, CONSOLE_CHUNK};
use crate::report::{median, note};
use crate::transfer::text;
use crate::{CALL_TIMEOUT, READ_BUF};

/// A latency probe, `probe NNNNNNNNN\n`: the guest's only bytes in flight.
const PROBE_LEN: usize = 16;
/// The pause between two probes.
const PROBE_PAUSE: Duration = Duration::from_millis(1);
/// Probes sent, and not counted, before the measured ones.
const PROBE_WARMUP: u32 = 20;
/// How long the bulk stream runs before the probes start.
const BULK_RAMP: Duration = Duration::from_millis(300);

/// `console_latency`: how long a small write takes from the guest to a subscriber, on an idle
/// daemon and while another domain's console streams in bulk, on another worker of logd's and
/// on the same one.
pub(crate) fn console_latency(b: &mut Bench, probes: u32) -> Result<()> {
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
