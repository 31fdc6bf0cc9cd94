//! The bodies of the re-exec state's earlier format versions, each with its conversion to the
//! next, up to version 4's, which becomes the current [`State`] with empty extension lists.
//! Only ever added to: a successor must read the state of the release before it.

use std::path::PathBuf;

use logd_protocol::{ConsoleProtocol, DomainId, WritePolicy};
use serde::{Deserialize, Serialize};

use super::{
    ConnState, ConsoleState, DomainState, Fd, GuestState, ListenerState, SinkState, State,
    StreamState, SubscriberState,
};
use crate::console::telnet;

/// Format version 4's body: version 5 without the extension lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateV4 {
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
    pub domains: Vec<DomainState<ConsoleStateV4>>,
    pub connections: Vec<ConnState>,
    pub virtlogd: Option<ListenerState>,
}

impl From<StateV4> for State {
    fn from(v: StateV4) -> State {
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
            ext: Vec::new(),
        }
    }
}

/// A console in format version 4: no extension list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleStateV4 {
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
    pub subscribers: Vec<SubscriberStateV4>,
    pub slow_disconnects: u64,
    pub refused: u64,
    pub guest_connects: u64,
    pub access: crate::console::Access,
    pub notices: crate::console::Notices,
}

impl From<ConsoleStateV4> for ConsoleState {
    fn from(c: ConsoleStateV4) -> ConsoleState {
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
            subscribers: c.subscribers.into_iter().map(Into::into).collect(),
            slow_disconnects: c.slow_disconnects,
            refused: c.refused,
            guest_connects: c.guest_connects,
            access: c.access,
            notices: c.notices,
            ext: Vec::new(),
        }
    }
}

/// A console subscriber in format versions 3 and 4: no extension list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberStateV4 {
    pub id: u64,
    pub peer: String,
    pub since_ms: u64,
    pub tcp: bool,
    pub fd: Fd,
    pub protocol: ConsoleProtocol,
    pub decoder: telnet::Decoder,
    #[serde(with = "serde_bytes")]
    pub unsent: Vec<u8>,
    pub bytes_sent: u64,
    pub told_read_only: bool,
    pub role: crate::console::Role,
}

impl From<SubscriberStateV4> for SubscriberState {
    fn from(s: SubscriberStateV4) -> SubscriberState {
        SubscriberState {
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
            role: s.role,
            ext: Vec::new(),
        }
    }
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

impl From<StateV3> for StateV4 {
    fn from(v: StateV3) -> StateV4 {
        StateV4 {
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

impl From<StateV2> for StateV4 {
    fn from(v: StateV2) -> StateV4 {
        StateV4 {
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
pub(super) fn upgrade_domain<C: Into<T>, T>(d: DomainState<C>) -> DomainState<T> {
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
    pub subscribers: Vec<SubscriberStateV4>,
    pub slow_disconnects: u64,
    pub refused: u64,
    pub guest_connects: u64,
    pub access: crate::console::Access,
}

/// A console carried from version 3 gets the default notice settings, which are what that
/// version did: no marks in the log. (Its subscribers start getting notices: that version had
/// no way to turn them off, and sent the write lock's.)
impl From<ConsoleStateV3> for ConsoleStateV4 {
    fn from(c: ConsoleStateV3) -> ConsoleStateV4 {
        ConsoleStateV4 {
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
impl From<ConsoleStateV2> for ConsoleStateV4 {
    fn from(c: ConsoleStateV2) -> ConsoleStateV4 {
        use crate::console::{Access, Role};
        ConsoleStateV4 {
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
                .map(|s| SubscriberStateV4 {
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
