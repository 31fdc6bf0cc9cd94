//! The domain actor: one per guest, owning that guest's log streams.
//!
//! The registry creates a domain on one of the worker arbiters and routes every request about
//! the domain's logs to it. The domain drives its streams itself: each open stream has a pump
//! future spawned in the domain's own context, which moves bytes from the pipe to the file on
//! the domain's thread. No message is sent per chunk; messages are for control (open, position,
//! read, append, drain).
//!
//! When a stream reaches EOF the domain closes it and tells the registry, which stops the
//! domain once it has no streams and no requests in flight.

mod handover;
pub use handover::{Backlog, Freeze, GetBacklog, Thaw, ThawCause};

use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::Poll;

use std::sync::Arc;

use actix::prelude::*;
use logd_protocol::{ConsoleInfo, Position, ReadFrom};

use crate::console::{Console, ConsoleConfig, ConsoleError};
use crate::datapath::disk::Disk;
use crate::datapath::rotate::{self, ReadOutcome, RotateConfig, RotateError, RotatingFile};
use crate::datapath::sink::LogSink;
use crate::datapath::stream::{LogStream, RestoreError, Settled, StreamError};
use crate::serve::events;
use logd_protocol::admin::EventKind;

/// Why a domain request failed.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    File(#[from] RotateError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error("domain {domain} already has a console named {name:?}")]
    ConsoleExists { domain: String, name: String },
    #[error("domain {domain} has no console named {name:?}")]
    NoConsole { domain: String, name: String },
    #[error(
        "log {path}: its file system has not finished a write for {bound:?}; its bytes are \
         dropped (and counted) until it does"
    )]
    Stalled {
        path: PathBuf,
        bound: std::time::Duration,
    },
}

/// Why a domain could not freeze for a re-exec (which is then abandoned).
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    #[error("domain {domain}: {source}")]
    Flush { domain: String, source: DomainError },
    #[error("domain {domain}: cannot mark an fd to be carried: {source}")]
    Mark {
        domain: String,
        source: std::io::Error,
    },
}

/// Why a domain carried over by a re-exec could not be rebuilt (the new process then refuses
/// to take over, and the old one goes on).
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("domain {domain}: log {path}: {source}")]
    Log {
        domain: String,
        path: PathBuf,
        source: Box<RestoreError>,
    },
    #[error("domain {domain}: console {name}: {source}")]
    Console {
        domain: String,
        name: String,
        source: Box<RestoreError>,
    },
    #[error("the domains' answers were lost")]
    Lost,
}

/// What a domain drives: a stdio pipe or a console, each with its log.
// Pipes are the common case (thousands of idle domains) and stay inline; boxing them would add
// an allocation per domain. Consoles are few and large, so they are boxed.
#[allow(clippy::large_enum_variant)]
pub enum Stream {
    Pipe(LogStream),
    Console(Box<Console>),
}

impl Stream {
    fn sink(&self) -> &LogSink {
        match self {
            Stream::Pipe(p) => p.sink(),
            Stream::Console(c) => c.sink(),
        }
    }

    fn path(&self) -> &Path {
        self.sink().path()
    }

    /// `Ready` once what the source has written so far (with `drain`; else what logd has read
    /// of it) is in the file, or the file system has stalled.
    fn poll_settled(&mut self, cx: &mut std::task::Context<'_>, drain: bool) -> Poll<Settled> {
        if !drain {
            let sink = match self {
                Stream::Pipe(p) => p.sink_mut(),
                Stream::Console(c) => c.sink_mut(),
            };
            sink.poll(cx);
            return if sink.is_flushed() {
                Poll::Ready(Settled::Done)
            } else if sink.is_stalled() {
                Poll::Ready(Settled::Stalled)
            } else {
                Poll::Pending
            };
        }
        match self {
            Stream::Pipe(p) => p.poll_settled(cx),
            Stream::Console(c) => c.poll_settled(cx),
        }
    }
}

/// Waits until the streams of `path` (every stream, with None) have taken in what their
/// sources wrote (with `drain`) and their files have it, for at most the stall bound. Fails
/// naming a stream whose file system stalled.
struct Settle {
    path: Option<PathBuf>,
    drain: bool,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Settle {
    fn new(path: Option<PathBuf>) -> Settle {
        Settle {
            path,
            drain: true,
            deadline: Box::pin(tokio::time::sleep(crate::datapath::sink::STALL_BOUND)),
        }
    }

    /// Only what logd has read already: the sources are not read (a re-exec's freeze leaves
    /// their bytes in the kernel for whichever process reads next).
    fn written(mut self) -> Settle {
        self.drain = false;
        self
    }
}

impl ActorFuture<Domain> for Settle {
    type Output = Result<(), DomainError>;

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Domain,
        _ctx: &mut Context<Domain>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut waiting = None;
        for s in act.streams.iter_mut() {
            if this.path.as_deref().is_some_and(|p| s.path() != p) {
                continue;
            }
            match s.poll_settled(task, this.drain) {
                Poll::Ready(Settled::Done) => {}
                Poll::Ready(Settled::Stalled) => return Poll::Ready(Err(stalled(s.path()))),
                Poll::Pending => waiting = Some(s.path().to_owned()),
            }
        }
        match waiting {
            None => Poll::Ready(Ok(())),
            Some(p) if this.deadline.as_mut().poll(task).is_ready() => {
                Poll::Ready(Err(stalled(&p)))
            }
            Some(_) => Poll::Pending,
        }
    }
}

/// The end of the log at `path` once its file has every byte its source wrote. The log may
/// have closed meanwhile (its writers gone): its end is then on disk.
fn settled_position(path: PathBuf) -> ResponseActFuture<Domain, Result<Position, DomainError>> {
    Box::pin(
        Settle::new(Some(path.clone())).map(move |settled, act: &mut Domain, _| {
            settled?;
            match act.find(&path) {
                Some(s) => Ok(s.sink().position()),
                None => Ok(rotate::end_position(&path)?),
            }
        }),
    )
}

fn stalled(path: &Path) -> DomainError {
    DomainError::Stalled {
        path: path.to_owned(),
        bound: crate::datapath::sink::STALL_BOUND,
    }
}

/// A guest's actor.
pub struct Domain {
    /// Shared with the registry's entry.
    name: Arc<str>,
    /// In no particular order (the pump polls them all). Not `Option`s: a slot with room for
    /// "none" would be 8 bytes larger than a stream.
    streams: Vec<Stream>,
    /// A re-exec is under way: the pump ends when next polled, and thawing starts it again.
    frozen: bool,
    /// The registry sent [`Stop`]. Until then the actor runs even with no stream and no strong
    /// address (the registry keeps a weak one).
    stop_asked: bool,
    /// The [`Pump`] is spawned.
    pumping: bool,
}

impl Domain {
    pub fn new(name: Arc<str>) -> Self {
        Domain {
            name,
            streams: Vec::new(),
            frozen: false,
            stop_asked: false,
            pumping: false,
        }
    }

    /// A domain carried over from the previous process: frozen until [`Thaw`].
    pub fn restored(name: Arc<str>) -> Self {
        Domain {
            frozen: true,
            ..Domain::new(name)
        }
    }

    fn frozen(&self) -> bool {
        self.frozen
    }

    fn find(&mut self, path: &Path) -> Option<&mut Stream> {
        self.streams.iter_mut().find(|s| s.path() == path)
    }

    fn console_slot(&self, name: &str) -> Option<usize> {
        self.streams
            .iter()
            .position(|s| matches!(s, Stream::Console(c) if c.name() == name))
    }

    /// Adds a stream and makes sure the pump runs (unless frozen: thawing starts it). A pump
    /// already spawned polls the new stream when the handler returns: actix polls every future
    /// of a context after each message.
    fn add(&mut self, stream: Stream, ctx: &mut Context<Self>) {
        self.insert(stream);
        self.pump(ctx);
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        if !self.frozen() && !self.pumping {
            self.pumping = true;
            ctx.spawn(Pump);
        }
    }

    fn insert(&mut self, mut stream: Stream) {
        if let Stream::Console(c) = &mut stream {
            // The fd store keeps the guest's live connection.
            let (domain, name) = (c.config().domain.clone(), c.name().to_owned());
            c.on_guest(Box::new(move |fd| {
                crate::control::stored::console_guest(&domain, &name, fd)
            }));
        }
        // One slot at a time: most domains have one stream, and a slot is over a hundred
        // bytes (Vec's first growth would make room for four).
        self.streams.reserve_exact(1);
        self.streams.push(stream);
    }

    fn span(&self) -> tracing::Span {
        tracing::info_span!("domain", domain = %self.name)
    }
}

/// Domain actors running in this process.
static RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many domain actors run now: once every `Stop` has been handled, as many as the
/// registry has domains (the metrics endpoint shows both, so a leak would show).
pub fn running() -> usize {
    RUNNING.load(std::sync::atomic::Ordering::Relaxed)
}

impl Actor for Domain {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        RUNNING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        RUNNING.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// actix stops an actor once nothing can reach it: no strong address and no future left.
    /// A domain is stopped by the registry alone ([`Stop`]), since the registry holds only a
    /// weak address and a domain may have no stream for a moment (before its first open).
    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        if self.stop_asked {
            Running::Stop
        } else {
            Running::Continue
        }
    }
}

/// Drives every stream of a domain from inside the domain's context: one per domain, with no
/// state of its own (a zero-sized future, so spawning it allocates nothing).
struct Pump;

impl ActorFuture<Domain> for Pump {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Domain,
        _ctx: &mut Context<Domain>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        if act.frozen() {
            act.pumping = false;
            return Poll::Ready(()); // frozen for a re-exec: thawing starts a new pump
        }
        let mut slot = 0;
        while slot < act.streams.len() {
            let closed = match &mut act.streams[slot] {
                // A console never finishes: it lives until it is removed.
                Stream::Console(c) => c.poll(task).is_ready(),
                Stream::Pipe(p) => p.poll_pump(task).is_ready(),
            };
            if closed {
                // The next stream moves into this slot.
                if let Some(path) = act.close_slot(slot) {
                    announce(StreamClosed { path });
                }
            } else {
                slot += 1;
            }
        }
        Poll::Pending
    }
}

impl Domain {
    /// Closes the stream in `slot` (every writer has gone); returns its path as the registry
    /// shares it, for the registry to release.
    fn close_slot(&mut self, slot: usize) -> Option<Arc<Path>> {
        if slot >= self.streams.len() {
            return None;
        }
        let stream = self.streams.remove(slot);
        let stats = stream.sink().stats();
        let _e = self.span().entered();
        tracing::info!(
            path = %stream.path().display(),
            bytes_in = stats.bytes_in,
            bytes_written = stats.bytes_written,
            dropped = stats.dropped_disk,
            rotations = stream.sink().rotations(),
            "every writer closed the pipe; log closed"
        );
        let path = stream.sink().shared_path().clone();
        drop(stream);
        events::emit(|| EventKind::LogClosed {
            domain: self.name.to_string(),
            path: path.display().to_string(),
        });
        Some(path)
    }
}

/// Asked when a client opens a log this domain holds: if every writer of the log's pipe has
/// gone (its EOF not seen yet by the pump), the log is closed now, so the new open need not
/// fail as busy. A guest restarting at once reopens its log this way.
#[derive(Message)]
#[rtype(result = "Result<Reaped, DomainError>")]
pub struct Reap {
    pub path: PathBuf,
}

/// What [`Reap`] found.
pub enum Reaped {
    /// The log was closed now; its path as the registry shares it.
    Closed(Arc<Path>),
    /// A writer still holds the pipe: the log is busy.
    Live,
    /// No stream of this domain has the path (it closed a moment ago, and its notice is on the
    /// way to the registry; or a request for it is in flight), or its writers have gone and its
    /// last bytes are on their way to the file: ask again in a moment.
    Absent,
}

impl Handler<Reap> for Domain {
    type Result = Result<Reaped, DomainError>;

    fn handle(&mut self, msg: Reap, _: &mut Context<Self>) -> Self::Result {
        let slot = self.streams.iter().position(|s| s.path() == msg.path);
        let Some(slot) = slot else {
            return Ok(Reaped::Absent);
        };
        let Stream::Pipe(p) = &mut self.streams[slot] else {
            return Ok(Reaped::Live); // a console's log: busy while the console exists
        };
        match p.closable() {
            (false, _) => return Ok(Reaped::Live),
            // Its last bytes are on their way to the file: the registry asks again.
            (true, false) => return Ok(Reaped::Absent),
            (true, true) => {}
        }
        Ok(self.close_slot(slot).map_or(Reaped::Absent, Reaped::Closed))
    }
}

/// Open a stream: returns the position at open time and the pipe's write end.
#[derive(Message)]
#[rtype(result = "Result<(Position, OwnedFd), DomainError>")]
pub struct OpenStream {
    /// Shared with the registry's table of open paths.
    pub path: Arc<Path>,
    pub rotate: RotateConfig,
    pub truncate: bool,
    /// Keep the pipe in systemd's fd store, for this domain (`fd_store = true`).
    pub(crate) store_as: Option<logd_protocol::DomainId>,
}

impl Handler<OpenStream> for Domain {
    type Result = ResponseActFuture<Self, Result<(Position, OwnedFd), DomainError>>;

    fn handle(&mut self, msg: OpenStream, _: &mut Context<Self>) -> Self::Result {
        // The file is opened (created, perhaps rotated) by a writer of its file system: that
        // can block as long as the file system likes. The pipe is made here, on the thread
        // that reads it.
        let OpenStream {
            path,
            rotate,
            truncate,
            store_as,
        } = msg;
        let disk = Disk::of(crate::datapath::disk::device_of(&path));
        let p = path.clone();
        let opened = disk.run(move || RotatingFile::open_shared(p, rotate, truncate));
        Box::pin(
            fut::wrap_future(opened).map(move |res, act: &mut Domain, ctx| {
                let file = res.map_err(|_| writer_lost(&path))??;
                let _e = act.span().entered();
                let (stream, w) = LogStream::with_sink(LogSink::from_file(file))?;
                let position = stream.position();
                if let Some(id) = &store_as {
                    crate::control::stored::opened(id, &path, rotate, stream.pipe_fd());
                }
                act.add(Stream::Pipe(stream), ctx);
                tracing::info!(path = %path.display(), %position, truncate, "log opened");
                events::emit(|| EventKind::LogOpened {
                    domain: act.name.to_string(),
                    path: path.display().to_string(),
                });
                Ok((position, w))
            }),
        )
    }
}

/// Rebuild a stream whose pipe outlived the process that read it (from systemd's fd store,
/// after a crash): its file is opened again by path, its counters go on from `stats`.
#[derive(Message)]
#[rtype(result = "Result<Position, DomainError>")]
pub(crate) struct AdoptPipe {
    pub(crate) path: Arc<Path>,
    pub(crate) rotate: RotateConfig,
    pub(crate) pipe: OwnedFd,
    pub(crate) stats: crate::datapath::sink::SinkStats,
}

impl Handler<AdoptPipe> for Domain {
    type Result = ResponseActFuture<Self, Result<Position, DomainError>>;

    fn handle(&mut self, msg: AdoptPipe, _: &mut Context<Self>) -> Self::Result {
        let AdoptPipe {
            path,
            rotate,
            pipe,
            stats,
        } = msg;
        let disk = Disk::of(crate::datapath::disk::device_of(&path));
        let p = path.clone();
        let opened = disk.run(move || RotatingFile::open_shared(p, rotate, false));
        Box::pin(
            fut::wrap_future(opened).map(move |res, act: &mut Domain, ctx| {
                let file = res.map_err(|_| writer_lost(&path))??;
                let _e = act.span().entered();
                let stream = LogStream::adopt(LogSink::from_file_with(file, stats), pipe)?;
                let position = stream.position();
                act.add(Stream::Pipe(stream), ctx);
                tracing::info!(path = %path.display(), %position, "log re-adopted from systemd's fd store");
                events::emit(|| EventKind::LogOpened {
                    domain: act.name.to_string(),
                    path: path.display().to_string(),
                });
                Ok(position)
            }),
        )
    }
}

/// A stream reached EOF and was closed: what a domain announces, to whoever listens
/// ([`on_stream_closed`]; the registry, which releases the path).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StreamClosed {
    /// The path as the registry shared it when the stream opened: a notice about a stream
    /// closed earlier never releases a newer claim on the same path.
    pub path: Arc<Path>,
}

/// Who hears of closed streams: set once, by the registry when it starts. (A hook rather than an
/// address per domain: the domain does not depend on the registry, and an idle domain holds
/// nothing for it.)
static CLOSED: std::sync::OnceLock<actix::Recipient<StreamClosed>> = std::sync::OnceLock::new();

/// Makes `to` hear of every stream a domain closes.
pub fn on_stream_closed(to: actix::Recipient<StreamClosed>) {
    let _ = CLOSED.set(to);
}

/// Tells the listener, without blocking the domain and without dropping the notice on a full
/// mailbox.
fn announce(msg: StreamClosed) {
    if let Some(to) = CLOSED.get() {
        let to = to.clone();
        actix::spawn(async move {
            let _ = to.send(msg).await;
        });
    }
}

/// A disk writer that dropped a task (it panicked).
fn writer_lost(path: &Path) -> DomainError {
    DomainError::File(RotateError::Open {
        path: path.to_owned(),
        source: std::io::Error::other("the disk writer thread failed"),
    })
}

/// Add a console. Returns the console's bound TCP address, its log position, and with a
/// socketpair guest side the guest's end.
#[derive(Message)]
#[rtype(result = "Result<(Option<String>, Position, Option<OwnedFd>), DomainError>")]
pub struct AddConsole {
    pub(crate) config: ConsoleConfig,
    pub(crate) kept: crate::console::KeptSockets,
}

impl Handler<AddConsole> for Domain {
    type Result = Result<(Option<String>, Position, Option<OwnedFd>), DomainError>;

    fn handle(&mut self, msg: AddConsole, ctx: &mut Context<Self>) -> Self::Result {
        let _e = self.span().entered();
        let name = msg.config.name.clone();
        if self.console_slot(&name).is_some() {
            return Err(DomainError::ConsoleExists {
                domain: self.name.to_string(),
                name,
            });
        }
        let (console, fd) = Console::open_with(msg.config, msg.kept)?;
        let tcp = console.tcp_addr();
        let tls = console.tls_addr();
        if crate::control::stored::storing() {
            if tls.is_none() {
                crate::control::stored::console_added(store_entry(&console), &console.sockets());
            } else {
                // The record has no room for TLS settings: after a crash such a console would
                // come back without its TLS listener. Declared or persisted, it is made anew.
                tracing::info!(console = %name, "a console with TLS is not kept in systemd's fd store: after a crash it is created again only if declared or persisted");
            }
        }
        let position = console.position();
        tracing::info!(console = %name, path = %console.path().display(), tcp = ?tcp, tls = ?tls, "console added");
        events::emit(|| EventKind::ConsoleAdded {
            domain: self.name.to_string(),
            console: name.clone(),
        });
        self.add(Stream::Console(Box::new(console)), ctx);
        Ok((tcp, position, fd))
    }
}

/// What the fd store's record says of a console.
fn store_entry(c: &Console) -> crate::control::stored::ConsoleEntry {
    use crate::console::GuestPlan;
    use crate::control::stored::StoredGuest;
    let cfg = c.config();
    let text = |p: &Path| p.to_string_lossy().into_owned();
    crate::control::stored::ConsoleEntry {
        id: 0,
        domain: cfg.domain.clone(),
        name: cfg.name.clone(),
        log: text(&cfg.log),
        max_size: cfg.rotate.max_size,
        max_backups: cfg.rotate.max_backups,
        guest: match &cfg.guest {
            GuestPlan::Listen(p) => StoredGuest::Listen(text(p)),
            GuestPlan::Connect(p) => StoredGuest::Connect(text(p)),
            GuestPlan::Fd => StoredGuest::Fd,
        },
        // As bound: port 0 was given a port, which a restart must keep.
        tcp: c.tcp_addr(),
        unix: cfg.unix.as_deref().map(text),
        protocol: cfg.protocol,
        write: cfg.write,
        replay: cfg.replay as u64,
        max_subscribers: cfg.max_subscribers as u64,
        queue_limit: cfg.queue_limit as u64,
        access: cfg.access.clone(),
        notices: cfg.notices,
        bytes_in: 0,
        bytes_written: 0,
        dropped_disk: 0,
    }
}

/// Remove a console; returns its log path (for the registry to release).
#[derive(Message)]
#[rtype(result = "Result<PathBuf, DomainError>")]
pub struct RemoveConsole {
    pub name: String,
}

impl Handler<RemoveConsole> for Domain {
    type Result = ResponseActFuture<Self, Result<PathBuf, DomainError>>;

    fn handle(&mut self, msg: RemoveConsole, _: &mut Context<Self>) -> Self::Result {
        let Some(slot) = self.console_slot(&msg.name) else {
            return Box::pin(fut::ready(Err(DomainError::NoConsole {
                domain: self.name.to_string(),
                name: msg.name.clone(),
            })));
        };
        // What the guest wrote so far goes to the log first (a stalled file system has its
        // bytes counted as dropped).
        let path = self.streams[slot].path().to_owned();
        Box::pin(Settle::new(Some(path)).map(move |_, act: &mut Domain, _| {
            let _e = act.span().entered();
            let slot = act
                .console_slot(&msg.name)
                .ok_or_else(|| DomainError::NoConsole {
                    domain: act.name.to_string(),
                    name: msg.name.clone(),
                })?;
            let Stream::Console(mut c) = act.streams.remove(slot) else {
                unreachable!("console_slot found a console");
            };
            c.close();
            tracing::info!(console = %msg.name, "console removed");
            events::emit(|| EventKind::ConsoleRemoved {
                domain: act.name.to_string(),
                console: msg.name.clone(),
            });
            Ok(c.path().to_owned())
        }))
    }
}

/// The domain's streams as the admin socket shows them.
#[derive(Message)]
#[rtype(result = "Vec<logd_protocol::admin::StreamSnapshot>")]
pub struct Snapshot;

impl Handler<Snapshot> for Domain {
    type Result = Vec<logd_protocol::admin::StreamSnapshot>;

    fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> Self::Result {
        self.streams
            .iter_mut()
            .map(|s| match s {
                Stream::Pipe(p) => p.snapshot(),
                Stream::Console(c) => c.snapshot(),
            })
            .collect()
    }
}

/// An operator's action on a console subscriber, by its daemon-wide id.
#[derive(Message)]
#[rtype(result = "Result<Option<()>, String>")]
pub struct SubscriberAction {
    /// A kick, else a grant.
    pub kick: bool,
    pub id: u64,
    /// The operator (`UID:NAME`).
    pub by: String,
}

impl Handler<SubscriberAction> for Domain {
    /// Ok(Some): done; Ok(None): no such subscriber here; Err: refused.
    type Result = Result<Option<()>, String>;

    fn handle(&mut self, msg: SubscriberAction, _: &mut Context<Self>) -> Self::Result {
        for s in self.streams.iter_mut() {
            let Stream::Console(c) = s else { continue };
            if !c.has_subscriber(msg.id) {
                continue;
            }
            let done = if msg.kick {
                Ok(c.kick(msg.id, &msg.by))
            } else {
                c.grant(msg.id, &msg.by).map_err(|e| e.to_string())
            };
            return done.map(|d| d.then_some(()));
        }
        Ok(None)
    }
}

/// `logdctl attach` on one of this domain's consoles. None: it has no console of that name.
#[derive(Message)]
#[rtype(
    result = "Option<Result<crate::console::attach::AttachedSub, crate::console::attach::AttachError>>"
)]
pub(crate) struct Attach {
    pub(crate) console: String,
    pub(crate) req: crate::console::attach::AttachRequest,
}

impl Handler<Attach> for Domain {
    type Result =
        Option<Result<crate::console::attach::AttachedSub, crate::console::attach::AttachError>>;

    fn handle(&mut self, msg: Attach, _: &mut Context<Self>) -> Self::Result {
        for s in self.streams.iter_mut() {
            if let Stream::Console(c) = s {
                if c.name() == msg.console {
                    return Some(c.attach(msg.req));
                }
            }
        }
        None
    }
}

/// An attached subscriber's escape command, by its daemon-wide id, from `uid`. Ok(None): no
/// such subscriber here.
#[derive(Message)]
#[rtype(
    result = "Result<Option<logd_protocol::ConsoleReply>, crate::console::attach::AttachError>"
)]
pub(crate) struct Command {
    pub(crate) id: u64,
    pub(crate) uid: u32,
    pub(crate) command: logd_protocol::ConsoleCommand,
}

impl Handler<Command> for Domain {
    type Result = Result<Option<logd_protocol::ConsoleReply>, crate::console::attach::AttachError>;

    fn handle(&mut self, msg: Command, _: &mut Context<Self>) -> Self::Result {
        for s in self.streams.iter_mut() {
            if let Stream::Console(c) = s {
                if c.has_subscriber(msg.id) {
                    return c.command(msg.id, msg.uid, msg.command);
                }
            }
        }
        Ok(None)
    }
}

/// Describe this domain's consoles.
#[derive(Message)]
#[rtype(result = "Vec<ConsoleInfo>")]
pub struct ListConsoles;

impl Handler<ListConsoles> for Domain {
    type Result = Vec<ConsoleInfo>;

    fn handle(&mut self, _: ListConsoles, _: &mut Context<Self>) -> Vec<ConsoleInfo> {
        self.streams
            .iter()
            .filter_map(|s| match s {
                Stream::Console(c) => Some(c.info()),
                Stream::Pipe(_) => None,
            })
            .collect()
    }
}

/// This domain's consoles' settings (for the consoles declared in the config file).
#[derive(Message)]
#[rtype(result = "Vec<ConsoleConfig>")]
pub(crate) struct ConsoleConfigs;

impl Handler<ConsoleConfigs> for Domain {
    type Result = Vec<ConsoleConfig>;

    fn handle(&mut self, _: ConsoleConfigs, _: &mut Context<Self>) -> Vec<ConsoleConfig> {
        self.streams
            .iter()
            .filter_map(|s| match s {
                Stream::Console(c) => Some(c.config().clone()),
                Stream::Pipe(_) => None,
            })
            .collect()
    }
}

/// The end of a log, after draining its pipe.
#[derive(Message)]
#[rtype(result = "Result<Position, DomainError>")]
pub struct GetPosition {
    pub path: PathBuf,
}

impl Handler<GetPosition> for Domain {
    type Result = ResponseActFuture<Self, Result<Position, DomainError>>;

    fn handle(&mut self, msg: GetPosition, _: &mut Context<Self>) -> Self::Result {
        if self.find(&msg.path).is_none() {
            return Box::pin(fut::ready(
                rotate::end_position(&msg.path).map_err(DomainError::from),
            ));
        }
        settled_position(msg.path)
    }
}

/// Read across a log's files, after draining its pipe (reads are serialized with rotation).
#[derive(Message)]
#[rtype(result = "Result<ReadOutcome, DomainError>")]
pub struct ReadLog {
    pub path: PathBuf,
    pub from: ReadFrom,
    pub max_len: usize,
}

impl Handler<ReadLog> for Domain {
    type Result = ResponseActFuture<Self, Result<ReadOutcome, DomainError>>;

    fn handle(&mut self, msg: ReadLog, _: &mut Context<Self>) -> Self::Result {
        // The read runs here once the file has every byte and is home: no rotation can run
        // meanwhile (the file goes to its writer only from this thread).
        Box::pin(
            Settle::new(Some(msg.path.clone())).map(move |settled, _act: &mut Domain, _| {
                settled?;
                Ok(rotate::read_log(&msg.path, msg.from, msg.max_len)?)
            }),
        )
    }
}

/// Append a message to a log: through its stream if open, else straight to its files.
#[derive(Message)]
#[rtype(result = "Result<Position, DomainError>")]
pub struct AppendLog {
    pub path: PathBuf,
    pub rotate: RotateConfig,
    pub message: Vec<u8>,
}

impl Handler<AppendLog> for Domain {
    type Result = ResponseActFuture<Self, Result<Position, DomainError>>;

    fn handle(&mut self, msg: AppendLog, _: &mut Context<Self>) -> Self::Result {
        match self.find(&msg.path) {
            Some(Stream::Pipe(p)) => p.append(&msg.message),
            Some(Stream::Console(c)) => c.append(&msg.message),
            None => {
                // A log that is not open: written once, by a writer of its file system (the
                // registry holds the path meanwhile).
                let disk = Disk::of(crate::datapath::disk::device_of(&msg.path));
                let AppendLog {
                    path,
                    rotate,
                    message,
                } = msg;
                let p = path.clone();
                let done = disk.run(move || {
                    let mut f = RotatingFile::open(&p, rotate, false)?;
                    f.write(&message).map_err(|f| f.error)?;
                    Ok::<_, RotateError>(f.position())
                });
                return Box::pin(
                    fut::wrap_future(done).map(move |res, _act: &mut Domain, _| {
                        Ok(res.map_err(|_| writer_lost(&path))??)
                    }),
                );
            }
        }
        settled_position(msg.path)
    }
}

/// Empty every pipe into its file now, then close the consoles (at shutdown): their
/// subscribers are told, and the socket files they bound are removed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

impl Handler<Drain> for Domain {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> Self::Result {
        Box::pin(Settle::new(None).map(|settled, act: &mut Domain, _| {
            let _e = act.span().entered();
            if let Err(e) = settled {
                tracing::warn!(cause = %e, "stopping with bytes not written");
            }
            for s in act.streams.iter_mut() {
                if let Stream::Console(c) = s {
                    c.close_saying("logd is stopping");
                }
            }
        }))
    }
}

/// Stop the actor (the registry sends it when the domain has nothing left).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for Domain {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        self.stop_asked = true;
        ctx.stop();
    }
}
