//! The consoles declared in the config file, made to match it: at start, after a re-exec's
//! take-over, and at SIGHUP. The daemon's main loop calls [`Declared::apply`]; the consoles are
//! added and removed with the registry's `AddConsole` and `RemoveConsole`, exactly as
//! `logdctl console add` and `remove` would, so they are consoles like any other (in
//! `logdctl consoles`, `ps`, events and metrics).
//!
//! Which running consoles are the file's is this process's memory ([`Declared`]): the ones it
//! created from the file, and after a take-over the carried ones the file names. A console
//! added at run time is never touched, even if the file later names it (that is refused with an
//! error instead). The decision is a pure function ([`plan`]); [`Declared::apply`] carries it
//! out and reports each failure, without stopping at it.
//!
//! The consoles persisted with `logdctl console add --persist` ([`crate::control::persisted`])
//! are a second source of wanted consoles, applied after the file's: each one not running is
//! created (at start, at a take-over, and again at SIGHUP if it could not be before); one
//! running is left as it is. A console both name is the file's: the persisted entry is dropped
//! and the conflict logged. At SIGHUP, a persisted console the file now names becomes the
//! file's (kept, or re-created with the file's settings), rather than a conflict.

use std::collections::HashSet;

use actix::Addr;
use logd_protocol::admin::EventKind;
use logd_protocol::WireError;

use crate::console::{ConsoleConfig, ConsoleRequest};
use crate::control::persisted::{remove_running as remove, Held, Persisted};
use crate::control::registry::{self, Registry};
use crate::host::consoles::{key_of, same_console, DeclaredConsole, Key};
use crate::serve::checks::{check_domain, console_config, console_lexical};

/// When the file is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Occasion {
    /// A fresh start: nothing runs yet.
    Start,
    /// A re-exec's new process, serving what it was handed: a console of the file that was
    /// carried is kept as it is (its subscribers stay connected), even if the file changed.
    TakeOver,
    /// SIGHUP: the file wins, except over consoles added at run time.
    Reload,
}

impl Occasion {
    fn name(self) -> &'static str {
        match self {
            Occasion::Start => "start",
            Occasion::TakeOver => "re-exec",
            Occasion::Reload => "SIGHUP",
        }
    }
}

/// What to do to make the running consoles match the file. Indices are into `wanted`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Not running: create.
    pub(crate) create: Vec<usize>,
    /// Running with other settings: remove, then create.
    pub(crate) recreate: Vec<usize>,
    /// Running as the file says (or carried, at a take-over): nothing to do.
    pub(crate) keep: Vec<usize>,
    /// Carried by a re-exec with settings other than the file's: kept as they are (a later
    /// SIGHUP applies the file).
    pub(crate) differ: Vec<usize>,
    /// Running, but added at run time (and not persisted): left alone, and reported.
    pub(crate) conflict: Vec<usize>,
    /// The file's before, no longer in it: remove (their logs stay).
    pub(crate) remove: Vec<Key>,
}

/// Decides what to do. `wanted` are the file's consoles resolved under the path policy in
/// force; `running` every running console's settings; `declared` the running consoles this
/// process holds to be the file's; `persisted` the persisted consoles, which the file takes
/// over when it names them.
pub(crate) fn plan(
    occasion: Occasion,
    wanted: &[ConsoleConfig],
    running: &[ConsoleConfig],
    declared: &HashSet<Key>,
    persisted: &HashSet<Key>,
) -> Plan {
    let mut p = Plan::default();
    let mut wanted_keys = HashSet::new();
    for (i, w) in wanted.iter().enumerate() {
        let key = key_of(&w.domain, &w.name);
        let now = running.iter().find(|r| key_of(&r.domain, &r.name) == key);
        match (now, occasion) {
            (None, _) => p.create.push(i),
            (Some(r), Occasion::Start | Occasion::TakeOver) => {
                if same_console(w, r) {
                    p.keep.push(i);
                } else {
                    p.differ.push(i);
                }
            }
            (Some(_), Occasion::Reload)
                if !declared.contains(&key) && !persisted.contains(&key) =>
            {
                p.conflict.push(i)
            }
            (Some(r), Occasion::Reload) => {
                if same_console(w, r) {
                    p.keep.push(i);
                } else {
                    p.recreate.push(i);
                }
            }
        }
        wanted_keys.insert(key);
    }
    let running_keys: HashSet<Key> = running.iter().map(|r| key_of(&r.domain, &r.name)).collect();
    let mut gone: Vec<Key> = declared
        .iter()
        .filter(|k| !wanted_keys.contains(*k) && running_keys.contains(*k))
        .cloned()
        .collect();
    gone.sort();
    p.remove = gone;
    p
}

/// The running consoles that are the file's, by this process's memory.
#[derive(Debug, Default)]
pub(crate) struct Declared {
    keys: HashSet<Key>,
}

/// What one [`Declared::apply`] did, for its log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    pub(crate) created: usize,
    pub(crate) recreated: usize,
    pub(crate) removed: usize,
    pub(crate) kept: usize,
    pub(crate) failed: usize,
}

impl Declared {
    /// Makes the running consoles match `file`, then creates the persisted consoles that are not
    /// running (the file wins a console both name). Each failure is logged at `error`, naming
    /// the console, and sent as an `error` event; the others go on. Returns what was done for
    /// the file's.
    pub(crate) async fn apply(
        &mut self,
        occasion: Occasion,
        registry: &Addr<Registry>,
        file: &[DeclaredConsole],
        persisted: &Persisted,
    ) -> Applied {
        let mut held = persisted.hold().await;
        let done = self
            .apply_file(occasion, registry, file, &held.keys())
            .await;
        let when = occasion.name();
        let named: HashSet<Key> = file
            .iter()
            .map(|d| key_of(&d.spec.domain, &d.spec.name))
            .collect();
        held.give_way_to(&named, when).await;
        apply_persisted(when, registry, &held).await;
        done
    }

    /// The file's part of [`Declared::apply`].
    async fn apply_file(
        &mut self,
        occasion: Occasion,
        registry: &Addr<Registry>,
        file: &[DeclaredConsole],
        persisted: &HashSet<Key>,
    ) -> Applied {
        let mut done = Applied::default();
        if file.is_empty() && self.keys.is_empty() {
            return done;
        }
        let when = occasion.name();
        // Resolved under the policy in force (a changed `log_root` waits for a re-exec, as it
        // does for every log), so that what is compared is what a request would create.
        let policy = crate::host::paths::current().expect("the daemon installs a path policy");
        let mut wanted = Vec::with_capacity(file.len());
        let mut usable = Vec::with_capacity(file.len());
        for d in file {
            match console_lexical(&policy, d.request()) {
                Ok(c) => {
                    wanted.push(c);
                    usable.push(d);
                }
                Err(e) => {
                    done.failed += 1;
                    report_declared(when, d, &e);
                }
            }
        }
        let running = registry::call(registry, registry::ConsoleConfigs)
            .await
            .unwrap_or_default();
        let p = plan(occasion, &wanted, &running, &self.keys, persisted);
        for key in &p.remove {
            let Some(r) = running.iter().find(|r| key_of(&r.domain, &r.name) == *key) else {
                continue;
            };
            let label = format!("{}/{}", r.domain.name, r.name);
            match remove(registry, &r.domain, &r.name).await {
                Ok(()) => {
                    done.removed += 1;
                    tracing::info!(
                        console = %label,
                        "{when}: declared console removed (no longer in the config file; its log stays)"
                    );
                }
                Err(e) => {
                    done.failed += 1;
                    tracing::error!(console = %label, cause = %e.message, "{when}: declared console not removed");
                }
            }
            self.keys.remove(key);
        }
        for &i in &p.keep {
            self.keys.insert(key_of(&wanted[i].domain, &wanted[i].name));
            done.kept += 1;
        }
        for &i in &p.differ {
            self.keys.insert(key_of(&wanted[i].domain, &wanted[i].name));
            done.kept += 1;
            tracing::warn!(
                console = %usable[i].label(),
                "{when}: the config file changed this console's settings; the carried console is kept as it is until SIGHUP applies the file"
            );
        }
        for &i in &p.conflict {
            done.failed += 1;
            let e = WireError::new(
                logd_protocol::ErrorCode::Busy,
                "a console of that name was added at run time (logdctl console add); it is left \
                 alone: remove it, then send SIGHUP",
            );
            report_declared(when, usable[i], &e);
        }
        for &i in &p.recreate {
            let d = usable[i];
            let key = key_of(&wanted[i].domain, &wanted[i].name);
            self.keys.remove(&key);
            if let Err(e) = remove(registry, &wanted[i].domain, &wanted[i].name).await {
                done.failed += 1;
                report_declared(when, d, &e);
                continue;
            }
            match add(registry, &d.request()).await {
                Ok(tcp) => {
                    done.recreated += 1;
                    self.keys.insert(key);
                    tracing::info!(
                        console = %d.label(),
                        tcp = ?tcp,
                        "{when}: declared console re-created with its new settings (its subscribers were disconnected)"
                    );
                }
                Err(e) => {
                    done.failed += 1;
                    report_declared(when, d, &e);
                }
            }
        }
        for &i in &p.create {
            let d = usable[i];
            match add(registry, &d.request()).await {
                Ok(tcp) => {
                    done.created += 1;
                    self.keys.insert(key_of(&wanted[i].domain, &wanted[i].name));
                    tracing::info!(console = %d.label(), tcp = ?tcp, "{when}: declared console created");
                }
                Err(e) => {
                    done.failed += 1;
                    report_declared(when, d, &e);
                }
            }
        }
        let level_error = done.failed > 0;
        if level_error {
            tracing::error!(
                created = done.created,
                recreated = done.recreated,
                removed = done.removed,
                kept = done.kept,
                failed = done.failed,
                "{when}: declared consoles applied, with failures (see above)"
            );
        } else {
            tracing::info!(
                created = done.created,
                recreated = done.recreated,
                removed = done.removed,
                kept = done.kept,
                "{when}: declared consoles applied"
            );
        }
        done
    }
}

/// Creates the persisted consoles that are not running; one running is left as it is (a
/// take-over carried it, or it is running already at SIGHUP).
async fn apply_persisted(when: &str, registry: &Addr<Registry>, held: &Held<'_>) {
    let specs = held.specs();
    if specs.is_empty() {
        return;
    }
    let running = registry::call(registry, registry::ConsoleConfigs)
        .await
        .unwrap_or_default();
    let (mut created, mut kept, mut failed) = (0usize, 0usize, 0usize);
    for req in specs {
        let spec = &req.spec;
        let key = key_of(&spec.domain, &spec.name);
        if running.iter().any(|r| key_of(&r.domain, &r.name) == key) {
            kept += 1;
            continue;
        }
        let label = format!("{}/{}", spec.domain.name, spec.name);
        match add(registry, req).await {
            Ok(tcp) => {
                created += 1;
                tracing::info!(console = %label, tcp = ?tcp, "{when}: persisted console created");
            }
            Err(e) => {
                failed += 1;
                report(when, "persisted", &label, &spec.log, &e);
            }
        }
    }
    let file = held.path_text();
    if failed > 0 {
        tracing::error!(
            created,
            kept,
            failed,
            file = %file,
            "{when}: persisted consoles applied, with failures (see above)"
        );
    } else {
        tracing::info!(created, kept, file = %file, "{when}: persisted consoles applied");
    }
}

/// Adds a console as a `logdctl console add` request is added: the same checks, then the
/// registry's `AddConsole`. Returns its bound TCP address.
async fn add(registry: &Addr<Registry>, req: &ConsoleRequest) -> Result<Option<String>, WireError> {
    check_domain(&req.spec.domain)?;
    let config = console_config(req.clone()).await?;
    let (tcp, _, _) = registry::call(
        registry,
        registry::AddConsole {
            config,
            kept: Default::default(),
        },
    )
    .await
    .map_err(|_| WireError::new(logd_protocol::ErrorCode::Internal, "the registry stopped"))?
    .map_err(|e| e.to_wire())?;
    Ok(tcp)
}

/// A console (`what`: declared or persisted) that could not be made: a log line at `error` and
/// an `error` event, both naming it.
fn report(when: &str, what: &str, label: &str, log: &str, e: &WireError) {
    tracing::error!(
        console = %label,
        cause = %e.message,
        "{when}: {what} console not created"
    );
    crate::serve::events::emit(|| EventKind::Error {
        path: log.to_owned(),
        message: format!(
            "{what} console {label} not created at {when}: {}",
            e.message
        ),
    });
}

/// [`report`] for a console of the file.
fn report_declared(when: &str, d: &DeclaredConsole, e: &WireError) {
    report(when, "declared", &d.label(), &d.spec.log, e);
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use logd_protocol::{ConsoleProtocol, DomainId, WritePolicy};

    use super::*;
    use crate::console::GuestPlan;
    use crate::datapath::rotate::RotateConfig;

    fn console(domain: &str, name: &str, port: u16) -> ConsoleConfig {
        ConsoleConfig {
            name: name.into(),
            domain: DomainId::from_name("qemu", domain),
            log: PathBuf::from(format!("/logs/{domain}-{name}.log")),
            truncate: false,
            rotate: RotateConfig::default(),
            guest: GuestPlan::Listen(PathBuf::from(format!("/logs/{domain}-{name}.sock"))),
            tcp: Some(format!("127.0.0.1:{port}")),
            unix: None,
            protocol: ConsoleProtocol::Raw,
            write: WritePolicy::Exclusive,
            replay: 16384,
            max_subscribers: 32,
            queue_limit: 1 << 20,
            access: Default::default(),
            notices: Default::default(),
            tls: None,
        }
    }

    fn keys(cs: &[&ConsoleConfig]) -> HashSet<Key> {
        cs.iter().map(|c| key_of(&c.domain, &c.name)).collect()
    }

    fn none() -> HashSet<Key> {
        HashSet::new()
    }

    #[test]
    fn at_start_everything_is_created() {
        let a = console("vm1", "s0", 4000);
        let b = console("vm2", "s0", 4001);
        let p = plan(Occasion::Start, &[a, b], &[], &none(), &none());
        assert_eq!(p.create, vec![0, 1]);
        assert_eq!(
            p,
            Plan {
                create: vec![0, 1],
                ..Plan::default()
            }
        );
    }

    #[test]
    fn a_take_over_keeps_what_was_carried_and_creates_only_what_is_missing() {
        let a = console("vm1", "s0", 4000);
        let b = console("vm2", "s0", 4001);
        let mut a_changed = a.clone();
        a_changed.replay = 0;
        let runtime = console("other", "s0", 4002);
        // Carried: a (with older settings) and a run-time console; the file: a (changed), b.
        let p = plan(
            Occasion::TakeOver,
            &[a_changed, b],
            &[a, runtime],
            &none(),
            &none(),
        );
        assert_eq!(p.differ, vec![0], "kept as carried, not re-created");
        assert_eq!(p.create, vec![1]);
        assert!(p.recreate.is_empty() && p.remove.is_empty() && p.conflict.is_empty());
        // Carried as the file says: kept.
        let a = console("vm1", "s0", 4000);
        let p = plan(
            Occasion::TakeOver,
            std::slice::from_ref(&a),
            std::slice::from_ref(&a),
            &none(),
            &none(),
        );
        assert_eq!(
            p,
            Plan {
                keep: vec![0],
                ..Plan::default()
            }
        );
    }

    #[test]
    fn a_reload_adds_removes_and_recreates_and_leaves_run_time_consoles_alone() {
        let same = console("vm1", "same", 4000);
        let changed_before = console("vm1", "changed", 4001);
        let mut changed_now = changed_before.clone();
        changed_now.tcp = Some("127.0.0.1:4011".into());
        let dropped = console("vm2", "dropped", 4002);
        let added = console("vm3", "added", 4003);
        let runtime = console("vm4", "runtime", 4004);
        let clash = console("vm5", "clash", 4005);
        let declared = keys(&[&same, &changed_before, &dropped]);
        let running = [
            same.clone(),
            changed_before.clone(),
            dropped.clone(),
            runtime.clone(),
            clash.clone(),
        ];
        let wanted = [same, changed_now, added, clash];
        let p = plan(Occasion::Reload, &wanted, &running, &declared, &none());
        assert_eq!(p.keep, vec![0]);
        assert_eq!(p.recreate, vec![1]);
        assert_eq!(p.create, vec![2]);
        assert_eq!(p.conflict, vec![3], "a run-time console the file now names");
        assert_eq!(p.remove, vec![key_of(&dropped.domain, &dropped.name)]);
        assert!(p.differ.is_empty());
    }

    #[test]
    fn a_declared_console_removed_at_run_time_is_created_again_and_a_gone_one_is_forgotten() {
        let a = console("vm1", "s0", 4000);
        let b = console("vm2", "s0", 4001);
        // Both were declared; a was removed with logdctl; b is no longer in the file and not
        // running either.
        let declared = keys(&[&a, &b]);
        let p = plan(Occasion::Reload, &[a], &[], &declared, &none());
        assert_eq!(
            p,
            Plan {
                create: vec![0],
                ..Plan::default()
            }
        );
    }

    #[test]
    fn truncate_and_rotation_are_not_settings_of_a_running_console() {
        let a = console("vm1", "s0", 4000);
        let mut b = a.clone();
        b.truncate = true;
        b.rotate.max_backups = 7;
        let p = plan(
            Occasion::Reload,
            &[b],
            std::slice::from_ref(&a),
            &keys(&[&a]),
            &none(),
        );
        assert_eq!(p.keep, vec![0]);
    }

    #[test]
    fn at_sighup_the_file_takes_over_a_persisted_console_it_now_names() {
        let moved = console("vm1", "moved", 4000);
        let mut moved_changed = moved.clone();
        moved_changed.replay = 0;
        let runtime = console("vm2", "runtime", 4001);
        let persisted = keys(&[&moved]);
        let running = [moved.clone(), runtime.clone()];
        // Moved unchanged: kept (its subscribers stay), not a conflict.
        let p = plan(
            Occasion::Reload,
            &[moved.clone(), runtime.clone()],
            &running,
            &none(),
            &persisted,
        );
        assert_eq!(p.keep, vec![0]);
        assert_eq!(
            p.conflict,
            vec![1],
            "a run-time console that is not persisted"
        );
        // Moved with other settings: the file's win.
        let p = plan(
            Occasion::Reload,
            &[moved_changed],
            &running,
            &none(),
            &persisted,
        );
        assert_eq!(p.recreate, vec![0]);
        // A persisted console the file does not name is never removed by it.
        let p = plan(Occasion::Reload, &[], &running, &none(), &persisted);
        assert_eq!(p, Plan::default());
    }
}
