//! A console subscriber: one TCP, UNIX or TLS connection watching a console, maybe typing into it.
//!
//! A subscriber is owned by its console (inside the domain actor) and driven from the console's
//! poll. Output goes through a bounded queue of shared [`Bytes`]: the console pushes the same
//! chunk to every subscriber, copying nothing, and a subscriber whose queue passes its limit is
//! disconnected instead of slowing anyone down: its queue is dropped, and its last words (why,
//! and how much it missed) are written once its socket takes them ([`Parting`]).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::Bytes;
use logd_protocol::ConsoleProtocol;
#[cfg(test)]
use tokio::net::UnixStream;

pub(crate) use crate::console::socket::Socket;
use crate::console::socket::READ_CHUNK;
use crate::console::telnet;

/// Most buffers written at once with `writev`.
const MAX_IOV: usize = 32;

/// Where [`Subscriber::poll_input`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// The socket is drained (its waker is registered) or the subscriber is leaving.
    Waiting,
    /// The room ran out with input perhaps still there, and no waker registered.
    More,
}

/// Why a subscriber is leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leave {
    /// It closed the connection (or the connection failed).
    Closed,
    /// Its queue passed the limit.
    Slow,
    /// An operator disconnected it.
    Kicked,
}

/// One subscriber.
pub(crate) struct Subscriber {
    pub(crate) id: u64,
    /// Who it is: `UID:NAME` (UNIX), `ADDR:PORT` (TCP), its certificate's subject or
    /// `anonymous@ADDR:PORT` (TLS).
    pub(crate) peer: String,
    /// What it may do, decided when it connected.
    pub(crate) role: crate::console::Role,
    /// When it connected (on the wall clock: the admin socket shows it, and a re-exec carries
    /// it).
    pub(crate) since_wall: std::time::SystemTime,
    sock: Socket,
    protocol: ConsoleProtocol,
    decoder: telnet::Decoder,
    queue: VecDeque<Bytes>,
    /// Bytes in `queue` not yet written (the front buffer may be partly written).
    queued: usize,
    /// How much of the front buffer has been written.
    front_done: usize,
    limit: usize,
    pub(crate) bytes_sent: u64,
    /// Told once that its input is discarded.
    pub(crate) told_read_only: bool,
    pub(crate) leaving: Option<Leave>,
    /// It is sent logd's notices (the console's `notices` setting).
    notices: bool,
    /// Bytes not queued since it was marked slow (the chunk that passed the limit, and any
    /// after it until the console drops it).
    refused: u64,
    /// Telnet BREAKs (IAC BRK) read since the console last took them ([`Self::take_breaks`]).
    breaks: u32,
    /// The uid that connected it (a UNIX peer, or `logdctl attach`'s caller): its escape
    /// commands are that uid's.
    pub(crate) owner: Option<u32>,
    /// Read-only by its own choice, though its role let it write: it may ask for the lock again.
    pub(crate) spy: bool,
}

impl Subscriber {
    pub(crate) fn new(
        id: u64,
        peer: String,
        role: crate::console::Role,
        sock: Socket,
        protocol: ConsoleProtocol,
        limit: usize,
        notices: bool,
    ) -> Self {
        let mut s = Subscriber {
            id,
            peer,
            role,
            since_wall: std::time::SystemTime::now(),
            sock,
            protocol,
            decoder: telnet::Decoder::default(),
            queue: VecDeque::new(),
            queued: 0,
            front_done: 0,
            limit,
            bytes_sent: 0,
            told_read_only: false,
            leaving: None,
            notices,
            refused: 0,
            breaks: 0,
            owner: None,
            spy: false,
        };
        if protocol == ConsoleProtocol::Telnet {
            s.push(Bytes::from_static(telnet::greeting()));
        }
        s
    }

    /// Describes the subscriber for a re-exec (its socket marked to be carried): what it was
    /// sent, what it still has to be sent, and where its telnet negotiation stands. None for a
    /// TLS subscriber: its session cannot be carried.
    pub(crate) fn export(
        &self,
        carrier: &mut crate::handover::state::Carrier,
    ) -> Option<crate::handover::state::SubscriberState> {
        let (tcp, fd) = match &self.sock {
            Socket::Tcp(s) => (true, carrier.fd(s)),
            Socket::Unix(s) => (false, carrier.fd(s)),
            Socket::Tls(_) => return None,
        };
        Some(crate::handover::state::SubscriberState {
            id: self.id,
            peer: self.peer.clone(),
            since_ms: crate::clock::unix_ms(self.since_wall),
            tcp,
            fd,
            protocol: self.protocol,
            decoder: self.decoder.clone(),
            unsent: self.unsent(),
            bytes_sent: self.bytes_sent,
            told_read_only: self.told_read_only,
            role: self.role,
            ext: {
                use crate::handover::state::SubscriberExt;
                let mut ext: Vec<_> = self.owner.map(SubscriberExt::Owner).into_iter().collect();
                if self.spy {
                    ext.push(SubscriberExt::Spy);
                }
                ext
            },
        })
    }

    /// Whether it came over TLS.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.sock, Socket::Tls(_))
    }

    /// Sends what fits now and says nothing more comes (TLS: close_notify).
    pub(crate) fn close_now(&mut self) {
        self.sock.shutdown_write();
    }

    /// The subscriber as a previous process left it, on its inherited connection. Must run on
    /// the thread that will drive it. No greeting: it had it.
    ///
    /// With [`Staleness::AfterGo`](crate::handover::state::Staleness), a new image may have
    /// sent part of the queue, and output of its own, before it died: the queue is dropped
    /// (logged with its size) and replaced by a notice that output may be missing here, so
    /// nothing is sent twice and the seam shows. The connection is kept.
    pub(crate) fn restore(
        st: &crate::handover::state::SubscriberState,
        inherited: &crate::handover::state::Inherited,
        limit: usize,
        notices: bool,
        staleness: crate::handover::state::Staleness,
    ) -> Result<Subscriber, crate::datapath::stream::RestoreError> {
        let fd = inherited.take(&st.fd)?;
        let what = || format!("subscriber {} ({})", st.id, st.peer);
        let sock = if st.tcp {
            crate::handover::state::sockets::tcp_stream(fd).map(Socket::Tcp)
        } else {
            crate::handover::state::sockets::unix_stream(fd).map(Socket::Unix)
        }
        .map_err(|source| crate::datapath::stream::RestoreError::Register {
            what: what(),
            source,
        })?;
        let since_wall = crate::clock::from_unix_ms(st.since_ms);
        let after_go = staleness == crate::handover::state::Staleness::AfterGo;
        let mut queue = VecDeque::new();
        if after_go {
            if !st.unsent.is_empty() {
                tracing::warn!(
                    subscriber = st.id,
                    peer = %st.peer,
                    bytes = st.unsent.len(),
                    "output queued before the re-exec is dropped, not sent: the failed new \
                     image may have sent part of it already"
                );
            }
        } else if !st.unsent.is_empty() {
            queue.push_back(Bytes::from(st.unsent.clone()));
        }
        let mut s = Subscriber {
            id: st.id,
            peer: st.peer.clone(),
            role: st.role,
            since_wall,
            sock,
            protocol: st.protocol,
            decoder: st.decoder.clone(),
            queued: queue.iter().map(Bytes::len).sum(),
            queue,
            front_done: 0,
            limit,
            bytes_sent: st.bytes_sent,
            told_read_only: st.told_read_only,
            leaving: None,
            notices,
            refused: 0,
            breaks: 0,
            owner: None,
            spy: false,
        };
        for e in &st.ext {
            match e {
                crate::handover::state::SubscriberExt::Owner(uid) => s.owner = Some(*uid),
                crate::handover::state::SubscriberExt::Spy => s.spy = true,
            }
        }
        if after_go {
            s.notice("a re-exec failed; output may be missing here");
        }
        Ok(s)
    }

    pub(crate) fn protocol(&self) -> ConsoleProtocol {
        self.protocol
    }

    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Queues console output (already escaped for telnet by the caller). A subscriber that
    /// passes its limit is marked slow; the caller disconnects it.
    pub(crate) fn push(&mut self, data: Bytes) {
        if self.leaving == Some(Leave::Slow) {
            self.refused += data.len() as u64;
        }
        if self.leaving.is_some() || data.is_empty() {
            return;
        }
        if self.queued + data.len() > self.limit {
            self.leaving = Some(Leave::Slow);
            self.refused = data.len() as u64;
            return;
        }
        self.queued += data.len();
        self.queue.push_back(data);
    }

    /// A line from logd itself (notices), in the subscriber's protocol; nothing if the console
    /// sends no notices.
    pub(crate) fn notice(&mut self, text: &str) {
        if !self.notices {
            return;
        }
        let line = Bytes::from(format!("\r\n[logd: {text}]\r\n"));
        self.push(line);
    }

    /// The queued bytes not yet written, in one buffer (for a re-exec's state).
    fn unsent(&self) -> Vec<u8> {
        let mut unsent = Vec::with_capacity(self.queued);
        for (i, b) in self.queue.iter().enumerate() {
            unsent.extend_from_slice(if i == 0 { &b[self.front_done..] } else { b });
        }
        unsent
    }

    /// Writes as much of the queue as the socket takes.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) {
        while self.leaving.is_none() && !self.queue.is_empty() {
            match self.sock.poll_write_ready(cx) {
                Poll::Pending => return,
                Poll::Ready(Err(_)) => {
                    self.leaving = Some(Leave::Closed);
                    return;
                }
                Poll::Ready(Ok(())) => {}
            }
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n_iov = 0;
            for (i, b) in self.queue.iter().take(MAX_IOV).enumerate() {
                iov[i] = IoSlice::new(if i == 0 { &b[self.front_done..] } else { b });
                n_iov += 1;
            }
            match self.sock.try_write_vectored(&iov[..n_iov]) {
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.leaving = Some(Leave::Closed),
            }
        }
        // TLS: what rustls took and the socket did not, with the waker registered.
        if self.leaving.is_none() {
            if let Poll::Ready(Err(_)) = self.sock.poll_sent(cx) {
                self.leaving = Some(Leave::Closed);
            }
        }
    }

    /// `n` bytes from the front of the queue were written: they count as sent, and leave the
    /// queue (whole buffers popped, the front one perhaps partly written).
    fn advance(&mut self, mut n: usize) {
        self.bytes_sent += n as u64;
        self.queued -= n;
        while n > 0 {
            let front = self
                .queue
                .front()
                .expect("written bytes come from the queue");
            let left = front.len() - self.front_done;
            if n >= left {
                n -= left;
                self.queue.pop_front();
                self.front_done = 0;
            } else {
                self.front_done += n;
                n = 0;
            }
        }
    }

    /// Reads what the subscriber typed: appends the bytes meant for the guest to `out` (up to
    /// `room` raw bytes are read). Telnet negotiation answers are queued back to the subscriber.
    ///
    /// Returns [`Input::More`] when it stopped at `room` without seeing the socket empty: no
    /// waker is registered then, so the caller must poll again once it has room.
    pub(crate) fn poll_input(
        &mut self,
        cx: &mut Context<'_>,
        room: usize,
        out: &mut Vec<u8>,
    ) -> Input {
        let mut buf = [0u8; READ_CHUNK];
        let mut budget = room;
        while self.leaving.is_none() {
            if budget == 0 {
                return Input::More;
            }
            match self.sock.poll_read_ready(cx) {
                Poll::Pending => return Input::Waiting,
                Poll::Ready(Err(_)) => {
                    self.leaving = Some(Leave::Closed);
                    return Input::Waiting;
                }
                Poll::Ready(Ok(())) => {}
            }
            let want = budget.min(READ_CHUNK);
            match self.sock.try_read(&mut buf[..want]) {
                Ok(0) => self.leaving = Some(Leave::Closed),
                Ok(n) => {
                    budget -= n;
                    match self.protocol {
                        ConsoleProtocol::Raw => out.extend_from_slice(&buf[..n]),
                        ConsoleProtocol::Telnet => {
                            let mut reply = Vec::new();
                            let commands = self.decoder.decode(&buf[..n], out, &mut reply);
                            self.breaks = self.breaks.saturating_add(commands.breaks);
                            if !reply.is_empty() {
                                self.push(Bytes::from(reply));
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.leaving = Some(Leave::Closed),
            }
        }
        Input::Waiting
    }

    /// The telnet BREAKs it sent since the last call (none in raw mode: there a break is no
    /// byte). Nothing of them is in the input [`Self::poll_input`] gave.
    pub(crate) fn take_breaks(&mut self) -> u32 {
        std::mem::take(&mut self.breaks)
    }

    /// What a slow subscriber missed when it is dropped: what was queued and not sent, and what
    /// was not queued since it passed its limit.
    pub(crate) fn missed(&self) -> u64 {
        self.queued as u64 + self.refused
    }

    /// Its connection, to be told `last_words` once it takes them and then closed
    /// ([`Parting`]); its queue is dropped.
    pub(crate) fn part(self, last_words: &str, until: std::time::Instant) -> Parting {
        Parting::new(self.sock, last_words, until)
    }

    /// Best-effort last words before the connection is dropped.
    pub(crate) fn say_goodbye(&mut self, text: &str) {
        self.sock
            .try_write_now(format!("\r\n[logd: {text}]\r\n").as_bytes());
    }
}

/// A connection being let go: its last words (a refusal, a slow subscriber's cut-off) are
/// written when its socket takes them, then it is told nothing more comes (`shutdown`), and
/// what it sends is read and discarded until it closes, so that it reads them (a socket closed
/// with unread input resets the connection, and the peer may lose the line). At most until
/// `until`.
pub(crate) struct Parting {
    sock: Socket,
    unsent: Bytes,
    until: std::time::Instant,
    /// `shutdown` done: only the draining is left.
    shut: bool,
}

impl Parting {
    pub(crate) fn new(sock: Socket, line: &str, until: std::time::Instant) -> Parting {
        Parting {
            sock,
            unsent: Bytes::from(line.to_owned()),
            until,
            shut: false,
        }
    }

    /// `Ready` once it is done with: closed by the peer, failed, or past its time.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, now: std::time::Instant) -> Poll<()> {
        if now >= self.until {
            return Poll::Ready(());
        }
        while !self.unsent.is_empty() {
            match self.sock.poll_write_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {}
            }
            match self.sock.try_write_vectored(&[IoSlice::new(&self.unsent)]) {
                Ok(n) => bytes::Buf::advance(&mut self.unsent, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Poll::Ready(()),
            }
        }
        if !self.shut {
            // TLS: the line's records must have left before close_notify and the shutdown.
            match self.sock.poll_sent(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {}
            }
            self.sock.shutdown_write();
            self.shut = true;
        }
        self.sock.poll_drain(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::io::Read;

    /// Runs `f` with a subscriber on one end of a UNIX socketpair, in a current-thread runtime
    /// (as a worker's), and the other end, blocking, as its peer.
    fn with_subscriber(
        protocol: ConsoleProtocol,
        limit: usize,
        f: impl AsyncFnOnce(Subscriber, std::os::unix::net::UnixStream),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
            ours.set_nonblocking(true).unwrap();
            let sock = Socket::Unix(UnixStream::from_std(ours).unwrap());
            let s = Subscriber::new(
                7,
                "test".to_owned(),
                crate::console::Role::ReadWrite,
                sock,
                protocol,
                limit,
                true,
            );
            peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            f(s, peer).await;
        });
    }

    fn raw(limit: usize, f: impl AsyncFnOnce(Subscriber, std::os::unix::net::UnixStream)) {
        with_subscriber(ConsoleProtocol::Raw, limit, f)
    }

    fn queue_lens(s: &Subscriber) -> Vec<usize> {
        s.queue.iter().map(Bytes::len).collect()
    }

    #[test]
    fn queued_goes_up_by_each_chunk_and_ignores_empty_ones() {
        raw(100, async |mut s, _peer| {
            assert_eq!(s.queued(), 0);
            s.push(Bytes::from_static(b"abc"));
            assert_eq!(s.queued(), 3);
            s.push(Bytes::new());
            assert_eq!(s.queued(), 3);
            s.push(Bytes::from_static(b"defgh"));
            assert_eq!(s.queued(), 8);
            assert_eq!(queue_lens(&s), [3, 5]);
            assert_eq!(s.unsent(), b"abcdefgh");
            assert_eq!(s.bytes_sent, 0);
            assert_eq!(s.leaving, None);
        });
    }

    #[test]
    fn a_telnet_subscriber_starts_with_the_greeting_queued() {
        with_subscriber(ConsoleProtocol::Telnet, 100, async |s, _peer| {
            assert_eq!(s.queued(), 12);
            assert_eq!(s.unsent(), telnet::greeting());
        });
    }

    #[test]
    fn a_notice_is_one_line_framed_by_crlf() {
        raw(100, async |mut s, _peer| {
            s.notice("hi");
            assert_eq!(s.unsent(), b"\r\n[logd: hi]\r\n");
            assert_eq!(s.queued(), 14);
        });
    }

    #[test]
    fn the_limit_itself_is_kept_and_one_byte_more_is_slow() {
        raw(10, async |mut s, _peer| {
            s.push(Bytes::from_static(b"0123"));
            s.push(Bytes::from_static(b"456789"));
            assert_eq!(s.queued(), 10);
            assert_eq!(s.leaving, None, "exactly the limit is allowed");
            s.push(Bytes::from_static(b"x"));
            assert_eq!(s.leaving, Some(Leave::Slow));
            // The chunk that passed the limit is not queued, and nothing is after it.
            assert_eq!(s.queued(), 10);
            s.push(Bytes::from_static(b"y"));
            s.notice("late");
            assert_eq!(s.queued(), 10);
            assert_eq!(queue_lens(&s), [4, 6]);
            assert_eq!(s.unsent(), b"0123456789");
        });
    }

    #[test]
    fn a_slow_subscriber_missed_its_queue_and_everything_refused_after_the_limit() {
        raw(10, async |mut s, _peer| {
            s.push(Bytes::from_static(b"0123"));
            s.advance(1);
            s.push(Bytes::from_static(b"456789"));
            assert_eq!(s.missed(), 9, "not slow yet: its queue");
            s.push(Bytes::from_static(b"abc"));
            assert_eq!(s.leaving, Some(Leave::Slow));
            assert_eq!(s.missed(), 9 + 3);
            s.push(Bytes::from_static(b"de"));
            s.notice("late");
            let late = "\r\n[logd: late]\r\n".len() as u64;
            assert_eq!(s.missed(), 9 + 3 + 2 + late);
        });
    }

    #[test]
    fn without_notices_a_notice_is_nothing() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (ours, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
            ours.set_nonblocking(true).unwrap();
            let sock = Socket::Unix(UnixStream::from_std(ours).unwrap());
            let mut s = Subscriber::new(
                1,
                "test".into(),
                crate::console::Role::ReadWrite,
                sock,
                ConsoleProtocol::Raw,
                100,
                false,
            );
            s.notice("hi");
            s.push(Bytes::from_static(b"out"));
            assert_eq!(s.unsent(), b"out");
        });
    }

    #[test]
    fn a_parting_connection_gets_its_last_words_once_it_reads_then_eof() {
        raw(100, async |s, mut peer| {
            // Fill the socket so that the last words must wait for the peer to read.
            let mut filled = 0usize;
            let mut sock = s.sock;
            let junk = [b'j'; 4096];
            loop {
                match sock.try_write_vectored(&[IoSlice::new(&junk)]) {
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut p = Parting::new(sock, "bye\n", until);
            let pending = poll_fn(|cx| Poll::Ready(p.poll(cx, std::time::Instant::now()))).await;
            assert!(pending.is_pending(), "the socket is full: it waits");
            let reader = std::thread::spawn(move || {
                let mut all = Vec::new();
                peer.read_to_end(&mut all).unwrap();
                drop(peer);
                all
            });
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                poll_fn(|cx| p.poll(cx, std::time::Instant::now())),
            )
            .await
            .expect("the peer read its last words and closed");
            let all = reader.join().unwrap();
            assert_eq!(all.len(), filled + 4);
            assert!(all.ends_with(b"bye\n"));
        });
    }

    #[test]
    fn a_first_chunk_larger_than_the_limit_is_slow_at_once() {
        raw(10, async |mut s, _peer| {
            s.push(Bytes::from_static(b"0123456789a"));
            assert_eq!(s.leaving, Some(Leave::Slow));
            assert_eq!(s.queued(), 0);
            assert!(s.queue.is_empty());
        });
    }

    #[test]
    fn written_bytes_leave_the_queue_and_count_as_sent() {
        raw(100, async |mut s, _peer| {
            for c in [&b"abc"[..], b"defg", b"hi"] {
                s.push(Bytes::copy_from_slice(c));
            }
            s.advance(2);
            assert_eq!((s.queued(), s.bytes_sent, s.front_done), (7, 2, 2));
            assert_eq!(queue_lens(&s), [3, 4, 2]);
            assert_eq!(s.unsent(), b"cdefghi");
            // The rest of the front buffer: it is popped.
            s.advance(1);
            assert_eq!((s.queued(), s.bytes_sent, s.front_done), (6, 3, 0));
            assert_eq!(queue_lens(&s), [4, 2]);
            // Across a buffer boundary.
            s.advance(5);
            assert_eq!((s.queued(), s.bytes_sent, s.front_done), (1, 8, 1));
            assert_eq!(queue_lens(&s), [2]);
            assert_eq!(s.unsent(), b"i");
            s.advance(1);
            assert_eq!((s.queued(), s.bytes_sent, s.front_done), (0, 9, 0));
            assert!(s.queue.is_empty());
            assert_eq!(s.unsent(), b"");
        });
    }

    #[test]
    fn room_freed_by_a_write_can_be_queued_again_up_to_the_limit() {
        raw(10, async |mut s, _peer| {
            s.push(Bytes::from_static(b"0123456789"));
            s.advance(4);
            assert_eq!(s.queued(), 6);
            s.push(Bytes::from_static(b"abcd"));
            assert_eq!(s.queued(), 10);
            assert_eq!(s.leaving, None);
            s.push(Bytes::from_static(b"e"));
            assert_eq!(s.leaving, Some(Leave::Slow));
            assert_eq!(s.queued(), 10);
            assert_eq!(s.bytes_sent, 4);
        });
    }

    /// Polls `poll_flush` until the queue is empty (the peer reads nothing meanwhile, so all of
    /// it must fit the socket's buffer).
    async fn flush(s: &mut Subscriber) {
        let flushed = poll_fn(|cx| {
            s.poll_flush(cx);
            if s.queued() == 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), flushed)
            .await
            .expect("the queue was written");
    }

    #[test]
    fn poll_flush_writes_the_queue_in_order_and_empties_it() {
        raw(100, async |mut s, mut peer| {
            s.push(Bytes::from_static(b"hello "));
            s.push(Bytes::from_static(b"world"));
            s.notice("n");
            flush(&mut s).await;
            let expected = b"hello world\r\n[logd: n]\r\n";
            assert_eq!(s.bytes_sent, expected.len() as u64);
            assert!(s.queue.is_empty());
            assert_eq!(s.front_done, 0);
            let mut got = vec![0u8; expected.len()];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(got, expected);
            // Room again for a whole limit's worth.
            s.push(Bytes::from(vec![b'z'; 100]));
            assert_eq!(s.queued(), 100);
            assert_eq!(s.leaving, None);
        });
    }

    #[test]
    fn a_slow_subscriber_is_sent_nothing_more() {
        raw(5, async |mut s, peer| {
            s.push(Bytes::from_static(b"abcde"));
            s.push(Bytes::from_static(b"f"));
            assert_eq!(s.leaving, Some(Leave::Slow));
            poll_fn(|cx| {
                s.poll_flush(cx);
                Poll::Ready(())
            })
            .await;
            // Its queue stays as it was, for the console to drop it with: nothing was written.
            assert_eq!((s.queued(), s.bytes_sent), (5, 0));
            peer.set_nonblocking(true).unwrap();
            let e = (&peer).read(&mut [0u8; 16]).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        });
    }

    /// A subscriber carried to a guardian that takes over after `Go`: the queued output the
    /// failed new image may have sent in part is dropped, and a notice takes its place; the
    /// connection is kept. Taken over exactly, the queue is sent as it was.
    #[test]
    fn restored_after_go_the_queue_gives_way_to_a_notice() {
        use crate::handover::state::{Carrier, Inherited, Staleness, SubscriberState};
        use std::os::fd::IntoRawFd;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for (staleness, expect) in [
                (Staleness::Exact, &b"queued"[..]),
                (
                    Staleness::AfterGo,
                    b"\r\n[logd: a re-exec failed; output may be missing here]\r\n",
                ),
            ] {
                let (ours, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
                let fd = Carrier::out().fd(&ours);
                // Given up here: `restore` adopts it by number, as a new process does.
                let _ = ours.into_raw_fd();
                let st = SubscriberState {
                    id: 3,
                    peer: "test".to_owned(),
                    since_ms: 0,
                    tcp: false,
                    fd,
                    protocol: ConsoleProtocol::Raw,
                    decoder: telnet::Decoder::default(),
                    unsent: b"queued".to_vec(),
                    bytes_sent: 10,
                    told_read_only: false,
                    role: crate::console::Role::ReadOnly,
                    ext: vec![],
                };
                let inherited = Inherited::up_to(fd.raw as usize + 1);
                let s = Subscriber::restore(&st, &inherited, 1000, true, staleness).unwrap();
                assert_eq!(s.unsent(), expect, "{staleness:?}");
                assert_eq!(s.queued(), expect.len(), "{staleness:?}");
                assert_eq!((s.id, s.bytes_sent, s.leaving), (3, 10, None));
                assert_eq!(
                    s.role,
                    crate::console::Role::ReadOnly,
                    "the role is carried"
                );
            }
        });
    }
}
