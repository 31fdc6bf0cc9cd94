//! Daemon configuration: built-in defaults, an optional TOML file, then command-line overrides.
//!
//! Defaults need no file at all: as root the socket is `/run/logd/logd.sock` and logs go under
//! `/var/log/logd`; as any other user the socket lives in `$XDG_RUNTIME_DIR/logd/` (or
//! `/tmp/logd-$UID/`) and logs under `$XDG_STATE_HOME/logd` (or `~/.local/state/logd`).
//! An unknown key or a bad value stops start-up with a message that names the key.

pub use super::size::parse_size;
use super::size::SizeValue;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::datapath::rotate::RotateConfig;
use crate::host::paths::PathPolicy;

/// Smallest accepted `max_size`: below this a log would rotate on nearly every write.
pub const MIN_MAX_SIZE: u64 = 4096;
/// Largest accepted `max_backups`, as virtlogd's. A rotation renames every backup, so its cost
/// grows with their number; 32 keeps it to a few dozen renames (docs/DECISIONS.md).
pub const MAX_MAX_BACKUPS: u32 = crate::datapath::rotate::MAX_BACKUPS;
/// Default `max_clients_per_peer` (lowered to `max_clients` when that is smaller).
pub const DEFAULT_CLIENTS_PER_PEER: usize = 64;
/// Largest `log_idle_close`, seconds (a day).
pub const MAX_LOG_IDLE_CLOSE: u64 = 86_400;
/// Default `client_idle_timeout`, seconds.
pub const DEFAULT_CLIENT_IDLE_TIMEOUT: u64 = 60;
/// Largest `client_idle_timeout`, seconds (a day).
pub const MAX_CLIENT_IDLE_TIMEOUT: u64 = 86_400;
/// Default `reply_budget`: read replies held for clients, in total.
pub const DEFAULT_REPLY_BUDGET: u64 = 64 << 20;
/// Default `reply_wait`, seconds.
pub const DEFAULT_REPLY_WAIT: u64 = 5;
/// Largest `reply_wait`, seconds.
pub const MAX_REPLY_WAIT: u64 = 60;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
    /// A `[[console]]` table: which one, which key, why.
    #[error("invalid config file {path}: {source}")]
    Console {
        path: PathBuf,
        source: crate::host::consoles::EntryError,
    },
    #[error("cannot find a home directory: set HOME or XDG_STATE_HOME, or pass --log-root")]
    NoHome,
}

/// The settings the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The main socket.
    pub socket: PathBuf,
    /// The admin socket (introspection and actions), beside the main one by default.
    pub admin_socket: PathBuf,
    /// The console socket (`logdctl attach`, any local user), beside the main one by default.
    pub console_socket: PathBuf,
    /// The virtlogd socket (libvirt's RPC, for libvirtd); None: not served.
    pub virtlogd_socket: Option<PathBuf>,
    /// Relative log paths resolve under this directory; absolute ones must lie under it or
    /// under one of `allowed_dirs`.
    pub log_root: PathBuf,
    pub allowed_dirs: Vec<PathBuf>,
    pub rotate: RotateConfig,
    /// How long a log that was written to keeps its file open once idle; `None`: until it closes.
    pub log_idle_close: Option<std::time::Duration>,
    /// The most connections served at once; more are refused with an error.
    pub max_clients: usize,
    /// The most connections one process (by its pid, `SO_PEERCRED`) may hold at once.
    pub max_clients_per_peer: usize,
    /// A connection that sends no request for this long (after its hello, with no request
    /// open) is closed.
    pub client_idle_timeout: std::time::Duration,
    /// Bytes of read replies held for clients at once, in total (see `server::ReplyBudget`).
    pub reply_budget: u64,
    /// How long a read waits for room in `reply_budget` before it is refused.
    pub reply_wait: std::time::Duration,
    /// Worker threads (actix arbiters) that domains are spread over; default: one per core.
    pub workers: usize,
    /// `ADDR:PORT` of the Prometheus endpoint; None: off.
    pub metrics_listen: Option<String>,
    /// Keep each stdio log's pipe in systemd's fd store (`FDSTORE=1`), so that a restart after
    /// a crash reads on from the same pipes (docs/LIFECYCLE.md, "Crash"). Needs
    /// `FileDescriptorStoreMax=` in the unit; does nothing without `NOTIFY_SOCKET`.
    pub fd_store: bool,
    /// Exit after this long with no open log and no client (a session daemon started on demand).
    pub idle_exit: Option<std::time::Duration>,
    /// The binary a re-exec runs; None: the path this one was started from.
    pub binary: Option<PathBuf>,
    /// The daemon's log filter (a level or `target=level` directives); None: `info`, or what
    /// `-v` or `RUST_LOG` say, which take precedence at start-up.
    pub log_level: Option<String>,
    /// Where this configuration came from, so SIGHUP can read it again.
    pub origin: Origin,
    /// The consoles of the file's `[[console]]` tables, checked (see [`crate::host::consoles`]).
    pub(crate) consoles: Vec<crate::host::consoles::DeclaredConsole>,
    /// The persisted consoles file (`logdctl console add --persist`, see
    /// [`crate::host::persisted`]); None: no default for this user (no home directory), and
    /// `--persist` is refused.
    pub consoles_file: Option<PathBuf>,
}

/// The file and command-line overrides a configuration was loaded from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub file: Option<PathBuf>,
    pub overrides: Overrides,
}

/// The file's keys, all optional. Also written, by [`Config::effective_text`].
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    socket: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_socket: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    console_socket: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    virtlogd_socket: Option<VirtlogdSocket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_root: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_dirs: Option<Vec<PathBuf>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_size: Option<SizeValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_backups: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_idle_close: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_clients: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_clients_per_peer: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_idle_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_budget: Option<SizeValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_wait: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_exit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fd_store: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consoles_file: Option<PathBuf>,
    /// `[[console]]` tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    console: Option<Vec<crate::host::consoles::ConsoleEntry>>,
}

/// `virtlogd_socket`: a path, or `true` for the default path ([`default_virtlogd_socket`]).
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(untagged)]
enum VirtlogdSocket {
    On(bool),
    Path(PathBuf),
}

/// Overrides from the command line.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub socket: Option<PathBuf>,
    pub admin_socket: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// Serve the virtlogd socket here.
    pub virtlogd_socket: Option<PathBuf>,
    pub log_root: Option<PathBuf>,
    /// Seconds; 0 turns idle exit off.
    pub idle_exit: Option<u64>,
    /// The persisted consoles file.
    pub consoles_file: Option<PathBuf>,
}

/// Whether the daemon runs as root (system mode) or as a user (session mode).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The default main socket for this user.
pub fn default_socket() -> PathBuf {
    runtime_dir().join("logd.sock")
}

/// The directory of the default socket: `/run/logd` as root, else `$XDG_RUNTIME_DIR/logd` or
/// `/tmp/logd-$UID`.
pub fn runtime_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/run/logd");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("logd"),
        _ => PathBuf::from(format!("/tmp/logd-{}", nix::unistd::geteuid())),
    }
}

/// Where libvirtd looks for virtlogd: `/run/libvirt/virtlogd-sock` as root (libvirtd hard-codes
/// it), else `$XDG_RUNTIME_DIR/libvirt/virtlogd-sock`, as a session libvirtd does.
pub fn default_virtlogd_socket() -> PathBuf {
    if is_root() {
        return PathBuf::from("/run/libvirt/virtlogd-sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("libvirt/virtlogd-sock"),
        _ => runtime_dir().join("virtlogd-sock"),
    }
}

/// Where libvirt's QEMU driver (and its other drivers) put domain logs. A root logd that serves
/// the virtlogd socket accepts log paths under it with no `allowed_dirs` entry.
pub const LIBVIRT_LOG_DIR: &str = "/var/log/libvirt";

/// The admin socket beside a main socket: `logd.sock` gives `logd-admin.sock`; another name
/// gets `-admin` appended.
pub fn admin_socket_for(socket: &Path) -> PathBuf {
    sibling(socket, "admin")
}

/// The console socket beside a main socket: `logd.sock` gives `logd-console.sock`.
pub fn console_socket_for(socket: &Path) -> PathBuf {
    sibling(socket, "console")
}

/// `logd.sock` gives `logd-WHAT.sock`; another name gets `-WHAT` appended.
fn sibling(socket: &Path, what: &str) -> PathBuf {
    let name = socket
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "logd.sock".into());
    let admin = match name.strip_suffix(".sock") {
        Some(stem) => format!("{stem}-{what}.sock"),
        None => format!("{name}-{what}"),
    };
    socket.with_file_name(admin)
}

/// The default log root for this user.
pub fn default_log_root() -> Result<PathBuf, ConfigError> {
    if is_root() {
        return Ok(PathBuf::from("/var/log/logd"));
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("logd"));
    }
    let home = std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .ok_or(ConfigError::NoHome)?;
    Ok(PathBuf::from(home).join(".local/state/logd"))
}

impl Config {
    /// Loads the configuration: defaults, then `file` if given, then `over`.
    pub fn load(file: Option<&Path>, over: &Overrides) -> Result<Config, ConfigError> {
        let text = match file {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                        path: path.to_owned(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Config::from_text(file, text.as_deref(), over)
    }

    /// Loads the configuration from `text`, as if `file` (where it came from, for its errors,
    /// its consoles and a later SIGHUP) held it: a re-exec's guardian whose binary cannot read
    /// the file now runs with what the old process ran with ([`Config::effective_text`]).
    pub fn from_text(
        file: Option<&Path>,
        text: Option<&str>,
        over: &Overrides,
    ) -> Result<Config, ConfigError> {
        let fc = match (file, text) {
            (Some(path), Some(text)) => {
                toml::from_str::<FileConfig>(text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source: Box::new(source),
                })?
            }
            _ => FileConfig::default(),
        };
        let defaults = RotateConfig::default();
        let max_size = match fc.max_size {
            None => defaults.max_size,
            Some(SizeValue::Bytes(n)) => n,
            Some(SizeValue::Text(t)) => parse_size(&t).map_err(|reason| ConfigError::Invalid {
                key: "max_size",
                reason,
            })?,
        };
        if max_size < MIN_MAX_SIZE {
            return Err(ConfigError::Invalid {
                key: "max_size",
                reason: format!("{max_size} bytes is below the minimum of {MIN_MAX_SIZE}"),
            });
        }
        let max_backups = fc.max_backups.unwrap_or(defaults.max_backups);
        if max_backups > MAX_MAX_BACKUPS {
            return Err(ConfigError::Invalid {
                key: "max_backups",
                reason: format!("{max_backups} is above the maximum of {MAX_MAX_BACKUPS}"),
            });
        }
        let max_clients = fc.max_clients.unwrap_or(1024);
        if max_clients == 0 {
            return Err(ConfigError::Invalid {
                key: "max_clients",
                reason: "must be at least 1".into(),
            });
        }
        let max_clients_per_peer = fc
            .max_clients_per_peer
            .unwrap_or(DEFAULT_CLIENTS_PER_PEER.min(max_clients));
        if !(1..=max_clients).contains(&max_clients_per_peer) {
            return Err(ConfigError::Invalid {
                key: "max_clients_per_peer",
                reason: format!(
                    "{max_clients_per_peer} is not between 1 and max_clients ({max_clients})"
                ),
            });
        }
        let log_idle_close = fc
            .log_idle_close
            .unwrap_or(crate::datapath::sink::DEFAULT_REST_AFTER.as_secs());
        if log_idle_close > MAX_LOG_IDLE_CLOSE {
            return Err(ConfigError::Invalid {
                key: "log_idle_close",
                reason: format!(
                    "{log_idle_close} is more than {MAX_LOG_IDLE_CLOSE} seconds (0 keeps a \
                     written log's file open until the log closes)"
                ),
            });
        }
        let idle = fc
            .client_idle_timeout
            .unwrap_or(DEFAULT_CLIENT_IDLE_TIMEOUT);
        if !(1..=MAX_CLIENT_IDLE_TIMEOUT).contains(&idle) {
            return Err(ConfigError::Invalid {
                key: "client_idle_timeout",
                reason: format!("{idle} is not between 1 and {MAX_CLIENT_IDLE_TIMEOUT} seconds"),
            });
        }
        let reply_budget = match fc.reply_budget {
            None => DEFAULT_REPLY_BUDGET,
            Some(SizeValue::Bytes(n)) => n,
            Some(SizeValue::Text(t)) => parse_size(&t).map_err(|reason| ConfigError::Invalid {
                key: "reply_budget",
                reason,
            })?,
        };
        let max_read = logd_protocol::MAX_READ_LEN;
        if !(max_read..=u32::MAX as u64).contains(&reply_budget) {
            return Err(ConfigError::Invalid {
                key: "reply_budget",
                reason: format!(
                    "{reply_budget} bytes is not between one read ({max_read}) and 4 GiB"
                ),
            });
        }
        let reply_wait = fc.reply_wait.unwrap_or(DEFAULT_REPLY_WAIT);
        if reply_wait > MAX_REPLY_WAIT {
            return Err(ConfigError::Invalid {
                key: "reply_wait",
                reason: format!("{reply_wait} is above the maximum of {MAX_REPLY_WAIT} seconds"),
            });
        }
        let workers = fc.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        if workers == 0 || workers > 1024 {
            return Err(ConfigError::Invalid {
                key: "workers",
                reason: format!("{workers} is not between 1 and 1024"),
            });
        }
        let socket = match over.socket.clone().or(fc.socket) {
            Some(s) => s,
            None => default_socket(),
        };
        let log_root = match over.log_root.clone().or(fc.log_root) {
            Some(r) => r,
            None => default_log_root()?,
        };
        let log_root = absolute("log_root", &log_root)?;
        let allowed_dirs = fc
            .allowed_dirs
            .unwrap_or_default()
            .iter()
            .map(|d| absolute("allowed_dirs", d))
            .collect::<Result<Vec<_>, _>>()?;
        let admin_socket = match over.admin_socket.clone().or(fc.admin_socket) {
            Some(a) => a,
            None => admin_socket_for(&socket),
        };
        let console_socket = over
            .console_socket
            .clone()
            .or(fc.console_socket)
            .unwrap_or_else(|| console_socket_for(&socket));
        let virtlogd_socket = match (over.virtlogd_socket.clone(), fc.virtlogd_socket) {
            (Some(p), _) | (None, Some(VirtlogdSocket::Path(p))) => Some(p),
            (None, Some(VirtlogdSocket::On(true))) => Some(default_virtlogd_socket()),
            (None, Some(VirtlogdSocket::On(false)) | None) => None,
        }
        .map(|p| absolute("virtlogd_socket", &p))
        .transpose()?;
        let mut config = Config {
            socket: absolute("socket", &socket)?,
            admin_socket: absolute("admin_socket", &admin_socket)?,
            console_socket: absolute("console_socket", &console_socket)?,
            virtlogd_socket,
            log_root,
            allowed_dirs,
            rotate: RotateConfig {
                max_size,
                max_backups,
            },
            log_idle_close: (log_idle_close > 0)
                .then(|| std::time::Duration::from_secs(log_idle_close)),
            max_clients,
            max_clients_per_peer,
            client_idle_timeout: std::time::Duration::from_secs(idle),
            reply_budget,
            reply_wait: std::time::Duration::from_secs(reply_wait),
            workers,
            metrics_listen: fc.metrics_listen,
            fd_store: fc.fd_store.unwrap_or(false),
            idle_exit: over
                .idle_exit
                .or(fc.idle_exit)
                .filter(|s| *s > 0)
                .map(std::time::Duration::from_secs),
            binary: fc
                .binary
                .as_deref()
                .map(|b| absolute("binary", b))
                .transpose()?,
            log_level: fc
                .log_level
                .map(|l| {
                    crate::host::logging::directive(&l)
                        .map(|_| l.trim().to_owned())
                        .map_err(|e| ConfigError::Invalid {
                            key: "log_level",
                            reason: e.to_string(),
                        })
                })
                .transpose()?,
            origin: Origin {
                file: file.map(Path::to_owned),
                overrides: over.clone(),
            },
            consoles: Vec::new(),
            consoles_file: over
                .consoles_file
                .clone()
                .or(fc.consoles_file)
                .or_else(crate::host::persisted::default_path)
                .map(|p| absolute("consoles_file", &p))
                .transpose()?,
        };
        if let (Some(entries), Some(path)) = (fc.console, file) {
            // Relative paths resolve as a request's would, under this file's log root.
            let policy = PathPolicy::new(config.log_root.clone(), config.path_dirs());
            config.consoles =
                crate::host::consoles::check_all(entries, &policy).map_err(|source| {
                    ConfigError::Console {
                        path: path.to_owned(),
                        source,
                    }
                })?;
        }
        Ok(config)
    }

    /// The directories absolute log paths may lie under: `allowed_dirs`, and libvirt's log
    /// directory for a root logd that serves the virtlogd socket.
    pub fn path_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.allowed_dirs.clone();
        let libvirt = PathBuf::from(LIBVIRT_LOG_DIR);
        if self.virtlogd_socket.is_some() && is_root() && !dirs.contains(&libvirt) {
            dirs.push(libvirt);
        }
        dirs
    }

    /// Reads the configuration again from where it came from (SIGHUP).
    pub fn reload(&self) -> Result<Config, ConfigError> {
        Config::load(self.origin.file.as_deref(), &self.origin.overrides)
    }

    /// The settings in force, as a config file: every key with its value (the command line's
    /// overrides included), and the file's `[[console]]` tables. Read back by the same binary
    /// ([`Config::from_text`]), it gives the same settings.
    pub fn effective_text(&self) -> Result<String, toml::ser::Error> {
        let path = |p: &Path| p.to_path_buf();
        let fc = FileConfig {
            socket: Some(path(&self.socket)),
            admin_socket: Some(path(&self.admin_socket)),
            console_socket: Some(path(&self.console_socket)),
            virtlogd_socket: self
                .virtlogd_socket
                .as_deref()
                .map(|p| VirtlogdSocket::Path(path(p))),
            log_root: Some(path(&self.log_root)),
            allowed_dirs: Some(self.allowed_dirs.clone()),
            max_size: Some(SizeValue::Bytes(self.rotate.max_size)),
            max_backups: Some(self.rotate.max_backups),
            log_idle_close: Some(self.log_idle_close.map_or(0, |d| d.as_secs())),
            max_clients: Some(self.max_clients),
            max_clients_per_peer: Some(self.max_clients_per_peer),
            client_idle_timeout: Some(self.client_idle_timeout.as_secs()),
            reply_budget: Some(SizeValue::Bytes(self.reply_budget)),
            reply_wait: Some(self.reply_wait.as_secs()),
            workers: Some(self.workers),
            // 0: off (a default of on would otherwise come back).
            idle_exit: Some(self.idle_exit.map_or(0, |d| d.as_secs())),
            metrics_listen: self.metrics_listen.clone(),
            fd_store: Some(self.fd_store),
            binary: self.binary.clone(),
            log_level: self.log_level.clone(),
            consoles_file: self.consoles_file.clone(),
            console: (!self.consoles.is_empty()).then(|| {
                self.consoles
                    .iter()
                    .map(|c| crate::host::consoles::ConsoleEntry::from_request(&c.request()))
                    .collect()
            }),
        };
        toml::to_string(&fc)
    }
}

/// Makes a configured path absolute (relative to the current directory) and lexically clean.
fn absolute(key: &'static str, p: &Path) -> Result<PathBuf, ConfigError> {
    let p = std::path::absolute(p).map_err(|e| ConfigError::Invalid {
        key,
        reason: format!("{}: {e}", p.display()),
    })?;
    crate::host::paths::normalize(&p).ok_or_else(|| ConfigError::Invalid {
        key,
        reason: format!("{} escapes the root with `..`", p.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_text_reads_back_as_the_same_settings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("logd.toml");
        let text = format!(
            "socket = \"{d}/s.sock\"\nlog_root = \"{d}/logs\"\nallowed_dirs = [\"{d}/more\"]\n\
             max_size = \"64 KiB\"\nmax_backups = 7\nmax_clients = 9\nmax_clients_per_peer = 3\n\
             client_idle_timeout = 30\nreply_budget = \"8 MiB\"\nreply_wait = 2\nworkers = 3\n\
             idle_exit = 60\nmetrics_listen = \"127.0.0.1:9999\"\nfd_store = true\n\
             binary = \"/usr/sbin/logd\"\nlog_level = \"debug\"\nvirtlogd_socket = true\n\
             consoles_file = \"{d}/consoles.toml\"\n\
             [[console]]\ndomain = \"vm1\"\nname = \"serial0\"\nguest_listen = \"vm1.sock\"\n\
             log = \"vm1.log\"\ntcp = 4555\ntelnet = true\nwrite = \"shared\"\nreplay = \"4 KiB\"\n",
            d = dir.path().display()
        );
        std::fs::write(&file, &text).unwrap();
        let over = Overrides {
            admin_socket: Some(dir.path().join("a.sock")),
            ..Overrides::default()
        };
        let first = Config::load(Some(&file), &over).unwrap();
        let effective = first.effective_text().unwrap();
        let again = Config::from_text(Some(&file), Some(&effective), &over).unwrap();
        assert_eq!(format!("{again:?}"), format!("{first:?}"), "{effective}");
        // And with nothing set: the defaults come back as they were.
        let plain = Config::load(None, &Overrides::default()).unwrap();
        let again = Config::from_text(
            Some(&file),
            Some(&plain.effective_text().unwrap()),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            format!(
                "{:?}",
                Config {
                    origin: plain.origin.clone(),
                    ..again
                }
            ),
            format!("{plain:?}")
        );
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64 KiB"), Ok(65536));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("1 g"), Ok(1 << 30));
        assert!(parse_size("2 parsecs").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999 GiB").is_err());
    }

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("logd.toml");
        std::fs::write(&f, text).unwrap();
        Config::load(
            Some(&f),
            &Overrides {
                socket: Some(dir.path().join("s")),
                log_root: Some(dir.path().join("logs")),
                ..Overrides::default()
            },
        )
    }

    #[test]
    fn the_virtlogd_socket_is_off_unless_asked_for_and_opens_libvirts_log_directory() {
        let off = load_text("").unwrap();
        assert_eq!(off.virtlogd_socket, None);
        assert!(!off.path_dirs().contains(&PathBuf::from(LIBVIRT_LOG_DIR)));
        assert_eq!(
            load_text("virtlogd_socket = false\n")
                .unwrap()
                .virtlogd_socket,
            None
        );
        let on = load_text("virtlogd_socket = true\n").unwrap();
        assert_eq!(on.virtlogd_socket, Some(default_virtlogd_socket()));
        if is_root() {
            assert_eq!(
                default_virtlogd_socket(),
                PathBuf::from("/run/libvirt/virtlogd-sock")
            );
            assert!(on.path_dirs().contains(&PathBuf::from(LIBVIRT_LOG_DIR)));
        }
        let at =
            load_text("virtlogd_socket = \"/run/x/vl.sock\"\nallowed_dirs = [\"/srv/logs\"]\n")
                .unwrap();
        assert_eq!(at.virtlogd_socket, Some(PathBuf::from("/run/x/vl.sock")));
        assert!(at.path_dirs().contains(&PathBuf::from("/srv/logs")));
        let e = load_text("virtlogd_socket = 3\n").unwrap_err().to_string();
        assert!(e.contains("virtlogd_socket"), "{e}");
    }

    #[test]
    fn max_backups_is_capped_at_32() {
        assert_eq!(
            load_text("max_backups = 32\n").unwrap().rotate.max_backups,
            32
        );
        let e = load_text("max_backups = 1000\n").unwrap_err().to_string();
        assert!(e.contains("max_backups") && e.contains("32"), "{e}");
    }

    #[test]
    fn file_values_apply() {
        let c = load_text("max_size = \"64 KiB\"\nmax_backups = 2\nmax_clients = 7\n").unwrap();
        assert_eq!({ c.rotate.max_size }, 65536);
        assert_eq!(c.rotate.max_backups, 2);
        assert_eq!(c.max_clients, 7);
        let c = load_text("max_size = 8192\n").unwrap();
        assert_eq!({ c.rotate.max_size }, 8192);
        assert!(!c.fd_store, "the fd store is off unless asked for");
        assert!(load_text("fd_store = true\n").unwrap().fd_store);
    }

    #[test]
    fn unknown_key_names_the_key() {
        let e = load_text("max_sise = 1\n").unwrap_err().to_string();
        assert!(e.contains("max_sise"), "{e}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let e = load_text("max_size = \"lots\"\n").unwrap_err().to_string();
        assert!(e.contains("max_size"), "{e}");
        let e = load_text("max_size = 10\n").unwrap_err().to_string();
        assert!(e.contains("max_size"), "{e}");
        let e = load_text("max_backups = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("max_backups"), "{e}");
        let e = load_text("max_clients = 0\n").unwrap_err().to_string();
        assert!(e.contains("max_clients"), "{e}");
        for (text, key) in [
            (
                "max_clients = 8\nmax_clients_per_peer = 9\n",
                "max_clients_per_peer",
            ),
            ("client_idle_timeout = 0\n", "client_idle_timeout"),
            ("reply_budget = \"1 MiB\"\n", "reply_budget"),
            ("reply_wait = 61\n", "reply_wait"),
        ] {
            let e = load_text(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn the_persisted_consoles_file_has_a_default_and_a_key() {
        let c = load_text("").unwrap();
        assert_eq!(c.consoles_file, crate::host::persisted::default_path());
        if is_root() {
            assert_eq!(
                c.consoles_file,
                Some(PathBuf::from("/var/lib/logd/consoles.toml"))
            );
        }
        let c = load_text("consoles_file = \"/srv/logd/c.toml\"\n").unwrap();
        assert_eq!(c.consoles_file, Some(PathBuf::from("/srv/logd/c.toml")));
        let e = load_text("consoles_file = 3\n").unwrap_err().to_string();
        assert!(e.contains("consoles_file"), "{e}");
    }

    #[test]
    fn connection_limits_default_sensibly() {
        let c = load_text("").unwrap();
        assert_eq!(c.max_clients_per_peer, DEFAULT_CLIENTS_PER_PEER);
        assert_eq!(c.client_idle_timeout.as_secs(), DEFAULT_CLIENT_IDLE_TIMEOUT);
        assert_eq!(c.reply_budget, DEFAULT_REPLY_BUDGET);
        // A small max_clients lowers the per-peer default with it.
        let c = load_text("max_clients = 2\n").unwrap();
        assert_eq!(c.max_clients_per_peer, 2);
    }
}
