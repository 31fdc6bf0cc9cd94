//! A log stream: one pipe's read end feeding one rotating file.
//!
//! A stream is owned by its domain actor and driven from that actor's thread: the domain polls
//! [`LogStream::poll_pump`] from a future spawned in its own context, so a chunk goes from the
//! pipe to the file with no message in between. Reads go into one buffer per thread (not per
//! stream), so an idle stream holds no buffer at all.
//!
//! The stream never closes the pipe because of the disk: it writes through a
//! [`LogSink`](crate::datapath::sink::LogSink), which drops and counts what the file cannot take, and the
//! stream keeps draining the pipe.
#![allow(unsafe_code)] // six blocks: the read buffer's mapping (map, two views, unmap) and reading straight into a batch (read, set_len)

use std::cell::{Cell, RefCell};
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use logd_protocol::Position;
use std::os::fd::AsFd;

use crate::datapath::poller::WatchedPipe;

use crate::datapath::budget::Yield;
use crate::datapath::pipe::{self, PipeError, MAX_PIPE_SIZE};
use crate::datapath::rotate::RotateError;
use crate::datapath::sink::LogSink;

/// Bytes read from a pipe at once: the largest pipe, so one read empties a full one.
pub const READ_CHUNK: usize = MAX_PIPE_SIZE;
/// Reads per wake-up before the pump yields to the other streams of its thread (each read takes
/// up to a pipe's worth, 1 MiB).
const READS_PER_POLL: usize = 4;

thread_local! {
    /// The one read buffer of this thread, shared by every stream it drives. Allocated at the
    /// first read, and given back after [`BUFFER_IDLE`] without a read: a flood's megabyte does
    /// not stay resident once the thread's streams are idle again.
    static READ_BUF: RefCell<Option<MappedBuf>> = const { RefCell::new(None) };
    /// When this thread last read into its buffer.
    static LAST_READ: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// How long a thread's read buffer outlives the thread's last read.
const BUFFER_IDLE: Duration = Duration::from_secs(2);

/// Bytes read at once when the thread's read buffer cannot be mapped: a stalled log then drains
/// its pipe in smaller reads, and is never left unread.
const FALLBACK_CHUNK: usize = 16 * 1024;

/// Reads `pipe` into this thread's read buffer (mapping it if it was given back) and hands
/// what came to `take`. Returns what read(2) returned. Without memory for the buffer, the read
/// goes into a small one on the stack instead: a guest's pipe is never closed for want of it.
fn read_into_thread_buf(pipe: &impl AsFd, take: impl FnOnce(&[u8])) -> std::io::Result<usize> {
    READ_BUF.with_borrow_mut(|b| {
        if b.is_none() {
            match MappedBuf::new(READ_CHUNK) {
                Ok(buf) => {
                    give_back_when_idle();
                    *b = Some(buf);
                }
                Err(e) => {
                    tracing::warn!(cause = %e, bytes = READ_CHUNK, "cannot map a read buffer; reading in {FALLBACK_CHUNK}-byte pieces");
                    let mut small = [0u8; FALLBACK_CHUNK];
                    let n = read(pipe, &mut small)?;
                    take(&small[..n]);
                    return Ok(n);
                }
            }
        }
        let buf = b.as_mut().expect("mapped just above");
        LAST_READ.set(Some(Instant::now()));
        let n = read(pipe, buf.as_mut_slice())?;
        take(&buf.as_slice()[..n]);
        Ok(n)
    })
}

/// A read buffer mapped straight from the kernel, so that freeing it gives its pages back
/// (from the allocator, a freed megabyte may stay resident in the thread's arena).
struct MappedBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

impl MappedBuf {
    fn new(len: usize) -> Result<MappedBuf, nix::Error> {
        use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
        #[cfg(test)]
        if NO_MAPPING.get() {
            return Err(nix::Error::ENOMEM);
        }
        let size = std::num::NonZeroUsize::new(len).expect("a read buffer is not empty");
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing
        // aliases nothing; it is unmapped exactly once, in Drop.
        let mapped = unsafe {
            mmap_anonymous(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        };
        mapped.map(|p| MappedBuf { ptr: p.cast(), len })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable, owned by self; the
        // borrow of self keeps it mapped and unaliased for the slice's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: as above, shared.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for MappedBuf {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `new` with this length and is unmapped only here.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr.cast(), self.len) };
    }
}

/// Starts a task on this thread that frees its read buffer once no read has used it for
/// [`BUFFER_IDLE`]. It sleeps until that moment (moved on by later reads), and ends with the
/// buffer: an idle daemon has no timer running.
fn give_back_when_idle() {
    actix_rt::spawn(async {
        crate::datapath::sink::until_idle(&LAST_READ, BUFFER_IDLE).await;
        tracing::debug!("read buffer idle; given back");
        READ_BUF.with_borrow_mut(|b| *b = None);
        LAST_READ.set(None);
    });
}

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("log {path}: {source}")]
    Pipe {
        path: std::path::PathBuf,
        source: PipeError,
    },
    #[error("log {path}: cannot register the pipe with the event loop: {source}")]
    Register {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] RotateError),
}

/// Counters of a stream's pipe (its file's counters are the sink's).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamStats {
    /// Times the pipe was enlarged.
    pub pipe_grows: u16,
    /// Times the kernel refused to enlarge the pipe.
    pub pipe_grow_refused: u16,
}

/// One pipe and its file.
pub struct LogStream {
    pipe: WatchedPipe,
    pipe_size: u32,
    sink: LogSink,
    stats: StreamStats,
    yielding: Yield,
    /// Every writer has closed the pipe: the stream closes once its sink is flushed.
    eof: bool,
}

/// How far [`LogStream::poll_settled`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The pipe is empty (or at EOF) and the file has every byte.
    Done,
    /// The file system has not finished a write for the stall bound.
    Stalled,
}

/// What a drain found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drained {
    /// The pipe is empty for now.
    Empty,
    /// Every writer has gone.
    Eof,
    /// The sink has no room for more yet.
    Full,
}

impl LogStream {
    /// A stream for a sink whose file is open already (by a disk writer: an open can block on
    /// its file system), and its pipe. Must run on the thread that will drive the stream (the
    /// pipe registers with that thread's event loop). Returns the stream and the pipe's write
    /// end, for the client.
    pub fn with_sink(sink: LogSink) -> Result<(LogStream, OwnedFd), StreamError> {
        let path = sink.path();
        let (r, w, size) = pipe::create().map_err(|source| StreamError::Pipe {
            path: path.to_owned(),
            source,
        })?;
        let pipe = register(r, path)?;
        Ok((
            LogStream {
                pipe,
                pipe_size: size as u32,
                sink,
                stats: StreamStats::default(),
                yielding: Yield::default(),
                eof: false,
            },
            w,
        ))
    }

    /// A stream for a pipe that outlived the process that read it (from systemd's fd store,
    /// after a crash), and its sink (its file opened again by a disk writer). Must run on the
    /// thread that will drive the stream. The guest still holds the write end.
    pub(crate) fn adopt(sink: LogSink, fd: OwnedFd) -> Result<LogStream, StreamError> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let path = sink.path();
        let pipe_error = |e: nix::Error| StreamError::Pipe {
            path: path.to_owned(),
            source: PipeError::Configure(e),
        };
        // O_NONBLOCK is the open file's, so systemd's copy has it already; set it anyway, as
        // the pump must never block.
        let flags = fcntl(&fd, FcntlArg::F_GETFL).map_err(pipe_error)?;
        fcntl(
            &fd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )
        .map_err(pipe_error)?;
        let size = fcntl(&fd, FcntlArg::F_GETPIPE_SZ).map_err(pipe_error)?;
        let pipe = register(fd, path)?;
        Ok(LogStream {
            pipe,
            pipe_size: size.max(0) as u32,
            sink,
            stats: StreamStats::default(),
            yielding: Yield::default(),
            eof: false,
        })
    }

    /// Describes the stream for a re-exec (pipe and file marked to be carried). The pipe is
    /// not drained first: the caller only waits until what logd has read is in the file, and
    /// what is still in the pipe is the next process's to read.
    pub fn export(
        &self,
        carrier: &mut crate::handover::state::Carrier,
    ) -> crate::handover::state::PipeState {
        crate::handover::state::PipeState {
            fd: carrier.fd(&self.pipe),
            pipe_size: self.pipe_size,
            grow_refused: self.stats.pipe_grow_refused > 0,
            pipe_grows: self.stats.pipe_grows.into(),
            pipe_grow_refused: self.stats.pipe_grow_refused.into(),
            sink: self.sink.export(carrier),
        }
    }

    /// The stream as a previous process left it, with its inherited pipe and file (see
    /// [`LogSink::restore`](crate::datapath::sink::LogSink::restore) for `staleness`). Must run
    /// on the thread that will drive it.
    pub fn restore(
        state: &crate::handover::state::PipeState,
        path: std::sync::Arc<Path>,
        inherited: &crate::handover::state::Inherited,
        staleness: crate::handover::state::Staleness,
    ) -> Result<LogStream, RestoreError> {
        let sink =
            crate::datapath::sink::LogSink::restore(&state.sink, path, inherited, staleness)?;
        let fd = inherited.take(&state.fd)?;
        Ok(LogStream {
            pipe: register(fd, &state.sink.path)?,
            pipe_size: state.pipe_size,
            sink,
            stats: StreamStats {
                pipe_grows: state.pipe_grows.try_into().unwrap_or(u16::MAX),
                // A refusal is what stops further attempts: at least one if it was refused.
                pipe_grow_refused: state
                    .pipe_grow_refused
                    .max(state.grow_refused.into())
                    .try_into()
                    .unwrap_or(u16::MAX),
            },
            yielding: Yield::default(),
            eof: false,
        })
    }

    pub fn path(&self) -> &Path {
        self.sink.path()
    }

    pub fn sink(&self) -> &LogSink {
        &self.sink
    }

    /// The pipe's read end (for systemd's fd store, which keeps a copy).
    pub(crate) fn pipe_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.pipe.as_fd()
    }

    /// The stream as the admin socket shows it.
    pub fn snapshot(&mut self) -> logd_protocol::admin::StreamSnapshot {
        use logd_protocol::admin::{GuestState, StreamKind};
        self.sink.snapshot(StreamKind::Stdio, GuestState::Connected)
    }

    /// The end of the active file. Call [`LogStream::drain`] first to include the pipe's bytes.
    pub fn position(&self) -> Position {
        self.sink.position()
    }

    /// Moves bytes from the pipe to the sink while it has room, until the pipe is empty or
    /// every writer is gone. Returns `Ready(())` once the stream should be closed: at EOF, when
    /// its file has every byte (or its file system has stalled).
    ///
    /// While the sink has no room (its file system is slower than the guest) the pipe is not
    /// read, so the guest waits as with any pipe; past the stall bound the sink drops and
    /// counts what is read, so no guest waits longer than that for its disk.
    pub fn poll_pump(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielding.poll(cx).is_pending() {
            return Poll::Pending;
        }
        if self.eof {
            self.sink.poll(cx);
            return if self.sink.is_flushed() || self.sink.is_stalled() {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        }
        let mut reads = 0;
        while reads < READS_PER_POLL {
            if self.sink.poll_room(cx).is_pending() {
                return Poll::Pending;
            }
            if self.pipe.poll_ready(cx).is_pending() {
                // What was read goes to the file as one batch (a small one after a moment).
                self.sink.poll_linger(cx);
                return Poll::Pending;
            }
            match self.read_once() {
                Ok(0) => {
                    self.eof = true;
                    return self.poll_pump(cx);
                }
                Ok(n) => {
                    self.maybe_grow(n);
                    reads += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.pipe.clear_ready(cx),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(path = %self.path().display(), cause = %e, "pipe read failed; closing the log");
                    self.eof = true;
                    return self.poll_pump(cx);
                }
            }
        }
        // Budget spent with data still flowing: send the batch, let the thread's other streams
        // run, then resume.
        self.sink.poll(cx);
        self.yielding.start(cx);
        Poll::Pending
    }

    /// One read of the pipe into the sink: straight into its pending buffer, up to its room;
    /// when its file system has stalled, into this thread's buffer, to be dropped and counted.
    fn read_once(&mut self) -> std::io::Result<usize> {
        let room = self.sink.room();
        if room == 0 {
            let sink = &mut self.sink;
            // Read into the thread's buffer, then given to the sink: marked in flight first.
            sink.reading(READ_CHUNK);
            let res = read_into_thread_buf(&self.pipe, |data| sink.write(data));
            if !matches!(res, Ok(n) if n > 0) {
                self.sink.read_nothing();
            }
            return res;
        }
        let pipe = &self.pipe;
        let max = room.min(READ_CHUNK);
        self.sink.write_with(max, |buf| read_append(pipe, buf, max))
    }

    /// Reads what the pipe holds into the sink, without waiting, as far as the sink has room.
    fn drain_now(&mut self) -> Drained {
        if self.eof {
            return Drained::Eof;
        }
        loop {
            if self.sink.room() == 0 && !self.sink.is_stalled() {
                return Drained::Full;
            }
            match self.read_once() {
                Ok(0) => {
                    self.eof = true;
                    return Drained::Eof;
                }
                Ok(n) => self.maybe_grow(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Drained::Empty, // EAGAIN: empty for now
            }
        }
    }

    /// `Ready` once everything the pipe held when first asked is in the file (or the file
    /// system has stalled). The task is woken as the sink's writes come back.
    pub fn poll_settled(&mut self, cx: &mut Context<'_>) -> Poll<Settled> {
        loop {
            self.sink.poll(cx);
            let drained = self.drain_now();
            self.sink.poll(cx);
            if self.sink.is_stalled() {
                return Poll::Ready(Settled::Stalled);
            }
            match drained {
                Drained::Full if self.sink.room() > 0 => continue,
                Drained::Full => return Poll::Pending,
                _ if self.sink.is_flushed() => return Poll::Ready(Settled::Done),
                _ => return Poll::Pending,
            }
        }
    }

    /// Whether every writer has gone (reading the pipe first), and whether the file has every
    /// byte yet: `(eof, flushed)`. Registers no wake-up: the pump stays the one woken.
    pub fn closable(&mut self) -> (bool, bool) {
        self.sink.collect();
        let drained = self.drain_now();
        self.sink.collect();
        (
            drained == Drained::Eof,
            self.sink.is_flushed() || self.sink.is_stalled(),
        )
    }

    /// Appends a message (from `AppendLog`) after everything already in the pipe (as far as
    /// the sink has room; the caller waits for [`poll_settled`](Self::poll_settled)).
    pub fn append(&mut self, message: &[u8]) {
        self.drain_now();
        self.sink.write(message);
    }

    pub fn sink_mut(&mut self) -> &mut LogSink {
        &mut self.sink
    }

    /// After a read of `n` bytes: the pipe's first data gives it the default size, and a read
    /// that found it full enlarges it.
    fn maybe_grow(&mut self, n: usize) {
        let first_data = (self.pipe_size as usize) < pipe::DEFAULT_PIPE_SIZE;
        if (n < self.pipe_size as usize && !first_data)
            || self.stats.pipe_grow_refused > 0
            || self.pipe_size as usize >= MAX_PIPE_SIZE
        {
            return;
        }
        match pipe::grow(&self.pipe, self.pipe_size as usize) {
            Ok(size) => {
                tracing::debug!(path = %self.path().display(), size, first_data, "pipe enlarged");
                self.pipe_size = size as u32;
                self.stats.pipe_grows = self.stats.pipe_grows.saturating_add(1);
            }
            Err(e) => {
                tracing::info!(path = %self.path().display(), cause = %e, size = self.pipe_size, "kernel refused to enlarge a full pipe; going on at its size");
                self.stats.pipe_grow_refused = self.stats.pipe_grow_refused.saturating_add(1);
            }
        }
    }
}

/// Watches a pipe's read end from this thread's poller.
fn register(fd: OwnedFd, path: &Path) -> Result<WatchedPipe, StreamError> {
    WatchedPipe::new(fd).map_err(|source| StreamError::Register {
        path: path.to_owned(),
        source,
    })
}

/// Why a carried stream could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    State(#[from] crate::handover::state::StateError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("cannot register an inherited socket of {what}: {source}")]
    Register {
        what: String,
        source: std::io::Error,
    },
}

/// One `read(2)` into `buf`.
fn read(fd: impl AsFd, buf: &mut [u8]) -> std::io::Result<usize> {
    nix::unistd::read(fd, buf).map_err(std::io::Error::from)
}

/// One `read(2)` of at most `max` bytes into the spare capacity of `buf`, which grows by what
/// was read: no zeroing, no copy.
fn read_append(fd: impl AsFd, buf: &mut bytes::BytesMut, max: usize) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let spare = buf.spare_capacity_mut();
    let len = spare.len().min(max);
    // SAFETY: read(2) writes at most `len` bytes at the start of the spare capacity, which is
    // valid for `len` bytes and owned by `buf` for the call.
    let n = unsafe { nix::libc::read(fd.as_fd().as_raw_fd(), spare.as_mut_ptr().cast(), len) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the first `n` bytes of the spare capacity were just written by read(2).
    unsafe { buf.set_len(buf.len() + n as usize) };
    Ok(n as usize)
}

#[cfg(test)]
thread_local! {
    /// Makes this thread's read buffer fail to map, as it would without memory.
    static NO_MAPPING: Cell<bool> = const { Cell::new(false) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without memory for the 1 MiB read buffer, a stalled log's pipe is still drained (in
    /// smaller reads): the thread does not panic, and the guest's pipe is not closed.
    #[test]
    fn a_read_buffer_that_cannot_be_mapped_still_drains_the_pipe() {
        NO_MAPPING.set(true);
        let (r, w) = nix::unistd::pipe().unwrap();
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
        assert_eq!(nix::unistd::write(&w, &data).unwrap(), data.len());
        let mut got = Vec::new();
        while got.len() < data.len() {
            let n = read_into_thread_buf(&r, |d| got.extend_from_slice(d)).unwrap();
            assert!(n > 0 && n <= FALLBACK_CHUNK, "{n}");
        }
        assert_eq!(got, data);
        assert!(READ_BUF.with_borrow(Option::is_none), "nothing was mapped");
        NO_MAPPING.set(false);
    }
}
