//! The guest side of a console: how logd reaches the guest's chardev (listen, connect, or a
//! socketpair handed to the caller), reading its output into one shared chunk at a time and
//! fanning it out, and writing the console's input buffer to it. The guest comes and goes; the
//! console waits for it.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use logd_protocol::admin::EventKind;
use tokio::net::{UnixListener, UnixStream};
use tokio::time::Sleep;

use super::{Console, CONNECT_RETRY, FLUSH_BATCH, READS_PER_POLL, READ_CHUNK};
use crate::serve::events;

thread_local! {
    /// The read buffer of this thread's consoles. Each read is split off and frozen into a
    /// `Bytes` that the log, the replay ring and the subscribers share.
    static READ_BUF: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// The guest side, with paths resolved.
#[derive(Debug, Clone)]
pub(crate) enum GuestPlan {
    Listen(PathBuf),
    Connect(PathBuf),
    Fd,
}

/// How the guest is reached, and the live connection if any.
pub(super) enum GuestMode {
    Listen {
        listener: UnixListener,
        path: PathBuf,
    },
    Connect {
        path: PathBuf,
        retry: Pin<Box<Sleep>>,
    },
    Fd,
}

impl Console {
    pub(super) fn poll_guest_connect(&mut self, cx: &mut Context<'_>) {
        if self.guest.is_some() {
            // Listen mode: a second guest connection while one is live is refused.
            if let GuestMode::Listen { listener, path } = &self.mode {
                while let Poll::Ready(Ok((s, _))) = listener.poll_accept(cx) {
                    tracing::warn!(path = %path.display(), "refused a second guest connection");
                    drop(s);
                }
            }
            return;
        }
        match &mut self.mode {
            GuestMode::Listen { listener, path } => match listener.poll_accept(cx) {
                Poll::Ready(Ok((s, _))) => {
                    tracing::info!(path = %path.display(), "guest connected");
                    self.guest = Some(s);
                }
                Poll::Ready(Err(e)) => {
                    tracing::warn!(cause = %e, "accepting the guest failed")
                }
                Poll::Pending => return,
            },
            GuestMode::Connect { path, retry } => {
                if retry.as_mut().poll(cx).is_pending() {
                    return;
                }
                match connect_unix(path) {
                    Ok(s) => {
                        tracing::info!(path = %path.display(), "connected to the guest");
                        self.guest = Some(s);
                    }
                    Err(e) => {
                        tracing::trace!(cause = %e, "guest not there yet");
                        retry
                            .as_mut()
                            .reset(tokio::time::Instant::now() + CONNECT_RETRY);
                        let _ = retry.as_mut().poll(cx);
                        return;
                    }
                }
            }
            GuestMode::Fd => return,
        }
        self.stats.guest_connects += 1;
        if let (Some(hook), Some(g)) = (&self.on_guest, &self.guest) {
            use std::os::fd::AsFd;
            hook(Some(g.as_fd()));
        }
        events::emit(|| EventKind::GuestConnected {
            domain: self.cfg.domain.name.clone(),
            console: self.cfg.name.clone(),
        });
        self.guest_notice(true);
        // The new connection may already have data.
        cx.waker().wake_by_ref();
    }

    pub(super) fn guest_gone(&mut self, why: &str) {
        self.guest = None;
        if let Some(hook) = &self.on_guest {
            hook(None);
        }
        events::emit(|| EventKind::GuestDisconnected {
            domain: self.cfg.domain.name.clone(),
            console: self.cfg.name.clone(),
            reason: why.to_owned(),
        });
        tracing::info!(reason = why, "guest side closed; the console waits for it");
        self.guest_notice(false);
        if let GuestMode::Connect { retry, .. } = &mut self.mode {
            retry
                .as_mut()
                .reset(tokio::time::Instant::now() + CONNECT_RETRY);
        }
    }

    /// Moves guest output to the log, the replay ring and the subscribers. Returns true when
    /// the budget ran out with data still coming.
    pub(super) fn poll_guest_output(&mut self, cx: &mut Context<'_>) -> bool {
        // Read since the subscribers were last flushed (the caller flushes them after this).
        let mut unflushed = 0;
        for _ in 0..READS_PER_POLL {
            if self.guest.is_none() {
                return false;
            }
            // A log whose file system is slower than the guest holds the guest back (TCP
            // backpressure on the chardev), up to the stall bound; then it drops and counts,
            // and the subscribers still get every byte.
            if self.sink.poll_room(cx).is_pending() {
                return false;
            }
            // No more than the log has room for (all of a chunk when it drops anyway).
            let want = match self.sink.room() {
                0 => READ_CHUNK,
                room => room.min(READ_CHUNK),
            };
            let Some(guest) = &self.guest else {
                return false;
            };
            match guest.poll_read_ready(cx) {
                Poll::Pending => return false,
                Poll::Ready(Err(_)) => {
                    self.guest_gone("poll error");
                    return false;
                }
                Poll::Ready(Ok(())) => {}
            }
            // Read into the thread's buffer, then given to the log: marked in flight first.
            self.sink.reading(want);
            let res = READ_BUF.with_borrow_mut(|buf| {
                if buf.capacity() - buf.len() < READ_CHUNK {
                    buf.reserve(4 * READ_CHUNK);
                }
                // One chunk at a time, so it reaches the subscribers before the next is read.
                match guest.try_read_buf(&mut bytes::BufMut::limit(&mut *buf, want)) {
                    Ok(0) => Ok(None),
                    Ok(_) => Ok(Some(buf.split().freeze())),
                    Err(e) => Err(e),
                }
            });
            if !matches!(res, Ok(Some(_))) {
                self.sink.read_nothing();
            }
            match res {
                Ok(Some(chunk)) => {
                    unflushed += chunk.len();
                    self.output(chunk);
                    // A batch goes to the subscribers now: their queues hold only what their
                    // sockets cannot take yet, not a whole poll's worth of reads.
                    if unflushed >= FLUSH_BATCH {
                        unflushed = 0;
                        for s in &mut self.subs {
                            s.poll_flush(cx);
                        }
                    }
                }
                Ok(None) => {
                    self.guest_gone("EOF");
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::info!(cause = %e, "guest read failed");
                    self.guest_gone("read error");
                    return false;
                }
            }
        }
        true
    }

    pub(super) fn poll_guest_input(&mut self, cx: &mut Context<'_>) {
        while !self.input.is_empty() {
            let Some(guest) = &self.guest else { return };
            match guest.poll_write_ready(cx) {
                Poll::Pending => return,
                Poll::Ready(Err(_)) => {
                    self.guest_gone("write poll error");
                    return;
                }
                Poll::Ready(Ok(())) => {}
            }
            match guest.try_write(&self.input) {
                Ok(n) => self.input.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.guest_gone("write error");
                    return;
                }
            }
        }
    }
}

/// Connects to the guest's socket without ever blocking the thread: a full backlog (the
/// guest's chardev busy, or a listener that never accepts) is `EAGAIN`, tried again later,
/// where a blocking `connect(2)` would hold every domain of this worker.
fn connect_unix(path: &Path) -> io::Result<UnixStream> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // AF_UNIX never answers EINPROGRESS: the connection is made or refused now.
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    UnixStream::from_std(std::os::unix::net::UnixStream::from(fd))
}
