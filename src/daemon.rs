//! Start-up and shutdown: the wiring of the actors, the socket and the signals.
//!
//! Threads: the main thread runs the actix System arbiter (the registry, the accept loop and the
//! connections); `workers` arbiters (one per core by default) run the domain actors, spread
//! round-robin. SIGTERM or SIGINT stops accepting, has every domain drain its pipes into its
//! files, and exits 0.

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_rt::{Arbiter, System};
use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::paths::PathPolicy;
use crate::registry::{self, Registry};
use crate::server::{self, Endpoint, Shared};

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
    Metrics(#[from] crate::metrics::MetricsError),
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

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(cfg: Config) -> Result<(), DaemonError> {
    // Before any thread starts: this reads and clears LISTEN_* from the environment.
    let activated = crate::systemd::take_listeners(&cfg.socket, &cfg.admin_socket);
    let nofile = raise_fd_limit();
    tracing::debug!(nofile, "open-file limit");
    create_dir(&cfg.log_root)?;
    if let Some(dir) = cfg.socket.parent() {
        create_dir(dir)?;
    }
    let sys = System::new();
    sys.block_on(main_loop(cfg, activated))
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
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| DaemonError::Bind {
            path: path.clone(),
            source,
        })?;
    Flock::lock(f, FlockArg::LockExclusiveNonblock)
        .map_err(|_| DaemonError::AlreadyRunning(socket.to_owned()))
}

/// Binds the main socket with mode 0600, replacing a stale socket file but never a live one.
fn bind(path: &Path) -> Result<UnixListener, DaemonError> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(DaemonError::AlreadyRunning(path.to_owned()));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => {
            return Err(DaemonError::Bind {
                path: path.to_owned(),
                source: std::io::Error::new(
                    ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way",
                ),
            })
        }
        Err(_) => {}
    }
    // Bind under a umask so the socket is never reachable by others, not even briefly.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let res = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let l = res.map_err(|source| DaemonError::Bind {
        path: path.to_owned(),
        source,
    })?;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    Ok(l)
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

async fn main_loop(cfg: Config, activated: crate::systemd::Activated) -> Result<(), DaemonError> {
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    // A vanished client must be an EPIPE error, never a fatal signal.
    let _ = signal(SignalKind::pipe()).map_err(DaemonError::Signals)?;

    let _lock = lock(&cfg.socket)?;
    let (listener, own_main) = take_or_bind(activated.main, &cfg.socket)?;
    let (admin_listener, own_admin) = take_or_bind(activated.admin, &cfg.admin_socket)?;
    let metrics_listener = cfg
        .metrics_listen
        .as_deref()
        .map(crate::metrics::bind)
        .transpose()?;
    let workers: Vec<Arbiter> = (0..cfg.workers).map(|_| Arbiter::new()).collect();
    let handles = workers.iter().map(Arbiter::handle).collect();
    let registry = Registry::start_global(cfg.rotate, handles);
    let limit = Arc::new(Semaphore::new(cfg.max_clients));
    let shared = Shared {
        endpoint: Endpoint::Main,
        registry: registry.clone(),
        policy: PathPolicy::new(cfg.log_root.clone(), cfg.allowed_dirs.clone()),
        limit: limit.clone(),
        daemon_uid: nix::unistd::geteuid().as_raw(),
    };
    let admin = Shared {
        endpoint: Endpoint::Admin,
        registry: registry.clone(),
        policy: shared.policy.clone(),
        limit: Arc::new(Semaphore::new(ADMIN_CLIENTS)),
        daemon_uid: shared.daemon_uid,
    };
    let stop = CancellationToken::new();
    let accept = actix_rt::spawn(server::serve(listener, Arc::new(shared), stop.clone()));
    let accept_admin =
        actix_rt::spawn(server::serve(admin_listener, Arc::new(admin), stop.clone()));
    if let Some(l) = metrics_listener {
        tracing::info!(addr = ?l.local_addr().ok(), "serving Prometheus metrics at /metrics");
        actix_rt::spawn(crate::metrics::serve(l, registry.clone(), stop.clone()));
    }
    tracing::info!(
        socket = %cfg.socket.display(),
        admin_socket = %cfg.admin_socket.display(),
        log_root = %cfg.log_root.display(),
        max_size = cfg.rotate.max_size,
        max_backups = cfg.rotate.max_backups,
        workers = cfg.workers,
        "logd {} ready",
        env!("CARGO_PKG_VERSION")
    );

    crate::systemd::notify(&format!(
        "READY=1\nMAINPID={}\nSTATUS=serving",
        std::process::id()
    ));
    let idle = idle_watch(cfg.idle_exit, registry.clone(), limit, cfg.max_clients);
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = idle => "idle",
    };
    tracing::info!(reason = which, "shutting down");
    crate::systemd::notify("STOPPING=1");
    stop.cancel();
    let _ = accept.await;
    let _ = accept_admin.await;
    // Sockets from systemd belong to systemd; it keeps them for the next start.
    if own_main {
        let _ = std::fs::remove_file(&cfg.socket);
    }
    if own_admin {
        let _ = std::fs::remove_file(&cfg.admin_socket);
    }
    let _ = registry.send(registry::Shutdown).await;
    for w in workers {
        w.stop();
        let _ = w.join();
    }
    tracing::info!("every log drained; bye");
    Ok(())
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
