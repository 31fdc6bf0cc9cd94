//! The registry actor: the table of domains and of the log paths they hold open.
//!
//! Every client request goes through the registry, which finds (or creates) the domain that
//! owns the path and forwards the request to it. Domains are keyed by `(driver, uuid)` and spread
//! round-robin over the worker arbiters. A path is *claimed* by one domain while it is open or
//! while a request for it is in flight, which is how "busy" is decided and when an empty domain
//! may be stopped: a domain with no claims left is stopped and forgotten.

use std::collections::HashMap;

use crate::control::table::{self, Table};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::prelude::*;
use logd_protocol::{DomainId, ErrorCode, Position, ReadFrom, Uuid, WireError};

pub(crate) use crate::control::domain::ThawCause;
use crate::control::domain::{self, AdoptError, Domain, DomainError, FreezeError, StreamClosed};
use crate::datapath::rotate::{self, ReadOutcome, RotateConfig};
use logd_protocol::admin::EventKind;

/// Requests sent to the registry and not yet answered (its mailbox depth, as the admin snapshot
/// reports it: actix does not expose the length of a mailbox).
static PENDING: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Sends a request to the registry and waits for the answer, counted in [`PENDING`] meanwhile
/// (also if the caller gives up: the count is a guard's).
pub async fn call<M>(addr: &Addr<Registry>, msg: M) -> Result<M::Result, MailboxError>
where
    M: Message + Send + 'static,
    M::Result: Send,
    Registry: Handler<M>,
{
    struct Pending;
    impl Drop for Pending {
        fn drop(&mut self) {
            PENDING.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    PENDING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _pending = Pending;
    addr.send(msg).await
}

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("log {path} is already open (domain {owner})")]
    Busy { path: PathBuf, owner: String },
    #[error(
        "log {path} would share file names with log {other} (domain {owner}): a log rotates \
         through NAME, NAME.N and NAME.rotating, so each of them belongs to one log"
    )]
    FamilyBusy {
        path: PathBuf,
        other: PathBuf,
        owner: String,
    },
    #[error("domain {driver}/{uuid} is open under the name {existing:?}, not {requested:?}")]
    NameMismatch {
        driver: String,
        uuid: Uuid,
        existing: String,
        requested: String,
    },
    #[error("logd is shutting down")]
    ShuttingDown,
    #[error("logd is handing over to a new process (re-exec); try again")]
    Reexec,
    #[error("the domain actor holding {0} stopped unexpectedly")]
    DomainGone(PathBuf),
    #[error("reading log {path} failed: the worker panicked")]
    Worker { path: PathBuf },
    #[error(transparent)]
    Domain(#[from] DomainError),
}

impl RegistryError {
    /// The protocol error a client is told.
    pub fn to_wire(&self) -> WireError {
        use crate::datapath::rotate::RotateError as R;
        use crate::datapath::stream::StreamError as S;
        let code = match self {
            RegistryError::Busy { .. } | RegistryError::FamilyBusy { .. } => ErrorCode::Busy,
            RegistryError::NameMismatch { .. } => ErrorCode::InvalidArgument,
            RegistryError::ShuttingDown => ErrorCode::ShuttingDown,
            RegistryError::Reexec => ErrorCode::Busy,
            RegistryError::DomainGone(_) | RegistryError::Worker { .. } => ErrorCode::Internal,
            RegistryError::Domain(DomainError::File(e))
            | RegistryError::Domain(DomainError::Stream(S::File(e))) => match e {
                R::NotFound { .. } => ErrorCode::NotFound,
                R::BadPosition { .. } => ErrorCode::BadPosition,
                e if e.is_refusal() => ErrorCode::PathRefused,
                _ => ErrorCode::Io,
            },
            RegistryError::Domain(DomainError::ConsoleExists { .. }) => ErrorCode::Busy,
            RegistryError::Domain(DomainError::NoConsole { .. }) => ErrorCode::NotFound,
            RegistryError::Domain(_) => ErrorCode::Io,
        };
        WireError::new(code, self.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DomainKey {
    /// Interned: every domain of a driver shares one string.
    driver: Arc<str>,
    uuid: Uuid,
}

struct DomainEntry {
    /// Shared with the domain actor.
    name: Arc<str>,
    addr: DomainAddr,
    /// Paths held open or with a request in flight.
    claims: u32,
    /// When the domain was created, ms since the Unix epoch.
    since_ms: u64,
    /// The names of the domain's consoles (so listing asks only those domains, and a duplicate
    /// name is refused before anything is claimed). Boxed: most domains have none.
    consoles: Option<Box<[Box<str>]>>,
}

impl DomainEntry {
    fn consoles(&self) -> &[Box<str>] {
        self.consoles.as_deref().unwrap_or(&[])
    }
}

/// The registry's handle on a domain actor: a weak address, 8 bytes.
///
/// A strong `Addr` costs two small allocations on top of its 24 bytes (actix gives each sender
/// its own parking state), about 100 bytes per domain with thousands of them. A domain does not
/// need one to stay alive: it runs until it is sent [`domain::Stop`] (see its `stopping`). A
/// strong address is made for each message and dropped once the message is queued.
#[derive(Clone)]
struct DomainAddr(actix::WeakAddr<Domain>);

impl DomainAddr {
    fn new(addr: &Addr<Domain>) -> Self {
        DomainAddr(addr.downgrade())
    }

    /// The actor's address, unless it has stopped.
    fn get(&self) -> Option<Addr<Domain>> {
        self.0.upgrade()
    }

    /// Queues `msg` now (as `Addr::send` does); the future gives the answer, or
    /// `MailboxError::Closed` if the actor has stopped.
    fn send<M>(
        &self,
        msg: M,
    ) -> impl std::future::Future<Output = Result<M::Result, MailboxError>> + 'static
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Domain: Handler<M>,
    {
        let req = self.get().map(|a| a.send(msg));
        async move {
            match req {
                Some(r) => r.await,
                None => Err(MailboxError::Closed),
            }
        }
    }

    fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Domain: Handler<M>,
    {
        if let Some(a) = self.get() {
            a.do_send(msg);
        }
    }
}

/// The domain table.
pub struct Registry {
    rotate: RotateConfig,
    workers: Vec<ArbiterHandle>,
    next_worker: usize,
    domains: Table<DomainKey, DomainEntry>,
    /// Open paths (and paths with an append in flight) and their owner. The path is shared
    /// with the stream's file: one copy per log.
    paths: Table<Arc<Path>, table::Id>,
    /// The open paths that are themselves another log's backup or temporary name
    /// (`NAME.N`, `NAME.rotating`), by that `NAME`: so an open of `NAME` finds them. Rare.
    derived: std::collections::HashMap<PathBuf, Vec<Arc<Path>>>,
    /// The drivers' names, interned.
    drivers: std::collections::HashSet<Arc<str>>,
    shutting_down: bool,
    /// Frozen for a re-exec: requests are refused (only a connection left behind by the
    /// parking can still send one) so nothing changes after the state is taken.
    frozen: bool,
}

/// The mailbox bound of a domain actor (actix's default).
const DOMAIN_MAILBOX: u32 = 16;
/// Domains asked for their snapshot at once.
const SNAPSHOT_BATCH: usize = 256;
/// The registry's mailbox bound.
const REGISTRY_MAILBOX: usize = 256;

impl Registry {
    /// Starts the registry on the current arbiter and makes it the process's registry.
    pub fn start_global(rotate: RotateConfig, workers: Vec<ArbiterHandle>) -> Addr<Registry> {
        let addr = Registry {
            rotate,
            workers,
            next_worker: 0,
            domains: Table::new(),
            paths: Table::new(),
            derived: Default::default(),
            drivers: Default::default(),
            shutting_down: false,
            frozen: false,
        }
        .start();
        domain::on_stream_closed(addr.clone().recipient());
        addr
    }

    /// The key of a domain (its driver's name interned).
    fn key(&mut self, driver: &str, uuid: Uuid) -> DomainKey {
        let driver = match self.drivers.get(driver) {
            Some(d) => d.clone(),
            None => {
                let d: Arc<str> = driver.into();
                self.drivers.insert(d.clone());
                d
            }
        };
        DomainKey { driver, uuid }
    }

    /// Claims `path` for the domain, creating the domain if needed. Returns the path as the
    /// table keeps it, to be shared with the stream.
    fn claim(
        &mut self,
        id: &DomainId,
        path: &Path,
    ) -> Result<(DomainKey, Addr<Domain>, Arc<Path>), RegistryError> {
        if self.shutting_down {
            return Err(RegistryError::ShuttingDown);
        }
        if self.frozen {
            return Err(RegistryError::Reexec);
        }
        let key = self.key(&id.driver, id.uuid);
        if let Some(&owner) = self.paths.get(path) {
            return Err(RegistryError::Busy {
                path: path.to_owned(),
                owner: self.domain_name(owner),
            });
        }
        if let Some((other, owner)) = self.family_conflict(path) {
            return Err(RegistryError::FamilyBusy {
                path: path.to_owned(),
                other,
                owner: self.domain_name(owner),
            });
        }
        let slot = match self.domains.id(&key) {
            Some(slot) => {
                let (_, e) = self.domains.by_id(slot).expect("just found");
                if *e.name != *id.name {
                    return Err(RegistryError::NameMismatch {
                        driver: id.driver.clone(),
                        uuid: id.uuid,
                        existing: e.name.to_string(),
                        requested: id.name.clone(),
                    });
                }
                slot
            }
            None => {
                let worker = &self.workers[self.next_worker % self.workers.len()];
                self.next_worker = self.next_worker.wrapping_add(1);
                let name: Arc<str> = id.name.as_str().into();
                let shared = name.clone();
                let addr = Domain::start_in_arbiter(worker, move |_| Domain::new(shared));
                tracing::info!(domain = %id.name, driver = %id.driver, uuid = %id.uuid, "domain created");
                crate::serve::events::emit(|| EventKind::DomainOpened {
                    domain: id.name.clone(),
                });
                self.domains.insert(
                    key.clone(),
                    DomainEntry {
                        name,
                        addr: DomainAddr::new(&addr),
                        claims: 0,
                        since_ms: crate::clock::now_unix_ms(),
                        consoles: None,
                    },
                )
            }
        };
        let (_, entry) = self.domains.by_id_mut(slot).expect("just found or made");
        let addr = entry
            .addr
            .get()
            .ok_or_else(|| RegistryError::DomainGone(path.to_owned()))?;
        entry.claims += 1;
        let path: Arc<Path> = path.into();
        self.insert_path(path.clone(), slot);
        Ok((key, addr, path))
    }

    fn domain_name(&self, id: table::Id) -> String {
        self.domains
            .by_id(id)
            .map(|(_, d)| d.name.to_string())
            .unwrap_or_default()
    }

    /// Another open log whose family of names (`NAME`, `NAME.N`, `NAME.rotating`) meets
    /// `path`'s, and its holder. Two families meet only when one log's name is a backup or
    /// temporary name of the other's (`rotate::family_base`).
    fn family_conflict(&self, path: &Path) -> Option<(PathBuf, table::Id)> {
        if let Some(base) = rotate::family_base(path) {
            if let Some(&owner) = self.paths.get(base) {
                return Some((base.to_owned(), owner));
            }
        }
        let member = self.derived.get(path)?.first()?;
        Some((member.to_path_buf(), *self.paths.get(&**member)?))
    }

    /// Records an open path.
    fn insert_path(&mut self, path: Arc<Path>, owner: table::Id) {
        if let Some(base) = rotate::family_base(&path) {
            self.derived
                .entry(base.to_owned())
                .or_default()
                .push(path.clone());
        }
        self.paths.insert(path, owner);
    }

    /// Forgets an open path; returns its holder.
    fn remove_path(&mut self, path: &Path) -> Option<table::Id> {
        let id = self.paths.remove(path)?;
        if let Some(base) = rotate::family_base(path) {
            if let Some(members) = self.derived.get_mut(base) {
                members.retain(|m| **m != *path);
                if members.is_empty() {
                    self.derived.remove(base);
                }
            }
        }
        Some(id)
    }

    /// Releases the claim a stream's open made on its path, if that claim is still the one in
    /// the table (the same shared path).
    fn release_if_same(&mut self, path: &Arc<Path>) {
        let same = self
            .paths
            .get_key_value(&**path)
            .is_some_and(|(k, _)| Arc::ptr_eq(k, path));
        if same {
            self.release(path);
        }
    }

    /// Releases the claim on a path.
    fn release(&mut self, path: &Path) {
        if let Some(id) = self.remove_path(path) {
            if let Some((key, _)) = self.domains.by_id(id) {
                let key = key.clone();
                self.unhold(&key);
            }
        }
    }

    /// Drops one claim on a domain; stops the domain when it has none left.
    fn unhold(&mut self, key: &DomainKey) {
        let Some(entry) = self.domains.get_mut(key) else {
            return;
        };
        entry.claims = entry.claims.saturating_sub(1);
        if entry.claims == 0 {
            let entry = self.domains.remove(key).expect("entry exists");
            tracing::info!(domain = %entry.name, "domain has no logs left; removed");
            crate::serve::events::emit(|| EventKind::DomainClosed {
                domain: entry.name.to_string(),
            });
            entry.addr.do_send(domain::Stop);
        }
    }

    /// If a domain holds `path` open, forwards `msg` to it, holding a claim on the domain until
    /// the answer is in (so the domain cannot be stopped under the request). Otherwise runs
    /// `fallback` on the blocking pool.
    fn forward<M, T, F>(
        &mut self,
        path: PathBuf,
        msg: M,
        fallback: F,
    ) -> ResponseActFuture<Self, Result<T, RegistryError>>
    where
        M: Message<Result = Result<T, DomainError>> + Send + 'static,
        T: Send + 'static,
        Domain: Handler<M>,
        F: FnOnce() -> Result<T, rotate::RotateError> + Send + 'static,
    {
        if self.frozen {
            return Box::pin(fut::ready(Err(RegistryError::Reexec)));
        }
        match self.hold_owner(&path) {
            Some((key, addr)) => {
                let req = ask(addr.send(msg), path);
                Box::pin(
                    fut::wrap_future(req).map(move |res, act: &mut Registry, _| {
                        act.unhold(&key);
                        res
                    }),
                )
            }
            None => Box::pin(fut::wrap_future(blocking(path, fallback))),
        }
    }

    /// The domain holding `path` open, with one more claim on it (undo with `unhold`).
    fn hold_owner(&mut self, path: &Path) -> Option<(DomainKey, DomainAddr)> {
        let id = *self.paths.get(path)?;
        let (key, entry) = self.domains.by_id_mut(id)?;
        entry.claims += 1;
        Some((key.clone(), entry.addr.clone()))
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Control messages only: a little headroom over the default for bursts of opens.
        ctx.set_mailbox_capacity(REGISTRY_MAILBOX);
    }
}

/// SIGHUP: the rotation settings of logs opened from now on (open logs keep theirs).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetRotate(pub RotateConfig);

impl Handler<SetRotate> for Registry {
    type Result = ();

    fn handle(&mut self, msg: SetRotate, _: &mut Context<Self>) {
        self.rotate = msg.0;
    }
}

/// `OpenLog`, with the path already resolved and checked.
#[derive(Message)]
#[rtype(result = "Result<(Position, OwnedFd), RegistryError>")]
pub struct Open {
    pub domain: DomainId,
    pub path: PathBuf,
    pub truncate: bool,
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
        let path = msg.path.clone();
        let req = ask(
            addr.send(domain::OpenStream {
                path: shared,
                rotate: self.rotate,
                truncate: msg.truncate,
            }),
            msg.path,
        );
        Box::pin(
            fut::wrap_future(req).map(move |res, act: &mut Registry, _| {
                if res.is_err() {
                    act.release(&path);
                }
                res
            }),
        )
    }
}

/// `GetPosition`.
#[derive(Message)]
#[rtype(result = "Result<Position, RegistryError>")]
pub struct GetPosition {
    pub path: PathBuf,
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
pub struct Read {
    pub path: PathBuf,
    pub from: ReadFrom,
    pub max_len: usize,
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
pub struct Append {
    pub domain: DomainId,
    pub path: PathBuf,
    pub message: Vec<u8>,
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

/// `AddConsole`, with its paths resolved and checked.
#[derive(Message)]
#[rtype(result = "Result<(Option<String>, Position, Option<OwnedFd>), RegistryError>")]
pub struct AddConsole {
    pub config: crate::console::ConsoleConfig,
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
        let req = ask(addr.send(domain::AddConsole(config)), path.clone());
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
pub struct RemoveConsole {
    pub domain: DomainId,
    pub name: String,
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
pub struct ListConsoles;

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

/// Kick or grant: asks every domain with consoles; the one that has the subscriber acts.
#[derive(Message)]
#[rtype(result = "Result<(), WireError>")]
pub struct Subscriber {
    pub kick: bool,
    pub id: u64,
}

impl Handler<Subscriber> for Registry {
    type Result = ResponseFuture<Result<(), WireError>>;

    fn handle(&mut self, msg: Subscriber, _: &mut Context<Self>) -> Self::Result {
        if self.frozen {
            let e = RegistryError::Reexec.to_wire();
            return Box::pin(async move { Err(e) });
        }
        let reqs: Vec<_> = self
            .domains
            .values()
            .filter(|e| !e.consoles().is_empty())
            .map(|e| {
                e.addr.send(if msg.kick {
                    domain::SubscriberAction::Kick(msg.id)
                } else {
                    domain::SubscriberAction::Grant(msg.id)
                })
            })
            .collect();
        Box::pin(async move {
            for r in reqs {
                match r.await {
                    Ok(Ok(true)) => return Ok(()),
                    Ok(Err(why)) => return Err(WireError::new(ErrorCode::InvalidArgument, why)),
                    _ => {}
                }
            }
            Err(WireError::new(
                ErrorCode::NotFound,
                format!("no console subscriber with id {}", msg.id),
            ))
        })
    }
}

/// Every live actor, for the admin socket.
#[derive(Message)]
#[rtype(result = "logd_protocol::admin::DaemonSnapshot")]
pub struct Snapshot {
    /// Only the domain with this name (all when None).
    pub only: Option<String>,
}

impl Handler<Snapshot> for Registry {
    type Result = ResponseFuture<logd_protocol::admin::DaemonSnapshot>;

    fn handle(&mut self, msg: Snapshot, _: &mut Context<Self>) -> Self::Result {
        use logd_protocol::admin::{DaemonSnapshot, DomainSnapshot, MailboxSnapshot};
        // Requests in flight per domain: its claims beyond the paths it holds.
        let mut held: HashMap<table::Id, u32> = HashMap::new();
        for id in self.paths.values() {
            *held.entry(*id).or_default() += 1;
        }
        // Asked in batches: each batch is queued at once and answered in parallel, and the
        // workers get back to their pumps between batches instead of serving 10,000 snapshot
        // messages in one go. A domain that stops meanwhile is left out (it is gone).
        let reqs: Vec<_> = self
            .domains
            .iter_with_ids()
            .filter(|(_, _, e)| msg.only.as_deref().is_none_or(|n| *e.name == *n))
            .map(|(id, k, e)| {
                let snap = DomainSnapshot {
                    id: DomainId {
                        driver: k.driver.to_string(),
                        uuid: k.uuid,
                        name: e.name.to_string(),
                    },
                    since_ms: e.since_ms,
                    mailbox: MailboxSnapshot {
                        depth: e.claims.saturating_sub(held.get(&id).copied().unwrap_or(0)),
                        capacity: DOMAIN_MAILBOX,
                    },
                    streams: Vec::new(),
                };
                (snap, e.addr.clone())
            })
            .collect();
        let uptime_ms = crate::handover::identity::uptime_ms();
        Box::pin(async move {
            let mut domains = Vec::with_capacity(reqs.len());
            let mut reqs = reqs.into_iter().peekable();
            while reqs.peek().is_some() {
                let batch: Vec<_> = reqs
                    .by_ref()
                    .take(SNAPSHOT_BATCH)
                    .map(|(snap, addr)| (snap, addr.send(domain::Snapshot)))
                    .collect();
                for (mut snap, req) in batch {
                    if let Ok(streams) = req.await {
                        snap.streams = streams;
                        domains.push(snap);
                    }
                }
            }
            domains.sort_by(|a, b| a.id.name.cmp(&b.id.name));
            let (fds, rss_kib) = process_usage();
            let id = crate::handover::identity::get();
            let lineage = crate::handover::identity::lineage();
            DaemonSnapshot {
                version: format!("logd {}", env!("CARGO_PKG_VERSION")),
                pid: std::process::id(),
                uptime_ms,
                fds,
                rss_kib,
                registry: MailboxSnapshot {
                    depth: PENDING.load(std::sync::atomic::Ordering::Relaxed),
                    capacity: REGISTRY_MAILBOX as u32,
                },
                domains,
                build_id: id.build_id.clone(),
                exe: id.exe.display().to_string(),
                exe_mtime_ms: id.exe_mtime_ms,
                started_ms: lineage.started_ms,
                reexecs: lineage.reexecs,
                last_reexec: crate::handover::identity::last_reexec(),
            }
        })
    }
}

/// Open fds and resident KiB of this process, from /proc.
fn process_usage() -> (u64, u64) {
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    (fds, rss)
}

impl Handler<StreamClosed> for Registry {
    type Result = ();

    fn handle(&mut self, msg: StreamClosed, _: &mut Context<Self>) {
        self.release_if_same(&msg.path);
    }
}

/// How many domains are alive (for idle exit and, later, introspection).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountDomains;

impl Handler<CountDomains> for Registry {
    type Result = usize;

    fn handle(&mut self, _: CountDomains, _: &mut Context<Self>) -> usize {
        self.domains.len()
    }
}

/// Refuse new work, then have every domain drain its pipes into its files.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Registry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        let addrs: Vec<_> = self.domains.values().map(|e| e.addr.clone()).collect();
        tracing::info!(domains = addrs.len(), "draining every log before exit");
        Box::pin(async move {
            for a in addrs {
                let _ = a.send(domain::Drain).await;
            }
        })
    }
}

/// The answer to a request sent to a domain, as the registry reports it.
///
/// The caller sends the message (`send`) before calling this, so it is queued at once, not when
/// the future is first polled: messages reach a domain in the order the registry decided them
/// (a request before a later `Stop`). A full mailbox makes the future wait for room: the queue
/// stays bounded.
async fn ask<T>(
    req: impl std::future::Future<Output = Result<Result<T, DomainError>, MailboxError>> + 'static,
    path: PathBuf,
) -> Result<T, RegistryError> {
    req.await
        .map_err(|_| RegistryError::DomainGone(path))?
        .map_err(RegistryError::from)
}

/// Runs file work for a log nobody holds open, off the actor threads.
async fn blocking<T, F>(path: PathBuf, f: F) -> Result<T, RegistryError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, rotate::RotateError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| RegistryError::Domain(DomainError::File(e))),
        Err(_) => Err(RegistryError::Worker { path }),
    }
}

/// Freeze every domain for a re-exec and collect the state of each (see [`domain::Freeze`]).
/// On an error some domains may be frozen: the caller sends [`Thaw`].
#[derive(Message)]
#[rtype(result = "Result<Vec<crate::handover::state::DomainState>, FreezeError>")]
pub struct Freeze;

impl Handler<Freeze> for Registry {
    type Result = ResponseFuture<Result<Vec<crate::handover::state::DomainState>, FreezeError>>;

    fn handle(&mut self, _: Freeze, _: &mut Context<Self>) -> Self::Result {
        self.frozen = true;
        // Every domain is asked at once: they freeze in parallel on their workers, and the
        // answers come back together (one wake-up, not one per domain).
        let (out, all) = crate::control::fanin::fanin(self.domains.len());
        for (k, e) in self.domains.iter() {
            e.addr.do_send(domain::Freeze {
                state: crate::handover::state::DomainState {
                    driver: k.driver.to_string(),
                    uuid: k.uuid,
                    name: e.name.to_string(),
                    since_ms: e.since_ms,
                    streams: Vec::new(),
                },
                out: out.clone(),
            });
        }
        drop(out);
        Box::pin(async move {
            let mut domains = Vec::new();
            for r in all.await.unwrap_or_default() {
                let d = r?;
                // A domain whose last stream closed meanwhile is left behind.
                if !d.streams.is_empty() {
                    domains.push(d);
                }
            }
            Ok(domains)
        })
    }
}

/// Let every domain go on after a [`Freeze`] (the re-exec was abandoned), or start the domains
/// a re-exec carried over ([`ThawCause`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Thaw {
    pub cause: ThawCause,
}

impl Handler<Thaw> for Registry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Thaw, _: &mut Context<Self>) -> Self::Result {
        self.frozen = false;
        let (done, all) = crate::control::fanin::fanin(0);
        for e in self.domains.values() {
            e.addr.do_send(domain::Thaw {
                cause: msg.cause,
                done: done.clone(),
            });
        }
        drop(done);
        Box::pin(async move {
            let _ = all.await;
        })
    }
}

/// Take over the domains a previous process carried: start each (frozen) on a worker, which
/// rebuilds its streams from their inherited fds there. Answers once every domain is rebuilt,
/// or with the first failure.
#[derive(Message)]
#[rtype(result = "Result<(), AdoptError>")]
pub struct Adopt {
    pub domains: Vec<crate::handover::state::DomainState>,
    pub inherited: std::sync::Arc<crate::handover::state::Inherited>,
}

impl Handler<Adopt> for Registry {
    type Result = ResponseFuture<Result<(), AdoptError>>;

    fn handle(&mut self, msg: Adopt, _: &mut Context<Self>) -> Self::Result {
        use crate::handover::state::StreamState;
        let t0 = std::time::Instant::now();
        let (out, all) = crate::control::fanin::fanin(msg.domains.len());
        // The domains of each worker are started by one closure sent to it, not one each:
        // 10,000 cross-thread wake-ups would cost more than the rebuilding itself.
        type Batch = Vec<(
            actix::dev::channel::AddressReceiver<Domain>,
            Arc<str>,
            crate::handover::state::DomainState,
            Vec<Arc<Path>>,
        )>;
        let mut batches: Vec<Batch> = (0..self.workers.len()).map(|_| Vec::new()).collect();
        for d in msg.domains {
            let key = self.key(&d.driver, d.uuid);
            let mut consoles = Vec::new();
            let mut paths = Vec::with_capacity(d.streams.len());
            for s in &d.streams {
                let path: Arc<Path> = match s {
                    StreamState::Pipe(p) => p.sink.path.as_path().into(),
                    StreamState::Console(c) => {
                        consoles.push(c.name.as_str().into());
                        c.sink.path.as_path().into()
                    }
                };
                paths.push(path);
            }
            let worker = self.next_worker % self.workers.len();
            self.next_worker = self.next_worker.wrapping_add(1);
            let (tx, rx) = actix::dev::channel::channel(DOMAIN_MAILBOX as usize);
            let name: Arc<str> = d.name.as_str().into();
            let id = self.domains.insert(
                key,
                DomainEntry {
                    name: name.clone(),
                    addr: DomainAddr::new(&Addr::new(tx)),
                    claims: d.streams.len() as u32,
                    since_ms: d.since_ms,
                    consoles: (!consoles.is_empty()).then(|| consoles.into_boxed_slice()),
                },
            );
            for path in &paths {
                if self.paths.id(&**path).is_none() {
                    self.insert_path(path.clone(), id);
                }
            }
            batches[worker].push((rx, name, d, paths));
        }
        for (worker, batch) in self.workers.iter().zip(batches) {
            let (inherited, out) = (msg.inherited.clone(), out.clone());
            worker.spawn_fn(move || {
                for (rx, name, d, paths) in batch {
                    let mut domain = Domain::restored(name);
                    out.push(domain.restore(&d.streams, paths, &inherited));
                    Context::with_receiver(rx).run(domain);
                }
            });
        }
        drop(out);
        tracing::debug!(
            us = t0.elapsed().as_micros() as u64,
            "take-over: every domain started"
        );
        Box::pin(async move {
            match all.await {
                Ok(results) => results.into_iter().collect(),
                Err(_) => Err(AdoptError::Lost),
            }
        })
    }
}
