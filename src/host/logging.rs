//! The daemon's own log: tracing to stderr, with a filter that can be changed while running
//! (`logdctl log-level`).
//!
//! A filter set at run time outlives a re-exec: [`crate::handover::reexec::exec_in_place`] passes it to the new
//! process in [`CARRY_ENV`], whose [`init`] starts with it instead of `-v` or `RUST_LOG`.

use std::sync::{Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

static HANDLE: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// The filter set at run time (or carried from the previous process), if any.
static SET: Mutex<Option<String>> = Mutex::new(None);

/// The environment variable that carries a run-time filter to a re-exec's new process.
/// Internal, like `LOGD_REEXEC`: read only by a re-exec's successor.
pub const CARRY_ENV: &str = "LOGD_REEXEC_LOG_FILTER";

/// The levels, as listed in errors.
pub const LEVELS: &str = "off, error, warn, info, debug, trace";

/// Why a log level was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    #[error(
        "invalid log level {spec:?}: {why}; expected one of {LEVELS}, or directives such as \
         logd=debug,logd::console=trace"
    )]
    Invalid { spec: String, why: String },
    #[error("the log filter cannot be changed in this process")]
    NoHandle,
    #[error("cannot change the log filter: {0}")]
    Reload(String),
}

/// Installs the subscriber: `carried` (a re-exec's successor keeps its parent's run-time
/// filter), else `RUST_LOG` if set, else `logd=<default_level>`.
pub fn init(default_level: &str, carried: Option<&str>) {
    let carried = carried.and_then(|c| directive(c).ok().map(|d| (c.to_owned(), d)));
    let filter = match &carried {
        Some((_, d)) => EnvFilter::new(d),
        None => EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(format!("logd={default_level}"))),
    };
    let (layer, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .fmt_fields(escaped_fields())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tracing_subscriber::registry().with(layer).with(fmt).init();
    let _ = HANDLE.set(handle);
    if let Some((spec, d)) = carried {
        *SET.lock().unwrap_or_else(|e| e.into_inner()) = Some(spec);
        tracing::warn!(filter = %d, "log filter kept across the re-exec");
    }
}

/// Fields as the default format writes them (the message, then `name=value`), with control
/// characters escaped: a path is a client's string and may hold ESC sequences or a carriage
/// return, which would act on the terminal of whoever reads the log, or forge a log line.
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let text = crate::cli::escape_controls(&text);
        match field.name() {
            "message" => write!(w, "{text}"),
            name => write!(w, "{name}={text}"),
        }
    })
    .delimited(" ")
}

/// The filter set at run time, to be carried by a re-exec.
pub fn carried() -> Option<String> {
    SET.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn is_level(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "off" | "error" | "warn" | "info" | "debug" | "trace"
    )
}

/// Checks a user's filter and returns the `EnvFilter` directives it stands for. `spec` is a
/// level (`debug`: for logd's own modules) or a list of `target=level` directives
/// (`logd=debug,logd::console=trace`), each possibly a bare level (the default for every
/// target). A bare target (`warning`, `logd::serve`), which `EnvFilter` would take as "this
/// target only" and so silence everything else, is refused, as is an unknown level.
pub fn directive(spec: &str) -> Result<String, LevelError> {
    let spec = spec.trim();
    let invalid = |why: String| LevelError::Invalid {
        spec: spec.to_owned(),
        why,
    };
    if is_level(spec) {
        return Ok(format!("logd={}", spec.to_ascii_lowercase()));
    }
    if spec.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    for part in spec.split(',').map(str::trim) {
        if is_level(part) {
            continue;
        }
        let Some((target, level)) = part.rsplit_once('=') else {
            return Err(invalid(format!("{part:?} is not a level")));
        };
        if target.trim().is_empty() {
            return Err(invalid(format!("{part:?} names no target")));
        }
        if !is_level(level.trim()) {
            return Err(invalid(format!("{:?} is not a level", level.trim())));
        }
    }
    EnvFilter::try_new(spec).map_err(|e| invalid(e.to_string()))?;
    Ok(spec.to_owned())
}

/// Replaces the filter (see [`directive`] for what `spec` may be).
pub fn set_filter(spec: &str) -> Result<(), LevelError> {
    let d = directive(spec)?;
    let filter = EnvFilter::try_new(&d).map_err(|e| LevelError::Invalid {
        spec: spec.to_owned(),
        why: e.to_string(),
    })?;
    let handle = HANDLE.get().ok_or(LevelError::NoHandle)?;
    handle
        .reload(filter)
        .map_err(|e| LevelError::Reload(e.to_string()))?;
    *SET.lock().unwrap_or_else(|e| e.into_inner()) = Some(spec.trim().to_owned());
    tracing::warn!(filter = %d, "log filter changed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_are_accepted() {
        assert_eq!(directive("warn").unwrap(), "logd=warn");
        assert_eq!(directive(" DEBUG ").unwrap(), "logd=debug");
        for ok in [
            "logd=debug,logd::console=trace",
            "info,logd=debug",
            "logd[conn]=debug",
        ] {
            assert!(directive(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn what_would_silence_logging_is_refused() {
        for bad in [
            "warning",
            "verbose",
            "inf",
            "",
            "logd=loud",
            "logd::server",
            "=debug",
            "debug,x",
        ] {
            let e = directive(bad).unwrap_err().to_string();
            assert!(e.contains(LEVELS), "{bad}: {e}");
        }
    }
}
