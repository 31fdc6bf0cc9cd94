//! The log sink: a rotating file that survives disk errors.
//!
//! Every source of bytes (a stdio pipe, a console's guest side) writes through a [`LogSink`]. It
//! never fails its caller: when the file cannot be written (ENOSPC, EIO), the bytes are counted
//! as dropped and the file is retried at most once per [`RETRY_INTERVAL`]. So a disk error never
//! reaches the guest.

use std::path::Path;
use std::time::{Duration, Instant};

use logd_protocol::admin::{EventKind, GuestState, LastError, StreamKind, StreamSnapshot};
use logd_protocol::Position;

use crate::rotate::{RotateConfig, RotateError, RotatingFile};

/// How long a sink waits after a failed write before trying the file again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Counters of one sink.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SinkStats {
    /// Bytes given to the sink.
    pub bytes_in: u64,
    /// Bytes that reached the file.
    pub bytes_written: u64,
    /// Bytes dropped because the file could not be written.
    pub dropped_disk: u64,
}

/// Bytes per second over the last few seconds, from per-second buckets updated as bytes pass
/// (no timer: an idle sink costs nothing).
#[derive(Debug, Default, Clone)]
pub struct RateMeter {
    /// Seconds since the daemon started, of the newest bucket.
    now: u32,
    buckets: [u32; RATE_BUCKETS],
}

/// Buckets kept: the current second and the ones before it.
const RATE_BUCKETS: usize = 4;

/// Seconds since the process started (a coarse clock for rate buckets).
fn uptime_secs() -> u32 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs() as u32
}

impl RateMeter {
    fn roll(&mut self, now: u32) {
        let gap = now.saturating_sub(self.now) as usize;
        if gap > 0 {
            for i in 1..=gap.min(RATE_BUCKETS) {
                self.buckets[(self.now as usize + i) % RATE_BUCKETS] = 0;
            }
            self.now = now;
        }
    }

    pub fn add(&mut self, n: usize) {
        let now = uptime_secs();
        self.roll(now);
        let b = &mut self.buckets[now as usize % RATE_BUCKETS];
        *b = b.saturating_add(n.min(u32::MAX as usize) as u32);
    }

    /// Average bytes per second over the complete seconds kept (the current one is partial).
    pub fn per_second(&mut self) -> u64 {
        let now = uptime_secs();
        self.roll(now);
        let full = RATE_BUCKETS - 1;
        let sum: u64 = (1..=full)
            .map(|back| self.buckets[(now as usize + RATE_BUCKETS - back) % RATE_BUCKETS] as u64)
            .sum();
        sum / full as u64
    }
}

/// A rotating file, its retry timer and its counters.
pub struct LogSink {
    file: RotatingFile,
    stats: SinkStats,
    /// Rates and retry timer, allocated at the first write: an idle log (most of them, with
    /// thousands of guests) holds none.
    activity: Option<Box<Activity>>,
}

/// What only a log that has been written to needs.
#[derive(Default)]
struct Activity {
    retry_at: Option<Instant>,
    rate_in: RateMeter,
    rate_out: RateMeter,
    /// The last error and when it happened (an error needs a write, so it lives here).
    last_error: Option<(String, std::time::SystemTime)>,
    /// Bytes dropped since the last `bytes_dropped` event.
    unreported_drops: u64,
}

impl Drop for LogSink {
    /// A log that closes while its disk still fails reports its last drops.
    fn drop(&mut self) {
        if let Some(mut act) = self.activity.take() {
            self.report_drops(&mut act);
        }
    }
}

impl LogSink {
    pub fn open(
        path: std::sync::Arc<Path>,
        cfg: RotateConfig,
        truncate: bool,
    ) -> Result<LogSink, RotateError> {
        Ok(LogSink {
            file: RotatingFile::open_shared(path, cfg, truncate)?,
            stats: SinkStats::default(),
            activity: None,
        })
    }

    /// Describes the sink for a re-exec (its file marked to be carried).
    pub fn export(&self, carrier: &mut crate::state::Carrier) -> crate::state::SinkState {
        let mut st = self.file.export(carrier);
        st.bytes_in = self.stats.bytes_in;
        st.bytes_written = self.stats.bytes_written;
        st.dropped_disk = self.stats.dropped_disk;
        st.last_error = self.last_error().map(|(m, t)| (m.to_owned(), unix_ms(t)));
        st
    }

    /// The sink as a previous process left it; its counters go on from there.
    pub fn restore(
        state: &crate::state::SinkState,
        path: std::sync::Arc<Path>,
        inherited: &crate::state::Inherited,
    ) -> Result<LogSink, crate::state::StateError> {
        let file = state
            .file
            .as_ref()
            .map(|fd| inherited.take(fd).map(std::fs::File::from))
            .transpose()?;
        let last_error = state
            .last_error
            .as_ref()
            .map(|(m, t)| (m.clone(), std::time::UNIX_EPOCH + Duration::from_millis(*t)));
        Ok(LogSink {
            file: RotatingFile::restore(state, path, file),
            activity: last_error.is_some().then(|| {
                Box::new(Activity {
                    last_error,
                    ..Activity::default()
                })
            }),
            stats: SinkStats {
                bytes_in: state.bytes_in,
                bytes_written: state.bytes_written,
                dropped_disk: state.dropped_disk,
            },
        })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The path, as the registry shares it.
    pub fn shared_path(&self) -> &std::sync::Arc<Path> {
        self.file.shared_path()
    }

    pub fn stats(&self) -> SinkStats {
        self.stats
    }

    pub fn rotations(&self) -> u64 {
        self.file.rotations()
    }

    /// Snapshot of the sink's counters for the admin socket (the caller fills kind, guest and
    /// subscribers).
    pub fn snapshot(&mut self, kind: StreamKind, guest: GuestState) -> StreamSnapshot {
        let (rate_in, rate_out) = self.rates();
        StreamSnapshot {
            kind,
            path: self.path().display().to_string(),
            bytes_in: self.stats.bytes_in,
            bytes_written: self.stats.bytes_written,
            file_size: self.position().offset,
            rotations: self.rotations(),
            dropped_disk: self.stats.dropped_disk,
            guest,
            last_error: self.last_error().map(|(m, t)| LastError {
                message: m.to_owned(),
                at_ms: unix_ms(t),
            }),
            rate_in,
            rate_out,
            subscribers: Vec::new(),
            slow_disconnects: 0,
        }
    }

    /// The end of the active file.
    pub fn position(&self) -> Position {
        self.file.position()
    }

    /// Input and output rates, bytes per second over the last few seconds.
    pub fn rates(&mut self) -> (u64, u64) {
        match &mut self.activity {
            Some(a) => (a.rate_in.per_second(), a.rate_out.per_second()),
            None => (0, 0),
        }
    }

    /// The last error and when it happened.
    pub fn last_error(&self) -> Option<(&str, std::time::SystemTime)> {
        let (m, t) = self.activity.as_ref()?.last_error.as_ref()?;
        Some((m.as_str(), *t))
    }

    fn record_error(&self, act: &mut Activity, e: &dyn std::fmt::Display) {
        let message = e.to_string();
        crate::events::emit(|| EventKind::Error {
            path: self.path().display().to_string(),
            message: message.clone(),
        });
        act.last_error = Some((message, std::time::SystemTime::now()));
    }

    /// Counts bytes the file could not take. Events say so once per failed attempt, not per
    /// chunk; each carries every byte dropped since the one before, so the events of a log add
    /// up to its `dropped_disk` exactly (the last ones come when the file works again, or when
    /// the sink closes).
    fn dropped(&mut self, act: &mut Activity, n: usize, tell: bool) {
        self.stats.dropped_disk += n as u64;
        act.unreported_drops += n as u64;
        if tell {
            self.report_drops(act);
        }
    }

    /// Emits the `bytes_dropped` event of the drops not reported yet.
    fn report_drops(&self, act: &mut Activity) {
        let bytes = std::mem::take(&mut act.unreported_drops);
        if bytes > 0 {
            crate::events::emit(|| EventKind::BytesDropped {
                path: self.path().display().to_string(),
                bytes,
                reason: "disk".into(),
            });
        }
    }

    /// Appends `data`, or counts it as dropped if the file cannot take it.
    pub fn write(&mut self, data: &[u8]) {
        let rotations = self.file.rotations();
        self.write_inner(data);
        if self.file.rotations() != rotations {
            crate::events::emit(|| EventKind::Rotated {
                path: self.path().display().to_string(),
                rotations: self.file.rotations(),
            });
        }
    }

    fn write_inner(&mut self, data: &[u8]) {
        let mut act = self.activity.take().unwrap_or_default();
        self.write_with(&mut act, data);
        self.activity = Some(act);
    }

    fn write_with(&mut self, act: &mut Activity, data: &[u8]) {
        self.stats.bytes_in += data.len() as u64;
        act.rate_in.add(data.len());
        if !self.file.is_healthy() {
            if act.retry_at.is_some_and(|t| Instant::now() < t) {
                self.dropped(act, data.len(), false);
                return;
            }
            if let Err(e) = self.file.reopen() {
                act.retry_at = Some(Instant::now() + RETRY_INTERVAL);
                self.dropped(act, data.len(), true);
                self.record_error(act, &e);
                tracing::debug!(path = %self.path().display(), cause = %e, "log file still unwritable");
                return;
            }
        }
        // A failure episode lasts from the first failed write to the next one that succeeds:
        // it is logged once at each end, however often the file is retried in between.
        let failing = act.retry_at.is_some();
        match self.file.write(data) {
            Ok(()) => {
                self.stats.bytes_written += data.len() as u64;
                act.rate_out.add(data.len());
                if failing {
                    act.retry_at = None;
                    self.report_drops(act);
                    tracing::info!(path = %self.path().display(), dropped = self.stats.dropped_disk, "log file writable again");
                }
            }
            Err(f) => {
                self.stats.bytes_written += f.written as u64;
                act.rate_out.add(f.written);
                act.retry_at = Some(Instant::now() + RETRY_INTERVAL);
                self.record_error(act, &f.error);
                self.dropped(act, data.len() - f.written, true);
                if failing {
                    tracing::debug!(path = %self.path().display(), cause = %f.error, dropped = data.len() - f.written, "log file still unwritable");
                } else {
                    tracing::warn!(path = %self.path().display(), cause = %f.error, dropped = data.len() - f.written, "cannot write log file; dropping bytes until it works again");
                }
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_meter_averages_full_seconds_and_forgets_old_ones() {
        let mut m = RateMeter {
            now: 10,
            buckets: [0; RATE_BUCKETS],
        };
        // 3 full seconds of 100, 200, 300 bytes before second 10.
        m.buckets[7 % RATE_BUCKETS] = 100;
        m.buckets[8 % RATE_BUCKETS] = 200;
        m.buckets[9 % RATE_BUCKETS] = 300;
        m.roll(10);
        let full = RATE_BUCKETS as u64 - 1;
        let sum: u64 = (1..=full)
            .map(|b| m.buckets[(10 + RATE_BUCKETS - b as usize) % RATE_BUCKETS] as u64)
            .sum();
        assert_eq!(sum / full, 200);
        // Ten seconds later, everything has aged out.
        m.roll(20);
        assert!(m.buckets.iter().all(|&b| b == 0));
    }
}
