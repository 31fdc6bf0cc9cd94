//! A console: a guest's serial chardev, fanned out to its log and to any number of subscribers.
//!
//! A console is owned by its domain actor and driven from a future spawned in the domain's
//! context ([`Console::poll`]), like a stdio stream. Every byte from the guest goes, in order,
//! to the console's [`LogSink`], to a replay ring, and to each subscriber's bounded queue, as one
//! shared [`Bytes`]. Nothing a subscriber does can slow the guest down: a subscriber whose queue
//! fills is disconnected and counted.
//!
//! Input flows the other way. Subscribers allowed to write (the write-lock holder in
//! `exclusive` mode, everyone in `shared` mode) have their bytes decoded (telnet) and put in the
//! console's input buffer, which belongs to the console, not to the subscriber: input logd has
//! accepted reaches the guest even if its subscriber leaves at once. The buffer is bounded; when
//! it is full, logd stops reading from writers, so TCP pushes back on them.
//!
//! The guest side comes and goes (QEMU exits, reboots, restarts). The console stays, and so do
//! its subscribers and its log.
//!
//! Every subscriber has a role ([`access`]), decided when it connects: read-only subscribers
//! watch, read-write ones may type. The write lock goes only to a read-write subscriber.
//!
//! The parts:
//! - [`access`]: roles, and who gets which;
//! - [`attach`]: `logdctl attach`'s subscribers (a socketpair through logd's console socket)
//!   and their escape commands: who, lock, spy, replay, break;
//! - `peer`: how a subscriber is shown (`UID:NAME`, `ADDR:PORT`), names looked up off this
//!   thread;
//! - `lock`: the write lock: its holder, who may type, its moves and how they are told;
//! - `guest`: the guest side: how it is reached ([`GuestPlan`]), its output read and fanned
//!   out, its input written;
//! - `replay`: the ring of recent output a new subscriber is given first, from a line boundary;
//! - `notice`: what logd tells subscribers of its own (the greeting, the guest's comings and
//!   goings, the lock's moves, a cut-off), and the marks it may write in the log;
//! - `handover`: a console's state across a re-exec (export, restore);
//! - `subscriber`: one watching connection and its bounded queue;
//! - `socket`: a subscriber's connection (TCP, UNIX, TLS), readiness-based;
//! - [`telnet`]: the sans-IO telnet codec;
//! - [`tls`]: the optional TLS listener: handshakes, client certificates and their roles, and
//!   the TLS connection a subscriber reads and writes.

pub(crate) mod access;
pub(crate) mod attach;
mod guest;
mod handover;
mod lock;
pub(crate) mod notice;
pub(crate) mod peer;
mod replay;
mod socket;
mod subscriber;
pub mod telnet;
pub(crate) mod tls;

#[cfg(test)]
mod tests;

pub(crate) use access::{Access, ConsoleRequest, Role};
pub(crate) use guest::GuestPlan;
pub(crate) use lock::LockBy;
pub(crate) use notice::Notices;

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use logd_protocol::admin::{GuestState, StreamKind, StreamSnapshot};
use logd_protocol::{ConsoleInfo, ConsoleProtocol, DomainId, GuestSide, Position, WritePolicy};
use tokio::net::{TcpListener, UnixListener, UnixStream};

use crate::console::access::Cred;
use crate::console::guest::GuestMode;
use crate::console::replay::Replay;
use crate::console::subscriber::{Input, Leave, Parting, Socket, Subscriber};
use crate::datapath::budget::Yield;
use crate::datapath::rotate::{RotateConfig, RotateError};
use crate::datapath::sink::LogSink;
use crate::serve::events;
use logd_protocol::admin::EventKind;

/// Default bytes of recent output replayed to a new subscriber.
pub(crate) const DEFAULT_REPLAY: usize = 16 * 1024;
/// Default most subscribers at once.
pub(crate) const DEFAULT_MAX_SUBSCRIBERS: usize = 32;
/// Default output queue limit of one subscriber.
pub const DEFAULT_QUEUE_LIMIT: usize = 1024 * 1024;
/// Input accepted from subscribers and not yet taken by the guest.
const INPUT_LIMIT: usize = 64 * 1024;
/// How often logd tries to reach a guest it connects to.
const CONNECT_RETRY: Duration = Duration::from_millis(200);
/// Reads from the guest per wake-up before yielding to the thread's other work.
const READS_PER_POLL: usize = 16;
/// Room kept in the read buffer: one read takes at most this much.
const READ_CHUNK: usize = 64 * 1024;
/// Guest output read while it streams goes to the subscribers' sockets once this much has
/// come (and whenever the guest has nothing more for now): one `writev` per subscriber per
/// batch, not per read. Each write to a subscriber's socket wakes its reader; with 64 of them,
/// those wake-ups were most of the fan-out's cost (docs/PERFORMANCE.md, "Issue 18: the console
/// fan-out baseline"). Small next to the default queue limit (1 MiB), so a subscriber that
/// keeps up is never cut off for it.
const FLUSH_BATCH: usize = 256 * 1024;

/// The next subscriber id. Ids are unique in the daemon (and across its re-execs), so
/// `logdctl console kick ID` needs nothing else.
static NEXT_SUBSCRIBER_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The id the next subscriber will get (for a re-exec's state).
pub(crate) fn next_subscriber_id() -> u64 {
    NEXT_SUBSCRIBER_ID.load(std::sync::atomic::Ordering::Relaxed)
}

/// Goes on numbering subscribers from where a previous process stopped.
pub(crate) fn resume_subscriber_ids(next: u64) {
    NEXT_SUBSCRIBER_ID.fetch_max(next, std::sync::atomic::Ordering::Relaxed);
}

/// Why a console could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsoleError {
    #[error(transparent)]
    Log(#[from] RotateError),
    #[error("cannot listen for the guest on {path}: {source}")]
    GuestListen { path: PathBuf, source: io::Error },
    #[error("cannot create the guest's socketpair: {0}")]
    SocketPair(io::Error),
    #[error("cannot listen for subscribers on TCP {addr}: {source}")]
    Tcp { addr: String, source: io::Error },
    #[error("cannot listen for subscribers on {path}: {source}")]
    Unix { path: PathBuf, source: io::Error },
    #[error("cannot listen for TLS subscribers on {addr}: {source}")]
    TlsListen { addr: String, source: io::Error },
    #[error("the TLS credentials in {dir} were not read")]
    TlsCredentials { dir: PathBuf },
    #[error("{what}, kept through a crash, is not usable: {source}")]
    Kept {
        what: &'static str,
        source: io::Error,
    },
}

/// A console's settings, defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct ConsoleConfig {
    pub(crate) name: String,
    pub(crate) domain: DomainId,
    pub(crate) log: PathBuf,
    pub(crate) truncate: bool,
    pub(crate) rotate: RotateConfig,
    pub(crate) guest: GuestPlan,
    pub(crate) tcp: Option<String>,
    pub(crate) unix: Option<PathBuf>,
    pub(crate) protocol: ConsoleProtocol,
    pub(crate) write: WritePolicy,
    pub(crate) replay: usize,
    pub(crate) max_subscribers: usize,
    pub(crate) queue_limit: usize,
    /// Who may watch and who may type ([`access`]).
    pub(crate) access: Access,
    /// What logd tells subscribers, and marks in the log ([`notice`]).
    pub(crate) notices: Notices,
    /// The TLS listener's settings and credentials ([`tls`]), if it has one.
    pub(crate) tls: Option<tls::TlsConfig>,
}

/// Counters of a console beyond its sink's.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ConsoleStats {
    pub(crate) slow_disconnects: u64,
    pub(crate) refused: u64,
    pub(crate) guest_connects: u64,
}

/// One console.
pub(crate) struct Console {
    cfg: ConsoleConfig,
    sink: LogSink,
    mode: GuestMode,
    guest: Option<UnixStream>,
    input: BytesMut,
    replay: Replay,
    tcp: Option<TcpListener>,
    unix: Option<UnixListener>,
    /// The TLS listener and its handshakes in progress.
    tls: Option<tls::accept::TlsListener>,
    subs: Vec<Subscriber>,
    /// UNIX subscribers admitted, waiting for their uid's name (`peer`) before they join.
    joining: Vec<Joining>,
    /// Peers let go (refused, or cut off for falling behind): told why once their socket takes
    /// it, drained until they close.
    parting: std::collections::VecDeque<Parting>,
    /// The log's last byte from this console ended a line (where a mark may go).
    at_line_start: bool,
    /// The write lock's holder when the subscribers were last told (exclusive mode): a move
    /// since, by a leave, a grant or a subscriber's command, is told at the next poll.
    lock_holder: Option<u64>,
    stats: ConsoleStats,
    /// `console{domain, console}`: entered while the console runs, so its events name both.
    span: tracing::Span,
    yielding: Yield,
    /// Told when the guest connects (its connection) and leaves (None): the fd store keeps
    /// the live connection.
    on_guest: Option<GuestHook>,
}

/// A UNIX subscriber admitted with its role, waiting for its identity before it joins.
struct Joining {
    sock: Socket,
    role: Role,
    uid: u32,
    identity: std::pin::Pin<Box<dyn std::future::Future<Output = String>>>,
}

/// Most peers let go at once (refused, cut off); past that the oldest is closed at once.
const MAX_PARTING: usize = 16;
/// How long a refused peer is given to read its last words, at most.
const PARTING_LINGER: Duration = Duration::from_secs(5);
/// How long a subscriber cut off for falling behind is given to read what it was sent and its
/// last words: it was behind already.
const CUT_OFF_LINGER: Duration = Duration::from_secs(30);

/// What a console tells when its guest connects or leaves.
pub(crate) type GuestHook = Box<dyn Fn(Option<std::os::fd::BorrowedFd<'_>>)>;

/// A console's sockets kept by someone else (systemd's fd store, through a crash), to be taken
/// instead of made: the listeners are not bound again, the guest's connection goes on.
#[derive(Debug, Default)]
pub(crate) struct KeptSockets {
    pub(crate) guest_listener: Option<OwnedFd>,
    pub(crate) guest: Option<OwnedFd>,
    pub(crate) tcp: Option<OwnedFd>,
    pub(crate) unix: Option<OwnedFd>,
}

impl Console {
    /// Sets the console up: log, guest side, listeners. Must run on the thread that will drive
    /// it. With [`GuestPlan::Fd`] returns the guest's end of the socketpair (if one was made).
    ///
    /// The sockets in `kept` are taken rather than made (those kept through a crash by systemd's
    /// fd store); a socket not kept is made. A kept guest connection is the guest, in any guest
    /// mode; with [`GuestPlan::Fd`] no socketpair is made then.
    pub(crate) fn open_with(
        cfg: ConsoleConfig,
        kept: KeptSockets,
    ) -> Result<(Console, Option<OwnedFd>), ConsoleError> {
        let sink = LogSink::open(cfg.log.as_path().into(), cfg.rotate, cfg.truncate)?;
        let mut guest = match kept.guest {
            Some(fd) => Some(kept_unix_stream(fd).map_err(|source| ConsoleError::Kept {
                what: "the guest's connection",
                source,
            })?),
            None => None,
        };
        let mut guest_fd = None;
        let mode = match &cfg.guest {
            GuestPlan::Listen(path) => GuestMode::Listen {
                listener: match kept.guest_listener {
                    Some(fd) => kept_unix_listener(fd).map_err(|source| ConsoleError::Kept {
                        what: "the guest's listener",
                        source,
                    })?,
                    None => bind_unix(path).map_err(|source| ConsoleError::GuestListen {
                        path: path.clone(),
                        source,
                    })?,
                },
                path: path.clone(),
            },
            GuestPlan::Connect(path) => GuestMode::Connect {
                path: path.clone(),
                retry: Box::pin(tokio::time::sleep(Duration::ZERO)),
            },
            GuestPlan::Fd if guest.is_some() => GuestMode::Fd,
            GuestPlan::Fd => {
                let (ours, theirs) =
                    std::os::unix::net::UnixStream::pair().map_err(ConsoleError::SocketPair)?;
                ours.set_nonblocking(true)
                    .map_err(ConsoleError::SocketPair)?;
                guest = Some(UnixStream::from_std(ours).map_err(ConsoleError::SocketPair)?);
                guest_fd = Some(OwnedFd::from(theirs));
                GuestMode::Fd
            }
        };
        let tcp = match (&cfg.tcp, kept.tcp) {
            (Some(_), Some(fd)) => {
                Some(kept_tcp_listener(fd).map_err(|source| ConsoleError::Kept {
                    what: "the subscribers' TCP listener",
                    source,
                })?)
            }
            (Some(addr), None) => {
                let l = std::net::TcpListener::bind(addr.as_str())
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .and_then(TcpListener::from_std)
                    .map_err(|source| ConsoleError::Tcp {
                        addr: addr.clone(),
                        source,
                    })?;
                Some(l)
            }
            (None, _) => None,
        };
        let unix = match (&cfg.unix, kept.unix) {
            (Some(_), Some(fd)) => {
                Some(kept_unix_listener(fd).map_err(|source| ConsoleError::Kept {
                    what: "the subscribers' UNIX listener",
                    source,
                })?)
            }
            (Some(path), None) => Some(
                bind_unix(path)
                    .and_then(|l| set_unix_mode(path, &cfg.access).map(|()| l))
                    .map_err(|source| ConsoleError::Unix {
                        path: path.clone(),
                        source,
                    })?,
            ),
            (None, _) => None,
        };
        let tls = match &cfg.tls {
            Some(t) => Some(tls::accept::TlsListener::open(t, None)?),
            None => None,
        };
        let replay = Replay::new(cfg.replay);
        let span = tracing::info_span!("console", domain = %cfg.domain.name, console = %cfg.name);
        let mut c = Console {
            span,
            yielding: Yield::default(),
            cfg,
            sink,
            mode,
            guest,
            input: BytesMut::new(),
            replay,
            tcp,
            unix,
            tls,
            subs: Vec::new(),
            joining: Vec::new(),
            parting: Default::default(),
            at_line_start: true,
            lock_holder: None,
            stats: ConsoleStats::default(),
            on_guest: None,
        };
        if c.guest.is_some() {
            c.stats.guest_connects += 1;
        }
        Ok((c, guest_fd))
    }

    pub(crate) fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Its settings (a restored console's as its first process had them).
    /// Tells `hook` from now on when the guest connects and leaves.
    pub(crate) fn on_guest(&mut self, hook: GuestHook) {
        self.on_guest = Some(hook);
    }

    /// The console's sockets now: its listeners and the guest's connection, if any.
    pub(crate) fn sockets(
        &self,
    ) -> Vec<(crate::host::fdstore::ConsoleFd, std::os::fd::BorrowedFd<'_>)> {
        use crate::host::fdstore::ConsoleFd as K;
        use std::os::fd::AsFd;
        let mut out = Vec::with_capacity(4);
        if let GuestMode::Listen { listener, .. } = &self.mode {
            out.push((K::GuestListener, listener.as_fd()));
        }
        if let Some(g) = &self.guest {
            out.push((K::Guest, g.as_fd()));
        }
        if let Some(l) = &self.tcp {
            out.push((K::Tcp, l.as_fd()));
        }
        if let Some(l) = &self.unix {
            out.push((K::Unix, l.as_fd()));
        }
        out
    }

    pub(crate) fn config(&self) -> &ConsoleConfig {
        &self.cfg
    }

    pub(crate) fn path(&self) -> &Path {
        self.sink.path()
    }

    pub(crate) fn sink(&self) -> &LogSink {
        &self.sink
    }

    pub(crate) fn sink_mut(&mut self) -> &mut LogSink {
        &mut self.sink
    }

    pub(crate) fn position(&self) -> Position {
        self.sink.position()
    }

    /// Input not yet written to the guest, and output queued for subscribers and not yet sent
    /// (bytes).
    pub(crate) fn undelivered(&self) -> (usize, usize) {
        let queued = self.subs.iter().map(Subscriber::queued).sum();
        (self.input.len(), queued)
    }

    /// The TCP address subscribers connect to.
    pub(crate) fn tcp_addr(&self) -> Option<String> {
        self.tcp
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string())
    }

    pub(crate) fn info(&self) -> ConsoleInfo {
        ConsoleInfo {
            domain: self.cfg.domain.clone(),
            name: self.cfg.name.clone(),
            log: self.path().display().to_string(),
            guest: match &self.cfg.guest {
                GuestPlan::Listen(p) => GuestSide::Listen {
                    path: p.display().to_string(),
                },
                GuestPlan::Connect(p) => GuestSide::Connect {
                    path: p.display().to_string(),
                },
                GuestPlan::Fd => GuestSide::Fd,
            },
            guest_connected: self.guest.is_some(),
            tcp: self.tcp_addr(),
            unix: self.cfg.unix.as_ref().map(|p| p.display().to_string()),
            protocol: self.cfg.protocol,
            write: self.cfg.write,
            subscribers: self.subs.len() as u32,
            bytes_in: self.sink.stats().bytes_in,
            slow_disconnects: self.stats.slow_disconnects,
        }
    }

    /// Whether this console has the subscriber.
    pub(crate) fn has_subscriber(&self, id: u64) -> bool {
        self.subs.iter().any(|s| s.id == id)
    }

    /// Disconnects a subscriber (an operator's kick). Returns false if it is not here.
    ///
    /// It is marked and its goodbye written now; the console's next poll (which actix runs
    /// right after the message that called this) drops it and passes the lock on.
    pub(crate) fn kick(&mut self, id: u64, by: &str) -> bool {
        let Some(s) = self.subs.iter_mut().find(|s| s.id == id) else {
            return false;
        };
        s.say_goodbye(&format!("disconnected by the operator {by}"));
        s.leaving = Some(Leave::Kicked);
        true
    }

    /// The console as the admin socket shows it.
    pub(crate) fn snapshot(&mut self) -> StreamSnapshot {
        let guest = match (&self.guest, &self.mode) {
            (Some(_), _) => GuestState::Connected,
            (None, GuestMode::Fd) => GuestState::Eof,
            (None, _) => GuestState::Waiting,
        };
        let mut snap = self.sink.snapshot(
            StreamKind::Console {
                name: self.cfg.name.clone(),
            },
            guest,
        );
        snap.slow_disconnects = self.stats.slow_disconnects;
        snap.refused = self.stats.refused;
        snap.subscribers = self.subscriber_snapshots();
        snap
    }

    /// Drives everything; never finishes (the console lives until it is removed).
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let span = self.span.clone();
        let _e = span.enter();
        let yielding = self.yielding.poll(cx).is_pending();
        // The log's writes that came back; the next ones go.
        self.sink.poll(cx);
        self.poll_guest_connect(cx);
        let more = !yielding && self.poll_guest_output(cx);
        self.poll_accept(cx);
        let writer_more = self.poll_subscribers(cx);
        self.poll_guest_input(cx);
        // The log's batch goes to its writer (a small one after a moment).
        self.sink.poll_linger(cx);
        if writer_more && self.input.len() < INPUT_LIMIT {
            // The guest took input, so there is room for what a writer still has. (While the
            // buffer stays full, the guest's write readiness wakes us.)
            cx.waker().wake_by_ref();
        }
        if more {
            // Data is still coming: resume after the event loop has served the others.
            self.yielding.start(cx);
        }
        Poll::Pending
    }

    /// Reads what the guest has written so far, without waiting (GetPosition, ReadLog), as far
    /// as the log has room. Returns true when the guest side is empty (or gone).
    ///
    /// This reads the socket directly, until EAGAIN: tokio's cached readiness may say "not
    /// ready" for data that has arrived since the last poll, and polling here would replace the
    /// pump's waker. Reading to EAGAIN leaves nothing behind that an edge-triggered wake-up could
    /// miss.
    pub(crate) fn drain(&mut self) -> bool {
        let mut buf = vec![0u8; READ_CHUNK];
        while let Some(guest) = &self.guest {
            if self.sink.room() == 0 && !self.sink.is_stalled() {
                return false;
            }
            let want = self.sink.room().clamp(1, READ_CHUNK);
            self.sink.reading(want);
            let res = nix::unistd::read(guest, &mut buf[..want]);
            if !matches!(res, Ok(n) if n > 0) {
                self.sink.read_nothing();
            }
            match res {
                Ok(0) => self.guest_gone("EOF"),
                Ok(n) => self.output(Bytes::copy_from_slice(&buf[..n])),
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return true, // EAGAIN: everything is in
            }
        }
        true
    }

    /// `Ready` once what the guest had written is in the log's file (or its file system has
    /// stalled); the task is woken as the log's writes come back.
    pub(crate) fn poll_settled(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<crate::datapath::stream::Settled> {
        use crate::datapath::stream::Settled;
        loop {
            self.sink.poll(cx);
            let empty = self.drain();
            self.sink.poll(cx);
            if self.sink.is_stalled() {
                return Poll::Ready(Settled::Stalled);
            }
            if !empty {
                if self.sink.room() > 0 {
                    continue;
                }
                return Poll::Pending;
            }
            return if self.sink.is_flushed() {
                Poll::Ready(Settled::Done)
            } else {
                Poll::Pending
            };
        }
    }

    /// One chunk of guest output, to everyone.
    fn output(&mut self, chunk: Bytes) {
        self.sink.write(&chunk);
        self.at_line_start = chunk.last() == Some(&b'\n');
        self.replay.push(&chunk);
        let mut escaped: Option<Bytes> = None;
        for s in &mut self.subs {
            match s.protocol() {
                ConsoleProtocol::Raw => s.push(chunk.clone()),
                ConsoleProtocol::Telnet => {
                    let e = escaped.get_or_insert_with(|| telnet::escape(&chunk));
                    s.push(e.clone());
                }
            }
        }
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) {
        self.poll_joining(cx);
        self.poll_parting(cx);
        self.poll_tls(cx);
        loop {
            if let Some(Poll::Ready(r)) = self.tcp.as_ref().map(|l| l.poll_accept(cx)) {
                match r {
                    Ok((s, peer)) => {
                        let role = self.cfg.access.tcp_role();
                        self.join(Socket::Tcp(s), peer.to_string(), role, None, cx);
                    }
                    Err(e) => {
                        tracing::warn!(cause = %e, "accepting a TCP subscriber failed");
                        return;
                    }
                }
            } else if let Some(Poll::Ready(r)) = self.unix.as_ref().map(|l| l.poll_accept(cx)) {
                match r {
                    Ok((s, _)) => self.admit_unix(s, cx),
                    Err(e) => {
                        tracing::warn!(cause = %e, "accepting a UNIX subscriber failed");
                        return;
                    }
                }
            } else {
                return;
            }
        }
    }

    /// A UNIX peer: its role from its credentials, or a refusal; then it joins, once its
    /// identity is known (at once if its uid's name is cached).
    fn admit_unix(&mut self, s: UnixStream, cx: &mut Context<'_>) {
        let cred = match access::peer_cred(&s) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(cause = %e, "cannot read a UNIX subscriber's credentials; dropped");
                return;
            }
        };
        let daemon_uid = nix::unistd::geteuid().as_raw();
        let Some(role) = self.cfg.access.role_of(&cred, daemon_uid) else {
            self.refuse_unix(Socket::Unix(s), &cred, cx);
            return;
        };
        let sock = Socket::Unix(s);
        match peer::cached_name(cred.uid) {
            Some(name) => self.join(
                sock,
                peer::unix_identity(cred.uid, Some(&name)),
                role,
                Some(cred.uid),
                cx,
            ),
            // Those waiting count towards the limit: `join` refuses this one.
            None if self.subs.len() + self.joining.len() >= self.cfg.max_subscribers => self.join(
                sock,
                peer::unix_identity(cred.uid, None),
                role,
                Some(cred.uid),
                cx,
            ),
            None => {
                self.joining.push(Joining {
                    sock,
                    role,
                    uid: cred.uid,
                    identity: peer::unix_identity_later(cred.uid),
                });
                self.poll_joining(cx);
            }
        }
    }

    /// A UNIX peer in none of the console's lists: told why, logged, counted.
    fn refuse_unix(&mut self, s: Socket, cred: &Cred, cx: &mut Context<'_>) {
        self.stats.refused += 1;
        let name = peer::cached_name(cred.uid);
        let identity = peer::unix_identity(cred.uid, name.as_deref());
        tracing::warn!(peer = %identity, uid = cred.uid, gid = cred.gid, "refused a subscriber: not in the console's read_write or read_only lists");
        events::emit(|| EventKind::SubscriberRefused {
            domain: self.cfg.domain.name.clone(),
            console: self.cfg.name.clone(),
            peer: identity.clone(),
            reason: "not allowed".into(),
        });
        let who = match &name {
            Some(n) => format!("uid {} ({n})", cred.uid),
            None => format!("uid {}", cred.uid),
        };
        let line = format!(
            "[logd: refused: {who} may not use console {}: only root, logd's own uid and the \
             users and groups of its read_write and read_only lists may]\r\n",
            self.cfg.name
        );
        self.turn_away(s, &line, cx);
    }

    /// Tells a refused peer why, and drains it until it closes.
    fn turn_away(&mut self, sock: Socket, line: &str, cx: &mut Context<'_>) {
        let until = std::time::Instant::now() + PARTING_LINGER;
        self.let_go(Parting::new(sock, line, until), cx);
    }

    /// Lets a peer go ([`Parting`]): the oldest one still parting is closed if there are too
    /// many.
    fn let_go(&mut self, p: Parting, cx: &mut Context<'_>) {
        if self.parting.len() >= MAX_PARTING {
            self.parting.pop_front();
        }
        self.parting.push_back(p);
        self.poll_parting(cx);
    }

    /// Drops the peers let go that have closed, or have been given long enough.
    fn poll_parting(&mut self, cx: &mut Context<'_>) {
        let now = std::time::Instant::now();
        self.parting.retain_mut(|p| p.poll(cx, now).is_pending());
    }

    /// Joins the UNIX subscribers whose identity has come.
    fn poll_joining(&mut self, cx: &mut Context<'_>) {
        let mut i = 0;
        while i < self.joining.len() {
            match std::future::Future::poll(self.joining[i].identity.as_mut(), cx) {
                Poll::Pending => i += 1,
                Poll::Ready(identity) => {
                    let j = self.joining.remove(i);
                    self.join(j.sock, identity, j.role, Some(j.uid), cx);
                }
            }
        }
    }

    fn join(
        &mut self,
        sock: Socket,
        peer: String,
        role: Role,
        owner: Option<u32>,
        cx: &mut Context<'_>,
    ) {
        if let Err(sock) = self.add_subscriber(sock, peer, role, self.cfg.protocol, owner) {
            let line = format!("[logd: {}]\r\n", self.full());
            self.turn_away(sock, &line, cx);
        }
    }

    /// Refuses a subscriber for the console being full: counted, logged, an event. Returns
    /// what to tell it.
    fn refuse_full(&mut self, peer: &str) -> String {
        self.stats.refused += 1;
        tracing::info!(%peer, "refused a subscriber: max_subscribers reached");
        events::emit(|| EventKind::SubscriberRefused {
            domain: self.cfg.domain.name.clone(),
            console: self.cfg.name.clone(),
            peer: peer.to_owned(),
            reason: "full".into(),
        });
        self.full()
    }

    fn full(&self) -> String {
        format!(
            "console {} is full ({} subscribers); try again later",
            self.cfg.name, self.cfg.max_subscribers
        )
    }

    /// A new subscriber, greeted and given the replay; its id. The socket back if the console
    /// is full (refused: counted, logged).
    fn add_subscriber(
        &mut self,
        sock: Socket,
        peer: String,
        role: Role,
        protocol: ConsoleProtocol,
        owner: Option<u32>,
    ) -> Result<u64, Socket> {
        if self.subs.len() >= self.cfg.max_subscribers {
            self.refuse_full(&peer);
            return Err(sock);
        }
        let id = NEXT_SUBSCRIBER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut s = Subscriber::new(
            id,
            peer,
            role,
            sock,
            protocol,
            self.cfg.queue_limit,
            self.cfg.notices.subscribers,
        );
        s.owner = owner;
        // The greeting, then the replay (it may end mid-line, at a prompt: the live output
        // goes on from there), then live: all pushed from this thread, so nothing falls in
        // between.
        s.notice(&self.greeting_for(&s));
        for c in self.replay.lines() {
            match protocol {
                ConsoleProtocol::Raw => s.push(c),
                ConsoleProtocol::Telnet => s.push(telnet::escape(&c)),
            }
        }
        tracing::info!(subscriber = id, peer = %s.peer, %role, "subscriber joined");
        events::emit(|| EventKind::SubscriberJoined {
            domain: self.cfg.domain.name.clone(),
            console: self.cfg.name.clone(),
            id,
            peer: s.peer.clone(),
        });
        self.subs.push(s);
        // Greeted as the holder if it is: no notice of a move.
        self.lock_holder = self.holder().map(|h| self.subs[h].id);
        Ok(id)
    }

    /// What subscriber `s`, about to join, is told first: its role, who may type.
    fn greeting_for(&self, s: &Subscriber) -> String {
        let holder = self.holder().map(|h| &self.subs[h]);
        // Joining last, it holds the lock if no one else may.
        let you_hold = s.role == Role::ReadWrite && holder.is_none();
        let holder = holder.map(|h| notice::who(&h.peer, h.id));
        notice::greeting(
            &format!("{}/{}", self.cfg.domain.name, self.cfg.name),
            s.role,
            self.cfg.write,
            you_hold,
            holder.as_deref(),
            self.guest.is_some(),
        )
    }

    /// Serves the subscribers: their input, their queues, leavers and the write lock. Returns
    /// true when a writer may have more input than the console's input buffer had room for.
    fn poll_subscribers(&mut self, cx: &mut Context<'_>) -> bool {
        let mut typed = Vec::new();
        let mut discard = Vec::new();
        let mut writer_more = false;
        let holder = self.holder();
        for i in 0..self.subs.len() {
            let writer = self.subs[i].role == Role::ReadWrite
                && match self.cfg.write {
                    WritePolicy::Exclusive => holder == Some(i),
                    WritePolicy::Shared => true,
                    WritePolicy::None => false,
                };
            let room = INPUT_LIMIT.saturating_sub(self.input.len() + typed.len());
            let s = &mut self.subs[i];
            if writer {
                writer_more |= s.poll_input(cx, room, &mut typed) == Input::More;
                let breaks = s.take_breaks();
                if breaks > 0 {
                    // The guest's chardev is a byte stream: a break has no byte to be, and
                    // none is passed on (docs/CONSOLES.md, "BREAK").
                    tracing::info!(
                        subscriber = s.id,
                        peer = %s.peer,
                        breaks,
                        "telnet BREAK not passed to the guest: its chardev carries bytes only"
                    );
                    s.notice(notice::BREAK_NOT_CARRIED);
                }
            } else {
                discard.clear();
                if s.poll_input(cx, INPUT_LIMIT, &mut discard) == Input::More {
                    // Discarded input needs no room: read on after the others had a turn.
                    cx.waker().wake_by_ref();
                }
                // A break from a subscriber that may not type is input like the rest.
                let breaks = s.take_breaks();
                if (!discard.is_empty() || breaks > 0) && !s.told_read_only {
                    s.told_read_only = true;
                    s.notice(match (s.role, self.cfg.write) {
                        (_, WritePolicy::None) => "this console is read-only; input is discarded",
                        (Role::ReadOnly, _) => {
                            "you are a read-only subscriber of this console; your input is \
                             discarded"
                        }
                        _ => "another subscriber holds the write lock; your input is discarded",
                    });
                }
            }
            s.poll_flush(cx);
        }
        self.input.extend_from_slice(&typed);
        // Leavers go; the write lock passes to the longest-connected read-write one left.
        let had_holder = self.lock_holder;
        let mut i = 0;
        while i < self.subs.len() {
            match self.subs[i].leaving {
                None => i += 1,
                Some(why) => {
                    let s = self.subs.remove(i);
                    let (id, missed) = (s.id, s.missed());
                    if why == Leave::Slow {
                        self.stats.slow_disconnects += 1;
                        tracing::info!(subscriber = id, peer = %s.peer, sent = s.bytes_sent, missed, "subscriber cut off: it fell behind");
                    } else {
                        tracing::info!(subscriber = id, peer = %s.peer, reason = ?why, sent = s.bytes_sent, "subscriber left");
                    }
                    events::emit(|| EventKind::SubscriberLeft {
                        domain: self.cfg.domain.name.clone(),
                        console: self.cfg.name.clone(),
                        id,
                        reason: format!("{why:?}").to_lowercase(),
                    });
                    if why == Leave::Slow {
                        // Told why and what it missed once its socket takes it: now it is
                        // full. Its queue goes.
                        let line = format!(
                            "\r\n[logd: {}]\r\n",
                            notice::cut_off(self.cfg.queue_limit, missed)
                        );
                        let until = std::time::Instant::now() + CUT_OFF_LINGER;
                        self.let_go(s.part(&line, until), cx);
                    }
                }
            }
        }
        self.tell_lock_moves(had_holder, cx);
        writer_more
    }

    /// Appends a message (from `AppendLog`) to the console's log only, after the guest output
    /// already received. Subscribers do not see it: it is not console output.
    pub(crate) fn append(&mut self, message: &[u8]) {
        self.drain();
        self.sink.write(message);
        if let Some(&last) = message.last() {
            self.at_line_start = last == b'\n';
        }
    }

    /// The guest came (`up`) or went: subscribers are told, and the log marked if the console
    /// says so. Neither is console output: the replay ring does not keep it.
    pub(super) fn guest_notice(&mut self, up: bool) {
        for s in &mut self.subs {
            s.notice(notice::guest(up));
        }
        if self.cfg.notices.mark_log {
            let mark = notice::mark(up, crate::clock::now_unix_ms(), self.at_line_start);
            self.sink.write(mark.as_bytes());
            self.at_line_start = true;
        }
    }

    /// Tells subscribers the console is going away (it is dropped right after).
    pub(crate) fn close(&mut self) {
        let why = format!("console {} removed", self.cfg.name);
        self.close_saying(&why);
    }

    /// Tells each subscriber `why` and removes the socket files this console bound (the guest's
    /// listening socket and the subscribers' UNIX socket), so that none is left behind: at its
    /// removal, and when logd stops. Its listeners close with it.
    pub(crate) fn close_saying(&mut self, why: &str) {
        for s in &mut self.subs {
            s.say_goodbye(why);
        }
        if let Some(p) = &self.cfg.unix {
            crate::host::sockdir::remove_socket(p);
        }
        if let GuestMode::Listen { path, .. } = &self.mode {
            crate::host::sockdir::remove_socket(path);
        }
    }
}

/// Binds a UNIX listener mode 0600, replacing a stale socket file (one nobody listens on) but
/// never a live one, a symlink or any other file ([`crate::host::sockdir::bind`], as the
/// daemon's own sockets).
/// A kept fd as the guest's connection: a connected UNIX stream socket.
fn kept_unix_stream(fd: OwnedFd) -> io::Result<UnixStream> {
    let s = std::os::unix::net::UnixStream::from(fd);
    s.peer_addr()?;
    s.set_nonblocking(true)?;
    UnixStream::from_std(s)
}

/// A kept fd as a UNIX listener (`local_addr` fails on any other socket family).
fn kept_unix_listener(fd: OwnedFd) -> io::Result<UnixListener> {
    let l = std::os::unix::net::UnixListener::from(fd);
    l.local_addr()?;
    l.set_nonblocking(true)?;
    UnixListener::from_std(l)
}

/// A kept fd as a TCP listener.
fn kept_tcp_listener(fd: OwnedFd) -> io::Result<TcpListener> {
    let l = std::net::TcpListener::from(fd);
    l.local_addr()?;
    l.set_nonblocking(true)?;
    TcpListener::from_std(l)
}

/// The subscribers' socket's mode: 0600 (logd's uid; root passes anyway) without lists; 0666
/// when the lists name other users, who must be able to connect for logd to judge them
/// (`SO_PEERCRED`). The directory's mode is the operator's.
fn set_unix_mode(path: &Path, access: &Access) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if access.has_lists() { 0o666 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    use crate::host::sockdir::SockDirError;
    let l = crate::host::sockdir::bind(path).map_err(|e| match e {
        SockDirError::Bind { source, .. } => source,
        SockDirError::InUse { .. } => io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening there",
        ),
        SockDirError::InTheWay { why, .. } => io::Error::new(io::ErrorKind::AlreadyExists, why),
        e => io::Error::other(e.to_string()),
    })?;
    l.set_nonblocking(true)?;
    UnixListener::from_std(l)
}
