//! The checks a request's fields pass before the registry sees them: a domain's identity, the
//! sizes of a read and an append, a client's path (resolved by the path policy, then checked on
//! disk), and a console's spec.
//!
//! They answer a refusal as the `WireError` the client is told; the virtlogd socket translates
//! it into libvirt's error.

use std::path::{Path, PathBuf};

use logd_protocol::{
    ConsoleSpec, DomainId, ErrorCode, GuestSide, WireError, MAX_APPEND_LEN, MAX_NAME_LEN,
    MAX_READ_LEN,
};

use crate::console::{self, ConsoleConfig, GuestPlan};
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
fn resolve_path(policy: &PathPolicy, raw: &str) -> Result<PathBuf, WireError> {
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

/// Checks a console spec and resolves its paths; applies the defaults.
pub(crate) async fn console_config(spec: ConsoleSpec) -> Result<ConsoleConfig, WireError> {
    check_console_name(&spec.name)?;
    let guest = match &spec.guest {
        GuestSide::Listen { path } => GuestPlan::Listen(checked_path(path, true).await?),
        GuestSide::Connect { path } => GuestPlan::Connect(checked_path(path, true).await?),
        GuestSide::Fd => GuestPlan::Fd,
    };
    let unix = match &spec.unix {
        Some(p) => Some(checked_path(p, true).await?),
        None => None,
    };
    let tcp = spec.tcp.as_deref().map(tcp_addr).transpose()?;
    if tcp.is_none() && unix.is_none() {
        tracing::debug!(console = %spec.name, "console without subscriber listeners: log only");
    }
    let bounds = console_bounds(&spec)?;
    Ok(ConsoleConfig {
        name: spec.name,
        log: checked_path(&spec.log, true).await?,
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
    })
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
fn tcp_addr(s: &str) -> Result<String, WireError> {
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
