//! systemd integration: readiness notification (`sd_notify`) and socket activation
//! (`LISTEN_FDS`). Both are plain protocols, implemented here without libsystemd.
//!
//! - Notify: when `NOTIFY_SOCKET` is set, logd sends `READY=1` once it serves, and
//!   `STOPPING=1` when it shuts down (for `Type=notify` units).
//! - Activation: when `LISTEN_PID` is this process and `LISTEN_FDS` > 0, the listening sockets
//!   come from systemd as fds 3, 4, …, named by `LISTEN_FDNAMES` (`main`, `admin`, and
//!   `virtlogd.socket`, the name of virtlogd's own socket unit, for the virtlogd socket). An
//!   unnamed fd is matched by the path it is bound to. logd then creates no socket of its own.
//!   Pipes logd kept in systemd's fd store (`logd-pipe-N`, [`crate::host::fdstore`]) come in
//!   the same variables, after the sockets, and are handed back as [`Activated::stored`].
#![allow(unsafe_code)] // one block: taking ownership of an fd systemd passed

use nix::sys::stat::SFlag;
use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};

/// The first fd systemd passes.
const LISTEN_FDS_START: RawFd = 3;
/// The most passed sockets logd takes: its three, and the admin socket of virtlogd's units,
/// with room. More is a unit's mistake: the others are closed.
const MAX_LISTEN_FDS: i32 = 8;
/// The most fds logd looks at in `LISTEN_FDS`: sockets and the pipes of the fd store
/// (`FileDescriptorStoreMax=` in the unit is 65536 too). Those past it are closed.
pub(crate) const MAX_PASSED_FDS: i32 = 65_536;

/// A notification that had to reach systemd and could not be sent.
#[derive(Debug, thiserror::Error)]
#[error("cannot send {state:?} to systemd's notify socket {socket}: {source}")]
pub(crate) struct NotifyError {
    state: String,
    socket: String,
    source: std::io::Error,
}

/// Sends one state string to the notify socket at `path` (a file, or `@name`: abstract).
fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    // Never wait for room: a notify queue that systemd does not drain must not hold the
    // daemon (the message is then lost, and the caller says so).
    sock.set_nonblocking(true)?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), Path::new(path))?;
    }
    Ok(())
}

/// Sends a state string to systemd's notify socket, if there is one. Errors are only logged:
/// a daemon must run the same without systemd.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!(cause = %e, state, "cannot notify systemd");
    }
}

/// Sends a state string, then waits (at most `timeout`) until systemd has processed it: a
/// `BARRIER=1` message carries a pipe's write end, which systemd closes once every earlier
/// message is handled. Used for `MAINPID=` before the old process of a re-exec exits, so
/// systemd never sees its main process die without knowing the new one. Returns whether the
/// barrier was passed (false without a notify socket, or when the message could not be sent,
/// which is logged).
pub fn notify_and_wait(state: &str, timeout: std::time::Duration) -> bool {
    notify_sent_and_wait(state, timeout).unwrap_or_else(|e| {
        tracing::warn!(cause = %e, "cannot notify systemd");
        false
    })
}

/// [`notify_and_wait`] for a message that must reach systemd: an error when there is a notify
/// socket and the message cannot be sent (the socket is gone, or its queue is full). A message
/// sent whose barrier is not confirmed in time is only logged: it is in systemd's queue, which
/// systemd reads before it handles what happens next (a process's exit among others).
pub(crate) fn notify_sent_and_wait(
    state: &str,
    timeout: std::time::Duration,
) -> Result<bool, NotifyError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    use std::os::fd::{AsFd, AsRawFd};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    send(&path, state).map_err(|source| NotifyError {
        state: state.to_owned(),
        socket: path.to_string_lossy().into_owned(),
        source,
    })?;
    let res = (|| -> std::io::Result<bool> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let sock = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => UnixAddr::new_abstract(name)?,
            None => UnixAddr::new(Path::new(&path))?,
        };
        sendmsg(
            sock.as_raw_fd(),
            &[std::io::IoSlice::new(b"BARRIER=1")],
            &[ControlMessage::ScmRights(&[w.as_raw_fd()])],
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            Some(&addr),
        )?;
        drop(w);
        let mut fds = [nix::poll::PollFd::new(
            r.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let t = nix::poll::PollTimeout::try_from(timeout).unwrap_or(nix::poll::PollTimeout::MAX);
        Ok(nix::poll::poll(&mut fds, t)? > 0)
    })();
    Ok(match res {
        Ok(passed) => {
            if !passed {
                tracing::warn!(state, "systemd did not confirm a notification in time");
            }
            passed
        }
        Err(e) => {
            tracing::warn!(cause = %e, state, "cannot wait for systemd to take a notification");
            false
        }
    })
}

/// Listening sockets passed by systemd, by role, and the pipes of its fd store.
#[derive(Default)]
pub struct Activated {
    pub main: Option<UnixListener>,
    pub admin: Option<UnixListener>,
    pub virtlogd: Option<UnixListener>,
    /// Pipes' read ends from the fd store, with the record id their name carries
    /// (`logd-pipe-N`), in the order passed.
    pub(crate) stored: Vec<(u64, OwnedFd)>,
    /// Consoles' sockets from the fd store (`logd-con-N-KIND`), in the order passed.
    pub(crate) consoles: Vec<(u64, crate::host::fdstore::ConsoleFd, OwnedFd)>,
}

/// Takes the sockets systemd passed, if it passed any to this process, and clears the
/// variables so children do not see them.
pub fn take_listeners(
    main_path: &Path,
    admin_path: &Path,
    virtlogd_path: Option<&Path>,
) -> Activated {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // Called before any other thread exists, so this races with nothing.
        std::env::remove_var(v);
    }
    let mut out = Activated::default();
    if !pid_ok || count <= 0 {
        return out;
    }
    let mut by_path: HashMap<PathBuf, &str> = [
        (main_path.to_owned(), "main"),
        (admin_path.to_owned(), "admin"),
    ]
    .into();
    if let Some(p) = virtlogd_path {
        by_path.insert(p.to_owned(), "virtlogd");
    }
    if count > MAX_PASSED_FDS {
        tracing::warn!(
            count,
            max = MAX_PASSED_FDS,
            "systemd passed more fds than logd takes; only the first are taken, the others closed"
        );
        close_passed(
            LISTEN_FDS_START + MAX_PASSED_FDS,
            LISTEN_FDS_START.saturating_add(count),
        );
    }
    // Sockets (and unknown fds) seen so far: past MAX_LISTEN_FDS they are closed.
    let mut sockets = 0;
    let mut too_many = 0u32;
    for i in 0..count.min(MAX_PASSED_FDS) {
        let fd = LISTEN_FDS_START + i;
        let name = names.get(i as usize).map(String::as_str);
        use crate::host::fdstore::StoredName;
        if let Some(stored) = name.and_then(crate::host::fdstore::parse_name) {
            match (adopt(fd), stored) {
                (Some(owned), StoredName::Pipe(id)) if is_type(&owned, SFlag::S_IFIFO) => {
                    out.stored.push((id, owned))
                }
                (Some(owned), StoredName::Console(id, kind))
                    if is_type(&owned, SFlag::S_IFSOCK) =>
                {
                    out.consoles.push((id, kind, owned))
                }
                (Some(_), _) => {
                    tracing::warn!(
                        fd,
                        name,
                        "a stored fd is not what its name says (a pipe, a socket); closed"
                    )
                }
                (None, _) => {
                    tracing::warn!(fd, name, "LISTEN_FDS names an fd that is not open; skipped")
                }
            }
            continue;
        }
        sockets += 1;
        if sockets > MAX_LISTEN_FDS {
            too_many += 1;
            drop(adopt(fd));
            continue;
        }
        let Some(owned) = adopt(fd) else {
            tracing::warn!(fd, "LISTEN_FDS names an fd that is not open; skipped");
            continue;
        };
        let l = UnixListener::from(owned);
        // Only a UNIX socket can be a listener: anything else (a pipe another logd stored
        // under a name this one does not know) is closed, never taken for a role by position.
        let addr = match l.local_addr() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(fd, name, cause = %e, "ignoring an fd from systemd that is not a UNIX socket; closed");
                continue;
            }
        };
        if let Err(e) = l.set_nonblocking(true) {
            tracing::warn!(fd, cause = %e, "ignoring an fd from systemd that is not a usable socket");
            continue;
        }
        let bound = addr.as_pathname().map(Path::to_owned);
        let role = match name {
            Some("main") => "main",
            Some("admin") => "admin",
            Some("virtlogd.socket" | "virtlogd") => "virtlogd",
            // virtlogd's admin socket: logd has no use for it (its admin socket is its own).
            Some("virtlogd-admin.socket") => {
                tracing::info!(fd, "ignoring virtlogd-admin.socket from systemd");
                continue;
            }
            _ => bound
                .as_ref()
                .and_then(|p| by_path.get(p).copied())
                .unwrap_or(if sockets == 1 { "main" } else { "admin" }),
        };
        tracing::info!(fd, role, path = ?bound, "socket from systemd");
        match role {
            "main" => out.main = Some(l),
            "virtlogd" => out.virtlogd = Some(l),
            _ => out.admin = Some(l),
        }
    }
    if too_many > 0 {
        tracing::warn!(
            closed = too_many,
            max = MAX_LISTEN_FDS,
            "systemd passed more sockets than logd uses; only the first are taken, the others closed"
        );
    }
    if !out.stored.is_empty() || !out.consoles.is_empty() {
        tracing::info!(
            pipes = out.stored.len(),
            console_sockets = out.consoles.len(),
            "fds from systemd's fd store"
        );
    }
    out
}

/// Whether `fd` is of file type `kind`: a stored `logd-pipe-N` must be a pipe (or FIFO), a
/// `logd-con-N-KIND` a socket.
fn is_type(fd: &OwnedFd, kind: SFlag) -> bool {
    nix::sys::stat::fstat(fd)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode & nix::libc::S_IFMT) == kind)
}

/// Owns an fd systemd passed to this process (None if it is not open), close-on-exec from now
/// on. Call once per number, before any other thread exists.
fn adopt(fd: RawFd) -> Option<OwnedFd> {
    if !crate::handover::state::fd_is_open(fd) {
        return None;
    }
    // SAFETY: the fd is open (checked just above) and systemd passed it to this process
    // (LISTEN_PID is ours, and the variables are cleared before any adoption, so nothing else
    // takes it). The callers visit each number once, so it is owned and closed exactly once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(owned)
}

/// Closes the passed fds numbered `from..to` that logd does not use: left open, they would
/// stay open for the daemon's life and pass, unnamed, to every re-exec's new process. Only the
/// numbers open now are visited (so a huge `LISTEN_FDS` costs nothing).
fn close_passed(from: RawFd, to: RawFd) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        tracing::warn!("cannot list /proc/self/fd; the extra fds from systemd stay open");
        return;
    };
    // Collected first: the directory's own fd is closed before any number is adopted.
    let open: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| (from..to).contains(fd))
        .collect();
    for fd in open {
        drop(adopt(fd));
    }
}
