//! Disk writers: the threads that touch log files, one per file system.
//!
//! No `write(2)`, `rename(2)` or `open(O_CREAT)` of a log runs on a worker thread: any of them
//! can block for as long as the file system wants (a frozen file system blocks them until it
//! thaws; `pwritev2(RWF_NOWAIT)` is no way out, see docs/DECISIONS.md). A log's
//! [`RotatingFile`] is handed to the writer thread of its file system with the bytes to write,
//! and comes back with the outcome through a oneshot channel, whose completion wakes the log's
//! domain. A stalled file system so blocks only its own thread, and only the logs on it wait.
//!
//! The queue of a writer holds at most one job per log (a log's file is in one place at a
//! time), so it is bounded by the number of logs on that file system.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};

use bytes::BytesMut;
use tokio::sync::oneshot;

use crate::datapath::rotate::{OutsideChange, RotateError, RotatingFile};

/// What a writer does with a log's file.
pub struct Job {
    pub file: RotatingFile,
    pub data: BytesMut,
    /// The file failed earlier and its retry is due: reopen it first.
    pub reopen: bool,
    /// No data: the log has been idle long enough, close its file until the next write
    /// ([`RotatingFile::rest`]; a `close(2)` may block on some file systems too).
    pub rest: bool,
    /// The log's tally slot: each `write(2)` is counted there as it returns.
    pub(crate) tally: Option<std::sync::Arc<crate::datapath::tally::Lease>>,
    pub done: oneshot::Sender<Done>,
}

/// A job's file, its buffer (emptied, for reuse) and what happened.
pub struct Done {
    pub file: RotatingFile,
    pub data: BytesMut,
    /// Bytes of the job's data that reached a file.
    pub written: usize,
    /// Why the rest did not (the file is then closed until a reopen).
    pub error: Option<RotateError>,
    /// The reopen before the write failed (nothing was written).
    pub reopen_failed: bool,
    /// The file had been changed by another process (truncated, appended to) before the
    /// write: it went on from its real end ([`RotatingFile::resync`]).
    pub outside: Option<OutsideChange>,
}

/// One writer thread of a file system. Once started it stays (there are a few: file systems
/// times cores), so opening a log never waits for a thread to start.
pub struct Disk {
    tx: Mutex<mpsc::Sender<Task>>,
}

/// What a writer runs.
type Task = Box<dyn FnOnce() + Send>;

type Writers = HashMap<(u64, usize), Arc<Disk>>;

/// Writer threads per file system: as many as cores, so that the logs of one file system are
/// written in parallel as they were read. A log keeps the one it was given.
fn writers_per_device() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Spreads logs over the writers of their file system.
static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// The writers running, by device: a writer lives while a log on its file system does.
static WRITERS: Mutex<Option<Writers>> = Mutex::new(None);

impl Disk {
    /// A writer of device `dev` for a new log (the writers of a device take its logs in
    /// turn), started if it does not run.
    pub fn of(dev: u64) -> Arc<Disk> {
        let slot = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % writers_per_device();
        let key = (dev, slot);
        let mut writers = WRITERS.lock().unwrap_or_else(|e| e.into_inner());
        let table = writers.get_or_insert_with(HashMap::new);
        if let Some(d) = table.get(&key) {
            return d.clone();
        }
        let (tx, rx) = mpsc::channel::<Task>();
        let spawned = std::thread::Builder::new()
            .name(format!("logd-disk-{slot}"))
            .spawn(move || run(rx));
        if let Err(e) = spawned {
            // Without a thread the jobs are done by the caller (see `submit`).
            tracing::error!(dev, cause = %e, "cannot start a disk writer thread");
        }
        let d = Arc::new(Disk { tx: Mutex::new(tx) });
        table.insert(key, d.clone());
        d
    }

    /// Hands `job` to the writer.
    pub fn submit(&self, job: Job) {
        self.send(Box::new(move || work(job)));
    }

    /// Runs `f` on the writer (an open or an append, which may block on the file system too);
    /// its result comes back through the receiver.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        self.send(Box::new(move || {
            let _ = tx.send(f());
        }));
        rx
    }

    /// If the writer is gone (it could not be started), the task runs here and now.
    fn send(&self, task: Task) {
        let sent = self.tx.lock().unwrap_or_else(|e| e.into_inner()).send(task);
        if let Err(mpsc::SendError(task)) = sent {
            task();
        }
    }
}

/// The device of the file system `path` is (or will be) on: its directory's.
pub fn device_of(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    path.parent()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.dev())
}

/// A writer thread: tasks in order, for the life of the process.
fn run(rx: mpsc::Receiver<Task>) {
    while let Ok(task) = rx.recv() {
        task();
    }
}

/// Does one job: reopens the file if asked, writes the data, and sends everything back. A
/// receiver that has gone (its log closed meanwhile) drops the file here.
fn work(job: Job) {
    let Job {
        mut file,
        mut data,
        reopen,
        rest,
        tally,
        done,
    } = job;
    let (mut written, mut error, mut reopen_failed, mut outside) = (0, None, false, None);
    if rest {
        file.rest();
    } else if reopen && !file.is_healthy() {
        if let Err(e) = file.reopen() {
            error = Some(e);
            reopen_failed = true;
        }
    } else if file.is_resting() {
        // Opened again by name for this batch: what happened to it meanwhile shows now.
        match file.wake() {
            Ok(change) => outside = change,
            Err(e) => error = Some(e),
        }
    } else {
        // One fstat per batch (a reopen has just read the size).
        outside = file.resync();
    }
    if error.is_none() && !rest {
        match file.write_counted(&data, tally.as_deref().map(|l| &**l)) {
            Ok(()) => written = data.len(),
            Err(f) => {
                written = f.written;
                error = Some(f.error);
            }
        }
    }
    data.clear();
    let _ = done.send(Done {
        file,
        data,
        written,
        error,
        reopen_failed,
        outside,
    });
}
