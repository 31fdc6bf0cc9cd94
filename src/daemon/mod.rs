//! Start-up and shutdown: the wiring of the actors, the sockets ([`listen`]) and the signals
//! ([`signals`]). A re-exec, on either side, is [`crate::handover`]'s.
//!
//! Threads: the main thread runs the actix System arbiter (the registry, the accept loop and the
//! connections); `workers` arbiters (one per core by default) run the domain actors, spread
//! round-robin. SIGTERM or SIGINT stops accepting, has every domain drain its pipes into its
//! files, and exits 0.

pub(crate) mod listen;
pub(crate) mod signals;

pub use signals::block_signals;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_rt::{Arbiter, System};
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use logd_protocol::admin::EventKind;

use crate::control::declared::{Declared, Occasion};
use crate::control::persisted::Persisted;
use crate::control::registry::{self, Registry};
use crate::handover::reexec::{Handoff, Trigger};
use crate::handover::successor::Successor;
use crate::host::config::Config;
use crate::host::paths::PathPolicy;
use crate::serve::server::{self, Endpoint, Shared};
use listen::{bind_console, create_dir, lock, take_or_bind, Listener, LockFile};
use signals::{Sig, Signals};

/// Connections served at once on the admin socket.
const ADMIN_CLIENTS: usize = 64;
/// Connections served at once on the console socket (an attach holds one only while it asks).
const CONSOLE_CLIENTS: usize = 64;

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

/// The sockets systemd passed are what logd serves, wherever the configuration pointed: their
/// paths replace the configured ones, so that the lock file (`<socket>.lock`), the socket
/// directories' checks, the ready line and the console socket's default follow them.
fn follow_activated(mut cfg: Config, activated: &crate::host::systemd::Activated) -> Config {
    use crate::host::config::console_socket_for;
    let path_of = |l: &Option<std::os::unix::net::UnixListener>| {
        l.as_ref()
            .and_then(|l| l.local_addr().ok())
            .and_then(|a| a.as_pathname().map(Path::to_owned))
    };
    if let Some(p) = path_of(&activated.main).filter(|p| *p != cfg.socket) {
        tracing::info!(configured = %cfg.socket.display(), activated = %p.display(), "serving the main socket systemd passed, not the configured path");
        if cfg.console_socket == console_socket_for(&cfg.socket) {
            cfg.console_socket = console_socket_for(&p);
        }
        if activated.admin.is_none()
            && cfg.admin_socket == crate::host::config::admin_socket_for(&cfg.socket)
        {
            cfg.admin_socket = crate::host::config::admin_socket_for(&p);
        }
        cfg.socket = p;
    }
    if let Some(p) = path_of(&activated.admin).filter(|p| *p != cfg.admin_socket) {
        tracing::info!(configured = %cfg.admin_socket.display(), activated = %p.display(), "serving the admin socket systemd passed, not the configured path");
        cfg.admin_socket = p;
    }
    cfg
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
    let cfg = follow_activated(cfg, &activated);
    crate::datapath::sink::set_rest_after(cfg.log_idle_close.unwrap_or_default());
    let nofile = raise_fd_limit();
    tracing::debug!(nofile, "open-file limit");
    create_dir(&cfg.log_root)?;
    // Nothing is opened in a socket's directory before it is checked (`sockdir`).
    // The console socket's first: a shared directory it is in is made 0711, so that any user
    // can reach it (and list nothing).
    let sockets = [
        (Some(&cfg.console_socket), 0o711),
        (Some(&cfg.socket), 0o700),
        (Some(&cfg.admin_socket), 0o700),
        (cfg.virtlogd_socket.as_ref(), 0o755),
    ];
    for (socket, mode) in sockets {
        if let Some((socket, dir)) = socket.and_then(|s| Some((s, s.parent()?))) {
            let rule = crate::host::sockdir::Rule::for_socket(socket);
            // A user's private directory stays 0700: its daemon serves that user only.
            let mode = match rule {
                crate::host::sockdir::Rule::Private => 0o700,
                crate::host::sockdir::Rule::Shared => mode,
            };
            crate::host::sockdir::ensure_mode(dir, rule, mode)?;
        }
    }
    let sys = System::new();
    sys.block_on(async move {
        // Before READY=1: a signal sent once systemd (or a test) sees us ready must be ours.
        // A signal sent while a re-exec replaced the previous image waited, pending, for
        // this signalfd.
        let signals = Signals::install()?;
        let d = match successor {
            None => Running::start(cfg, activated).await?,
            Some(s) => {
                Running::take_over(cfg, s)
                    .await
                    .with_declared(Occasion::TakeOver)
                    .await
            }
        };
        d.serve(signals).await
    })
}

/// The accept loops, while they run.
struct Accepting {
    stop: CancellationToken,
    main: tokio::task::JoinHandle<UnixListener>,
    admin: tokio::task::JoinHandle<UnixListener>,
    console: tokio::task::JoinHandle<UnixListener>,
    virtlogd: Option<tokio::task::JoinHandle<UnixListener>>,
    metrics: Option<tokio::task::JoinHandle<crate::serve::metrics::MetricsListener>>,
}

/// The serving daemon. Its re-exec is in [`crate::handover`] (`hand_over`, `take_over`).
pub(crate) struct Running {
    pub(crate) cfg: Config,
    pub(crate) lock: LockFile,
    pub(crate) main: Listener,
    pub(crate) admin: Listener,
    /// The console socket (`logdctl attach`).
    pub(crate) console: Listener,
    /// The virtlogd socket, if served.
    pub(crate) virtlogd: Option<Listener>,
    pub(crate) metrics: Option<crate::serve::metrics::MetricsListener>,
    workers: Vec<Arbiter>,
    pub(crate) registry: actix::Addr<Registry>,
    pub(crate) shared_main: Arc<Shared>,
    pub(crate) shared_admin: Arc<Shared>,
    pub(crate) shared_virtlogd: Arc<Shared>,
    pub(crate) shared_console: Arc<Shared>,
    limit: Arc<Semaphore>,
    pub(crate) handoff: Arc<Handoff>,
    triggers: mpsc::Receiver<Trigger>,
    accepting: Option<Accepting>,
    /// A stop signal that arrived during a re-exec (which it cancelled).
    pub(crate) stop_requested: Option<&'static str>,
    /// Which running consoles are the config file's (`[[console]]`).
    declared: Declared,
    /// The consoles persisted with `logdctl console add --persist`.
    persisted: Arc<Persisted>,
}

impl Running {
    /// Everything but the listeners, the same for a fresh start and a take-over.
    pub(crate) fn assemble(
        cfg: Config,
        lock: LockFile,
        main: Listener,
        admin: Listener,
        console: Listener,
        virtlogd: Option<Listener>,
        metrics: Option<crate::serve::metrics::MetricsListener>,
    ) -> Running {
        crate::host::paths::install(PathPolicy::new(cfg.log_root.clone(), cfg.path_dirs()));
        let workers: Vec<Arbiter> = (0..cfg.workers).map(|_| Arbiter::new()).collect();
        let handles = workers.iter().map(Arbiter::handle).collect();
        let registry = Registry::start_global(cfg.rotate, handles);
        let (handoff, triggers) = Handoff::new();
        let roots: Vec<&Path> = std::iter::once(cfg.log_root.as_path())
            .chain(cfg.allowed_dirs.iter().map(PathBuf::as_path))
            .collect();
        let persisted = Arc::new(Persisted::load(cfg.consoles_file.clone(), &roots));
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
            persisted: persisted.clone(),
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
            persisted: persisted.clone(),
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
            persisted: persisted.clone(),
        });
        // Any local user may connect: its own, smaller budget, so that nobody can take the main
        // socket's clients away.
        let shared_console = Arc::new(Shared {
            endpoint: Endpoint::Console,
            registry: registry.clone(),
            limit: Arc::new(Semaphore::new(CONSOLE_CLIENTS)),
            peers: server::PeerSlots::new(cfg.max_clients_per_peer.min(CONSOLE_CLIENTS)),
            idle_timeout: cfg.client_idle_timeout,
            replies: shared_main.replies.clone(),
            daemon_uid: shared_main.daemon_uid,
            handoff: handoff.clone(),
            persisted: persisted.clone(),
        });
        Running {
            cfg,
            lock,
            main,
            admin,
            console,
            shared_console,
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
            declared: Declared::default(),
            persisted,
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
        let console = Listener {
            path: cfg.console_socket.clone(),
            owned: true,
            listener: Some(bind_console(&cfg.console_socket)?),
        };
        let d = Running::assemble(cfg, lock, main, admin, console, virtlogd, metrics);
        d.lock.write_pid();
        // Before the declared consoles and the accept loops: the pipes systemd kept through a
        // crash have their logs back before anyone can claim their paths.
        let recovered = crate::control::recover::recover(
            &d.registry,
            &d.cfg.socket,
            activated.stored,
            activated.consoles,
        )
        .await;
        crate::control::stored::start(&d.cfg.socket, d.cfg.fd_store, recovered);
        // Before the accept loops: the first client (and systemd's READY=1) finds the file's
        // consoles there, or their failures logged. Clients that connect meanwhile wait in the
        // backlog. A console that cannot be created does not stop the start.
        let mut d = d.with_declared(Occasion::Start).await;
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

    /// Makes the running consoles match the config file's `[[console]]` tables, then creates
    /// the persisted consoles (see [`crate::control::declared`]).
    pub(crate) async fn with_declared(mut self, occasion: Occasion) -> Running {
        self.declared
            .apply(
                occasion,
                &self.registry,
                &self.cfg.consoles,
                &self.persisted,
            )
            .await;
        self
    }

    pub(crate) fn start_accepting(&mut self) {
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
        let console = self
            .console
            .listener
            .take()
            .expect("the console listener is home");
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
            console: actix_rt::spawn(server::serve(
                console,
                self.shared_console.clone(),
                stop.clone(),
            )),
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
    pub(crate) async fn stop_accepting(&mut self) {
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
        if let Ok(l) = a.console.await {
            self.console.listener = Some(l);
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
        // Only with the fd store: an idle daemon without it runs no timer.
        let sampler = crate::control::stored::active()
            .then(|| actix_rt::spawn(sample_stored(self.registry.clone())));
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
        if self.console.owned {
            let _ = std::fs::remove_file(&self.console.path);
        }
        if let Some(v) = self.virtlogd.as_ref().filter(|v| v.owned) {
            let _ = std::fs::remove_file(&v.path);
        }
        if let Some(m) = &self.metrics {
            m.remove_socket_file();
        }
        if let Some(s) = sampler {
            s.abort();
        }
        let _ = self.registry.send(registry::Shutdown).await;
        // Drained: the stored pipes leave systemd's store, so their guests see them close.
        crate::control::stored::stop();
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
        if new.log_idle_close != old.log_idle_close {
            crate::datapath::sink::set_rest_after(new.log_idle_close.unwrap_or_default());
            applied.push("log_idle_close");
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
            ("console_socket", new.console_socket != old.console_socket),
            (
                "virtlogd_socket",
                new.virtlogd_socket != old.virtlogd_socket,
            ),
            ("log_root", new.log_root != old.log_root),
            ("workers", new.workers != old.workers),
            ("max_clients", new.max_clients != old.max_clients),
            ("metrics_listen", new.metrics_listen != old.metrics_listen),
            ("idle_exit", new.idle_exit != old.idle_exit),
            ("consoles_file", new.consoles_file != old.consoles_file),
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
            log_idle_close: new.log_idle_close,
            binary: new.binary,
            log_level: new.log_level,
            consoles: new.consoles,
            ..self.cfg.clone()
        };
        tracing::info!(
            changed = ?applied,
            max_size = { self.cfg.rotate.max_size },
            max_backups = { self.cfg.rotate.max_backups },
            "SIGHUP: configuration reloaded"
        );
        // After the path policy above: the consoles are checked under the one now in force.
        self.declared
            .apply(
                Occasion::Reload,
                &self.registry,
                &self.cfg.consoles,
                &self.persisted,
            )
            .await;
    }
}

/// Samples the counters of the stored pipes and consoles once a second, for the fd store's
/// record (see [`crate::control::stored`]): one registry snapshot, only while one is stored.
async fn sample_stored(registry: actix::Addr<Registry>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !crate::control::stored::any() {
            continue;
        }
        let Ok(snap) = registry.send(registry::Snapshot { only: None }).await else {
            continue;
        };
        crate::control::stored::sample(
            snap.domains
                .into_iter()
                .flat_map(|d| d.streams)
                .map(|s| (s.path, [s.bytes_in, s.bytes_written, s.dropped_disk])),
        );
    }
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
