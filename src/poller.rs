//! Readiness of log pipes: one epoll per worker thread, watched by one task.
//!
//! tokio would do this too, but at a price paid by every idle domain: each fd registered with
//! tokio gets a `ScheduledIo` of 256 bytes (it is aligned to 128), and an `AsyncFd` of 32. With
//! thousands of guests, most pipes are idle, so logd keeps its own small table instead: a pipe
//! costs one 24-byte slot here and 8 bytes in its stream ([`WatchedPipe`]). The epoll itself is
//! registered with tokio once per thread, and its task wakes the pumps whose pipes have data.
//!
//! Pipes are watched edge-triggered. A slot is marked ready when the kernel reports it and stays
//! ready until the pump reads `EAGAIN` and says so ([`WatchedPipe::clear_ready`]); a write after
//! that raises a new edge. A new registration starts ready, so bytes written before it are read.
//!
//! Everything here is per thread: a pipe is registered, polled and dropped on the thread of the
//! domain that owns it (actors do not move between threads). Events carry a slot's generation,
//! so a stale event for a reused slot is ignored.
#![allow(unsafe_code)] // registering the epoll with tokio

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::task::{Context, Poll, Waker};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use tokio::io::unix::AsyncFd;

/// Events taken from the epoll per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 256;

/// One watched pipe's state.
struct Slot {
    /// The pump to wake when the pipe becomes readable.
    waker: Option<Waker>,
    ready: bool,
    /// Tells this slot's pipe from an earlier pipe in the same slot.
    generation: u32,
    in_use: bool,
}

/// This thread's epoll and its table.
struct Poller {
    epoll: std::rc::Rc<Epoll>,
    slots: Vec<Slot>,
    /// Free slots, reused before the table grows.
    free: Vec<u32>,
}

thread_local! {
    static POLLER: RefCell<Option<Poller>> = const { RefCell::new(None) };
}

fn token(key: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(key)
}

impl Poller {
    /// This thread's poller, created (and its task spawned) at the first registration. Must be
    /// called inside the thread's tokio runtime (a worker arbiter).
    fn with<R>(f: impl FnOnce(&mut Poller) -> io::Result<R>) -> io::Result<R> {
        POLLER.with_borrow_mut(|p| {
            if p.is_none() {
                *p = Some(Poller::start()?);
            }
            f(p.as_mut().expect("just created"))
        })
    }

    fn start() -> io::Result<Poller> {
        let epoll = std::rc::Rc::new(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?);
        // SAFETY: the AsyncFd owns an `Rc` of the epoll, so the fd stays open, and means this
        // epoll, for as long as it is registered (it deregisters on drop, before the Rc goes).
        let watched = unsafe {
            AsyncFd::register_with_interest(EpollFd(epoll.clone()), tokio::io::Interest::READABLE)
        }
        .map_err(|e| e.into_parts().1)?;
        tokio::task::spawn_local(drive(watched));
        Ok(Poller {
            epoll,
            slots: Vec::new(),
            free: Vec::new(),
        })
    }

    fn add(&mut self, fd: BorrowedFd<'_>) -> io::Result<u32> {
        let key = match self.free.pop() {
            Some(k) => k,
            None => {
                let k = u32::try_from(self.slots.len())
                    .map_err(|_| io::Error::other("too many pipes on one thread"))?;
                self.slots.push(Slot {
                    waker: None,
                    ready: false,
                    generation: 0,
                    in_use: false,
                });
                k
            }
        };
        let slot = &mut self.slots[key as usize];
        slot.generation = slot.generation.wrapping_add(1);
        let event = EpollEvent::new(
            EpollFlags::EPOLLIN | EpollFlags::EPOLLET,
            token(key, slot.generation),
        );
        if let Err(e) = self.epoll.add(fd, event) {
            self.free.push(key);
            return Err(e.into());
        }
        slot.in_use = true;
        slot.ready = true;
        slot.waker = None;
        Ok(key)
    }

    fn remove(&mut self, key: u32, fd: BorrowedFd<'_>) {
        // The fd may live on elsewhere (a re-exec's successor holds a copy): without this, the
        // epoll would go on reporting it.
        let _ = self.epoll.delete(fd);
        if let Some(slot) = self.slots.get_mut(key as usize) {
            slot.in_use = false;
            slot.ready = false;
            slot.waker = None;
            self.free.push(key);
        }
    }

    /// Marks the slots of `events` ready; returns their wakers.
    fn mark(&mut self, events: &[EpollEvent], wake: &mut Vec<Waker>) {
        for ev in events {
            let data = ev.data();
            let (key, generation) = (data as u32, (data >> 32) as u32);
            if let Some(slot) = self.slots.get_mut(key as usize) {
                if slot.in_use && slot.generation == generation {
                    slot.ready = true;
                    wake.extend(slot.waker.take());
                }
            }
        }
    }
}

/// The epoll as tokio watches it (shared with the table, which adds and removes pipes).
struct EpollFd(std::rc::Rc<Epoll>);

impl AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0 .0.as_raw_fd()
    }
}

/// The thread's poller task: waits for the epoll to have events, marks their slots ready and
/// wakes their pumps.
async fn drive(watched: AsyncFd<EpollFd>) {
    let mut events = vec![EpollEvent::empty(); EVENTS_PER_WAIT];
    let mut wake = Vec::new();
    loop {
        let mut guard = match watched.readable().await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(cause = %e, "cannot watch the pipes' epoll; this thread's logs stall");
                return;
            }
        };
        loop {
            let n = match watched.get_ref().0.wait(&mut events, EpollTimeout::ZERO) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(cause = %e, "epoll_wait on the pipes failed");
                    0
                }
            };
            POLLER.with_borrow_mut(|p| {
                if let Some(p) = p.as_mut() {
                    p.mark(&events[..n], &mut wake);
                }
            });
            for w in wake.drain(..) {
                w.wake();
            }
            if n < EVENTS_PER_WAIT {
                break;
            }
        }
        guard.clear_ready();
    }
}

/// A pipe's read end, watched by this thread's poller: 8 bytes.
#[derive(Debug)]
pub struct WatchedPipe {
    fd: OwnedFd,
    key: u32,
}

impl WatchedPipe {
    /// Watches `fd` from the current thread (which must run a tokio runtime, and must be the
    /// thread that polls and drops the pipe).
    pub fn new(fd: OwnedFd) -> io::Result<WatchedPipe> {
        let key = Poller::with(|p| p.add(fd.as_fd()))?;
        Ok(WatchedPipe { fd, key })
    }

    /// `Ready` if the pipe may have data (or EOF); otherwise the task is woken when it does.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        POLLER.with_borrow_mut(|p| {
            let Some(slot) = p.as_mut().and_then(|p| p.slots.get_mut(self.key as usize)) else {
                return Poll::Ready(()); // no table (thread ending): let the read tell
            };
            if slot.ready {
                Poll::Ready(())
            } else {
                match &mut slot.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        })
    }

    /// The last read found the pipe empty (`EAGAIN`): wait for the next edge.
    pub fn clear_ready(&self) {
        POLLER.with_borrow_mut(|p| {
            if let Some(slot) = p.as_mut().and_then(|p| p.slots.get_mut(self.key as usize)) {
                slot.ready = false;
            }
        });
    }
}

impl AsFd for WatchedPipe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for WatchedPipe {
    fn drop(&mut self) {
        let fd = self.fd.as_fd();
        let _ = POLLER.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                if let Some(p) = p.as_mut() {
                    p.remove(self.key, fd);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::io::Write;

    fn pipe() -> (OwnedFd, std::fs::File) {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
                .expect("pipe2");
        (r, std::fs::File::from(w))
    }

    fn read(fd: &WatchedPipe) -> nix::Result<usize> {
        let mut buf = [0u8; 64];
        nix::unistd::read(fd.as_fd(), &mut buf)
    }

    #[test]
    fn a_write_wakes_the_pump_and_a_drained_pipe_waits() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let (r, mut w) = pipe();
            let watched = WatchedPipe::new(r).expect("watch");
            // A new registration starts ready; the read finds nothing and clears it.
            poll_fn(|cx| watched.poll_ready(cx)).await;
            assert_eq!(read(&watched), Err(nix::errno::Errno::EAGAIN));
            watched.clear_ready();
            let pending = poll_fn(|cx| Poll::Ready(watched.poll_ready(cx).is_pending())).await;
            assert!(pending, "an empty pipe is not ready");
            w.write_all(b"hello").expect("write");
            tokio::time::timeout(
                std::time::Duration::from_secs(5),
                poll_fn(|cx| watched.poll_ready(cx)),
            )
            .await
            .expect("the write woke the pump");
            assert_eq!(read(&watched), Ok(5));
            // EOF is readiness too.
            assert_eq!(read(&watched), Err(nix::errno::Errno::EAGAIN));
            watched.clear_ready();
            drop(w);
            tokio::time::timeout(
                std::time::Duration::from_secs(5),
                poll_fn(|cx| watched.poll_ready(cx)),
            )
            .await
            .expect("EOF woke the pump");
            assert_eq!(read(&watched), Ok(0));
        });
    }

    #[test]
    fn a_reused_slot_ignores_the_old_pipe() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let (r1, mut w1) = pipe();
            // A copy of the first read end outlives its registration (as across a re-exec).
            let copy = r1.try_clone().expect("dup");
            let first = WatchedPipe::new(r1).expect("watch");
            let key = first.key;
            drop(first);
            let (r2, _w2) = pipe();
            let second = WatchedPipe::new(r2).expect("watch");
            assert_eq!(second.key, key, "the slot is reused");
            assert_eq!(read(&second), Err(nix::errno::Errno::EAGAIN));
            second.clear_ready();
            w1.write_all(b"old pipe").expect("write");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let pending = poll_fn(|cx| Poll::Ready(second.poll_ready(cx).is_pending())).await;
            assert!(
                pending,
                "the old pipe's data does not make the new one ready"
            );
            drop(copy);
        });
    }
}
