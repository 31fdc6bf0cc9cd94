//! Start-up and shutdown: the wiring of the actors, the socket and the signals.
//!
//! Threads: the main thread runs the actix System arbiter (the registry, the accept loop and the
//! connections); `workers` arbiters (one per core by default) run the domain actors, spread
//! round-robin. SIGTERM or SIGINT stops accepting, has every domain drain its pipes into its
//! files, and exits 0.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_rt::{Arbiter, System};
use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use std::os::fd::OwnedFd;

use logd_protocol::admin::{AdminResponse, EventKind, ReexecReport};
use tokio::sync::{mpsc, oneshot};

use crate::control::registry::{self, Registry};
use crate::handover::reexec::{
    self, Handoff, Handshake, Successor, Trigger, PARK_TIMEOUT, READY_TIMEOUT,
};
use crate::handover::state::{
    Carrier, ConnEndpoint, ConnMode, ConnState, Inherited, ListenerState, State,
};
use crate::host::config::Config;
use crate::host::paths::PathPolicy;
use crate::serve::server::{self, Endpoint, Shared};

/// Connections served at once on the admin socket.
const ADMIN_CLIENTS: usize = 64;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another logd is already listening on {0}")]
    AlreadyRunning(PathBuf),
    #[error("cannot listen on {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Metrics(#[from] crate::serve::metrics::MetricsError),
    #[error(transparent)]
    SockDir(#[from] crate::host::sockdir::SockDirError),
}

/// Raises the soft limit on open files to the hard limit: every open log costs the daemon two
/// fds (the pipe's read end and the file), and the usual soft limit of 1024 would stop it at
/// about 500 guests. Returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(soft, hard, cause = %e, "cannot raise the open-file limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}

/// Runs the daemon until SIGTERM or SIGINT: a fresh start, or (with `successor`) taking over
/// from the process that re-exec'd.
pub fn run(cfg: Config, successor: Option<Successor>) -> Result<(), DaemonError> {
    // Before any thread starts: this reads and clears LISTEN_* from the environment. A
    // successor's sockets come with its state instead.
    let activated = match successor {
        None => crate::host::systemd::take_listeners(
            &cfg.socket,
            &cfg.admin_socket,
            cfg.virtlogd_socket.as_deref(),
        ),
        Some(_) => Default::default(),
    };
    let nofile = raise_fd_limit();
    tracing::debug!(nofile, "open-file limit");
    create_dir(&cfg.log_root)?;
    // Nothing is opened in a socket's directory before it is checked (`sockdir`).
    let sockets = [
        (Some(&cfg.socket), 0o700),
        (Some(&cfg.admin_socket), 0o700),
        (cfg.virtlogd_socket.as_ref(), 0o755),
    ];
    for (socket, mode) in sockets {
        if let Some((socket, dir)) = socket.and_then(|s| Some((s, s.parent()?))) {
            let rule = crate::host::sockdir::Rule::for_socket(socket);
            crate::host::sockdir::ensure_mode(dir, rule, mode)?;
        }
    }
    let sys = System::new();
    sys.block_on(async move {
        // Before READY=1: a signal sent once systemd (or a test) sees us ready must be ours.
        let signals = Signals::install()?;
        let d = match successor {
            None => Running::start(cfg, activated).await?,
            Some(s) => Running::take_over(cfg, s).await,
        };
        d.serve(signals).await
    })
}

/// The signals the daemon handles. No signal a daemon may be sent by habit is left at its
/// default action, which would kill or stop logd and every guest's log with it (logd(8),
/// "SIGNALS"):
/// - SIGTERM, SIGINT, SIGQUIT: drain every pipe, then stop;
/// - SIGUSR1: re-exec; SIGHUP: reload the configuration file;
/// - SIGUSR2, SIGALRM: logged and ignored;
/// - SIGPIPE: handled, so a vanished client is an EPIPE error;
/// - job control (SIGTSTP, SIGTTIN, SIGTTOU), resource limits (SIGXFSZ, SIGXCPU), timers and
///   I/O notices (SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGSTKFLT) and the real-time signals:
///   ignored ([`ignore_stray_signals`]).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
    alrm: tokio::signal::unix::Signal,
    _pipe: tokio::signal::unix::Signal,
}

impl Signals {
    /// A stop signal received and not yet handled (taken: the caller acts on it).
    fn stop_pending(&mut self) -> Option<&'static str> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        [
            (&mut self.term, "SIGTERM"),
            (&mut self.int, "SIGINT"),
            (&mut self.quit, "SIGQUIT"),
        ]
        .into_iter()
        .find_map(|(s, name)| s.poll_recv(&mut cx).is_ready().then_some(name))
    }

    /// The next signal, and what it asks for.
    async fn next(&mut self) -> Sig {
        tokio::select! {
            _ = self.term.recv() => Sig::Stop("SIGTERM"),
            _ = self.int.recv() => Sig::Stop("SIGINT"),
            _ = self.quit.recv() => Sig::Stop("SIGQUIT"),
            _ = self.usr1.recv() => Sig::Reexec,
            _ = self.hup.recv() => Sig::Reload,
            _ = self.usr2.recv() => Sig::Ignored("SIGUSR2"),
            _ = self.alrm.recv() => Sig::Ignored("SIGALRM"),
        }
    }

    fn install() -> Result<Signals, DaemonError> {
        ignore_stray_signals()?;
        let s = |k| signal(k).map_err(DaemonError::Signals);
        Ok(Signals {
            term: s(SignalKind::terminate())?,
            int: s(SignalKind::interrupt())?,
            quit: s(SignalKind::quit())?,
            usr1: s(SignalKind::user_defined1())?,
            hup: s(SignalKind::hangup())?,
            usr2: s(SignalKind::user_defined2())?,
            alrm: s(SignalKind::alarm())?,
            // A vanished client must be an EPIPE error, never a fatal signal.
            _pipe: s(SignalKind::pipe())?,
        })
    }
}

/// What a signal asks of the daemon.
enum Sig {
    Stop(&'static str),
    Reexec,
    Reload,
    Ignored(&'static str),
}

/// Sets the signals logd neither needs nor wants to die or stop of to SIG_IGN: job control
/// (a daemon stopped by a stray ^Z stalls every guest), SIGXFSZ (a write past RLIMIT_FSIZE is
/// then EFBIG, a disk error logd counts), SIGXCPU, the profiling and I/O notices whose default
/// is to terminate, and every real-time signal.
fn ignore_stray_signals() -> Result<(), DaemonError> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal::*};
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    let fixed = [
        SIGTSTP, SIGTTIN, SIGTTOU, SIGXFSZ, SIGXCPU, SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGSTKFLT,
    ]
    .map(|s| s as i32);
    let realtime = nix::libc::SIGRTMIN()..=nix::libc::SIGRTMAX();
    for signo in fixed.into_iter().chain(realtime) {
        let set = |sig| {
            // SAFETY: SIG_IGN installs no handler code, so nothing runs in signal context;
            // the previous disposition is not used.
            #[allow(unsafe_code)]
            unsafe {
                sigaction(sig, &ignore)
            }
        };
        let res = match nix::sys::signal::Signal::try_from(signo) {
            Ok(sig) => set(sig).map(drop),
            // Real-time signals have no `Signal` value: the raw call.
            Err(_) => ignore_raw(signo),
        };
        res.map_err(|e| DaemonError::Signals(e.into()))?;
    }
    Ok(())
}

/// SIG_IGN for a signal number nix has no name for (the real-time ones).
fn ignore_raw(signo: i32) -> nix::Result<()> {
    // SAFETY: SIG_IGN runs no code in signal context; `signal` only sets the disposition.
    #[allow(unsafe_code)]
    let old = unsafe { nix::libc::signal(signo, nix::libc::SIG_IGN) };
    if old == nix::libc::SIG_ERR {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), DaemonError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| DaemonError::CreateDir {
            path: dir.to_owned(),
            source,
        })
}

/// Takes `<socket>.lock` for the daemon's lifetime, so two daemons started at once cannot both
/// believe the socket is theirs (the loser would otherwise remove the winner's socket file).
fn lock(socket: &Path) -> Result<Flock<std::fs::File>, DaemonError> {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    // Never through a symlink: a planted one would have logd write its pid into its target.
    let f = crate::host::sockdir::open_nofollow(&path, false)?;
    Flock::lock(f, FlockArg::LockExclusiveNonblock)
        .map_err(|_| DaemonError::AlreadyRunning(socket.to_owned()))
}

/// Binds the main socket with mode 0600, replacing a stale socket file but never a live one.
/// A symlink in its place is refused, never followed (not even to probe for a live daemon).
fn bind(path: &Path) -> Result<UnixListener, DaemonError> {
    let l = crate::host::sockdir::bind(path).map_err(|e| match e {
        crate::host::sockdir::SockDirError::InUse { path } => DaemonError::AlreadyRunning(path),
        e => e.into(),
    })?;
    l.set_nonblocking(true)
        .and_then(|()| UnixListener::from_std(l))
        .map_err(|source| DaemonError::Bind {
            path: path.to_owned(),
            source,
        })
}

/// A listener from systemd, or one logd binds itself. Returns it and whether logd owns the
/// socket file (and so removes it at exit).
fn take_or_bind(
    given: Option<std::os::unix::net::UnixListener>,
    path: &Path,
) -> Result<(UnixListener, bool), DaemonError> {
    match given {
        Some(l) => UnixListener::from_std(l)
            .map(|l| (l, false))
            .map_err(|source| DaemonError::Bind {
                path: path.to_owned(),
                source,
            }),
        None => bind(path).map(|l| (l, true)),
    }
}

/// The lock file: taken at a fresh start, or inherited (still locked) at a re-exec.
enum LockFile {
    Fresh(Flock<std::fs::File>),
    Carried(std::fs::File),
}

impl LockFile {
    fn file(&self) -> &std::fs::File {
        match self {
            LockFile::Fresh(f) => f,
            LockFile::Carried(f) => f,
        }
    }

    /// Writes the serving process's pid into the lock file (it changes at each re-exec).
    fn write_pid(&self) {
        self.write_pid_of(std::process::id());
    }

    /// Writes `pid` into the lock file: the old process names its successor before it says go,
    /// so the file never names a process that has exited.
    fn write_pid_of(&self, pid: u32) {
        use std::os::unix::fs::FileExt;
        let f = self.file();
        let pid = format!("{pid}\n");
        if let Err(e) = f
            .set_len(0)
            .and_then(|()| f.write_all_at(pid.as_bytes(), 0))
        {
            tracing::warn!(cause = %e, "cannot write the pid into the lock file");
        }
    }
}

/// A listening UNIX socket of the daemon.
struct Listener {
    path: PathBuf,
    /// Whether logd created the socket file (and removes it at exit).
    owned: bool,
    /// None while its accept loop has it.
    listener: Option<UnixListener>,
}

/// The accept loops, while they run.
struct Accepting {
    stop: CancellationToken,
    main: tokio::task::JoinHandle<UnixListener>,
    admin: tokio::task::JoinHandle<UnixListener>,
    virtlogd: Option<tokio::task::JoinHandle<UnixListener>>,
    metrics: Option<tokio::task::JoinHandle<crate::serve::metrics::MetricsListener>>,
}

/// The serving daemon.
struct Running {
    cfg: Config,
    lock: LockFile,
    main: Listener,
    admin: Listener,
    /// The virtlogd socket, if served.
    virtlogd: Option<Listener>,
    metrics: Option<crate::serve::metrics::MetricsListener>,
    workers: Vec<Arbiter>,
    registry: actix::Addr<Registry>,
    shared_main: Arc<Shared>,
    shared_admin: Arc<Shared>,
    shared_virtlogd: Arc<Shared>,
    limit: Arc<Semaphore>,
    handoff: Arc<Handoff>,
    triggers: mpsc::Receiver<Trigger>,
    accepting: Option<Accepting>,
    /// A stop signal that arrived during a re-exec (which it cancelled).
    stop_requested: Option<&'static str>,
}

impl Running {
    /// Everything but the listeners, the same for a fresh start and a take-over.
    fn assemble(
        cfg: Config,
        lock: LockFile,
        main: Listener,
        admin: Listener,
        virtlogd: Option<Listener>,
        metrics: Option<crate::serve::metrics::MetricsListener>,
    ) -> Running {
        crate::host::paths::install(PathPolicy::new(cfg.log_root.clone(), cfg.path_dirs()));
        let workers: Vec<Arbiter> = (0..cfg.workers).map(|_| Arbiter::new()).collect();
        let handles = workers.iter().map(Arbiter::handle).collect();
        let registry = Registry::start_global(cfg.rotate, handles);
        let (handoff, triggers) = Handoff::new();
        let limit = Arc::new(Semaphore::new(cfg.max_clients));
        let shared_main = Arc::new(Shared {
            endpoint: Endpoint::Main,
            registry: registry.clone(),
            limit: limit.clone(),
            peers: server::PeerSlots::new(cfg.max_clients_per_peer),
            idle_timeout: cfg.client_idle_timeout,
            replies: Arc::new(server::ReplyBudget::new(cfg.reply_budget, cfg.reply_wait)),
            daemon_uid: nix::unistd::geteuid().as_raw(),
            handoff: handoff.clone(),
        });
        let shared_admin = Arc::new(Shared {
            endpoint: Endpoint::Admin,
            registry: registry.clone(),
            limit: Arc::new(Semaphore::new(ADMIN_CLIENTS)),
            peers: server::PeerSlots::new(cfg.max_clients_per_peer.min(ADMIN_CLIENTS)),
            idle_timeout: cfg.client_idle_timeout,
            replies: shared_main.replies.clone(),
            daemon_uid: shared_main.daemon_uid,
            handoff: handoff.clone(),
        });
        // libvirtd's connections count against the main socket's max_clients.
        let shared_virtlogd = Arc::new(Shared {
            endpoint: Endpoint::Virtlogd,
            registry: registry.clone(),
            limit: limit.clone(),
            peers: server::PeerSlots::new(cfg.max_clients_per_peer),
            idle_timeout: cfg.client_idle_timeout,
            replies: shared_main.replies.clone(),
            daemon_uid: shared_main.daemon_uid,
            handoff: handoff.clone(),
        });
        Running {
            cfg,
            lock,
            main,
            admin,
            virtlogd,
            metrics,
            workers,
            registry,
            shared_main,
            shared_admin,
            shared_virtlogd,
            limit,
            handoff,
            triggers,
            accepting: None,
            stop_requested: None,
        }
    }

    async fn start(
        mut cfg: Config,
        activated: crate::host::systemd::Activated,
    ) -> Result<Running, DaemonError> {
        crate::handover::identity::set_lineage(None);
        let lock = LockFile::Fresh(lock(&cfg.socket)?);
        let (listener, own_main) = take_or_bind(activated.main, &cfg.socket)?;
        let (admin_listener, own_admin) = take_or_bind(activated.admin, &cfg.admin_socket)?;
        // A virtlogd socket from systemd is served even if the config names none: handing it
        // over is the operator's choice.
        if let (Some(l), None) = (&activated.virtlogd, &cfg.virtlogd_socket) {
            cfg.virtlogd_socket = Some(
                l.local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(Path::to_owned))
                    .unwrap_or_else(crate::host::config::default_virtlogd_socket),
            );
        }
        let virtlogd = match &cfg.virtlogd_socket {
            Some(path) => {
                let (l, owned) = take_or_bind(activated.virtlogd, path)?;
                Some(Listener {
                    path: path.clone(),
                    owned,
                    listener: Some(l),
                })
            }
            None => None,
        };
        let metrics = cfg
            .metrics_listen
            .as_deref()
            .map(crate::serve::metrics::bind)
            .transpose()?;
        let main = Listener {
            path: cfg.socket.clone(),
            owned: own_main,
            listener: Some(listener),
        };
        let admin = Listener {
            path: cfg.admin_socket.clone(),
            owned: own_admin,
            listener: Some(admin_listener),
        };
        let mut d = Running::assemble(cfg, lock, main, admin, virtlogd, metrics);
        d.lock.write_pid();
        d.start_accepting();
        let cfg = &d.cfg;
        tracing::info!(
            socket = %cfg.socket.display(),
            admin_socket = %cfg.admin_socket.display(),
            virtlogd_socket = ?cfg.virtlogd_socket,
            log_root = %cfg.log_root.display(),
            max_size = { cfg.rotate.max_size },
            max_backups = { cfg.rotate.max_backups },
            workers = cfg.workers,
            build_id = %crate::handover::identity::get().build_id,
            "logd {} ready",
            env!("CARGO_PKG_VERSION")
        );
        crate::host::systemd::notify(&format!(
            "READY=1\nMAINPID={}\nSTATUS=serving",
            std::process::id()
        ));
        Ok(d)
    }

    /// Takes over from the process that re-exec'd: adopts every fd of its state, rebuilds the
    /// actors (frozen), says `Ready`, and on `Go` thaws them and serves. Any failure before
    /// `Ready` is reported to the old process, and this one exits without touching anything.
    async fn take_over(cfg: Config, mut succ: Successor) -> Running {
        let state = succ.read_state().unwrap_or_else(|e| succ.refuse(&e));
        let since = |what: &str| {
            tracing::debug!(
                us = crate::clock::mono_ns().saturating_sub(state.asked_mono_ns) / 1000,
                "take-over: {what}"
            )
        };
        since("state read");
        let parent = succ.parent;
        let inherited = Arc::new(Inherited::for_state(&state));
        let take = |fd: &crate::handover::state::Fd| {
            inherited
                .take(fd)
                .unwrap_or_else(|e| succ.refuse(&e.to_string()))
        };
        let unix = |fd: OwnedFd| {
            crate::handover::state::sockets::unix_listener(fd)
                .unwrap_or_else(|e| succ.refuse(&format!("cannot use an inherited listener: {e}")))
        };
        let lock = LockFile::Carried(std::fs::File::from(take(&state.lock)));
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
            listener: Some(unix(take(&state.main.fd))),
        };
        let admin = Listener {
            path: state.admin.path.clone(),
            owned: state.admin.owned,
            listener: Some(unix(take(&state.admin.fd))),
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
                    listener: Some(unix(take(&v.fd))),
                })
            }
            // Newly configured (or a predecessor without it): bound now, before Ready, so a
            // socket that cannot be bound fails the take-over and the old process goes on. (Its
            // directory was checked in `run`, as every socket's is.)
            (None, Some(path)) => match bind(path) {
                Ok(l) => Some(Listener {
                    path: path.clone(),
                    owned: true,
                    listener: Some(l),
                }),
                Err(e) => succ.refuse(&format!("cannot serve the virtlogd socket: {e}")),
            },
            (None, None) => None,
        };
        if state.metrics.is_some() != cfg.metrics_listen.is_some() {
            tracing::warn!(
                carried = state.metrics.is_some(),
                configured = ?cfg.metrics_listen,
                "metrics_listen changed; the metrics listener stays as it was until the next restart"
            );
        }
        let metrics = state.metrics.as_ref().map(|fd| {
            crate::serve::metrics::MetricsListener::carried(take(fd))
                .unwrap_or_else(|e| succ.refuse(&format!("cannot use the metrics listener: {e}")))
        });
        let conns: Vec<(ConnState, OwnedFd)> = state
            .connections
            .iter()
            .map(|c| (c.clone(), take(&c.fd)))
            .collect();
        crate::console::resume_subscriber_ids(state.next_subscriber_id);
        since("daemon fds adopted");
        let mut d = Running::assemble(cfg, lock, main, admin, virtlogd, metrics);
        let domains = state.domains.len() as u32;
        let adopted = d
            .registry
            .send(registry::Adopt {
                domains: state.domains,
                inherited: inherited.clone(),
            })
            .await;
        match adopted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => succ.refuse(&e),
            Err(_) => succ.refuse("the registry stopped"),
        }
        since("domains rebuilt");
        crate::handover::identity::set_lineage(Some((
            state.started_ms,
            state.uptime_ms,
            state.reexecs + 1,
        )));
        if let Err(e) = succ.ready().await {
            succ.refuse(&e);
        }
        // Go: from here on this process is logd.
        since("go");
        let _ = d.registry.send(registry::Thaw { carried: false }).await;
        let resumed = crate::clock::mono_ns();
        let fds = inherited.count() as u32;
        let now_ms = crate::clock::now_unix_ms();
        let report = ReexecReport {
            at_ms: now_ms.saturating_sub(resumed.saturating_sub(state.asked_mono_ns) / 1_000_000),
            from_pid: parent,
            to_pid: std::process::id(),
            error: None,
            blackout_us: resumed.saturating_sub(state.frozen_mono_ns) / 1000,
            total_us: resumed.saturating_sub(state.asked_mono_ns) / 1000,
            domains,
            fds,
        };
        crate::handover::identity::set_last_reexec(report.clone());
        d.lock.write_pid();
        d.start_accepting();
        for (c, fd) in conns {
            let shared = match c.endpoint {
                ConnEndpoint::Main => d.shared_main.clone(),
                ConnEndpoint::Admin => d.shared_admin.clone(),
                ConnEndpoint::Virtlogd => d.shared_virtlogd.clone(),
            };
            let reply = (c.mode == ConnMode::AwaitingReexec)
                .then(|| AdminResponse::Reexeced(report.clone()));
            server::resume(&c, fd, shared, reply);
        }
        tracing::info!(
            from = parent,
            domains,
            fds,
            blackout_us = report.blackout_us,
            total_us = report.total_us,
            build_id = %crate::handover::identity::get().build_id,
            "logd {} took over (re-exec {})",
            env!("CARGO_PKG_VERSION"),
            state.reexecs + 1
        );
        crate::serve::events::emit(|| EventKind::Reexeced {
            from_pid: parent,
            to_pid: std::process::id(),
        });
        crate::host::systemd::notify(&format!(
            "READY=1\nMAINPID={}\nSTATUS=serving (re-exec {})",
            std::process::id(),
            state.reexecs + 1
        ));
        d
    }

    fn start_accepting(&mut self) {
        if self.accepting.is_some() {
            return;
        }
        let stop = CancellationToken::new();
        let main = self
            .main
            .listener
            .take()
            .expect("the main listener is home");
        let admin = self
            .admin
            .listener
            .take()
            .expect("the admin listener is home");
        let metrics = self.metrics.take().map(|l| {
            tracing::info!(addr = %l.describe(), "serving Prometheus metrics at /metrics");
            actix_rt::spawn(crate::serve::metrics::serve(
                l,
                self.registry.clone(),
                stop.clone(),
            ))
        });
        let virtlogd = self.virtlogd.as_mut().map(|v| {
            let l = v.listener.take().expect("the virtlogd listener is home");
            actix_rt::spawn(server::serve(l, self.shared_virtlogd.clone(), stop.clone()))
        });
        self.accepting = Some(Accepting {
            main: actix_rt::spawn(server::serve(main, self.shared_main.clone(), stop.clone())),
            virtlogd,
            admin: actix_rt::spawn(server::serve(
                admin,
                self.shared_admin.clone(),
                stop.clone(),
            )),
            metrics,
            stop,
        });
    }

    /// Stops the accept loops and takes the listeners back (open).
    async fn stop_accepting(&mut self) {
        let Some(a) = self.accepting.take() else {
            return;
        };
        a.stop.cancel();
        // The loops return their listener as soon as they see the token.
        if let Ok(l) = a.main.await {
            self.main.listener = Some(l);
        }
        if let Ok(l) = a.admin.await {
            self.admin.listener = Some(l);
        }
        if let (Some(v), Some(task)) = (self.virtlogd.as_mut(), a.virtlogd) {
            if let Ok(l) = task.await {
                v.listener = Some(l);
            }
        }
        if let Some(m) = a.metrics {
            if let Ok(l) = m.await {
                self.metrics = Some(l);
            }
        }
    }

    /// Serves until SIGTERM, SIGINT or idle exit; re-execs on SIGUSR1 or `logdctl reexec`.
    async fn serve(mut self, mut sig: Signals) -> Result<(), DaemonError> {
        let idle = idle_watch(
            self.cfg.idle_exit,
            self.registry.clone(),
            self.limit.clone(),
            self.cfg.max_clients,
        );
        tokio::pin!(idle);
        let which = loop {
            tokio::select! {
                s = sig.next() => match s {
                    Sig::Stop(name) => break name,
                    Sig::Reexec => {
                        tracing::info!("SIGUSR1: re-exec");
                        self.reexec(&mut sig, None, None).await;
                    }
                    Sig::Reload => self.reload().await,
                    Sig::Ignored(name) => tracing::info!(signal = name, "signal ignored"),
                },
                _ = &mut idle => break "idle",
                Some(t) = self.triggers.recv() => self.reexec(&mut sig, t.binary, t.reply).await,
            }
            if let Some(why) = self.stop_requested.take() {
                break why;
            }
        };
        tracing::info!(reason = which, "shutting down");
        crate::host::systemd::notify("STOPPING=1");
        self.stop_accepting().await;
        // Sockets from systemd belong to systemd; it keeps them for the next start.
        if self.main.owned {
            let _ = std::fs::remove_file(&self.main.path);
        }
        if self.admin.owned {
            let _ = std::fs::remove_file(&self.admin.path);
        }
        if let Some(v) = self.virtlogd.as_ref().filter(|v| v.owned) {
            let _ = std::fs::remove_file(&v.path);
        }
        if let Some(m) = &self.metrics {
            m.remove_socket_file();
        }
        let _ = self.registry.send(registry::Shutdown).await;
        for w in self.workers {
            w.stop();
            let _ = w.join();
        }
        tracing::info!("every log drained; bye");
        Ok(())
    }

    /// SIGHUP: reads the configuration file again and applies what can change while serving:
    /// the rotation settings of logs opened from now on, `allowed_dirs`, `binary` and
    /// `log_level`. Settings
    /// that need sockets, threads or the connection limit rebuilt are named in a warning and
    /// apply at the next re-exec, which reads the file again. An invalid file changes nothing.
    async fn reload(&mut self) {
        let new = match self.cfg.reload() {
            Ok(c) => c,
            Err(e) => {
                let why = e.to_string();
                tracing::error!("SIGHUP: configuration not reloaded; the running one stays: {why}");
                crate::serve::events::emit(|| EventKind::Error {
                    path: self
                        .cfg
                        .origin
                        .file
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    message: format!("configuration not reloaded: {why}"),
                });
                return;
            }
        };
        let old = &self.cfg;
        let mut applied = Vec::new();
        if new.rotate != old.rotate {
            let _ = self.registry.send(registry::SetRotate(new.rotate)).await;
            applied.push("max_size/max_backups");
        }
        if new.allowed_dirs != old.allowed_dirs {
            let dirs = Config {
                virtlogd_socket: old.virtlogd_socket.clone(),
                ..new.clone()
            }
            .path_dirs();
            crate::host::paths::install(PathPolicy::new(old.log_root.clone(), dirs));
            applied.push("allowed_dirs");
        }
        if new.binary != old.binary {
            applied.push("binary");
        }
        if new.log_level != old.log_level {
            if let Some(level) = &new.log_level {
                // Checked when the file was read, so this cannot be refused.
                if let Err(e) = crate::host::logging::set_filter(level) {
                    tracing::error!("SIGHUP: {e}");
                }
            }
            applied.push("log_level");
        }
        let later: Vec<&str> = [
            ("socket", new.socket != old.socket),
            ("admin_socket", new.admin_socket != old.admin_socket),
            (
                "virtlogd_socket",
                new.virtlogd_socket != old.virtlogd_socket,
            ),
            ("log_root", new.log_root != old.log_root),
            ("workers", new.workers != old.workers),
            ("max_clients", new.max_clients != old.max_clients),
            ("metrics_listen", new.metrics_listen != old.metrics_listen),
            ("idle_exit", new.idle_exit != old.idle_exit),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect();
        if !later.is_empty() {
            tracing::warn!(
                keys = ?later,
                "SIGHUP: these settings change only at the next re-exec (logdctl reexec) or restart"
            );
        }
        self.cfg = Config {
            rotate: new.rotate,
            allowed_dirs: new.allowed_dirs,
            binary: new.binary,
            log_level: new.log_level,
            ..self.cfg.clone()
        };
        tracing::info!(
            changed = ?applied,
            max_size = { self.cfg.rotate.max_size },
            max_backups = { self.cfg.rotate.max_backups },
            "SIGHUP: configuration reloaded"
        );
    }

    /// Re-execs. Returns only if it failed, with everything as it was; on success this process
    /// exits.
    async fn reexec(
        &mut self,
        sig: &mut Signals,
        binary: Option<PathBuf>,
        reply: Option<oneshot::Sender<String>>,
    ) {
        let asked = crate::clock::mono_ns();
        let asked_ms = crate::clock::now_unix_ms();
        let exe = binary
            .or_else(|| self.cfg.binary.clone())
            .unwrap_or_else(|| crate::handover::identity::get().exe.clone());
        tracing::info!(exe = %exe.display(), "re-exec: handing over to a new process");
        crate::host::systemd::notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=re-executing",
            asked / 1000
        ));
        let Err(why) = self.hand_over(&exe, asked, sig).await;
        tracing::error!("re-exec failed; this process goes on serving: {why}");
        crate::handover::identity::set_last_reexec(ReexecReport {
            at_ms: asked_ms,
            from_pid: std::process::id(),
            to_pid: std::process::id(),
            error: Some(why.clone()),
            blackout_us: 0,
            total_us: (crate::clock::mono_ns().saturating_sub(asked)) / 1000,
            domains: 0,
            fds: 0,
        });
        crate::serve::events::emit(|| EventKind::ReexecFailed {
            reason: why.clone(),
        });
        if let Some(r) = reply {
            let _ = r.send(why);
        }
        crate::host::systemd::notify("READY=1\nSTATUS=serving (the last re-exec failed)");
    }

    /// The old process's side of a re-exec (see [`crate::handover::reexec`]).
    async fn hand_over(
        &mut self,
        exe: &Path,
        asked: u64,
        sig: &mut Signals,
    ) -> Result<std::convert::Infallible, String> {
        let since = |what: &str| {
            tracing::debug!(
                us = crate::clock::mono_ns().saturating_sub(asked) / 1000,
                "re-exec: {what}"
            )
        };
        self.stop_accepting().await;
        let connections = self.handoff.park_all(PARK_TIMEOUT).await;
        since("connections parked");
        let frozen = crate::clock::mono_ns();
        let domains = match self.registry.send(registry::Freeze).await {
            Ok(Ok(d)) => d,
            // Some domains may have frozen and marked their fds: thaw puts them back.
            Ok(Err(e)) => return Err(self.undo(true, e).await),
            Err(_) => return Err(self.undo(true, "the registry stopped".into()).await),
        };
        since("domains frozen");
        let mut carrier = Carrier::out();
        let lock = carrier.fd(self.lock.file());
        let listener = |l: &Listener, c: &mut Carrier| ListenerState {
            fd: c.fd(l.listener.as_ref().expect("accepting stopped")),
            path: l.path.clone(),
            owned: l.owned,
        };
        let main = listener(&self.main, &mut carrier);
        let admin = listener(&self.admin, &mut carrier);
        let virtlogd = self.virtlogd.as_ref().map(|v| listener(v, &mut carrier));
        let metrics = self.metrics.as_ref().map(|l| carrier.fd(l));
        if let Err(e) = carrier.finish() {
            return Err(self
                .undo(true, format!("cannot mark a listener to be carried: {e}"))
                .await);
        }
        let lineage = crate::handover::identity::lineage();
        let n_domains = domains.len();
        let state = State {
            asked_mono_ns: asked,
            frozen_mono_ns: frozen,
            started_ms: lineage.started_ms,
            uptime_ms: crate::handover::identity::uptime_ms(),
            reexecs: lineage.reexecs,
            lock,
            main,
            admin,
            metrics,
            next_subscriber_id: crate::console::next_subscriber_id(),
            domains,
            connections,
            virtlogd,
        };
        let spawned = match reexec::spawn(exe, &state) {
            Ok(s) => s,
            Err(e) => return Err(self.undo(true, e.to_string()).await),
        };
        drop(state);
        since("new process spawned");
        let hs = spawned
            .handshake
            .try_clone()
            .and_then(|s| crate::handover::state::sockets::unix_stream(s.into()))
            .map_err(|e| e.to_string());
        let answer = match &hs {
            Ok(hs) => tokio::time::timeout(READY_TIMEOUT, reexec::recv(hs)).await,
            Err(e) => Ok(Err(reexec::HandshakeError::Io(std::io::Error::other(
                e.clone(),
            )))),
        };
        let pid = spawned.child.id();
        since("answer from the new process");
        // A stop asked for meanwhile wins over the re-exec: this process drains and exits.
        let stop = match answer {
            Ok(Ok(Handshake::Ready { .. })) => sig.stop_pending(),
            _ => None,
        };
        let why = match answer {
            Ok(Ok(Handshake::Ready { .. })) if stop.is_some() => {
                self.stop_requested = stop;
                format!("a stop signal came during the re-exec; stopping instead (pid {pid} told to exit)")
            }
            Ok(Ok(Handshake::Ready { pid: ready })) if ready == pid => {
                // systemd must know the new main process before this one exits.
                crate::host::systemd::notify_and_wait(
                    &format!("MAINPID={pid}"),
                    std::time::Duration::from_secs(1),
                );
                self.lock.write_pid_of(pid);
                match reexec::send(&spawned.handshake, &Handshake::Go) {
                    Ok(()) => {
                        self.handoff.commit();
                        tracing::info!(
                            pid,
                            domains = n_domains,
                            "handed everything over to the new process; exiting"
                        );
                        std::process::exit(0);
                    }
                    Err(e) => {
                        self.lock.write_pid();
                        format!("the new process (pid {pid}) went away before go: {e}")
                    }
                }
            }
            Ok(Ok(Handshake::Failed { reason })) => {
                format!("the new process (pid {pid}) could not take over: {reason}")
            }
            Ok(Ok(other)) => format!("the new process (pid {pid}) said {other:?}"),
            Ok(Err(reexec::HandshakeError::Closed)) => {
                format!("the new process (pid {pid}) exited before it was ready")
            }
            Ok(Err(e)) => format!("the new process (pid {pid}): {e}"),
            Err(_) => format!(
                "the new process (pid {pid}) was not ready within {} s",
                READY_TIMEOUT.as_secs()
            ),
        };
        let _ = reexec::send(&spawned.handshake, &Handshake::Abort);
        let status = reap(spawned.child).await;
        Err(self.undo(true, format!("{why} ({status})")).await)
    }

    /// Puts everything back after a failed hand-over: close-on-exec on the carried fds, the
    /// actors thawed, the connections unparked, the accept loops running.
    async fn undo(&mut self, carried: bool, why: String) -> String {
        let mut back = Carrier::back();
        back.fd(self.lock.file());
        for l in [Some(&self.main), Some(&self.admin), self.virtlogd.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Some(l) = &l.listener {
                back.fd(l);
            }
        }
        if let Some(l) = &self.metrics {
            back.fd(l);
        }
        let _ = back.finish();
        let _ = self.registry.send(registry::Thaw { carried }).await;
        self.handoff.resume();
        self.start_accepting();
        why
    }
}

/// Waits for a failed new process to exit (killing it if it does not), and says how it ended.
async fn reap(mut child: std::process::Child) -> String {
    let waited = tokio::task::spawn_blocking(move || {
        for _ in 0..100 {
            if let Ok(Some(st)) = child.try_wait() {
                return st.to_string();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        child
            .wait()
            .map(|st| format!("killed: {st}"))
            .unwrap_or_else(|e| e.to_string())
    })
    .await;
    waited.unwrap_or_else(|e| e.to_string())
}

/// Resolves once the daemon has had no domain and no client for `after` (never if None).
async fn idle_watch(
    after: Option<std::time::Duration>,
    registry: actix::Addr<Registry>,
    limit: Arc<Semaphore>,
    max_clients: usize,
) {
    let Some(after) = after else {
        return std::future::pending().await;
    };
    let tick = (after / 4).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(5),
    );
    let mut idle_since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let domains = registry.send(registry::CountDomains).await.unwrap_or(1);
        let clients = max_clients - limit.available_permits();
        if domains > 0 || clients > 0 {
            idle_since = tokio::time::Instant::now();
        } else if idle_since.elapsed() >= after {
            tracing::info!(seconds = after.as_secs(), "idle: no log open and no client");
            return;
        }
    }
}
