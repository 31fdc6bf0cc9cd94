//! The new process's side of a re-exec (steps N1 to N7 in [`crate::handover`]).
//!
//! A method of the daemon's `Running`, as the old side is ([`crate::handover::hand_over`]):
//! it builds the daemon from what it inherits, so it is kept beside the state format rather
//! than with a fresh start.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use logd_protocol::admin::{AdminResponse, EventKind, ReexecReport};
use logd_protocol::{ErrorCode, WireError};

use crate::control::domain::AdoptError;
use crate::control::registry::{self, ThawCause};
use crate::daemon::listen::{bind, Listener, LockFile};
use crate::daemon::{DaemonError, Running};
use crate::handover::reexec::HandshakeError;
use crate::handover::state::{
    ConnEndpoint, ConnMode, ConnState, Inherited, Staleness, State, StateError,
};
use crate::handover::successor::{ReadStateError, Role, Successor};
use crate::host::config::Config;
use crate::serve::server;

/// Why a new image cannot take over. It tells the other side (the guardian, which then takes
/// over; or, from a logd that spawned a child, the old process, which goes on), and
/// exits without having read or written a single inherited fd.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TakeOverError {
    #[error(transparent)]
    ReadState(#[from] ReadStateError),
    /// An fd the state names is closed, named twice, or not the file described.
    #[error(transparent)]
    Inherit(#[from] StateError),
    #[error("cannot use an inherited listener: {0}")]
    Listener(#[source] std::io::Error),
    #[error("cannot serve the virtlogd socket: {0}")]
    Virtlogd(#[source] DaemonError),
    #[error("cannot serve the console socket: {0}")]
    ConsoleSocket(#[source] DaemonError),
    #[error("cannot use the metrics listener: {0}")]
    Metrics(#[source] std::io::Error),
    #[error(transparent)]
    Adopt(#[from] AdoptError),
    #[error("the registry stopped")]
    RegistryStopped,
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
}

/// What steps N3 to N6 leave for step N7: the daemon, frozen, and what it must resume.
struct Rebuilt {
    daemon: Running,
    /// The state, its domains taken out (they went to the registry).
    state: State,
    domains: u32,
    inherited: Arc<Inherited>,
    conns: Vec<(ConnState, OwnedFd)>,
    /// The rotations the state's logs had counted, all together.
    rotations: u64,
}

impl Running {
    /// Takes over from the process that re-exec'd: adopts every fd of its state, rebuilds the
    /// actors (frozen), says `Ready`, and on `Go` thaws them and serves. Any failure before
    /// `Go` is reported to the old process, and this one exits without touching anything.
    pub(crate) async fn take_over(cfg: Config, mut succ: Successor) -> Running {
        // A guardian waits first: it takes over only if the new image did not.
        let (failed, staleness) = match succ.role {
            Role::Guardian => {
                let (why, staleness) = crate::handover::guard::guard(&succ).await;
                (Some(why.to_string()), staleness)
            }
            _ => (None, Staleness::Exact),
        };
        let Rebuilt {
            daemon: d,
            state,
            domains,
            inherited,
            conns,
            rotations,
        } = match Self::rebuild(cfg, &mut succ, staleness).await {
            Ok(r) => r,
            Err(e) => succ.refuse(&e.to_string()),
        };
        // N7, Go: from here on this process is logd.
        let parent = succ.writer;
        // The carried pipes stay in systemd's fd store; the record names them.
        crate::control::stored::start_from_record(&d.main.path, d.cfg.fd_store);
        let _ = d
            .registry
            .send(registry::Thaw {
                cause: ThawCause::TakenOver,
            })
            .await;
        if let Some(more) = succ.killed_after_go() {
            die_after_go(&d.registry, rotations + more).await;
        }
        // Running: the guardian may exit now (it held every fd until here); it names this pid
        // to systemd first, and this one notifies once it is gone.
        let reexecs = state.reexecs + u32::from(failed.is_none());
        let status = match failed {
            None => format!("serving (re-exec {reexecs})"),
            Some(_) => "serving (the last re-exec failed; the old binary took over)".to_owned(),
        };
        succ.running(move || {
            crate::host::systemd::notify(&format!(
                "READY=1\nMAINPID={}\nSTATUS={status}",
                std::process::id(),
            ))
        });
        let resumed = crate::clock::mono_ns();
        let fds = inherited.count() as u32;
        let now_ms = crate::clock::now_unix_ms();
        let report = ReexecReport {
            at_ms: now_ms.saturating_sub(resumed.saturating_sub(state.asked_mono_ns) / 1_000_000),
            from_pid: parent,
            to_pid: std::process::id(),
            error: failed.clone(),
            blackout_us: resumed.saturating_sub(state.frozen_mono_ns) / 1000,
            total_us: resumed.saturating_sub(state.asked_mono_ns) / 1000,
            domains,
            fds,
        };
        crate::handover::identity::set_last_reexec(report.clone());
        d.lock.write_pid();
        let mut d = d;
        d.start_accepting();
        for (c, fd) in conns {
            let shared = match c.endpoint {
                ConnEndpoint::Main => d.shared_main.clone(),
                ConnEndpoint::Admin => d.shared_admin.clone(),
                ConnEndpoint::Virtlogd => d.shared_virtlogd.clone(),
                ConnEndpoint::Console => d.shared_console.clone(),
            };
            let reply = (c.mode == ConnMode::AwaitingReexec).then(|| match &failed {
                None => AdminResponse::Reexeced(report.clone()),
                Some(why) => AdminResponse::Error(WireError::new(
                    ErrorCode::Io,
                    format!(
                        "re-exec failed; the old binary took over as pid {}: {why}",
                        std::process::id()
                    ),
                )),
            });
            server::resume(&c, fd, shared, reply);
        }
        match &failed {
            None => {
                tracing::info!(
                    from = parent,
                    domains,
                    fds,
                    blackout_us = report.blackout_us,
                    total_us = report.total_us,
                    build_id = %crate::handover::identity::get().build_id,
                    "logd {} took over (re-exec {reexecs})",
                    env!("CARGO_PKG_VERSION"),
                );
                crate::serve::events::emit(|| EventKind::Reexeced {
                    from_pid: parent,
                    to_pid: std::process::id(),
                });
            }
            Some(why) => {
                tracing::error!(
                    from = parent,
                    domains,
                    fds,
                    "re-exec failed; the old binary took over, as pid {}: {why}",
                    std::process::id()
                );
                crate::serve::events::emit(|| EventKind::ReexecFailed {
                    reason: why.clone(),
                });
            }
        }
        d
    }

    /// Steps N3 to N6: read the state, adopt its fds, rebuild everything frozen, say `Ready`
    /// and hear `Go`. `staleness` says whether a new image may have used the fds since the
    /// state was written (a guardian taking over after `Go`).
    async fn rebuild(
        cfg: Config,
        succ: &mut Successor,
        staleness: Staleness,
    ) -> Result<Rebuilt, TakeOverError> {
        let mut state = succ.read_state()?;
        let asked = state.asked_mono_ns;
        let since = |what: &str| {
            tracing::debug!(
                us = crate::clock::mono_ns().saturating_sub(asked) / 1000,
                "take-over: {what}"
            )
        };
        if let Some(start) = crate::clock::image_start_ns() {
            tracing::debug!(
                us = start.saturating_sub(asked) / 1000,
                "take-over: this image started"
            );
        }
        since("state read");
        let inherited = Arc::new(Inherited::for_state(&state));
        let take = |fd: &crate::handover::state::Fd| inherited.take(fd);
        let unix = |fd: OwnedFd| {
            crate::handover::state::sockets::unix_listener(fd).map_err(TakeOverError::Listener)
        };
        let lock = LockFile::Carried(std::fs::File::from(take(&state.lock)?));
        if state.main.path != cfg.socket || state.admin.path != cfg.admin_socket {
            tracing::warn!(
                socket = %state.main.path.display(),
                admin_socket = %state.admin.path.display(),
                "the configured socket paths changed; the sockets carried over are kept until the next restart"
            );
        }
        let main = Listener {
            path: state.main.path.clone(),
            owned: state.main.owned,
            listener: Some(unix(take(&state.main.fd)?)?),
        };
        let admin = Listener {
            path: state.admin.path.clone(),
            owned: state.admin.owned,
            listener: Some(unix(take(&state.admin.fd)?)?),
        };
        let virtlogd = match (&state.virtlogd, &cfg.virtlogd_socket) {
            (Some(v), _) => {
                if cfg.virtlogd_socket.as_ref() != Some(&v.path) {
                    tracing::warn!(
                        virtlogd_socket = %v.path.display(),
                        "virtlogd_socket changed; the socket carried over is kept until the next restart"
                    );
                }
                Some(Listener {
                    path: v.path.clone(),
                    owned: v.owned,
                    listener: Some(unix(take(&v.fd)?)?),
                })
            }
            // Newly configured (or a predecessor without it): bound now, before Ready, so a
            // socket that cannot be bound fails the take-over and the old process goes on. (Its
            // directory was checked in `run`, as every socket's is.)
            (None, Some(path)) => Some(Listener {
                path: path.clone(),
                owned: true,
                listener: Some(bind(path).map_err(TakeOverError::Virtlogd)?),
            }),
            (None, None) => None,
        };
        if state.metrics.is_some() != cfg.metrics_listen.is_some() {
            tracing::warn!(
                carried = state.metrics.is_some(),
                configured = ?cfg.metrics_listen,
                "metrics_listen changed; the metrics listener stays as it was until the next restart"
            );
        }
        let metrics = match &state.metrics {
            Some(fd) => Some(
                crate::serve::metrics::MetricsListener::carried(take(fd)?)
                    .map_err(TakeOverError::Metrics)?,
            ),
            None => None,
        };
        let conns = state
            .connections
            .iter()
            .map(|c| Ok((c.clone(), take(&c.fd)?)))
            .collect::<Result<Vec<_>, TakeOverError>>()?;
        crate::console::resume_subscriber_ids(state.next_subscriber_id);
        since("daemon fds adopted");
        // (A `find_map` once `StateExt` has another variant.)
        let carried_console = state
            .ext
            .iter()
            .map(|e| match e {
                crate::handover::state::StateExt::ConsoleSocket(l) => l,
            })
            .next();
        let console = match carried_console {
            Some(l) => Listener {
                path: l.path.clone(),
                owned: l.owned,
                listener: Some(unix(take(&l.fd)?)?),
            },
            // A predecessor without one: bound now, before Ready, as a new virtlogd socket is.
            None => Listener {
                path: cfg.console_socket.clone(),
                owned: true,
                listener: Some(
                    crate::daemon::listen::bind_console(&cfg.console_socket)
                        .map_err(TakeOverError::ConsoleSocket)?,
                ),
            },
        };
        let d = Running::assemble(cfg, lock, main, admin, console, virtlogd, metrics);
        let domains = std::mem::take(&mut state.domains);
        let rotations = carried_rotations(&domains);
        let n_domains = domains.len() as u32;
        d.registry
            .send(registry::Adopt {
                domains,
                inherited: inherited.clone(),
                staleness,
            })
            .await
            .map_err(|_| TakeOverError::RegistryStopped)??;
        inherited.seal();
        since("domains rebuilt");
        succ.restored();
        // A guardian's take-over is a failed re-exec: the count stays.
        let reexecs = state.reexecs + u32::from(succ.role != Role::Guardian);
        crate::handover::identity::set_lineage(Some((state.started_ms, state.uptime_ms, reexecs)));
        succ.ready().await?;
        since("go");
        Ok(Rebuilt {
            daemon: d,
            state,
            domains: n_domains,
            inherited,
            conns,
            rotations,
        })
    }
}

/// The rotations the carried logs had counted, all together.
fn carried_rotations(domains: &[crate::handover::state::DomainState]) -> u64 {
    use crate::handover::state::StreamState;
    domains
        .iter()
        .flat_map(|d| &d.streams)
        .map(|s| match s {
            StreamState::Pipe(p) => p.sink.rotations,
            StreamState::Console(c) => c.sink.rotations,
        })
        .sum()
}

/// Acts out the `killed-after-go` test fault ([`crate::handover::successor::FAULT_ENV`]): the
/// thawed domains run until their logs have counted `rotations` rotations in all and nothing
/// carried is left undelivered (console input, subscriber queues, file batches), for at most
/// 3 s (the guardian waits 5 s for `Running`); then this process is SIGKILLed, after `Go` and
/// before `Running`.
async fn die_after_go(registry: &actix::Addr<registry::Registry>, rotations: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let backlog = loop {
        let b = registry
            .send(registry::GetBacklog)
            .await
            .unwrap_or_default();
        if (b.rotations >= rotations && b.is_clear()) || std::time::Instant::now() >= deadline {
            break b;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    tracing::warn!(
        ?backlog,
        rotations,
        "{}: killing this process after go, before it runs",
        crate::handover::successor::FAULT_ENV
    );
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
}
