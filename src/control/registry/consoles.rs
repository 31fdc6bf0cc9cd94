//! The registry's console requests: `AddConsole`, `RemoveConsole`, `ListConsoles`, an
//! operator's kick or grant of a subscriber (`Subscriber`), and `ConsoleConfigs` (every
//! console's settings, for the consoles declared in the config file).
//!
//! The registry keeps the names of each domain's consoles, so that it asks only the domains
//! that have some, and refuses a duplicate name before anything is claimed.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use actix::prelude::*;
use logd_protocol::{DomainId, ErrorCode, Position, WireError};

use super::{ask, Registry, RegistryError};
use crate::control::domain::{self, DomainError};

/// `AddConsole`, with its paths resolved and checked.
#[derive(Message)]
#[rtype(result = "Result<(Option<String>, Position, Option<OwnedFd>), RegistryError>")]
pub(crate) struct AddConsole {
    pub(crate) config: crate::console::ConsoleConfig,
    /// Sockets kept through a crash, taken instead of made (none for a request).
    pub(crate) kept: crate::console::KeptSockets,
}

impl Handler<AddConsole> for Registry {
    type Result =
        ResponseActFuture<Self, Result<(Option<String>, Position, Option<OwnedFd>), RegistryError>>;

    fn handle(&mut self, msg: AddConsole, _: &mut Context<Self>) -> Self::Result {
        let mut config = msg.config;
        config.rotate = self.rotate;
        let key = self.key(&config.domain.driver, config.domain.uuid);
        if let Some(e) = self.domains.get(&key) {
            if e.consoles().iter().any(|n| **n == *config.name) {
                return Box::pin(fut::ready(Err(RegistryError::Domain(
                    DomainError::ConsoleExists {
                        domain: e.name.to_string(),
                        name: config.name,
                    },
                ))));
            }
        }
        let name: Box<str> = config.name.as_str().into();
        let (key, addr, _) = match self.claim(&config.domain, &config.log) {
            Ok(c) => c,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let path = config.log.clone();
        let req = ask(
            addr.send(domain::AddConsole {
                config,
                kept: msg.kept,
            }),
            path.clone(),
        );
        Box::pin(
            fut::wrap_future(req).map(move |res, act: &mut Registry, _| {
                match &res {
                    Ok(_) => {
                        if let Some(e) = act.domains.get_mut(&key) {
                            let mut names = e.consoles().to_vec();
                            names.push(name);
                            e.consoles = Some(names.into_boxed_slice());
                        }
                    }
                    Err(_) => act.release(&path),
                }
                res
            }),
        )
    }
}

/// `RemoveConsole`.
#[derive(Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub(crate) struct RemoveConsole {
    pub(crate) domain: DomainId,
    pub(crate) name: String,
}

impl Handler<RemoveConsole> for Registry {
    type Result = ResponseActFuture<Self, Result<(), RegistryError>>;

    fn handle(&mut self, msg: RemoveConsole, _: &mut Context<Self>) -> Self::Result {
        if self.frozen {
            return Box::pin(fut::ready(Err(RegistryError::Reexec)));
        }
        let key = self.key(&msg.domain.driver, msg.domain.uuid);
        let Some(entry) = self
            .domains
            .get_mut(&key)
            .filter(|e| e.consoles().iter().any(|n| **n == *msg.name))
        else {
            return Box::pin(fut::ready(Err(RegistryError::Domain(
                DomainError::NoConsole {
                    domain: msg.domain.name,
                    name: msg.name,
                },
            ))));
        };
        entry.claims += 1;
        let console: Box<str> = msg.name.as_str().into();
        let req = entry.addr.send(domain::RemoveConsole { name: msg.name });
        let name = msg.domain.name;
        Box::pin(
            fut::wrap_future(req).map(move |res, act: &mut Registry, _| {
                let res = match res {
                    Ok(Ok(path)) => {
                        if let Some(e) = act.domains.get_mut(&key) {
                            let names: Vec<_> = e
                                .consoles()
                                .iter()
                                .filter(|n| **n != console)
                                .cloned()
                                .collect();
                            e.consoles = (!names.is_empty()).then(|| names.into_boxed_slice());
                        }
                        act.release(&path);
                        Ok(())
                    }
                    Ok(Err(e)) => Err(RegistryError::Domain(e)),
                    Err(_) => Err(RegistryError::DomainGone(PathBuf::from(name))),
                };
                act.unhold(&key);
                res
            }),
        )
    }
}

/// `ListConsoles`.
#[derive(Message)]
#[rtype(result = "Vec<logd_protocol::ConsoleInfo>")]
pub(crate) struct ListConsoles;

impl Handler<ListConsoles> for Registry {
    type Result = ResponseFuture<Vec<logd_protocol::ConsoleInfo>>;

    fn handle(&mut self, _: ListConsoles, _: &mut Context<Self>) -> Self::Result {
        let reqs: Vec<_> = self
            .domains
            .values()
            .filter(|e| !e.consoles().is_empty())
            .map(|e| e.addr.send(domain::ListConsoles))
            .collect();
        Box::pin(async move {
            let mut all = Vec::new();
            for r in reqs {
                if let Ok(mut list) = r.await {
                    all.append(&mut list);
                }
            }
            all.sort_by(|a, b| (&a.domain.name, &a.name).cmp(&(&b.domain.name, &b.name)));
            all
        })
    }
}

/// Every console's settings, as the daemon runs it (not a request: the consoles declared in
/// the config file are compared with these).
#[derive(Message)]
#[rtype(result = "Vec<crate::console::ConsoleConfig>")]
pub(crate) struct ConsoleConfigs;

impl Handler<ConsoleConfigs> for Registry {
    type Result = ResponseFuture<Vec<crate::console::ConsoleConfig>>;

    fn handle(&mut self, _: ConsoleConfigs, _: &mut Context<Self>) -> Self::Result {
        let reqs: Vec<_> = self
            .domains
            .values()
            .filter(|e| !e.consoles().is_empty())
            .map(|e| e.addr.send(domain::ConsoleConfigs))
            .collect();
        Box::pin(async move {
            let mut all = Vec::new();
            for r in reqs {
                if let Ok(mut list) = r.await {
                    all.append(&mut list);
                }
            }
            all
        })
    }
}

/// Kick or grant: asks every domain with consoles; the one that has the subscriber acts.
#[derive(Message)]
#[rtype(result = "Result<(), WireError>")]
pub(crate) struct Subscriber {
    pub(crate) kick: bool,
    pub(crate) id: u64,
    /// The operator, as the subscribers are told (`UID:NAME`).
    pub(crate) by: String,
}

impl Handler<Subscriber> for Registry {
    type Result = ResponseFuture<Result<(), WireError>>;

    fn handle(&mut self, msg: Subscriber, _: &mut Context<Self>) -> Self::Result {
        let (kick, id, by) = (msg.kick, msg.id, msg.by);
        self.to_subscriber(
            id,
            || domain::SubscriberAction {
                kick,
                id,
                by: by.clone(),
            },
            |why| WireError::new(ErrorCode::InvalidArgument, why),
        )
    }
}

impl Registry {
    /// Sends `make()` to each domain that has consoles, one after the other, until one has
    /// subscriber `id`: its answer, or its refusal through `refused`. None has it: `NotFound`.
    fn to_subscriber<M, T, E>(
        &self,
        id: u64,
        make: impl Fn() -> M,
        refused: fn(E) -> WireError,
    ) -> ResponseFuture<Result<T, WireError>>
    where
        M: Message<Result = Result<Option<T>, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        domain::Domain: Handler<M>,
    {
        if self.frozen {
            let e = RegistryError::Reexec.to_wire();
            return Box::pin(async move { Err(e) });
        }
        let reqs: Vec<_> = self
            .domains
            .values()
            .filter(|e| !e.consoles().is_empty())
            .map(|e| e.addr.send(make()))
            .collect();
        Box::pin(async move {
            for r in reqs {
                match r.await {
                    Ok(Ok(Some(answer))) => return Ok(answer),
                    Ok(Err(e)) => return Err(refused(e)),
                    _ => {}
                }
            }
            Err(WireError::new(
                ErrorCode::NotFound,
                format!("no console subscriber with id {id}"),
            ))
        })
    }
}

/// `logdctl attach`: the domain (by name) that has the console joins the caller to it.
#[derive(Message)]
#[rtype(result = "Result<crate::console::attach::AttachedSub, WireError>")]
pub(crate) struct Attach {
    pub(crate) domain: String,
    pub(crate) console: String,
    pub(crate) req: crate::console::attach::AttachRequest,
}

impl Handler<Attach> for Registry {
    type Result = ResponseFuture<Result<crate::console::attach::AttachedSub, WireError>>;

    fn handle(&mut self, msg: Attach, _: &mut Context<Self>) -> Self::Result {
        if self.frozen {
            let e = RegistryError::Reexec.to_wire();
            return Box::pin(async move { Err(e) });
        }
        let not_found = WireError::new(
            ErrorCode::NotFound,
            format!(
                "no console {:?} in domain {:?} (see `logdctl console list`)",
                msg.console, msg.domain
            ),
        );
        let addr = self
            .domains
            .values()
            .find(|e| *e.name == *msg.domain && e.consoles().iter().any(|n| **n == *msg.console))
            .map(|e| e.addr.clone());
        let Some(addr) = addr else {
            return Box::pin(async move { Err(not_found) });
        };
        let req = addr.send(domain::Attach {
            console: msg.console,
            req: msg.req,
        });
        Box::pin(async move {
            match req.await {
                Ok(Some(r)) => r.map_err(|e| e.to_wire()),
                Ok(None) => Err(not_found),
                Err(_) => Err(RegistryError::Reexec.to_wire()),
            }
        })
    }
}

/// An attached subscriber's escape command: the domain that has the subscriber answers.
#[derive(Message)]
#[rtype(result = "Result<logd_protocol::ConsoleReply, WireError>")]
pub(crate) struct Command {
    pub(crate) id: u64,
    pub(crate) uid: u32,
    pub(crate) command: logd_protocol::ConsoleCommand,
}

impl Handler<Command> for Registry {
    type Result = ResponseFuture<Result<logd_protocol::ConsoleReply, WireError>>;

    fn handle(&mut self, msg: Command, _: &mut Context<Self>) -> Self::Result {
        let (id, uid, command) = (msg.id, msg.uid, msg.command);
        self.to_subscriber(
            id,
            || domain::Command {
                id,
                uid,
                command: command.clone(),
            },
            |e: crate::console::attach::AttachError| e.to_wire(),
        )
    }
}
