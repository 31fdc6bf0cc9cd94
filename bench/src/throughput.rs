//! The throughput scenarios: the limit logd is compared to, with no daemon (`baseline_64k`,
//! `baseline_64k_pipe1m`, `baseline_100b`, `baseline_16_streams`), and the same transfers
//! through logd (`one_stream_64k`, `one_stream_100b`, `streams_16`).

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use logd::rotate::RotatingFile;
use logd_kit::{temp_dir, Daemon};
use logd_protocol::client::Client;
use logd_protocol::{DomainId, OpenFlags};
use nix::fcntl::{fcntl, FcntlArg};

use crate::bench::{settle, Bench};
use crate::host::{others_cpu_seconds, thread_cpu_seconds, thread_cpu_seconds_exact};
use crate::report::{median, note};
use crate::snapshot::timed_snapshot;
use crate::transfer::{logd_transfer, pipe_capacity, write_chunks, Transfer};
use crate::{CALL_TIMEOUT, GIB, MIB, READ_BUF, ROTATE};

/// Above this projected time for 1 GiB in 100-byte writes, the 100-byte scenarios move 256 MiB.
const MAX_100B_SECONDS: f64 = 60.0;

/// The concurrent streams of `baseline_16_streams` and `streams_16`.
const STREAMS: usize = 16;
/// How long `streams_16` waits after closing its streams before it reads the daemon's VmRSS:
/// logd gives a worker's read buffer back 2 s after its last read.
const AFTER_FLOOD: Duration = Duration::from_secs(3);

/// `baseline_*`: a pipe read into a rotating file by a thread of this process, no daemon. The
/// pipe has the kernel's default size, or `pipe_size` (logd enlarges a pipe it finds full).
pub(crate) fn baseline(
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

/// `baseline_splice_pipe1m` (issue 18, target 4): the 1 MiB-pipe loop with the reader moving the
/// bytes by `splice(2)` from the pipe into a plain file, never through user space: the floor a
/// splicing logd could reach (no rotation: a cut every `max_size` is rare beside the bytes).
pub(crate) fn baseline_splice(b: &mut Bench, name: &str, total: u64) -> Result<()> {
    let mut runs = Vec::new();
    for run in 1..=b.runs {
        let dir = temp_dir(&b.dir, &format!("logd-bench-{name}-"))?;
        let t = b.measure(None, name, run, || {
            splice_transfer(dir.path(), total).context(name.to_owned())
        })?;
        runs.push(t);
    }
    b.transfer_figures(name, &runs);
    Ok(())
}

/// One run of [`baseline_splice`]: 64 KiB writes into a 1 MiB pipe, spliced into a file.
fn splice_transfer(dir: &Path, total: u64) -> Result<Transfer> {
    let file =
        File::create(dir.join("splice.log")).context("creating the splice baseline's file")?;
    let (r, w) = nix::unistd::pipe().context("creating the splice baseline's pipe")?;
    fcntl(&r, FcntlArg::F_SETPIPE_SZ(MIB as i32)).context("enlarging the pipe to 1 MiB")?;
    let reader = std::thread::spawn(move || -> Result<(u64, f64)> {
        use nix::fcntl::{splice, SpliceFFlags};
        let cpu0 = thread_cpu_seconds()?;
        let mut got = 0u64;
        loop {
            match splice(
                &r,
                None,
                &file,
                None,
                MIB as usize,
                SpliceFFlags::SPLICE_F_MOVE,
            ) {
                Ok(0) => break,
                Ok(n) => got += n as u64,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("splicing the pipe into the file"),
            }
        }
        Ok((got, thread_cpu_seconds()? - cpu0))
    });
    feed(w, reader, 64 * 1024, total)
}

/// `one_stream_*`: one domain writes `total` bytes in `chunk`-byte writes through a fresh logd.
pub(crate) fn one_stream(b: &mut Bench, name: &str, chunk: usize, total: u64) -> Result<()> {
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

/// `baseline_16_streams`: [`STREAMS`] baseline loops at once in this process, each a writer
/// thread, a pipe of the kernel's default size and a reader thread appending to its own rotating
/// file; `total` bytes in all, in 64 KiB writes. The time runs until every reader has every byte;
/// CPU is the readers' threads', summed.
pub(crate) fn baseline_streams(b: &mut Bench, name: &str, total: u64) -> Result<()> {
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
pub(crate) fn streams_flood(b: &mut Bench, name: &str, total: u64) -> Result<()> {
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

/// The size of the 100-byte transfers: 64 MiB with --quick; otherwise 1 GiB, or 256 MiB when a
/// trial through logd projects 1 GiB to take more than [`MAX_100B_SECONDS`].
pub(crate) fn size_100b(b: &Bench) -> Result<u64> {
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
    feed(w, reader, chunk, total)
}

/// A baseline's timed part: this thread writes `total` bytes in `chunk`-byte writes into the
/// pipe's write end `w`, closes it, and waits for `reader` (its bytes and CPU seconds), which
/// must have every byte.
fn feed(
    w: OwnedFd,
    reader: JoinHandle<Result<(u64, f64)>>,
    chunk: usize,
    total: u64,
) -> Result<Transfer> {
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
