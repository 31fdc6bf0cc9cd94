//! The registry's log requests: `Open`, `GetPosition`, `Read` and `Append`, each with its path
//! already resolved and checked by the socket it came in on (`serve::logs`).
//!
//! An open claims its path for a domain (found or created); the other three go to the domain
//! holding the path open, or work on the files directly when none does.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::prelude::*;
use logd_protocol::{DomainId, Position, ReadFrom};

use super::{ask, DomainKey, Registry, RegistryError};
use crate::control::domain::{self, Domain, DomainError};
use crate::datapath::rotate::{self, ReadOutcome};

/// `OpenLog`, with the path already resolved and checked.
#[derive(Message)]
#[rtype(result = "Result<(Position, OwnedFd), RegistryError>")]
pub(crate) struct Open {
    pub(crate) domain: DomainId,
    pub(crate) path: PathBuf,
    pub(crate) truncate: bool,
}

impl Handler<Open> for Registry {
    type Result = ResponseActFuture<Self, Result<(Position, OwnedFd), RegistryError>>;

    fn handle(&mut self, msg: Open, _: &mut Context<Self>) -> Self::Result {
        self.open(msg, REAP_TRIES)
    }
}

/// How often an open of a busy path asks its holder whether the log's writers are gone, and
/// waits between asks when the holder has just closed it (its notice still on the way).
const REAP_TRIES: u32 = 20;
const REAP_WAIT: std::time::Duration = std::time::Duration::from_millis(5);

impl Registry {
    /// Claims the path and opens the stream. A busy path's holder is asked first whether the
    /// log's writers are all gone (a guest restarting at once reopens its log a moment after
    /// its old pipe closed, perhaps before logd saw the EOF): if so, the old log is closed and
    /// the open goes on.
    fn open(
        &mut self,
        msg: Open,
        tries: u32,
    ) -> ResponseActFuture<Self, Result<(Position, OwnedFd), RegistryError>> {
        let busy = match self.claim(&msg.domain, &msg.path) {
            Ok(c) => return self.open_claimed(c, msg),
            Err(busy @ RegistryError::Busy { .. }) if tries > 0 => busy,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let Some((key, owner)) = self.hold_owner(&msg.path) else {
            return Box::pin(fut::ready(Err(busy)));
        };
        let req = ask(
            owner.send(domain::Reap {
                path: msg.path.clone(),
            }),
            msg.path.clone(),
        );
        Box::pin(
            fut::wrap_future(req).then(move |res, act: &mut Registry, _| {
                act.unhold(&key);
                let fut: ResponseActFuture<Self, _> = match res {
                    Ok(domain::Reaped::Closed(path)) => {
                        act.release_if_same(&path);
                        act.open(msg, 0)
                    }
                    Ok(domain::Reaped::Absent) => Box::pin(
                        fut::wrap_future(tokio::time::sleep(REAP_WAIT))
                            .then(move |(), act: &mut Registry, _| act.open(msg, tries - 1)),
                    ),
                    Ok(domain::Reaped::Live) | Err(_) => Box::pin(fut::ready(Err(busy))),
                };
                fut
            }),
        )
    }
}

impl Registry {
    /// Opens the stream of an `Open` whose path is claimed.
    fn open_claimed(
        &mut self,
        (_, addr, shared): (DomainKey, Addr<Domain>, Arc<Path>),
        msg: Open,
    ) -> ResponseActFuture<Self, Result<(Position, OwnedFd), RegistryError>> {
        let req = addr.send(domain::OpenStream {
            path: shared,
            rotate: self.rotate,
            truncate: msg.truncate,
            store_as: crate::control::stored::storing().then_some(msg.domain),
        });
        released_on_error(req, msg.path)
    }
}

/// Asks a domain to open a stream on a claimed path; the claim is released if it does not.
fn released_on_error<T: 'static>(
    req: impl std::future::Future<Output = Result<Result<T, DomainError>, MailboxError>> + 'static,
    path: PathBuf,
) -> ResponseActFuture<Registry, Result<T, RegistryError>> {
    let claimed = path.clone();
    Box::pin(
        fut::wrap_future(ask(req, path)).map(move |res, act: &mut Registry, _| {
            if res.is_err() {
                act.release(&claimed);
            }
            res
        }),
    )
}

/// A pipe from systemd's fd store, whose log is opened again after a crash
/// ([`crate::control::recover::recover`]): claimed like an open, its path checked already.
#[derive(Message)]
#[rtype(result = "Result<Position, RegistryError>")]
pub(crate) struct Recover {
    pub(crate) domain: DomainId,
    pub(crate) path: PathBuf,
    pub(crate) rotate: crate::datapath::rotate::RotateConfig,
    pub(crate) pipe: OwnedFd,
    pub(crate) stats: crate::datapath::sink::SinkStats,
}

impl Handler<Recover> for Registry {
    type Result = ResponseActFuture<Self, Result<Position, RegistryError>>;

    fn handle(&mut self, msg: Recover, _: &mut Context<Self>) -> Self::Result {
        let (_, addr, shared) = match self.claim(&msg.domain, &msg.path) {
            Ok(c) => c,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let req = addr.send(domain::AdoptPipe {
            path: shared,
            rotate: msg.rotate,
            pipe: msg.pipe,
            stats: msg.stats,
        });
        released_on_error(req, msg.path)
    }
}

/// `GetPosition`.
#[derive(Message)]
#[rtype(result = "Result<Position, RegistryError>")]
pub(crate) struct GetPosition {
    pub(crate) path: PathBuf,
}

impl Handler<GetPosition> for Registry {
    type Result = ResponseActFuture<Self, Result<Position, RegistryError>>;

    fn handle(&mut self, msg: GetPosition, _: &mut Context<Self>) -> Self::Result {
        let path = msg.path.clone();
        self.forward(
            msg.path.clone(),
            domain::GetPosition { path: msg.path },
            move || rotate::end_position(&path),
        )
    }
}

/// `ReadLog`.
#[derive(Message)]
#[rtype(result = "Result<ReadOutcome, RegistryError>")]
pub(crate) struct Read {
    pub(crate) path: PathBuf,
    pub(crate) from: ReadFrom,
    pub(crate) max_len: usize,
}

impl Handler<Read> for Registry {
    type Result = ResponseActFuture<Self, Result<ReadOutcome, RegistryError>>;

    fn handle(&mut self, msg: Read, _: &mut Context<Self>) -> Self::Result {
        let Read {
            path,
            from,
            max_len,
        } = msg;
        let req = domain::ReadLog {
            path: path.clone(),
            from,
            max_len,
        };
        let p = path.clone();
        self.forward(path, req, move || rotate::read_log(&p, from, max_len))
    }
}

/// `AppendLog`, with the path already resolved and checked.
#[derive(Message)]
#[rtype(result = "Result<Position, RegistryError>")]
pub(crate) struct Append {
    pub(crate) domain: DomainId,
    pub(crate) path: PathBuf,
    pub(crate) message: Vec<u8>,
}

impl Handler<Append> for Registry {
    type Result = ResponseActFuture<Self, Result<Position, RegistryError>>;

    fn handle(&mut self, msg: Append, _: &mut Context<Self>) -> Self::Result {
        let req = domain::AppendLog {
            path: msg.path.clone(),
            rotate: self.rotate,
            message: msg.message,
        };
        if self.frozen {
            return Box::pin(fut::ready(Err(RegistryError::Reexec)));
        }
        // An open log is appended through its own domain, whoever asks; otherwise the named
        // domain claims the path for the duration of the write.
        if let Some((key, addr)) = self.hold_owner(&msg.path) {
            let req = ask(addr.send(req), msg.path);
            return Box::pin(
                fut::wrap_future(req).map(move |res, act: &mut Registry, _| {
                    act.unhold(&key);
                    res
                }),
            );
        }
        let addr = match self.claim(&msg.domain, &msg.path) {
            Ok((_, a, _)) => a,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let path = msg.path;
        Box::pin(fut::wrap_future(ask(addr.send(req), path.clone())).map(
            move |res, act: &mut Registry, _| {
                act.release(&path);
                res
            },
        ))
    }
}
