//! After a crash: the pipes and console sockets systemd kept in its fd store come back, and
//! each pipe is given its stream again, each console made again on its sockets, as the record
//! of [`crate::control::stored`] describes them.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::control::stored::{
    load, record_path, ConsoleEntry, Entry, Record, StoredGuest, LOSS_BOUND,
};
use crate::host::fdstore::{self, ConsoleFd};

/// Gives each pipe systemd passed back (`logd-pipe-N`) its stream again, as the record
/// describes it: the path checked by the policy in force, the domain claimed, the file opened
/// again (its rotation state read from the files). A pipe without an entry, or whose log
/// cannot be opened, is closed and removed from the store: its guest gets EPIPE. Returns the
/// entries of the pipes and consoles re-adopted, for [`crate::control::stored::start`].
pub(crate) async fn recover(
    registry: &actix::Addr<crate::control::registry::Registry>,
    socket: &Path,
    passed: Vec<(u64, OwnedFd)>,
    consoles: Vec<(u64, ConsoleFd, OwnedFd)>,
) -> Record {
    if passed.is_empty() && consoles.is_empty() {
        return Record::default();
    }
    let record = match load(&record_path(socket)) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(cause = %e, "cannot read the fd store record; the pipes and sockets systemd kept are closed");
            Record::default()
        }
    };
    let mut entries: HashMap<u64, Entry> = record.pipes.into_iter().map(|e| (e.id, e)).collect();
    let consoles = recover_consoles(registry, record.consoles, consoles).await;
    let mut out = Vec::with_capacity(passed.len());
    let (mut lost_estimate, mut refused) = (0u64, 0usize);
    // Two stored pipes under one name: which is whose cannot be told, so neither is given a
    // log (each would risk one guest's bytes in another's file).
    let (passed, twins) = split_twins(passed);
    for (id, fd) in twins {
        tracing::error!(
            name = fdstore::pipe_name(id),
            "two stored pipes share a name; neither is re-adopted"
        );
        drop(fd);
        entries.remove(&id);
        refused += 1;
    }
    for (id, fd) in passed {
        let name = fdstore::pipe_name(id);
        let Some(mut e) = entries.remove(&id) else {
            tracing::warn!(name, "a stored pipe has no entry in the record; closed");
            drop(fd);
            fdstore::remove(&name);
            refused += 1;
            continue;
        };
        let res = match crate::serve::checks::checked_path(&e.path, true).await {
            Err(w) => Err(w.message),
            Ok(path) => {
                let held = e.held();
                let msg = crate::control::registry::Recover {
                    domain: e.domain.clone(),
                    path,
                    rotate: e.rotate(),
                    pipe: fd,
                    stats: crate::datapath::sink::SinkStats {
                        bytes_in: e.bytes_in,
                        bytes_written: e.bytes_written,
                        // What logd held at the last sample is counted as lost.
                        dropped_disk: e.dropped_disk.saturating_add(held),
                    },
                };
                match crate::control::registry::call(registry, msg).await {
                    Ok(Ok(_)) => Ok(held),
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(_) => Err("the registry stopped".to_owned()),
                }
            }
        };
        match res {
            Ok(held) => {
                tracing::warn!(
                    domain = %e.domain.name,
                    path = %e.path,
                    lost_estimate = held,
                    lost_at_most = LOSS_BOUND,
                    "log re-adopted after a crash: bytes logd had read and not written are lost \
                     (estimated from the last sample, counted as dropped)"
                );
                lost_estimate += held;
                e.dropped_disk = e.dropped_disk.saturating_add(held);
                out.push(e);
            }
            Err(why) => {
                tracing::warn!(domain = %e.domain.name, path = %e.path, cause = %why, "a stored pipe's log cannot be opened again; the pipe is closed");
                fdstore::remove(&name);
                refused += 1;
            }
        }
    }
    if !out.is_empty() || refused > 0 {
        tracing::info!(
            pipes = out.len(),
            refused,
            lost_estimate,
            lost_at_most = LOSS_BOUND * out.len() as u64,
            "pipes re-adopted from systemd's fd store"
        );
    }
    Record {
        pipes: out,
        consoles,
    }
}

/// Makes each console of the record whose sockets systemd kept again, on those sockets: its
/// listeners are not bound again (whoever connected meanwhile waits in their backlog) and its
/// guest's connection goes on. A console whose socket is not what the record says, or whose log
/// cannot be opened again, is not made, and its sockets leave the store. A console the record
/// names without any kept socket is left to the config file (declared consoles are made at
/// start anyway).
async fn recover_consoles(
    registry: &actix::Addr<crate::control::registry::Registry>,
    record: Vec<ConsoleEntry>,
    passed: Vec<(u64, ConsoleFd, OwnedFd)>,
) -> Vec<ConsoleEntry> {
    use std::collections::BTreeMap;
    let mut kept: BTreeMap<u64, crate::console::KeptSockets> = BTreeMap::new();
    let mut twice = Vec::new();
    for (id, kind, fd) in passed {
        let k = kept.entry(id).or_default();
        let slot = match kind {
            ConsoleFd::GuestListener => &mut k.guest_listener,
            ConsoleFd::Guest => &mut k.guest,
            ConsoleFd::Tcp => &mut k.tcp,
            ConsoleFd::Unix => &mut k.unix,
        };
        if slot.replace(fd).is_some() {
            twice.push(id);
        }
    }
    let mut out = Vec::new();
    let (mut lost_estimate, mut refused) = (0u64, 0usize);
    for mut c in record {
        let Some(sockets) = kept.remove(&c.id) else {
            continue;
        };
        let label = format!("{}/{}", c.domain.name, c.name);
        if twice.contains(&c.id) {
            // Which of two is the console's cannot be told.
            tracing::error!(console = %label, "two stored sockets share a name; the console is not made again from the store");
            forget_console(c.id);
            refused += 1;
            continue;
        }
        let res = match crate::serve::checks::checked_path(&c.log, true).await {
            Err(w) => Err(w.message),
            Ok(log) => {
                let held = c.held();
                let config = console_config(&c, log);
                let msg = crate::control::registry::AddConsole {
                    config,
                    kept: sockets,
                };
                match crate::control::registry::call(registry, msg).await {
                    Ok(Ok(_)) => Ok(held),
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(_) => Err("the registry stopped".to_owned()),
                }
            }
        };
        match res {
            Ok(held) => {
                tracing::warn!(
                    console = %label,
                    path = %c.log,
                    lost_estimate = held,
                    "console made again after a crash on the sockets systemd kept: its guest and \
                     listeners went on; subscribers reconnect; output logd had read and not \
                     written is lost (estimated)"
                );
                lost_estimate += held;
                c.dropped_disk = c.dropped_disk.saturating_add(held);
                out.push(c);
            }
            Err(why) => {
                tracing::warn!(console = %label, cause = %why, "a stored console cannot be made again; its sockets are closed");
                forget_console(c.id);
                refused += 1;
            }
        }
    }
    for id in kept.into_keys() {
        tracing::warn!(
            id,
            "stored console sockets have no entry in the record; closed"
        );
        forget_console(id);
        refused += 1;
    }
    if !out.is_empty() || refused > 0 {
        tracing::info!(
            consoles = out.len(),
            refused,
            lost_estimate,
            "consoles made again from systemd's fd store"
        );
    }
    out
}

/// Removes every socket a console may have stored.
fn forget_console(id: u64) {
    for kind in ConsoleFd::ALL {
        fdstore::remove(&fdstore::console_name(id, kind));
    }
}

/// The settings a stored console is made again with, its log path checked.
fn console_config(c: &ConsoleEntry, log: std::path::PathBuf) -> crate::console::ConsoleConfig {
    use crate::console::GuestPlan;
    crate::console::ConsoleConfig {
        name: c.name.clone(),
        domain: c.domain.clone(),
        log,
        truncate: false,
        rotate: crate::datapath::rotate::RotateConfig {
            max_size: c.max_size,
            max_backups: c.max_backups,
        },
        guest: match &c.guest {
            StoredGuest::Listen(p) => GuestPlan::Listen(p.into()),
            StoredGuest::Connect(p) => GuestPlan::Connect(p.into()),
            StoredGuest::Fd => GuestPlan::Fd,
        },
        tcp: c.tcp.clone(),
        unix: c.unix.as_ref().map(Into::into),
        protocol: c.protocol,
        write: c.write,
        replay: usize::try_from(c.replay).unwrap_or(usize::MAX),
        max_subscribers: usize::try_from(c.max_subscribers).unwrap_or(usize::MAX),
        queue_limit: usize::try_from(c.queue_limit).unwrap_or(usize::MAX),
        access: c.access.clone(),
    }
}

/// Passed pipes by their store id.
type ById<T> = Vec<(u64, T)>;

/// The passed pipes whose name is theirs alone, and those that share one.
fn split_twins<T>(passed: ById<T>) -> (ById<T>, ById<T>) {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (id, _) in &passed {
        *seen.entry(*id).or_default() += 1;
    }
    passed.into_iter().partition(|(id, _)| seen[id] == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_that_share_a_name_are_set_apart() {
        let (alone, twins) = split_twins(vec![(1, 'a'), (2, 'b'), (1, 'c'), (3, 'd')]);
        assert_eq!(alone, vec![(2, 'b'), (3, 'd')]);
        assert_eq!(twins, vec![(1, 'a'), (1, 'c')]);
        let (alone, twins) = split_twins::<char>(Vec::new());
        assert!(alone.is_empty() && twins.is_empty());
    }
}
