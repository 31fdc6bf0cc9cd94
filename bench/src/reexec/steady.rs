//! A writer thread that puts one record into a log's pipe at a steady pace, as a guest that
//! logs steadily does, and times each write ([`SteadyWriter`]). Both re-exec scenarios write
//! through one.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

/// The record a writer puts into its pipe: `record(i, buf)` fills the empty `buf` with the
/// `i`-th record (from 0).
pub(super) type Record = Box<dyn FnMut(u64, &mut Vec<u8>) + Send>;

/// A writer thread putting a record into a pipe every `period`, timing each write. A write that
/// blocks (the pipe is full) delays the next ones, which then go out back to back until the
/// writer is on its schedule again: the rate stays the one asked for.
pub(super) struct SteadyWriter {
    stop: Arc<AtomicBool>,
    /// The longest write since the last reset, ns.
    longest: Arc<AtomicU64>,
    /// The longest time from the start of one write to the next's since the last reset, ns: it
    /// is much longer than the period only when the writer's thread waited for a CPU (or its
    /// previous write blocked).
    longest_pause: Arc<AtomicU64>,
    thread: JoinHandle<std::io::Result<Written>>,
}

/// What a writer wrote, and the pipe it wrote into (still open).
pub(super) struct Written {
    pub(super) bytes: u64,
    pub(super) records: u64,
    pub(super) pipe: File,
}

impl SteadyWriter {
    pub(super) fn start(fd: OwnedFd, period: Duration, mut record: Record) -> SteadyWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let longest = Arc::new(AtomicU64::new(0));
        let longest_pause = Arc::new(AtomicU64::new(0));
        let (s, l, lp) = (stop.clone(), longest.clone(), longest_pause.clone());
        let thread = std::thread::spawn(move || {
            let mut pipe = File::from(fd);
            let mut buf = Vec::new();
            let (mut bytes, mut records) = (0u64, 0u64);
            let mut next = Instant::now();
            let mut last: Option<Instant> = None;
            while !s.load(Ordering::Relaxed) {
                buf.clear();
                record(records, &mut buf);
                let t = Instant::now();
                if let Some(last) = last {
                    lp.fetch_max((t - last).as_nanos() as u64, Ordering::Relaxed);
                }
                last = Some(t);
                pipe.write_all(&buf)?;
                l.fetch_max(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                bytes += buf.len() as u64;
                records += 1;
                next += period;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            Ok(Written {
                bytes,
                records,
                pipe,
            })
        });
        SteadyWriter {
            stop,
            longest,
            longest_pause,
            thread,
        }
    }

    pub(super) fn reset_longest(&self) {
        self.longest.store(0, Ordering::Relaxed);
        self.longest_pause.store(0, Ordering::Relaxed);
    }

    /// The longest write since the last reset.
    pub(super) fn longest(&self) -> Duration {
        Duration::from_nanos(self.longest.load(Ordering::Relaxed))
    }

    /// The longest time between the starts of two writes since the last reset.
    pub(super) fn longest_pause(&self) -> Duration {
        Duration::from_nanos(self.longest_pause.load(Ordering::Relaxed))
    }

    /// Stops the writer; returns what it wrote, and its pipe, which stays open until dropped.
    pub(super) fn stop(self) -> Result<Written> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("the steady writer panicked"))?
            .context("the steady writer's pipe failed")
    }
}
