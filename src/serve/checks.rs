//! The checks a request's fields pass before the registry sees them: a domain's identity, the
//! sizes of a read and an append, a client's path (resolved by the path policy, then checked on
//! disk), and a console's spec.
//!
//! They answer a refusal as the `WireError` the client is told; the virtlogd socket translates
//! it into libvirt's error.

use std::path::{Path, PathBuf};

use logd_protocol::{
    ConsoleOption, ConsoleSpec, DomainId, ErrorCode, GuestSide, WireError, MAX_APPEND_LEN,
    MAX_NAME_LEN, MAX_READ_LEN,
};

use crate::console::{self, Access, ConsoleConfig, ConsoleRequest, GuestPlan};
use crate::datapath::rotate::RotateConfig;
use crate::host::paths::{PathError, PathPolicy};

/// Resolves a client's path and checks it on disk (off the event loop).
pub(crate) async fn checked_path(raw: &str, create_dirs: bool) -> Result<PathBuf, WireError> {
    let policy = crate::host::paths::current().expect("the daemon installs a path policy");
    let path = resolve_path(&policy, raw)?;
    let p = path.clone();
    tokio::task::spawn_blocking(move || check_on_disk(&policy, &p, create_dirs))
        .await
        .map_err(|_| WireError::new(ErrorCode::Internal, "path check panicked"))??;
    Ok(path)
}

/// The lexical half of [`checked_path`]: `raw` mapped under a root by `policy`, or refused.
pub(crate) fn resolve_path(policy: &PathPolicy, raw: &str) -> Result<PathBuf, WireError> {
    policy.resolve(raw).map_err(path_error)
}

/// The file-system half of [`checked_path`] (it may block): no symlink below the root,
/// directories where directories belong; missing ones made with `create_dirs`.
fn check_on_disk(policy: &PathPolicy, path: &Path, create_dirs: bool) -> Result<(), WireError> {
    policy.check_fs(path, create_dirs).map_err(path_error)
}

/// A path refused by the policy is `PathRefused`; one the file system would not let logd
/// inspect or create is `Io`.
fn path_error(e: PathError) -> WireError {
    let code = match e {
        PathError::CreateDir { .. } | PathError::Stat { .. } => ErrorCode::Io,
        _ => ErrorCode::PathRefused,
    };
    WireError::new(code, e.to_string())
}

/// A domain's identity: a name and a driver of 1 to [`MAX_NAME_LEN`] bytes without control
/// characters, and a UUID other than the nil one.
pub(crate) fn check_domain(d: &DomainId) -> Result<(), WireError> {
    let bad = |m: String| Err(WireError::new(ErrorCode::InvalidArgument, m));
    if d.name.is_empty() {
        return bad("empty domain name".into());
    }
    if d.name.len() > MAX_NAME_LEN || d.driver.len() > MAX_NAME_LEN {
        return bad(format!(
            "domain name or driver longer than {MAX_NAME_LEN} bytes"
        ));
    }
    if d.driver.is_empty() {
        return bad("empty driver name".into());
    }
    if d.name.chars().any(char::is_control) || d.driver.chars().any(char::is_control) {
        return bad(format!(
            "domain name {:?} contains control characters",
            d.name
        ));
    }
    if d.uuid.is_nil() {
        return bad(format!("domain {:?} has the nil UUID", d.name));
    }
    Ok(())
}

/// A `ReadLog`'s `max_len`: at most [`MAX_READ_LEN`] (the reply must fit in a frame).
pub(crate) fn check_read_len(max_len: u64) -> Result<(), WireError> {
    if max_len > MAX_READ_LEN {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!("max_len {max_len} exceeds the limit of {MAX_READ_LEN} bytes"),
        ));
    }
    Ok(())
}

/// An `AppendLog`'s message: at most [`MAX_APPEND_LEN`] bytes.
pub(crate) fn check_append_len(message: &[u8]) -> Result<(), WireError> {
    if message.len() > MAX_APPEND_LEN {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!(
                "message of {} bytes exceeds the limit of {MAX_APPEND_LEN}",
                message.len()
            ),
        ));
    }
    Ok(())
}

/// Checks a console spec and resolves its paths and the names of its access lists, and reads
/// its TLS credentials (all on the blocking pool); applies the defaults.
pub(crate) async fn console_config(req: ConsoleRequest) -> Result<ConsoleConfig, WireError> {
    let policy = crate::host::paths::current().expect("the daemon installs a path policy");
    let mut config = console_lexical(&policy, req)?;
    let tls_dir = config.tls.as_ref().map(|t| t.settings.dir.clone());
    if config.tcp.is_none() && config.unix.is_none() {
        tracing::debug!(console = %config.name, "console without subscriber listeners: log only");
    }
    let c = config.clone();
    let mut access = std::mem::take(&mut config.access);
    let (access, creds) = tokio::task::spawn_blocking(move || {
        let guest = match &c.guest {
            GuestPlan::Listen(p) | GuestPlan::Connect(p) => Some(p),
            GuestPlan::Fd => None,
        };
        for p in guest.into_iter().chain(&c.unix).chain([&c.log]) {
            check_on_disk(&policy, p, true)?;
        }
        let creds = match &tls_dir {
            Some(dir) => Some(tls_credentials(&policy, dir)?),
            None => None,
        };
        // NSS may block: here, never on a console's thread.
        access
            .resolve()
            .map_err(|e| WireError::new(ErrorCode::InvalidArgument, e.to_string()))?;
        Ok::<_, WireError>((access, creds))
    })
    .await
    .map_err(|_| WireError::new(ErrorCode::Internal, "path check panicked"))??;
    config.access = access;
    if let Some(t) = &mut config.tls {
        t.creds = creds;
    }
    Ok(config)
}

/// The half of [`console_config`] that needs no disk: the name, the sizes, the TCP address, and
/// the paths resolved by `policy` (lexically). A console declared in the config file is checked
/// with this at load, so the file and a request pass the same rules.
pub(crate) fn console_lexical(
    policy: &PathPolicy,
    req: ConsoleRequest,
) -> Result<ConsoleConfig, WireError> {
    let ConsoleRequest {
        spec,
        access,
        notices,
        tls,
    } = req;
    check_console_name(&spec.name)?;
    let guest = match &spec.guest {
        GuestSide::Listen { path } => GuestPlan::Listen(resolve_path(policy, path)?),
        GuestSide::Connect { path } => GuestPlan::Connect(resolve_path(policy, path)?),
        GuestSide::Fd => GuestPlan::Fd,
    };
    let unix = spec
        .unix
        .as_deref()
        .map(|p| resolve_path(policy, p))
        .transpose()?;
    let tcp = spec.tcp.as_deref().map(tcp_addr).transpose()?;
    let bounds = console_bounds(&spec)?;
    let tls = tls
        .map(|t| tls_lexical(policy, t, tcp.as_deref()))
        .transpose()?;
    Ok(ConsoleConfig {
        name: spec.name,
        log: resolve_path(policy, &spec.log)?,
        domain: spec.domain,
        truncate: spec.truncate,
        rotate: RotateConfig::default(), // the registry applies the daemon's
        guest,
        tcp,
        unix,
        protocol: spec.protocol,
        write: spec.write,
        replay: bounds.replay,
        max_subscribers: bounds.max_subscribers,
        queue_limit: bounds.queue_limit,
        access,
        notices,
        tls,
    })
}

/// A console's TLS settings, checked without the disk: the address (a bare port is 127.0.0.1's;
/// not the TCP listener's port), the directory resolved by `policy`, the lists' syntax.
fn tls_lexical(
    policy: &PathPolicy,
    t: console::tls::TlsRequest,
    tcp: Option<&str>,
) -> Result<console::tls::TlsConfig, WireError> {
    let invalid = |m: String| WireError::new(ErrorCode::InvalidArgument, m);
    let addr = tcp_addr(&t.addr).map_err(|_| {
        invalid(format!(
            "invalid TLS address {:?}: expected ADDR:PORT, [V6ADDR]:PORT or PORT",
            t.addr
        ))
    })?;
    let port = |a: &str| a.parse::<std::net::SocketAddr>().ok().map(|a| a.port());
    if port(&addr) == Some(0) {
        return Err(invalid(format!(
            "the TLS address {addr} needs a port other than 0: the port it would get cannot be \
             reported (the reply and `console list` have no field for it)"
        )));
    }
    if let (Some(p), Some(q)) = (port(&addr), tcp.and_then(port)) {
        if p == q {
            return Err(invalid(format!(
                "the TLS address {addr} has the TCP listener's port {p}: give each its own"
            )));
        }
    }
    let dir = resolve_dir(policy, &t.dir)?;
    let settings =
        console::tls::TlsSettings::from_lists(addr, dir, &t.read_write, &t.read_only, t.anonymous)
            .map_err(invalid)?;
    Ok(console::tls::TlsConfig {
        settings,
        creds: None,
    })
}

/// A directory's path, resolved as a file's is ([`resolve_path`]): `DIR/` is `DIR`.
pub(crate) fn resolve_dir(policy: &PathPolicy, raw: &str) -> Result<PathBuf, WireError> {
    let dir = match raw.strip_suffix('/') {
        Some(d) if !d.is_empty() => d,
        _ => raw,
    };
    resolve_path(policy, dir)
}

/// The TLS credentials in `dir`, each file checked as a console's paths are (no symlink below
/// the root, a file where a file belongs), then read. It may block.
fn tls_credentials(
    policy: &PathPolicy,
    dir: &Path,
) -> Result<console::tls::Credentials, WireError> {
    for f in console::tls::files(dir) {
        check_on_disk(policy, &f, false)?;
    }
    console::tls::Credentials::load(dir).map_err(|e| {
        let code = match e {
            console::tls::TlsError::Read { .. } => ErrorCode::Io,
            _ => ErrorCode::InvalidArgument,
        };
        WireError::new(code, e.to_string())
    })
}

/// The options of an `AddConsoleWith`: the console's access settings (names not resolved yet),
/// and whether it is to be persisted. An option given twice is refused.
pub(crate) fn console_options(
    spec: ConsoleSpec,
    options: Vec<ConsoleOption>,
) -> Result<(ConsoleRequest, bool), WireError> {
    let invalid = |m: String| WireError::new(ErrorCode::InvalidArgument, m);
    let (mut persist, mut tcp_write) = (false, false);
    let mut notices = console::Notices::default();
    let (mut no_notices, mut mark_log) = (false, false);
    let (mut rw, mut ro): (Option<Vec<String>>, Option<Vec<String>>) = (None, None);
    let mut tls = console::tls::TlsOptions::default();
    for o in options {
        let flag = o.flag();
        let twice = match o {
            ConsoleOption::Persist => std::mem::replace(&mut persist, true),
            ConsoleOption::TcpWrite => std::mem::replace(&mut tcp_write, true),
            ConsoleOption::ReadWrite(v) => rw.replace(v).is_some(),
            ConsoleOption::ReadOnly(v) => ro.replace(v).is_some(),
            ConsoleOption::NoNotices => std::mem::replace(&mut no_notices, true),
            ConsoleOption::MarkLog => std::mem::replace(&mut mark_log, true),
            o @ (ConsoleOption::Tls(_)
            | ConsoleOption::TlsDir(_)
            | ConsoleOption::TlsReadWrite(_)
            | ConsoleOption::TlsReadOnly(_)
            | ConsoleOption::TlsAnonymous(_)) => tls.take(o),
        };
        if twice {
            return Err(invalid(format!("console option {flag} given twice")));
        }
    }
    let access = Access::from_lists(tcp_write, &rw.unwrap_or_default(), &ro.unwrap_or_default())
        .map_err(|e| invalid(e.to_string()))?;
    notices.subscribers = !no_notices;
    notices.mark_log = mark_log;
    let tls = tls.request().map_err(invalid)?;
    Ok((
        ConsoleRequest {
            spec,
            access,
            notices,
            tls,
        },
        persist,
    ))
}

/// A console's name: 1 to [`MAX_NAME_LEN`] bytes, no `/` and no control characters.
fn check_console_name(name: &str) -> Result<(), WireError> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name.contains('/')
        || name.chars().any(char::is_control)
    {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!(
                "invalid console name {name:?}: 1 to {MAX_NAME_LEN} bytes, no '/' or control \
                 characters"
            ),
        ));
    }
    Ok(())
}

/// A console's sizes, with the defaults applied.
#[derive(Debug, PartialEq, Eq)]
struct ConsoleBounds {
    replay: usize,
    max_subscribers: usize,
    queue_limit: usize,
}

/// A console's replay (at most [`MAX_REPLAY`]), subscriber limit (1 to [`MAX_SUBSCRIBERS`]) and
/// queue limit ([`MIN_QUEUE_LIMIT`] to [`MAX_QUEUE_LIMIT`]); the defaults for those unset.
fn console_bounds(spec: &ConsoleSpec) -> Result<ConsoleBounds, WireError> {
    let invalid = |m: String| WireError::new(ErrorCode::InvalidArgument, m);
    let replay = spec.replay.unwrap_or(console::DEFAULT_REPLAY as u64);
    if replay > MAX_REPLAY {
        return Err(invalid(format!(
            "replay of {replay} bytes exceeds the limit of {MAX_REPLAY}"
        )));
    }
    let max_subscribers = spec
        .max_subscribers
        .unwrap_or(console::DEFAULT_MAX_SUBSCRIBERS as u32);
    if !(1..=MAX_SUBSCRIBERS).contains(&max_subscribers) {
        return Err(invalid(format!(
            "max_subscribers must be between 1 and {MAX_SUBSCRIBERS}"
        )));
    }
    let queue_limit = spec
        .queue_limit
        .unwrap_or(console::DEFAULT_QUEUE_LIMIT as u64);
    if !(MIN_QUEUE_LIMIT..=MAX_QUEUE_LIMIT).contains(&queue_limit) {
        return Err(invalid(format!(
            "queue_limit must be between {MIN_QUEUE_LIMIT} and {MAX_QUEUE_LIMIT} bytes"
        )));
    }
    Ok(ConsoleBounds {
        replay: replay as usize,
        max_subscribers: max_subscribers as usize,
        queue_limit: queue_limit as usize,
    })
}

/// Largest replay buffer a console may ask for.
const MAX_REPLAY: u64 = 16 * 1024 * 1024;
/// Most subscribers a console may allow.
const MAX_SUBSCRIBERS: u32 = 1024;
/// Bounds of a subscriber's queue limit.
const MIN_QUEUE_LIMIT: u64 = 4096;
const MAX_QUEUE_LIMIT: u64 = 64 * 1024 * 1024;

/// `ADDR:PORT`, `[V6]:PORT`, or a bare `PORT` (which binds 127.0.0.1, never every interface).
pub(crate) fn tcp_addr(s: &str) -> Result<String, WireError> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(format!("127.0.0.1:{port}"));
    }
    s.parse::<std::net::SocketAddr>()
        .map(|a| a.to_string())
        .map_err(|_| {
            WireError::new(
                ErrorCode::InvalidArgument,
                format!("invalid TCP address {s:?}: expected ADDR:PORT, [V6ADDR]:PORT or PORT"),
            )
        })
}

#[cfg(test)]
mod tests {
    use logd_protocol::Uuid;

    use super::*;

    fn domain(driver: &str, name: &str) -> DomainId {
        DomainId {
            driver: driver.into(),
            uuid: Uuid::from_bytes([7; 16]),
            name: name.into(),
        }
    }

    /// The refusal's code, or a panic naming `what` if it was accepted.
    #[track_caller]
    fn refused<T: std::fmt::Debug>(r: Result<T, WireError>, what: &str) -> ErrorCode {
        match r {
            Ok(v) => panic!("{what} was accepted: {v:?}"),
            Err(e) => e.code,
        }
    }

    #[test]
    fn a_domain_name_and_driver_of_1_to_max_name_len_bytes_pass() {
        let max = "a".repeat(MAX_NAME_LEN);
        check_domain(&domain("q", "v")).unwrap();
        check_domain(&domain(&max, &max)).unwrap();
        check_domain(&domain("qemu", "vm 1: é")).unwrap();
    }

    #[test]
    fn a_domain_name_or_driver_one_byte_over_max_name_len_is_refused() {
        let over = "a".repeat(MAX_NAME_LEN + 1);
        let code = refused(check_domain(&domain("qemu", &over)), "a 257-byte name");
        assert_eq!(code, ErrorCode::InvalidArgument);
        let code = refused(check_domain(&domain(&over, "vm")), "a 257-byte driver");
        assert_eq!(code, ErrorCode::InvalidArgument);
    }

    #[test]
    fn a_domain_name_is_measured_in_bytes_not_characters() {
        // 'é' is 2 bytes: 128 of them are the limit, 129 are 258 bytes in 129 characters.
        check_domain(&domain("qemu", &"é".repeat(MAX_NAME_LEN / 2))).unwrap();
        let long = "é".repeat(MAX_NAME_LEN / 2 + 1);
        assert!(long.chars().count() < MAX_NAME_LEN);
        let code = refused(check_domain(&domain("qemu", &long)), "258 bytes of 'é'");
        assert_eq!(code, ErrorCode::InvalidArgument);
    }

    #[test]
    fn an_empty_domain_name_or_driver_is_refused() {
        let e = check_domain(&domain("qemu", "")).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::InvalidArgument, "empty domain name")
        );
        let e = check_domain(&domain("", "vm")).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::InvalidArgument, "empty driver name")
        );
    }

    #[test]
    fn control_characters_in_a_domain_name_or_driver_are_refused() {
        for c in ['\0', '\t', '\n', '\r', '\u{1b}', '\u{7f}', '\u{85}'] {
            let bad = format!("vm{c}1");
            let code = refused(
                check_domain(&domain("qemu", &bad)),
                &format!("name {bad:?}"),
            );
            assert_eq!(code, ErrorCode::InvalidArgument);
            let code = refused(
                check_domain(&domain(&bad, "vm")),
                &format!("driver {bad:?}"),
            );
            assert_eq!(code, ErrorCode::InvalidArgument);
        }
    }

    #[test]
    fn the_nil_uuid_is_refused() {
        let d = DomainId {
            uuid: Uuid::nil(),
            ..domain("qemu", "vm")
        };
        let e = check_domain(&d).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("nil UUID"), "{}", e.message);
        // One bit set is enough.
        let mut bytes = [0; 16];
        bytes[15] = 1;
        check_domain(&DomainId {
            uuid: Uuid::from_bytes(bytes),
            ..domain("qemu", "vm")
        })
        .unwrap();
    }

    #[test]
    fn a_read_of_up_to_max_read_len_passes_and_one_byte_more_is_refused() {
        check_read_len(0).unwrap();
        check_read_len(MAX_READ_LEN).unwrap();
        for bad in [MAX_READ_LEN + 1, u64::MAX] {
            let code = refused(check_read_len(bad), &format!("max_len {bad}"));
            assert_eq!(code, ErrorCode::InvalidArgument);
        }
    }

    #[test]
    fn an_append_of_up_to_max_append_len_passes_and_one_byte_more_is_refused() {
        check_append_len(b"").unwrap();
        check_append_len(&vec![b'x'; MAX_APPEND_LEN]).unwrap();
        let e = check_append_len(&vec![b'x'; MAX_APPEND_LEN + 1]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(
            e.message.contains(&(MAX_APPEND_LEN + 1).to_string()),
            "{}",
            e.message
        );
    }

    fn policy() -> PathPolicy {
        PathPolicy::new("/logs".into(), vec!["/srv/vm".into()])
    }

    #[test]
    fn paths_resolve_under_the_log_root_or_an_allowed_dir() {
        for (raw, want) in [
            ("vm1/console.log", "/logs/vm1/console.log"),
            ("./a.log", "/logs/a.log"),
            ("a/./b.log", "/logs/a/b.log"),
            ("/logs/x.log", "/logs/x.log"),
            ("/srv/vm/x.log", "/srv/vm/x.log"),
        ] {
            assert_eq!(
                resolve_path(&policy(), raw).unwrap(),
                Path::new(want),
                "{raw}"
            );
        }
    }

    #[test]
    fn a_path_of_max_path_len_bytes_passes_and_one_byte_more_is_refused() {
        use logd_protocol::MAX_PATH_LEN;
        // Components of 1 byte: no file-name limit comes into it, only the length.
        let max = format!("{}ab", "a/".repeat(MAX_PATH_LEN / 2 - 1));
        assert_eq!(max.len(), MAX_PATH_LEN);
        resolve_path(&policy(), &max).unwrap();
        let over = format!("{max}c");
        let code = refused(resolve_path(&policy(), &over), "a path of MAX_PATH_LEN + 1");
        assert_eq!(code, ErrorCode::PathRefused);
    }

    #[test]
    fn empty_dotdot_nul_directory_and_outside_paths_are_refused() {
        for bad in [
            "",
            "..",
            "../x.log",
            // Inside the root once normalized, but any `..` is refused.
            "a/../b.log",
            "/logs/../logs/x.log",
            "a\0b.log",
            "dir/",
            "/etc/passwd",
            "/logs",
            "/srv/vm",
            "/logsx/a.log",
        ] {
            let code = refused(resolve_path(&policy(), bad), &format!("{bad:?}"));
            assert_eq!(code, ErrorCode::PathRefused, "{bad:?}");
        }
    }

    #[test]
    fn on_disk_a_symlink_or_a_file_for_a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("link")).unwrap();
        std::fs::write(root.join("file"), b"").unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        let p = PathPolicy::new(root.clone(), vec![]);
        for (bad, why) in [
            ("link/x.log", "a symlinked directory"),
            ("link", "a symlink as the log"),
            ("file/x.log", "a file where a directory belongs"),
            ("d", "a directory as the log"),
        ] {
            let code = refused(check_on_disk(&p, &root.join(bad), true), why);
            assert_eq!(code, ErrorCode::PathRefused, "{why}");
        }
        check_on_disk(&p, &root.join("file"), true).unwrap();
    }

    #[test]
    fn on_disk_missing_directories_are_made_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let p = PathPolicy::new(dir.path().to_owned(), vec![]);
        check_on_disk(&p, &dir.path().join("a/b/x.log"), false).unwrap();
        assert!(!dir.path().join("a").exists());
        check_on_disk(&p, &dir.path().join("a/b/x.log"), true).unwrap();
        assert!(dir.path().join("a/b").is_dir());
        assert!(!dir.path().join("a/b/x.log").exists());
    }

    #[test]
    fn on_disk_what_cannot_be_inspected_or_made_is_io_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = PathPolicy::new(dir.path().to_owned(), vec![]);
        // A name over NAME_MAX (255): lstat fails with ENAMETOOLONG.
        let long = dir.path().join("n".repeat(256)).join("x.log");
        let code = refused(check_on_disk(&p, &long, true), "a 256-byte file name");
        assert_eq!(code, ErrorCode::Io);
        let create = PathError::CreateDir {
            path: "/logs/a/x.log".into(),
            at: "/logs/a".into(),
            source: std::io::Error::from_raw_os_error(28),
        };
        assert_eq!(path_error(create).code, ErrorCode::Io);
    }

    fn spec() -> ConsoleSpec {
        ConsoleSpec::new(domain("qemu", "vm"), "serial0", GuestSide::Fd, "c.log")
    }

    #[test]
    fn a_console_name_of_1_to_max_name_len_bytes_without_slash_or_control_passes() {
        for good in ["s", "serial0", "console.1 é", &"a".repeat(MAX_NAME_LEN)] {
            check_console_name(good).unwrap();
        }
        let over = "a".repeat(MAX_NAME_LEN + 1);
        for bad in ["", over.as_str(), "a/b", "/", "a\nb", "\0", "a\u{7f}"] {
            let code = refused(check_console_name(bad), &format!("console name {bad:?}"));
            assert_eq!(code, ErrorCode::InvalidArgument);
        }
    }

    #[test]
    fn console_bounds_default_to_the_consoles_defaults() {
        assert_eq!(
            console_bounds(&spec()).unwrap(),
            ConsoleBounds {
                replay: console::DEFAULT_REPLAY,
                max_subscribers: console::DEFAULT_MAX_SUBSCRIBERS,
                queue_limit: console::DEFAULT_QUEUE_LIMIT,
            }
        );
    }

    #[test]
    fn a_replay_of_up_to_16_mib_passes_and_one_byte_more_is_refused() {
        for ok in [0, MAX_REPLAY] {
            let b = console_bounds(&ConsoleSpec {
                replay: Some(ok),
                ..spec()
            })
            .unwrap();
            assert_eq!(b.replay as u64, ok);
        }
        let code = refused(
            console_bounds(&ConsoleSpec {
                replay: Some(16 * 1024 * 1024 + 1),
                ..spec()
            }),
            "a replay of 16 MiB + 1",
        );
        assert_eq!(code, ErrorCode::InvalidArgument);
    }

    #[test]
    fn max_subscribers_of_1_to_1024_pass_and_0_or_1025_are_refused() {
        for ok in [1, 1024] {
            let b = console_bounds(&ConsoleSpec {
                max_subscribers: Some(ok),
                ..spec()
            })
            .unwrap();
            assert_eq!(b.max_subscribers, ok as usize);
        }
        for bad in [0, 1025] {
            let s = ConsoleSpec {
                max_subscribers: Some(bad),
                ..spec()
            };
            let code = refused(console_bounds(&s), &format!("max_subscribers {bad}"));
            assert_eq!(code, ErrorCode::InvalidArgument);
        }
    }

    #[test]
    fn a_queue_limit_of_4_kib_to_64_mib_passes_and_one_byte_outside_is_refused() {
        for ok in [4096, 64 * 1024 * 1024] {
            let b = console_bounds(&ConsoleSpec {
                queue_limit: Some(ok),
                ..spec()
            })
            .unwrap();
            assert_eq!(b.queue_limit as u64, ok);
        }
        for bad in [0, 4095, 64 * 1024 * 1024 + 1] {
            let s = ConsoleSpec {
                queue_limit: Some(bad),
                ..spec()
            };
            let code = refused(console_bounds(&s), &format!("queue_limit {bad}"));
            assert_eq!(code, ErrorCode::InvalidArgument);
        }
    }

    #[test]
    fn a_bare_port_binds_loopback_and_an_address_must_be_numeric_with_a_port() {
        for (raw, want) in [
            ("0", "127.0.0.1:0"),
            ("65535", "127.0.0.1:65535"),
            ("127.0.0.1:4555", "127.0.0.1:4555"),
            ("0.0.0.0:23", "0.0.0.0:23"),
            ("[::1]:7000", "[::1]:7000"),
        ] {
            assert_eq!(tcp_addr(raw).unwrap(), want, "{raw}");
        }
        for bad in [
            "",
            "65536",
            "-1",
            "localhost:23",
            "::1",
            "127.0.0.1",
            "127.0.0.1:65536",
            ":23",
        ] {
            let code = refused(tcp_addr(bad), &format!("tcp {bad:?}"));
            assert_eq!(code, ErrorCode::InvalidArgument);
        }
    }
}
