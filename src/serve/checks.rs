//! The checks a request's fields pass before the registry sees them: a domain's identity, and a
//! client's path, resolved by the path policy and checked on disk.
//!
//! They answer a refusal as the `WireError` the client is told; the virtlogd socket translates
//! it into libvirt's error.

use std::path::PathBuf;

use logd_protocol::{DomainId, ErrorCode, WireError, MAX_NAME_LEN};

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
