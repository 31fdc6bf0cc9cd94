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
    parse_id(name.strip_prefix(PIPE_PREFIX)?)
}

/// The prefix of a stored console socket's name: `logd-con-N-KIND`.
const CONSOLE_PREFIX: &str = "logd-con-";

/// Which of a console's sockets a stored fd is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ConsoleFd {
    /// The UNIX socket logd listens on for the guest (`--guest-listen`).
    GuestListener,
    /// The live connection to the guest's chardev (any guest side).
    Guest,
    /// The subscribers' TCP listener.
    Tcp,
    /// The subscribers' UNIX listener.
    Unix,
}

impl ConsoleFd {
    pub(crate) const ALL: [ConsoleFd; 4] = [
        ConsoleFd::GuestListener,
        ConsoleFd::Guest,
        ConsoleFd::Tcp,
        ConsoleFd::Unix,
    ];

    fn word(self) -> &'static str {
        match self {
            ConsoleFd::GuestListener => "listen",
            ConsoleFd::Guest => "guest",
            ConsoleFd::Tcp => "tcp",
            ConsoleFd::Unix => "unix",
        }
    }
}

/// The name of a stored console socket: `logd-con-ID-KIND`.
pub(crate) fn console_name(id: u64, kind: ConsoleFd) -> String {
    format!("{CONSOLE_PREFIX}{id}-{}", kind.word())
}

/// A stored fd logd knows by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoredName {
    Pipe(u64),
    Console(u64, ConsoleFd),
}

/// What a stored fd's name says it is, if logd gave it.
pub(crate) fn parse_name(name: &str) -> Option<StoredName> {
    if let Some(id) = parse_pipe_name(name) {
        return Some(StoredName::Pipe(id));
    }
    let rest = name.strip_prefix(CONSOLE_PREFIX)?;
    let (digits, word) = rest.split_once('-')?;
    let kind = ConsoleFd::ALL.into_iter().find(|k| k.word() == word)?;
    Some(StoredName::Console(parse_id(digits)?, kind))
}

/// A decimal id with no sign and no leading zero, so one id has one name.
fn parse_id(digits: &str) -> Option<u64> {
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
    fn console_names_round_trip_and_nothing_else_parses() {
        for id in [0, 7, u64::MAX] {
            for kind in ConsoleFd::ALL {
                let name = console_name(id, kind);
                assert!(fdname_is_valid(&name), "{name}");
                assert_eq!(parse_name(&name), Some(StoredName::Console(id, kind)));
            }
        }
        assert_eq!(parse_name("logd-pipe-3"), Some(StoredName::Pipe(3)));
        for other in [
            "logd-con-",
            "logd-con-1",
            "logd-con-1-",
            "logd-con--guest",
            "logd-con-01-guest",
            "logd-con-1-Guest",
            "logd-con-1-guest-",
            "logd-con-x-tcp",
            "main",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
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
