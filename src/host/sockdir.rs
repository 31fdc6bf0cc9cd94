//! The directories that hold logd's sockets and lock file: created mode 0700 when missing, and
//! trusted only when no other user can have put a file in them, as tmux and ssh-agent check
//! theirs.
//!
//! A non-root user's default directory is `/tmp/logd-$UID` when `XDG_RUNTIME_DIR` is unset.
//! Anyone can create that name first, and plant a symlink for the lock file or a socket of
//! their own in it. So the daemon checks the directory of every socket it binds (main, admin,
//! metrics) before it opens anything there, and `logdctl` checks it before it starts a daemon
//! in it. Files there are opened with `O_NOFOLLOW` ([`open_nofollow`]).
//!
//! Two rules ([`Rule`]):
//! - **Private**, for the directory logd picks by itself for a non-root user: owned by the
//!   user, no group or other permission bits at all (0700).
//! - **Shared**, for a configured directory or root's `/run/logd`: owned by the user or by
//!   root, and writable by nobody else (no group or other write bit). `/run/libvirt` (root,
//!   0755) passes; `/tmp` (1777) does not.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a socket directory is not used.
#[derive(Debug, thiserror::Error)]
pub enum SockDirError {
    #[error("cannot create socket directory {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot check socket directory {path}: {source}")]
    Stat {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "refusing socket directory {path}: it is not a directory but a {kind} (owned by uid \
         {owner}, mode {mode:04o})"
    )]
    NotADirectory {
        path: PathBuf,
        kind: &'static str,
        owner: u32,
        mode: u32,
    },
    #[error(
        "refusing socket directory {path}: it is owned by uid {owner}, not by uid {uid} (mode \
         {mode:04o}); another user may have created it. Remove it, or use another directory \
         (XDG_RUNTIME_DIR, --socket)"
    )]
    Owner {
        path: PathBuf,
        owner: u32,
        uid: u32,
        mode: u32,
    },
    #[error(
        "refusing socket directory {path}: mode {mode:04o} (owned by uid {owner}) lets other \
         users in; it must be {want}"
    )]
    Mode {
        path: PathBuf,
        owner: u32,
        mode: u32,
        want: &'static str,
    },
    #[error("cannot open {path}: it is a symlink, which logd does not follow here")]
    Symlink { path: PathBuf },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open {path}: it is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("another process is already listening on {path} (or it cannot be probed)")]
    InUse { path: PathBuf },
    #[error("cannot listen on {path}: {why}")]
    InTheWay { path: PathBuf, why: &'static str },
    #[error("cannot listen on {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How strictly a directory is checked (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Owned by the user, mode 0700 (no group or other bit).
    Private,
    /// Owned by the user or root, no group or other write bit.
    Shared,
}

impl Rule {
    /// The rule for the directory of `socket`: private for the directory logd picks by itself
    /// for a non-root user ([`crate::host::config::runtime_dir`]), shared for any other.
    pub fn for_socket(socket: &Path) -> Rule {
        let private = !crate::host::config::is_root()
            && socket.parent() == Some(crate::host::config::runtime_dir().as_path());
        if private {
            Rule::Private
        } else {
            Rule::Shared
        }
    }
}

/// Creates `dir` (and its missing parents) mode 0700 if it is missing, then checks it by
/// `rule`. The check runs after the creation, so a directory someone else made in between is
/// refused too.
pub fn ensure(dir: &Path, rule: Rule) -> Result<(), SockDirError> {
    ensure_mode(dir, rule, 0o700)
}

/// [`ensure`], creating a missing directory with `mode` instead (before the umask). The virtlogd
/// socket's directory is libvirt's (`/run/libvirt`), where libvirtd puts more and its QEMUs
/// look: it is created 0755, as libvirt creates it.
pub fn ensure_mode(dir: &Path, rule: Rule, mode: u32) -> Result<(), SockDirError> {
    match std::fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(|source| SockDirError::Create {
                path: dir.to_owned(),
                source,
            })?,
        Err(source) => {
            return Err(SockDirError::Stat {
                path: dir.to_owned(),
                source,
            })
        }
    }
    check(dir, rule)
}

/// Checks an existing directory by `rule` (without following a symlink in its place).
pub fn check(dir: &Path, rule: Rule) -> Result<(), SockDirError> {
    let m = std::fs::symlink_metadata(dir).map_err(|source| SockDirError::Stat {
        path: dir.to_owned(),
        source,
    })?;
    let (owner, mode) = (m.uid(), m.mode() & 0o7777);
    let path = dir.to_owned();
    if !m.is_dir() {
        let kind = if m.file_type().is_symlink() {
            "symlink"
        } else {
            "file"
        };
        return Err(SockDirError::NotADirectory {
            path,
            kind,
            owner,
            mode,
        });
    }
    let uid = nix::unistd::geteuid().as_raw();
    let owner_ok = owner == uid || (rule == Rule::Shared && owner == 0);
    if !owner_ok {
        return Err(SockDirError::Owner {
            path,
            owner,
            uid,
            mode,
        });
    }
    let (bad, want) = match rule {
        Rule::Private => (mode & 0o077, "0700 (no group or other permission)"),
        Rule::Shared => (mode & 0o022, "writable only by its owner"),
    };
    if bad != 0 {
        return Err(SockDirError::Mode {
            path,
            owner,
            mode,
            want,
        });
    }
    Ok(())
}

/// Opens (creating it mode 0600 if missing) a regular file in a socket directory for writing,
/// never through a symlink. `append` opens it for appending.
pub fn open_nofollow(path: &Path, append: bool) -> Result<std::fs::File, SockDirError> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(false);
    }
    let f = o.open(path).map_err(|source| {
        if source.raw_os_error() == Some(nix::libc::ELOOP) {
            SockDirError::Symlink {
                path: path.to_owned(),
            }
        } else {
            SockDirError::Open {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    // A FIFO or a device in its place would block or do worse.
    match f.metadata() {
        Ok(m) if m.is_file() => Ok(f),
        Ok(_) => Err(SockDirError::NotAFile {
            path: path.to_owned(),
        }),
        Err(source) => Err(SockDirError::Open {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Binds a UNIX socket mode 0600 at `path` (in a directory already checked), replacing a stale
/// socket file but never a live one, and refusing a symlink or any other file in its place.
///
/// A socket file is stale only when a connection to it is refused (`ECONNREFUSED`: nobody
/// listens). Any other answer leaves it alone: a connection that succeeds or would wait
/// (`EAGAIN`, a listener with a full backlog) has a live owner, and one logd may not make
/// (`EACCES`) is not logd's to replace.
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener, SockDirError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Err(e) if e.raw_os_error() == Some(nix::libc::ECONNREFUSED) => {
                    let _ = std::fs::remove_file(path);
                }
                // Gone in between: nothing to replace.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                _ => {
                    return Err(SockDirError::InUse {
                        path: path.to_owned(),
                    })
                }
            }
        }
        Ok(m) => {
            return Err(SockDirError::InTheWay {
                path: path.to_owned(),
                why: if m.file_type().is_symlink() {
                    "a symlink is in the way (logd does not follow it)"
                } else {
                    "a file that is not a socket is in the way"
                },
            })
        }
        Err(_) => {}
    }
    // Bind under a umask so the socket is never reachable by others, not even briefly.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let res = std::os::unix::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let l = res.map_err(|source| SockDirError::Bind {
        path: path.to_owned(),
        source,
    })?;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    Ok(l)
}

/// Removes a socket file logd bound, at exit or when its console goes: only a socket, never a
/// symlink or another file put there since (`symlink_metadata`, which does not follow it).
pub(crate) fn remove_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), cause = %e, "cannot remove a socket file");
            }
        }
        Ok(_) => tracing::warn!(
            path = %path.display(),
            "not removed: no longer a socket (something else was put there)"
        ),
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn missing_directories_are_created_0700() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        ensure(&d, Rule::Private).unwrap();
        let m = std::fs::metadata(&d).unwrap();
        assert_eq!(m.mode() & 0o777, 0o700);
        // The virtlogd socket's directory, libvirt's, is made as libvirt makes it.
        let lv = t.path().join("run/libvirt");
        ensure_mode(&lv, Rule::Shared, 0o755).unwrap();
        let m = std::fs::metadata(&lv).unwrap();
        assert_eq!(m.mode() & 0o777, 0o755);
    }

    #[test]
    fn open_modes_are_refused_by_rule() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("s");
        std::fs::create_dir(&d).unwrap();
        chmod(&d, 0o755);
        let e = check(&d, Rule::Private).unwrap_err().to_string();
        assert!(
            e.contains("mode 0755") && e.contains(&d.display().to_string()),
            "{e}"
        );
        check(&d, Rule::Shared).unwrap();
        chmod(&d, 0o1777);
        let e = check(&d, Rule::Shared).unwrap_err().to_string();
        assert!(e.contains("mode 1777"), "{e}");
        chmod(&d, 0o700);
        check(&d, Rule::Private).unwrap();
    }

    #[test]
    fn a_symlink_is_not_a_directory_and_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        std::fs::create_dir(&real).unwrap();
        chmod(&real, 0o700);
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = check(&link, Rule::Shared).unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let lock = real.join("x.lock");
        std::os::unix::fs::symlink(&victim, &lock).unwrap();
        let e = open_nofollow(&lock, false).unwrap_err();
        assert!(matches!(e, SockDirError::Symlink { .. }), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn bind_replaces_only_a_socket_nobody_listens_on() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s.sock");
        // Stale: bound, then its listener closed (as after a SIGKILL).
        drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
        let l = bind(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().mode() & 0o777,
            0o600,
            "made mode 0600"
        );
        // Live: refused, and left to its owner.
        let e = bind(&p).unwrap_err();
        assert!(matches!(e, SockDirError::InUse { .. }), "{e}");
        std::os::unix::net::UnixStream::connect(&p).unwrap();
        drop(l);
        // A symlink to a stale socket is not followed, and the socket stays.
        let target = t.path().join("target.sock");
        drop(std::os::unix::net::UnixListener::bind(&target).unwrap());
        let link = t.path().join("link.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = bind(&link).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(target.exists());
        // remove_socket takes a socket, never a symlink or a file.
        remove_socket(&link);
        assert!(std::fs::symlink_metadata(&link).is_ok());
        let file = t.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        remove_socket(&file);
        assert!(file.exists());
        remove_socket(&target);
        assert!(!target.exists());
    }
}
