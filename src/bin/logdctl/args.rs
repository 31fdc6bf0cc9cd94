//! The command line: every command and option, as clap derives them. `--help` is made from the
//! doc comments here; the manual page (`docs/man/logdctl.1.md`) says the same at more length.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use logd::config;
use logd_protocol::{DomainId, Position, Uuid};

/// Talk to logd: capture a command's output into a capped log, append to logs, read them.
#[derive(Debug, Parser)]
#[command(name = "logdctl", version, about, long_about = None)]
pub(crate) struct Args {
    /// logd's socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]
    #[arg(long, global = true, env = "LOGD_SOCKET", value_name = "PATH")]
    pub(crate) socket: Option<PathBuf>,
    /// logd's admin socket [default: beside the main socket, logd-admin.sock]
    #[arg(long, global = true, env = "LOGD_ADMIN_SOCKET", value_name = "PATH")]
    pub(crate) admin_socket: Option<PathBuf>,
    /// logd's console socket, for `attach` [default: beside the main socket, logd-console.sock]
    #[arg(long, global = true, env = "LOGD_CONSOLE_SOCKET", value_name = "PATH")]
    pub(crate) console_socket: Option<PathBuf>,
    /// Start a daemon if none answers, even as root (a non-root user's default socket always
    /// gets one started).
    #[arg(long, global = true, env = "LOGD_AUTOSTART")]
    pub(crate) autostart: bool,
    /// Also trust a logd run by this uid. By default logdctl talks only to a daemon run by root
    /// or by its own uid (checked with SO_PEERCRED before it sends anything).
    #[arg(long, global = true, env = "LOGD_SERVER_UID", value_name = "UID")]
    pub(crate) server_uid: Option<u32>,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DomainArgs {
    /// The domain (guest) name.
    #[arg(long, value_name = "NAME")]
    domain: String,
    /// The domain's UUID [default: derived from driver and name].
    #[arg(long, value_name = "UUID")]
    uuid: Option<String>,
    /// The hypervisor driver.
    #[arg(long, default_value = "qemu", value_name = "DRIVER")]
    driver: String,
}

impl DomainArgs {
    pub(crate) fn id(&self) -> anyhow::Result<DomainId> {
        let mut id = DomainId::from_name(&self.driver, &self.domain);
        if let Some(u) = &self.uuid {
            id.uuid = Uuid::parse_str(u).with_context(|| format!("invalid UUID {u:?}"))?;
        }
        Ok(id)
    }
}

/// `--tls-anonymous`: what a TLS client without a certificate gets.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum TlsAnonymousArg {
    /// Refused, told why (the default).
    Refuse,
    /// Let in read-only.
    ReadOnly,
}

#[derive(Debug, Subcommand)]
// Parsed once per run: the size of the largest variant (`Add`, with its options) costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum ConsoleCmd {
    /// Add a console: its guest side, its log, and where subscribers connect. Prints the bound
    /// TCP address.
    Add {
        #[command(flatten)]
        domain: DomainArgs,
        /// The console's name within the domain, e.g. serial0.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// logd listens on this UNIX socket and QEMU connects
        /// (-chardev socket,id=s0,path=SOCK,server=off,reconnect=1).
        #[arg(long, value_name = "SOCK", group = "guest")]
        guest_listen: Option<String>,
        /// logd connects to this UNIX socket, on which QEMU listens (server=on), and reconnects
        /// when QEMU restarts.
        #[arg(long, value_name = "SOCK", group = "guest")]
        guest_connect: Option<String>,
        /// logd makes a socketpair and gives one end to COMMAND as fd 3 (e.g. QEMU with
        /// -chardev socket,id=s0,fd=3); logdctl execs COMMAND.
        #[arg(long, group = "guest", requires = "command")]
        guest_fd: bool,
        /// The console's log path.
        #[arg(long, value_name = "PATH")]
        log: String,
        /// Remove the log and its backups first.
        #[arg(long)]
        truncate: bool,
        /// TCP listener for subscribers, ADDR:PORT or PORT (binds 127.0.0.1); port 0 picks one.
        #[arg(long, value_name = "ADDR:PORT")]
        tcp: Option<String>,
        /// UNIX-socket listener for local subscribers.
        #[arg(long, value_name = "PATH")]
        unix: Option<String>,
        /// Subscribers speak telnet (negotiation, 0xFF escaping) instead of raw bytes.
        #[arg(long)]
        telnet: bool,
        /// Bytes of recent output a new subscriber gets first [default: 16KiB; 0: none].
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        replay: Option<u64>,
        /// Who may type into the guest.
        #[arg(long, value_enum, default_value = "exclusive")]
        write: WriteArg,
        /// Most subscribers at once [default: 32].
        #[arg(long, value_name = "N")]
        max_subscribers: Option<u32>,
        /// A subscriber that falls this far behind is disconnected [default: 1MiB].
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        queue_limit: Option<u64>,
        /// Keep the console across restarts: logd writes it to its persisted consoles file
        /// (consoles_file, /var/lib/logd/consoles.toml as root) and creates it again at each
        /// start, after a stop, a crash or a reboot, until `logdctl console remove`. It comes
        /// back with its paths and TCP address as they are now (a port 0 keeps the port it got)
        /// and appends to its log. logdctl returns once the file is written; if logd cannot
        /// write it, the console is not added. Not with --guest-fd.
        #[arg(long, conflicts_with = "guest_fd")]
        persist: bool,
        /// Plain TCP subscribers may type into the guest. Without it they are read-only: any
        /// local user who can reach a TCP port would otherwise have the guest's console (root
        /// access to it). Prefer --unix with --read-write.
        #[arg(long)]
        tcp_write: bool,
        /// UNIX subscribers that may type: user names, uids, @GROUP or @GID, comma-separated or
        /// repeated. Root and logd's own user always may. The --unix socket is then mode 0666
        /// and logd decides by the peer's credentials (SO_PEERCRED).
        #[arg(long, value_name = "USER|@GROUP", value_delimiter = ',')]
        read_write: Vec<String>,
        /// UNIX subscribers that may watch, not type (the same forms). Anyone else, but root and
        /// logd's own user, is refused.
        #[arg(long, value_name = "USER|@GROUP", value_delimiter = ',')]
        read_only: Vec<String>,
        /// Send subscribers no notices of logd's own ("[logd: guest connected]", the greeting
        /// with their role, the write lock's moves): their stream is the console's output byte
        /// for byte, up to their last words when logd disconnects them.
        #[arg(long)]
        no_notices: bool,
        /// Mark the guest's connections and disconnections in the console's log, as lines of
        /// their own: "[-- logd: guest connected 2026-12-06T13:40:40.123Z --]". Without it the
        /// log holds the guest's output only.
        #[arg(long)]
        mark_log: bool,
        /// TLS listener for remote subscribers, ADDR:PORT or PORT (binds 127.0.0.1; not 0), with
        /// client certificates (rustls). Needs --tls-dir. A client certificate the CA did not sign
        /// fails the handshake; a signed one gets its role from its subject (--tls-read-write,
        /// --tls-read-only). Over TLS a subscriber speaks telnet if the console has --telnet.
        #[arg(long, value_name = "ADDR:PORT", requires = "tls_dir")]
        tls: Option<String>,
        /// The TLS credentials, in QEMU's tls-creds-x509 layout: ca-cert.pem (the CA that signs
        /// the client certificates), server-cert.pem, server-key.pem, and ca-crl.pem if present.
        /// Under log_root or allowed_dirs, as the other paths.
        #[arg(long, value_name = "DIR", requires = "tls")]
        tls_dir: Option<String>,
        /// TLS clients that may type: certificate subjects as RFC 4514 writes them
        /// ("CN=alice,O=Example", as `logdctl ps` shows them), or "CN=NAME" alone; repeated
        /// (not comma-separated: a subject has commas).
        #[arg(long, value_name = "SUBJECT", requires = "tls")]
        tls_read_write: Vec<String>,
        /// TLS clients that may watch, the same forms. Without either list any certificate the
        /// CA signed is read-only; with a list, a subject in neither is refused.
        #[arg(long, value_name = "SUBJECT", requires = "tls")]
        tls_read_only: Vec<String>,
        /// What a TLS client without a certificate gets.
        #[arg(long, value_enum, value_name = "WHAT", requires = "tls")]
        tls_anonymous: Option<TlsAnonymousArg>,
        /// With --guest-fd: the command to run with the guest's end as fd 3.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Remove a console (its log stays). A persisted console (--persist) is also removed from
    /// logd's persisted consoles file, so it does not come back at the next start; one that is
    /// persisted but not running is removed from the file only.
    Remove {
        #[command(flatten)]
        domain: DomainArgs,
        #[arg(long, value_name = "NAME")]
        name: String,
    },
    /// Disconnect a subscriber (its id is in `logdctl ps`).
    Kick {
        #[arg(value_name = "SUBSCRIBER_ID")]
        subscriber: u64,
    },
    /// Give the write lock to a subscriber.
    Grant {
        #[arg(value_name = "SUBSCRIBER_ID")]
        subscriber: u64,
    },
    /// List consoles.
    List {
        /// JSON, one array of objects.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum WriteArg {
    Exclusive,
    Shared,
    None,
}

#[derive(Debug, Subcommand)]
// Parsed once per run, as `ConsoleCmd`.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Cmd {
    /// Manage consoles: a guest's serial chardev with a log and TCP/UNIX subscribers.
    #[command(subcommand)]
    Console(ConsoleCmd),
    /// Every stream of every domain, one row each, subscribers under their console.
    Ps {
        /// JSON (the admin snapshot; see docs/admin.md).
        #[arg(long)]
        json: bool,
    },
    /// Change the daemon's log filter while it runs: a level (error, warn, info, debug, trace)
    /// or tracing directives such as `logd=info,logd::console=debug`.
    LogLevel {
        #[arg(value_name = "LEVEL")]
        level: String,
    },
    /// Stream lifecycle events as they happen (domains, logs, rotations, guests, subscribers,
    /// write lock, drops, errors) until interrupted.
    Events {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// A live view of every stream, busiest first, refreshed every second; q quits.
    Top,
    /// Hand everything to a new logd process (as SIGUSR1 does) and report how it went: the
    /// binary at the configured path, or --binary. If the new process cannot take over, the old
    /// one goes on serving and this exits 1 with the reason.
    Reexec {
        /// Run this binary instead of the configured one.
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One domain in depth.
    Stats {
        /// The domain's name.
        domain: String,
        #[arg(long)]
        json: bool,
    },
    /// Connect this terminal to a console, through logd's console socket (any local user; the
    /// console's lists decide who may watch and who may type). The escape (Ctrl-]) then a key
    /// is a command: `.` detaches, `?` lists the others (who, lock, force, spy, replay, BREAK,
    /// SysRq).
    Attach {
        /// The domain's name.
        #[arg(long, value_name = "NAME")]
        domain: String,
        /// The console's name.
        #[arg(long, value_name = "CONSOLE")]
        name: String,
        /// Watch only (spy), even if you may type; ask for the lock later with the escape, `l`.
        #[arg(long)]
        read_only: bool,
        /// Take the write lock from whoever holds it (your uid must be read-write).
        #[arg(long, conflicts_with = "read_only")]
        force: bool,
        /// The escape: `^]` (Ctrl-]), conserver's `^Ec`, or up to three keys; `^X` is Ctrl-X.
        #[arg(long, value_name = "KEYS", default_value = "^]")]
        escape: String,
    },
    /// Run a command with its stdout and stderr going into a capped log.
    Run {
        #[command(flatten)]
        domain: DomainArgs,
        /// The log path (relative to logd's log root, or absolute under an allowed directory).
        #[arg(long, value_name = "PATH")]
        log: String,
        /// Remove the log and its backups first.
        #[arg(long)]
        truncate: bool,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Append a message (a line) to a log, open or not.
    Append {
        #[command(flatten)]
        domain: DomainArgs,
        #[arg(long, value_name = "PATH")]
        log: String,
        /// Do not add a newline at the end of the message.
        #[arg(short = 'n')]
        no_newline: bool,
        message: String,
    },
    /// Print the position INODE:OFFSET of the end of a log.
    Position {
        #[arg(long, value_name = "PATH")]
        log: String,
        /// Print INODE:OFFSET:BIRTH, which stays exact even if the file system reuses the inode.
        #[arg(long)]
        exact: bool,
    },
    /// Write a log's raw bytes to stdout, oldest first, across rotated files.
    Read {
        #[arg(long, value_name = "PATH")]
        log: String,
        /// Start at this position (as printed by `position`, INODE:OFFSET or INODE:OFFSET:BIRTH)
        /// [default: the oldest byte].
        #[arg(long, value_name = "INODE:OFFSET")]
        from: Option<Position>,
        /// Read at most this many bytes [default: everything].
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        max: Option<u64>,
    },
    /// Print the last bytes of a log across rotated files.
    Tail {
        #[arg(long, value_name = "PATH")]
        log: String,
        /// How many bytes (suffixes K, M, G allowed).
        #[arg(long, default_value = "100KiB", value_parser = parse_size)]
        bytes: u64,
        /// Keep printing what is written, across rotations.
        #[arg(short, long)]
        follow: bool,
    },
}

fn parse_size(s: &str) -> Result<u64, String> {
    config::parse_size(s)
}
