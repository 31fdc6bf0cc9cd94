//! After a crash: the pipes systemd kept in its fd store come back, and each is given its
//! stream again, as the record of [`crate::control::stored`] describes it.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::control::stored::{load, record_path, Entry, LOSS_BOUND};
use crate::host::fdstore;

/// Gives each pipe systemd passed back (`logd-pipe-N`) its stream again, as the record
/// describes it: the path checked by the policy in force, the domain claimed, the file opened
/// again (its rotation state read from the files). A pipe without an entry, or whose log
/// cannot be opened, is closed and removed from the store: its guest gets EPIPE. Returns the
/// entries of the pipes re-adopted, for [`crate::control::stored::start`].
pub(crate) async fn recover(
    registry: &actix::Addr<crate::control::registry::Registry>,
    socket: &Path,
    passed: Vec<(u64, OwnedFd)>,
) -> Vec<Entry> {
    if passed.is_empty() {
        return Vec::new();
    }
    let record = record_path(socket);
    let mut entries: HashMap<u64, Entry> = match load(&record) {
        Ok(v) => v.into_iter().map(|e| (e.id, e)).collect(),
        Err(e) => {
            tracing::error!(cause = %e, "cannot read the fd store record; the pipes systemd kept are closed");
            HashMap::new()
        }
    };
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
    tracing::info!(
        pipes = out.len(),
        refused,
        lost_estimate,
        lost_at_most = LOSS_BOUND * out.len() as u64,
        "pipes re-adopted from systemd's fd store"
    );
    out
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
