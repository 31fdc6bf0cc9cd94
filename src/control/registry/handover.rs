//! The registry's part in a re-exec (docs/LIFECYCLE.md): `Freeze` every domain and collect its
//! state in the old process, `Adopt` the carried domains in the new one, and `Thaw` them in
//! either (the re-exec abandoned, or taken over).

use std::path::Path;
use std::sync::Arc;

use actix::prelude::*;

use super::{DomainAddr, DomainEntry, Registry, DOMAIN_MAILBOX};
use crate::control::domain::{self, AdoptError, Domain, FreezeError, ThawCause};

/// Freeze every domain for a re-exec and collect the state of each (see [`domain::Freeze`]).
/// On an error some domains may be frozen: the caller sends [`Thaw`].
#[derive(Message)]
#[rtype(result = "Result<Vec<crate::handover::state::DomainState>, FreezeError>")]
pub(crate) struct Freeze;

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
pub(crate) struct Thaw {
    pub(crate) cause: ThawCause,
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

/// The [`domain::Backlog`] of every domain, summed (for the `killed-after-go` test fault).
#[derive(Message)]
#[rtype(result = "domain::Backlog")]
pub(crate) struct GetBacklog;

impl Handler<GetBacklog> for Registry {
    type Result = ResponseFuture<domain::Backlog>;

    fn handle(&mut self, _: GetBacklog, _: &mut Context<Self>) -> Self::Result {
        let asks: Vec<_> = self
            .domains
            .values()
            .map(|e| e.addr.send(domain::GetBacklog))
            .collect();
        Box::pin(async move {
            let mut sum = domain::Backlog::default();
            for a in asks {
                // A domain that stopped meanwhile holds nothing.
                if let Ok(b) = a.await {
                    sum.add(b);
                }
            }
            sum
        })
    }
}

/// Domains a worker is sent at once by [`Adopt`]: enough that 10,000 domains cost a few
/// dozen cross-thread wake-ups, few enough that the workers start early.
const ADOPT_BATCH: usize = 256;

/// Take over the domains a previous process carried: start each (frozen) on a worker, which
/// rebuilds its streams from their inherited fds there. Answers once every domain is rebuilt,
/// or with the first failure.
#[derive(Message)]
#[rtype(result = "Result<(), AdoptError>")]
pub(crate) struct Adopt {
    pub(crate) domains: Vec<crate::handover::state::DomainState>,
    pub(crate) inherited: std::sync::Arc<crate::handover::state::Inherited>,
    /// Whether a new image may have used the fds since the state was written.
    pub(crate) staleness: crate::handover::state::Staleness,
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
        // A worker starts on its domains as soon as a batch of them is ready, while this thread
        // goes on with the tables for the next ones: the two overlap.
        let workers = self.workers.clone();
        let (inherited, staleness) = (msg.inherited.clone(), msg.staleness);
        let send = |worker: usize, batch: Batch| {
            let (inherited, out) = (inherited.clone(), out.clone());
            workers[worker].spawn_fn(move || {
                for (rx, name, d, paths) in batch {
                    let mut domain = Domain::restored(name);
                    out.push(domain.restore(&d.streams, paths, &inherited, staleness));
                    Context::with_receiver(rx).run(domain);
                }
            });
        };
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
            if batches[worker].len() == ADOPT_BATCH {
                send(worker, std::mem::take(&mut batches[worker]));
            }
        }
        for (worker, batch) in batches.into_iter().enumerate() {
            if !batch.is_empty() {
                send(worker, batch);
            }
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
