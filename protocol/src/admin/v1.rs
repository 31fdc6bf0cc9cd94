//! The snapshot's first layout, frozen: `AdminRequest::Snapshot` and `DomainSnapshot` are
//! answered in it, so a `logdctl` that predates roles still reads them (bincode encodes a
//! struct by position, so a field added to [`super::SubscriberSnapshot`] would shift every
//! byte after it). Never change these types; a new layout is a new request.
//!
//! Converting down drops what the first layout has no place for. Converting up (a new
//! `logdctl` facing an older daemon) fills it in as that daemon behaved: every subscriber could
//! take the write lock, so each is `read-write`; refusals were not reported, so 0.

use serde::{Deserialize, Serialize};

use super::{GuestState, LastError, MailboxSnapshot, ReexecReport, Role, StreamKind};
use crate::message::{ConsoleProtocol, DomainId};

/// [`super::DaemonSnapshot`] in the first layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonSnapshot {
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
    pub fds: u64,
    pub rss_kib: u64,
    pub registry: MailboxSnapshot,
    pub domains: Vec<DomainSnapshot>,
    pub build_id: String,
    pub exe: String,
    pub exe_mtime_ms: u64,
    pub started_ms: u64,
    pub reexecs: u32,
    pub last_reexec: Option<ReexecReport>,
}

/// [`super::DomainSnapshot`] in the first layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainSnapshot {
    pub id: DomainId,
    pub since_ms: u64,
    pub mailbox: MailboxSnapshot,
    pub streams: Vec<StreamSnapshot>,
}

/// [`super::StreamSnapshot`] in the first layout: no `refused`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSnapshot {
    pub kind: StreamKind,
    pub path: String,
    pub bytes_in: u64,
    pub bytes_written: u64,
    pub file_size: u64,
    pub rotations: u64,
    pub dropped_disk: u64,
    pub guest: GuestState,
    pub last_error: Option<LastError>,
    pub rate_in: u64,
    pub rate_out: u64,
    pub subscribers: Vec<SubscriberSnapshot>,
    pub slow_disconnects: u64,
}

/// [`super::SubscriberSnapshot`] in the first layout: no `role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberSnapshot {
    pub id: u64,
    pub peer: String,
    pub since_ms: u64,
    pub bytes_sent: u64,
    pub queue: u64,
    pub queue_limit: u64,
    pub writer: bool,
    pub protocol: ConsoleProtocol,
}

impl From<super::DaemonSnapshot> for DaemonSnapshot {
    fn from(s: super::DaemonSnapshot) -> Self {
        DaemonSnapshot {
            version: s.version,
            pid: s.pid,
            uptime_ms: s.uptime_ms,
            fds: s.fds,
            rss_kib: s.rss_kib,
            registry: s.registry,
            domains: s.domains.into_iter().map(Into::into).collect(),
            build_id: s.build_id,
            exe: s.exe,
            exe_mtime_ms: s.exe_mtime_ms,
            started_ms: s.started_ms,
            reexecs: s.reexecs,
            last_reexec: s.last_reexec,
        }
    }
}

impl From<DaemonSnapshot> for super::DaemonSnapshot {
    fn from(s: DaemonSnapshot) -> Self {
        super::DaemonSnapshot {
            version: s.version,
            pid: s.pid,
            uptime_ms: s.uptime_ms,
            fds: s.fds,
            rss_kib: s.rss_kib,
            registry: s.registry,
            domains: s.domains.into_iter().map(Into::into).collect(),
            build_id: s.build_id,
            exe: s.exe,
            exe_mtime_ms: s.exe_mtime_ms,
            started_ms: s.started_ms,
            reexecs: s.reexecs,
            last_reexec: s.last_reexec,
        }
    }
}

impl From<super::DomainSnapshot> for DomainSnapshot {
    fn from(d: super::DomainSnapshot) -> Self {
        DomainSnapshot {
            id: d.id,
            since_ms: d.since_ms,
            mailbox: d.mailbox,
            streams: d.streams.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<DomainSnapshot> for super::DomainSnapshot {
    fn from(d: DomainSnapshot) -> Self {
        super::DomainSnapshot {
            id: d.id,
            since_ms: d.since_ms,
            mailbox: d.mailbox,
            streams: d.streams.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<super::StreamSnapshot> for StreamSnapshot {
    fn from(s: super::StreamSnapshot) -> Self {
        StreamSnapshot {
            kind: s.kind,
            path: s.path,
            bytes_in: s.bytes_in,
            bytes_written: s.bytes_written,
            file_size: s.file_size,
            rotations: s.rotations,
            dropped_disk: s.dropped_disk,
            guest: s.guest,
            last_error: s.last_error,
            rate_in: s.rate_in,
            rate_out: s.rate_out,
            subscribers: s
                .subscribers
                .into_iter()
                .map(|u| SubscriberSnapshot {
                    id: u.id,
                    peer: u.peer,
                    since_ms: u.since_ms,
                    bytes_sent: u.bytes_sent,
                    queue: u.queue,
                    queue_limit: u.queue_limit,
                    writer: u.writer,
                    protocol: u.protocol,
                })
                .collect(),
            slow_disconnects: s.slow_disconnects,
        }
    }
}

impl From<StreamSnapshot> for super::StreamSnapshot {
    fn from(s: StreamSnapshot) -> Self {
        super::StreamSnapshot {
            kind: s.kind,
            path: s.path,
            bytes_in: s.bytes_in,
            bytes_written: s.bytes_written,
            file_size: s.file_size,
            rotations: s.rotations,
            dropped_disk: s.dropped_disk,
            guest: s.guest,
            last_error: s.last_error,
            rate_in: s.rate_in,
            rate_out: s.rate_out,
            subscribers: s
                .subscribers
                .into_iter()
                .map(|u| super::SubscriberSnapshot {
                    id: u.id,
                    peer: u.peer,
                    since_ms: u.since_ms,
                    bytes_sent: u.bytes_sent,
                    queue: u.queue,
                    queue_limit: u.queue_limit,
                    writer: u.writer,
                    protocol: u.protocol,
                    role: Role::ReadWrite,
                })
                .collect(),
            slow_disconnects: s.slow_disconnects,
            refused: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first layout drops the role and the refusals, and reads back as an older daemon's
    /// subscribers were: read-write, no refusals counted.
    #[test]
    fn down_and_up_keep_everything_the_first_layout_has() {
        let sub = super::super::SubscriberSnapshot {
            id: 7,
            peer: "65534:nobody".into(),
            since_ms: 1,
            bytes_sent: 2,
            queue: 3,
            queue_limit: 4,
            writer: false,
            protocol: ConsoleProtocol::Raw,
            role: Role::ReadOnly,
        };
        let stream = super::super::StreamSnapshot {
            kind: StreamKind::Console { name: "s0".into() },
            path: "/l".into(),
            bytes_in: 1,
            bytes_written: 1,
            file_size: 1,
            rotations: 0,
            dropped_disk: 0,
            guest: GuestState::Connected,
            last_error: None,
            rate_in: 0,
            rate_out: 0,
            subscribers: vec![sub.clone()],
            slow_disconnects: 5,
            refused: 6,
        };
        let old = StreamSnapshot::from(stream.clone());
        assert_eq!(old.subscribers[0].peer, "65534:nobody");
        assert_eq!(old.slow_disconnects, 5);
        let back = super::super::StreamSnapshot::from(old);
        let mut want = stream;
        want.refused = 0;
        want.subscribers[0].role = Role::ReadWrite;
        assert_eq!(back, want);
    }
}
