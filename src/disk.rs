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
use std::sync::{mpsc, Arc, Mutex, Weak};

use bytes::BytesMut;
use tokio::sync::oneshot;

use crate::rotate::{RotateError, RotatingFile};

/// What a writer does with a log's file.
pub struct Job {
    pub file: RotatingFile,
    pub data: BytesMut,
    /// The file failed earlier and its retry is due: reopen it first.
    pub reopen: bool,
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
}

/// The writer thread of one file system.
pub struct Disk {
    tx: Mutex<mpsc::Sender<Job>>,
    dev: u64,
}

type Writers = HashMap<u64, Weak<Disk>>;
/// The writers running, by device: a writer lives while a log on its file system does.
static WRITERS: Mutex<Option<Writers>> = Mutex::new(None);

impl Disk {
    /// The writer of device `dev`, started if none runs.
    pub fn of(dev: u64) -> Arc<Disk> {
        let mut writers = WRITERS.lock().unwrap_or_else(|e| e.into_inner());
        let table = writers.get_or_insert_with(HashMap::new);
        if let Some(d) = table.get(&dev).and_then(Weak::upgrade) {
            return d;
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name(format!("logd-disk-{dev:x}"))
            .spawn(move || run(rx));
        if let Err(e) = spawned {
            // Without a thread the jobs are done by the caller (see `submit`).
            tracing::error!(dev, cause = %e, "cannot start a disk writer thread");
        }
        let d = Arc::new(Disk {
            tx: Mutex::new(tx),
            dev,
        });
        table.insert(dev, Arc::downgrade(&d));
        d
    }

    /// Hands `job` to the writer. If the writer is gone (it could not be started), the job is
    /// done here and now.
    pub fn submit(&self, job: Job) {
        let sent = self.tx.lock().unwrap_or_else(|e| e.into_inner()).send(job);
        if let Err(mpsc::SendError(job)) = sent {
            work(job);
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let mut writers = WRITERS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(table) = writers.as_mut() {
            if table.get(&self.dev).is_some_and(|w| w.strong_count() == 0) {
                table.remove(&self.dev);
            }
        }
        // Dropping the sender ends the thread once its queue is done.
    }
}

/// A writer thread: jobs in order until every sender is gone.
fn run(rx: mpsc::Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        work(job);
    }
}

/// Does one job: reopens the file if asked, writes the data, and sends everything back. A
/// receiver that has gone (its log closed meanwhile) drops the file here.
fn work(job: Job) {
    let Job {
        mut file,
        mut data,
        reopen,
        done,
    } = job;
    let (mut written, mut error, mut reopen_failed) = (0, None, false);
    if reopen && !file.is_healthy() {
        if let Err(e) = file.reopen() {
            error = Some(e);
            reopen_failed = true;
        }
    }
    if !reopen_failed {
        match file.write(&data) {
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
    });
}
