//! The consoles declared in the config file: its `[[console]]` tables, read and checked with
//! the rest of the file ([`crate::host::config`]), and created by the daemon at start, at a
//! re-exec and at SIGHUP ([`crate::control::declared`]).
//!
//! Each key is the `logdctl console add` option of the same name (`--guest-listen` is
//! `guest_listen`), so a console moves between the command line and the file unchanged. An
//! entry passes the checks a request passes ([`crate::serve::checks::console_lexical`]), at
//! load, and entries that would collide with each other (same console, TCP port, socket or log)
//! are refused there too: a file that loads is one logd can apply in full, unless something
//! outside it (a taken port) is in the way.

use std::collections::HashMap;

use logd_protocol::{ConsoleProtocol, ConsoleSpec, DomainId, GuestSide, Uuid, WritePolicy};
use serde::{Deserialize, Serialize};

use crate::console::access::AccessError;
use crate::console::tls::{Anonymous, TlsRequest};
use crate::console::{Access, ConsoleConfig, ConsoleRequest, GuestPlan, Notices};
use crate::host::paths::PathPolicy;

/// Most `[[console]]` tables in one file: each costs a few fds and a domain actor, and start-up
/// creates them one by one.
pub(crate) const MAX_DECLARED: usize = 1024;

/// One `[[console]]` table as written. The persisted consoles file
/// ([`crate::host::persisted`]) writes the same tables ([`ConsoleEntry::from_request`]), leaving
/// out what is the default.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsoleEntry {
    domain: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    driver: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<String>,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    guest_listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guest_connect: Option<String>,
    /// Accepted only to be refused with a reason (see [`request_of`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    guest_fd: Option<toml::Value>,
    log: String,
    #[serde(default, skip_serializing_if = "is_false")]
    truncate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp: Option<TcpValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unix: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    telnet: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    write: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay: Option<super::size::SizeValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_subscribers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_limit: Option<super::size::SizeValue>,
    /// Plain TCP subscribers may type (`--tcp-write`).
    #[serde(default, skip_serializing_if = "is_false")]
    tcp_write: bool,
    /// UNIX subscribers that may type: user names, uids, `@GROUP`, `@GID` (`--read-write`).
    #[serde(skip_serializing_if = "Option::is_none")]
    read_write: Option<Vec<String>>,
    /// UNIX subscribers that may watch (`--read-only`).
    #[serde(skip_serializing_if = "Option::is_none")]
    read_only: Option<Vec<String>>,
    /// Subscribers get logd's notices (`false`: `--no-notices`).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    notices: bool,
    /// The guest's comings and goings are marked in the log (`--mark-log`).
    #[serde(default, skip_serializing_if = "is_false")]
    mark_log: bool,
    /// A TLS listener for subscribers, as `tcp` (`--tls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<TcpValue>,
    /// Its credentials, in QEMU's `tls-creds-x509` layout (`--tls-dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_dir: Option<String>,
    /// TLS clients that may type: certificate subjects (`--tls-read-write`).
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_read_write: Option<Vec<String>>,
    /// TLS clients that may watch (`--tls-read-only`).
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_read_only: Option<Vec<String>>,
    /// A TLS client without a certificate: `"refuse"` or `"read-only"` (`--tls-anonymous`).
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_anonymous: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

fn yes() -> bool {
    true
}

impl ConsoleEntry {
    /// The table that reads back as `req` ([`request_of`]), with the defaults left out: the
    /// driver `qemu`, the UUID derived from the driver and the name, `write = "exclusive"`, no
    /// `tcp_write`, no lists, notices on, no marks. `guest_fd` has no key: such a spec is never written (the caller
    /// refuses it).
    pub(crate) fn from_request(req: &ConsoleRequest) -> ConsoleEntry {
        let (spec, access) = (&req.spec, &req.access);
        let list =
            |l: &[crate::console::access::Principal]| (!l.is_empty()).then(|| Access::written(l));
        let d = &spec.domain;
        let derived = DomainId::from_name(&d.driver, &d.name).uuid;
        let (guest_listen, guest_connect) = match &spec.guest {
            GuestSide::Listen { path } => (Some(path.clone()), None),
            GuestSide::Connect { path } => (None, Some(path.clone())),
            GuestSide::Fd => (None, None),
        };
        ConsoleEntry {
            domain: d.name.clone(),
            driver: (d.driver != "qemu").then(|| d.driver.clone()),
            uuid: (d.uuid != derived).then(|| d.uuid.to_string()),
            name: spec.name.clone(),
            guest_listen,
            guest_connect,
            guest_fd: None,
            log: spec.log.clone(),
            truncate: spec.truncate,
            tcp: spec.tcp.clone().map(TcpValue::Text),
            unix: spec.unix.clone(),
            telnet: spec.protocol == ConsoleProtocol::Telnet,
            write: match spec.write {
                WritePolicy::Exclusive => None,
                WritePolicy::Shared => Some("shared".into()),
                WritePolicy::None => Some("none".into()),
            },
            replay: spec.replay.map(super::size::SizeValue::Bytes),
            max_subscribers: spec.max_subscribers,
            queue_limit: spec.queue_limit.map(super::size::SizeValue::Bytes),
            tcp_write: access.tcp_write,
            read_write: list(&access.read_write),
            read_only: list(&access.read_only),
            notices: req.notices.subscribers,
            mark_log: req.notices.mark_log,
            tls: req.tls.as_ref().map(|t| TcpValue::Text(t.addr.clone())),
            tls_dir: req.tls.as_ref().map(|t| t.dir.clone()),
            tls_read_write: (req.tls.as_ref())
                .filter(|t| !t.read_write.is_empty())
                .map(|t| t.read_write.clone()),
            tls_read_only: (req.tls.as_ref())
                .filter(|t| !t.read_only.is_empty())
                .map(|t| t.read_only.clone()),
            tls_anonymous: (req.tls.as_ref())
                .filter(|t| t.anonymous != Anonymous::Refuse)
                .map(|t| t.anonymous.word().to_owned()),
        }
    }

    /// `domain DOMAIN, console NAME`, as written: how a refusal names the table.
    pub(crate) fn label(&self) -> String {
        format!("domain {:?}, console {:?}", self.domain, self.name)
    }
}

/// `tcp`: `"ADDR:PORT"`, `"PORT"` or a bare number (a port on 127.0.0.1).
#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum TcpValue {
    Port(u64),
    Text(String),
}

/// A console's identity: driver, domain UUID, console name.
pub(crate) type Key = (String, Uuid, String);

/// The identity of the console `name` of `domain`.
pub(crate) fn key_of(domain: &DomainId, name: &str) -> Key {
    (domain.driver.clone(), domain.uuid, name.to_owned())
}

/// A console of the file, checked.
#[derive(Debug, Clone)]
pub(crate) struct DeclaredConsole {
    /// What is sent to the registry, as a `logdctl console add` would send it.
    pub(crate) spec: ConsoleSpec,
    /// Its access settings, as written (names not resolved).
    pub(crate) access: Access,
    pub(crate) notices: Notices,
    /// Its TLS listener, as written.
    pub(crate) tls: Option<TlsRequest>,
    /// The same, resolved under the log root of the file that declared it, defaults applied:
    /// what the running console is compared with.
    pub(crate) resolved: ConsoleConfig,
}

impl DeclaredConsole {
    /// The request it stands for.
    pub(crate) fn request(&self) -> ConsoleRequest {
        ConsoleRequest {
            spec: self.spec.clone(),
            access: self.access.clone(),
            notices: self.notices,
            tls: self.tls.clone(),
        }
    }

    /// `vm1/serial0`: how logs, events and errors name a declared console.
    pub(crate) fn label(&self) -> String {
        format!("{}/{}", self.spec.domain.name, self.spec.name)
    }
}

/// Whether two consoles are the same console with the same settings (`truncate` and the
/// rotation aside).
pub(crate) fn same_console(a: &ConsoleConfig, b: &ConsoleConfig) -> bool {
    let guest = |g: &GuestPlan| match g {
        GuestPlan::Listen(p) => (0, Some(p.clone())),
        GuestPlan::Connect(p) => (1, Some(p.clone())),
        GuestPlan::Fd => (2, None),
    };
    a.name == b.name
        && a.domain == b.domain
        && a.log == b.log
        && guest(&a.guest) == guest(&b.guest)
        && a.tcp == b.tcp
        && a.unix == b.unix
        && a.protocol == b.protocol
        && a.write == b.write
        && a.replay == b.replay
        && a.max_subscribers == b.max_subscribers
        && a.queue_limit == b.queue_limit
        && a.access.same_settings(&b.access)
        && a.notices == b.notices
        && a.tls.as_ref().map(|t| &t.settings) == b.tls.as_ref().map(|t| &t.settings)
}

/// Why a `[[console]]` table was refused: which one, which key, why.
#[derive(Debug, thiserror::Error)]
#[error("[[console]] number {number} ({label}): `{key}`: {reason}")]
pub struct EntryError {
    /// 1 for the first table in the file.
    pub number: usize,
    /// `domain DOMAIN, console NAME`, as written.
    pub label: String,
    pub key: &'static str,
    pub reason: String,
}

/// Checks every table, in file order, and refuses collisions between them. Relative paths
/// resolve under `policy`'s root, as a request's do.
pub(crate) fn check_all(
    entries: Vec<ConsoleEntry>,
    policy: &PathPolicy,
) -> Result<Vec<DeclaredConsole>, EntryError> {
    if entries.len() > MAX_DECLARED {
        return Err(EntryError {
            number: MAX_DECLARED + 1,
            label: "and the rest".into(),
            key: "console",
            reason: format!("at most {MAX_DECLARED} consoles may be declared"),
        });
    }
    let mut out: Vec<DeclaredConsole> = Vec::with_capacity(entries.len());
    // What each earlier table took, with its number.
    let mut consoles = HashMap::new();
    let mut domains: HashMap<(String, Uuid), (String, usize)> = HashMap::new();
    let mut ports = HashMap::new();
    let mut sockets = HashMap::new();
    let mut logs = HashMap::new();
    for (i, e) in entries.into_iter().enumerate() {
        let number = i + 1;
        let label = e.label();
        let fail = |key: &'static str, reason: String| EntryError {
            number,
            label: label.clone(),
            key,
            reason,
        };
        let d = check(e, policy).map_err(|(key, reason)| fail(key, reason))?;
        let c = &d.resolved;
        let taken = |what: &str, n: usize| format!("{what} as [[console]] number {n}");
        let dom = (c.domain.driver.clone(), c.domain.uuid);
        if let Some((name, n)) = domains.get(&dom) {
            if *name != c.domain.name {
                return Err(fail(
                    "domain",
                    format!(
                        "the same driver and uuid as domain {name:?} in [[console]] number {n}, \
                         under another name"
                    ),
                ));
            }
        }
        domains.insert(dom.clone(), (c.domain.name.clone(), number));
        if let Some(n) = consoles.insert((dom, c.name.clone()), number) {
            return Err(fail("name", taken("the same domain and console name", n)));
        }
        let tls = c.tls.as_ref().map(|t| ("tls", t.settings.addr.as_str()));
        for (key, addr) in c.tcp.as_deref().map(|a| ("tcp", a)).into_iter().chain(tls) {
            if let Some(port) = tcp_port(addr).filter(|p| *p != 0) {
                if let Some(n) = ports.insert(port, number) {
                    return Err(fail(key, taken(&format!("the same port {port}"), n)));
                }
            }
        }
        let guest = match &c.guest {
            GuestPlan::Listen(p) => Some(("guest_listen", p)),
            GuestPlan::Connect(p) => Some(("guest_connect", p)),
            GuestPlan::Fd => None,
        };
        let unix = c.unix.as_ref().map(|p| ("unix", p));
        for (key, p) in guest.into_iter().chain(unix) {
            if let Some(n) = sockets.insert(p.clone(), number) {
                let what = format!("the same socket {}", p.display());
                return Err(fail(key, taken(&what, n)));
            }
        }
        if let Some(n) = logs.insert(c.log.clone(), number) {
            let what = format!("the same log {}", c.log.display());
            return Err(fail("log", taken(&what, n)));
        }
        out.push(d);
    }
    // A log path that is also a socket path.
    for d in &out {
        if let Some(n) = sockets.get(&d.resolved.log) {
            return Err(EntryError {
                number: logs[&d.resolved.log],
                label: format!("domain {:?}, console {:?}", d.spec.domain.name, d.spec.name),
                key: "log",
                reason: format!("the path is a socket of [[console]] number {n}"),
            });
        }
    }
    Ok(out)
}

/// The port of a checked `ADDR:PORT`.
fn tcp_port(addr: &str) -> Option<u16> {
    addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
}

/// One table: its keys read as `logdctl console add` reads its options, then the request's
/// checks. A refusal names the key.
fn check(e: ConsoleEntry, policy: &PathPolicy) -> Result<DeclaredConsole, (&'static str, String)> {
    let req = request_of(e)?;
    let spec = req.spec.clone();
    // Each path on its own first, so a refusal names its key.
    let guest_path = match &spec.guest {
        GuestSide::Listen { path } => Some(("guest_listen", path)),
        GuestSide::Connect { path } => Some(("guest_connect", path)),
        GuestSide::Fd => None,
    };
    let unix = spec.unix.as_ref().map(|p| ("unix", p));
    for (key, p) in [("log", &spec.log)]
        .into_iter()
        .chain(guest_path)
        .chain(unix)
    {
        crate::serve::checks::resolve_path(policy, p).map_err(|w| (key, w.message))?;
    }
    if let Some(t) = &req.tls {
        crate::serve::checks::resolve_dir(policy, &t.dir).map_err(|w| ("tls_dir", w.message))?;
    }
    let (access, notices, tls) = (req.access.clone(), req.notices, req.tls.clone());
    let resolved = crate::serve::checks::console_lexical(policy, req)
        .map_err(|w| (key_named_in(&w.message), w.message))?;
    Ok(DeclaredConsole {
        spec,
        access,
        notices,
        tls,
        resolved,
    })
}

/// One table read as `logdctl console add` reads its options, into the request it would send;
/// the checks that need no path policy (the domain, the guest side, `write`, the sizes' syntax,
/// the lists' syntax: their names are resolved when the console is made). A refusal names the
/// key.
pub(crate) fn request_of(e: ConsoleEntry) -> Result<ConsoleRequest, (&'static str, String)> {
    let driver = e.driver.unwrap_or_else(|| "qemu".into());
    let mut domain = DomainId::from_name(&driver, &e.domain);
    if let Some(u) = &e.uuid {
        domain.uuid =
            Uuid::parse_str(u).map_err(|err| ("uuid", format!("invalid UUID {u:?}: {err}")))?;
    }
    crate::serve::checks::check_domain(&domain).map_err(|w| {
        let d = &domain.driver;
        let key = if d.is_empty()
            || d.len() > logd_protocol::MAX_NAME_LEN
            || d.chars().any(char::is_control)
        {
            "driver"
        } else if domain.uuid.is_nil() {
            "uuid"
        } else {
            "domain"
        };
        (key, w.message)
    })?;
    if e.guest_fd.is_some() {
        return Err((
            "guest_fd",
            "a declared console has no command to hand the guest's end of a socketpair to; \
             use guest_listen (QEMU connects to logd) or guest_connect (logd connects to QEMU)"
                .into(),
        ));
    }
    let guest = match (e.guest_listen, e.guest_connect) {
        (Some(path), None) => GuestSide::Listen { path },
        (None, Some(path)) => GuestSide::Connect { path },
        (Some(_), Some(_)) => {
            return Err((
                "guest_connect",
                "give either guest_listen or guest_connect, not both".into(),
            ))
        }
        (None, None) => {
            return Err((
                "guest_listen",
                "say how the guest is reached: guest_listen = \"PATH\" or guest_connect = \
                 \"PATH\""
                    .into(),
            ))
        }
    };
    let write = match e.write.as_deref() {
        None | Some("exclusive") => WritePolicy::Exclusive,
        Some("shared") => WritePolicy::Shared,
        Some("none") => WritePolicy::None,
        Some(other) => {
            return Err((
                "write",
                format!("{other:?} is not one of \"exclusive\", \"shared\", \"none\""),
            ))
        }
    };
    let tcp = match e.tcp {
        None => None,
        Some(TcpValue::Text(t)) => Some(t),
        Some(TcpValue::Port(p)) => Some(p.to_string()),
    };
    let size = |key: &'static str, v: Option<super::size::SizeValue>| {
        v.map(|v| v.bytes().map_err(|reason| (key, reason)))
            .transpose()
    };
    let spec = ConsoleSpec {
        domain,
        name: e.name,
        guest,
        log: e.log,
        truncate: e.truncate,
        tcp,
        unix: e.unix,
        protocol: if e.telnet {
            ConsoleProtocol::Telnet
        } else {
            ConsoleProtocol::Raw
        },
        write,
        replay: size("replay", e.replay)?,
        max_subscribers: e.max_subscribers,
        queue_limit: size("queue_limit", e.queue_limit)?,
    };
    let rw = e.read_write.unwrap_or_default();
    let ro = e.read_only.unwrap_or_default();
    let access = Access::from_lists(e.tcp_write, &rw, &ro).map_err(|err| {
        let key = match &err {
            AccessError::Parse { list, .. }
            | AccessError::Unknown { list, .. }
            | AccessError::Lookup { list, .. } => *list,
        };
        (key, err.to_string())
    })?;
    let notices = Notices {
        subscribers: e.notices,
        mark_log: e.mark_log,
    };
    let anonymous = (e.tls_anonymous.as_deref())
        .map(Anonymous::parse)
        .transpose()
        .map_err(|reason| ("tls_anonymous", reason))?;
    let tls = match (e.tls, e.tls_dir) {
        (Some(addr), Some(dir)) => Some(TlsRequest {
            addr: match addr {
                TcpValue::Text(t) => t,
                TcpValue::Port(p) => p.to_string(),
            },
            dir,
            read_write: e.tls_read_write.unwrap_or_default(),
            read_only: e.tls_read_only.unwrap_or_default(),
            anonymous: anonymous.unwrap_or_default(),
        }),
        (Some(_), None) => {
            return Err((
                "tls",
                "tls needs tls_dir: the directory of ca-cert.pem, server-cert.pem and                  server-key.pem"
                    .into(),
            ))
        }
        (None, Some(_)) => return Err(("tls_dir", "tls_dir needs tls, the address".into())),
        (None, None) => {
            for (key, given) in [
                ("tls_read_write", e.tls_read_write.is_some()),
                ("tls_read_only", e.tls_read_only.is_some()),
                ("tls_anonymous", anonymous.is_some()),
            ] {
                if given {
                    return Err((key, format!("{key} needs tls and tls_dir")));
                }
            }
            None
        }
    };
    Ok(ConsoleRequest {
        spec,
        access,
        notices,
        tls,
    })
}

/// The key a request's refusal is about, from its message (the checks name what they refuse).
fn key_named_in(message: &str) -> &'static str {
    for (word, key) in [
        ("TLS address", "tls"),
        ("tls_read_write", "tls_read_write"),
        ("tls_read_only", "tls_read_only"),
        ("console name", "name"),
        ("TCP address", "tcp"),
        ("replay", "replay"),
        ("max_subscribers", "max_subscribers"),
        ("queue_limit", "queue_limit"),
    ] {
        if message.contains(word) {
            return key;
        }
    }
    // The paths were checked one by one before.
    "log"
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn policy() -> PathPolicy {
        PathPolicy::new("/logs".into(), vec!["/srv/vm".into()])
    }

    fn load(text: &str) -> Result<Vec<DeclaredConsole>, String> {
        #[derive(Deserialize)]
        struct F {
            console: Vec<ConsoleEntry>,
        }
        let f: F = toml::from_str(text).map_err(|e| e.to_string())?;
        check_all(f.console, &policy()).map_err(|e| e.to_string())
    }

    const ONE: &str = r#"
[[console]]
domain = "vm1"
name = "serial0"
guest_listen = "vm1/serial0.sock"
log = "vm1/serial0.log"
tcp = 4555
"#;

    #[test]
    fn a_table_reads_as_console_add_would_send_it() {
        let d = load(ONE).unwrap();
        assert_eq!(d.len(), 1);
        let s = &d[0].spec;
        assert_eq!(s.domain, DomainId::from_name("qemu", "vm1"));
        assert_eq!(s.name, "serial0");
        assert_eq!(
            s.guest,
            GuestSide::Listen {
                path: "vm1/serial0.sock".into()
            }
        );
        assert_eq!(s.tcp.as_deref(), Some("4555"));
        assert_eq!(
            (s.protocol, s.write),
            (ConsoleProtocol::Raw, WritePolicy::Exclusive)
        );
        let r = &d[0].resolved;
        assert_eq!(r.log, PathBuf::from("/logs/vm1/serial0.log"));
        assert_eq!(r.tcp.as_deref(), Some("127.0.0.1:4555"));
        assert_eq!(r.replay, crate::console::DEFAULT_REPLAY);
        assert_eq!(d[0].label(), "vm1/serial0");
    }

    #[test]
    fn every_option_of_console_add_has_its_key() {
        let d = load(
            r#"
[[console]]
domain = "vm2"
driver = "xen"
uuid = "6b1e6c3c-0a59-4c3e-9f4b-2f1a2b3c4d5e"
name = "s1"
guest_connect = "/srv/vm/q.sock"
log = "/srv/vm/s1.log"
truncate = true
tcp = "[::1]:0"
unix = "s1.sub"
telnet = true
write = "shared"
replay = "64 KiB"
max_subscribers = 4
queue_limit = 65536
"#,
        )
        .unwrap();
        let s = &d[0].spec;
        assert_eq!(s.domain.driver, "xen");
        assert_eq!(
            s.domain.uuid.to_string(),
            "6b1e6c3c-0a59-4c3e-9f4b-2f1a2b3c4d5e"
        );
        assert!(s.truncate);
        assert_eq!(
            (s.protocol, s.write),
            (ConsoleProtocol::Telnet, WritePolicy::Shared)
        );
        assert_eq!(
            (s.replay, s.max_subscribers, s.queue_limit),
            (Some(65536), Some(4), Some(65536))
        );
        assert_eq!(d[0].resolved.unix, Some(PathBuf::from("/logs/s1.sub")));
        assert_eq!(d[0].resolved.tcp.as_deref(), Some("[::1]:0"));
    }

    #[test]
    fn the_tls_keys_read_as_the_tls_options_and_are_checked_naming_the_key() {
        let base = "[[console]]\ndomain = \"vm\"\nname = \"s0\"\nlog = \"s0.log\"\n\
                    guest_listen = \"s0.sock\"\n";
        let d = load(&format!(
            "{base}tls = 4556\ntls_dir = \"pki/\"\ntls_read_write = [\"CN=alice,O=Example\"]\n\
             tls_read_only = [\"CN=bob\"]\ntls_anonymous = \"read-only\"\n"
        ))
        .unwrap();
        let t = d[0].resolved.tls.as_ref().unwrap();
        assert_eq!(t.settings.addr, "127.0.0.1:4556");
        assert_eq!(t.settings.dir, PathBuf::from("/logs/pki"));
        assert_eq!(t.settings.anonymous, Anonymous::ReadOnly);
        assert!(
            t.creds.is_none(),
            "read when the console is made, not at load"
        );
        let r = d[0].request();
        assert_eq!(r.tls.as_ref().unwrap().read_only, ["CN=bob"]);
        for (extra, want) in [
            ("tls = 4556\n", vec!["`tls`", "tls_dir"]),
            ("tls_dir = \"pki\"\n", vec!["`tls_dir`"]),
            ("tls_read_write = [\"CN=a\"]\n", vec!["`tls_read_write`"]),
            (
                "tls = 1\ntls_dir = \"pki\"\ntls_anonymous = \"yes\"\n",
                vec!["`tls_anonymous`", "\"yes\""],
            ),
            (
                "tls = 1\ntls_dir = \"pki\"\ntls_read_only = [\"bob\"]\n",
                vec!["`tls_read_only`", "invalid subject"],
            ),
            (
                "tls = 0\ntls_dir = \"pki\"\n",
                vec!["`tls`", "other than 0"],
            ),
            (
                "tcp = 4556\ntls = 4556\ntls_dir = \"pki\"\n",
                vec!["`tls`", "TCP listener's port"],
            ),
            ("tls = 1\ntls_dir = \"../pki\"\n", vec!["`tls_dir`", ".."]),
        ] {
            refused(&format!("{base}{extra}"), &want);
        }
        // Two tables on one port, TLS or TCP.
        refused(
            &format!(
                "{base}tls = 4556\ntls_dir = \"pki\"\n[[console]]\ndomain = \"vm\"\n\
                      name = \"s1\"\nlog = \"s1.log\"\nguest_listen = \"s1.sock\"\ntcp = 4556\n"
            ),
            &[
                "number 2",
                "`tcp`",
                "the same port 4556 as [[console]] number 1",
            ],
        );
    }

    #[track_caller]
    fn refused(text: &str, want: &[&str]) {
        let e = load(text).unwrap_err();
        for w in want {
            assert!(e.contains(w), "{w:?} not in {e:?}");
        }
    }

    #[test]
    fn a_bad_value_names_the_table_and_the_key() {
        let base = "[[console]]\ndomain = \"vm\"\nname = \"s0\"\nlog = \"s0.log\"\n";
        for (extra, want) in [
            (
                "guest_fd = true\n",
                vec!["number 1", "guest_fd", "guest_listen"],
            ),
            ("", vec!["guest_listen", "say how the guest is reached"]),
            (
                "guest_listen = \"a\"\nguest_connect = \"b\"\n",
                vec!["not both"],
            ),
            ("guest_listen = \"../x\"\n", vec!["guest_listen", ".."]),
            (
                "guest_listen = \"a\"\ntcp = \"localhost:1\"\n",
                vec!["`tcp`"],
            ),
            ("guest_listen = \"a\"\ntcp = 70000\n", vec!["`tcp`"]),
            (
                "guest_listen = \"a\"\nwrite = \"all\"\n",
                vec!["`write`", "\"all\""],
            ),
            (
                "guest_listen = \"a\"\nreplay = \"lots\"\n",
                vec!["`replay`"],
            ),
            (
                "guest_listen = \"a\"\nreplay = \"1 GiB\"\n",
                vec!["`replay`"],
            ),
            (
                "guest_listen = \"a\"\nmax_subscribers = 0\n",
                vec!["`max_subscribers`"],
            ),
            (
                "guest_listen = \"a\"\nqueue_limit = 1\n",
                vec!["`queue_limit`"],
            ),
            ("guest_listen = \"a\"\nuuid = \"nope\"\n", vec!["`uuid`"]),
            (
                "guest_listen = \"a\"\nuuid = \"00000000-0000-0000-0000-000000000000\"\n",
                vec!["`uuid`", "nil"],
            ),
            ("guest_listen = \"a\"\ndriver = \"\"\n", vec!["`driver`"]),
        ] {
            let text = format!("{base}{extra}");
            let e = load(&text).unwrap_err();
            for w in want {
                assert!(e.contains(w), "{extra:?}: {w:?} not in {e:?}");
            }
            assert!(e.contains("\"vm\"") || e.contains("TOML"), "{extra:?}: {e}");
        }
        refused(
            "[[console]]\ndomain = \"vm\"\nname = \"a/b\"\nlog = \"x\"\nguest_listen = \"s\"\n",
            &["`name`", "invalid console name"],
        );
        refused(
            "[[console]]\ndomain = \"vm\"\nname = \"s\"\nlog = \"/etc/x\"\nguest_listen = \"s\"\n",
            &["/etc/x"],
        );
        // An unknown key is the TOML reader's refusal, which names it.
        refused(
            "[[console]]\ndomain = \"vm\"\nname = \"s\"\nlog = \"x\"\nguest_listne = \"s\"\n",
            &["guest_listne"],
        );
    }

    #[test]
    fn collisions_between_tables_are_refused_naming_both() {
        let t = |domain: &str, name: &str, sock: &str, log: &str, extra: &str| {
            format!(
                "[[console]]\ndomain = \"{domain}\"\nname = \"{name}\"\nguest_listen = \
                 \"{sock}\"\nlog = \"{log}\"\n{extra}"
            )
        };
        let a = t(
            "vm",
            "s0",
            "a.sock",
            "a.log",
            "tcp = 4000\nunix = \"a.sub\"\n",
        );
        for (b, want) in [
            (
                t("vm", "s0", "b.sock", "b.log", ""),
                vec!["number 2", "`name`", "number 1"],
            ),
            (
                t("vm", "s1", "b.sock", "b.log", "tcp = \"0.0.0.0:4000\"\n"),
                vec!["`tcp`", "4000"],
            ),
            (
                t("vm", "s1", "a.sock", "b.log", ""),
                vec!["`guest_listen`", "a.sock"],
            ),
            (
                t("vm", "s1", "b.sock", "b.log", "unix = \"/logs/a.sub\"\n"),
                vec!["`unix`"],
            ),
            (
                t("vm2", "s1", "a.sub", "b.log", ""),
                vec!["`guest_listen`", "a.sub"],
            ),
            (
                t("vm2", "s0", "b.sock", "/logs/a.log", ""),
                vec!["`log`", "a.log"],
            ),
            (
                t("vm2", "s0", "b.sock", "a.sock", ""),
                vec!["`log`", "socket"],
            ),
            (
                t(
                    "vm2",
                    "s0",
                    "b.sock",
                    "b.log",
                    &format!("uuid = \"{}\"\n", DomainId::from_name("qemu", "vm").uuid),
                ),
                vec!["`domain`", "another name"],
            ),
        ] {
            let e = load(&format!("{a}{b}")).unwrap_err();
            for w in want {
                assert!(e.contains(w), "{b:?}: {w:?} not in {e:?}");
            }
        }
        // Port 0 twice is fine (each picks its own), and the same console name in two domains.
        load(&format!(
            "{}{}",
            t("vm", "s0", "a.sock", "a.log", "tcp = 0\n"),
            t("vm2", "s0", "b.sock", "b.log", "tcp = 0\n")
        ))
        .unwrap();
    }

    #[test]
    fn a_change_of_any_setting_but_truncate_is_a_change() {
        let one = &load(ONE).unwrap()[0];
        assert!(same_console(&one.resolved, &one.resolved));
        let truncated = &load(&format!("{ONE}truncate = true\n")).unwrap()[0];
        assert!(same_console(&one.resolved, &truncated.resolved));
        // Writing a default out is no change.
        let explicit = &load(&format!("{ONE}replay = 16384\nwrite = \"exclusive\"\n")).unwrap()[0];
        assert!(same_console(&one.resolved, &explicit.resolved));
        for extra in [
            "replay = 0\n",
            "telnet = true\n",
            "write = \"none\"\n",
            "max_subscribers = 2\n",
            "queue_limit = 8192\n",
            "unix = \"u.sock\"\n",
        ] {
            let other = &load(&format!("{ONE}{extra}")).unwrap()[0];
            assert!(!same_console(&one.resolved, &other.resolved), "{extra}");
        }
        let moved = &load(&ONE.replace("tcp = 4555", "tcp = 4556")).unwrap()[0];
        assert!(!same_console(&one.resolved, &moved.resolved));
        let relog = &load(&ONE.replace("serial0.log", "s.log")).unwrap()[0];
        assert!(!same_console(&one.resolved, &relog.resolved));
    }

    #[test]
    fn more_than_max_declared_tables_are_refused() {
        let mut text = String::new();
        for i in 0..=MAX_DECLARED {
            text.push_str(&format!(
                "[[console]]\ndomain = \"vm{i}\"\nname = \"s\"\nguest_listen = \"{i}.sock\"\nlog = \"{i}.log\"\n"
            ));
        }
        refused(&text, &["at most 1024"]);
    }
}
