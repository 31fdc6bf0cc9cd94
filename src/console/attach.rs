//! `logdctl attach`'s subscribers, and the commands of its escape menu.
//!
//! An attach comes through logd's console socket (`serve::server`), which any local user may
//! reach, so the daemon knows the caller's uid (`SO_PEERCRED`) and judges it by the console's
//! lists, as it judges a peer of the console's own UNIX socket ([`access`](super::access)). The
//! daemon makes a socketpair, joins one end to the console as a raw subscriber owned by that
//! uid, and hands the other end to the caller. A console needs no `--unix` or `--tcp` for it.
//!
//! The escape menu's commands ([`ConsoleCommand`]) name the subscriber by id, and are allowed
//! to the uid that owns it (and to root): who is there, the write lock (asked for, or forced if
//! the role allows), spy (read-only by choice), replay, BREAK and SysRq.

use logd_protocol::admin::SubscriberSnapshot;
use logd_protocol::{ConsoleCommand, ConsoleProtocol, ConsoleReply, WritePolicy};

use super::access::Cred;
use super::subscriber::Socket;
use super::{notice, Console, Role};
use crate::serve::events;
use logd_protocol::admin::EventKind;

/// Most lines a `Replay` command gives (the replay ring bounds the bytes anyway).
const MAX_REPLAY_LINES: u32 = 100_000;

/// An attach, as the console socket's connection asks it.
pub(crate) struct AttachRequest {
    /// logd's end of the socketpair.
    pub(crate) sock: std::os::unix::net::UnixStream,
    /// The caller, by its connection to the console socket.
    pub(crate) cred: Cred,
    /// How it is shown (`UID:NAME`).
    pub(crate) identity: String,
    /// Watch only, whatever the role.
    pub(crate) read_only: bool,
    /// Take the write lock from its holder.
    pub(crate) force: bool,
}

/// The subscriber an attach made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttachedSub {
    pub(crate) id: u64,
    pub(crate) peer: String,
    pub(crate) role: Role,
    pub(crate) writer: bool,
}

/// Why an attach or a command was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AttachError {
    #[error(
        "uid {uid} may not use console {console}: only root, logd's own uid and the users and \
         groups of its read_write and read_only lists may"
    )]
    Refused { uid: u32, console: String },
    #[error("{0}")]
    Full(String),
    #[error("cannot set up the console connection: {0}")]
    Socket(std::io::Error),
    #[error(
        "you may not type on console {console}: your uid is in its read_only list, not its \
         read_write list"
    )]
    NotWriter { console: String },
    #[error("console {console} is read-only (write = none): nobody types into its guest")]
    ReadOnlyConsole { console: String },
    #[error("subscriber {id} was attached by another user; uid {uid} may not command it")]
    NotYours { id: u64, uid: u32 },
}

impl AttachError {
    /// The error as a client is told it.
    pub(crate) fn to_wire(&self) -> logd_protocol::WireError {
        use logd_protocol::ErrorCode as C;
        let code = match self {
            AttachError::Refused { .. }
            | AttachError::NotWriter { .. }
            | AttachError::NotYours { .. } => C::PermissionDenied,
            AttachError::Full(_) => C::Busy,
            AttachError::Socket(_) => C::Io,
            AttachError::ReadOnlyConsole { .. } => C::InvalidArgument,
        };
        logd_protocol::WireError::new(code, self.to_string())
    }
}

impl Console {
    /// Joins an attach's end of the socketpair as a subscriber, with the role the caller's
    /// credentials give (read-only if it asked), owned by its uid; with `force`, it takes the
    /// write lock. A caller in none of the console's lists is refused, counted and logged, as
    /// on the console's UNIX socket.
    pub(crate) fn attach(&mut self, req: AttachRequest) -> Result<AttachedSub, AttachError> {
        let daemon_uid = nix::unistd::geteuid().as_raw();
        let console = self.cfg.name.clone();
        let Some(allowed) = self.cfg.access.role_of(&req.cred, daemon_uid) else {
            self.stats.refused += 1;
            tracing::warn!(peer = %req.identity, uid = req.cred.uid, gid = req.cred.gid, "refused an attach: not in the console's read_write or read_only lists");
            events::emit(|| EventKind::SubscriberRefused {
                domain: self.cfg.domain.name.clone(),
                console: self.cfg.name.clone(),
                peer: req.identity.clone(),
                reason: "not allowed".into(),
            });
            return Err(AttachError::Refused {
                uid: req.cred.uid,
                console,
            });
        };
        if req.force && !req.read_only {
            self.may_take_lock(allowed)?;
        }
        let role = if req.read_only {
            Role::ReadOnly
        } else {
            allowed
        };
        req.sock
            .set_nonblocking(true)
            .map_err(AttachError::Socket)?;
        let sock = tokio::net::UnixStream::from_std(req.sock).map_err(AttachError::Socket)?;
        let id = self
            .add_subscriber(
                Socket::Unix(sock),
                req.identity.clone(),
                role,
                ConsoleProtocol::Raw,
                Some(req.cred.uid),
            )
            .map_err(|_| AttachError::Full(self.full()))?;
        let i = self.index(id).expect("just added");
        self.subs[i].spy = req.read_only && allowed == Role::ReadWrite;
        if req.force && !req.read_only && self.cfg.write == WritePolicy::Exclusive {
            let by = notice::who(&req.identity, id);
            // The role was checked, and the console is exclusive: this cannot fail.
            let _ = self.give_lock(id, super::LockBy::Itself(&by));
        }
        let i = self.index(id).expect("still here");
        Ok(AttachedSub {
            id,
            peer: req.identity,
            role,
            writer: self.may_write(i),
        })
    }

    /// A command about subscriber `id`, from `uid`. Ok(None): no such subscriber here.
    pub(crate) fn command(
        &mut self,
        id: u64,
        uid: u32,
        cmd: ConsoleCommand,
    ) -> Result<Option<ConsoleReply>, AttachError> {
        let Some(i) = self.index(id) else {
            return Ok(None);
        };
        if uid != 0 && self.subs[i].owner != Some(uid) {
            return Err(AttachError::NotYours { id, uid });
        }
        let said = |s: String| Ok(Some(ConsoleReply::Said(s)));
        match cmd {
            ConsoleCommand::Who => Ok(Some(ConsoleReply::Who(self.subscriber_snapshots()))),
            ConsoleCommand::Lock { force } => said(self.ask_lock(i, force)?),
            ConsoleCommand::Spy => said(self.spy(i)),
            ConsoleCommand::Replay { lines } => Ok(Some(ConsoleReply::Replay(
                self.replay.last_lines(lines.min(MAX_REPLAY_LINES) as usize),
            ))),
            ConsoleCommand::Break | ConsoleCommand::SysRq(_) => {
                let s = &self.subs[i];
                let what = match cmd {
                    ConsoleCommand::SysRq(k) => format!("SysRq {:?}", char::from(k)),
                    _ => "BREAK".to_owned(),
                };
                tracing::info!(subscriber = id, peer = %s.peer, what, "not passed to the guest: its chardev carries bytes only");
                said(format!(
                    "{what} cannot reach this guest: its chardev carries bytes only (a SysRq is \
                     a BREAK and a key); see CONSOLES.md \"BREAK\""
                ))
            }
        }
    }

    fn index(&self, id: u64) -> Option<usize> {
        self.subs.iter().position(|s| s.id == id)
    }

    /// Every subscriber as the admin socket shows it, in write-lock order.
    pub(super) fn subscriber_snapshots(&self) -> Vec<SubscriberSnapshot> {
        self.subs
            .iter()
            .enumerate()
            .map(|(i, s)| SubscriberSnapshot {
                id: s.id,
                peer: s.peer.clone(),
                since_ms: crate::clock::unix_ms(s.since_wall),
                bytes_sent: s.bytes_sent,
                queue: s.queued() as u64,
                queue_limit: self.cfg.queue_limit as u64,
                writer: self.may_write(i),
                protocol: s.protocol(),
                role: s.role,
            })
            .collect()
    }

    /// Whether a subscriber whose lists give it `allowed` may take this console's write lock.
    fn may_take_lock(&self, allowed: Role) -> Result<(), AttachError> {
        let console = self.cfg.name.clone();
        if self.cfg.write == WritePolicy::None {
            return Err(AttachError::ReadOnlyConsole { console });
        }
        if allowed != Role::ReadWrite {
            return Err(AttachError::NotWriter { console });
        }
        Ok(())
    }

    /// `Lock`: a spy becomes a writer again, at the back of the line; with `force`, it takes the
    /// lock from its holder. Says where the subscriber stands.
    fn ask_lock(&mut self, i: usize, force: bool) -> Result<String, AttachError> {
        let s = &self.subs[i];
        let allowed = if s.spy { Role::ReadWrite } else { s.role };
        self.may_take_lock(allowed)?;
        let id = s.id;
        let mut i = i;
        if self.subs[i].spy {
            let s = &mut self.subs[i];
            s.spy = false;
            s.role = Role::ReadWrite;
            s.told_read_only = false;
            // Back of the line: being a spy does not keep a place in it.
            let s = self.subs.remove(i);
            self.subs.push(s);
            i = self.subs.len() - 1;
        }
        if self.cfg.write == WritePolicy::Shared {
            return Ok("you may type: this console's writers share it".into());
        }
        if force {
            let by = notice::who(&self.subs[i].peer, id);
            let _ = self.give_lock(id, super::LockBy::Itself(&by));
            return Ok("you hold the write lock".into());
        }
        Ok(match self.holder() {
            Some(h) if self.subs[h].id == id => "you hold the write lock".into(),
            Some(h) => {
                let ahead = self.subs[..i]
                    .iter()
                    .filter(|s| s.role == Role::ReadWrite)
                    .count();
                format!(
                    "{} holds the write lock; you are number {ahead} in line for it (force it \
                     to take it now)",
                    notice::who(&self.subs[h].peer, self.subs[h].id)
                )
            }
            None => "you hold the write lock".into(),
        })
    }

    /// `Spy`: read-only by choice; the write lock, if it held it, passes on at the next poll.
    fn spy(&mut self, i: usize) -> String {
        let s = &mut self.subs[i];
        if s.role == Role::ReadOnly {
            return "you are read-only already".into();
        }
        s.role = Role::ReadOnly;
        s.spy = true;
        s.told_read_only = true;
        tracing::info!(subscriber = s.id, peer = %s.peer, "subscriber is a spy now");
        "you are watching read-only now; ask for the lock to type again".into()
    }
}
