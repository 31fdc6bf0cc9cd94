//! The accept loop of every socket, and the connections of the main and admin sockets.
//!
//! One task accepts; each connection gets a task of its own on the main thread (requests are
//! control-plane only: the bytes of a log never pass through here). A connection accepted on
//! the virtlogd socket is handed to [`crate::serve::virtlogd`]. Every other connection:
//! 1. is checked (SO_PEERCRED: root or the daemon's own uid) and counted against
//!    `max_clients_per_peer` (by the peer's pid, [`PeerSlots`]) and `max_clients`; a refused
//!    peer is told why in an error frame, then closed;
//! 2. must complete the handshake within [`HANDSHAKE_TIMEOUT`];
//! 3. then sends requests, one at a time, each answered by one response. A connection with no
//!    request open that sends nothing for `client_idle_timeout` is told so (`TimedOut`) and
//!    closed. An event stream or a `reexec` waiting for its outcome is a request open, so it is
//!    never idle. (`logdctl attach` holds no request: it talks to the console's own socket.)
//!
//! Bad input costs only the connection that sent it: a frame over the limit or garbage gets an
//! error and the connection is closed; a frame that decodes but is invalid gets an error and the
//! connection goes on. A peer that stops reading its replies is dropped after [`WRITE_TIMEOUT`].
//!
//! Memory held for replies is bounded: a connection takes its next request only once its reply
//! is sent, a reply is held encoded once (the response is dropped before the write), and read
//! replies, the large ones, share one budget ([`ReplyBudget`]).
//!
//! The log requests are [`crate::serve::logs`]'s, shared with the virtlogd socket; the state,
//! admission and parking are [`crate::serve::shared`]'s.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use logd_protocol::admin::{AdminRequest, AdminResponse};
use logd_protocol::codec::{self, ProtocolError, MAX_ADMIN_FRAME};
use logd_protocol::{
    ErrorCode, Hello, OpenFlags, Request, Response, Welcome, WireError, MAGIC, MAX_REQUEST_FRAME,
    MAX_RESPONSE_FRAME, PROTOCOL_VERSION,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::console::ConsoleRequest;
use crate::control::registry;
use crate::handover::reexec::Phase;
use crate::handover::state::{ConnMode, ConnState};
use crate::serve::checks::{check_domain, console_config, console_options};
use crate::serve::shared::{park, write_frame, FRAME_TIMEOUT, WRITE_TIMEOUT};
// The daemon builds each socket's `Shared` and serves it here.
pub(crate) use crate::serve::shared::{Endpoint, PeerSlots, ReplyBudget, Shared};

/// How long a new connection has to send its hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    #[error("timed out")]
    Timeout,
    #[error("idle: no request for {0:?}")]
    Idle(Duration),
    #[error("peer closed the connection")]
    Closed,
}

/// Numbers connections for their tracing spans.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Accepts connections until `stop` is cancelled; then hands the listener back (open: a
/// re-exec carries it, and connections arriving meanwhile wait in its backlog).
pub(crate) async fn serve(
    listener: UnixListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> UnixListener {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.cancelled() => return listener,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(cause = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let cred = stream.peer_cred().ok();
        let uid = cred.map(|c| c.uid());
        let pid = cred.and_then(|c| c.pid());
        let span = tracing::info_span!("conn", id, uid, pid);
        let shared = shared.clone();
        if shared.endpoint == Endpoint::Virtlogd {
            actix_rt::spawn(
                crate::serve::virtlogd::accepted(stream, shared, uid, pid).instrument(span),
            );
            continue;
        }
        actix_rt::spawn(
            async move {
                // The console socket is every user's: each console judges its callers.
                let anyone = shared.endpoint == Endpoint::Console;
                if !anyone && uid != Some(0) && uid != Some(shared.daemon_uid) {
                    tracing::warn!("refused a peer with another uid");
                    refuse(
                        &stream,
                        ErrorCode::PermissionDenied,
                        format!(
                            "permission denied: uid {} may not use this logd (only root and uid {})",
                            uid.map(|u| u.to_string()).unwrap_or_else(|| "?".into()),
                            shared.daemon_uid
                        ),
                    )
                    .await;
                    return;
                }
                let _admitted = match shared.admit(pid) {
                    Ok(a) => a,
                    Err(e) => {
                        refuse(&stream, e.code, e.message).await;
                        return;
                    }
                };
                tracing::debug!("client connected");
                Connection::new(stream, shared)
                    .run(ConnMode::Hello, None)
                    .await;
            }
            .instrument(span),
        );
    }
}

/// Serves a client connection a previous process carried over, from where it was parked.
/// `report` answers a connection that was waiting for its `Reexec` request.
pub(crate) fn resume(
    conn: &ConnState,
    fd: OwnedFd,
    shared: Arc<Shared>,
    report: Option<AdminResponse>,
) {
    let stream = match crate::handover::state::sockets::unix_stream(fd) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(cause = %e, "cannot resume a carried client connection");
            return;
        }
    };
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let cred = stream.peer_cred().ok();
    if shared.endpoint == Endpoint::Virtlogd {
        let span = tracing::info_span!(
            "conn",
            id,
            uid = cred.map(|c| c.uid()),
            pid = cred.and_then(|c| c.pid()),
            virtlogd = true
        );
        let pending = BytesMut::from(&conn.pending[..]);
        actix_rt::spawn(crate::serve::virtlogd::resume(stream, shared, pending).instrument(span));
        return;
    }
    let span = tracing::info_span!(
        "conn",
        id,
        uid = cred.map(|c| c.uid()),
        pid = cred.and_then(|c| c.pid())
    );
    let mode = conn.mode;
    let pending = BytesMut::from(&conn.pending[..]);
    let events = (mode == ConnMode::Events).then(crate::serve::events::subscribe);
    actix_rt::spawn(
        async move {
            let _admitted = shared.readmit(cred.and_then(|c| c.pid()));
            let mut c = Connection::new(stream, shared);
            c.buf = pending;
            c.events = events;
            tracing::debug!(?mode, "client connection carried over");
            c.run(mode, report).await;
        }
        .instrument(span),
    );
}

/// Tells a refused peer why, then drops the connection.
async fn refuse(stream: &UnixStream, code: ErrorCode, message: impl Into<String>) {
    let resp = Response::Error(WireError::new(code, message));
    if let Ok(frame) = codec::encode_frame(&resp, MAX_RESPONSE_FRAME) {
        let _ =
            tokio::time::timeout(Duration::from_secs(1), write_frame(stream, &frame, None)).await;
    }
}

struct Connection {
    stream: UnixStream,
    buf: BytesMut,
    shared: Arc<Shared>,
    /// The [`ReplyBudget`] held by the reply being answered, released once it is written.
    reply_budget: Option<OwnedSemaphorePermit>,
    /// An event subscription made before the connection's task runs (a carried event stream
    /// must not miss the events of the take-over itself).
    events: Option<tokio::sync::broadcast::Receiver<logd_protocol::admin::Event>>,
}

/// The answer to a request: a response, maybe with an fd.
type Reply = (Response, Option<OwnedFd>);

fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
    (Response::Error(WireError::new(code, message)), None)
}

impl Connection {
    fn new(stream: UnixStream, shared: Arc<Shared>) -> Self {
        Connection {
            stream,
            buf: BytesMut::with_capacity(4096),
            shared,
            reply_budget: None,
            events: None,
        }
    }

    /// Serves the connection from `mode` on (a new one starts at the hello) until it ends.
    async fn run(mut self, mode: ConnMode, report: Option<AdminResponse>) {
        let _live = self.shared.handoff.live();
        let res = match mode {
            ConnMode::Hello => match self.hello().await {
                Ok(true) => self.requests().await,
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            },
            ConnMode::Requests => self.requests().await,
            ConnMode::Events => self.stream_events().await,
            ConnMode::AwaitingReexec => match report {
                Some(r) => match self.send_msg(&r, MAX_ADMIN_FRAME, None).await {
                    Ok(()) => self.requests().await,
                    Err(e) => Err(e),
                },
                None => self.requests().await,
            },
        };
        match res {
            Ok(()) | Err(ConnError::Closed) => tracing::debug!("client left"),
            Err(e @ ConnError::Idle(_)) => tracing::debug!(cause = %e, "connection closed"),
            Err(e) => tracing::info!(cause = %e, "connection closed"),
        }
    }

    /// Reads the next frame, parking the connection whenever a re-exec asks for it (between
    /// frames or in the middle of one: what has arrived of it is carried along).
    /// Between requests, a connection that sends nothing for `client_idle_timeout` gets
    /// [`ConnError::Idle`].
    async fn next_frame(&mut self, mode: ConnMode) -> Result<BytesMut, ConnError> {
        let idle = (mode == ConnMode::Requests).then_some(self.shared.idle_timeout);
        loop {
            if self.shared.handoff.phase() == Phase::Freezing {
                self.park(mode).await;
                continue;
            }
            let handoff = self.shared.handoff.clone();
            tokio::select! {
                r = self.read_frame(idle) => return r,
                _ = handoff.freezing() => {}
            }
        }
    }

    /// Parks the connection for a re-exec; returns if the re-exec is abandoned.
    async fn park(&mut self, mode: ConnMode) {
        park(&self.shared, &self.stream, &self.buf, mode).await
    }

    /// The handshake. Ok(false): refused (told why).
    async fn hello(&mut self) -> Result<bool, ConnError> {
        let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.next_frame(ConnMode::Hello))
            .await
            .map_err(|_| ConnError::Timeout)?;
        let hello: Hello = match hello.and_then(|p| Ok(codec::decode(&p)?)) {
            Ok(h) => h,
            Err(ConnError::Protocol(e)) => {
                self.send_error(protocol_code(&e), format!("bad handshake: {e}"))
                    .await?;
                return Err(e.into());
            }
            Err(e) => return Err(e),
        };
        if hello.magic != MAGIC || hello.version != PROTOCOL_VERSION {
            let msg = if hello.magic != MAGIC {
                "not a logd client: bad magic in the handshake".to_owned()
            } else {
                format!(
                    "unsupported protocol version {} (this logd speaks {PROTOCOL_VERSION})",
                    hello.version
                )
            };
            tracing::info!(version = hello.version, "refused handshake: {msg}");
            self.send_error(ErrorCode::UnsupportedVersion, msg).await?;
            return Ok(false);
        }
        self.send(
            &Response::Welcome(Welcome {
                version: PROTOCOL_VERSION,
                server: format!("logd {}", env!("CARGO_PKG_VERSION")),
            }),
            None,
        )
        .await?;
        Ok(true)
    }

    /// Requests, one at a time, until the client leaves.
    async fn requests(&mut self) -> Result<(), ConnError> {
        loop {
            let payload = match self.next_frame(ConnMode::Requests).await {
                Ok(p) => p,
                Err(ConnError::Protocol(e @ ProtocolError::FrameTooLarge { .. })) => {
                    self.send_error(ErrorCode::FrameTooLarge, e.to_string())
                        .await?;
                    return Err(e.into());
                }
                Err(ConnError::Idle(t)) => {
                    // Told why, so a client that comes back to it gets this and not EPIPE;
                    // one that never reads cannot hold the connection open with it.
                    let notice = Response::Error(WireError::new(
                        ErrorCode::TimedOut,
                        format!(
                            "logd closed this connection: idle for {} s with no request \
                             (client_idle_timeout); connect again",
                            t.as_secs()
                        ),
                    ));
                    if let Ok(frame) = codec::encode_frame(&notice, MAX_RESPONSE_FRAME) {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            write_frame(&self.stream, &frame, None),
                        )
                        .await;
                    }
                    return Err(ConnError::Idle(t));
                }
                Err(e) => return Err(e),
            };
            if self.shared.endpoint == Endpoint::Admin {
                match codec::decode::<AdminRequest>(&payload) {
                    Ok(AdminRequest::Events) => return self.stream_events().await,
                    Ok(AdminRequest::Reexec { binary }) => {
                        let reply = self.reexec(binary).await;
                        self.send_msg(&reply, MAX_ADMIN_FRAME, None).await?;
                        continue;
                    }
                    _ => {}
                }
                let reply = match codec::decode::<AdminRequest>(&payload) {
                    Ok(req) => {
                        tracing::debug!(request = req.kind(), "admin request");
                        let operator = match self.stream.peer_cred() {
                            Ok(c) => crate::console::peer::unix_identity_later(c.uid()).await,
                            Err(_) => "?".to_owned(),
                        };
                        crate::serve::admin::answer(&self.shared, req, &operator).await
                    }
                    Err(e) => {
                        tracing::info!(cause = %e, "malformed admin request");
                        AdminResponse::Error(WireError::new(
                            ErrorCode::Malformed,
                            format!("malformed admin request: {e}"),
                        ))
                    }
                };
                self.send_msg(&reply, MAX_ADMIN_FRAME, None).await?;
                continue;
            }
            let reply = match codec::decode::<Request>(&payload) {
                Ok(req) => {
                    tracing::debug!(request = req.kind(), "request");
                    self.handle(req).await
                }
                Err(e) => {
                    tracing::info!(cause = %e, "malformed request");
                    error(ErrorCode::Malformed, format!("malformed request: {e}"))
                }
            };
            if let (Response::Error(e), _) = &reply {
                tracing::debug!(code = ?e.code, message = %e.message, "request failed");
            }
            // Encoded, the response is dropped: the frame is the one copy held while a slow
            // client takes it.
            let (resp, fd) = reply;
            let frame = encode_or_error(&resp, MAX_RESPONSE_FRAME)?;
            drop(resp);
            let sent = self
                .write_encoded(&frame, fd.as_ref().map(|f| f.as_fd()))
                .await;
            drop(frame);
            self.reply_budget = None;
            sent?;
        }
    }

    /// Reads one frame's payload. Waiting for the first byte is bounded by `idle` (None: not
    /// at all, as for the hello, which has its own bound); once a frame has started it must
    /// complete within [`FRAME_TIMEOUT`].
    async fn read_frame(&mut self, idle: Option<Duration>) -> Result<BytesMut, ConnError> {
        let max = MAX_REQUEST_FRAME;
        loop {
            if let Some(p) = codec::split_frame(&mut self.buf, max)? {
                return Ok(p);
            }
            let started = !self.buf.is_empty();
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(4096);
            }
            let read = async {
                loop {
                    self.stream.readable().await?;
                    match self.stream.try_read_buf(&mut self.buf) {
                        Ok(n) => return Ok::<usize, std::io::Error>(n),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Err(e),
                    }
                }
            };
            let n = match (started, idle) {
                (true, _) => tokio::time::timeout(FRAME_TIMEOUT, read)
                    .await
                    .map_err(|_| ConnError::Timeout)?,
                (false, Some(idle)) => tokio::time::timeout(idle, read)
                    .await
                    .map_err(|_| ConnError::Idle(idle))?,
                (false, None) => read.await,
            }
            .map_err(ProtocolError::from)?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Err(ConnError::Closed)
                } else {
                    Err(ProtocolError::Truncated(self.buf.len()).into())
                };
            }
        }
    }

    async fn send(&mut self, resp: &Response, fd: Option<BorrowedFd<'_>>) -> Result<(), ConnError> {
        self.send_msg(resp, MAX_RESPONSE_FRAME, fd).await
    }

    async fn send_msg<T: serde::Serialize>(
        &mut self,
        resp: &T,
        max: usize,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), ConnError> {
        let frame = encode_or_error(resp, max)?;
        self.write_encoded(&frame, fd).await
    }

    /// Writes an encoded frame, within [`WRITE_TIMEOUT`].
    async fn write_encoded(
        &mut self,
        frame: &[u8],
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), ConnError> {
        tokio::time::timeout(WRITE_TIMEOUT, write_frame(&self.stream, frame, fd))
            .await
            .map_err(|_| ConnError::Timeout)?
            .map_err(|e| ConnError::Protocol(e.into()))
    }

    async fn send_error(&mut self, code: ErrorCode, message: String) -> Result<(), ConnError> {
        self.send(&Response::Error(WireError::new(code, message)), None)
            .await
    }

    /// Streams events until the client goes away. The bus is bounded: a client that falls
    /// behind gets a `Lost` event with the count, never a stalled daemon.
    async fn stream_events(&mut self) -> Result<(), ConnError> {
        use logd_protocol::admin::{Event, EventKind};
        use tokio::sync::broadcast::error::RecvError;
        let mut rx = self
            .events
            .take()
            .unwrap_or_else(crate::serve::events::subscribe);
        tracing::debug!("event stream started");
        let mut probe = [0u8; 64];
        loop {
            let handoff = self.shared.handoff.clone();
            let ev = tokio::select! {
                r = rx.recv() => match r {
                    Ok(ev) => ev,
                    Err(RecvError::Lagged(count)) => Event {
                        at_ms: crate::clock::now_unix_ms(),
                        kind: EventKind::Lost { count },
                    },
                    Err(RecvError::Closed) => return Ok(()),
                },
                _ = handoff.freezing() => {
                    self.park(ConnMode::Events).await;
                    continue;
                }
                r = self.stream.readable() => {
                    r.map_err(|e| ConnError::Protocol(e.into()))?;
                    match self.stream.try_read(&mut probe) {
                        Ok(0) => return Err(ConnError::Closed),
                        Ok(_) => continue, // anything else the client sends is ignored
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Err(ConnError::Protocol(e.into())),
                    }
                }
            };
            self.send_msg(&AdminResponse::Event(ev), MAX_ADMIN_FRAME, None)
                .await?;
        }
    }

    /// Asks for a re-exec and waits for its outcome. On success this process never answers:
    /// the connection is parked, carried, and the new process answers it.
    async fn reexec(&mut self, binary: Option<String>) -> AdminResponse {
        tracing::info!(binary, "re-exec asked for on the admin socket");
        let binary = binary.map(PathBuf::from);
        if let Some(b) = binary.as_ref().filter(|b| !b.is_absolute()) {
            return AdminResponse::Error(WireError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "the binary to re-exec must be an absolute path, not {}",
                    b.display()
                ),
            ));
        }
        let Some(mut outcome) = self.shared.handoff.ask(binary) else {
            return AdminResponse::Error(WireError::new(
                ErrorCode::Busy,
                "re-execs are already queued; try again",
            ));
        };
        loop {
            let handoff = self.shared.handoff.clone();
            tokio::select! {
                r = &mut outcome => {
                    return AdminResponse::Error(match r {
                        Ok(why) => WireError::new(ErrorCode::Io, format!("re-exec failed; the old process goes on: {why}")),
                        Err(_) => WireError::new(ErrorCode::Internal, "the re-exec request was dropped"),
                    });
                }
                _ = handoff.freezing() => self.park(ConnMode::AwaitingReexec).await,
            }
        }
    }

    async fn handle(&mut self, req: Request) -> Reply {
        match self.dispatch(req).await {
            Ok(r) => r,
            Err(e) => (Response::Error(e), None),
        }
    }

    async fn dispatch(&mut self, req: Request) -> Result<Reply, WireError> {
        let reg = &self.shared.registry;
        let mailbox = |_| WireError::new(ErrorCode::Internal, "the registry is gone");
        let attaching = matches!(
            req,
            Request::AttachConsole { .. } | Request::ConsoleCommand { .. }
        );
        if self.shared.endpoint == Endpoint::Console && !attaching {
            return Err(WireError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "{} is not served on the console socket: it takes AttachConsole and \
                     ConsoleCommand only (`logdctl attach`)",
                    req.kind()
                ),
            ));
        }
        match req {
            Request::AttachConsole {
                domain,
                console,
                read_only,
                force,
            } => self.attach(domain, console, read_only, force).await,
            Request::ConsoleCommand {
                subscriber,
                command,
            } => {
                let uid = self.peer_cred()?.uid;
                let reply = registry::call(
                    reg,
                    registry::Command {
                        id: subscriber,
                        uid,
                        command,
                    },
                )
                .await
                .map_err(mailbox)??;
                Ok((Response::ConsoleReply(reply), None))
            }
            Request::OpenLog {
                domain,
                path,
                flags: OpenFlags { truncate },
            } => {
                let (position, fd) = self.shared.open_log(domain, &path, truncate).await?;
                Ok((Response::LogOpened { position }, Some(fd)))
            }
            Request::GetPosition { path } => {
                let p = self.shared.get_position(&path).await?;
                Ok((Response::Position(p), None))
            }
            Request::ReadLog {
                path,
                from,
                max_len,
            } => {
                let (r, budget) = self.shared.read_log(&path, from, max_len).await?;
                self.reply_budget = Some(budget);
                Ok((
                    Response::LogData {
                        data: r.data,
                        next: r.next,
                        gap: r.gap,
                    },
                    None,
                ))
            }
            Request::AddConsole(spec) => self.add_console(ConsoleRequest::plain(spec)).await,
            Request::AddConsoleWith { spec, options } => {
                let (req, persist) = console_options(spec, options)?;
                if persist {
                    self.add_console_persistent(req).await
                } else {
                    self.add_console(req).await
                }
            }
            Request::AddConsolePersistent(spec) => {
                self.add_console_persistent(ConsoleRequest::plain(spec))
                    .await
            }
            Request::RemoveConsole { domain, name } => {
                self.shared.persisted.remove(reg, domain, name).await?;
                Ok((Response::Done, None))
            }
            Request::ListConsoles => {
                let list = registry::call(reg, registry::ListConsoles)
                    .await
                    .map_err(mailbox)?;
                Ok((Response::Consoles(list), None))
            }
            Request::AppendLog {
                domain,
                path,
                message,
            } => {
                let p = self.shared.append_log(domain, &path, message).await?;
                Ok((Response::Position(p), None))
            }
        }
    }

    /// The peer's credentials, as a console judges them.
    fn peer_cred(&self) -> Result<crate::console::access::Cred, WireError> {
        crate::console::access::peer_cred(&self.stream).map_err(|e| {
            WireError::new(
                ErrorCode::Internal,
                format!("cannot read the peer's credentials: {e}"),
            )
        })
    }

    /// `AttachConsole`: a socketpair, one end joined to the console as the caller, the other
    /// sent back.
    async fn attach(
        &self,
        domain: String,
        console: String,
        read_only: bool,
        force: bool,
    ) -> Result<Reply, WireError> {
        let cred = self.peer_cred()?;
        let identity = crate::console::peer::unix_identity_later(cred.uid).await;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(|e| {
            WireError::new(
                ErrorCode::Io,
                format!("cannot make the console connection: {e}"),
            )
        })?;
        let req = crate::console::attach::AttachRequest {
            sock: ours,
            cred,
            identity,
            read_only,
            force,
        };
        let a = registry::call(
            &self.shared.registry,
            registry::Attach {
                domain,
                console,
                req,
            },
        )
        .await
        .map_err(|_| WireError::new(ErrorCode::Internal, "the registry is gone"))??;
        tracing::info!(subscriber = a.id, peer = %a.peer, role = %a.role, "attached to a console");
        Ok((
            Response::Attached {
                subscriber: a.id,
                peer: a.peer,
                role: a.role,
                writer: a.writer,
            },
            Some(OwnedFd::from(theirs)),
        ))
    }

    /// `AddConsole`, and `AddConsoleWith` without `Persist`.
    async fn add_console(&self, req: ConsoleRequest) -> Result<Reply, WireError> {
        check_domain(&req.spec.domain)?;
        let config = console_config(req).await?;
        let (tcp, position, fd) = registry::call(
            &self.shared.registry,
            registry::AddConsole {
                kept: Default::default(),
                config: config.clone(),
            },
        )
        .await
        .map_err(|_| WireError::new(ErrorCode::Internal, "the registry is gone"))?
        .map_err(|e| e.to_wire())?;
        Ok((
            Response::ConsoleAdded {
                tcp,
                unix: config.unix.map(|p| p.display().to_string()),
                position,
                guest_fd: fd.is_some(),
            },
            fd,
        ))
    }

    /// `AddConsolePersistent`, and `AddConsoleWith` with `Persist`.
    async fn add_console_persistent(&self, req: ConsoleRequest) -> Result<Reply, WireError> {
        let reg = &self.shared.registry;
        let (tcp, position, unix) = self.shared.persisted.add(reg, req).await?;
        Ok((
            Response::ConsoleAdded {
                tcp,
                unix,
                position,
                guest_fd: false,
            },
            None,
        ))
    }
}

/// Encodes a response; one that cannot be encoded becomes an `Internal` error frame.
fn encode_or_error<T: serde::Serialize>(resp: &T, max: usize) -> Result<Vec<u8>, ConnError> {
    match codec::encode_frame(resp, max) {
        Ok(f) => Ok(f),
        Err(e) => {
            tracing::error!(cause = %e, "cannot encode a response");
            Ok(codec::encode_frame(
                &Response::Error(WireError::new(ErrorCode::Internal, e.to_string())),
                MAX_RESPONSE_FRAME,
            )?)
        }
    }
}

/// The error code for bytes that could not be read as a frame.
fn protocol_code(e: &ProtocolError) -> ErrorCode {
    match e {
        ProtocolError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
        _ => ErrorCode::Malformed,
    }
}
