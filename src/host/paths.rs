//! The path policy: which log paths a client may name, and how they map to files.
//!
//! A relative path resolves under `log_root`; an absolute one must lie under `log_root` or an
//! `allowed_dirs` entry. Any `..` component, a NUL byte, or a symlink anywhere below the root is
//! refused with an error naming the path. Missing directories below the root are created
//! (mode 0700). The configured roots themselves are trusted as they are.
//!
//! Lexical checks ([`PathPolicy::resolve`]) cost nothing and run first; file-system checks
//! ([`PathPolicy::check_fs`]) run where blocking is allowed.

use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

use logd_protocol::MAX_PATH_LEN;

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("empty path")]
    Empty,
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
    #[error("path {0:?} contains a `..` component")]
    DotDot(String),
    #[error("path {0:?} names a directory, not a file")]
    NotAFile(String),
    #[error("path {path} lies outside the log root {root} and the allowed directories")]
    Outside { path: PathBuf, root: PathBuf },
    #[error("path {path} goes through a symlink at {at}")]
    Symlink { path: PathBuf, at: PathBuf },
    #[error("path {path}: {at} is not a directory")]
    NotDirectory { path: PathBuf, at: PathBuf },
    #[error("cannot create directory {at} for {path}: {source}")]
    CreateDir {
        path: PathBuf,
        at: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot inspect {at} for {path}: {source}")]
    Stat {
        path: PathBuf,
        at: PathBuf,
        source: std::io::Error,
    },
}

/// Lexically normalizes an absolute path: drops `.` components; `..` pops one component.
/// Returns None if `..` would climb above `/`.
pub fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => out.push(c.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() || out.as_os_str().is_empty() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Some(out)
}

/// The policy in force: set at start-up and by SIGHUP, read by every path check and by a log
/// that must find its directory again.
static CURRENT: RwLock<Option<Arc<PathPolicy>>> = RwLock::new(None);

/// Puts `policy` in force.
pub fn install(policy: PathPolicy) {
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(policy));
}

/// The policy in force (None before start-up installs one, as in unit tests).
pub fn current() -> Option<Arc<PathPolicy>> {
    CURRENT.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The roots a log may live under.
#[derive(Debug, Clone)]
pub struct PathPolicy {
    root: PathBuf,
    allowed: Vec<PathBuf>,
}

impl PathPolicy {
    /// `root` and `allowed` must be absolute and normalized (the config does that).
    pub fn new(root: PathBuf, allowed: Vec<PathBuf>) -> Self {
        PathPolicy { root, allowed }
    }

    /// Maps a client's path to an absolute file path, without touching the file system.
    pub fn resolve(&self, raw: &str) -> Result<PathBuf, PathError> {
        if raw.is_empty() {
            return Err(PathError::Empty);
        }
        if raw.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        if raw.contains('\0') {
            return Err(PathError::Nul(raw.to_owned()));
        }
        if raw.ends_with('/') {
            return Err(PathError::NotAFile(raw.to_owned()));
        }
        let p = Path::new(raw);
        if p.components().any(|c| c == Component::ParentDir) {
            return Err(PathError::DotDot(raw.to_owned()));
        }
        let joined = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        };
        let path = normalize(&joined).ok_or_else(|| PathError::DotDot(raw.to_owned()))?;
        if self.base_of(&path).is_none() {
            return Err(PathError::Outside {
                path,
                root: self.root.clone(),
            });
        }
        if path.file_name().is_none() {
            return Err(PathError::NotAFile(raw.to_owned()));
        }
        Ok(path)
    }

    /// The root (log root or allowed dir) that `path` lies strictly below.
    fn base_of(&self, path: &Path) -> Option<&Path> {
        std::iter::once(&self.root)
            .chain(self.allowed.iter())
            .map(PathBuf::as_path)
            .filter(|r| path.starts_with(r) && path != *r)
            .max_by_key(|r| r.components().count())
    }

    /// Opens directory `dir` (a root, or below one) from its root one component at a time,
    /// never following a symlink (`O_NOFOLLOW` at each step), creating missing directories
    /// (mode 0700). A rename or a symlink swapped in along the way cannot redirect it: each
    /// step opens a name inside the directory the previous step holds.
    pub fn open_dir(&self, dir: &Path) -> Result<OwnedFd, PathError> {
        let base = std::iter::once(&self.root)
            .chain(self.allowed.iter())
            .map(PathBuf::as_path)
            .filter(|r| dir.starts_with(r))
            .max_by_key(|r| r.components().count())
            .ok_or_else(|| PathError::Outside {
                path: dir.to_owned(),
                root: self.root.clone(),
            })?;
        let flags = OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
        let stat_error = |at: &Path, e: nix::Error| PathError::Stat {
            path: dir.to_owned(),
            at: at.to_owned(),
            source: e.into(),
        };
        // The root itself is trusted as configured (it may be a symlink).
        let mut fd =
            nix::fcntl::open(base, flags, Mode::empty()).map_err(|e| stat_error(base, e))?;
        let mut at = base.to_path_buf();
        for c in dir
            .strip_prefix(base)
            .expect("base is a prefix")
            .components()
        {
            at.push(c);
            let name = c.as_os_str();
            let step = |fd: &OwnedFd| openat(fd, name, flags | OFlag::O_NOFOLLOW, Mode::empty());
            let next = match step(&fd) {
                Err(nix::Error::ENOENT) => {
                    match nix::sys::stat::mkdirat(&fd, name, Mode::from_bits_truncate(0o700)) {
                        Ok(()) | Err(nix::Error::EEXIST) => step(&fd),
                        Err(e) => {
                            return Err(PathError::CreateDir {
                                path: dir.to_owned(),
                                at,
                                source: e.into(),
                            })
                        }
                    }
                }
                other => other,
            };
            fd = match next {
                Ok(next) => next,
                Err(nix::Error::ELOOP) => {
                    return Err(PathError::Symlink {
                        path: dir.to_owned(),
                        at,
                    })
                }
                Err(nix::Error::ENOTDIR) => {
                    return Err(PathError::NotDirectory {
                        path: dir.to_owned(),
                        at,
                    })
                }
                Err(e) => return Err(stat_error(&at, e)),
            };
        }
        Ok(fd)
    }

    /// Checks every component below the root: no symlinks, directories where directories are
    /// expected. With `create_dirs`, missing directories are created (mode 0700).
    pub fn check_fs(&self, path: &Path, create_dirs: bool) -> Result<(), PathError> {
        let base = self.base_of(path).ok_or_else(|| PathError::Outside {
            path: path.to_owned(),
            root: self.root.clone(),
        })?;
        let rel = path.strip_prefix(base).expect("base_of checked the prefix");
        let mut at = base.to_path_buf();
        let count = rel.components().count();
        for (i, c) in rel.components().enumerate() {
            at.push(c);
            let last = i + 1 == count;
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(PathError::Symlink {
                        path: path.to_owned(),
                        at,
                    })
                }
                Ok(m) if last && m.is_dir() => {
                    return Err(PathError::NotAFile(path.display().to_string()))
                }
                Ok(m) if !last && !m.is_dir() => {
                    return Err(PathError::NotDirectory {
                        path: path.to_owned(),
                        at,
                    })
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    if last {
                        return Ok(());
                    }
                    if !create_dirs {
                        // Nothing further down can exist either.
                        return Ok(());
                    }
                    match std::fs::DirBuilder::new().mode(0o700).create(&at) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                        Err(source) => {
                            return Err(PathError::CreateDir {
                                path: path.to_owned(),
                                at,
                                source,
                            })
                        }
                    }
                }
                Err(source) => {
                    return Err(PathError::Stat {
                        path: path.to_owned(),
                        at,
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PathPolicy {
        PathPolicy::new("/logs".into(), vec!["/srv/vm".into()])
    }

    #[test]
    fn relative_paths_resolve_under_the_root() {
        assert_eq!(
            policy().resolve("vm1/console.log").unwrap(),
            PathBuf::from("/logs/vm1/console.log")
        );
        assert_eq!(
            policy().resolve("./a.log").unwrap(),
            PathBuf::from("/logs/a.log")
        );
    }

    #[test]
    fn absolute_paths_must_lie_under_a_root() {
        assert!(policy().resolve("/logs/x.log").is_ok());
        assert!(policy().resolve("/srv/vm/x.log").is_ok());
        assert!(matches!(
            policy().resolve("/etc/passwd"),
            Err(PathError::Outside { .. })
        ));
        assert!(matches!(
            policy().resolve("/logsx/a"),
            Err(PathError::Outside { .. })
        ));
        assert!(matches!(
            policy().resolve("/logs"),
            Err(PathError::Outside { .. })
        ));
    }

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [
            "",
            "../etc/passwd",
            "a/../../b",
            "/logs/../etc/x",
            "a\0b",
            "dir/",
        ] {
            assert!(policy().resolve(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(policy().resolve(&"a".repeat(5000)).is_err());
    }

    #[test]
    fn symlinks_below_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink("/tmp", root.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("file")).unwrap();
        let p = PathPolicy::new(root.clone(), vec![]);
        let e = p.check_fs(&root.join("link/x.log"), true).unwrap_err();
        assert!(matches!(e, PathError::Symlink { .. }), "{e}");
        let e = p.check_fs(&root.join("file"), true).unwrap_err();
        assert!(matches!(e, PathError::Symlink { .. }), "{e}");
        p.check_fs(&root.join("a/b/c.log"), true).unwrap();
        assert!(root.join("a/b").is_dir());
    }
}
