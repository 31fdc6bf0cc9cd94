//! The family of names one log uses in its directory: the active file `NAME`, its backups
//! `NAME.0` (newest) … `NAME.{N-1}`, and `NAME.rotating`, where a rotation prepares the next
//! active file. A log claims them all, since its rotation renames and removes them.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use super::RotateError;
use crate::datapath::logdir::LogDir;

/// The longest file name Linux file systems take (`NAME_MAX`), used where the directory's own
/// limit cannot be asked.
pub(super) const NAME_MAX: usize = 255;

/// Refuses a log whose rotation would need a name longer than its directory takes: the
/// temporary name (`NAME.rotating`) and the oldest backup (`NAME.N-1`).
pub(super) fn check_derived_names(
    dir: &LogDir,
    name: &OsStr,
    max_backups: u32,
) -> Result<(), RotateError> {
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

/// `PATH.index`: the path of a backup (0 is the newest).
pub fn backup_path(path: &Path, index: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// `NAME.index`: the name of a backup in the log's directory.
pub(super) fn backup_name(name: &OsStr, index: u32) -> OsString {
    let mut n = name.to_owned();
    n.push(format!(".{index}"));
    n
}

/// Where a rotation prepares the next active file. Not a `NAME.N` name, so readers never see it.
pub(super) fn fresh_name(name: &OsStr) -> OsString {
    let mut n = name.to_owned();
    n.push(".rotating");
    n
}
