//! What the daemon listens on and locks: the state directory, the `<socket>.lock` file that
//! names the serving process, and its UNIX listeners (bound here, or given by systemd or a
//! predecessor).

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;

use super::DaemonError;

pub(crate) fn create_dir(dir: &Path) -> Result<(), DaemonError> {
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
pub(crate) fn lock(socket: &Path) -> Result<Flock<std::fs::File>, DaemonError> {
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
pub(crate) fn bind(path: &Path) -> Result<UnixListener, DaemonError> {
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

/// Binds the console socket: [`bind`]'s checks, then mode 0666, since any local user may
/// attach (each console judges its callers by `SO_PEERCRED`). Its directory must let them
/// through (0711 or 0755), or only root and logd's own uid will reach it.
pub(crate) fn bind_console(path: &Path) -> Result<UnixListener, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let l = bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(|source| {
        DaemonError::Bind {
            path: path.to_owned(),
            source,
        }
    })?;
    if let Some(dir) = path.parent() {
        let reachable = std::fs::metadata(dir).map(|m| m.permissions().mode() & 0o001 != 0);
        if !matches!(reachable, Ok(true)) {
            tracing::warn!(
                console_socket = %path.display(),
                dir = %dir.display(),
                "other users cannot reach the console socket: its directory is not searchable \
                 by others (mode o+x); only root and logd's own uid can attach"
            );
        }
    }
    Ok(l)
}

/// A listener from systemd, or one logd binds itself. Returns it and whether logd owns the
/// socket file (and so removes it at exit).
pub(crate) fn take_or_bind(
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
pub(crate) enum LockFile {
    Fresh(Flock<std::fs::File>),
    Carried(std::fs::File),
}

impl LockFile {
    pub(crate) fn file(&self) -> &std::fs::File {
        match self {
            LockFile::Fresh(f) => f,
            LockFile::Carried(f) => f,
        }
    }

    /// Writes the serving process's pid into the lock file (it changes at each re-exec).
    pub(crate) fn write_pid(&self) {
        self.write_pid_of(std::process::id());
    }

    /// Writes `pid` into the lock file: the old process names its successor before it says go,
    /// so the file never names a process that has exited.
    pub(crate) fn write_pid_of(&self, pid: u32) {
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
pub(crate) struct Listener {
    pub(crate) path: PathBuf,
    /// Whether logd created the socket file (and removes it at exit).
    pub(crate) owned: bool,
    /// None while its accept loop has it.
    pub(crate) listener: Option<UnixListener>,
}
