//! The daemon's own log: tracing to stderr, with a filter that can be changed while running
//! (`logdctl log-level`).

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

static HANDLE: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the subscriber: `RUST_LOG` if set, else `logd=<default_level>`.
pub fn init(default_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("logd={default_level}")));
    let (layer, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tracing_subscriber::registry().with(layer).with(fmt).init();
    let _ = HANDLE.set(handle);
}

/// Replaces the filter. `spec` is a level (`debug`) or an `EnvFilter` directive list
/// (`logd=debug,logd::console=trace`); a bare level applies to logd's own modules.
pub fn set_filter(spec: &str) -> Result<(), String> {
    let spec = spec.trim();
    let directive = match spec.to_ascii_lowercase().as_str() {
        "off" | "error" | "warn" | "info" | "debug" | "trace" => format!("logd={spec}"),
        _ => spec.to_owned(),
    };
    let filter =
        EnvFilter::try_new(&directive).map_err(|e| format!("invalid log level {spec:?}: {e}"))?;
    let handle = HANDLE
        .get()
        .ok_or_else(|| "the log filter cannot be changed in this process".to_owned())?;
    handle.reload(filter).map_err(|e| e.to_string())?;
    tracing::warn!(filter = %directive, "log filter changed");
    Ok(())
}
