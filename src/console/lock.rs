//! The write lock: who holds it (exclusive mode: the longest-connected read-write subscriber),
//! who may type, and its moves: passed on when its holder leaves or spies, given by an
//! operator (`logdctl console grant`), or forced by a subscriber (`attach --force`, the escape's
//! `f`). Each move is told to the subscribers once.

use std::task::Context;

use logd_protocol::admin::EventKind;
use logd_protocol::WritePolicy;

use super::{notice, Console, Role};
use crate::serve::events;

impl Console {
    /// Gives the write lock to a subscriber (exclusive mode): it moves to the head of the line,
    /// and the others keep their order. Returns false if it is not here.
    pub(crate) fn grant(&mut self, id: u64, by: &str) -> Result<bool, GrantError> {
        self.give_lock(id, LockBy::Operator(by))
    }

    /// [`Self::grant`], by an operator or by the subscriber itself forcing it.
    pub(super) fn give_lock(&mut self, id: u64, by: LockBy<'_>) -> Result<bool, GrantError> {
        if self.cfg.write != WritePolicy::Exclusive {
            return Err(GrantError::NotExclusive);
        }
        let Some(i) = self.subs.iter().position(|s| s.id == id) else {
            return Ok(false);
        };
        if self.subs[i].role != Role::ReadWrite {
            return Err(GrantError::ReadOnly {
                id,
                peer: self.subs[i].peer.clone(),
            });
        }
        let holder = self.holder();
        if holder != Some(i) {
            let s = self.subs.remove(i);
            self.subs.insert(0, s);
            let new = notice::who(&self.subs[0].peer, id);
            for (j, o) in self.subs.iter_mut().enumerate().skip(1) {
                // The old holder moved one place down with the insert.
                if holder.map(|h| h + 1) == Some(j) {
                    o.notice(&match by {
                        LockBy::Operator(op) => {
                            format!("the operator {op} gave the write lock to {new}")
                        }
                        LockBy::Itself(who) => format!("{who} took the write lock from you"),
                    });
                    o.told_read_only = false;
                } else {
                    o.notice(&notice::lock_moved(Some(&new)));
                }
            }
            let s = &mut self.subs[0];
            s.notice("you now hold the write lock");
            s.told_read_only = false;
            self.lock_holder = Some(id);
            match by {
                LockBy::Operator(op) => {
                    tracing::info!(
                        subscriber = id,
                        operator = op,
                        "write lock granted by the operator"
                    )
                }
                LockBy::Itself(_) => {
                    tracing::info!(subscriber = id, "write lock forced by the subscriber")
                }
            }
            events::emit(|| EventKind::WriteLockMoved {
                domain: self.cfg.domain.name.clone(),
                console: self.cfg.name.clone(),
                to: id,
            });
        }
        Ok(true)
    }

    /// The subscriber that holds the write lock in exclusive mode: the longest-connected
    /// read-write one.
    pub(super) fn holder(&self) -> Option<usize> {
        self.subs.iter().position(|s| s.role == Role::ReadWrite)
    }

    /// Whether subscriber `i` may type into the guest.
    pub(super) fn may_write(&self, i: usize) -> bool {
        if self.subs[i].role != Role::ReadWrite {
            return false;
        }
        match self.cfg.write {
            WritePolicy::Exclusive => self.holder() == Some(i),
            WritePolicy::Shared => true,
            WritePolicy::None => false,
        }
    }

    /// Tells the subscribers of a move of the lock since they were last told (`had_holder`,
    /// its holder then): the new holder that it holds it, the others who does.
    pub(super) fn tell_lock_moves(&mut self, had_holder: Option<u64>, cx: &mut Context<'_>) {
        if self.cfg.write != WritePolicy::Exclusive {
            return;
        }
        let now = self.holder();
        let now_id = now.map(|h| self.subs[h].id);
        self.lock_holder = now_id;
        if now_id != had_holder && (now.is_some() || had_holder.is_some()) {
            let who = now.map(|h| notice::who(&self.subs[h].peer, self.subs[h].id));
            if let Some(h) = now {
                let s = &mut self.subs[h];
                tracing::info!(subscriber = s.id, "write lock passed");
                events::emit(|| EventKind::WriteLockMoved {
                    domain: self.cfg.domain.name.clone(),
                    console: self.cfg.name.clone(),
                    to: s.id,
                });
                s.notice("you now hold the write lock");
                s.told_read_only = false;
            }
            // The others are told who holds it now (nobody, when the last read-write
            // subscriber left).
            let moved = notice::lock_moved(who.as_deref());
            for (j, s) in self.subs.iter_mut().enumerate() {
                if Some(j) != now {
                    s.notice(&moved);
                }
                s.poll_flush(cx);
            }
        }
    }
}

/// Who moves the write lock: an operator (`logdctl console grant`), or the subscriber itself
/// (the escape's `f`, `attach --force`), each as named in the notices.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LockBy<'a> {
    Operator(&'a str),
    Itself(&'a str),
}

/// Why the write lock cannot be given.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GrantError {
    #[error("the console's write policy is not exclusive: there is no lock to move")]
    NotExclusive,
    #[error("subscriber {id} ({peer}) is read-only: it cannot hold the write lock")]
    ReadOnly { id: u64, peer: String },
}
