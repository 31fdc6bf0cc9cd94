//! The log sink: a rotating file that survives disk errors.
//!
//! Every source of bytes (a stdio pipe, a console's guest side) writes through a [`LogSink`]. It
//! never fails its caller: when the file cannot be written (ENOSPC, EIO), the bytes are counted
//! as dropped and the file is retried at most once per [`RETRY_INTERVAL`]. So a disk error never
//! reaches the guest.

use std::path::Path;
use std::time::{Duration, Instant};

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

/// A rotating file, its retry timer and its counters.
pub struct LogSink {
    file: RotatingFile,
    retry_at: Option<Instant>,
    stats: SinkStats,
}

impl LogSink {
    pub fn open(path: &Path, cfg: RotateConfig, truncate: bool) -> Result<LogSink, RotateError> {
        Ok(LogSink {
            file: RotatingFile::open(path, cfg, truncate)?,
            retry_at: None,
            stats: SinkStats::default(),
        })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn stats(&self) -> SinkStats {
        self.stats
    }

    pub fn rotations(&self) -> u64 {
        self.file.rotations()
    }

    /// The end of the active file.
    pub fn position(&self) -> Position {
        self.file.position()
    }

    /// Appends `data`, or counts it as dropped if the file cannot take it.
    pub fn write(&mut self, data: &[u8]) {
        self.stats.bytes_in += data.len() as u64;
        if !self.file.is_healthy() {
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                self.stats.dropped_disk += data.len() as u64;
                return;
            }
            if let Err(e) = self.file.reopen() {
                self.retry_at = Some(Instant::now() + RETRY_INTERVAL);
                self.stats.dropped_disk += data.len() as u64;
                tracing::debug!(path = %self.path().display(), cause = %e, "log file still unwritable");
                return;
            }
            tracing::info!(path = %self.path().display(), dropped = self.stats.dropped_disk, "log file writable again");
            self.retry_at = None;
        }
        match self.file.write(data) {
            Ok(()) => self.stats.bytes_written += data.len() as u64,
            Err(f) => {
                self.stats.bytes_written += f.written as u64;
                self.stats.dropped_disk += (data.len() - f.written) as u64;
                self.retry_at = Some(Instant::now() + RETRY_INTERVAL);
                tracing::warn!(path = %self.path().display(), cause = %f.error, dropped = data.len() - f.written, "cannot write log file; dropping bytes until it works again");
            }
        }
    }
}
