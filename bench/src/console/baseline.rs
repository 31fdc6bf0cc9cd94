//! `console_fanout_64_baseline` (issue 18, target 5): the limit `console_fanout_64` is compared
//! to, with no daemon. One thread of this process holds the accepting ends of 64 loopback TCP
//! connections, nonblocking, and sends the console transfer's bytes to every one of them as a
//! good fan-out would: the chunks sit once in a shared ring, each socket has its own offset into
//! the stream, `writev` hands a socket up to [`MAX_IOV`] chunks at a time until its buffer is
//! full, and an edge-triggered epoll says when it has room again. Nothing is copied per
//! subscriber in user space. The subscribers are `console_fanout_64`'s ([`start_readers`]): a
//! thread each, reading into a 64 KiB buffer, counting and spot-checking.

use std::io::IoSlice;
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use logd_kit::stat_cpu_seconds;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::uio::writev;

use crate::bench::Bench;
use crate::console::{join_readers, start_readers, CONSOLE_CHUNK, SUBSCRIBER_TIMEOUT};
use crate::host::{others_cpu_seconds, thread_cpu_seconds_exact};
use crate::report::note;
use crate::transfer::{text, Transfer};

/// Most chunks one `writev` hands a socket: logd's subscribers write at most 32 buffers at once.
const MAX_IOV: usize = 32;
/// The ring's chunks (512 KiB), unless the subscribers' queue limit is smaller: no socket runs
/// further ahead of the slowest. The fastest of 64 KiB–16 MiB on the 2-vCPU machine of
/// docs/PERFORMANCE.md: the ring stays in the sending core's L2 cache (2 MiB) while it is
/// copied into 64 sockets, where a 16 MiB ring (logd's queue limit) was about a quarter slower;
/// and a ring of one chunk, which sends each chunk to every socket before the next (one 64 KiB
/// `writev` per socket and chunk, as logd does), about a third slower.
const RING_CHUNKS: u64 = 8;

/// `console_fanout_K_baseline`: `total` bytes of the console transfer's text, sent by one thread
/// to `K` loopback TCP subscribers, each reading everything on its own thread. The time runs
/// from the first write until every subscriber has every byte; CPU is the sending thread's.
/// A chunk stays in the ring until the slowest socket has sent it; the ring holds
/// [`RING_CHUNKS`], or fewer if the subscribers' queue limit (`--console-queue-limit`) is
/// smaller: no socket runs further ahead of the slowest than a logd subscriber may fall behind.
pub(crate) fn console_fanout_baseline(b: &mut Bench, subscribers: usize, total: u64) -> Result<()> {
    let name = format!("console_fanout_{subscribers}_baseline");
    let chunk = CONSOLE_CHUNK as u64;
    let ring_chunks = (b.console_queue_limit / chunk).clamp(1, RING_CHUNKS) as usize;
    let mut runs = Vec::new();
    for run in 1..=b.runs {
        let mut sends = None;
        let t = b.measure(None, &name, run, || {
            let (t, s) = baseline_run(subscribers, total, ring_chunks).context(name.clone())?;
            sends = Some(s);
            Ok(t)
        })?;
        if let Some(s) = sends {
            s.progress(&name, run, b.runs, subscribers, total);
        }
        runs.push(t);
    }
    b.transfer_figures(&name, &runs);
    Ok(())
}

/// What the sending thread did in one run, for its progress line.
#[derive(Default)]
struct Sends {
    /// How long the sends took (the subscribers were still reading the last bytes after).
    seconds: f64,
    /// `writev` calls.
    writes: u64,
    /// Of those, how many found the socket full (EAGAIN).
    full: u64,
    /// `epoll_wait` calls that blocked: no socket could take more.
    waits: u64,
    /// CPU time of this process but the sending thread: the subscribers' threads.
    readers_cpu: f64,
}

impl Sends {
    fn progress(&self, name: &str, run: u32, runs: u32, subscribers: usize, total: u64) {
        let chunks = (subscribers as u64 * total.div_ceil(CONSOLE_CHUNK as u64)) as f64;
        note(format!(
            "{name} run {run}/{runs}: the sends took {:.2} s; {} writev calls ({:.2} per \
             subscriber per 64 KiB chunk), {} of them on a full socket; {} blocking epoll waits; \
             the {subscribers} subscribers used {:.2} CPU-s",
            self.seconds,
            self.writes,
            self.writes as f64 / chunks,
            self.full,
            self.waits,
            self.readers_cpu
        ));
    }
}

/// One run: connects the subscribers (to a listener on 127.0.0.1, with the kernel's default
/// socket buffers on both ends, as logd's console listener and the bench's subscribers have),
/// then sends and waits until each has read all `total` bytes, which must be the text's.
fn baseline_run(subscribers: usize, total: u64, ring_chunks: usize) -> Result<(Transfer, Sends)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback listener")?;
    let addr = listener.local_addr().context("the listener's address")?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("creating an epoll")?;
    let (mut socks, mut subs) = (Vec::new(), Vec::new());
    for i in 0..subscribers {
        let sub = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        sub.set_read_timeout(Some(SUBSCRIBER_TIMEOUT))
            .context("setting a subscriber's timeout")?;
        let (sock, _) = listener.accept().context("accepting a subscriber")?;
        sock.set_nonblocking(true)
            .context("making a socket nonblocking")?;
        epoll
            .add(
                &sock,
                EpollEvent::new(EpollFlags::EPOLLOUT | EpollFlags::EPOLLET, i as u64),
            )
            .context("adding a socket to the epoll")?;
        socks.push(sock);
        subs.push((sub, 0));
    }
    let ring = text(CONSOLE_CHUNK).repeat(ring_chunks);

    let readers = start_readers(subs, total);
    let others0 = others_cpu_seconds(None)?;
    let process0 = stat_cpu_seconds("/proc/self/stat")?;
    let cpu0 = thread_cpu_seconds_exact()?;
    let start = Instant::now();
    let mut sends = fan_out(&epoll, &socks, &ring, total)?;
    sends.seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = thread_cpu_seconds_exact()? - cpu0;
    let (received, end) = join_readers(readers)?;
    let seconds = end.saturating_duration_since(start).as_secs_f64();
    sends.readers_cpu = stat_cpu_seconds("/proc/self/stat")? - process0 - cpu_seconds;
    let others_busy = (others_cpu_seconds(None)? - others0) / start.elapsed().as_secs_f64();
    for (i, r) in received.iter().enumerate() {
        ensure!(
            !r.cut_off && r.bytes == total,
            "subscriber {i} received {} of {total} bytes",
            r.bytes
        );
        if let Some(at) = r.mismatch {
            bail!("subscriber {i} received other bytes than were sent, from stream offset {at}");
        }
    }
    let t = Transfer {
        bytes: total,
        seconds,
        cpu_seconds,
        others_busy,
        pipe_size: None,
    };
    Ok((t, sends))
}

/// Sends the first `total` bytes of the stream `ring` repeats to every socket of `socks`
/// (registered in `epoll`, edge-triggered, each with its index): each socket is written until
/// it is full or has every byte the ring holds for it; then the thread takes the sockets that
/// have room again from `epoll`, and blocks there only when no socket took anything.
fn fan_out(epoll: &Epoll, socks: &[TcpStream], ring: &[u8], total: u64) -> Result<Sends> {
    let ring_len = ring.len() as u64;
    let mut sent = vec![0u64; socks.len()];
    let mut room = vec![true; socks.len()];
    let mut events = vec![EpollEvent::empty(); socks.len()];
    let wait = EpollTimeout::try_from(SUBSCRIBER_TIMEOUT).context("the epoll timeout")?;
    let mut sends = Sends::default();
    loop {
        let slowest = sent.iter().copied().min().unwrap_or(total);
        if slowest == total {
            return Ok(sends);
        }
        // What the ring holds: the slowest socket's next bytes are never overwritten.
        let end = total.min(slowest + ring_len);
        let mut wrote = false;
        for (i, sock) in socks.iter().enumerate() {
            while room[i] && sent[i] < end {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let n = slices(ring, sent[i], end, &mut iov);
                sends.writes += 1;
                match writev(sock, &iov[..n]) {
                    Ok(k) => {
                        sent[i] += k as u64;
                        wrote = true;
                    }
                    Err(Errno::EAGAIN) => {
                        room[i] = false;
                        sends.full += 1;
                    }
                    Err(Errno::EINTR) => {}
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("writing to subscriber {i} after {} bytes", sent[i])
                        })
                    }
                }
            }
        }
        if !wrote {
            sends.waits += 1;
        }
        let n = match epoll.wait(&mut events, if wrote { EpollTimeout::ZERO } else { wait }) {
            Ok(0) if !wrote => {
                bail!("no subscriber's socket had room for {SUBSCRIBER_TIMEOUT:?}")
            }
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => return Err(e).context("waiting on the epoll"),
        };
        for e in &events[..n] {
            room[e.data() as usize] = true;
        }
    }
}

/// Fills `iov` with the ring's bytes for stream offsets `from..to`, one slice per chunk (as
/// logd's queue holds one buffer per guest read), at most [`MAX_IOV`]; returns how many.
fn slices<'a>(ring: &'a [u8], from: u64, to: u64, iov: &mut [IoSlice<'a>; MAX_IOV]) -> usize {
    let (mut n, mut at) = (0, from);
    while n < MAX_IOV && at < to {
        let pos = (at % ring.len() as u64) as usize;
        let len = ((CONSOLE_CHUNK - pos % CONSOLE_CHUNK) as u64).min(to - at) as usize;
        iov[n] = IoSlice::new(&ring[pos..pos + len]);
        n += 1;
        at += len as u64;
    }
    n
}
