//! [`RotatingFile`]: the active file of one log, written on the hot path. A write that passes
//! `max_size` is cut (near a newline when one is close), and the rotation step shifts the backups
//! and puts a fresh file in place (docs/ARCHITECTURE.md, "Rotation").

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use logd_protocol::Position;

use super::files::{birth_of, open_at, remove_all_in, remove_at, shift_files, stat_at};
use super::names::{backup_name, check_derived_names, fresh_name};
use super::{RotateConfig, RotateError, WriteFailure, MAX_BACKUPS, NEWLINE_WINDOW};
use crate::datapath::logdir::LogDir;
use crate::datapath::tally::Slot;

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
    /// The open file: `None` while resting (see `resting`) and after a failure, until
    /// `reopen` succeeds.
    file: Option<File>,
    /// Closed on purpose, not for a failure: the log has not been written since it was opened
    /// (the file is created, looked at and closed at once) or for a long idle time. The next
    /// write opens it again by name ([`wake`](Self::wake)). A resting log holds no fd and pins
    /// no kernel memory for its file (docs/DECISIONS.md, "Idle logs hold no file open").
    resting: bool,
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
    /// `truncate` removes PATH and its backups first (see [`remove_all`](super::remove_all)). A
    /// file found already larger than `max_size` is rotated right away, before the first write.
    /// The last bytes of an existing file are read to know where its last newline is, so a cut
    /// can honour it.
    ///
    /// The file is then closed again, resting: it exists, and [`position`](Self::position)
    /// names it, but it is opened only by the first write.
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
            resting: false,
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
        this.rest();
        Ok(this)
    }

    /// Closes the file until the next write, which opens it again by name ([`wake`](Self::wake)).
    /// Nothing is lost: every write has reached the kernel already. A failed file stays failed.
    pub fn rest(&mut self) {
        if self.file.take().is_some() {
            self.resting = true;
        }
    }

    /// Whether the file is closed on purpose until the next write ([`rest`](Self::rest)).
    pub fn is_resting(&self) -> bool {
        self.resting
    }

    /// Opens a resting file again by its name, for a write. What another process did to it
    /// meanwhile (removed it, truncated it, appended to it) shows as a size other than the one
    /// logd left: the log goes on from the file as it is, and the change is returned for the
    /// caller to report, as [`resync`](Self::resync) does for an open file. On an error the file
    /// is failed, as after a failed write. Does nothing (`Ok(None)`) unless resting.
    pub fn wake(&mut self) -> Result<Option<OutsideChange>, RotateError> {
        if !self.resting {
            return Ok(None);
        }
        self.resting = false;
        let (expected, inode, birth) = (self.size, self.inode, self.birth);
        let found = self.open_active()?;
        let replaced = (inode, birth) != (self.inode, self.birth);
        Ok((replaced || found != expected).then_some(OutsideChange {
            expected,
            found,
            replaced,
        }))
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
            // A log carried without its file was resting (or failed: its next write retries it
            // either way).
            resting: file.is_none(),
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

    /// The file as a previous process left it, when a later process may have written to it,
    /// and rotated it, since: a re-exec's new image that was told `Go` and died before it ran.
    /// The carried handle may be a backup by now, so it is never written again: the log is
    /// opened again by its path, as after a crash ([`reopen`](Self::reopen)), and what that
    /// process did is read from the files ([`CaughtUp`]). On an error the file stays closed,
    /// and the next write retries it.
    pub fn restore_after_go(
        state: &crate::handover::state::SinkState,
        path: std::sync::Arc<Path>,
        carried: Option<File>,
    ) -> (Self, Result<CaughtUp, RotateError>) {
        let mut this = Self::restore(state, path, None);
        let caught = this.catch_up(state, carried);
        (this, caught)
    }

    /// Finds where the carried file went (still the active file, the backup `NAME.i` after
    /// `i + 1` rotations, or gone after more than the backups hold), counts the bytes written
    /// since the state (what the carried file grew by, and every newer file), then opens the
    /// active file by its path. A log carried resting (no handle) is looked for by the state's
    /// inode instead.
    fn catch_up(
        &mut self,
        state: &crate::handover::state::SinkState,
        carried: Option<File>,
    ) -> Result<CaughtUp, RotateError> {
        if carried.is_none() && state.inode == 0 {
            // No file was ever described: nothing to compare with.
            self.reopen()?;
            return Ok(CaughtUp {
                rotations: 0,
                written: 0,
                exact: false,
            });
        }
        // Which file the state described: the carried handle's, or the state's inode.
        let (dev, ino, carried_len) = match &carried {
            Some(f) => {
                let meta = f.metadata().map_err(|source| RotateError::Read {
                    path: self.path.to_path_buf(),
                    source,
                })?;
                (Some(meta.dev()), meta.ino(), Some(meta.len()))
            }
            None => (None, state.inode, None),
        };
        let backups = self.cfg.max_backups;
        let (rotations, newer, grown, exact) = self.in_dir(|dir, name| {
            let same = |st: &nix::sys::stat::FileStat| {
                st.st_ino == ino && dev.is_none_or(|d| st.st_dev == d)
            };
            let size = |st: &nix::sys::stat::FileStat| st.st_size.max(0) as u64;
            let grown = |st: &nix::sys::stat::FileStat| size(st).saturating_sub(state.size);
            let mut newer = 0;
            match stat_at(dir, name)? {
                Some(st) if same(&st) => return Ok((0, 0, grown(&st), true)),
                Some(st) => newer += size(&st),
                None => {}
            }
            for i in 0..backups {
                match stat_at(dir, &backup_name(name, i))? {
                    Some(st) if same(&st) => {
                        return Ok((u64::from(i) + 1, newer, grown(&st), true))
                    }
                    Some(st) => newer += size(&st),
                    // Backups are numbered without gaps.
                    None => break,
                }
            }
            // Rotated out: at least one rotation per backup, and one more.
            let grown = carried_len.map_or(0, |len| len.saturating_sub(state.size));
            Ok((u64::from(backups) + 1, newer, grown, false))
        })?;
        drop(carried);
        self.reopen()?;
        self.rotations += rotations;
        Ok(CaughtUp {
            rotations,
            written: grown + newer,
            exact,
        })
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
        self.write_counted(data, None)
    }

    /// [`write`](Self::write), each `write(2)` marked in flight in the log's tally slot just
    /// before it and counted there right after it returns (a crash in between is settled from
    /// the active file's size, `crate::datapath::tally`).
    pub(crate) fn write_counted(
        &mut self,
        data: &[u8],
        tally: Option<&Slot>,
    ) -> Result<(), WriteFailure> {
        let mut written = 0;
        self.write_rotating(data, &mut written, tally)
            .map_err(|error| {
                self.file = None;
                self.resting = false;
                WriteFailure { written, error }
            })
    }

    /// Notices a change made to the active file by another process since logd last wrote it:
    /// its size is not the one logd keeps (one `fstat(2)`, which the disk writer makes once per
    /// batch, not per write). Truncated (logrotate's `copytruncate`, `: > PATH`) or appended to,
    /// the file goes on from its real end: the file is opened `O_APPEND`, so logd's writes land
    /// there anyway (no hole), and the size, the position given to readers and the cap now
    /// count the file as it is. Returns what changed, for the caller to report; `None` when
    /// nothing did, or the file is closed, or cannot be looked at (the write that follows
    /// reports that).
    pub fn resync(&mut self) -> Option<OutsideChange> {
        // A resting file is looked at when it wakes.
        let file = self.file.as_ref()?;
        let found = nix::sys::stat::fstat(file).ok()?.st_size.max(0) as u64;
        if found == self.size {
            return None;
        }
        let expected = self.size;
        // A newline the cut could use lies in what is left, or nowhere: read it again (the
        // last `NEWLINE_WINDOW` bytes, only on this rare path).
        self.newline_end = tail_newline_end(file, found).unwrap_or(0);
        self.size = found;
        Some(OutsideChange {
            expected,
            found,
            replaced: false,
        })
    }

    /// False after a failed write or rotation, until [`reopen`](Self::reopen) succeeds. A
    /// resting file is healthy.
    pub fn is_healthy(&self) -> bool {
        self.file.is_some() || self.resting
    }

    /// Reopens the active file after a failure, with the same rules as [`open`](Self::open) but
    /// never truncating. The caller decides when to retry (backoff); this never retries by itself.
    pub fn reopen(&mut self) -> Result<(), RotateError> {
        self.open_active().map(drop)
    }

    /// [`reopen`](Self::reopen), returning the size the active file was found at.
    fn open_active(&mut self) -> Result<u64, RotateError> {
        self.file = None;
        self.resting = false;
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
        Ok(size)
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

    fn write_rotating(
        &mut self,
        mut rest: &[u8],
        written: &mut usize,
        tally: Option<&Slot>,
    ) -> Result<(), RotateError> {
        if !rest.is_empty() && self.resting {
            // A caller that reports outside changes wakes the file itself first.
            self.wake()?;
        }
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
                return self.append(rest, written, tally);
            }
            // `room < rest.len()`, so it fits in a usize.
            let take = self.cut_len(rest, room as usize);
            self.append(&rest[..take], written, tally)?;
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
    fn append(
        &mut self,
        mut buf: &[u8],
        written: &mut usize,
        tally: Option<&Slot>,
    ) -> Result<(), RotateError> {
        while !buf.is_empty() {
            let Some(file) = self.file.as_mut() else {
                return Err(RotateError::Closed {
                    path: self.path.to_path_buf(),
                });
            };
            if let Some(t) = tally {
                t.writing(self.inode, self.size, buf.len());
            }
            let res = file.write(buf);
            if let Some(t) = tally {
                match res {
                    Ok(n) if n > 0 => t.wrote(n),
                    _ => t.wrote_nothing(),
                }
            }
            match res {
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
        self.resting = false;
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

/// What another process did to a log between a re-exec's state and a guardian's take-over
/// ([`RotatingFile::restore_after_go`]), as the files show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaughtUp {
    /// Rotations it made (counted in the file's `rotations`).
    pub rotations: u64,
    /// Bytes it wrote to the log's files.
    pub written: u64,
    /// False when the carried file was not found (rotated out, or there was none): both
    /// figures are then lower bounds.
    pub exact: bool,
}

/// The active file's size changed behind logd's back ([`RotatingFile::resync`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutsideChange {
    /// The size logd had written it to.
    pub expected: u64,
    /// The size it has.
    pub found: u64,
    /// Another file is at the log's path: the one logd wrote was removed or renamed while the
    /// log was resting ([`RotatingFile::wake`]), and logd went on in the one found (or made).
    pub replaced: bool,
}

impl OutsideChange {
    /// Smaller than logd left it: bytes logd wrote were removed from the log (logrotate's
    /// `copytruncate` copies them elsewhere first; logd cannot know).
    pub fn is_truncation(&self) -> bool {
        !self.replaced && self.found < self.expected
    }
}

/// A write refused for want of space (the file system's or the user's quota).
fn is_full(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno) if libc_errno == nix::errno::Errno::ENOSPC as i32
            || libc_errno == nix::errno::Errno::EDQUOT as i32
    )
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
