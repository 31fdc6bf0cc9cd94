//! The re-exec state: everything one logd process hands to its successor, in a versioned format.
//!
//! At a re-exec (see [`crate::handover::reexec`]) the old process freezes every actor and writes a
//! [`State`] into a memfd that the new process inherits, with every fd the state names. The
//! bytes are a [`Header`] (magic, format version, the writer's pid and a random token), then the
//! body of that version, both encoded with the protocol crate's codec.
//!
//! Fds travel by number: an inherited fd keeps its number across `exec`. Each carries the
//! `st_dev`/`st_ino` it had when written, and [`Inherited::take`] refuses an fd that is closed,
//! taken twice, or not the same file, so a state can never make the new process adopt the wrong
//! descriptor.
//!
//! Versions: [`VERSION`] is written; every version from [`OLDEST_READABLE`] up is read (a
//! newer binary must restore from the previous release). A body change bumps [`VERSION`] and
//! keeps the old body type with a conversion ([`StateV1`] to [`StateV2`] to [`State`], and
//! [`StateV3`] to [`State`]; a nested type that changed keeps its old form too, as
//! [`ConsoleStateV2`] and [`ConsoleStateV3`]). `integration/fixtures/state-vN.bin` pins
//! the bytes of each version; its test fails if that version's encoding drifts.
#![allow(unsafe_code)] // four blocks: adopting an inherited fd; fcntl and fstat on bare fd numbers, and reading what fstat filled

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use logd_protocol::codec::{self, ProtocolError};
use logd_protocol::{ConsoleProtocol, DomainId, Uuid, WritePolicy};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use serde::{Deserialize, Serialize};

use crate::console::telnet;

/// The first bytes of every state.
pub const MAGIC: [u8; 8] = *b"LOGDSTAT";
/// The format version this binary writes. Version 2 added the virtlogd listener; version 3 a
/// console's access settings and each subscriber's role; version 4 a console's notice settings.
pub const VERSION: u32 = 4;
/// The oldest format version this binary reads.
pub const OLDEST_READABLE: u32 = 1;

/// Why a state could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot encode the state: {0}")]
    Encode(ProtocolError),
    #[error("malformed state: {0}")]
    Decode(ProtocolError),
    #[error("not a logd state (bad magic)")]
    BadMagic,
    #[error(
        "state format version {found} is not supported (this logd reads versions \
         {OLDEST_READABLE} to {VERSION})"
    )]
    Unsupported { found: u32 },
    #[error("the state was written by pid {writer}, not by this process's parent (pid {parent})")]
    WrongParent { writer: u32, parent: u32 },
    #[error("the state's token does not match the one in the environment")]
    BadToken,
    #[error("inherited fd {raw} is not open")]
    FdClosed { raw: RawFd },
    #[error("inherited fd {raw} is not the file the state describes")]
    FdMismatch { raw: RawFd },
    #[error("the state names fd {raw} twice")]
    FdTwice { raw: RawFd },
}

/// What precedes the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    magic: [u8; 8],
    version: u32,
    /// The process that wrote the state (the new process's parent).
    pid: u32,
    /// Also passed in the environment: a state left over from another re-exec is refused.
    token: [u8; 16],
}

/// A carried fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fd {
    pub raw: RawFd,
    pub dev: u64,
    pub ino: u64,
}

/// The whole daemon (format version 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// When the re-exec was asked for and when the actors froze (CLOCK_MONOTONIC, ns: the same
    /// clock in both processes), for the blackout figures.
    pub asked_mono_ns: u64,
    pub frozen_mono_ns: u64,
    /// When the first process of this line of re-execs started (ms since the Unix epoch).
    pub started_ms: u64,
    /// The daemon's uptime at the freeze.
    pub uptime_ms: u64,
    /// Re-execs completed before this one.
    pub reexecs: u32,
    /// `<socket>.lock`, flocked.
    pub lock: Fd,
    pub main: ListenerState,
    pub admin: ListenerState,
    /// The Prometheus listener, if configured.
    pub metrics: Option<Fd>,
    /// The next console subscriber id (ids stay unique across re-execs).
    pub next_subscriber_id: u64,
    pub domains: Vec<DomainState>,
    pub connections: Vec<ConnState>,
    /// The virtlogd socket, if served (version 2).
    pub virtlogd: Option<ListenerState>,
}

/// Format version 3's body: version 4 without the consoles' notice settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateV3 {
    pub asked_mono_ns: u64,
    pub frozen_mono_ns: u64,
    pub started_ms: u64,
    pub uptime_ms: u64,
    pub reexecs: u32,
    pub lock: Fd,
    pub main: ListenerState,
    pub admin: ListenerState,
    pub metrics: Option<Fd>,
    pub next_subscriber_id: u64,
    pub domains: Vec<DomainState<ConsoleStateV3>>,
    pub connections: Vec<ConnState>,
    pub virtlogd: Option<ListenerState>,
}

impl From<StateV3> for State {
    fn from(v: StateV3) -> State {
        State {
            asked_mono_ns: v.asked_mono_ns,
            frozen_mono_ns: v.frozen_mono_ns,
            started_ms: v.started_ms,
            uptime_ms: v.uptime_ms,
            reexecs: v.reexecs,
            lock: v.lock,
            main: v.main,
            admin: v.admin,
            metrics: v.metrics,
            next_subscriber_id: v.next_subscriber_id,
            domains: v.domains.into_iter().map(upgrade_domain).collect(),
            connections: v.connections,
            virtlogd: v.virtlogd,
        }
    }
}

/// Format version 2's body: version 3 without the consoles' access settings and roles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateV2 {
    pub asked_mono_ns: u64,
    pub frozen_mono_ns: u64,
    pub started_ms: u64,
    pub uptime_ms: u64,
    pub reexecs: u32,
    pub lock: Fd,
    pub main: ListenerState,
    pub admin: ListenerState,
    pub metrics: Option<Fd>,
    pub next_subscriber_id: u64,
    pub domains: Vec<DomainState<ConsoleStateV2>>,
    pub connections: Vec<ConnState>,
    pub virtlogd: Option<ListenerState>,
}

impl From<StateV2> for State {
    fn from(v: StateV2) -> State {
        State {
            asked_mono_ns: v.asked_mono_ns,
            frozen_mono_ns: v.frozen_mono_ns,
            started_ms: v.started_ms,
            uptime_ms: v.uptime_ms,
            reexecs: v.reexecs,
            lock: v.lock,
            main: v.main,
            admin: v.admin,
            metrics: v.metrics,
            next_subscriber_id: v.next_subscriber_id,
            domains: v.domains.into_iter().map(upgrade_domain).collect(),
            connections: v.connections,
            virtlogd: v.virtlogd,
        }
    }
}

/// A domain of an older version, its consoles converted.
fn upgrade_domain<C: Into<ConsoleState>>(d: DomainState<C>) -> DomainState {
    DomainState {
        driver: d.driver,
        uuid: d.uuid,
        name: d.name,
        since_ms: d.since_ms,
        streams: d
            .streams
            .into_iter()
            .map(|s| match s {
                StreamState::Pipe(p) => StreamState::Pipe(p),
                StreamState::Console(c) => StreamState::Console(Box::new((*c).into())),
            })
            .collect(),
    }
}

/// Format version 1's body: version 2 without the virtlogd listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateV1 {
    /// When the re-exec was asked for and when the actors froze (CLOCK_MONOTONIC, ns: the same
    /// clock in both processes), for the blackout figures.
    pub asked_mono_ns: u64,
    pub frozen_mono_ns: u64,
    /// When the first process of this line of re-execs started (ms since the Unix epoch).
    pub started_ms: u64,
    /// The daemon's uptime at the freeze.
    pub uptime_ms: u64,
    /// Re-execs completed before this one.
    pub reexecs: u32,
    /// `<socket>.lock`, flocked.
    pub lock: Fd,
    pub main: ListenerState,
    pub admin: ListenerState,
    /// The Prometheus listener, if configured.
    pub metrics: Option<Fd>,
    /// The next console subscriber id (ids stay unique across re-execs).
    pub next_subscriber_id: u64,
    pub domains: Vec<DomainState<ConsoleStateV2>>,
    pub connections: Vec<ConnState>,
}

impl From<StateV1> for StateV2 {
    fn from(v: StateV1) -> StateV2 {
        StateV2 {
            asked_mono_ns: v.asked_mono_ns,
            frozen_mono_ns: v.frozen_mono_ns,
            started_ms: v.started_ms,
            uptime_ms: v.uptime_ms,
            reexecs: v.reexecs,
            lock: v.lock,
            main: v.main,
            admin: v.admin,
            metrics: v.metrics,
            next_subscriber_id: v.next_subscriber_id,
            domains: v.domains,
            connections: v.connections,
            virtlogd: None,
        }
    }
}

impl State {
    /// Calls `f` with every fd the state names.
    pub fn each_fd(&self, f: &mut dyn FnMut(&Fd)) {
        f(&self.lock);
        f(&self.main.fd);
        f(&self.admin.fd);
        if let Some(v) = &self.virtlogd {
            f(&v.fd);
        }
        if let Some(m) = &self.metrics {
            f(m);
        }
        for c in &self.connections {
            f(&c.fd);
        }
        for d in &self.domains {
            for s in &d.streams {
                match s {
                    StreamState::Pipe(p) => {
                        f(&p.fd);
                        p.sink.file.iter().for_each(&mut *f);
                    }
                    StreamState::Console(c) => {
                        c.sink.file.iter().for_each(&mut *f);
                        if let GuestState::Listen { listener, .. } = &c.guest {
                            f(listener);
                        }
                        c.guest_conn.iter().for_each(&mut *f);
                        c.tcp.iter().for_each(|(_, fd)| f(fd));
                        c.unix.iter().for_each(|(_, fd)| f(fd));
                        c.subscribers.iter().for_each(|s| f(&s.fd));
                    }
                }
            }
        }
    }
}

/// Whether the carried fds are still as the state describes them when a process takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    /// Nobody has read or written them since the old image froze: a new image's take-over,
    /// or a guardian's whose new image was never told `Go`.
    Exact,
    /// A new image was told `Go` and died (or hung) before `Running`: it may have read and
    /// written them in between. The guardian then trusts nothing that image may have acted
    /// on: logs are opened again by path, and carried console input and subscriber queues are
    /// dropped rather than sent twice (docs/LIFECYCLE.md, "After `Go`").
    AfterGo,
}

/// A listening UNIX socket of the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerState {
    pub fd: Fd,
    pub path: PathBuf,
    /// Whether logd created the socket file (and removes it at exit), or systemd did.
    pub owned: bool,
}

/// One domain actor. (Generic over the console's state so that the bodies of older versions
/// reuse it with theirs.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainState<C = ConsoleState> {
    pub driver: String,
    pub uuid: Uuid,
    pub name: String,
    pub since_ms: u64,
    pub streams: Vec<StreamState<C>>,
}

/// One stream of a domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StreamState<C = ConsoleState> {
    Pipe(PipeState),
    Console(Box<C>),
}

/// A rotating file and its sink's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkState {
    pub path: PathBuf,
    /// The active file, or None while it is unwritable (the new process retries it).
    pub file: Option<Fd>,
    pub max_size: u64,
    pub max_backups: u32,
    pub inode: u64,
    pub birth: u64,
    pub size: u64,
    pub newline_end: u64,
    pub rotations: u64,
    pub bytes_in: u64,
    pub bytes_written: u64,
    pub dropped_disk: u64,
    /// The last error and when (ms since the Unix epoch).
    pub last_error: Option<(String, u64)>,
}

/// A stdio pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeState {
    pub fd: Fd,
    pub pipe_size: u32,
    pub grow_refused: bool,
    pub pipe_grows: u32,
    pub pipe_grow_refused: u32,
    pub sink: SinkState,
}

/// How a console reaches its guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuestState {
    Listen { path: PathBuf, listener: Fd },
    Connect { path: PathBuf },
    Fd,
}

/// A console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleState {
    pub name: String,
    pub domain: DomainId,
    pub guest: GuestState,
    /// The live guest connection.
    pub guest_conn: Option<Fd>,
    /// The TCP address as configured, and its listener.
    pub tcp: Option<(String, Fd)>,
    pub unix: Option<(PathBuf, Fd)>,
    pub protocol: ConsoleProtocol,
    pub write: WritePolicy,
    pub replay_limit: usize,
    pub max_subscribers: usize,
    pub queue_limit: usize,
    pub sink: SinkState,
    /// Input accepted from subscribers, not yet written to the guest.
    #[serde(with = "serde_bytes")]
    pub input: Vec<u8>,
    /// The replay ring's bytes, oldest first.
    #[serde(with = "serde_bytes")]
    pub replay: Vec<u8>,
    /// Subscribers in write-lock order (the first holds the lock in exclusive mode).
    pub subscribers: Vec<SubscriberState>,
    pub slow_disconnects: u64,
    pub refused: u64,
    pub guest_connects: u64,
    /// Who may watch and who may type (version 3).
    pub access: crate::console::Access,
    /// What subscribers are told, and whether the log is marked (version 4).
    pub notices: crate::console::Notices,
}

/// A console in format version 3: no notice settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleStateV3 {
    pub name: String,
    pub domain: DomainId,
    pub guest: GuestState,
    pub guest_conn: Option<Fd>,
    pub tcp: Option<(String, Fd)>,
    pub unix: Option<(PathBuf, Fd)>,
    pub protocol: ConsoleProtocol,
    pub write: WritePolicy,
    pub replay_limit: usize,
    pub max_subscribers: usize,
    pub queue_limit: usize,
    pub sink: SinkState,
    #[serde(with = "serde_bytes")]
    pub input: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub replay: Vec<u8>,
    pub subscribers: Vec<SubscriberState>,
    pub slow_disconnects: u64,
    pub refused: u64,
    pub guest_connects: u64,
    pub access: crate::console::Access,
}

/// A console carried from version 3 gets the default notice settings, which are what that
/// version did: no marks in the log. (Its subscribers start getting notices: that version had
/// no way to turn them off, and sent the write lock's.)
impl From<ConsoleStateV3> for ConsoleState {
    fn from(c: ConsoleStateV3) -> ConsoleState {
        ConsoleState {
            name: c.name,
            domain: c.domain,
            guest: c.guest,
            guest_conn: c.guest_conn,
            tcp: c.tcp,
            unix: c.unix,
            protocol: c.protocol,
            write: c.write,
            replay_limit: c.replay_limit,
            max_subscribers: c.max_subscribers,
            queue_limit: c.queue_limit,
            sink: c.sink,
            input: c.input,
            replay: c.replay,
            subscribers: c.subscribers,
            slow_disconnects: c.slow_disconnects,
            refused: c.refused,
            guest_connects: c.guest_connects,
            access: c.access,
            notices: crate::console::Notices::default(),
        }
    }
}

/// A console subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberState {
    pub id: u64,
    pub peer: String,
    pub since_ms: u64,
    /// TCP or UNIX.
    pub tcp: bool,
    pub fd: Fd,
    pub protocol: ConsoleProtocol,
    pub decoder: telnet::Decoder,
    /// Output queued and not yet sent, in order.
    #[serde(with = "serde_bytes")]
    pub unsent: Vec<u8>,
    pub bytes_sent: u64,
    pub told_read_only: bool,
    /// Its role (version 3).
    pub role: crate::console::Role,
}

/// A console in format versions 1 and 2: no access settings, no roles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleStateV2 {
    pub name: String,
    pub domain: DomainId,
    pub guest: GuestState,
    /// The live guest connection.
    pub guest_conn: Option<Fd>,
    /// The TCP address as configured, and its listener.
    pub tcp: Option<(String, Fd)>,
    pub unix: Option<(PathBuf, Fd)>,
    pub protocol: ConsoleProtocol,
    pub write: WritePolicy,
    pub replay_limit: usize,
    pub max_subscribers: usize,
    pub queue_limit: usize,
    pub sink: SinkState,
    /// Input accepted from subscribers, not yet written to the guest.
    #[serde(with = "serde_bytes")]
    pub input: Vec<u8>,
    /// The replay ring's bytes, oldest first.
    #[serde(with = "serde_bytes")]
    pub replay: Vec<u8>,
    /// Subscribers in write-lock order (the first holds the lock in exclusive mode).
    pub subscribers: Vec<SubscriberStateV2>,
    pub slow_disconnects: u64,
    pub refused: u64,
    pub guest_connects: u64,
}

/// A console subscriber in format versions 1 and 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberStateV2 {
    pub id: u64,
    pub peer: String,
    pub since_ms: u64,
    /// TCP or UNIX.
    pub tcp: bool,
    pub fd: Fd,
    pub protocol: ConsoleProtocol,
    pub decoder: telnet::Decoder,
    /// Output queued and not yet sent, in order.
    #[serde(with = "serde_bytes")]
    pub unsent: Vec<u8>,
    pub bytes_sent: u64,
    pub told_read_only: bool,
}

/// A console carried from a version without roles gets the safe defaults (plain TCP
/// read-only, no lists: `console::access`), as if added now. Its TCP subscribers become
/// read-only; its UNIX ones read-write, since that version's subscriber socket was mode 0600:
/// only root and logd's own uid could connect.
impl From<ConsoleStateV2> for ConsoleState {
    fn from(c: ConsoleStateV2) -> ConsoleState {
        use crate::console::{Access, Role};
        ConsoleState {
            name: c.name,
            domain: c.domain,
            guest: c.guest,
            guest_conn: c.guest_conn,
            tcp: c.tcp,
            unix: c.unix,
            protocol: c.protocol,
            write: c.write,
            replay_limit: c.replay_limit,
            max_subscribers: c.max_subscribers,
            queue_limit: c.queue_limit,
            sink: c.sink,
            input: c.input,
            replay: c.replay,
            subscribers: c
                .subscribers
                .into_iter()
                .map(|s| SubscriberState {
                    role: if s.tcp {
                        Role::ReadOnly
                    } else {
                        Role::ReadWrite
                    },
                    id: s.id,
                    peer: s.peer,
                    since_ms: s.since_ms,
                    tcp: s.tcp,
                    fd: s.fd,
                    protocol: s.protocol,
                    decoder: s.decoder,
                    unsent: s.unsent,
                    bytes_sent: s.bytes_sent,
                    told_read_only: s.told_read_only,
                })
                .collect(),
            slow_disconnects: c.slow_disconnects,
            refused: c.refused,
            guest_connects: c.guest_connects,
            access: Access::default(),
            notices: crate::console::Notices::default(),
        }
    }
}

/// Which socket a client connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnEndpoint {
    Main,
    Admin,
    /// The virtlogd socket (always parked between calls: [`ConnMode::Requests`]).
    Virtlogd,
}

/// Where a client connection was when it was parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnMode {
    /// Before the hello.
    Hello,
    /// Between requests.
    Requests,
    /// Streaming events.
    Events,
    /// Waiting for the answer to its `Reexec` request: the new process gives it.
    AwaitingReexec,
}

/// A client connection of the main or admin socket, parked between requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnState {
    pub fd: Fd,
    pub endpoint: ConnEndpoint,
    pub mode: ConnMode,
    /// Bytes received and not yet a whole frame.
    #[serde(with = "serde_bytes")]
    pub pending: Vec<u8>,
}

/// Encodes a state, written by this process for a child holding `token`.
pub fn encode(state: &State, token: [u8; 16]) -> Result<Vec<u8>, StateError> {
    let header = Header {
        magic: MAGIC,
        version: VERSION,
        pid: std::process::id(),
        token,
    };
    let mut out = codec::encode_large(&header).map_err(StateError::Encode)?;
    out.extend(codec::encode_large(state).map_err(StateError::Encode)?);
    Ok(out)
}

/// Decodes a state, checking it was written by `parent` for `token`.
pub fn decode(bytes: &[u8], parent: u32, token: [u8; 16]) -> Result<State, StateError> {
    if !bytes.starts_with(&MAGIC) {
        return Err(StateError::BadMagic);
    }
    let (header, used): (Header, usize) = codec::decode_large(bytes).map_err(StateError::Decode)?;
    if !(OLDEST_READABLE..=VERSION).contains(&header.version) {
        return Err(StateError::Unsupported {
            found: header.version,
        });
    }
    if header.pid != parent {
        return Err(StateError::WrongParent {
            writer: header.pid,
            parent,
        });
    }
    if header.token != token {
        return Err(StateError::BadToken);
    }
    let body = &bytes[used..];
    let (state, used): (State, usize) = match header.version {
        1 => codec::decode_large::<StateV1>(body)
            .map(|(s, used)| (State::from(StateV2::from(s)), used))
            .map_err(StateError::Decode)?,
        2 => codec::decode_large::<StateV2>(body)
            .map(|(s, used)| (State::from(s), used))
            .map_err(StateError::Decode)?,
        3 => codec::decode_large::<StateV3>(body)
            .map(|(s, used)| (State::from(s), used))
            .map_err(StateError::Decode)?,
        _ => codec::decode_large(body).map_err(StateError::Decode)?,
    };
    if used != body.len() {
        return Err(StateError::Decode(ProtocolError::TrailingBytes(
            body.len() - used,
        )));
    }
    Ok(state)
}

/// Marks fds to be carried to the next process (clears close-on-exec), or back (sets it again,
/// when a re-exec is abandoned), and describes them. The first error is kept; the caller checks
/// [`Carrier::finish`].
pub struct Carrier {
    out: bool,
    error: Option<std::io::Error>,
    /// How many fds were marked.
    pub count: usize,
}

impl Carrier {
    /// For a re-exec: fds lose close-on-exec.
    pub fn out() -> Self {
        Carrier {
            out: true,
            error: None,
            count: 0,
        }
    }

    /// For an abandoned re-exec: fds get close-on-exec again.
    pub fn back() -> Self {
        Carrier {
            out: false,
            error: None,
            count: 0,
        }
    }

    /// Marks one fd and describes it.
    pub fn fd(&mut self, fd: impl AsFd) -> Fd {
        let fd = fd.as_fd();
        let raw = fd.as_raw_fd();
        let flags = if self.out {
            FdFlag::empty()
        } else {
            FdFlag::FD_CLOEXEC
        };
        let res = fcntl(fd, FcntlArg::F_SETFD(flags))
            .and_then(|_| nix::sys::stat::fstat(fd))
            .map_err(std::io::Error::from);
        self.count += 1;
        match res {
            Ok(st) => Fd {
                raw,
                dev: st.st_dev,
                ino: st.st_ino,
            },
            Err(e) => {
                self.error.get_or_insert(e);
                Fd {
                    raw,
                    dev: 0,
                    ino: 0,
                }
            }
        }
    }

    /// The first error, if any fd could not be marked.
    pub fn finish(self) -> Result<usize, std::io::Error> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.count),
        }
    }
}

/// The fds a state names, adopted by the new process one by one, from any thread.
///
/// One flag per fd number, not a locked set: the workers adopt their domains' fds at the same
/// time, and 20,000 adoptions through one lock would serialize them.
pub struct Inherited {
    taken: Vec<AtomicBool>,
    count: AtomicUsize,
}

impl Inherited {
    /// For fds numbered below `limit` (a number at or above it is refused as not open).
    pub fn up_to(limit: usize) -> Inherited {
        Inherited {
            taken: (0..limit).map(|_| AtomicBool::new(false)).collect(),
            count: AtomicUsize::new(0),
        }
    }

    /// For every fd a state names.
    pub fn for_state(state: &State) -> Inherited {
        let mut max = 0;
        state.each_fd(&mut |fd| max = max.max(fd.raw));
        Inherited::up_to(max.max(0) as usize + 1)
    }

    /// How many fds were adopted.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Adopts a carried fd: checks it is open, not adopted already, and the same file the
    /// state describes; sets close-on-exec again.
    pub fn take(&self, fd: &Fd) -> Result<OwnedFd, StateError> {
        let raw = fd.raw;
        if raw < 0 {
            return Err(StateError::FdClosed { raw });
        }
        let Some(flag) = self.taken.get(raw as usize) else {
            return Err(StateError::FdClosed { raw });
        };
        if flag.swap(true, Ordering::AcqRel) {
            return Err(StateError::FdTwice { raw });
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        // Only the right file may be wrapped: ask the kernel first, on the number alone.
        match fd_identity(raw) {
            None => return Err(StateError::FdClosed { raw }),
            Some((dev, ino)) if (dev, ino) != (fd.dev, fd.ino) => {
                return Err(StateError::FdMismatch { raw })
            }
            Some(_) => {}
        }
        // SAFETY: the fd is open and is the file the state describes (checked just above), it
        // was inherited from the previous process for exactly this use, and its flag in `taken`
        // guarantees no other OwnedFd is made from it, so it is owned and closed exactly once.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        let _ = fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        Ok(owned)
    }
}

/// Whether `raw` is an open fd of this process, asked on the bare number: no `BorrowedFd` is
/// made, since one must name an open fd.
pub(crate) fn fd_is_open(raw: RawFd) -> bool {
    // SAFETY: fcntl(F_GETFD) takes any integer and touches no memory; for a number that is not
    // an open fd it fails with EBADF.
    unsafe { nix::libc::fcntl(raw, nix::libc::F_GETFD) >= 0 }
}

/// The device and inode of the open fd `raw` (None if it is not open), asked on the bare
/// number.
fn fd_identity(raw: RawFd) -> Option<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<nix::libc::stat>::uninit();
    // SAFETY: fstat writes one whole `struct stat` through the pointer, which points to one of
    // ours; for a number that is not an open fd it fails with EBADF and writes nothing.
    if unsafe { nix::libc::fstat(raw, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

/// An inherited socket, registered with this thread's event loop (non-blocking, as tokio needs).
pub mod sockets {
    use std::io;
    use std::os::fd::{AsFd, OwnedFd};

    fn nonblocking<S: From<OwnedFd> + AsFd, T>(
        fd: OwnedFd,
        register: impl FnOnce(S) -> io::Result<T>,
    ) -> io::Result<T> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        register(S::from(fd))
    }

    pub fn unix_listener(fd: OwnedFd) -> io::Result<tokio::net::UnixListener> {
        nonblocking(fd, tokio::net::UnixListener::from_std)
    }

    pub fn unix_stream(fd: OwnedFd) -> io::Result<tokio::net::UnixStream> {
        nonblocking(fd, tokio::net::UnixStream::from_std)
    }

    pub fn tcp_listener(fd: OwnedFd) -> io::Result<tokio::net::TcpListener> {
        nonblocking(fd, tokio::net::TcpListener::from_std)
    }

    pub fn tcp_stream(fd: OwnedFd) -> io::Result<tokio::net::TcpStream> {
        nonblocking(fd, tokio::net::TcpStream::from_std)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state with one of everything, the same every time.
    fn sample() -> State {
        let fd = |raw| Fd {
            raw,
            dev: 2049,
            ino: 1000 + raw as u64,
        };
        let sink = |p: &str, f| SinkState {
            path: PathBuf::from(p),
            file: Some(fd(f)),
            max_size: 2 << 20,
            max_backups: 3,
            inode: 77,
            birth: 1_700_000_000_000_000_000,
            size: 1234,
            newline_end: 1200,
            rotations: 5,
            bytes_in: 10_000_000,
            bytes_written: 9_999_000,
            dropped_disk: 1000,
            last_error: Some((
                "cannot write to /l/a.log: No space left".into(),
                1_700_000_000_000,
            )),
        };
        let domain = DomainId {
            driver: "qemu".into(),
            uuid: Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
            name: "vm1".into(),
        };
        State {
            asked_mono_ns: 1,
            frozen_mono_ns: 2,
            started_ms: 1_700_000_000_000,
            uptime_ms: 60_000,
            reexecs: 4,
            lock: fd(3),
            main: ListenerState {
                fd: fd(4),
                path: "/run/logd/logd.sock".into(),
                owned: true,
            },
            admin: ListenerState {
                fd: fd(5),
                path: "/run/logd/logd-admin.sock".into(),
                owned: false,
            },
            metrics: Some(fd(6)),
            next_subscriber_id: 42,
            domains: vec![DomainState {
                driver: domain.driver.clone(),
                uuid: domain.uuid,
                name: domain.name.clone(),
                since_ms: 1_700_000_000_001,
                streams: vec![
                    StreamState::Pipe(PipeState {
                        fd: fd(7),
                        pipe_size: 65536,
                        grow_refused: false,
                        pipe_grows: 2,
                        pipe_grow_refused: 0,
                        sink: sink("/l/a.log", 8),
                    }),
                    StreamState::Console(Box::new(ConsoleState {
                        name: "serial0".into(),
                        domain,
                        guest: GuestState::Listen {
                            path: "/l/serial0.sock".into(),
                            listener: fd(9),
                        },
                        guest_conn: Some(fd(10)),
                        tcp: Some(("127.0.0.1:0".into(), fd(11))),
                        unix: Some(("/l/serial0.sub".into(), fd(12))),
                        protocol: ConsoleProtocol::Telnet,
                        write: WritePolicy::Exclusive,
                        replay_limit: 16384,
                        max_subscribers: 32,
                        queue_limit: 1 << 20,
                        sink: sink("/l/console.log", 13),
                        input: b"ls\r".to_vec(),
                        replay: b"login: ".to_vec(),
                        subscribers: vec![SubscriberState {
                            id: 41,
                            peer: "127.0.0.1:5555".into(),
                            since_ms: 1_700_000_000_002,
                            tcp: true,
                            fd: fd(14),
                            protocol: ConsoleProtocol::Telnet,
                            decoder: telnet::Decoder::default(),
                            unsent: b"queued".to_vec(),
                            bytes_sent: 99,
                            told_read_only: true,
                            role: crate::console::Role::ReadWrite,
                        }],
                        slow_disconnects: 1,
                        refused: 2,
                        guest_connects: 3,
                        access: crate::console::Access {
                            tcp_write: true,
                            read_write: vec![crate::console::access::Principal {
                                written: "alice".into(),
                                group: false,
                                id: Some(1000),
                            }],
                            read_only: vec![crate::console::access::Principal {
                                written: "@100".into(),
                                group: true,
                                id: Some(100),
                            }],
                        },
                        notices: crate::console::Notices {
                            subscribers: false,
                            mark_log: true,
                        },
                    })),
                ],
            }],
            connections: vec![ConnState {
                fd: fd(15),
                endpoint: ConnEndpoint::Admin,
                mode: ConnMode::AwaitingReexec,
                pending: vec![0, 0],
            }],
            virtlogd: Some(ListenerState {
                fd: fd(16),
                path: "/run/libvirt/virtlogd-sock".into(),
                owned: false,
            }),
        }
    }

    const TOKEN: [u8; 16] = *b"0123456789abcdef";

    #[test]
    fn a_state_reads_back_in_its_writers_child() {
        let s = sample();
        let bytes = encode(&s, TOKEN).unwrap();
        let back = decode(&bytes, std::process::id(), TOKEN).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn a_state_from_another_process_or_reexec_is_refused() {
        let bytes = encode(&sample(), TOKEN).unwrap();
        let e = decode(&bytes, std::process::id() + 1, TOKEN).unwrap_err();
        assert!(matches!(e, StateError::WrongParent { .. }), "{e}");
        assert!(e.to_string().contains("not by this process's parent"));
        let e = decode(&bytes, std::process::id(), *b"fedcba9876543210").unwrap_err();
        assert!(matches!(e, StateError::BadToken), "{e}");
    }

    #[test]
    fn garbage_truncation_and_unknown_versions_are_refused_with_a_clear_error() {
        let pid = std::process::id();
        assert!(matches!(
            decode(b"hello world", pid, TOKEN),
            Err(StateError::BadMagic)
        ));
        let bytes = encode(&sample(), TOKEN).unwrap();
        for cut in [10, bytes.len() / 2, bytes.len() - 1] {
            let e = decode(&bytes[..cut], pid, TOKEN).unwrap_err();
            assert!(matches!(e, StateError::Decode(_)), "cut at {cut}: {e}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode(&longer, pid, TOKEN),
            Err(StateError::Decode(_))
        ));
        // A state from a future logd: refused, naming the versions this one reads.
        let header = Header {
            magic: MAGIC,
            version: VERSION + 1,
            pid,
            token: TOKEN,
        };
        let mut future = codec::encode_large(&header).unwrap();
        future.extend_from_slice(&[1, 2, 3]);
        let e = decode(&future, pid, TOKEN).unwrap_err();
        assert!(matches!(e, StateError::Unsupported { found } if found == VERSION + 1));
        assert!(e.to_string().contains("reads versions 1 to"), "{e}");
    }

    /// Version 3's body: the sample without what version 4 added.
    fn sample_v3() -> StateV3 {
        let s = sample();
        let down = |c: ConsoleState| ConsoleStateV3 {
            name: c.name,
            domain: c.domain,
            guest: c.guest,
            guest_conn: c.guest_conn,
            tcp: c.tcp,
            unix: c.unix,
            protocol: c.protocol,
            write: c.write,
            replay_limit: c.replay_limit,
            max_subscribers: c.max_subscribers,
            queue_limit: c.queue_limit,
            sink: c.sink,
            input: c.input,
            replay: c.replay,
            subscribers: c.subscribers,
            slow_disconnects: c.slow_disconnects,
            refused: c.refused,
            guest_connects: c.guest_connects,
            access: c.access,
        };
        StateV3 {
            asked_mono_ns: s.asked_mono_ns,
            frozen_mono_ns: s.frozen_mono_ns,
            started_ms: s.started_ms,
            uptime_ms: s.uptime_ms,
            reexecs: s.reexecs,
            lock: s.lock,
            main: s.main,
            admin: s.admin,
            metrics: s.metrics,
            next_subscriber_id: s.next_subscriber_id,
            domains: s
                .domains
                .into_iter()
                .map(|d| DomainState {
                    driver: d.driver,
                    uuid: d.uuid,
                    name: d.name,
                    since_ms: d.since_ms,
                    streams: d
                        .streams
                        .into_iter()
                        .map(|st| match st {
                            StreamState::Pipe(p) => StreamState::Pipe(p),
                            StreamState::Console(c) => StreamState::Console(Box::new(down(*c))),
                        })
                        .collect(),
                })
                .collect(),
            connections: s.connections,
            virtlogd: s.virtlogd,
        }
    }

    /// The sample as a state of version 3 reads: the consoles with the default notices.
    fn sample_from_v3() -> State {
        let mut s = sample();
        for d in &mut s.domains {
            for st in &mut d.streams {
                if let StreamState::Console(c) = st {
                    c.notices = crate::console::Notices::default();
                }
            }
        }
        s
    }

    /// Version 2's body: the sample without what version 3 added.
    fn sample_v2() -> StateV2 {
        let s = sample();
        let down = |c: ConsoleState| ConsoleStateV2 {
            name: c.name,
            domain: c.domain,
            guest: c.guest,
            guest_conn: c.guest_conn,
            tcp: c.tcp,
            unix: c.unix,
            protocol: c.protocol,
            write: c.write,
            replay_limit: c.replay_limit,
            max_subscribers: c.max_subscribers,
            queue_limit: c.queue_limit,
            sink: c.sink,
            input: c.input,
            replay: c.replay,
            subscribers: c
                .subscribers
                .into_iter()
                .map(|s| SubscriberStateV2 {
                    id: s.id,
                    peer: s.peer,
                    since_ms: s.since_ms,
                    tcp: s.tcp,
                    fd: s.fd,
                    protocol: s.protocol,
                    decoder: s.decoder,
                    unsent: s.unsent,
                    bytes_sent: s.bytes_sent,
                    told_read_only: s.told_read_only,
                })
                .collect(),
            slow_disconnects: c.slow_disconnects,
            refused: c.refused,
            guest_connects: c.guest_connects,
        };
        StateV2 {
            asked_mono_ns: s.asked_mono_ns,
            frozen_mono_ns: s.frozen_mono_ns,
            started_ms: s.started_ms,
            uptime_ms: s.uptime_ms,
            reexecs: s.reexecs,
            lock: s.lock,
            main: s.main,
            admin: s.admin,
            metrics: s.metrics,
            next_subscriber_id: s.next_subscriber_id,
            domains: s
                .domains
                .into_iter()
                .map(|d| DomainState {
                    driver: d.driver,
                    uuid: d.uuid,
                    name: d.name,
                    since_ms: d.since_ms,
                    streams: d
                        .streams
                        .into_iter()
                        .map(|st| match st {
                            StreamState::Pipe(p) => StreamState::Pipe(p),
                            StreamState::Console(c) => StreamState::Console(Box::new(down(*c))),
                        })
                        .collect(),
                })
                .collect(),
            connections: s.connections,
            virtlogd: s.virtlogd,
        }
    }

    /// The sample as a state of version 2 reads: the console with the default access, its TCP
    /// subscriber read-only.
    fn sample_from_v2() -> State {
        let mut s = sample_from_v3();
        for d in &mut s.domains {
            for st in &mut d.streams {
                if let StreamState::Console(c) = st {
                    c.access = crate::console::Access::default();
                    for sub in &mut c.subscribers {
                        sub.role = crate::console::Role::ReadOnly;
                    }
                }
            }
        }
        s
    }

    /// Version 1's body: version 2's without what version 2 added.
    fn sample_v1() -> StateV1 {
        let s = sample_v2();
        StateV1 {
            asked_mono_ns: s.asked_mono_ns,
            frozen_mono_ns: s.frozen_mono_ns,
            started_ms: s.started_ms,
            uptime_ms: s.uptime_ms,
            reexecs: s.reexecs,
            lock: s.lock,
            main: s.main,
            admin: s.admin,
            metrics: s.metrics,
            next_subscriber_id: s.next_subscriber_id,
            domains: s.domains,
            connections: s.connections,
        }
    }

    /// Checks (or, with LOGD_BLESS=1, writes) the pinned bytes of one format version.
    fn pinned(version: u32, body: &[u8]) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("integration/fixtures/state-v{version}.bin"));
        if std::env::var_os("LOGD_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, body).unwrap();
        }
        let fixture = std::fs::read(&path).expect("a pinned state fixture");
        assert_eq!(
            fixture, body,
            "version {version}'s encoding changed: bump VERSION and keep a conversion"
        );
        fixture
    }

    /// The bytes of each format version are pinned: a change to a type that would make this
    /// binary misread a state written by an earlier release fails here. (Bless a version's
    /// fixture with LOGD_BLESS=1 only when that version is new.)
    #[test]
    fn version_1_fixture_still_reads() {
        let fixture = pinned(1, &codec::encode_large(&sample_v1()).unwrap());
        let (old, used): (StateV1, usize) = codec::decode_large(&fixture).unwrap();
        assert_eq!(used, fixture.len());
        let mut want = sample_from_v2();
        want.virtlogd = None;
        assert_eq!(State::from(StateV2::from(old)), want);
        // And through `decode`, as a successor reads it.
        let header = Header {
            magic: MAGIC,
            version: 1,
            pid: std::process::id(),
            token: TOKEN,
        };
        let mut bytes = codec::encode_large(&header).unwrap();
        bytes.extend_from_slice(&fixture);
        assert_eq!(decode(&bytes, std::process::id(), TOKEN).unwrap(), want);
    }

    #[test]
    fn version_2_fixture_still_reads() {
        let fixture = pinned(2, &codec::encode_large(&sample_v2()).unwrap());
        let (old, used): (StateV2, usize) = codec::decode_large(&fixture).unwrap();
        assert_eq!(used, fixture.len());
        assert_eq!(State::from(old), sample_from_v2());
        let header = Header {
            magic: MAGIC,
            version: 2,
            pid: std::process::id(),
            token: TOKEN,
        };
        let mut bytes = codec::encode_large(&header).unwrap();
        bytes.extend_from_slice(&fixture);
        assert_eq!(
            decode(&bytes, std::process::id(), TOKEN).unwrap(),
            sample_from_v2()
        );
    }

    #[test]
    fn version_3_fixture_still_reads() {
        let fixture = pinned(3, &codec::encode_large(&sample_v3()).unwrap());
        let (old, used): (StateV3, usize) = codec::decode_large(&fixture).unwrap();
        assert_eq!(used, fixture.len());
        assert_eq!(State::from(old), sample_from_v3());
        let header = Header {
            magic: MAGIC,
            version: 3,
            pid: std::process::id(),
            token: TOKEN,
        };
        let mut bytes = codec::encode_large(&header).unwrap();
        bytes.extend_from_slice(&fixture);
        assert_eq!(
            decode(&bytes, std::process::id(), TOKEN).unwrap(),
            sample_from_v3()
        );
    }

    #[test]
    fn version_4_fixture_still_reads() {
        let fixture = pinned(4, &codec::encode_large(&sample()).unwrap());
        let (state, used): (State, usize) = codec::decode_large(&fixture).unwrap();
        assert_eq!(used, fixture.len());
        assert_eq!(state, sample());
    }

    #[test]
    fn carried_fds_lose_cloexec_and_come_back_once_and_only_as_themselves() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut c = Carrier::out();
        let fa = c.fd(&a);
        let fb = c.fd(&b);
        assert_eq!(c.finish().unwrap(), 2);
        let flags = FdFlag::from_bits_truncate(fcntl(&a, FcntlArg::F_GETFD).unwrap());
        assert!(!flags.contains(FdFlag::FD_CLOEXEC));
        let mut back = Carrier::back();
        back.fd(&a);
        back.finish().unwrap();
        let flags = FdFlag::from_bits_truncate(fcntl(&a, FcntlArg::F_GETFD).unwrap());
        assert!(flags.contains(FdFlag::FD_CLOEXEC));

        let inherited = Inherited::up_to(1024);
        // The wrong file under a right number is refused and left open.
        let wrong = Fd {
            ino: fa.ino + 1,
            ..fa
        };
        assert!(matches!(
            inherited.take(&wrong),
            Err(StateError::FdMismatch { .. })
        ));
        assert!(fcntl(&a, FcntlArg::F_GETFD).is_ok());
        let inherited = Inherited::up_to(1024);
        let owned = inherited.take(&fb).unwrap();
        std::mem::forget(b); // `owned` is its owner now
        assert!(matches!(
            inherited.take(&fb),
            Err(StateError::FdTwice { .. })
        ));
        drop(owned);
        let _ = fa;
    }
}
