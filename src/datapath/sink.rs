//! The log sink: a rotating file that survives disk errors.
//!
//! Every source of bytes (a stdio pipe, a console's guest side) writes through a [`LogSink`]. It
//! never fails its caller: when the file cannot be written (ENOSPC, EIO), the bytes are counted
//! as dropped and the file is retried at most once per [`RETRY_INTERVAL`]. So a disk error never
//! reaches the guest.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use logd_protocol::admin::{EventKind, GuestState, LastError, StreamKind, StreamSnapshot};
use logd_protocol::Position;
use tokio::sync::oneshot;

use crate::clock::unix_ms;
use crate::datapath::disk::{Disk, Done, Job};
use crate::datapath::rotate::{OutsideChange, RotateConfig, RotateError, RotatingFile};
use crate::datapath::tally::{self, Lease};
use crate::handover::state::Staleness;

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

/// Bytes of one batch: a log holds at most one batch being written and one filling. Beyond
/// that its source is not read (the guest waits, as with any pipe), until [`STALL_BOUND`].
pub const PENDING_LIMIT: usize = 256 * 1024;

/// A batch smaller than this, with nothing being written, waits up to [`LINGER`] for more:
/// a guest writing in small pieces costs one hand-over to its writer per millisecond, not one
/// per piece.
const LINGER_BATCH: usize = 64 * 1024;
const LINGER: Duration = Duration::from_millis(1);

/// How long a log that has been written to waits, idle, before its file is closed until its
/// next write (`log_idle_close`, [`set_rest_after`]); 0: never.
static REST_AFTER_SECS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_REST_AFTER.as_secs());

/// `log_idle_close`'s default.
pub const DEFAULT_REST_AFTER: Duration = Duration::from_secs(60);

/// Sets how long an idle log keeps its file open (`log_idle_close`; zero: until it closes).
/// Logs idle already take the new value at their next check.
pub fn set_rest_after(after: Duration) {
    REST_AFTER_SECS.store(after.as_secs(), Ordering::Relaxed);
}

fn rest_after() -> Option<Duration> {
    match REST_AFTER_SECS.load(Ordering::Relaxed) {
        0 => None,
        s => Some(Duration::from_secs(s)),
    }
}

/// Bytes all logs together may hold that their file systems have not taken yet.
pub const PENDING_BUDGET: usize = 64 * 1024 * 1024;

/// How long a log's source waits for its file system before the bytes it writes are dropped
/// (and counted) instead: the longest a guest is ever held up by a stalled disk.
pub const STALL_BOUND: Duration = Duration::from_secs(1);

/// Bytes held for all logs (pending and being written), against [`PENDING_BUDGET`].
static HELD: AtomicUsize = AtomicUsize::new(0);

/// A rotating file, its retry timer and its counters.
///
/// The file is written by the writer thread of its file system ([`crate::datapath::disk`]), never by the
/// caller: [`LogSink::write`] queues the bytes and returns at once, and [`LogSink::poll`] takes
/// the file back when its write is done and hands it the next bytes.
pub struct LogSink {
    /// The log's path, as the registry shares it (the file may be away).
    path: Arc<Path>,
    /// The file, or None while a disk writer has it.
    file: Option<RotatingFile>,
    stats: SinkStats,
    /// What a log that has been written to needs, allocated at the first write: an idle log
    /// (most of them, with thousands of guests) holds none.
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
    /// Times another process truncated the active file (`copytruncate`), noticed at a write.
    truncations: u64,
    /// The writer of the file's file system, found at the first write.
    disk: Option<Arc<Disk>>,
    /// Bytes taken from the source, not yet handed to the writer.
    pending: BytesMut,
    /// The write in flight, if any.
    away: Option<Away>,
    /// Woken at the stall bound while the source waits for room.
    stall_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Woken when a small batch has waited long enough for more.
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When the last batch went to the writer (tokio's clock, which tests can pause).
    last_ship: Option<tokio::time::Instant>,
    /// Woken when the log may have been idle for `log_idle_close`: its file then rests.
    rest_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes are being dropped because the file system has not answered for `STALL_BOUND`.
    stalled: bool,
    /// The log's slot in the tally (a stored log's counters, which outlive a crash), once
    /// found: every read, drop and write is counted there too (`crate::datapath::tally`).
    tally: Option<Arc<Lease>>,
    /// The tally's generation when the slot was last looked for.
    tally_gen: u64,
}

/// A write in flight: the file is with its writer.
struct Away {
    done: oneshot::Receiver<Done>,
    since: Instant,
    /// Bytes handed over.
    len: usize,
    /// The file's end and rotations as they were (for `ps` meanwhile).
    position: Position,
    rotations: u64,
}

impl Drop for LogSink {
    /// A log that closes while its disk still fails reports its last drops; bytes not yet
    /// written are counted as dropped.
    fn drop(&mut self) {
        if let Some(mut act) = self.activity.take() {
            let pending = act.pending.len();
            if pending > 0 {
                HELD.fetch_sub(pending, Ordering::Relaxed);
                self.stats.dropped_disk += pending as u64;
                act.unreported_drops += pending as u64;
                if let Some(t) = &act.tally {
                    t.dropped(pending);
                }
            }
            if let Some(away) = &act.away {
                HELD.fetch_sub(away.len, Ordering::Relaxed);
            }
            self.report_drops(&mut act);
        }
    }
}

impl LogSink {
    pub fn open(
        path: Arc<Path>,
        cfg: RotateConfig,
        truncate: bool,
    ) -> Result<LogSink, RotateError> {
        Ok(LogSink {
            file: Some(RotatingFile::open_shared(path.clone(), cfg, truncate)?),
            path,
            stats: SinkStats::default(),
            activity: None,
        })
    }

    /// A sink for a file opened already (by a disk writer).
    pub fn from_file(file: RotatingFile) -> LogSink {
        LogSink {
            path: file.shared_path().clone(),
            file: Some(file),
            stats: SinkStats::default(),
            activity: None,
        }
    }

    /// A sink for a file opened again after a crash, its counters going on from `stats` (the
    /// last figures the record had).
    pub(crate) fn from_file_with(file: RotatingFile, stats: SinkStats) -> LogSink {
        let mut sink = LogSink::from_file(file);
        sink.stats = stats;
        sink
    }

    /// Describes the sink for a re-exec (its file marked to be carried). The sink must be
    /// flushed ([`is_flushed`](Self::is_flushed)): the domain waits for that first.
    pub fn export(
        &self,
        carrier: &mut crate::handover::state::Carrier,
    ) -> crate::handover::state::SinkState {
        let file = self
            .file
            .as_ref()
            .expect("a sink is flushed before its export");
        let mut st = file.export(carrier);
        st.bytes_in = self.stats.bytes_in;
        st.bytes_written = self.stats.bytes_written;
        st.dropped_disk = self.stats.dropped_disk;
        st.last_error = self.last_error().map(|(m, t)| (m.to_owned(), unix_ms(t)));
        st
    }

    /// The sink as a previous process left it; its counters go on from there. With
    /// [`Staleness::AfterGo`] (a guardian taking over from a new image that was told `Go`), the
    /// carried file may have been rotated away by that image: the log is opened again by its
    /// path instead ([`RotatingFile::restore_after_go`]), and what that image wrote is added to
    /// the counters. Bytes it had read and not yet written died with it (they are counted
    /// nowhere).
    pub fn restore(
        state: &crate::handover::state::SinkState,
        path: Arc<Path>,
        inherited: &crate::handover::state::Inherited,
        staleness: Staleness,
    ) -> Result<LogSink, crate::handover::state::StateError> {
        let carried = state
            .file
            .as_ref()
            .map(|fd| inherited.take(fd).map(std::fs::File::from))
            .transpose()?;
        let mut last_error = state
            .last_error
            .as_ref()
            .map(|(m, t)| (m.clone(), crate::clock::from_unix_ms(*t)));
        let mut stats = SinkStats {
            bytes_in: state.bytes_in,
            bytes_written: state.bytes_written,
            dropped_disk: state.dropped_disk,
        };
        let file = match staleness {
            Staleness::Exact => RotatingFile::restore(state, path.clone(), carried),
            Staleness::AfterGo => {
                let (file, caught) = RotatingFile::restore_after_go(state, path.clone(), carried);
                match caught {
                    Ok(c) => {
                        stats.bytes_in += c.written;
                        stats.bytes_written += c.written;
                        tracing::info!(
                            path = %path.display(),
                            rotations = c.rotations,
                            written = c.written,
                            exact = c.exact,
                            "log opened again by its path: the failed new image wrote to it"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), cause = %e, "cannot open the log again by its path; its next write retries");
                        last_error = Some((e.to_string(), std::time::SystemTime::now()));
                    }
                }
                file
            }
        };
        Ok(LogSink {
            file: Some(file),
            path,
            activity: last_error.is_some().then(|| {
                Box::new(Activity {
                    last_error,
                    ..Activity::default()
                })
            }),
            stats,
        })
    }

    fn away(&self) -> Option<&Away> {
        self.activity.as_ref()?.away.as_ref()
    }

    pub fn path(&self) -> &Path {
        self.shared_path()
    }

    /// The path, as the registry shares it.
    pub fn shared_path(&self) -> &Arc<Path> {
        &self.path
    }

    pub fn stats(&self) -> SinkStats {
        self.stats
    }

    pub fn rotations(&self) -> u64 {
        match (&self.file, self.away()) {
            (Some(f), _) => f.rotations(),
            (None, Some(a)) => a.rotations,
            (None, None) => 0,
        }
    }

    /// Snapshot of the sink's counters for the admin socket (the caller fills kind, guest and
    /// subscribers).
    pub fn snapshot(&mut self, kind: StreamKind, guest: GuestState) -> StreamSnapshot {
        let (rate_in, rate_out) = self.rates();
        StreamSnapshot {
            refused: 0,
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

    /// The end of the active file, as of the last write done. After [`is_flushed`]
    /// (Self::is_flushed), every byte given to the sink lies before it.
    pub fn position(&self) -> Position {
        match (&self.file, self.away()) {
            (Some(f), _) => f.position(),
            (None, Some(a)) => a.position,
            (None, None) => Position {
                inode: 0,
                offset: 0,
                birth: 0,
            },
        }
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

    /// Every byte given to the sink is in its file (or counted as dropped), and the file is
    /// here.
    pub fn is_flushed(&self) -> bool {
        self.file.is_some() && self.activity.as_ref().is_none_or(|a| a.pending.is_empty())
    }

    /// The file system has not finished a write for [`STALL_BOUND`]: bytes given now are
    /// dropped.
    pub fn is_stalled(&self) -> bool {
        self.away()
            .is_some_and(|a| a.since.elapsed() >= STALL_BOUND)
    }

    /// Bytes the sink takes now without dropping any: a batch fills while the one before is
    /// being written.
    pub fn room(&self) -> usize {
        match &self.activity {
            Some(act) => self.room_with(act),
            None => PENDING_LIMIT.min(PENDING_BUDGET.saturating_sub(HELD.load(Ordering::Relaxed))),
        }
    }

    /// `Ready` when the source may be read: the sink has room, or its file system has stalled
    /// (what is read then is dropped and counted). Otherwise the task is woken when a write
    /// comes back or the stall bound passes.
    pub fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Writes that came back make room; the batch waits (the caller sends it with `poll`
        // when it stops reading), unless it is full.
        while self.take_back(Some(cx)) {}
        if self.room() > 0 || self.is_stalled() {
            return Poll::Ready(());
        }
        // Full: the batch goes now, which makes room for the next one if the file was here.
        self.poll(cx);
        if self.room() > 0 {
            return Poll::Ready(());
        }
        let Some(act) = self.activity.as_mut() else {
            return Poll::Ready(());
        };
        let Some(since) = act.away.as_ref().map(|a| a.since) else {
            // No write in flight: only the global budget is short. Look again soon.
            let t = act
                .stall_timer
                .insert(Box::pin(tokio::time::sleep(Duration::from_millis(10))));
            let _ = t.as_mut().poll(cx);
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(since + STALL_BOUND);
        let t = act
            .stall_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        t.as_mut().reset(deadline);
        if t.as_mut().poll(cx).is_ready() {
            act.stall_timer = None;
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Takes the file back if its write is done (the task is woken when it is), and hands it
    /// the bytes that came meanwhile.
    pub fn poll(&mut self, cx: &mut Context<'_>) {
        loop {
            while self.take_back(Some(cx)) {}
            // The batch read since goes now; its return must wake the task too.
            if !self.ship() {
                return;
            }
        }
    }

    /// [`poll`](Self::poll) for a source that has nothing more for now: a small batch, with no
    /// write in flight, waits up to [`LINGER`] for more before it goes.
    pub fn poll_linger(&mut self, cx: &mut Context<'_>) {
        while self.take_back(Some(cx)) {}
        if let Some(act) = self.activity.as_mut() {
            if act.away.is_none() && !act.pending.is_empty() && act.pending.len() < LINGER_BATCH {
                let t = act
                    .linger
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
                if t.as_mut().poll(cx).is_pending() {
                    return;
                }
            }
            act.linger = None;
        }
        self.poll(cx);
        self.poll_rest(cx);
    }

    /// Closes the file of a log idle for `log_idle_close` (on its writer: a `close(2)` may
    /// block too); its next batch opens it again. One timer per log that has been written to,
    /// set again only when it fires early, so a busy log pays no timer per batch.
    fn poll_rest(&mut self, cx: &mut Context<'_>) {
        let Some(act) = self.activity.as_mut() else {
            return;
        };
        if act.away.is_some() || !act.pending.is_empty() {
            return; // checked again when the log is idle
        }
        let open = self
            .file
            .as_ref()
            .is_some_and(|f| f.is_healthy() && !f.is_resting());
        let (Some(after), Some(last), true) = (rest_after(), act.last_ship, open) else {
            act.rest_timer = None;
            return;
        };
        let due = last + after;
        let timer = act
            .rest_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return;
            }
            if tokio::time::Instant::now() >= due {
                break;
            }
            // Written since the timer was set: wait for the rest of the time.
            timer.as_mut().reset(due);
        }
        act.rest_timer = None;
        let disk = act.disk.clone();
        let file = self.file.take().expect("checked above");
        let Some(disk) = disk else {
            // Never shipped (cannot happen: `last_ship` is set when a batch goes).
            self.file = Some(file);
            return;
        };
        let (tx, rx) = oneshot::channel();
        act.away = Some(Away {
            done: rx,
            since: Instant::now(),
            len: 0,
            position: file.position(),
            rotations: file.rotations(),
        });
        let tally = act.tally.clone();
        disk.submit(Job {
            file,
            data: BytesMut::new(),
            reopen: false,
            rest: true,
            tally,
            done: tx,
        });
        // Its return wakes the task.
        while self.take_back(Some(cx)) {}
    }

    /// [`poll`](Self::poll) without registering a wake-up, for a caller that is not the
    /// domain's task: the domain's next poll registers it.
    pub fn collect(&mut self) {
        while self.take_back(None) {}
        self.ship();
    }

    /// Takes the file back if its write is done; returns whether it did (and so may have sent
    /// the next batch).
    fn take_back(&mut self, cx: Option<&mut Context<'_>>) -> bool {
        let Some(act) = self.activity.as_mut() else {
            return false;
        };
        let Some(away) = act.away.as_mut() else {
            return false;
        };
        let done = match cx {
            Some(cx) => match Pin::new(&mut away.done).poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(done) => done.map_err(drop),
            },
            None => match away.done.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => return false,
                Ok(done) => Ok(done),
                Err(oneshot::error::TryRecvError::Closed) => Err(()),
            },
        };
        let mut act = self.activity.take().expect("checked above");
        let away = act.away.take().expect("checked above");
        HELD.fetch_sub(away.len, Ordering::Relaxed);
        match done {
            Ok(done) => self.came_back(&mut act, away, done),
            Err(()) => {
                // The writer thread died with the file (a panic): the log cannot go on.
                tracing::error!(path = %self.path.display(), "the disk writer lost the log's file");
                self.dropped(&mut act, away.len, true);
            }
        }
        self.activity = Some(act);
        true
    }

    /// Accounts for a write that came back with its file.
    fn came_back(&mut self, act: &mut Activity, away: Away, done: Done) {
        give_buffer(done.data);
        let file = self.file.insert(done.file);
        let rotations = file.rotations();
        if rotations != away.rotations {
            crate::serve::events::emit(|| EventKind::Rotated {
                path: self.path.display().to_string(),
                rotations,
            });
        }
        if let Some(change) = done.outside {
            self.changed_outside(act, change);
        }
        self.stats.bytes_written += done.written as u64;
        act.rate_out.add(done.written);
        if act.stalled {
            act.stalled = false;
            tracing::info!(path = %self.path.display(), "the log's file system answered again");
        }
        // A failure episode lasts from the first failed write to the next one that succeeds:
        // it is logged once at each end, however often the file is retried in between.
        let failing = act.retry_at.is_some();
        let lost = away.len - done.written;
        match done.error {
            None => {
                if failing {
                    act.retry_at = None;
                    self.report_drops(act);
                    tracing::info!(path = %self.path.display(), dropped = self.stats.dropped_disk, "log file writable again");
                }
            }
            Some(e) => {
                act.retry_at = Some(Instant::now() + RETRY_INTERVAL);
                self.record_error(act, &e);
                self.dropped(act, lost, true);
                if done.reopen_failed || failing {
                    tracing::debug!(path = %self.path.display(), cause = %e, dropped = lost, "log file still unwritable");
                } else {
                    tracing::warn!(path = %self.path.display(), cause = %e, dropped = lost, "cannot write log file; dropping bytes until it works again");
                }
            }
        }
    }

    /// Hands the pending bytes to the writer, if the file is here; returns whether it did. A
    /// file that failed and is not due for a retry drops them instead.
    fn ship(&mut self) -> bool {
        let Some(act) = self.activity.as_mut() else {
            return false;
        };
        if act.pending.is_empty() || self.file.is_none() {
            return false;
        }
        let mut act = self.activity.take().expect("checked above");
        let file = self.file.as_mut().expect("checked above");
        let healthy = file.is_healthy();
        let reopen = !healthy && act.retry_at.is_none_or(|t| Instant::now() >= t);
        if !healthy && !reopen {
            let n = act.pending.len();
            act.pending.clear();
            HELD.fetch_sub(n, Ordering::Relaxed);
            self.dropped(&mut act, n, false);
            self.activity = Some(act);
            return false;
        }
        let disk = act
            .disk
            .get_or_insert_with(|| Disk::of(file.device()))
            .clone();
        let file = self.file.take().expect("checked above");
        let data = std::mem::take(&mut act.pending);
        act.linger = None;
        let (tx, rx) = oneshot::channel();
        let act_tally = act.tally.clone();
        let since = Instant::now();
        act.last_ship = Some(tokio::time::Instant::now());
        act.away = Some(Away {
            done: rx,
            since,
            len: data.len(),
            position: file.position(),
            rotations: file.rotations(),
        });
        self.activity = Some(act);
        disk.submit(Job {
            file,
            data,
            reopen,
            rest: false,
            tally: act_tally,
            done: tx,
        });
        true
    }

    /// Reports a change another process made to the active file, which the writer noticed
    /// before a write and went on from ([`RotatingFile::resync`]): a `warn` naming the path, a
    /// `file_changed_outside` event, and the log's last error (`ps` shows it). Once per change
    /// noticed, so at most once per batch.
    #[cold]
    fn changed_outside(&self, act: &mut Activity, change: OutsideChange) {
        let OutsideChange {
            expected, found, ..
        } = change;
        let path = self.path.display();
        let message = if change.replaced {
            tracing::warn!(
                path = %path,
                expected,
                found,
                "the log's file was removed or replaced by another process while logd had it \
                 closed (idle); logd goes on in the file now at its path"
            );
            format!(
                "{path} was removed or replaced by another process while the log was idle (logd \
                 had left it at {expected} bytes); logd went on in the file now at that path \
                 ({found} bytes)"
            )
        } else if change.is_truncation() {
            act.truncations += 1;
            tracing::warn!(
                path = %path,
                expected,
                found,
                removed = expected - found,
                truncations = act.truncations,
                "the log's active file was truncated by another process (logrotate's \
                 copytruncate?); logd goes on at its new end. Do not point logrotate at logd's \
                 logs: logd rotates them itself"
            );
            format!(
                "{path} was truncated by another process from {expected} to {found} bytes \
                 (logrotate's copytruncate?); logd went on at its new end"
            )
        } else {
            tracing::warn!(
                path = %path,
                expected,
                found,
                added = found - expected,
                "another process wrote to the log's active file; logd goes on at its new end"
            );
            format!(
                "{path} was written by another process, from {expected} to {found} bytes; logd \
                 went on at its new end"
            )
        };
        crate::serve::events::emit(|| EventKind::FileChangedOutside {
            path: path.to_string(),
            expected,
            found,
            truncations: act.truncations,
        });
        act.last_error = Some((message, std::time::SystemTime::now()));
    }

    fn record_error(&self, act: &mut Activity, e: &dyn std::fmt::Display) {
        let message = e.to_string();
        crate::serve::events::emit(|| EventKind::Error {
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
        if let Some(t) = &act.tally {
            t.dropped(n);
        }
        act.unreported_drops += n as u64;
        if tell {
            self.report_drops(act);
        }
    }

    /// Emits the `bytes_dropped` event of the drops not reported yet.
    fn report_drops(&self, act: &mut Activity) {
        let bytes = std::mem::take(&mut act.unreported_drops);
        if bytes > 0 {
            crate::serve::events::emit(|| EventKind::BytesDropped {
                path: self.path().display().to_string(),
                bytes,
                reason: "disk".into(),
            });
        }
    }

    /// Takes `data` for the file: queued for its writer, or, beyond the sink's room (its file
    /// system has stalled), dropped and counted.
    pub fn write(&mut self, data: &[u8]) {
        self.write_with(data.len(), |pending| pending.extend_from_slice(data));
    }

    /// Takes up to `max` bytes that `fill` appends to the sink's pending buffer (a read from
    /// the source straight into it). Returns what `fill` returned.
    pub fn write_with<R>(&mut self, max: usize, fill: impl FnOnce(&mut BytesMut) -> R) -> R {
        let idle = self.activity.is_none();
        let mut act = self.activity.take().unwrap_or_default();
        let before = act.pending.len();
        let room = self.room_with(&act);
        self.find_tally(&mut act);
        if let Some(t) = &act.tally {
            t.reading(max);
        }
        if room == 0 {
            // Stalled: take what comes, count it and let it go.
            act.pending.reserve(max);
            let r = fill(&mut act.pending);
            let n = act.pending.len() - before;
            took(&act, n);
            act.pending.truncate(before);
            self.account_in(&mut act, n);
            let first = !act.stalled;
            if first {
                act.stalled = true;
                tracing::warn!(path = %self.path.display(), bound = ?STALL_BOUND, "the log's file system has not finished a write in time; dropping bytes until it does");
            }
            self.dropped(&mut act, n, first);
            self.activity = Some(act);
            return r;
        }
        if act.pending.capacity() == 0 {
            act.pending = take_buffer();
        }
        act.pending.reserve(max.min(room));
        let r = fill(&mut act.pending);
        let mut n = act.pending.len() - before;
        took(&act, n);
        if act.pending.is_empty() {
            // Nothing came (an idle pipe: EAGAIN, or EOF): the buffer goes back to the thread,
            // and an idle log stays as it was, holding none.
            give_buffer(std::mem::take(&mut act.pending));
            if !idle {
                self.activity = Some(act);
            }
            return r;
        }
        if n > room {
            // More than the room: the excess goes.
            act.pending.truncate(before + room);
            self.account_in(&mut act, n);
            self.dropped(&mut act, n - room, true);
            n = room;
        } else {
            self.account_in(&mut act, n);
        }
        HELD.fetch_add(n, Ordering::Relaxed);
        self.activity = Some(act);
        r
    }

    /// A read from the source into a buffer of the caller's (its bytes come to
    /// [`write`](Self::write) next) is about to take at most `max` bytes: the tally marks it in
    /// flight, so a crash before `write` counts is a bracket, not a silent loss.
    /// [`read_nothing`](Self::read_nothing) says it took nothing.
    pub(crate) fn reading(&mut self, max: usize) {
        if self.activity.is_none() && tally::generation() == 0 {
            return; // no tally in this process (and no activity to keep a slot in)
        }
        let mut act = self.activity.take().unwrap_or_default();
        self.find_tally(&mut act);
        if let Some(t) = &act.tally {
            t.reading(max);
        }
        self.activity = Some(act);
    }

    /// The read announced by [`reading`](Self::reading) took nothing.
    pub(crate) fn read_nothing(&mut self) {
        if let Some(t) = self.activity.as_ref().and_then(|a| a.tally.as_ref()) {
            t.took_nothing();
        }
    }

    /// Finds the log's tally slot, if it has none and the tally's bindings changed since it
    /// last looked (one atomic load otherwise). The slot is taken only while the sink holds
    /// nothing (every byte it took written or dropped), and starts from the sink's counters:
    /// from then on the slot's `read − written − dropped` is what the sink holds.
    #[inline]
    fn find_tally(&self, act: &mut Activity) {
        if act.tally.is_none() {
            let gen = tally::generation();
            if gen != act.tally_gen {
                self.bind_tally(act, gen);
            }
        }
    }

    #[cold]
    fn bind_tally(&self, act: &mut Activity, gen: u64) {
        let Some(lease) = tally::lookup(&self.path) else {
            act.tally_gen = gen;
            return;
        };
        if !act.pending.is_empty() || act.away.is_some() {
            return; // looked for again at the next read, until it holds nothing
        }
        lease.start(
            self.stats.bytes_in,
            self.stats.bytes_written,
            self.stats.dropped_disk,
        );
        act.tally = Some(lease);
        act.tally_gen = gen;
    }

    fn room_with(&self, act: &Activity) -> usize {
        let global = PENDING_BUDGET.saturating_sub(HELD.load(Ordering::Relaxed));
        PENDING_LIMIT.saturating_sub(act.pending.len()).min(global)
    }

    fn account_in(&mut self, act: &mut Activity, n: usize) {
        self.stats.bytes_in += n as u64;
        act.rate_in.add(n);
    }
}

/// Counts in the log's tally slot what a read took, right after it returned.
#[inline]
fn took(act: &Activity, n: usize) {
    if let Some(t) = &act.tally {
        if n > 0 {
            t.took(n);
        } else {
            t.took_nothing();
        }
    }
}

thread_local! {
    /// Batch buffers of this thread's logs, kept for the next batch: a fresh megabyte per batch
    /// would cost its page faults every time. Given back after [`BUFFERS_IDLE`] unused.
    static BUFFERS: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
    /// When a batch buffer was last taken or given.
    static BUFFERS_USED: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    /// The task that gives idle buffers back runs.
    static BUFFERS_TIMER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Batch buffers a thread keeps (a busy log uses two: one being written, one filling).
const BUFFERS_KEPT: usize = 2;
/// How long a thread keeps batch buffers nobody uses.
const BUFFERS_IDLE: Duration = Duration::from_secs(2);

/// A batch buffer of `PENDING_LIMIT` bytes: a kept one, or a new one.
fn take_buffer() -> BytesMut {
    BUFFERS_USED.set(Some(Instant::now()));
    BUFFERS
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| BytesMut::with_capacity(PENDING_LIMIT))
}

/// Keeps a batch buffer that came back for the next batch (up to [`BUFFERS_KEPT`]).
fn give_buffer(mut buf: BytesMut) {
    buf.clear();
    if buf.capacity() < PENDING_LIMIT {
        return;
    }
    BUFFERS.with_borrow_mut(|b| {
        if b.len() < BUFFERS_KEPT {
            b.push(buf);
        }
    });
    BUFFERS_USED.set(Some(Instant::now()));
    if !BUFFERS_TIMER.get() && tokio::runtime::Handle::try_current().is_ok() {
        BUFFERS_TIMER.set(true);
        // Ends with the buffers: an idle thread has no timer running.
        tokio::task::spawn_local(async {
            until_idle(&BUFFERS_USED, BUFFERS_IDLE).await;
            BUFFERS.with_borrow_mut(Vec::clear);
            BUFFERS_TIMER.set(false);
        });
    }
}

/// Waits until `idle` has passed since the instant in `last_used` (which later uses move on),
/// or at once when it holds none: how a thread's buffers are given back once nothing uses them.
pub(crate) async fn until_idle(
    last_used: &'static std::thread::LocalKey<std::cell::Cell<Option<Instant>>>,
    idle: Duration,
) {
    while let Some(due) = last_used.get().map(|t| t + idle) {
        if due <= Instant::now() {
            return;
        }
        tokio::time::sleep_until(due.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `sink` until `done` holds, as a domain's task would.
    async fn until(sink: &mut LogSink, done: impl Fn(&LogSink) -> bool) {
        std::future::poll_fn(|cx| {
            sink.poll(cx);
            if done(sink) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    #[test]
    fn bytes_go_through_the_disk_writer_in_order_and_within_the_room() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // A LocalSet, as an actix arbiter is: kept batch buffers are given back by a local task.
        tokio::task::LocalSet::new().block_on(&rt, async {
            let dir = tempfile::tempdir().unwrap();
            let path: Arc<Path> = dir.path().join("s.log").into();
            let cfg = RotateConfig {
                max_size: 1 << 20,
                max_backups: 8,
            };
            let mut sink = LogSink::open(path.clone(), cfg, false).unwrap();
            let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
            let mut sent = 0;
            while sent < data.len() {
                until(&mut sink, |s| s.room() > 0).await;
                let n = sink.room().min(data.len() - sent).min(300_000);
                sink.write(&data[sent..sent + n]);
                sent += n;
                // Never more than the limit held for the file system.
                assert!(sink.room() <= PENDING_LIMIT);
            }
            until(&mut sink, LogSink::is_flushed).await;
            let st = sink.stats();
            assert_eq!(st.bytes_in, data.len() as u64);
            assert_eq!(st.bytes_written, data.len() as u64);
            assert_eq!(st.dropped_disk, 0);
            let mut on_disk = Vec::new();
            for i in (0..8).rev() {
                if let Ok(b) = std::fs::read(crate::datapath::rotate::backup_path(&path, i)) {
                    on_disk.extend(b);
                }
            }
            on_disk.extend(std::fs::read(&path).unwrap());
            assert_eq!(on_disk, data);
            assert_eq!(
                sink.position().offset,
                std::fs::metadata(&path).unwrap().len()
            );
        });
    }

    /// A read that finds nothing (an idle pipe: EAGAIN) leaves the log holding no batch buffer
    /// and no activity: 10,000 idle domains must not hold 10,000 buffers of 256 KiB (each one
    /// costs a touched page and 256 KiB of address space).
    /// A log written to keeps its file open while busy and closes it once idle for
    /// `log_idle_close` (the default, 60 s, on tokio's paused clock); the next batch opens it
    /// again and nothing is lost.
    #[test]
    fn an_idle_log_closes_its_file_and_its_next_batch_opens_it_again() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async {
            let dir = tempfile::tempdir().unwrap();
            let path: Arc<Path> = dir.path().join("rest.log").into();
            let mut sink = LogSink::open(path.clone(), RotateConfig::default(), false).unwrap();
            let resting = |s: &LogSink| s.file.as_ref().is_some_and(RotatingFile::is_resting);
            assert!(resting(&sink), "opened resting");
            sink.write(b"first\n");
            until(&mut sink, LogSink::is_flushed).await;
            assert!(!resting(&sink), "open once written");
            // Idle, polled as the pump polls it: still open before the time is up.
            tokio::time::advance(DEFAULT_REST_AFTER / 2).await;
            std::future::poll_fn(|cx| {
                sink.poll_linger(cx);
                Poll::Ready(())
            })
            .await;
            assert!(!resting(&sink));
            tokio::time::advance(DEFAULT_REST_AFTER).await;
            let rests = std::future::poll_fn(|cx| {
                sink.poll_linger(cx);
                if sink.is_flushed() && resting(&sink) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            });
            tokio::time::timeout(Duration::from_secs(1), rests)
                .await
                .expect("the idle log's file closes");
            sink.write(b"second\n");
            until(&mut sink, LogSink::is_flushed).await;
            assert_eq!(std::fs::read(&path).unwrap(), b"first\nsecond\n");
            assert_eq!(sink.stats().bytes_written, 13);
            assert_eq!(sink.position().offset, 13);
        });
    }

    #[test]
    fn a_read_that_finds_nothing_leaves_the_log_holding_no_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let path: Arc<Path> = dir.path().join("idle.log").into();
        let mut sink = LogSink::open(path, RotateConfig::default(), false).unwrap();
        let r = sink.write_with(64 * 1024, |_buf| -> std::io::Result<usize> {
            Err(std::io::ErrorKind::WouldBlock.into())
        });
        assert!(r.is_err());
        assert!(
            sink.activity.is_none(),
            "an idle log allocated its activity"
        );
        // One that did get bytes keeps them in its batch until they are written.
        let n = sink.write_with(64 * 1024, |buf| {
            buf.extend_from_slice(b"twelve bytes");
            12
        });
        assert_eq!(n, 12);
        let act = sink.activity.as_ref().expect("bytes pending");
        assert_eq!(&act.pending[..], b"twelve bytes");
    }

    /// A stored log's sink takes its tally slot at its first read (it holds nothing then),
    /// starting it from its own counters, and counts every read, write and drop there: the
    /// slot's `read − written − dropped` is what the sink holds.
    #[test]
    fn a_sink_counts_into_its_tally_slot_from_its_own_counters() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async {
            let dir = tempfile::tempdir().unwrap();
            // The only test of this process that maps the daemon's tally.
            let (t, _) = tally::open(&dir.path().join("logd.sock.tally")).unwrap();
            let path: Arc<Path> = dir.path().join("s.log").into();
            let mut sink = LogSink::open(path.clone(), RotateConfig::default(), false).unwrap();
            // As after a crash: counters carried on.
            sink.stats = SinkStats {
                bytes_in: 500,
                bytes_written: 400,
                dropped_disk: 100,
            };
            t.assign(&path, 77).unwrap();
            let lease = t.lookup(&path).unwrap();
            sink.write(b"twelve bytes");
            let v = lease.values();
            assert_eq!((v.owner, v.read, v.written, v.dropped), (77, 512, 400, 100));
            assert_eq!(tally::loss(&v, None).exact(), Some(12), "held by the sink");
            until(&mut sink, LogSink::is_flushed).await;
            let v = lease.values();
            assert_eq!((v.read, v.written, v.dropped), (512, 412, 100));
            assert_eq!(tally::loss(&v, None).exact(), Some(0));
            // A read into a buffer of the caller's, marked before it: a bracket until counted.
            sink.reading(4096);
            let s = tally::loss(&lease.values(), None);
            assert_eq!((s.lost_at_least, s.lost_at_most), (0, 4096));
            sink.write(b"abc");
            assert_eq!(tally::loss(&lease.values(), None).exact(), Some(3));
            sink.reading(4096);
            sink.read_nothing();
            assert_eq!(tally::loss(&lease.values(), None).exact(), Some(3));
            until(&mut sink, LogSink::is_flushed).await;
            assert_eq!(sink.stats().bytes_written, 415);
            assert_eq!(lease.values().written, 415);
            // A log without a slot never looks again until the bindings change.
            let other: Arc<Path> = dir.path().join("o.log").into();
            let mut o = LogSink::open(other, RotateConfig::default(), false).unwrap();
            o.write(b"x");
            let act = o.activity.as_ref().unwrap();
            assert!(act.tally.is_none());
            assert_eq!(act.tally_gen, tally::generation());
        });
    }

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
