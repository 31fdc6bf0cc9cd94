//! Who may do what on a console: every subscriber gets a [`Role`] when it connects, from the
//! console's [`Access`] settings and what logd knows of the peer.
//!
//! A console is root access to its guest, so the defaults err on the safe side:
//! - a **plain TCP** subscriber cannot be told apart from any other local user: it is read-only,
//!   unless the console opts in with `tcp_write`;
//! - a **UNIX** subscriber is judged by its credentials (`SO_PEERCRED`, and its supplementary
//!   groups from `SO_PEERGROUPS`) against the console's lists. Root and logd's own uid are always
//!   read-write (they own the guest's socket anyway); anyone else must be named in `read_write`
//!   or `read_only`, or is refused.
//!
//! Names in the lists are resolved to numbers when the console is added, on the blocking pool
//! ([`Access::resolve`]): the console's thread never waits on NSS to decide a role. The console
//! (`console/mod.rs`) asks [`Access::role_of`] at each accept.
#![allow(unsafe_code)] // one block: getsockopt(SO_PEERGROUPS) into a buffer of ours

use std::os::fd::{AsFd, AsRawFd};

use serde::{Deserialize, Serialize};

pub(crate) use logd_protocol::admin::Role;

/// One entry of a role's list: a user or a group (`@NAME`), by name or by number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Principal {
    /// As written: `alice`, `1000`, `@wheel`, `@10`.
    pub(crate) written: String,
    /// A group (`@…`), else a user.
    pub(crate) group: bool,
    /// The uid or gid: at once for a number, once resolved ([`Access::resolve`]) for a name.
    pub(crate) id: Option<u32>,
}

impl Principal {
    /// Reads one entry, without resolving names.
    pub(crate) fn parse(text: &str) -> Result<Principal, String> {
        let (group, name) = match text.strip_prefix('@') {
            Some(n) => (true, n),
            None => (false, text),
        };
        let what = if group { "group" } else { "user" };
        if name.is_empty()
            || name.len() > 256
            || name
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == ':' || c == ',')
        {
            return Err(format!(
                "invalid {what} {text:?}: a name or a number{}",
                if group { " after '@'" } else { "" }
            ));
        }
        Ok(Principal {
            written: text.to_owned(),
            group,
            id: name.parse().ok(),
        })
    }

    /// The name part (after `@` for a group).
    fn name(&self) -> &str {
        self.written.strip_prefix('@').unwrap_or(&self.written)
    }
}

/// A console's access settings. The default is the safe one: TCP read-only, no lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Access {
    /// Plain TCP subscribers are read-write (any local user who reaches the port can type).
    pub(crate) tcp_write: bool,
    /// UNIX peers allowed to type (and to hold the write lock).
    pub(crate) read_write: Vec<Principal>,
    /// UNIX peers allowed to watch.
    pub(crate) read_only: Vec<Principal>,
}

/// A console as asked for: the request's spec, and the access settings the spec has no room
/// for (`ConsoleSpec` is encoded by position and never changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsoleRequest {
    pub(crate) spec: logd_protocol::ConsoleSpec,
    pub(crate) access: Access,
    /// What subscribers are told, and whether the log is marked.
    pub(crate) notices: crate::console::Notices,
    /// The TLS listener, as asked for.
    pub(crate) tls: Option<crate::console::tls::TlsRequest>,
}

impl ConsoleRequest {
    /// A spec with the default access.
    pub(crate) fn plain(spec: logd_protocol::ConsoleSpec) -> Self {
        ConsoleRequest {
            spec,
            access: Access::default(),
            notices: Default::default(),
            tls: None,
        }
    }
}

/// Why a name in a list could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AccessError {
    #[error("{list}: {reason}")]
    Parse { list: &'static str, reason: String },
    #[error("{list}: no {what} named {name:?} on this host")]
    Unknown {
        list: &'static str,
        what: &'static str,
        name: String,
    },
    #[error("{list}: cannot look up {what} {name:?}: {source}")]
    Lookup {
        list: &'static str,
        what: &'static str,
        name: String,
        source: nix::Error,
    },
}

/// A UNIX peer, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cred {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Supplementary groups (`SO_PEERGROUPS`).
    pub(crate) groups: Vec<u32>,
}

impl Access {
    /// The settings from their written form (`logdctl console add` options, config keys).
    pub(crate) fn from_lists(
        tcp_write: bool,
        read_write: &[String],
        read_only: &[String],
    ) -> Result<Access, AccessError> {
        let parse = |list: &'static str, v: &[String]| {
            v.iter()
                .map(|t| Principal::parse(t).map_err(|reason| AccessError::Parse { list, reason }))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Access {
            tcp_write,
            read_write: parse("read_write", read_write)?,
            read_only: parse("read_only", read_only)?,
        })
    }

    /// A list as written.
    pub(crate) fn written(list: &[Principal]) -> Vec<String> {
        list.iter().map(|p| p.written.clone()).collect()
    }

    /// The same settings as written (names compare as written, resolved or not).
    pub(crate) fn same_settings(&self, other: &Access) -> bool {
        self.tcp_write == other.tcp_write
            && Access::written(&self.read_write) == Access::written(&other.read_write)
            && Access::written(&self.read_only) == Access::written(&other.read_only)
    }

    /// Whether the lists name anyone: then other users must be able to reach the UNIX socket
    /// (mode 0666), and logd decides.
    pub(crate) fn has_lists(&self) -> bool {
        !self.read_write.is_empty() || !self.read_only.is_empty()
    }

    /// Resolves the names in the lists to numbers. It may block (NSS): run it on the blocking
    /// pool. A name unknown on this host is refused.
    pub(crate) fn resolve(&mut self) -> Result<(), AccessError> {
        for (list, entries) in [
            ("read_write", &mut self.read_write),
            ("read_only", &mut self.read_only),
        ] {
            for p in entries.iter_mut().filter(|p| p.id.is_none()) {
                let name = p.name().to_owned();
                let what = if p.group { "group" } else { "user" };
                let lookup = |source| AccessError::Lookup {
                    list,
                    what,
                    name: name.clone(),
                    source,
                };
                let id = if p.group {
                    nix::unistd::Group::from_name(&name)
                        .map_err(lookup)?
                        .map(|g| g.gid.as_raw())
                } else {
                    nix::unistd::User::from_name(&name)
                        .map_err(lookup)?
                        .map(|u| u.uid.as_raw())
                };
                p.id = Some(id.ok_or(AccessError::Unknown { list, what, name })?);
            }
        }
        Ok(())
    }

    /// The role of a plain TCP subscriber.
    pub(crate) fn tcp_role(&self) -> Role {
        if self.tcp_write {
            Role::ReadWrite
        } else {
            Role::ReadOnly
        }
    }

    /// The role of a UNIX peer, or None: refused. Root and `daemon_uid` are read-write; then
    /// `read_write`, then `read_only`, by uid or by any of the peer's groups.
    pub(crate) fn role_of(&self, cred: &Cred, daemon_uid: u32) -> Option<Role> {
        if cred.uid == 0 || cred.uid == daemon_uid {
            return Some(Role::ReadWrite);
        }
        let named = |list: &[Principal]| {
            list.iter().any(|p| match (p.group, p.id) {
                (false, Some(uid)) => uid == cred.uid,
                (true, Some(gid)) => gid == cred.gid || cred.groups.contains(&gid),
                (_, None) => false,
            })
        };
        if named(&self.read_write) {
            Some(Role::ReadWrite)
        } else if named(&self.read_only) {
            Some(Role::ReadOnly)
        } else {
            None
        }
    }
}

/// Most supplementary groups read from a peer (Linux's `NGROUPS_MAX` is 65,536; past this many,
/// the peer's groups are taken from its primary gid alone).
const MAX_PEER_GROUPS: usize = 1024;

/// A UNIX peer's credentials: uid and gid (`SO_PEERCRED`, taken when it connected) and its
/// supplementary groups (`SO_PEERGROUPS`, Linux 4.13; none where it is unsupported).
pub(crate) fn peer_cred(sock: &tokio::net::UnixStream) -> std::io::Result<Cred> {
    let c = sock.peer_cred()?;
    Ok(Cred {
        uid: c.uid(),
        gid: c.gid(),
        groups: peer_groups(sock).unwrap_or_default(),
    })
}

fn peer_groups(sock: impl AsFd) -> std::io::Result<Vec<u32>> {
    let mut groups = vec![0 as nix::libc::gid_t; MAX_PEER_GROUPS];
    let mut len = (groups.len() * std::mem::size_of::<nix::libc::gid_t>()) as nix::libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `groups`, a buffer of ours of exactly
    // that many bytes, and sets `len` to what it wrote; the fd is borrowed, so open.
    let r = unsafe {
        nix::libc::getsockopt(
            sock.as_fd().as_raw_fd(),
            nix::libc::SOL_SOCKET,
            nix::libc::SO_PEERGROUPS,
            groups.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    groups.truncate(len as usize / std::mem::size_of::<nix::libc::gid_t>());
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(rw: &[&str], ro: &[&str]) -> Access {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut a = Access::from_lists(false, &s(rw), &s(ro)).unwrap();
        a.resolve().unwrap();
        a
    }

    fn cred(uid: u32, gid: u32, groups: &[u32]) -> Cred {
        Cred {
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn with_no_lists_only_root_and_the_daemons_uid_are_served() {
        let a = Access::default();
        assert_eq!(a.role_of(&cred(0, 0, &[]), 1000), Some(Role::ReadWrite));
        assert_eq!(
            a.role_of(&cred(1000, 1000, &[]), 1000),
            Some(Role::ReadWrite)
        );
        assert_eq!(a.role_of(&cred(65534, 65534, &[]), 1000), None);
        assert_eq!(a.tcp_role(), Role::ReadOnly);
        assert!(!a.has_lists());
    }

    #[test]
    fn lists_match_uids_primary_and_supplementary_groups_read_write_first() {
        let a = lists(&["1001", "@2000"], &["1001", "1002", "@3000", "root"]);
        assert!(a.has_lists());
        assert_eq!(a.role_of(&cred(1001, 1, &[]), 7), Some(Role::ReadWrite));
        assert_eq!(a.role_of(&cred(1005, 2000, &[]), 7), Some(Role::ReadWrite));
        assert_eq!(
            a.role_of(&cred(1005, 1, &[5, 2000]), 7),
            Some(Role::ReadWrite)
        );
        assert_eq!(a.role_of(&cred(1002, 1, &[]), 7), Some(Role::ReadOnly));
        assert_eq!(a.role_of(&cred(1009, 1, &[3000]), 7), Some(Role::ReadOnly));
        assert_eq!(a.role_of(&cred(1009, 1, &[4000]), 7), None);
    }

    #[test]
    fn names_resolve_and_unknown_or_malformed_ones_are_refused_naming_the_list() {
        let a = lists(&["root", "@root"], &[]);
        assert_eq!(a.read_write[0].id, Some(0));
        assert_eq!(a.read_write[1].id, Some(0));
        let mut a = Access::from_lists(false, &[], &["no-such-user-logd".into()]).unwrap();
        let e = a.resolve().unwrap_err().to_string();
        assert_eq!(
            e,
            "read_only: no user named \"no-such-user-logd\" on this host"
        );
        for bad in ["", "@", "a b", "a,b", "x:y"] {
            let e = Access::from_lists(false, &[bad.into()], &[]).unwrap_err();
            assert!(
                e.to_string().starts_with("read_write: invalid"),
                "{bad:?}: {e}"
            );
        }
        assert_eq!(
            Access::written(&lists(&["@10", "7"], &[]).read_write),
            ["@10", "7"]
        );
    }

    #[test]
    fn a_peers_groups_come_from_the_kernel() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, _b) = tokio::net::UnixStream::pair().unwrap();
            let c = peer_cred(&a).unwrap();
            assert_eq!(c.uid, nix::unistd::geteuid().as_raw());
            let mine = nix::unistd::getgroups().unwrap();
            for g in &c.groups {
                assert!(mine.iter().any(|m| m.as_raw() == *g), "{g}");
            }
        });
    }
}
