//! The registry actor: the table of domains and of the log paths they hold open.
//!
//! Every client request goes through the registry, which finds (or creates) the domain that
//! owns the path and forwards the request to it. Domains are keyed by `(driver, uuid)` and spread
//! round-robin over the worker arbiters. A path is *claimed* by one domain while it is open or
//! while a request for it is in flight, which is how "busy" is decided and when an empty domain
//! may be stopped: a domain with no claims left is stopped and forgotten.
//!
//! This module holds the table and its claims; the requests are in its children:
//! - [`logs`]: `Open`, `GetPosition`, `Read`, `Append`;
//! - [`consoles`]: `AddConsole`, `RemoveConsole`, `ListConsoles`, `Subscriber`;
//! - [`snapshot`]: `Snapshot`, for the admin socket and the metrics;
//! - [`handover`]: `Freeze`, `Adopt` and `Thaw`, the registry's part in a re-exec.

mod consoles;
mod handover;
mod logs;
mod snapshot;

pub(crate) use consoles::{
    AddConsole, Attach, Command, ConsoleConfigs, ListConsoles, RemoveConsole, Subscriber,
};
pub(crate) use handover::{Adopt, Freeze, GetBacklog, Thaw};
pub(crate) use logs::{Append, GetPosition, Open, Read, Recover};
pub(crate) use snapshot::Snapshot;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::prelude::*;
use logd_protocol::admin::EventKind;
use logd_protocol::{DomainId, ErrorCode, Uuid, WireError};

pub(crate) use crate::control::domain::ThawCause;
use crate::control::domain::{self, Domain, DomainError, StreamClosed};
use crate::control::table::{self, Table};
use crate::datapath::rotate::{self, RotateConfig};

/// Requests sent to the registry and not yet answered (its mailbox depth, as the admin snapshot
/// reports it: actix does not expose the length of a mailbox).
static PENDING: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Sends a request to the registry and waits for the answer, counted in [`PENDING`] meanwhile
/// (also if the caller gives up: the count is a guard's).
pub(crate) async fn call<M>(addr: &Addr<Registry>, msg: M) -> Result<M::Result, MailboxError>
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
pub(crate) enum RegistryError {
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
    pub(crate) fn to_wire(&self) -> WireError {
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
                R::BadPosition { .. } | R::UnknownPosition { .. } => ErrorCode::BadPosition,
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
pub(crate) struct Registry {
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
/// The registry's mailbox bound.
const REGISTRY_MAILBOX: usize = 256;

impl Registry {
    /// Starts the registry on the current arbiter and makes it the process's registry.
    pub(crate) fn start_global(
        rotate: RotateConfig,
        workers: Vec<ArbiterHandle>,
    ) -> Addr<Registry> {
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
        // A stored pipe's log closed: its fd leaves systemd's store.
        crate::control::stored::closed(path);
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
pub(crate) struct SetRotate(pub(crate) RotateConfig);

impl Handler<SetRotate> for Registry {
    type Result = ();

    fn handle(&mut self, msg: SetRotate, _: &mut Context<Self>) {
        self.rotate = msg.0;
    }
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
pub(crate) struct CountDomains;

impl Handler<CountDomains> for Registry {
    type Result = usize;

    fn handle(&mut self, _: CountDomains, _: &mut Context<Self>) -> usize {
        self.domains.len()
    }
}

/// Refuse new work, then have every domain drain its pipes into its files.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

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
