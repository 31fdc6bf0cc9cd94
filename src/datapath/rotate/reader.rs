//! Reads across a log's files, oldest to newest, by name and inode, without the writer: a reader
//! can run on any thread while the log rotates.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use logd_protocol::{Position, ReadFrom};

use super::files::{birth_of, open_checked, open_flags};
use super::names::backup_path;
use super::RotateError;

/// Upper bound on the backups `read_log` will look at, so a directory full of `PATH.N` files
/// cannot make one read open thousands of descriptors.
const MAX_SCANNED_BACKUPS: u32 = 1024;

/// How often `read_log` looks again for `PATH` when it is missing but `PATH.0` exists: a rotation
/// renames `PATH` away a moment before it renames the fresh file in.
const MISSING_ACTIVE_RETRIES: u32 = 8;

/// What a [`read_log`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    pub data: Vec<u8>,
    /// Just after the last byte returned: pass it back to continue.
    pub next: Position,
    /// The requested position was rotated away: `data` starts at the oldest byte still on disk,
    /// and whatever lay between is lost.
    pub gap: bool,
}

/// One file of a log, held open so that a rotation during the read cannot change what we see.
struct LogFile {
    file: File,
    path: PathBuf,
    inode: u64,
    birth: u64,
    len: u64,
}

/// Reads across files oldest→newest (highest contiguous existing backup index … PATH.0, then PATH).
///
/// - `Start`: from offset 0 of the oldest file.
/// - `Last(n)`: the last min(n, total) bytes.
/// - `Position(p)`: from `p.offset` in the file whose inode is `p.inode`, continuing into newer files.
///   An offset beyond that file's length is `BadPosition`. If no file has that inode (and birth):
///   - a birth time older than the oldest file's means the file was rotated away: the read starts
///     at the oldest file's start with `gap = true`. So does any position when the file system
///     gives no birth times, as nothing can be told then;
///   - otherwise (a newer birth, or none: the short form) the position was never one of the
///     log's files, or cannot be told from one: `UnknownPosition`, not the whole log.
///
/// Returns at most `max_len` bytes. `next` is the position just after the last byte returned; when a
/// file was read to its end it points at the start of the next newer file, if any, so that a reader
/// stays on the newest file it reached. If nothing was read, `next` is the start position.
/// If PATH does not exist at all the error is `NotFound`.
pub fn read_log(path: &Path, from: ReadFrom, max_len: usize) -> Result<ReadOutcome, RotateError> {
    let files = open_log_files(path)?;
    let (mut idx, mut offset, gap) = match from {
        ReadFrom::Start => (0, 0, false),
        ReadFrom::Last(n) => {
            let total: u64 = files.iter().map(|f| f.len).sum();
            let mut skip = total - n.min(total);
            let mut idx = 0;
            while idx + 1 < files.len() && skip >= files[idx].len {
                skip -= files[idx].len;
                idx += 1;
            }
            (idx, skip, false)
        }
        ReadFrom::Position(p) => match files.iter().position(|f| p.is_in(f.inode, f.birth)) {
            Some(idx) if p.offset > files[idx].len => {
                return Err(RotateError::BadPosition {
                    path: files[idx].path.clone(),
                    offset: p.offset,
                    len: files[idx].len,
                })
            }
            Some(idx) => (idx, p.offset, false),
            None if files[0].birth == 0 || (p.birth != 0 && p.birth < files[0].birth) => {
                (0, 0, true)
            }
            None => {
                return Err(RotateError::UnknownPosition {
                    path: path.to_path_buf(),
                    position: p,
                })
            }
        },
    };

    let available: u64 =
        files[idx].len - offset + files[idx + 1..].iter().map(|f| f.len).sum::<u64>();
    // Bounded by what is on disk, so a huge `max_len` allocates nothing extra.
    let want = available.min(u64::try_from(max_len).unwrap_or(u64::MAX)) as usize;
    let mut data = Vec::with_capacity(want);
    loop {
        let f = &files[idx];
        let n = (f.len - offset).min((want - data.len()) as u64) as usize;
        if n > 0 {
            let start = data.len();
            data.resize(start + n, 0);
            f.file
                .read_exact_at(&mut data[start..], offset)
                .map_err(|source| RotateError::Read {
                    path: f.path.clone(),
                    source,
                })?;
            offset += n as u64;
        }
        if offset < f.len || idx + 1 == files.len() {
            break;
        }
        idx += 1;
        offset = 0;
    }
    Ok(ReadOutcome {
        data,
        next: Position {
            inode: files[idx].inode,
            offset,
            birth: files[idx].birth,
        },
        gap,
    })
}

/// The end of a log nobody is writing: the inode of PATH and its size. A reader starting there
/// sees only what is written later.
pub fn end_position(path: &Path) -> Result<Position, RotateError> {
    let active = open_active_for_read(path)?;
    Ok(Position {
        inode: active.inode,
        offset: active.len,
        birth: active.birth,
    })
}

/// Opens PATH for reading. Between the two renames of a rotation PATH is briefly absent while
/// PATH.0 exists: look again a few times before calling the log missing.
fn open_active_for_read(path: &Path) -> Result<LogFile, RotateError> {
    let mut retries = 0;
    loop {
        if let Some(f) = open_for_read(path)? {
            return Ok(f);
        }
        let rotating = fs::symlink_metadata(backup_path(path, 0)).is_ok();
        if !rotating || retries == MISSING_ACTIVE_RETRIES {
            return Err(RotateError::NotFound {
                path: path.to_path_buf(),
            });
        }
        retries += 1;
        std::thread::yield_now();
    }
}

/// Opens the files of a log, newest first, and returns them oldest first.
///
/// Opening newest first makes a concurrent rotation visible: every file moves up one index, so the
/// next index opens a file already seen, which is skipped. What is returned is always a run of
/// consecutive files ending with the newest one seen.
fn open_log_files(path: &Path) -> Result<Vec<LogFile>, RotateError> {
    let active = open_active_for_read(path)?;
    let mut files = vec![active];
    for i in 0..MAX_SCANNED_BACKUPS {
        match open_for_read(&backup_path(path, i))? {
            None => break,
            Some(f) if files.iter().any(|seen| seen.inode == f.inode) => continue,
            Some(f) => files.push(f),
        }
    }
    files.reverse();
    Ok(files)
}

/// `None` when the file does not exist.
fn open_for_read(path: &Path) -> Result<Option<LogFile>, RotateError> {
    let mut opts = OpenOptions::new();
    opts.read(true).custom_flags(open_flags());
    match open_checked(path, &opts) {
        Ok((file, meta)) => Ok(Some(LogFile {
            file,
            path: path.to_path_buf(),
            inode: meta.ino(),
            birth: birth_of(&meta),
            len: meta.len(),
        })),
        Err(RotateError::Open { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
