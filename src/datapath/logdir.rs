//! A log's directory, held open for as long as the log is.
//!
//! A log's rotation, reopen and truncate create, rename and remove files by name inside this
//! handle (`openat`, `renameat`, `unlinkat`), never by full path: once a log is open, a rename
//! of its directory, or a symlink swapped in for it, cannot send its files anywhere else. The
//! log simply goes on in the directory it was opened in, wherever that now is.
//!
//! The handle is found by walking from the log's root one component at a time without
//! following symlinks ([`PathPolicy::open_dir`](crate::host::paths::PathPolicy::open_dir)), and is
//! shared by every log of one directory (interned by device and inode), so a host whose logs
//! share directories holds one descriptor per directory, not per log.
//!
//! A directory removed while its log is open ([`LogDir::is_removed`]) is made again by the
//! same walk when the log next needs it ([`LogDir::open`]).

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use nix::fcntl::OFlag;
use nix::sys::stat::{fstat, Mode};

/// Why a log's directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error(transparent)]
    Refused(#[from] crate::host::paths::PathError),
    #[error("cannot open directory {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An open directory of logs.
pub struct LogDir {
    fd: OwnedFd,
    /// Where it was when opened (for messages; the handle, not this, is what is used).
    path: PathBuf,
    key: (u64, u64),
}

/// The directories held open, by (device, inode).
type OpenDirs = HashMap<(u64, u64), Weak<LogDir>>;
static OPEN: Mutex<Option<OpenDirs>> = Mutex::new(None);

impl LogDir {
    /// The directory `path`, opened by the policy in force (from its root, no symlinks,
    /// missing directories made 0700), or directly where none is installed (unit tests and
    /// tools). An already open handle to the same directory is shared.
    pub fn open(path: &Path) -> Result<Arc<LogDir>, DirError> {
        let fd = match crate::host::paths::current() {
            Some(policy) => policy.open_dir(path)?,
            None => nix::fcntl::open(
                path,
                OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
                Mode::empty(),
            )
            .map_err(|e| DirError::Open {
                path: path.to_owned(),
                source: e.into(),
            })?,
        };
        let st = fstat(&fd).map_err(|e| DirError::Open {
            path: path.to_owned(),
            source: e.into(),
        })?;
        let key = (st.st_dev, st.st_ino);
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        let table = open.get_or_insert_with(HashMap::new);
        if let Some(dir) = table.get(&key).and_then(Weak::upgrade) {
            return Ok(dir);
        }
        let dir = Arc::new(LogDir {
            fd,
            path: path.to_owned(),
            key,
        });
        table.insert(key, Arc::downgrade(&dir));
        Ok(dir)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the directory has been removed (its link count is 0): nothing can be created
    /// in it any more.
    pub fn is_removed(&self) -> bool {
        fstat(&self.fd).is_ok_and(|st| st.st_nlink == 0)
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(table) = open.as_mut() {
            // A newer handle of the same directory may have taken the slot: leave it.
            if table.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
                table.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_handle_per_directory_and_it_goes_with_its_last_log() {
        let dir = tempfile::tempdir().unwrap();
        let a = LogDir::open(dir.path()).unwrap();
        let b = LogDir::open(dir.path()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let key = a.key;
        drop((a, b));
        let open = OPEN.lock().unwrap();
        assert!(!open.as_ref().unwrap().contains_key(&key));
    }

    #[test]
    fn a_removed_directory_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let d = LogDir::open(&sub).unwrap();
        assert!(!d.is_removed());
        std::fs::remove_dir(&sub).unwrap();
        assert!(d.is_removed());
    }
}
