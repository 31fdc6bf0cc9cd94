//! After a crash: the pipes and console sockets systemd kept in its fd store come back, and
//! each pipe is given its stream again, each console made again on its sockets, as the record
//! of [`crate::control::stored`] describes them.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::control::stored::{
    load, record_path, tally_path, ConsoleEntry, Entry, Record, SlotEntry, StoredGuest, LOSS_BOUND,
};
use crate::datapath::sink::SinkStats;
use crate::datapath::tally::{self, Found, Settled, Tally};
use crate::host::fdstore::{self, ConsoleFd};

/// What a crash cost a log, as far as it can be told.
enum Counted {
    /// From its tally slot: exact, or a bracket (the process died around a read).
    Tally(Settled),
    /// From the record's last sample (no tally, or its slot cannot be believed: the reason).
    Estimate { held: u64, why: &'static str },
}

impl Counted {
    /// The loss's lower end: what is added to the log's `dropped_disk`.
    fn at_least(&self) -> u64 {
        match self {
            Counted::Tally(s) => s.lost_at_least,
            Counted::Estimate { held, .. } => *held,
        }
    }

    fn at_most(&self) -> u64 {
        match self {
            Counted::Tally(s) => s.lost_at_most,
            Counted::Estimate { .. } => LOSS_BOUND,
        }
    }

    /// The log's counters from now on: the slot's (the loss counted as dropped), or the
    /// record's sample with the estimate counted as dropped.
    fn stats(&self, sampled: [u64; 3]) -> SinkStats {
        let [bytes_in, bytes_written, dropped_disk] = sampled;
        match self {
            Counted::Tally(s) => SinkStats {
                bytes_in: s.bytes_in,
                bytes_written: s.bytes_written,
                dropped_disk: s.dropped.saturating_add(s.lost_at_least),
            },
            Counted::Estimate { held, .. } => SinkStats {
                bytes_in,
                bytes_written,
                dropped_disk: dropped_disk.saturating_add(*held),
            },
        }
    }

    /// Logs what a log lost, on its re-adoption line (`what`).
    fn log(&self, domain: &str, log: &str, what: &str) {
        match self {
            Counted::Tally(s) => match s.exact() {
                Some(lost) => tracing::warn!(
                    domain,
                    path = log,
                    lost,
                    "{what} after a crash: bytes logd had read and not written are lost (counted \
                     exactly from the tally, and counted as dropped)"
                ),
                None => tracing::warn!(
                    domain,
                    path = log,
                    lost_at_least = s.lost_at_least,
                    lost_at_most = s.lost_at_most,
                    read_in_flight = s.read_in_flight,
                    "{what} after a crash: bytes logd had read and not written are lost (from \
                     the tally: the process died around a read, so between these; the lower \
                     end counted as dropped)"
                ),
            },
            Counted::Estimate { held, why } => tracing::warn!(
                domain,
                path = log,
                lost_estimate = held,
                lost_at_most = LOSS_BOUND,
                why,
                "{what} after a crash: bytes logd had read and not written are lost (no tally \
                 for it: estimated from the last sample, and counted as dropped)"
            ),
        }
    }
}

/// What the re-adoptions cost, for the summary line.
#[derive(Default)]
struct Losses {
    exact: usize,
    bracketed: usize,
    estimated: usize,
    at_least: u64,
    at_most: u64,
}

impl Losses {
    fn add(&mut self, c: &Counted) {
        match c {
            Counted::Tally(s) if s.exact().is_some() => self.exact += 1,
            Counted::Tally(_) => self.bracketed += 1,
            Counted::Estimate { .. } => self.estimated += 1,
        }
        self.at_least += c.at_least();
        self.at_most += c.at_most();
    }
}

/// The tally the dead process left, mapped for this one: None (logged) when there is none to
/// believe (a fresh one is made in its place, for the logs from now on).
fn open_tally(socket: &Path) -> Option<&'static Tally> {
    match tally::open(&tally_path(socket)) {
        Ok((t, Found::Kept)) => Some(t),
        Ok((_, Found::Made(why))) => {
            tracing::warn!(path = %tally_path(socket).display(), why, "no tally from the last process; the crash's loss is estimated from the last sample");
            None
        }
        Err(e) => {
            tracing::warn!(cause = %e, "no tally; the crash's loss is estimated from the last sample");
            None
        }
    }
}

/// What log `id` (at `path`, resolved) lost: settled from its slot, which is then given to it
/// again, empty, before its file is opened again (a rotation at the open would hide what the
/// write in flight landed). `held` is the record's estimate, for when the slot says nothing.
fn count(
    tally: Option<&'static Tally>,
    slot: Option<u32>,
    path: &Path,
    id: u64,
    held: u64,
) -> Counted {
    let Some(tally) = tally else {
        return Counted::Estimate {
            held,
            why: "no tally",
        };
    };
    let Some(slot) = slot else {
        return Counted::Estimate {
            held,
            why: "the record gives it no slot",
        };
    };
    match tally.settle(path, slot, id) {
        Ok(s) => Counted::Tally(s),
        Err(why) => Counted::Estimate { held, why },
    }
}

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
    let tally = open_tally(socket);
    let slots = record.slot_map();
    let mut entries: HashMap<u64, Entry> = record.pipes.into_iter().map(|e| (e.id, e)).collect();
    let mut kept = Vec::new();
    let consoles = recover_consoles(
        registry,
        record.consoles,
        consoles,
        tally,
        &slots,
        &mut kept,
    )
    .await;
    let mut out = Vec::with_capacity(passed.len());
    let (mut losses, mut refused) = (Losses::default(), 0usize);
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
                // Before the file is opened again.
                let counted = count(tally, slots.get(&id).copied(), &path, id, e.held());
                let stats = counted.stats([e.bytes_in, e.bytes_written, e.dropped_disk]);
                let msg = crate::control::registry::Recover {
                    domain: e.domain.clone(),
                    path: path.clone(),
                    rotate: e.rotate(),
                    pipe: fd,
                    stats,
                };
                match crate::control::registry::call(registry, msg).await {
                    Ok(Ok(_)) => Ok((counted, stats)),
                    Ok(Err(err)) => Err((err.to_string(), path)),
                    Err(_) => Err(("the registry stopped".to_owned(), path)),
                }
            }
            .map_err(|(why, path)| {
                if let Some(t) = tally {
                    t.unbind(&path);
                }
                why
            }),
        };
        match res {
            Ok((counted, stats)) => {
                counted.log(&e.domain.name, &e.path, "log re-adopted");
                losses.add(&counted);
                (e.bytes_in, e.bytes_written, e.dropped_disk) =
                    (stats.bytes_in, stats.bytes_written, stats.dropped_disk);
                if let Some(&slot) = slots.get(&id) {
                    if tally.is_some_and(|t| t.is_bound(Path::new(&e.path))) {
                        kept.push(SlotEntry { id, slot });
                    }
                }
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
            exact = losses.exact,
            bracketed = losses.bracketed,
            estimated = losses.estimated,
            lost_at_least = losses.at_least,
            lost_at_most = losses.at_most,
            "pipes re-adopted from systemd's fd store"
        );
    }
    Record {
        pipes: out,
        consoles,
        slots: kept,
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
    tally: Option<&'static Tally>,
    slots: &HashMap<u64, u32>,
    kept_slots: &mut Vec<SlotEntry>,
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
    let (mut losses, mut refused) = (Losses::default(), 0usize);
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
                // Before the log is opened again.
                let counted = count(tally, slots.get(&c.id).copied(), &log, c.id, c.held());
                let config = console_config(&c, log.clone());
                let msg = crate::control::registry::AddConsole {
                    config,
                    kept: sockets,
                };
                match crate::control::registry::call(registry, msg).await {
                    Ok(Ok(_)) => Ok(counted),
                    Ok(Err(err)) => Err((err.to_string(), log)),
                    Err(_) => Err(("the registry stopped".to_owned(), log)),
                }
            }
            .map_err(|(why, log)| {
                if let Some(t) = tally {
                    t.unbind(&log);
                }
                why
            }),
        };
        match res {
            Ok(counted) => {
                // Its guest and listeners went on; subscribers reconnect. Its log's counters
                // start again from 0 (a console's are not carried), with the loss in the record.
                let _console = tracing::info_span!("console", console = %label).entered();
                counted.log(&c.domain.name, &c.log, "console made again");
                losses.add(&counted);
                c.dropped_disk = c.dropped_disk.saturating_add(counted.at_least());
                if let Some(&slot) = slots.get(&c.id) {
                    if tally.is_some_and(|t| t.is_bound(Path::new(&c.log))) {
                        kept_slots.push(SlotEntry { id: c.id, slot });
                    }
                }
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
            exact = losses.exact,
            bracketed = losses.bracketed,
            estimated = losses.estimated,
            lost_at_least = losses.at_least,
            lost_at_most = losses.at_most,
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
        notices: c.notices,
        // A console with TLS is never stored (docs/CONSOLES.md, "TLS").
        tls: None,
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
