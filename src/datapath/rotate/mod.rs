//! The size-capped rotating log file.
//!
//! A domain actor owns one [`RotatingFile`] per log stream and calls [`RotatingFile::write`] on the hot
//! path, synchronously, from its own thread: a chunk read from the pipe goes straight to disk without a
//! mailbox hop. Readers (admin and subscriber requests) call [`read_log`], which needs no access to the
//! writer: it finds the files by name and identifies them by inode, so it can run on any thread.
//!
//! Layout: the active file is `PATH`; backups are `PATH.0` (newest) … `PATH.{N-1}` (oldest), with
//! N = `max_backups`. Reading the backups oldest→newest and then the active file always gives exactly
//! the suffix of everything written: the cap drops history from the old end, never from the middle,
//! and never wipes it all at once (the conmon-rs lesson).
//!
//! Files are cut near `max_size`, preferably just after a newline found in the last
//! [`NEWLINE_WINDOW`] bytes before the cap, so that lines are rarely split across two files.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, FileType, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use logd_protocol::{Position, ReadFrom};
use nix::fcntl::{fcntl, openat, renameat, AtFlags, FcntlArg, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::datapath::logdir::LogDir;

/// The most backups a log keeps. A rotation renames each of them, so this bounds its cost.
pub const MAX_BACKUPS: u32 = 32;

/// How far before `max_size` a newline may lie and still be chosen as the cut point.
pub const NEWLINE_WINDOW: u64 = 80;

/// Permissions of every file we create: logs of a VM's console may hold secrets.
const FILE_MODE: u32 = 0o600;

/// Upper bound on the backups `read_log` will look at, so a directory full of `PATH.N` files
/// cannot make one read open thousands of descriptors.
const MAX_SCANNED_BACKUPS: u32 = 1024;

/// How often `read_log` looks again for `PATH` when it is missing but `PATH.0` exists: a rotation
/// renames `PATH` away a moment before it renames the fresh file in.
const MISSING_ACTIVE_RETRIES: u32 = 8;

/// Size cap and backup count of one log.
///
/// Packed to 12 bytes (4-byte aligned), so it shares its last word with the file descriptor in
/// [`RotatingFile`]: every stream holds one, and a stream of 128 bytes or less fits a smaller
/// allocation class than one of 136. Read its fields by value (no references into it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed(4))]
pub struct RotateConfig {
    /// Largest size of one file, in bytes (at least 1).
    pub max_size: u64,
    /// How many rotated files are kept besides the active one.
    pub max_backups: u32,
}

impl Default for RotateConfig {
    fn default() -> Self {
        Self {
            max_size: 2 * 1024 * 1024,
            max_backups: 3,
        }
    }
}

/// Every step of opening, writing, rotating or reading a log that can fail.
/// Messages name the file, so they can be logged as they are.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("invalid rotation config for {path}: max_size must be at least 1")]
    ZeroMaxSize { path: PathBuf },
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot stat {path}: {source}")]
    Stat { path: PathBuf, source: io::Error },
    #[error("refusing {path}: it is a {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("cannot clear O_NONBLOCK on {path}: {source}")]
    SetFlags { path: PathBuf, source: io::Error },
    #[error("cannot write to {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot rename {from} to {to}: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("cannot remove {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("log {path} does not exist")]
    NotFound { path: PathBuf },
    #[error("position {offset} is beyond the end of {path} ({len} bytes)")]
    BadPosition {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
    #[error("log {path} is closed after an earlier failure and must be reopened")]
    Closed { path: PathBuf },
    #[error("log {path}: {source}")]
    Dir {
        path: PathBuf,
        source: crate::datapath::logdir::DirError,
    },
    #[error(
        "refusing {path}: its rotation needs the name {longest:?} ({len} bytes), longer than the \
         file system's limit of {limit} bytes"
    )]
    NameTooLong {
        path: PathBuf,
        longest: String,
        len: usize,
        limit: usize,
    },
    #[error(
        "refusing {path}: the file has {links} hard links, and a log must be the only name of \
         its file (another link is another log's file, or any file)"
    )]
    HardLinked { path: PathBuf, links: u64 },
}

impl RotateError {
    /// Whether the path itself is refused (the client named something logd will not use), as
    /// opposed to a failure of the disk.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            RotateError::NotRegular { .. }
                | RotateError::NameTooLong { .. }
                | RotateError::HardLinked { .. }
                | RotateError::Dir {
                    source: crate::datapath::logdir::DirError::Refused(_),
                    ..
                }
        )
    }
}

/// A write that stopped part-way. `written` bytes of the data reached a file (possibly one rotated
/// since); the caller counts the rest as dropped.
#[derive(Debug)]
pub struct WriteFailure {
    pub written: usize,
    pub error: RotateError,
}

impl std::fmt::Display for WriteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for WriteFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

/// The active file of one log, with what is needed to rotate it.
///
/// Kept small on purpose: the daemon holds one per stream, and most streams are idle.
/// No buffer: every write goes to the kernel at once.
pub struct RotatingFile {
    /// Shared with the registry's table of open paths (one copy per log).
    path: std::sync::Arc<Path>,
    /// The directory every file of the log is created, renamed and removed in (by name, never
    /// by path). None after a re-exec until the log first needs it.
    dir: Option<std::sync::Arc<LogDir>>,
    /// `None` after a failure, until `reopen` succeeds.
    file: Option<File>,
    cfg: RotateConfig,
    inode: u64,
    /// Creation time of the active file (ns), to tell it from an older file with the same inode.
    birth: u64,
    size: u64,
    /// Offset just after the last newline among the last `NEWLINE_WINDOW` bytes of the active file,
    /// or 0 when there is none (an older newline may be kept: it lies outside any cut window).
    newline_end: u64,
    rotations: u64,
}

impl RotatingFile {
    /// Opens (creating mode 0600) PATH append-only, O_CLOEXEC, O_NOFOLLOW (never through a symlink),
    /// O_NONBLOCK at open time so a FIFO at PATH cannot hang us, then fstat: anything but a regular
    /// file is refused (the error names the path).
    ///
    /// `truncate` removes PATH and its backups first (see [`remove_all`]). A file found already larger
    /// than `max_size` is rotated right away, before the first write. The last bytes of an existing
    /// file are read to know where its last newline is, so a cut can honour it.
    pub fn open(path: &Path, cfg: RotateConfig, truncate: bool) -> Result<Self, RotateError> {
        Self::open_shared(path.into(), cfg, truncate)
    }

    /// [`open`](Self::open), keeping `path` (shared with whoever else holds it) instead of a copy.
    pub fn open_shared(
        path: std::sync::Arc<Path>,
        cfg: RotateConfig,
        truncate: bool,
    ) -> Result<Self, RotateError> {
        if cfg.max_size == 0 {
            return Err(RotateError::ZeroMaxSize {
                path: path.to_path_buf(),
            });
        }
        let mut this = Self {
            path,
            dir: None,
            file: None,
            cfg,
            inode: 0,
            birth: 0,
            size: 0,
            newline_end: 0,
            rotations: 0,
        };
        let max_backups = cfg.max_backups;
        this.in_dir(|dir, name| check_derived_names(dir, name, max_backups))?;
        if truncate {
            this.in_dir(|dir, name| remove_all_in(dir, name, max_backups))?;
        }
        this.reopen()?;
        Ok(this)
    }

    /// Runs `op` on the log's directory and file name. A directory removed while the log was
    /// open is made again (by the path policy's walk) and `op` tried once more there.
    fn in_dir<T>(
        &mut self,
        op: impl Fn(&LogDir, &OsStr) -> Result<T, RotateError>,
    ) -> Result<T, RotateError> {
        let path = self.path.clone();
        let name = path.file_name().ok_or_else(|| RotateError::Open {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "no file name"),
        })?;
        let dir = match &self.dir {
            Some(dir) => dir.clone(),
            None => self.open_dir()?,
        };
        match op(&dir, name) {
            Err(e) if dir.is_removed() => {
                tracing::warn!(dir = %dir.path().display(), cause = %e, "the log's directory was removed; making it again");
                let dir = self.open_dir()?;
                op(&dir, name)
            }
            res => res,
        }
    }

    /// Opens (or makes) the log's directory and keeps it.
    fn open_dir(&mut self) -> Result<std::sync::Arc<LogDir>, RotateError> {
        let parent = self.path.parent().unwrap_or(Path::new("/"));
        let dir = LogDir::open(parent).map_err(|source| RotateError::Dir {
            path: self.path.to_path_buf(),
            source,
        })?;
        self.dir = Some(dir.clone());
        Ok(dir)
    }

    /// Describes the file for a re-exec (its handle marked to be carried).
    pub fn export(
        &self,
        carrier: &mut crate::handover::state::Carrier,
    ) -> crate::handover::state::SinkState {
        crate::handover::state::SinkState {
            path: self.path.to_path_buf(),
            file: self.file.as_ref().map(|f| carrier.fd(f)),
            max_size: self.cfg.max_size,
            max_backups: self.cfg.max_backups,
            inode: self.inode,
            birth: self.birth,
            size: self.size,
            newline_end: self.newline_end,
            rotations: self.rotations,
            bytes_in: 0,
            bytes_written: 0,
            dropped_disk: 0,
            last_error: None,
        }
    }

    /// The file as a previous process left it, with its inherited handle (None: it was
    /// unwritable, and the next write retries it). Nothing is opened or read.
    pub fn restore(
        state: &crate::handover::state::SinkState,
        path: std::sync::Arc<Path>,
        file: Option<File>,
    ) -> Self {
        Self {
            path,
            dir: None,
            file,
            cfg: RotateConfig {
                max_size: state.max_size.max(1),
                // A log carried from a logd without the cap gets it here; its backups past the
                // cap go at its next rotation.
                max_backups: state.max_backups.min(MAX_BACKUPS),
            },
            inode: state.inode,
            birth: state.birth,
            size: state.size,
            newline_end: state.newline_end,
            rotations: state.rotations,
        }
    }

    /// Appends all of `data`, rotating as many times as needed.
    ///
    /// A write that would pass `max_size` fills the file to exactly `max_size`, or only up to just
    /// after the last newline at offsets `[max_size - NEWLINE_WINDOW, max_size)` (bytes already in
    /// the file count, so the cut may take nothing of `data`); the rest goes to the next file.
    /// A file exactly full is rotated before more data goes in.
    ///
    /// On failure the handle is closed (see [`is_healthy`](Self::is_healthy)) and
    /// `WriteFailure::written` says how much of `data` reached a file.
    pub fn write(&mut self, data: &[u8]) -> Result<(), WriteFailure> {
        let mut written = 0;
        self.write_rotating(data, &mut written).map_err(|error| {
            self.file = None;
            WriteFailure { written, error }
        })
    }

    /// False after a failed write or rotation, until [`reopen`](Self::reopen) succeeds.
    pub fn is_healthy(&self) -> bool {
        self.file.is_some()
    }

    /// Reopens the active file after a failure, with the same rules as [`open`](Self::open) but
    /// never truncating. The caller decides when to retry (backoff); this never retries by itself.
    pub fn reopen(&mut self) -> Result<(), RotateError> {
        self.file = None;
        let (file, meta) = self.in_dir(|dir, name| open_at(dir, name, false))?;
        let size = meta.len();
        let newline_end = tail_newline_end(&file, size).map_err(|source| RotateError::Read {
            path: self.path.to_path_buf(),
            source,
        })?;
        self.file = Some(file);
        self.inode = meta.ino();
        self.birth = birth_of(&meta);
        self.size = size;
        self.newline_end = newline_end;
        if size > self.cfg.max_size {
            self.rotate()?;
        }
        Ok(())
    }

    /// Where the next byte will go: the active file's inode and its size. Every byte written so far
    /// lies before it, so a reader that starts here sees only new data.
    pub fn position(&self) -> Position {
        Position {
            inode: self.inode,
            offset: self.size,
            birth: self.birth,
        }
    }

    /// Size of the active file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Rotations done by this `RotatingFile` since it was opened.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path, shared.
    pub fn shared_path(&self) -> &std::sync::Arc<Path> {
        &self.path
    }

    /// The device of the log's file system: which disk writer thread serves it.
    pub fn device(&self) -> u64 {
        self.file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .or_else(|| self.path.parent().and_then(|p| fs::metadata(p).ok()))
            .map_or(0, |m| m.dev())
    }

    pub fn config(&self) -> RotateConfig {
        self.cfg
    }

    fn write_rotating(&mut self, mut rest: &[u8], written: &mut usize) -> Result<(), RotateError> {
        if !rest.is_empty() && self.file.is_none() {
            return Err(RotateError::Closed {
                path: self.path.to_path_buf(),
            });
        }
        let max = self.cfg.max_size;
        while !rest.is_empty() {
            if self.size >= max {
                self.rotate()?;
            }
            let room = max - self.size;
            if rest.len() as u64 <= room {
                return self.append(rest, written);
            }
            // `room < rest.len()`, so it fits in a usize.
            let take = self.cut_len(rest, room as usize);
            self.append(&rest[..take], written)?;
            rest = &rest[take..];
            self.rotate()?;
        }
        Ok(())
    }

    /// How many bytes of `chunk` go into the active file before it is rotated, given that `chunk`
    /// does not fit in the `room` left. 0 when a newline already in the file is the best cut; after
    /// a rotation the file is empty, so the next call always takes at least one byte.
    fn cut_len(&self, chunk: &[u8], room: usize) -> usize {
        let window_start = self.cfg.max_size.saturating_sub(NEWLINE_WINDOW);
        let lo = window_start.saturating_sub(self.size).min(room as u64) as usize;
        if let Some(i) = chunk[lo..room].iter().rposition(|&b| b == b'\n') {
            return lo + i + 1;
        }
        if self.newline_end > window_start {
            0
        } else {
            room
        }
    }

    /// Writes all of `buf` to the active file, counting each byte that reaches it. When the
    /// file system is full, the log's own oldest bytes make room first (see
    /// [`make_room`](Self::make_room)). `buf` never exceeds the room left in the active file,
    /// and a rotation made for room leaves an empty one, so it still fits.
    fn append(&mut self, mut buf: &[u8], written: &mut usize) -> Result<(), RotateError> {
        while !buf.is_empty() {
            let Some(file) = self.file.as_mut() else {
                return Err(RotateError::Closed {
                    path: self.path.to_path_buf(),
                });
            };
            match file.write(buf) {
                Ok(0) => {
                    return Err(RotateError::Write {
                        path: self.path.to_path_buf(),
                        source: io::ErrorKind::WriteZero.into(),
                    })
                }
                Ok(n) => {
                    self.newline_end = newline_end_after(self.newline_end, self.size, &buf[..n]);
                    self.size += n as u64;
                    *written += n;
                    buf = &buf[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_full(&e) && self.make_room()? => {}
                Err(source) => {
                    return Err(RotateError::Write {
                        path: self.path.to_path_buf(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Frees the log's own oldest bytes for a write that found the file system full: the
    /// oldest backup goes; with no backup left, the active file is rotated (to `PATH.0`, to go
    /// at the next call, or straight away with no backups). Returns false when the log has
    /// nothing left to give, and the write must fail.
    ///
    /// So the files keep holding the newest bytes: a full disk costs the log its history from
    /// the old end, never its newest bytes, as long as the log holds any.
    fn make_room(&mut self) -> Result<bool, RotateError> {
        let n = self.cfg.max_backups;
        let removed = self.in_dir(|dir, name| {
            for i in (0..n).rev() {
                if remove_at(dir, &backup_name(name, i))? {
                    return Ok(Some(i));
                }
            }
            Ok(None)
        })?;
        if let Some(i) = removed {
            tracing::info!(path = %self.path.display(), backup = i, "file system full: removed the oldest backup to make room");
            return Ok(true);
        }
        if self.size == 0 {
            return Ok(false);
        }
        tracing::info!(path = %self.path.display(), size = self.size, "file system full: rotating early to make room");
        self.rotate()?;
        Ok(true)
    }

    /// Shifts the backups and puts a fresh empty file at PATH.
    ///
    /// The fresh file is created first, under a temporary name: its inode is then distinct from every
    /// file of the log, so a reader's `Position` in a file just deleted can never match it (ext4
    /// readily hands a freed inode number to the next new file). Then the oldest backup goes, the
    /// others move up one index, and PATH becomes PATH.0: only removals precede the renames, so the
    /// log never holds more than `max_size * (max_backups + 1)` bytes.
    fn rotate(&mut self) -> Result<(), RotateError> {
        self.file = None;
        let n = self.cfg.max_backups;
        let (file, meta) = self.in_dir(|dir, name| {
            let fresh = fresh_name(name);
            let created = open_at(dir, &fresh, true)?;
            if let Err(e) = shift_files(dir, name, &fresh, n) {
                // Best effort: the error that matters is `e`, and a stale file here is
                // replaced next time.
                let _ = remove_at(dir, &fresh);
                return Err(e);
            }
            Ok(created)
        })?;
        self.file = Some(file);
        self.inode = meta.ino();
        self.birth = birth_of(&meta);
        self.size = 0;
        self.newline_end = 0;
        self.rotations += 1;
        Ok(())
    }
}

/// The renames of a rotation, in `dir`: the oldest backup (and any stale ones past it) goes,
/// the others move up one index, NAME becomes NAME.0 and `fresh` becomes NAME.
fn shift_files(dir: &LogDir, name: &OsStr, fresh: &OsStr, n: u32) -> Result<(), RotateError> {
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

/// The longest file name Linux file systems take (`NAME_MAX`), used where the directory's own
/// limit cannot be asked.
const NAME_MAX: usize = 255;

/// Refuses a log whose rotation would need a name longer than its directory takes: the
/// temporary name (`NAME.rotating`) and the oldest backup (`NAME.N-1`).
fn check_derived_names(dir: &LogDir, name: &OsStr, max_backups: u32) -> Result<(), RotateError> {
    let longest = std::iter::once(fresh_name(name))
        .chain((max_backups > 0).then(|| backup_name(name, max_backups - 1)))
        .map(|n| n.to_string_lossy().into_owned())
        .max_by_key(String::len)
        .unwrap_or_default();
    let limit = nix::unistd::fpathconf(dir.fd(), nix::unistd::PathconfVar::NAME_MAX)
        .ok()
        .flatten()
        .map_or(NAME_MAX, |n| n as usize);
    if longest.len() > limit {
        return Err(RotateError::NameTooLong {
            path: dir.path().join(name),
            len: longest.len(),
            longest,
            limit,
        });
    }
    Ok(())
}

/// The log whose family of names `path` belongs to, when it is a backup or temporary name
/// (`NAME.N`, `NAME.rotating`): a log claims `NAME`, every `NAME.N` and `NAME.rotating`,
/// since its rotation renames and removes them all.
pub fn family_base(path: &Path) -> Option<&Path> {
    let name = path.file_name()?.to_str()?;
    let (base, suffix) = name.rsplit_once('.')?;
    let derived =
        suffix == "rotating" || (!suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()));
    if !derived || base.is_empty() {
        return None;
    }
    let s = path.to_str()?;
    Some(Path::new(&s[..s.len() - suffix.len() - 1]))
}

/// A write refused for want of space (the file system's or the user's quota).
fn is_full(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno) if libc_errno == nix::errno::Errno::ENOSPC as i32
            || libc_errno == nix::errno::Errno::EDQUOT as i32
    )
}

/// `PATH.index`: the path of a backup (0 is the newest).
pub fn backup_path(path: &Path, index: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// `NAME.index`: the name of a backup in the log's directory.
fn backup_name(name: &OsStr, index: u32) -> OsString {
    let mut n = name.to_owned();
    n.push(format!(".{index}"));
    n
}

/// Where a rotation prepares the next active file. Not a `NAME.N` name, so readers never see it.
fn fresh_name(name: &OsStr) -> OsString {
    let mut n = name.to_owned();
    n.push(".rotating");
    n
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
fn remove_all_in(dir: &LogDir, name: &OsStr, max_backups: u32) -> Result<(), RotateError> {
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
fn remove_at(dir: &LogDir, name: &OsStr) -> Result<bool, RotateError> {
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

/// Flags for every open: never follow a symlink at the last component, never block on a FIFO,
/// never leak the descriptor into a child (std adds O_CLOEXEC too; it is spelled out for the reader).
fn open_flags() -> i32 {
    (OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits()
}

/// Opens (creating mode 0600) the log file `name` in `dir` for appending, with read access so
/// that `open` can look at the tail of an existing file through the same descriptor. O_APPEND
/// keeps every write at the end whatever else writes to the file. With `create_new`, a
/// leftover of that name (from an interrupted rotation) is removed and the file is made anew.
///
/// Anything but a regular file with a single link is refused, and O_NONBLOCK is cleared.
fn open_at(
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
fn open_checked(path: &Path, opts: &OpenOptions) -> Result<(File, fs::Metadata), RotateError> {
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

/// `newline_end` of a file of `size` bytes, from its last `NEWLINE_WINDOW` bytes.
fn tail_newline_end(file: &File, size: u64) -> io::Result<u64> {
    let mut buf = [0u8; NEWLINE_WINDOW as usize];
    let n = size.min(NEWLINE_WINDOW) as usize;
    let start = size - n as u64;
    file.read_exact_at(&mut buf[..n], start)?;
    Ok(newline_end_after(0, start, &buf[..n]))
}

/// `newline_end` after `bytes` were appended at `offset`. Only their last `NEWLINE_WINDOW` bytes are
/// scanned: a newline before those lies before any cut window, as the file never exceeds `max_size`.
fn newline_end_after(previous: u64, offset: u64, bytes: &[u8]) -> u64 {
    let tail_start = bytes.len().saturating_sub(NEWLINE_WINDOW as usize);
    match bytes[tail_start..].iter().rposition(|&b| b == b'\n') {
        Some(i) => offset + (tail_start + i) as u64 + 1,
        None if tail_start > 0 => 0,
        None => previous,
    }
}

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

/// A file's creation time in nanoseconds since the epoch (statx btime), or 0 where the file
/// system does not report one. See [`Position::birth`].
fn birth_of(meta: &fs::Metadata) -> u64 {
    meta.created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
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
///   If no file has that inode any more (rotated away), reads from the oldest file's start with
///   `gap = true`. An offset beyond that file's length is `BadPosition`.
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
            None => (0, 0, true),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::mpsc;
    use std::time::Duration;

    use proptest::prelude::*;

    #[test]
    fn family_base_strips_one_backup_or_temporary_suffix() {
        let base = |p: &str| family_base(Path::new(p)).map(|b| b.to_str().unwrap().to_owned());
        assert_eq!(base("/l/x.log.0").as_deref(), Some("/l/x.log"));
        assert_eq!(base("/l/x.log.123").as_deref(), Some("/l/x.log"));
        assert_eq!(base("/l/x.log.rotating").as_deref(), Some("/l/x.log"));
        assert_eq!(base("/l/x.log.0.1").as_deref(), Some("/l/x.log.0"));
        for not_derived in ["/l/x.log", "/l/x.log.0x", "/l/x.log.", "/l/.0", "/l/x", "/"] {
            assert_eq!(base(not_derived), None, "{not_derived}");
        }
    }

    #[test]
    fn derived_names_must_fit_name_max() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LogDir::open(tmp.path()).unwrap();
        let ok = OsString::from("a".repeat(NAME_MAX - ".rotating".len()));
        check_derived_names(&dir, &ok, 3).unwrap();
        let long = OsString::from("a".repeat(NAME_MAX - ".rotating".len() + 1));
        let e = check_derived_names(&dir, &long, 3).unwrap_err();
        assert!(matches!(e, RotateError::NameTooLong { len, .. } if len == NAME_MAX + 1));
        // With 10^9 backups, the oldest backup's name is the longest.
        let e = check_derived_names(&dir, &ok, 1_000_000_000).unwrap_err();
        assert!(e.to_string().contains(".999999999"), "{e}");
    }

    /// The temporary name's path, as a rotation makes it.
    fn fresh_path(path: &Path) -> PathBuf {
        path.with_file_name(fresh_name(path.file_name().unwrap()))
    }

    fn cfg(max_size: u64, max_backups: u32) -> RotateConfig {
        RotateConfig {
            max_size,
            max_backups,
        }
    }

    fn log_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("a.log")
    }

    fn read_all(path: &Path) -> Vec<u8> {
        read_log(path, ReadFrom::Start, usize::MAX).unwrap().data
    }

    fn contents(path: &Path) -> Vec<u8> {
        fs::read(path).unwrap()
    }

    fn exists(path: &Path) -> bool {
        fs::symlink_metadata(path).is_ok()
    }

    fn inode(path: &Path) -> u64 {
        fs::metadata(path).unwrap().ino()
    }

    fn birth(path: &Path) -> u64 {
        birth_of(&fs::metadata(path).unwrap())
    }

    /// Distinct, easily recognised bytes without newlines.
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| b'a' + ((i + seed as usize) % 26) as u8)
            .collect()
    }

    #[test]
    fn default_config_is_2mib_and_3_backups() {
        assert_eq!(RotateConfig::default(), cfg(2 * 1024 * 1024, 3));
    }

    #[test]
    fn rotating_file_stays_small() {
        assert!(std::mem::size_of::<RotatingFile>() <= 80);
    }

    #[test]
    fn new_file_is_created_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let f = RotatingFile::open(&path, cfg(100, 2), false).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 0);
        assert!(f.is_healthy());
        assert_eq!(f.size(), 0);
        assert_eq!(f.rotations(), 0);
        assert_eq!(f.path(), path);
        assert_eq!(f.config(), cfg(100, 2));
        assert_eq!(
            f.position(),
            Position {
                inode: meta.ino(),
                offset: 0,
                birth: birth_of(&meta)
            }
        );
    }

    #[test]
    fn zero_max_size_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let err = RotatingFile::open(&path, cfg(0, 2), false).err().unwrap();
        assert!(matches!(err, RotateError::ZeroMaxSize { .. }), "{err}");
        assert!(err.to_string().contains("a.log"));
        assert!(!exists(&path));
    }

    #[test]
    fn append_keeps_existing_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        fs::write(&path, b"old\n").unwrap();
        let mut f = RotatingFile::open(&path, cfg(100, 2), false).unwrap();
        assert_eq!(f.size(), 4);
        f.write(b"new").unwrap();
        f.write(b"").unwrap();
        f.write(b" more\n").unwrap();
        assert_eq!(contents(&path), b"old\nnew more\n");
        assert_eq!(f.size(), 13);
        assert_eq!(
            f.position(),
            Position {
                inode: inode(&path),
                offset: 13,
                birth: birth(&path)
            }
        );
        assert_eq!(f.rotations(), 0);
        assert!(!exists(&backup_path(&path, 0)));
    }

    #[test]
    fn truncate_removes_file_and_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        fs::write(&path, b"active").unwrap();
        for i in 0..5 {
            fs::write(backup_path(&path, i), b"backup").unwrap();
        }
        let other = dir.path().join("b.log");
        fs::write(&other, b"keep").unwrap();
        let mut f = RotatingFile::open(&path, cfg(100, 2), true).unwrap();
        assert_eq!(f.size(), 0);
        assert_eq!(contents(&path), b"");
        for i in 0..6 {
            assert!(!exists(&backup_path(&path, i)), "backup {i} survived");
        }
        assert_eq!(contents(&other), b"keep");
        f.write(b"x").unwrap();
        assert_eq!(read_all(&path), b"x");
    }

    #[test]
    fn remove_all_tolerates_missing_files_and_reaches_max_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        remove_all(&path, 3).unwrap();
        // A hole at index 1 does not stop removal below max_backups.
        fs::write(backup_path(&path, 0), b"0").unwrap();
        fs::write(backup_path(&path, 2), b"2").unwrap();
        remove_all(&path, 3).unwrap();
        assert!(!exists(&backup_path(&path, 0)));
        assert!(!exists(&backup_path(&path, 2)));
    }

    #[test]
    fn zero_backups_keeps_only_the_active_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(10, 0), false).unwrap();
        f.write(b"0123456789").unwrap();
        assert_eq!(f.rotations(), 0);
        f.write(b"abc").unwrap();
        assert_eq!(f.rotations(), 1);
        assert_eq!(contents(&path), b"abc");
        assert!(!exists(&backup_path(&path, 0)));
        assert!(!exists(&fresh_path(&path)));
        assert_eq!(read_all(&path), b"abc");
    }

    #[test]
    fn one_rotation_moves_active_to_backup_0() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(10, 2), false).unwrap();
        let first_inode = f.position().inode;
        f.write(b"0123456").unwrap();
        f.write(b"789ABCD").unwrap();
        assert_eq!(f.rotations(), 1);
        assert_eq!(contents(&backup_path(&path, 0)), b"0123456789");
        assert_eq!(contents(&path), b"ABCD");
        assert_eq!(inode(&backup_path(&path, 0)), first_inode);
        assert_ne!(f.position().inode, first_inode);
        assert_eq!(
            f.position(),
            Position {
                inode: inode(&path),
                offset: 4,
                birth: birth(&path)
            }
        );
        assert!(!exists(&backup_path(&path, 1)));
    }

    #[test]
    fn exactly_full_file_rotates_on_the_next_write_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(10, 1), false).unwrap();
        f.write(b"0123456789").unwrap();
        assert_eq!(f.rotations(), 0);
        assert_eq!(f.size(), 10);
        f.write(b"").unwrap();
        assert_eq!(f.rotations(), 0);
        f.write(b"x").unwrap();
        assert_eq!(f.rotations(), 1);
        assert_eq!(contents(&backup_path(&path, 0)), b"0123456789");
        assert_eq!(contents(&path), b"x");
    }

    #[test]
    fn rotation_when_appending_to_prefilled_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        fs::write(&path, b"0123456").unwrap();
        let mut f = RotatingFile::open(&path, cfg(10, 2), false).unwrap();
        assert_eq!(f.size(), 7);
        assert_eq!(f.rotations(), 0);
        f.write(b"789abc").unwrap();
        assert_eq!(f.rotations(), 1);
        assert_eq!(contents(&backup_path(&path, 0)), b"0123456789");
        assert_eq!(contents(&path), b"abc");
    }

    #[test]
    fn many_rotations_keep_max_backups_full_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(100, 3), false).unwrap();
        let data = pattern(1050, 0);
        for chunk in data.chunks(33) {
            f.write(chunk).unwrap();
        }
        assert_eq!(f.rotations(), 10);
        for i in 0..3 {
            assert_eq!(fs::metadata(backup_path(&path, i)).unwrap().len(), 100);
        }
        assert!(!exists(&backup_path(&path, 3)));
        assert_eq!(contents(&path).len(), 50);
        assert_eq!(read_all(&path), &data[data.len() - 350..]);
        assert_eq!(contents(&backup_path(&path, 2)), &data[700..800]);
        assert_eq!(contents(&backup_path(&path, 0)), &data[900..1000]);
    }

    #[test]
    fn single_chunk_larger_than_everything_keeps_its_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(10, 2), false).unwrap();
        let data = pattern(95, 3);
        f.write(&data).unwrap();
        assert_eq!(f.rotations(), 9);
        assert_eq!(contents(&path), &data[90..]);
        assert_eq!(contents(&backup_path(&path, 0)), &data[80..90]);
        assert_eq!(contents(&backup_path(&path, 1)), &data[70..80]);
        assert!(!exists(&backup_path(&path, 2)));
    }

    #[test]
    fn stale_backups_from_a_bigger_config_go_at_the_next_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        for i in 0..5 {
            fs::write(backup_path(&path, i), b"old").unwrap();
        }
        let mut f = RotatingFile::open(&path, cfg(4, 2), false).unwrap();
        f.write(b"abcdef").unwrap();
        assert_eq!(contents(&backup_path(&path, 0)), b"abcd");
        assert_eq!(contents(&backup_path(&path, 1)), b"old");
        for i in 2..6 {
            assert!(!exists(&backup_path(&path, i)), "stale backup {i} survived");
        }
    }

    #[test]
    fn newline_cut_ends_the_file_after_the_last_newline_in_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(200, 2), false).unwrap();
        // Offsets 0..150, then a newline at 150 (inside [120, 200)) and one at 170 (the last).
        let mut first = pattern(150, 0);
        first.push(b'\n');
        first.extend(pattern(19, 1));
        first.push(b'\n');
        first.extend(pattern(29, 2)); // up to offset 199: 200 bytes, exactly full
        assert_eq!(first.len(), 200);
        let mut data = first.clone();
        data.extend(pattern(30, 3));
        f.write(&data).unwrap();
        assert_eq!(f.rotations(), 1);
        assert_eq!(contents(&backup_path(&path, 0)), &data[..171]);
        assert_eq!(contents(&path), &data[171..]);
        assert_eq!(read_all(&path), data);
    }

    #[test]
    fn newline_before_the_window_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(200, 2), false).unwrap();
        let mut data = pattern(119, 0);
        data.push(b'\n'); // offset 119: just before the window [120, 200)
        data.extend(pattern(100, 1));
        f.write(&data).unwrap();
        assert_eq!(contents(&backup_path(&path, 0)), &data[..200]);
        assert_eq!(contents(&path), &data[200..]);
    }

    #[test]
    fn newline_already_in_the_file_cuts_before_the_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(200, 2), false).unwrap();
        let mut line = pattern(179, 0);
        line.push(b'\n'); // ends at 180, inside the window
        f.write(&line).unwrap();
        let next = pattern(50, 1);
        f.write(&next).unwrap();
        assert_eq!(f.rotations(), 1);
        assert_eq!(contents(&backup_path(&path, 0)), line);
        assert_eq!(contents(&path), next);
    }

    #[test]
    fn newline_found_in_the_tail_of_an_existing_file_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut line = pattern(179, 0);
        line.push(b'\n');
        fs::write(&path, &line).unwrap();
        let mut f = RotatingFile::open(&path, cfg(200, 2), false).unwrap();
        f.write(&pattern(50, 1)).unwrap();
        assert_eq!(contents(&backup_path(&path, 0)), line);
        assert_eq!(contents(&path), pattern(50, 1));
    }

    #[test]
    fn file_already_too_large_is_rotated_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let big = pattern(150, 0);
        fs::write(&path, &big).unwrap();
        let mut f = RotatingFile::open(&path, cfg(100, 2), false).unwrap();
        assert_eq!(f.rotations(), 1);
        assert_eq!(f.size(), 0);
        assert_eq!(contents(&backup_path(&path, 0)), big);
        assert_eq!(contents(&path), b"");
        f.write(b"new").unwrap();
        let mut all = big.clone();
        all.extend_from_slice(b"new");
        assert_eq!(read_all(&path), all);
    }

    #[test]
    fn symlink_at_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let target = dir.path().join("target");
        fs::write(&target, b"precious").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = RotatingFile::open(&path, cfg(100, 2), false).err().unwrap();
        assert!(matches!(err, RotateError::NotRegular { .. }), "{err}");
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        assert_eq!(contents(&target), b"precious");

        // A dangling one must not create its target either.
        fs::remove_file(&path).unwrap();
        let nowhere = dir.path().join("nowhere");
        std::os::unix::fs::symlink(&nowhere, &path).unwrap();
        let err = RotatingFile::open(&path, cfg(100, 2), false).err().unwrap();
        assert!(matches!(err, RotateError::NotRegular { .. }), "{err}");
        assert!(!exists(&nowhere));

        let err = read_log(&path, ReadFrom::Start, 10).unwrap_err();
        assert!(matches!(err, RotateError::NotRegular { .. }), "{err}");
    }

    #[test]
    fn directory_at_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        fs::create_dir(&path).unwrap();
        let err = RotatingFile::open(&path, cfg(100, 2), false).err().unwrap();
        assert!(
            matches!(
                err,
                RotateError::NotRegular {
                    kind: "directory",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn fifo_at_path_is_refused_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (tx, rx) = mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let writer = RotatingFile::open(&p, cfg(100, 2), false).err();
            let reader = read_log(&p, ReadFrom::Start, 10).err();
            let _ = tx.send((writer, reader));
        });
        let (writer, reader) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("open hung on a FIFO");
        let writer = writer.expect("a FIFO was accepted");
        assert!(
            matches!(writer, RotateError::NotRegular { kind: "FIFO", .. }),
            "{writer}"
        );
        assert!(writer.to_string().contains("a.log"));
        let reader = reader.expect("a FIFO was read");
        assert!(
            matches!(reader, RotateError::NotRegular { kind: "FIFO", .. }),
            "{reader}"
        );
    }

    #[test]
    fn failed_rotation_marks_unhealthy_counts_written_and_reopen_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(10, 1), false).unwrap();
        // A directory where the rotation creates the fresh file makes the rotation fail.
        fs::create_dir(fresh_path(&path)).unwrap();
        let failure = f.write(b"0123456789abc").unwrap_err();
        assert_eq!(failure.written, 10);
        assert!(
            matches!(failure.error, RotateError::Remove { .. }),
            "{failure}"
        );
        assert!(failure.to_string().contains("a.log.rotating"), "{failure}");
        assert!(!f.is_healthy());
        let closed = f.write(b"x").unwrap_err();
        assert_eq!(closed.written, 0);
        assert!(matches!(closed.error, RotateError::Closed { .. }));

        fs::remove_dir(fresh_path(&path)).unwrap();
        f.reopen().unwrap();
        assert!(f.is_healthy());
        assert_eq!(f.size(), 10);
        f.write(b"abc").unwrap();
        assert_eq!(read_all(&path), b"0123456789abc");
    }

    #[test]
    fn read_missing_log_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let err = read_log(&path, ReadFrom::Start, 10).unwrap_err();
        assert!(matches!(err, RotateError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("a.log"));
    }

    #[test]
    fn read_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(100, 2), false).unwrap();
        f.write(b"hello\nworld\n").unwrap();
        let out = read_log(&path, ReadFrom::Start, 1000).unwrap();
        assert_eq!(out.data, b"hello\nworld\n");
        assert_eq!(out.next, f.position());
        assert!(!out.gap);
        let out = read_log(
            &path,
            ReadFrom::Position(Position {
                offset: 6,
                ..f.position()
            }),
            1000,
        )
        .unwrap();
        assert_eq!(out.data, b"world\n");
        // Nothing new: empty, and `next` stays put.
        let out = read_log(&path, ReadFrom::Position(f.position()), 1000).unwrap();
        assert!(out.data.is_empty());
        assert_eq!(out.next, f.position());
        let out = read_log(&path, ReadFrom::Start, 0).unwrap();
        assert!(out.data.is_empty());
        assert_eq!(
            out.next,
            Position {
                offset: 0,
                ..f.position()
            }
        );
    }

    #[test]
    fn end_position_is_the_size_of_the_active_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        assert!(matches!(
            end_position(&path),
            Err(RotateError::NotFound { .. })
        ));
        let mut f = RotatingFile::open(&path, cfg(10, 1), false).unwrap();
        f.write(b"0123456789abc").unwrap();
        assert_eq!(end_position(&path).unwrap(), f.position());
        drop(f);
        let out = read_log(&path, ReadFrom::Position(end_position(&path).unwrap()), 100).unwrap();
        assert!(out.data.is_empty());
    }

    #[test]
    fn read_position_beyond_end_is_bad_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(100, 2), false).unwrap();
        f.write(b"abc").unwrap();
        let p = Position {
            offset: 4,
            ..f.position()
        };
        let err = read_log(&path, ReadFrom::Position(p), 10).unwrap_err();
        assert!(
            matches!(
                err,
                RotateError::BadPosition {
                    offset: 4,
                    len: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("a.log"));
    }

    #[test]
    fn read_across_all_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(10, 3), false).unwrap();
        let data = pattern(35, 0);
        f.write(&data).unwrap();
        assert!(exists(&backup_path(&path, 2)));
        let out = read_log(&path, ReadFrom::Start, usize::MAX).unwrap();
        assert_eq!(out.data, data);
        assert!(!out.gap);
        assert_eq!(out.next, f.position());
    }

    #[test]
    fn read_with_byte_limit_continues_from_next_without_gap_or_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(10, 3), false).unwrap();
        let data = pattern(35, 0);
        f.write(&data).unwrap();
        let first = read_log(&path, ReadFrom::Start, 7).unwrap();
        assert_eq!(first.data, &data[..7]);
        assert_eq!(
            first.next,
            Position {
                inode: inode(&backup_path(&path, 2)),
                offset: 7,
                birth: birth(&backup_path(&path, 2)),
            }
        );
        let mut got = first.data;
        let mut next = first.next;
        loop {
            let out = read_log(&path, ReadFrom::Position(next), 4).unwrap();
            assert!(!out.gap);
            if out.data.is_empty() {
                break;
            }
            got.extend(out.data);
            next = out.next;
        }
        assert_eq!(got, data);
        assert_eq!(next, f.position());
        // A read ending exactly at the end of a file moves on to the next one.
        let out = read_log(&path, ReadFrom::Start, 10).unwrap();
        assert_eq!(
            out.next,
            Position {
                inode: inode(&backup_path(&path, 1)),
                offset: 0,
                birth: birth(&backup_path(&path, 1)),
            }
        );
    }

    #[test]
    fn a_position_on_a_deleted_file_is_a_gap_even_if_its_inode_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(10, 1), false).unwrap();
        let start = f.position();
        // Many rotations: the first file is deleted early, and file systems such as ext4 and
        // tmpfs readily give its inode number to one of the files created after it.
        for i in 0..20u8 {
            f.write(&pattern(10, i)).unwrap();
        }
        let out = read_log(&path, ReadFrom::Position(start), 100).unwrap();
        assert!(out.gap, "a position on a deleted file must report a gap");
        assert_eq!(out.data.len(), 20);
        // The short form (birth unknown) falls back to the inode alone, as virtlogd does.
        let short = Position { birth: 0, ..start };
        assert!(read_log(&path, ReadFrom::Position(short), 100).is_ok());
    }

    #[test]
    fn read_from_a_position_inside_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(10, 3), false).unwrap();
        f.write(&pattern(4, 0)).unwrap();
        let p = f.position();
        let data = pattern(20, 1);
        f.write(&data).unwrap();
        assert_eq!(inode(&backup_path(&path, 1)), p.inode);
        let out = read_log(&path, ReadFrom::Position(p), usize::MAX).unwrap();
        assert_eq!(out.data, data);
        assert!(!out.gap);
        assert_eq!(out.next, f.position());
    }

    #[test]
    fn read_from_a_position_rotated_away_reports_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(10, 1), false).unwrap();
        f.write(b"0123").unwrap();
        let p = f.position();
        let data = pattern(25, 0);
        f.write(&data).unwrap();
        let out = read_log(&path, ReadFrom::Position(p), usize::MAX).unwrap();
        assert!(out.gap);
        // 29 bytes written, the last 19 kept (a full PATH.0 and 9 in PATH).
        assert_eq!(out.data, &data[6..]);
        assert_eq!(out.next, f.position());

        // The same with no backups at all: the fresh file never reuses the old inode.
        let path = dir.path().join("b.log");
        let mut f = RotatingFile::open(&path, cfg(10, 0), false).unwrap();
        f.write(b"0123456789").unwrap();
        let p = f.position();
        f.write(b"ab").unwrap();
        let out = read_log(&path, ReadFrom::Position(p), usize::MAX).unwrap();
        assert!(out.gap);
        assert_eq!(out.data, b"ab");
    }

    #[test]
    fn read_last_n_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(10, 3), false).unwrap();
        let data = pattern(45, 0);
        f.write(&data).unwrap();
        let kept = &data[data.len() - 35..];
        for n in [0u64, 1, 5, 10, 15, 34, 35, 36, 1000] {
            let out = read_log(&path, ReadFrom::Last(n), usize::MAX).unwrap();
            let n = n.min(35) as usize;
            assert_eq!(out.data, &kept[35 - n..], "Last({n})");
            assert!(!out.gap);
            assert_eq!(out.next, f.position());
        }
        let out = read_log(&path, ReadFrom::Last(12), 4).unwrap();
        assert_eq!(out.data, &kept[23..27]);
        let rest = read_log(&path, ReadFrom::Position(out.next), usize::MAX).unwrap();
        assert_eq!(rest.data, &kept[27..]);
    }

    /// One write of the property test: bytes biased towards newlines, or none at all.
    fn write_strategy() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::collection::vec(prop_oneof![1 => Just(b'\n'), 6 => any::<u8>()], 0..700),
            any::<bool>(),
        )
            .prop_map(|(mut bytes, no_newlines)| {
                if no_newlines {
                    bytes
                        .iter_mut()
                        .filter(|b| **b == b'\n')
                        .for_each(|b| *b = b'x');
                }
                bytes
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn rotated_files_are_always_the_exact_suffix_of_the_input(
            max_size in 1u64..300,
            max_backups in 0u32..4,
            writes in prop::collection::vec(write_strategy(), 0..60),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = log_path(&dir);
            let mut f = RotatingFile::open(&path, cfg(max_size, max_backups), false).unwrap();
            let mut all = Vec::new();
            let window_start = max_size.saturating_sub(NEWLINE_WINDOW);
            for w in &writes {
                f.write(w).unwrap();
                all.extend_from_slice(w);

                let active = fs::metadata(&path).unwrap().len();
                prop_assert!(active <= max_size);
                prop_assert_eq!(f.position(), Position { inode: inode(&path), offset: active, birth: birth(&path) });
                let mut total = active;
                let backups = f.rotations().min(u64::from(max_backups)) as u32;
                for i in 0..backups {
                    let len = fs::metadata(backup_path(&path, i)).unwrap().len();
                    // Every cut lies beyond the newline window.
                    prop_assert!(len > window_start && len <= max_size, "backup {} has {} bytes", i, len);
                    total += len;
                }
                for i in backups..max_backups + 3 {
                    prop_assert!(!exists(&backup_path(&path, i)), "unexpected backup {}", i);
                }
                prop_assert!(!exists(&fresh_path(&path)));
                prop_assert!(total <= max_size * (u64::from(max_backups) + 1));

                let read = read_all(&path);
                prop_assert_eq!(read.len() as u64, total);
                prop_assert!(all.ends_with(&read));
                prop_assert_eq!(read.is_empty(), all.is_empty());
            }

            // Reading in small steps from `next` gives the same bytes.
            let whole = read_all(&path);
            let mut got = Vec::new();
            let mut from = ReadFrom::Start;
            loop {
                let out = read_log(&path, from, 37).unwrap();
                prop_assert!(!out.gap);
                if out.data.is_empty() {
                    break;
                }
                got.extend(out.data);
                from = ReadFrom::Position(out.next);
            }
            prop_assert_eq!(got, whole);
        }
    }
}
