//! The files of one log, one step at a time: how each is opened (never through a symlink, never
//! blocking on a FIFO) and checked to be a regular file with one link, and how the rotation's
//! renames and removals are done by name in the log's directory ([`LogDir`]).

use std::ffi::OsStr;
use std::fs::{self, File, FileType, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use nix::fcntl::{fcntl, openat, renameat, AtFlags, FcntlArg, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::names::{backup_name, fresh_name};
use super::RotateError;
use crate::datapath::logdir::LogDir;

/// Permissions of every file we create: logs of a VM's console may hold secrets.
const FILE_MODE: u32 = 0o600;

/// The renames of a rotation, in `dir`: the oldest backup (and any stale ones past it) goes,
/// the others move up one index, NAME becomes NAME.0 and `fresh` becomes NAME.
pub(super) fn shift_files(
    dir: &LogDir,
    name: &OsStr,
    fresh: &OsStr,
    n: u32,
) -> Result<(), RotateError> {
    remove_backups_from(dir, name, n.saturating_sub(1))?;
    if n > 0 {
        for i in (0..n - 1).rev() {
            rename_at(dir, &backup_name(name, i), &backup_name(name, i + 1))?;
        }
        rename_at(dir, name, &backup_name(name, 0))?;
    }
    // With no backups this atomically replaces (and so removes) the full file.
    renameat(dir.fd(), fresh, dir.fd(), name).map_err(|e| RotateError::Rename {
        from: dir.path().join(fresh),
        to: dir.path().join(name),
        source: e.into(),
    })
}

/// Removes PATH and PATH.0, PATH.1, … (every contiguous existing backup, and at least the indices
/// below `max_backups`). Files already missing are fine.
pub fn remove_all(path: &Path, max_backups: u32) -> Result<(), RotateError> {
    let dir = LogDir::open(path.parent().unwrap_or(Path::new("/"))).map_err(|source| {
        RotateError::Dir {
            path: path.to_owned(),
            source,
        }
    })?;
    remove_all_in(&dir, path.file_name().unwrap_or_default(), max_backups)
}

/// [`remove_all`] of the log `name` in `dir`.
pub(super) fn remove_all_in(
    dir: &LogDir,
    name: &OsStr,
    max_backups: u32,
) -> Result<(), RotateError> {
    remove_at(dir, name)?;
    remove_at(dir, &fresh_name(name))?;
    for i in 0..=u32::MAX {
        let existed = remove_at(dir, &backup_name(name, i))?;
        if !existed && i.saturating_add(1) >= max_backups {
            break;
        }
    }
    Ok(())
}

/// Removes NAME.from, NAME.from+1, … up to the first missing one.
fn remove_backups_from(dir: &LogDir, name: &OsStr, from: u32) -> Result<(), RotateError> {
    for i in from..=u32::MAX {
        if !remove_at(dir, &backup_name(name, i))? {
            break;
        }
    }
    Ok(())
}

/// Removes `name` from `dir`; returns whether it existed.
pub(super) fn remove_at(dir: &LogDir, name: &OsStr) -> Result<bool, RotateError> {
    match unlinkat(dir.fd(), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) => Ok(true),
        Err(nix::Error::ENOENT) => Ok(false),
        Err(e) => Err(RotateError::Remove {
            path: dir.path().join(name),
            source: e.into(),
        }),
    }
}

/// Renames `from` to `to` in `dir`. Backups may be missing (fewer rotations so far than
/// `max_backups`): that is not an error.
fn rename_at(dir: &LogDir, from: &OsStr, to: &OsStr) -> Result<(), RotateError> {
    match renameat(dir.fd(), from, dir.fd(), to) {
        Ok(()) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(RotateError::Rename {
            from: dir.path().join(from),
            to: dir.path().join(to),
            source: e.into(),
        }),
    }
}

/// What `name` in `dir` is (not following a symlink), or None if nothing has that name.
pub(super) fn stat_at(
    dir: &LogDir,
    name: &OsStr,
) -> Result<Option<nix::sys::stat::FileStat>, RotateError> {
    match fstatat(dir.fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(nix::Error::ENOENT) => Ok(None),
        Err(e) => Err(RotateError::Open {
            path: dir.path().join(name),
            source: e.into(),
        }),
    }
}

/// Flags for every open: never follow a symlink at the last component, never block on a FIFO,
/// never leak the descriptor into a child (std adds O_CLOEXEC too; it is spelled out for the reader).
pub(super) fn open_flags() -> i32 {
    (OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits()
}

/// Opens (creating mode 0600) the log file `name` in `dir` for appending, with read access so
/// that `open` can look at the tail of an existing file through the same descriptor. O_APPEND
/// keeps every write at the end whatever else writes to the file. With `create_new`, a
/// leftover of that name (from an interrupted rotation) is removed and the file is made anew.
///
/// Anything but a regular file with a single link is refused, and O_NONBLOCK is cleared.
pub(super) fn open_at(
    dir: &LogDir,
    name: &OsStr,
    create_new: bool,
) -> Result<(File, fs::Metadata), RotateError> {
    let path = || dir.path().join(name);
    let mut flags =
        OFlag::from_bits_retain(open_flags()) | OFlag::O_RDWR | OFlag::O_APPEND | OFlag::O_CREAT;
    if create_new {
        remove_at(dir, name)?;
        flags |= OFlag::O_EXCL;
    }
    let fd = match openat(dir.fd(), name, flags, Mode::from_bits_truncate(FILE_MODE)) {
        Ok(fd) => fd,
        Err(e) => {
            // O_NOFOLLOW fails with ELOOP, a directory with EISDIR: name what is there instead.
            if let Ok(st) = fstatat(dir.fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
                if kind != SFlag::S_IFREG {
                    return Err(RotateError::NotRegular {
                        path: path(),
                        kind: kind_of_mode(kind),
                    });
                }
            }
            return Err(RotateError::Open {
                path: path(),
                source: e.into(),
            });
        }
    };
    let (file, meta) = check_opened(File::from(fd), &path())?;
    if meta.nlink() > 1 {
        return Err(RotateError::HardLinked {
            path: path(),
            links: meta.nlink(),
        });
    }
    Ok((file, meta))
}

/// Opens `path` with `opts` (a reader's open), refuses anything but a regular file, and clears
/// O_NONBLOCK.
pub(super) fn open_checked(
    path: &Path,
    opts: &OpenOptions,
) -> Result<(File, fs::Metadata), RotateError> {
    let file = match opts.open(path) {
        Ok(file) => file,
        Err(source) => {
            // O_NOFOLLOW fails with ELOOP, a directory with EISDIR: name what is there instead.
            if let Ok(meta) = fs::symlink_metadata(path) {
                if !meta.file_type().is_file() {
                    return Err(RotateError::NotRegular {
                        path: path.to_path_buf(),
                        kind: kind_name(meta.file_type()),
                    });
                }
            }
            return Err(RotateError::Open {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    check_opened(file, path)
}

/// Refuses an opened file that is not a regular file, and clears O_NONBLOCK (set at open so a
/// FIFO cannot hang it).
fn check_opened(file: File, path: &Path) -> Result<(File, fs::Metadata), RotateError> {
    let meta = file.metadata().map_err(|source| RotateError::Stat {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(RotateError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_name(meta.file_type()),
        });
    }
    let set_flags_error = |e: nix::Error| RotateError::SetFlags {
        path: path.to_path_buf(),
        source: e.into(),
    };
    let flags = fcntl(&file, FcntlArg::F_GETFL).map_err(set_flags_error)?;
    let flags = OFlag::from_bits_retain(flags) - OFlag::O_NONBLOCK;
    fcntl(&file, FcntlArg::F_SETFL(flags)).map_err(set_flags_error)?;
    Ok((file, meta))
}

/// The name of a file type (`S_IFMT` bits) in an error.
fn kind_of_mode(kind: SFlag) -> &'static str {
    match kind {
        SFlag::S_IFLNK => "symbolic link",
        SFlag::S_IFDIR => "directory",
        SFlag::S_IFIFO => "FIFO",
        SFlag::S_IFSOCK => "socket",
        SFlag::S_IFCHR => "character device",
        SFlag::S_IFBLK => "block device",
        _ => "special file",
    }
}

fn kind_name(ft: FileType) -> &'static str {
    if ft.is_symlink() {
        "symbolic link"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// A file's creation time in nanoseconds since the epoch (statx btime), or 0 where the file
/// system does not report one. See [`Position::birth`].
pub(super) fn birth_of(meta: &fs::Metadata) -> u64 {
    meta.created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
