//! The admin protocol: introspection and actions, on a socket of its own.
//!
//! The admin socket uses the same frames and handshake as the main socket ([`crate::codec`],
//! [`crate::Hello`]), but its requests are [`AdminRequest`]s: the main socket cannot decode them,
//! so a client of the main socket cannot reach an admin operation.
//!
//! The snapshot types are also the JSON of `logdctl ps --json` and `logdctl stats --json`
//! (field names are stable; see docs/admin.md).

use serde::{Deserialize, Serialize};

use crate::message::{ConsoleProtocol, DomainId, WireError};

pub mod v1;

/// A request on the admin socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Every live actor, as it is now.
    Snapshot,
    /// One domain, by name.
    DomainSnapshot { name: String },
    /// Disconnect a console subscriber (ids are unique in the daemon).
    Kick { subscriber: u64 },
    /// Give a console's write lock to a subscriber.
    Grant { subscriber: u64 },
    /// Change the daemon's tracing filter: a level (`debug`) or directives (`logd::console=trace`).
    SetLogLevel { filter: String },
    /// Stream events: the daemon answers with `AdminResponse::Event` frames until the client
    /// closes the connection.
    Events,
    /// Re-exec the daemon (as SIGUSR1 does), into `binary` if given (an absolute path), else the
    /// configured one. The answer, `Reexeced` or `Error`, comes once the new process serves or
    /// the old one has taken over again; on success the new process sends it, on this same
    /// connection.
    Reexec { binary: Option<String> },
    /// [`AdminRequest::Snapshot`] in this version's layout: with each subscriber's role and
    /// each console's refusals. Appended, so the other variants keep their encoding; the old
    /// request is answered in the old layout ([`v1`]), so an older `logdctl` still reads it,
    /// and a daemon that predates this one answers `Malformed`, which a client takes as its cue
    /// to ask the old way.
    SnapshotV2,
    /// [`AdminRequest::DomainSnapshot`] in this version's layout.
    DomainSnapshotV2 { name: String },
}

impl AdminRequest {
    pub fn kind(&self) -> &'static str {
        match self {
            AdminRequest::Snapshot => "Snapshot",
            AdminRequest::DomainSnapshot { .. } => "DomainSnapshot",
            AdminRequest::Kick { .. } => "Kick",
            AdminRequest::Grant { .. } => "Grant",
            AdminRequest::SetLogLevel { .. } => "SetLogLevel",
            AdminRequest::Events => "Events",
            AdminRequest::Reexec { .. } => "Reexec",
            AdminRequest::SnapshotV2 => "SnapshotV2",
            AdminRequest::DomainSnapshotV2 { .. } => "DomainSnapshotV2",
        }
    }
}

/// The daemon's answer on the admin socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdminResponse {
    /// Answers `Snapshot`, in the layout of the first version.
    Snapshot(v1::DaemonSnapshot),
    /// Answers `DomainSnapshot`, in the layout of the first version.
    Domain(v1::DomainSnapshot),
    Error(WireError),
    /// The action was carried out.
    Done,
    /// One event of an `Events` stream.
    Event(Event),
    /// A re-exec succeeded.
    Reexeced(ReexecReport),
    /// Answers `SnapshotV2` (appended).
    SnapshotV2(DaemonSnapshot),
    /// Answers `DomainSnapshotV2` (appended).
    DomainV2(DomainSnapshot),
}

/// How a re-exec went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReexecReport {
    /// When it was asked for, ms since the Unix epoch.
    pub at_ms: u64,
    /// The process asked, and the process serving afterwards (the same one after a failure).
    pub from_pid: u32,
    pub to_pid: u32,
    /// Why it failed; None on success.
    pub error: Option<String>,
    /// From the freeze (the old process stops reading) to the new process reading again, µs.
    pub blackout_us: u64,
    /// From the request (signal or `logdctl reexec`) to the new process reading again, µs.
    pub total_us: u64,
    /// Domains and fds carried over.
    pub domains: u32,
    pub fds: u32,
}

/// The whole daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonSnapshot {
    /// `logd X.Y.Z`.
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
    /// Open file descriptors of the daemon.
    pub fds: u64,
    /// Resident memory of the daemon, KiB.
    pub rss_kib: u64,
    pub registry: MailboxSnapshot,
    pub domains: Vec<DomainSnapshot>,
    /// The GNU build-id of the running binary (hex; empty if it has none).
    pub build_id: String,
    /// The binary's path (where a re-exec looks for the next one) and its modification time
    /// when this process started, ms since the Unix epoch.
    pub exe: String,
    pub exe_mtime_ms: u64,
    /// When the first process of this line of re-execs started, ms since the Unix epoch.
    pub started_ms: u64,
    /// Re-execs since then.
    pub reexecs: u32,
    /// The last re-exec this process took part in (asked for, or took over from).
    pub last_reexec: Option<ReexecReport>,
}

/// An actor's mailbox: requests queued or being handled, and the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxSnapshot {
    pub depth: u32,
    pub capacity: u32,
}

/// One domain actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainSnapshot {
    pub id: DomainId,
    /// When the domain actor was created, ms since the Unix epoch.
    pub since_ms: u64,
    pub mailbox: MailboxSnapshot,
    pub streams: Vec<StreamSnapshot>,
}

/// What feeds a stream's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// A stdio pipe (`OpenLog`).
    Stdio,
    /// A console, by name.
    Console { name: String },
}

/// The state of a stream's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestState {
    /// Bytes can flow (a pipe with a writer; a console's guest connected).
    Connected,
    /// A console waiting for its guest to connect (listen) or retrying (connect).
    Waiting,
    /// The source closed and will not come back (a socketpair guest side).
    Eof,
}

/// One log stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSnapshot {
    pub kind: StreamKind,
    pub path: String,
    /// Bytes taken from the source (and appended messages).
    pub bytes_in: u64,
    /// Bytes that reached the file.
    pub bytes_written: u64,
    /// Size of the active file.
    pub file_size: u64,
    /// Rotations since the stream was opened.
    pub rotations: u64,
    /// Bytes dropped because the file could not be written.
    pub dropped_disk: u64,
    pub guest: GuestState,
    /// The last error, with its time (ms since the Unix epoch).
    pub last_error: Option<LastError>,
    /// Bytes per second taken in, over the last few seconds.
    pub rate_in: u64,
    /// Bytes per second written, over the last few seconds.
    pub rate_out: u64,
    /// Console subscribers (empty for stdio).
    pub subscribers: Vec<SubscriberSnapshot>,
    /// Console subscribers disconnected for falling behind.
    pub slow_disconnects: u64,
    /// Console subscribers refused: not allowed (a UNIX peer in no list), or the console full.
    pub refused: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub message: String,
    pub at_ms: u64,
}

/// What a console subscriber may do, decided when it connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// It watches; its input is discarded.
    ReadOnly,
    /// It may type: it can hold the write lock (`exclusive`), or writes (`shared`).
    ReadWrite,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::ReadOnly => "read-only",
            Role::ReadWrite => "read-write",
        })
    }
}

/// One console subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberSnapshot {
    pub id: u64,
    /// Who it is: `UID:NAME` for a UNIX peer, `ADDR:PORT` for a TCP one.
    pub peer: String,
    pub since_ms: u64,
    pub bytes_sent: u64,
    pub queue: u64,
    pub queue_limit: u64,
    /// Holds the write lock (or may write, in shared mode).
    pub writer: bool,
    pub protocol: ConsoleProtocol,
    pub role: Role,
}

/// Something that happened in the daemon, as `logdctl events` streams it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    pub kind: EventKind,
}

/// What happened. Paths are log paths; `console` names a console of the domain whose log that is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Externally tagged (bincode cannot decode internally tagged enums); `logdctl events --json`
// flattens it to `{"at_ms": …, "event": "log_opened", "domain": …}`.
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    DomainOpened {
        domain: String,
    },
    DomainClosed {
        domain: String,
    },
    LogOpened {
        domain: String,
        path: String,
    },
    /// Every writer closed the pipe (EOF).
    LogClosed {
        domain: String,
        path: String,
    },
    Rotated {
        path: String,
        rotations: u64,
    },
    ConsoleAdded {
        domain: String,
        console: String,
    },
    ConsoleRemoved {
        domain: String,
        console: String,
    },
    GuestConnected {
        domain: String,
        console: String,
    },
    GuestDisconnected {
        domain: String,
        console: String,
        reason: String,
    },
    SubscriberJoined {
        domain: String,
        console: String,
        id: u64,
        peer: String,
    },
    SubscriberLeft {
        domain: String,
        console: String,
        id: u64,
        reason: String,
    },
    WriteLockMoved {
        domain: String,
        console: String,
        to: u64,
    },
    BytesDropped {
        path: String,
        bytes: u64,
        reason: String,
    },
    Error {
        path: String,
        message: String,
    },
    /// The client fell behind and this many events were skipped.
    Lost {
        count: u64,
    },
    /// A new process took over (re-exec).
    Reexeced {
        from_pid: u32,
        to_pid: u32,
    },
    /// A re-exec failed; the old process goes on.
    ReexecFailed {
        reason: String,
    },
    /// A console subscriber was turned away (appended): `reason` is `not allowed` (a UNIX peer
    /// in none of the console's lists) or `full` (`max_subscribers`).
    SubscriberRefused {
        domain: String,
        console: String,
        peer: String,
        reason: String,
    },
    /// A log's active file was changed by another process (a variant appended, so the others
    /// keep their encoding): its size was `found` where logd had written `expected` bytes. Smaller is a truncation (logrotate's
    /// `copytruncate`), of which `truncations` counts this log's in this process (a re-exec
    /// counts from 0 again); larger, another writer. logd went on from the file's real end
    /// (docs/SHIPPING.md, "logrotate").
    FileChangedOutside {
        path: String,
        expected: u64,
        found: u64,
        truncations: u64,
    },
}
