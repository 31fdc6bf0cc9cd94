//! What the connections of every socket (main, admin, virtlogd) share:
//! - the state each socket's connections are served with ([`Shared`], [`Endpoint`]);
//! - admission: a connection's place among its process's ([`PeerSlots`],
//!   `max_clients_per_peer`) and its `max_clients` permit ([`Admitted`]);
//! - the bytes of read replies held at once ([`ReplyBudget`]);
//! - the bounds on a frame's I/O, writing a frame with an fd ([`write_frame`]), and parking a
//!   connection for a re-exec ([`park`]).
//!
//! `server` (the accept loop and logd's own protocol) and `virtlogd` use this module; it uses
//! neither of them.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Addr;
use bytes::BytesMut;
use logd_protocol::{fdpass, ErrorCode, WireError};
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::control::registry::Registry;
use crate::handover::reexec::Handoff;
use crate::handover::state::{Carrier, ConnEndpoint, ConnMode, ConnState};

/// How long a frame, once started, may take to arrive.
pub(crate) const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer may take to accept a response before it is dropped.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the connections share.
pub(crate) struct Shared {
    /// Which socket this is: the main one or the admin one.
    pub(crate) endpoint: Endpoint,
    pub(crate) registry: Addr<Registry>,
    pub(crate) limit: Arc<Semaphore>,
    /// Connections per peer process.
    pub(crate) peers: Arc<PeerSlots>,
    /// How long a connection may sit with no request (`client_idle_timeout`).
    pub(crate) idle_timeout: Duration,
    /// The bytes of read replies held at once (shared by both sockets).
    pub(crate) replies: Arc<ReplyBudget>,
    pub(crate) daemon_uid: u32,
    /// Parking for re-execs.
    pub(crate) handoff: Arc<Handoff>,
    /// The persisted consoles (`AddConsolePersistent`, and `RemoveConsole` of one of them).
    pub(crate) persisted: Arc<crate::control::persisted::Persisted>,
}

/// Connections held by each peer process, keyed by the pid `SO_PEERCRED` gave at connect.
///
/// Per pid rather than per uid: only root and the daemon's uid are served at all, so a per-uid
/// limit would be `max_clients` again. A pid is what one runaway or hostile program has; it can
/// fork to get more, but then each child is a process the operator can see and kill.
pub(crate) struct PeerSlots {
    limit: usize,
    held: Mutex<HashMap<i32, usize>>,
}

/// One connection's place in [`PeerSlots`]; given back when dropped.
struct PeerSlot {
    slots: Arc<PeerSlots>,
    pid: i32,
}

impl PeerSlots {
    pub(crate) fn new(limit: usize) -> Arc<PeerSlots> {
        Arc::new(PeerSlots {
            limit,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for `pid`, unless it holds `limit` already (or always, with `force`: a
    /// connection carried over a re-exec was accepted already).
    fn take(self: &Arc<Self>, pid: i32, force: bool) -> Option<PeerSlot> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(pid).or_insert(0);
        if *n >= self.limit && !force {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            slots: self.clone(),
            pid,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.pid) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.pid);
            }
        }
    }
}

/// The bytes of read replies logd holds at once, over every connection (`reply_budget`).
///
/// A `ReadLog` reserves its `max_len` before the read and holds it until its reply is written
/// (the unused part is given back once the data is read). A client that asks for 4 MiB and
/// never reads would otherwise hold the data and its encoded frame for [`WRITE_TIMEOUT`], and
/// many such clients any amount of memory. A read that finds the budget taken waits for it up
/// to `reply_wait` (in order of arrival), then is refused with `Busy`.
pub(crate) struct ReplyBudget {
    sem: Arc<Semaphore>,
    total: u64,
    wait: Duration,
}

impl ReplyBudget {
    pub(crate) fn new(total: u64, wait: Duration) -> ReplyBudget {
        let total = total.min(u32::MAX as u64);
        ReplyBudget {
            sem: Arc::new(Semaphore::new(total as usize)),
            total,
            wait,
        }
    }

    /// Reserves `bytes` (at most the whole budget), waiting up to `reply_wait`.
    pub(crate) async fn reserve(&self, bytes: u64) -> Result<OwnedSemaphorePermit, WireError> {
        let n = bytes.min(self.total) as u32;
        match tokio::time::timeout(self.wait, self.sem.clone().acquire_many_owned(n)).await {
            Ok(Ok(p)) => Ok(p),
            _ => {
                tracing::debug!(
                    bytes,
                    budget = self.total,
                    "refused a read: the reply budget is held by replies not yet taken"
                );
                Err(WireError::new(
                    ErrorCode::Busy,
                    format!(
                        "logd holds its whole reply_budget ({} bytes) for read replies that \
                         clients have not taken yet; try again later or ask for less",
                        self.total
                    ),
                ))
            }
        }
    }
}

/// The sockets. Main and admin share framing, handshake and access checks, not requests; the
/// virtlogd socket shares only the requests, the limits and the re-exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// Logs and consoles ([`logd_protocol::Request`]).
    Main,
    /// Introspection and actions ([`logd_protocol::admin::AdminRequest`]); the main socket cannot decode these.
    Admin,
    /// libvirt's virtlogd RPC (served by `serve::virtlogd`): its own framing and access rule.
    Virtlogd,
    /// `logdctl attach` ([`logd_protocol::Request::AttachConsole`] and `ConsoleCommand` only):
    /// any local user may connect; each console judges the caller by its lists.
    Console,
}

/// What a connection being served holds: its place among its process's connections and its
/// `max_clients` permit, given back when it ends.
pub(crate) struct Admitted {
    _slot: Option<PeerSlot>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Shared {
    /// Admits a new connection from process `pid` (`SO_PEERCRED`), unless it would exceed
    /// `max_clients_per_peer` or `max_clients`: then the error to tell it (logged here).
    pub(crate) fn admit(&self, pid: Option<i32>) -> Result<Admitted, WireError> {
        let peer = pid.unwrap_or(-1);
        let Some(slot) = self.peers.take(peer, false) else {
            tracing::warn!("refused a client: max_clients_per_peer reached");
            return Err(WireError::new(
                ErrorCode::TooManyClients,
                format!(
                    "too many clients: pid {peer} already holds {} connections \
                     (max_clients_per_peer)",
                    self.peers.limit
                ),
            ));
        };
        let Ok(permit) = self.limit.clone().try_acquire_owned() else {
            tracing::warn!("refused a client: max_clients reached");
            return Err(WireError::new(
                ErrorCode::TooManyClients,
                "too many clients: logd is serving max_clients connections already",
            ));
        };
        Ok(Admitted {
            _slot: Some(slot),
            _permit: Some(permit),
        })
    }

    /// Admits a connection a previous process carried over: it was accepted already, so it is
    /// served over the limits or not (and counted while there is room).
    pub(crate) fn readmit(&self, pid: Option<i32>) -> Admitted {
        Admitted {
            _slot: self.peers.take(pid.unwrap_or(-1), true),
            _permit: self.limit.clone().try_acquire_owned().ok(),
        }
    }
}

/// Writes a whole frame, with `fd` attached to its first byte.
pub(crate) async fn write_frame(
    stream: &UnixStream,
    frame: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> std::io::Result<()> {
    let mut sent = 0;
    while sent < frame.len() {
        let fds: Vec<BorrowedFd> = if sent == 0 {
            fd.into_iter().collect()
        } else {
            Vec::new()
        };
        let n = stream
            .async_io(Interest::WRITABLE, || {
                fdpass::send_with_fds(stream.as_fd(), &frame[sent..], &fds)
                    .map_err(std::io::Error::from)
            })
            .await?;
        sent += n;
    }
    Ok(())
}

/// Parks a connection of any socket for a re-exec: its fd is marked to be carried, with the
/// bytes it has received of its next message. Returns if the re-exec is abandoned (the
/// connection goes on here); never returns once it is handed over.
pub(crate) async fn park(shared: &Shared, stream: &UnixStream, buf: &BytesMut, mode: ConnMode) {
    let endpoint = match shared.endpoint {
        Endpoint::Main => ConnEndpoint::Main,
        Endpoint::Admin => ConnEndpoint::Admin,
        Endpoint::Virtlogd => ConnEndpoint::Virtlogd,
        Endpoint::Console => ConnEndpoint::Console,
    };
    let marked = shared
        .handoff
        .clone()
        .park(|| {
            let mut carrier = Carrier::out();
            let fd = carrier.fd(stream);
            match carrier.finish() {
                Ok(_) => Some(ConnState {
                    fd,
                    endpoint,
                    mode,
                    pending: buf.to_vec(),
                }),
                Err(e) => {
                    tracing::warn!(cause = %e, "this connection cannot be carried; it closes with this process");
                    None
                }
            }
        })
        .await;
    if marked {
        let mut back = Carrier::back();
        back.fd(stream);
        let _ = back.finish();
    }
}
