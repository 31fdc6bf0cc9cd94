//! Readiness of log pipes: one epoll per worker thread for the quiet pipes, tokio for the busy.
//!
//! tokio could watch every pipe, but at a price paid by every idle domain: each fd registered
//! with tokio gets a `ScheduledIo` of 256 bytes (it is aligned to 128), and an `AsyncFd` of 32.
//! With thousands of guests, most pipes are quiet, so logd keeps its own small table: a pipe
//! costs one 40-byte slot here and 8 bytes in its stream ([`WatchedPipe`]). The epoll itself is
//! registered with tokio once per thread, and its task wakes the pumps whose pipes have data.
//!
//! That is one more hop per wake-up (an `epoll_wait` on the thread's epoll, and a task), which a
//! pipe written to in many small pieces would pay thousands of times a second. So a pipe that
//! becomes ready twice within [`BUSY_WITHIN`] is handed to tokio ("promoted"), and handed back
//! once it has been quiet for [`QUIET_FOR`]: a sweep looks at the promoted pipes every
//! [`SWEEP_EVERY`], and runs only while some pipe is promoted, so a quiet daemon runs no timer.
//!
//! Pipes are watched edge-triggered. A slot is marked ready when the kernel reports it and stays
//! ready until the pump reads `EAGAIN` and says so ([`WatchedPipe::clear_ready`]); a write after
//! that raises a new edge. A new registration starts ready, so bytes written before it are read.
//!
//! Everything here is per thread: a pipe is registered, polled and dropped on the thread of the
//! domain that owns it (actors do not move between threads, and [`WatchedPipe`] is neither `Send`
//! nor `Sync`, so the compiler keeps it there). Events carry a slot's generation, so a stale event
//! for a reused slot is ignored.
#![allow(unsafe_code)] // three blocks: registering the epoll and a busy pipe with tokio, and borrowing a slot's fd

use std::cell::RefCell;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use tokio::io::unix::AsyncFd;

/// Events taken from the epoll per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 256;
/// A pipe that becomes ready again this soon after the last time is handed to tokio.
pub const BUSY_WITHIN: Duration = Duration::from_millis(100);
/// A promoted pipe with no data for this long comes back to the thread's epoll.
pub const QUIET_FOR: Duration = Duration::from_secs(2);
/// How often promoted pipes are looked at (only while there are some).
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A pipe's fd as tokio watches it while the pipe is promoted (the [`WatchedPipe`] owns it).
struct RawPipe(RawFd);

impl AsRawFd for RawPipe {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// One watched pipe's state.
struct Slot {
    /// The pump to wake when the pipe becomes readable (kept current while promoted too, so a
    /// demotion can wake it).
    waker: Option<Waker>,
    /// Set while the pipe is promoted: tokio watches it, the thread's epoll does not.
    fast: Option<Box<AsyncFd<RawPipe>>>,
    /// Tells this slot's pipe from an earlier pipe in the same slot.
    generation: u32,
    /// When the pipe last became ready, in [`now_ms`].
    last_ready_ms: u32,
    ready: bool,
    in_use: bool,
    /// Became ready twice within [`BUSY_WITHIN`]: promote at the next `EAGAIN`.
    busy: bool,
}

/// Slots per chunk of the table.
const CHUNK: usize = 256;

/// The slots, in chunks that never move: the table grows without copying itself, and leaves no
/// freed old copies behind (a doubling `Vec` of 10,000 slots would).
#[derive(Default)]
struct Slots {
    chunks: Vec<Vec<Slot>>,
    len: usize,
}

impl Slots {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, i: usize) -> Option<&Slot> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Slot> {
        self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
    }

    fn push(&mut self, slot: Slot) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks
            .last_mut()
            .expect("a chunk with room")
            .push(slot);
        self.len += 1;
    }
}

impl std::ops::Index<usize> for Slots {
    type Output = Slot;
    fn index(&self, i: usize) -> &Slot {
        self.get(i).expect("a slot in the table")
    }
}

impl std::ops::IndexMut<usize> for Slots {
    fn index_mut(&mut self, i: usize) -> &mut Slot {
        self.get_mut(i).expect("a slot in the table")
    }
}

/// This thread's epoll and its table.
struct Poller {
    epoll: std::rc::Rc<Epoll>,
    slots: Slots,
    /// Free slots, reused before the table grows.
    free: Vec<u32>,
    /// Slots whose pipe is promoted; the sweep runs while there are any.
    promoted: usize,
    sweeping: bool,
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
        // SAFETY: the fd stays open, and this epoll, for the AsyncFd's whole life: the AsyncFd
        // owns an `Rc` of the `Epoll`, which closes its fd only when the last `Rc` goes, and it
        // deregisters on drop before it drops that `Rc`. `EpollFd::as_raw_fd` always returns
        // this fd, and nothing replaces the `EpollFd` (`get_mut` is never called).
        let watched = unsafe {
            AsyncFd::register_with_interest(EpollFd(epoll.clone()), tokio::io::Interest::READABLE)
        }
        .map_err(|e| e.into_parts().1)?;
        tokio::task::spawn_local(drive(watched));
        Ok(Poller {
            epoll,
            slots: Slots::default(),
            free: Vec::new(),
            promoted: 0,
            sweeping: false,
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
                    fast: None,
                    generation: 0,
                    last_ready_ms: 0,
                    ready: false,
                    in_use: false,
                    busy: false,
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
        slot.busy = false;
        slot.waker = None;
        slot.last_ready_ms = crate::clock::coarse_ms();
        Ok(key)
    }

    fn remove(&mut self, key: u32, fd: BorrowedFd<'_>) {
        let Some(slot) = self.slots.get_mut(key as usize) else {
            return;
        };
        if slot.fast.take().is_some() {
            self.promoted -= 1; // dropping the AsyncFd took it out of tokio's epoll
        } else {
            // The fd may live on elsewhere (a re-exec's successor holds a copy): without this,
            // the epoll would go on reporting it.
            let _ = self.epoll.delete(fd);
        }
        slot.in_use = false;
        slot.ready = false;
        slot.waker = None;
        self.free.push(key);
    }

    /// Hands a busy pipe to tokio (called when the pump has just read it empty).
    fn promote(&mut self, key: u32, fd: BorrowedFd<'_>) {
        let slot = &mut self.slots[key as usize];
        slot.busy = false;
        // SAFETY: `fd` belongs to the live `WatchedPipe` of slot `key`, on this thread (the type
        // is neither Send nor Sync); nothing closes it but that pipe's drop, and nothing changes
        // `RawPipe`'s fd. The AsyncFd is dropped, and so deregistered, before that drop closes
        // the fd: here if the epoll will not let the pipe go; in `demote` when the pipe is
        // quiet; in `remove`, which the pipe's `Drop` runs before its `OwnedFd` field is
        // dropped; or with the table, when the thread's poller goes first (the pipe is still
        // alive then). The pipe's `Drop` skips `remove` in exactly two cases, listed there: in
        // the first this AsyncFd is already gone with the table, and the second cannot happen.
        let fast = match unsafe {
            AsyncFd::register_with_interest(RawPipe(fd.as_raw_fd()), tokio::io::Interest::READABLE)
        } {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(cause = %e.into_parts().1, "cannot hand a busy pipe to tokio; it stays on the thread's epoll");
                return;
            }
        };
        if self.epoll.delete(fd).is_err() {
            return; // still ours; the AsyncFd is dropped
        }
        slot.fast = Some(Box::new(fast));
        self.promoted += 1;
        if !self.sweeping {
            self.sweeping = true;
            tokio::task::spawn_local(sweep());
        }
    }

    /// Takes a quiet pipe back from tokio; its pump is woken to poll it here.
    fn demote(&mut self, key: u32) {
        let slot = &mut self.slots[key as usize];
        let Some(fast) = slot.fast.take() else {
            return;
        };
        let raw = fast.get_ref().0;
        drop(fast);
        self.promoted -= 1;
        // SAFETY: the slot is in use (the sweep demotes only slots in use), so its `WatchedPipe`,
        // which owns the fd and lives on this thread, has not been dropped: a drop takes the slot
        // out of use, except in the two cases listed at `Drop for WatchedPipe`, and neither
        // leaves a table in which this runs (in the first the table is gone; the second cannot
        // happen). So the fd is open for this call.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let event = EpollEvent::new(
            EpollFlags::EPOLLIN | EpollFlags::EPOLLET,
            token(key, slot.generation),
        );
        if let Err(e) = self.epoll.add(fd, event) {
            tracing::error!(cause = %e, "cannot watch a quiet pipe again; its log stalls");
        }
        slot.ready = true; // whatever came meanwhile is read at once
        slot.last_ready_ms = crate::clock::coarse_ms();
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
    }

    /// Marks the slots of `events` ready; returns their wakers.
    fn mark(&mut self, events: &[EpollEvent], wake: &mut Vec<Waker>) {
        for ev in events {
            let data = ev.data();
            let (key, generation) = (data as u32, (data >> 32) as u32);
            if let Some(slot) = self.slots.get_mut(key as usize) {
                if slot.in_use && slot.generation == generation && slot.fast.is_none() {
                    if crate::clock::since_coarse_ms(slot.last_ready_ms) < BUSY_WITHIN {
                        slot.busy = true;
                    }
                    slot.last_ready_ms = crate::clock::coarse_ms();
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

/// Every [`SWEEP_EVERY`], takes back the promoted pipes that have been quiet for [`QUIET_FOR`];
/// ends when none is left.
async fn sweep() {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let done = POLLER.with_borrow_mut(|p| {
            let Some(p) = p.as_mut() else {
                return true;
            };
            for key in 0..p.slots.len() {
                let s = &p.slots[key];
                if s.in_use
                    && s.fast.is_some()
                    && crate::clock::since_coarse_ms(s.last_ready_ms) >= QUIET_FOR
                {
                    p.demote(key as u32);
                }
            }
            if p.promoted == 0 {
                p.sweeping = false;
            }
            !p.sweeping
        });
        if done {
            return;
        }
    }
}

/// A pipe's read end, watched by this thread's poller: 8 bytes.
///
/// Its slot is in the table of the thread that made it, so it must be polled and dropped on that
/// thread: it is neither `Send` nor `Sync`, and the `// SAFETY:` comments here rely on that.
#[derive(Debug)]
pub struct WatchedPipe {
    fd: OwnedFd,
    key: u32,
    /// Keeps the pipe on its thread (a raw pointer is neither `Send` nor `Sync`).
    on_its_thread: PhantomData<*const ()>,
}

impl WatchedPipe {
    /// Watches `fd` from the current thread, which must run a tokio runtime, and which polls
    /// and drops the pipe (the type cannot leave it).
    pub fn new(fd: OwnedFd) -> io::Result<WatchedPipe> {
        let key = Poller::with(|p| p.add(fd.as_fd()))?;
        Ok(WatchedPipe {
            fd,
            key,
            on_its_thread: PhantomData,
        })
    }

    /// `Ready` if the pipe may have data (or EOF); otherwise the task is woken when it does.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        POLLER.with_borrow_mut(|p| {
            let Some(slot) = p.as_mut().and_then(|p| p.slots.get_mut(self.key as usize)) else {
                return Poll::Ready(()); // no table (thread ending): let the read tell
            };
            match &mut slot.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            }
            if let Some(fast) = &slot.fast {
                return match fast.poll_read_ready(cx) {
                    Poll::Ready(Ok(mut guard)) => {
                        guard.retain_ready();
                        slot.last_ready_ms = crate::clock::coarse_ms();
                        Poll::Ready(())
                    }
                    Poll::Ready(Err(_)) => Poll::Ready(()), // let the read tell
                    Poll::Pending => Poll::Pending,
                };
            }
            if slot.ready {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// The last read found the pipe empty (`EAGAIN`): wait for the next edge. A pipe that has
    /// been busy is handed to tokio here.
    pub fn clear_ready(&self, cx: &mut Context<'_>) {
        POLLER.with_borrow_mut(|p| {
            let Some(p) = p.as_mut() else {
                return;
            };
            let Some(slot) = p.slots.get_mut(self.key as usize) else {
                return;
            };
            if let Some(fast) = &slot.fast {
                if let Poll::Ready(Ok(mut guard)) = fast.poll_read_ready(cx) {
                    guard.clear_ready();
                }
                return;
            }
            slot.ready = false;
            if slot.busy {
                p.promote(self.key, self.fd.as_fd());
            }
        });
    }

    /// Whether tokio watches this pipe now (it has been busy).
    #[cfg(test)]
    fn promoted(&self) -> bool {
        POLLER.with_borrow(|p| {
            p.as_ref()
                .and_then(|p| p.slots.get(self.key as usize))
                .is_some_and(|s| s.fast.is_some())
        })
    }
}

impl AsFd for WatchedPipe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Takes the pipe's slot out of the table, before the fd closes: out of the thread's epoll or,
/// when the pipe is promoted, out of tokio (its AsyncFd dropped), as `promote`'s `// SAFETY:`
/// requires.
///
/// It skips that, and the slot stays in use, in exactly two cases:
/// 1. This thread's poller is gone or going (`try_with` fails): the thread is exiting and its
///    thread-locals are being destroyed. The table was dropped before this pipe, and with it
///    every slot's AsyncFd, deregistered while this pipe's fd was still open, so nothing is
///    left to undo (the epoll forgets the pipe when either of them closes). A drop from inside
///    the table's own destruction would not be covered (its slot might not be dropped yet), but
///    it could only come from a slot's `Waker`, which never drops a pipe (see 2).
/// 2. The table is borrowed (`try_borrow_mut` fails): this drop comes from inside a `Poller`
///    method, `drive`, `sweep`, `poll_ready` or `clear_ready`, on this thread. None of them
///    owns a pipe, and the only foreign code they run is tracing, tokio's I/O registration, and
///    a task `Waker`'s drop, clone or wake. tokio's wakers (logd's only ones: actix runs on
///    tokio) never drop a task's future: its scheduler does, when the task ends or is shut
///    down, outside any of these borrows. So this case does not happen. If it did, the slot
///    would leak and, were the pipe promoted, its AsyncFd would stay registered for a closed
///    fd, which `promote`'s `// SAFETY:` rules out.
///
/// A pipe dropped on another thread would find another table, but the type keeps it on its own.
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

    /// Runs `f` as a worker thread runs a domain: a current-thread runtime with a `LocalSet`.
    fn on_a_worker(f: impl std::future::Future<Output = ()>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        tokio::task::LocalSet::new().block_on(&rt, f);
    }

    fn read(fd: &WatchedPipe) -> nix::Result<usize> {
        let mut buf = [0u8; 64];
        nix::unistd::read(fd.as_fd(), &mut buf)
    }

    #[test]
    fn a_write_wakes_the_pump_and_a_drained_pipe_waits() {
        on_a_worker(async {
            let (r, mut w) = pipe();
            let watched = WatchedPipe::new(r).expect("watch");
            // A new registration starts ready; the read finds nothing and clears it.
            assert_eq!(drain(&watched).await, 0);
            let pending = poll_fn(|cx| Poll::Ready(watched.poll_ready(cx).is_pending())).await;
            assert!(pending, "an empty pipe is not ready");
            w.write_all(b"hello").expect("write");
            wait_ready(&watched).await;
            assert_eq!(drain(&watched).await, 5);
            // EOF is readiness too.
            drop(w);
            wait_ready(&watched).await;
            assert_eq!(read(&watched), Ok(0));
        });
    }

    /// Reads to EAGAIN and says so, as a pump does.
    async fn drain(watched: &WatchedPipe) -> usize {
        let mut total = 0;
        loop {
            poll_fn(|cx| watched.poll_ready(cx)).await;
            match read(watched) {
                Ok(n) => total += n,
                Err(nix::errno::Errno::EAGAIN) => {
                    poll_fn(|cx| {
                        watched.clear_ready(cx);
                        Poll::Ready(())
                    })
                    .await;
                    return total;
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    async fn wait_ready(watched: &WatchedPipe) {
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            poll_fn(|cx| watched.poll_ready(cx)),
        )
        .await
        .expect("the pipe became ready");
    }

    #[test]
    fn a_busy_pipe_goes_to_tokio_and_comes_back_when_quiet() {
        on_a_worker(async {
            let (r, mut w) = pipe();
            let watched = WatchedPipe::new(r).expect("watch");
            assert_eq!(drain(&watched).await, 0);
            // One write now and then: stays on the thread's epoll.
            tokio::time::sleep(BUSY_WITHIN * 2).await;
            w.write_all(b"one").expect("write");
            wait_ready(&watched).await;
            assert_eq!(drain(&watched).await, 3);
            assert!(!watched.promoted());
            tokio::time::sleep(BUSY_WITHIN * 2).await;
            // Two edges within BUSY_WITHIN: promoted at the next EAGAIN.
            w.write_all(b"two").expect("write");
            wait_ready(&watched).await;
            assert_eq!(drain(&watched).await, 3);
            w.write_all(b"three").expect("write");
            wait_ready(&watched).await;
            assert_eq!(drain(&watched).await, 5);
            assert!(watched.promoted(), "a busy pipe is handed to tokio");
            // Promoted, its data still wakes the pump.
            w.write_all(b"four").expect("write");
            wait_ready(&watched).await;
            assert_eq!(drain(&watched).await, 4);
            // Quiet for QUIET_FOR: back on the thread's epoll, and still woken by data.
            tokio::time::sleep(QUIET_FOR + SWEEP_EVERY * 2).await;
            assert!(!watched.promoted(), "a quiet pipe comes back");
            assert_eq!(drain(&watched).await, 0);
            w.write_all(b"five").expect("write");
            wait_ready(&watched).await;
            assert_eq!(drain(&watched).await, 4);
            POLLER.with_borrow(|p| {
                let p = p.as_ref().expect("poller");
                assert_eq!(p.promoted, 0);
                assert!(!p.sweeping, "no sweep runs once nothing is promoted");
            });
        });
    }

    #[test]
    fn a_reused_slot_ignores_the_old_pipe() {
        on_a_worker(async {
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
            poll_fn(|cx| {
                second.clear_ready(cx);
                Poll::Ready(())
            })
            .await;
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
