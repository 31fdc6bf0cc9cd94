//! A measured transfer ([`Transfer`]), and the writes the scenarios share: numbered text lines
//! into a log's pipe in chunks, until logd answers `position()` (it has drained the pipe).

use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use logd_kit::Daemon;
use logd_protocol::client::Client;
use logd_protocol::{DomainId, OpenFlags};
use nix::fcntl::{fcntl, FcntlArg};

use crate::host::others_cpu_seconds;
use crate::GIB;

/// One measured transfer.
pub(crate) struct Transfer {
    pub(crate) bytes: u64,
    pub(crate) seconds: f64,
    /// CPU time of the side that moves the bytes to the file (reader thread or daemon).
    pub(crate) cpu_seconds: f64,
    /// CPUs kept busy on average by anything but this process and the daemon (other
    /// processes, the hypervisor's steal): a run with a high value is skewed.
    pub(crate) others_busy: f64,
    /// The pipe's capacity at the end, in bytes: logd enlarges a pipe only when a read finds it
    /// full, so a reader that keeps up leaves it small, and pays a wake-up per write. None for
    /// a console, which has no pipe.
    pub(crate) pipe_size: Option<usize>,
}

impl Transfer {
    pub(crate) fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds
    }

    pub(crate) fn cpu_per_gib(&self) -> f64 {
        self.cpu_seconds / (self.bytes as f64 / GIB as f64)
    }
}

/// Opens a log on `daemon`, writes `total` bytes into its pipe in `chunk`-byte writes, and waits
/// for `position()`, which answers once logd has drained the pipe into the file.
pub(crate) fn logd_transfer(
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
pub(crate) fn pipe_transfer(
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
pub(crate) fn pipe_capacity(pipe: &File) -> Result<usize> {
    let size = fcntl(pipe, FcntlArg::F_GETPIPE_SZ).context("F_GETPIPE_SZ on the pipe")?;
    Ok(size as usize)
}

/// Writes `total` bytes of text lines to `out`, `chunk` bytes per `write`.
pub(crate) fn write_chunks(out: &mut impl Write, chunk: usize, total: u64) -> std::io::Result<()> {
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
pub(crate) fn text(len: usize) -> Vec<u8> {
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
