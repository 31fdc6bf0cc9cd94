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
//!
//! The parts:
//! - `writer`: [`RotatingFile`], the active file: its writes, its cuts and its rotation step;
//! - `files`: how each file of a log is opened, checked, renamed and removed in its directory;
//! - `names`: the family of names a log uses (`PATH`, `PATH.N`, `PATH.rotating`);
//! - `reader`: [`read_log`] and [`end_position`], which read across the rotated files.

use std::io;
use std::path::PathBuf;

use logd_protocol::Position;

mod files;
mod names;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

pub use files::remove_all;
pub use names::{backup_path, family_base};
pub use reader::{end_position, read_log, ReadOutcome};
pub use writer::{CaughtUp, OutsideChange, RotatingFile};

/// The most backups a log keeps. A rotation renames each of them, so this bounds its cost.
pub const MAX_BACKUPS: u32 = 32;

/// How far before `max_size` a newline may lie and still be chosen as the cut point.
pub const NEWLINE_WINDOW: u64 = 80;

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
    /// A position in none of the log's files, that cannot be told rotated away: its birth time
    /// is not older than the oldest file's, or it has none (the short form, `INODE:OFFSET`).
    #[error(
        "position {position} is in none of the files of log {path} (a position in a file rotated \
         away is told by its birth time, INODE:OFFSET:BIRTH)"
    )]
    UnknownPosition { path: PathBuf, position: Position },
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
