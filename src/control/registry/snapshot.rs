//! The registry's `Snapshot`: every live domain and its streams, with the daemon's own figures,
//! for the admin socket (`logdctl ps`, `top`) and the metrics endpoint.

use std::collections::HashMap;

use actix::prelude::*;
use logd_protocol::DomainId;

use super::{Registry, DOMAIN_MAILBOX, PENDING, REGISTRY_MAILBOX};
use crate::control::domain;
use crate::control::table;

/// Domains asked for their snapshot at once.
const SNAPSHOT_BATCH: usize = 256;

/// Every live actor, for the admin socket.
#[derive(Message)]
#[rtype(result = "logd_protocol::admin::DaemonSnapshot")]
pub(crate) struct Snapshot {
    /// Only the domain with this name (all when None).
    pub(crate) only: Option<String>,
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
            let (fds, rss_kib) = (
                crate::host::process::open_fds(),
                crate::host::process::resident_kib(),
            );
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
