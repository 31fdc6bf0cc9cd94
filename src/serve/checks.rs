//! The checks a request's fields pass before the registry sees them: a domain's identity, a
//! client's path (resolved by the path policy, then checked on disk), and a console's spec.
//!
//! They answer a refusal as the `WireError` the client is told; the virtlogd socket translates
//! it into libvirt's error.

use std::path::PathBuf;

use logd_protocol::{ConsoleSpec, DomainId, ErrorCode, GuestSide, WireError, MAX_NAME_LEN};

use crate::console::{self, ConsoleConfig, GuestPlan};
use crate::datapath::rotate::RotateConfig;
use crate::host::paths::PathError;

/// Resolves a client's path and checks it on disk (off the event loop).
pub(crate) async fn checked_path(raw: &str, create_dirs: bool) -> Result<PathBuf, WireError> {
    let policy = crate::host::paths::current().expect("the daemon installs a path policy");
    let path = policy.resolve(raw).map_err(path_error)?;
    let p = path.clone();
    tokio::task::spawn_blocking(move || policy.check_fs(&p, create_dirs))
        .await
        .map_err(|_| WireError::new(ErrorCode::Internal, "path check panicked"))?
        .map_err(path_error)?;
    Ok(path)
}

fn path_error(e: PathError) -> WireError {
    let code = match e {
        PathError::CreateDir { .. } | PathError::Stat { .. } => ErrorCode::Io,
        _ => ErrorCode::PathRefused,
    };
    WireError::new(code, e.to_string())
}

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

/// Checks a console spec and resolves its paths; applies the defaults.
pub(crate) async fn console_config(spec: ConsoleSpec) -> Result<ConsoleConfig, WireError> {
    let invalid = |m: String| WireError::new(ErrorCode::InvalidArgument, m);
    if spec.name.is_empty()
        || spec.name.len() > MAX_NAME_LEN
        || spec.name.contains('/')
        || spec.name.chars().any(char::is_control)
    {
        return Err(invalid(format!(
            "invalid console name {:?}: 1 to {MAX_NAME_LEN} bytes, no '/' or control characters",
            spec.name
        )));
    }
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
