//! A log file's size, sampled by path in a tight loop on a thread of its own ([`SizeSampler`]),
//! and what the samples say ([`GapTracker`]): the longest time the file did not grow within a
//! window, and whether it has grown steadily of late.
//!
//! The sampler sees a daemon's writes only as they reach the file, the way `tail -f` does, so it
//! measures any daemon alike. Its resolution is the time between two samples: about
//! [`SAMPLE_PERIOD`] plus a `stat(2)`, longer whenever its thread waits for a CPU. A gap is
//! measured from the sample that last saw the file grow to the next one that does, so it can be
//! up to one sampling interval longer than the daemon's pause; a window reports its longest
//! sampling interval to bound that.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// How long the sampler sleeps between two samples (its thread's timer slack is set to 1 µs).
pub(super) const SAMPLE_PERIOD: Duration = Duration::from_micros(50);

/// What one window saw.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub(super) opened: Instant,
    /// The longest interval without growth that ended in the window …
    pub(super) longest_gap: Duration,
    /// … and the sample that last saw the file grow before it.
    pub(super) gap_start: Instant,
    pub(super) samples: u64,
    /// The longest time between two samples: the sampler's own worst resolution.
    pub(super) longest_interval: Duration,
    /// The time between each sample and the one before it, summed.
    sampled_for: Duration,
}

impl Window {
    fn new(opened: Instant) -> Window {
        Window {
            opened,
            longest_gap: Duration::ZERO,
            gap_start: opened,
            samples: 0,
            longest_interval: Duration::ZERO,
            sampled_for: Duration::ZERO,
        }
    }

    /// The mean time between two samples.
    pub(super) fn mean_interval(&self) -> Duration {
        match self.samples {
            0 => Duration::ZERO,
            n => self.sampled_for / u32::try_from(n).unwrap_or(u32::MAX),
        }
    }
}

/// The samples so far, reduced to what the method asks of them.
#[derive(Debug)]
pub(super) struct GapTracker {
    /// The size at the last sample.
    size: u64,
    last_sample: Instant,
    /// The last sample at which the file had grown.
    last_growth: Instant,
    /// The end (the sample that saw growth again) of the last gap of `long` or more.
    last_long_gap_end: Instant,
    /// A gap of this or more is not steady growth.
    long: Duration,
    window: Option<Window>,
    /// The file shrank (rotated or truncated): (from, to) bytes.
    shrank: Option<(u64, u64)>,
}

impl GapTracker {
    pub(super) fn new(now: Instant, size: u64, long: Duration) -> GapTracker {
        GapTracker {
            size,
            last_sample: now,
            last_growth: now,
            last_long_gap_end: now,
            long,
            window: None,
            shrank: None,
        }
    }

    /// One sample: the file's size at `t`.
    pub(super) fn sample(&mut self, t: Instant, size: u64) {
        let interval = t.saturating_duration_since(self.last_sample);
        self.last_sample = t;
        if let Some(w) = &mut self.window {
            w.samples += 1;
            w.longest_interval = w.longest_interval.max(interval);
            w.sampled_for += interval;
        }
        if size < self.size && self.shrank.is_none() {
            self.shrank = Some((self.size, size));
        }
        if size > self.size {
            let gap = t.saturating_duration_since(self.last_growth);
            if let Some(w) = &mut self.window {
                if gap > w.longest_gap {
                    w.longest_gap = gap;
                    w.gap_start = self.last_growth;
                }
            }
            if gap >= self.long {
                self.last_long_gap_end = t;
            }
            self.last_growth = t;
        }
        self.size = size;
    }

    pub(super) fn open_window(&mut self, now: Instant) {
        self.window = Some(Window::new(now));
    }

    pub(super) fn close_window(&mut self) -> Option<Window> {
        self.window.take()
    }

    /// Whether the file has grown steadily (no gap of `long` or more, and none open now) for
    /// `for_at_least` after `since`, as of `now`.
    pub(super) fn steady(&self, since: Instant, for_at_least: Duration, now: Instant) -> bool {
        let from = since.max(self.last_long_gap_end);
        now.saturating_duration_since(from) >= for_at_least
            && now.saturating_duration_since(self.last_growth) < self.long
    }

    /// The file shrank between two samples: (from, to) bytes.
    pub(super) fn shrank(&self) -> Option<(u64, u64)> {
        self.shrank
    }
}

/// A thread sampling a file's size every [`SAMPLE_PERIOD`] into a [`GapTracker`].
pub(super) struct SizeSampler {
    tracker: Arc<Mutex<GapTracker>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<()>>,
}

impl SizeSampler {
    /// Starts sampling the file at `path` (a file not there yet has size 0); a gap of `long` or
    /// more does not count as steady growth.
    pub(super) fn start(path: &Path, long: Duration) -> Result<SizeSampler> {
        let path = path.to_owned();
        let tracker = Arc::new(Mutex::new(GapTracker::new(
            Instant::now(),
            size_of(&path)?,
            long,
        )));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (tracker.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("size-sampler".into())
            .spawn(move || sample(&path, &t, &s))
            .context("starting the size sampler")?;
        Ok(SizeSampler {
            tracker,
            stop,
            thread,
        })
    }

    fn tracker(&self) -> MutexGuard<'_, GapTracker> {
        // A panic while the lock was held is the thread's; `stop` reports it.
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn open_window(&self) {
        self.tracker().open_window(Instant::now());
    }

    /// Closes the window; an error if the sampler has stopped or the file shrank.
    pub(super) fn close_window(&self) -> Result<Window> {
        if self.thread.is_finished() {
            bail!("the size sampler stopped");
        }
        let mut t = self.tracker();
        if let Some((from, to)) = t.shrank() {
            bail!(
                "the log shrank from {from} to {to} bytes (it rotated: the method needs it not to)"
            );
        }
        t.close_window().context("no window was open")
    }

    /// See [`GapTracker::steady`].
    pub(super) fn steady(&self, since: Instant, for_at_least: Duration) -> bool {
        self.tracker().steady(since, for_at_least, Instant::now())
    }

    /// Stops the thread; an error if it failed.
    pub(super) fn stop(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("the size sampler panicked"))?
    }
}

/// The sampler's loop.
fn sample(path: &Path, tracker: &Mutex<GapTracker>, stop: &AtomicBool) -> Result<()> {
    // The default slack (50 µs) would double each sleep.
    nix::sys::prctl::set_timerslack(1000).context("setting the sampler's timer slack")?;
    while !stop.load(Ordering::Relaxed) {
        let size = size_of(path)?;
        let now = Instant::now();
        tracker
            .lock()
            .map_err(|_| anyhow!("the tracker's lock is poisoned"))?
            .sample(now, size);
        std::thread::sleep(SAMPLE_PERIOD);
    }
    Ok(())
}

/// The size of the file at `path`; 0 if it is not there (yet).
fn size_of(path: &Path) -> Result<u64> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).with_context(|| format!("stat {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Samples every 1 ms from `t0 + from` to `t0 + to` (ms), the size growing by 100 each time.
    fn grow(t: &mut GapTracker, t0: Instant, size: &mut u64, from: u32, to: u32) {
        for ms in from..to {
            *size += 100;
            t.sample(t0 + MS * ms, *size);
        }
    }

    #[test]
    fn the_longest_gap_is_measured_between_the_samples_that_saw_growth() {
        let t0 = Instant::now();
        let mut t = GapTracker::new(t0, 0, 10 * MS);
        let mut size = 0;
        grow(&mut t, t0, &mut size, 1, 50);
        t.open_window(t0 + 50 * MS);
        grow(&mut t, t0, &mut size, 50, 60);
        // No growth from 59 ms (the last growing sample) to 100 ms.
        for ms in 60..100 {
            t.sample(t0 + MS * ms, size);
        }
        grow(&mut t, t0, &mut size, 100, 120);
        // A shorter gap after it does not replace it.
        for ms in 120..130 {
            t.sample(t0 + MS * ms, size);
        }
        grow(&mut t, t0, &mut size, 130, 140);
        let w = t.close_window().unwrap();
        assert_eq!(w.longest_gap, 41 * MS);
        assert_eq!(w.gap_start, t0 + 59 * MS);
        assert_eq!(w.samples, 90);
        assert_eq!(w.longest_interval, MS);
        assert_eq!(w.mean_interval(), MS);
        assert!(t.shrank().is_none());
    }

    #[test]
    fn steady_needs_the_time_asked_for_after_the_last_long_gap_and_growth_now() {
        let t0 = Instant::now();
        let mut t = GapTracker::new(t0, 0, 10 * MS);
        let mut size = 0;
        grow(&mut t, t0, &mut size, 1, 20);
        // A 30 ms gap, ending at 50 ms.
        t.sample(t0 + 35 * MS, size);
        grow(&mut t, t0, &mut size, 50, 100);
        assert!(!t.steady(t0, 60 * MS, t0 + 99 * MS));
        assert!(t.steady(t0, 40 * MS, t0 + 99 * MS));
        // `since` later than the gap's end counts from `since`.
        assert!(!t.steady(t0 + 80 * MS, 40 * MS, t0 + 99 * MS));
        // No growth for 10 ms or more now: not steady, however long before.
        assert!(!t.steady(t0, 40 * MS, t0 + 109 * MS));
    }

    #[test]
    fn a_file_that_shrinks_is_reported() {
        let t0 = Instant::now();
        let mut t = GapTracker::new(t0, 500, 10 * MS);
        t.sample(t0 + MS, 600);
        t.sample(t0 + 2 * MS, 100);
        t.sample(t0 + 3 * MS, 50);
        assert_eq!(t.shrank(), Some((600, 100)));
    }
}
