//! systemd's fd store, the wire half: `FDSTORE=1` with an fd, `FDSTOREREMOVE=1`, and the names
//! logd gives its fds there (sd_notify(3)). What the fds mean, the record and the re-adoption
//! are [`crate::control::stored`]'s.
//!
//! systemd accepts stored fds only with `FileDescriptorStoreMax=` above 0 in the unit, and
//! passes them back at the next start after the sockets, in `LISTEN_FDS` and `LISTEN_FDNAMES`
//! ([`crate::host::systemd::take_listeners`]).

use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// The longest `FDNAME` systemd takes.
pub(crate) const MAX_FDNAME: usize = 255;

/// The prefix of a stored pipe's name: `logd-pipe-N`.
const PIPE_PREFIX: &str = "logd-pipe-";

/// Whether systemd would take `name` as an `FDNAME`: at most 255 ASCII characters, none a
/// control character or DEL, and no `:` (the separator of `LISTEN_FDNAMES`). As systemd's
/// `fdname_is_valid`; the empty name is valid there, but logd never uses it.
pub(crate) fn fdname_is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FDNAME
        && name.bytes().all(|b| (b' '..0x7f).contains(&b) && b != b':')
}

/// The name of the stored pipe with record id `id`.
pub(crate) fn pipe_name(id: u64) -> String {
    format!("{PIPE_PREFIX}{id}")
}

/// The record id a stored pipe's name carries, if `name` is one (decimal, no sign, no leading
/// zero, so one id has one name).
pub(crate) fn parse_pipe_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PIPE_PREFIX)?;
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Why an fd could not be stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FdStoreError {
    #[error("NOTIFY_SOCKET is not set: no service manager to store fds in")]
    NoSocket,
    #[error(
        "{name:?} is not a valid FDNAME (at most {MAX_FDNAME} printable ASCII characters, no ':')"
    )]
    BadName { name: String },
    #[error("cannot send fd {name:?} to systemd's notify socket: {source}")]
    Send {
        name: String,
        source: std::io::Error,
    },
}

/// Whether a service manager listens (`NOTIFY_SOCKET` is set).
pub(crate) fn available() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Stores `fd` under `name`: `FDSTORE=1`, `FDNAME=name`, the fd in `SCM_RIGHTS`. systemd
/// keeps its own copy; the caller's stays open. `FDPOLL` is left on: systemd drops a pipe's
/// copy by itself once every writer has gone.
pub(crate) fn store(name: &str, fd: BorrowedFd<'_>) -> Result<(), FdStoreError> {
    send(name, &format!("FDSTORE=1\nFDNAME={name}"), Some(fd))
}

/// Removes every fd stored under `name` (`FDSTOREREMOVE=1`). An error is logged: the fd then
/// stays in the store until its pipe's writers have all gone (systemd polls it).
pub(crate) fn remove(name: &str) {
    if let Err(e) = send(name, &format!("FDSTOREREMOVE=1\nFDNAME={name}"), None) {
        tracing::warn!(cause = %e, "cannot remove an fd from systemd's store");
    }
}

/// One message about `name` to the notify socket, with `fd` attached if given.
fn send(name: &str, msg: &str, fd: Option<BorrowedFd<'_>>) -> Result<(), FdStoreError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    if !fdname_is_valid(name) {
        return Err(FdStoreError::BadName {
            name: name.to_owned(),
        });
    }
    let path = std::env::var_os("NOTIFY_SOCKET").ok_or(FdStoreError::NoSocket)?;
    let failed = |e: std::io::Error| FdStoreError::Send {
        name: name.to_owned(),
        source: e,
    };
    let sock = UnixDatagram::unbound().map_err(failed)?;
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(abstract_name) => UnixAddr::new_abstract(abstract_name),
        None => UnixAddr::new(Path::new(&path)),
    }
    .map_err(|e| failed(e.into()))?;
    let fds = fd.map(|fd| [fd.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage<'_>> = fds.iter().map(|f| ControlMessage::ScmRights(f)).collect();
    sendmsg(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(msg.as_bytes())],
        &cmsgs,
        // Never wait for room in systemd's queue: the pipe is then not stored (and logged).
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        Some(&addr),
    )
    .map_err(|e| failed(e.into()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdnames_follow_systemds_rules() {
        assert!(fdname_is_valid("logd-pipe-1"));
        assert!(fdname_is_valid("main"));
        assert!(fdname_is_valid("a b~!"));
        assert!(fdname_is_valid(&"x".repeat(255)));
        assert!(!fdname_is_valid(&"x".repeat(256)));
        assert!(!fdname_is_valid(""));
        assert!(!fdname_is_valid("a:b"), "':' separates LISTEN_FDNAMES");
        assert!(!fdname_is_valid("a\nb"));
        assert!(!fdname_is_valid("a\tb"));
        assert!(!fdname_is_valid("a\x7fb"));
        assert!(!fdname_is_valid("é"), "ASCII only");
    }

    #[test]
    fn pipe_names_round_trip_and_nothing_else_parses() {
        for id in [0, 1, 42, u64::MAX] {
            let name = pipe_name(id);
            assert!(fdname_is_valid(&name), "{name}");
            assert_eq!(parse_pipe_name(&name), Some(id));
        }
        for other in [
            "main",
            "admin",
            "virtlogd.socket",
            "logd-pipe-",
            "logd-pipe-01",
            "logd-pipe--1",
            "logd-pipe-+1",
            "logd-pipe-1x",
            "logd-pipe-18446744073709551616",
            "logd-pipe-1 ",
        ] {
            assert_eq!(parse_pipe_name(other), None, "{other}");
        }
    }

    #[test]
    fn storing_refuses_a_bad_name_before_anything_is_sent() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        use std::os::fd::AsFd;
        assert!(matches!(
            store("a:b", r.as_fd()),
            Err(FdStoreError::BadName { .. })
        ));
    }
}
