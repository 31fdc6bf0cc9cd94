//! The command line: every command and option, as clap derives them. `--help` is made from the
//! doc comments here, and so is the manual page, docs/man/logdctl.1, with the prose of
//! docs/man/logdctl.1.extra.md (`LOGD_BLESS=1 cargo test --locked -p logd --bins` regenerates it;
//! kit::man). A command's doc comment is its long help: Markdown of the subset kit::roff reads
//! (`verbatim_doc_comment` where it has lists or code), its first line the summary.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use logd::config;
use logd_protocol::{DomainId, Position, Uuid};

/// Client of logd: runs commands into capped logs, reads them, manages consoles and attaches to them
#[derive(Debug, Parser)]
#[command(name = "logdctl", version, long_about = None)]
pub(crate) struct Args {
    /// logd's socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]
    ///
    /// Without XDG_RUNTIME_DIR, /tmp/logd-$UID/logd.sock; see DEFAULTS in logd(8).
    #[arg(long, global = true, env = "LOGD_SOCKET", value_name = "PATH")]
    pub(crate) socket: Option<PathBuf>,
    /// logd's admin socket, for `ps`, `stats`, `events`, `top`, `log-level`, `reexec`, and
    /// `console kick` and `grant` [default: beside the main socket, logd-admin.sock]
    #[arg(long, global = true, env = "LOGD_ADMIN_SOCKET", value_name = "PATH")]
    pub(crate) admin_socket: Option<PathBuf>,
    /// logd's console socket, for `attach` [default: beside the main socket, logd-console.sock]
    #[arg(long, global = true, env = "LOGD_CONSOLE_SOCKET", value_name = "PATH")]
    pub(crate) console_socket: Option<PathBuf>,
    /// Start a daemon if none answers, even as root (a non-root user's default socket always
    /// gets one started).
    ///
    /// When no daemon answers, logdctl starts one: for a non-root user on the default socket it
    /// always does (like virtlogd's session mode); this option asks for the same as root, or on
    /// an explicit socket.
    ///
    /// The daemon runs in the background in its own process group. Its output goes to
    /// `logd.log` beside the socket, and logdctl says so on stderr. It exits by itself 30
    /// seconds after its last log closes (`logd --idle-exit 30`).
    ///
    /// Before it starts anything, logdctl checks the socket's directory as logd does (ACCESS in
    /// logd(8)): `/tmp/logd-$UID` made by another user, or open to other users, is refused with
    /// an error naming it, its owner and its mode. `logd.log` is never opened through a symlink.
    #[arg(long, global = true, env = "LOGD_AUTOSTART")]
    pub(crate) autostart: bool,
    /// Also trust a logd run by this uid.
    ///
    /// Before it sends anything, logdctl checks who serves the socket (`SO_PEERCRED`). It talks
    /// only to a logd run by root or by its own uid, and otherwise stops with `refusing to talk
    /// to SOCKET: it is served by uid N (pid P)`. A logd run by a dedicated user is trusted by
    /// naming that uid here.
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
    /// The domain's UUID [default: derived from driver and name, so that the same name always
    /// means the same domain].
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
    /// Refused, told why (the default)
    Refuse,
    /// Let in read-only
    ReadOnly,
}

#[derive(Debug, Subcommand)]
// Parsed once per run: the size of the largest variant (`Add`, with its options) costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum ConsoleCmd {
    /// Add a console: its guest side, its log, and where subscribers connect
    ///
    /// Adds a console, the tcp+logfile serial backend, and prints the bound TCP address (with
    /// the real port when `--tcp` gave port 0). The guest side is one of:
    ///
    /// - `--guest-listen SOCK`: logd listens and QEMU connects:
    ///   `-chardev socket,id=s0,path=SOCK,server=off,reconnect=1 -serial chardev:s0`;
    /// - `--guest-connect SOCK`: QEMU listens (`server=on,wait=on`); logd connects, retrying
    ///   while QEMU starts and after it restarts;
    /// - `--guest-fd -- COMMAND...`: logd makes a socketpair, and logdctl execs COMMAND with the
    ///   guest's end as fd 3 (`-chardev socket,id=s0,fd=3`).
    ///
    /// Every byte from the guest goes to the log (the same rotation as stdio logs) and to every
    /// subscriber. Subscribers connect with `nc` or `telnet` to `--tcp`, to the `--unix` socket,
    /// over TLS to `--tls`, or with `logdctl attach` through logd's console socket.
    ///
    /// Each subscriber is greeted with its console, its role, who holds the write lock and
    /// whether the guest is there, and is told when the guest comes and goes and when the lock
    /// moves (docs/CONSOLES.md, "Notices"). A new subscriber's replay starts at a line boundary.
    ///
    /// A console is root access to its guest, so each subscriber gets a role when it connects,
    /// read-only or read-write (docs/CONSOLES.md, "Who may type"):
    ///
    /// - plain TCP subscribers are **read-only** (any local user can reach a TCP port), unless
    ///   `--tcp-write`;
    /// - a `--unix` subscriber, or one that attaches, is judged by its credentials: root and
    ///   logd's own user are read-write; `--read-write` and `--read-only` name the others.
    ///   Anyone else is refused with a line saying why;
    /// - a TLS subscriber by its client certificate (docs/CONSOLES.md, "TLS"). A certificate
    ///   the CA did not sign fails the handshake. A TLS subscriber is shown as its certificate's
    ///   subject (or `anonymous@ADDR:PORT`). A re-exec keeps the TLS listener and tells TLS
    ///   subscribers to reconnect. A console with TLS is not kept in systemd's fd store.
    ///
    /// Every refusal is logged and counted (`refused`). A logd older than these options refuses
    /// the request (`this logd is too old for --read-write`), and adds nothing.
    ///
    /// A console added this way lives as long as logd's process line: a re-exec keeps it, a
    /// stop or a crash does not, unless `--persist`. A console can also be declared in logd's
    /// config file (`[[console]]`, with these options as keys: CONSOLES in logd(8)); the
    /// persisted consoles file's entries use the same keys, and an entry moved into the config
    /// file becomes a declared console.
    #[command(verbatim_doc_comment, group(clap::ArgGroup::new("guest").required(true)))]
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
        /// Subscribers speak telnet (negotiation, 0xFF doubled) instead of raw bytes.
        #[arg(long)]
        telnet: bool,
        /// Bytes of recent output a new subscriber gets first [default: 16KiB; 0: none].
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        replay: Option<u64>,
        /// Who may type into the guest: of the read-write subscribers, one or all.
        #[arg(long, value_enum, default_value = "exclusive")]
        write: WriteArg,
        /// Most subscribers at once [default: 32]; one more gets a one-line refusal.
        #[arg(long, value_name = "N")]
        max_subscribers: Option<u32>,
        /// A subscriber that falls this far behind is disconnected [default: 1MiB].
        ///
        /// So a slow subscriber never slows the guest or the others. It is told why, and how many
        /// bytes it missed.
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        queue_limit: Option<u64>,
        /// Keep the console across restarts, until `logdctl console remove`.
        ///
        /// logd writes it to its persisted consoles file (`consoles_file`,
        /// /var/lib/logd/consoles.toml as root) and creates it again at each start, after a stop,
        /// a crash or a reboot. It comes back with its paths and TCP address as they are now (a
        /// port 0 keeps the port it got) and appends to its log (`--truncate` acts once, now).
        /// logdctl returns once the file is written; if logd cannot write it, the console is not
        /// added and the error names the file. Not with --guest-fd. A logd older than --persist
        /// refuses the request, and adds nothing.
        #[arg(long, conflicts_with = "guest_fd")]
        persist: bool,
        /// Plain TCP subscribers may type into the guest.
        ///
        /// Without it they are read-only: any local user who can reach a TCP port would otherwise
        /// have the guest's console (root access to it). Prefer --unix with --read-write.
        #[arg(long)]
        tcp_write: bool,
        /// UNIX subscribers (and `logdctl attach`) that may type: user names, uids, @GROUP or
        /// @GID, comma-separated or repeated.
        ///
        /// Root and logd's own user always may. With a list, the --unix socket is mode 0666 and
        /// logd decides by the peer's credentials (`SO_PEERCRED`); without, it is mode 0600.
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
        /// TLS listener for remote subscribers, ADDR:PORT or PORT (binds 127.0.0.1), with client
        /// certificates (rustls). Needs --tls-dir.
        ///
        /// Port 0 is refused: nothing could report the port it got. A client certificate the CA
        /// did not sign fails the handshake; a signed one gets its role from its subject
        /// (--tls-read-write, --tls-read-only). Over TLS a subscriber speaks telnet if the
        /// console has --telnet.
        #[arg(long, value_name = "ADDR:PORT", requires = "tls_dir")]
        tls: Option<String>,
        /// The TLS credentials, in QEMU's tls-creds-x509 layout.
        ///
        /// `ca-cert.pem` (the CA that signs the client certificates), `server-cert.pem`,
        /// `server-key.pem`, and `ca-crl.pem` if present. Under `log_root` or `allowed_dirs`, as
        /// the other paths. Read when the console is created, and again at each re-exec.
        #[arg(long, value_name = "DIR", requires = "tls")]
        tls_dir: Option<String>,
        /// TLS clients that may type: certificate subjects as RFC 4514 writes them
        /// ("CN=alice,O=Example", as `logdctl ps` shows them), or "CN=NAME" alone; repeated
        /// (not comma-separated: a subject has commas).
        #[arg(long, value_name = "SUBJECT", requires = "tls")]
        tls_read_write: Vec<String>,
        /// TLS clients that may watch, the same forms.
        ///
        /// Without either list any certificate the CA signed is read-only; with a list, a subject
        /// in neither is refused.
        #[arg(long, value_name = "SUBJECT", requires = "tls")]
        tls_read_only: Vec<String>,
        /// What a TLS client without a certificate gets.
        #[arg(long, value_enum, value_name = "WHAT", requires = "tls")]
        tls_anonymous: Option<TlsAnonymousArg>,
        /// With --guest-fd: the command to run with the guest's end as fd 3.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Remove a console (its log stays).
    ///
    /// Its subscribers are told and disconnected, and its log is kept. A console declared in
    /// logd's config file comes back at the next SIGHUP or start unless its table is removed
    /// too. A persisted console (`--persist`) is first removed from logd's persisted consoles
    /// file, so it does not come back; if the file cannot be written, the console is not removed
    /// and the error says why. One that is persisted but not running (it could not be created at
    /// start) is removed from the file only.
    Remove {
        #[command(flatten)]
        domain: DomainArgs,
        /// The console's name within the domain.
        #[arg(long, value_name = "NAME")]
        name: String,
    },
    /// Disconnect a subscriber (its id is in `logdctl ps`).
    Kick {
        /// The subscriber, as `logdctl ps` shows it.
        #[arg(value_name = "SUBSCRIBER_ID")]
        subscriber: u64,
    },
    /// Give the write lock to a subscriber.
    ///
    /// A read-only subscriber cannot be given the lock: `grant` fails, naming it.
    Grant {
        /// The subscriber, as `logdctl ps` shows it.
        #[arg(value_name = "SUBSCRIBER_ID")]
        subscriber: u64,
    },
    /// List consoles.
    ///
    /// One line per console: domain, name, TCP address, guest side up or down, subscribers,
    /// log.
    List {
        /// JSON: an array of objects with the fields of `ConsoleInfo` (see docs/protocol.md).
        #[arg(long)]
        json: bool,
    },
}

/// `--write`: who may type into the guest.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum WriteArg {
    /// The longest-connected read-write subscriber types; the others' input is discarded
    Exclusive,
    /// Every read-write subscriber types
    Shared,
    /// Nobody types
    None,
}

#[derive(Debug, Subcommand)]
// Parsed once per run, as `ConsoleCmd`.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Cmd {
    /// Manage consoles: a guest's serial chardev with a log and TCP/UNIX subscribers.
    #[command(subcommand)]
    Console(ConsoleCmd),
    /// Every stream of every domain, one row each, subscribers under their console
    ///
    /// First, one line about the daemon:
    ///
    /// ```
    /// logd 0.1.0 pid 23989 build a362db919558 up 0h00m03s, 2 re-execs (last: pid 23989 -> 23989, blackout 7.0 ms)
    /// ```
    ///
    /// It shows the version, the serving pid, the first 12 hex digits of the running binary's
    /// GNU build-id (`?` if it has none), and the uptime since the first start, across
    /// re-execs. The re-exec count and the last re-exec follow once there has been one (the two
    /// pids differ only when a guardian took over). A failed last re-exec shows as
    /// `(last failed: REASON)`.
    ///
    /// Then one row per stream of every domain: bytes in and written, rotations, bytes dropped,
    /// guest state, input rate, log path. Console subscribers are listed under their console:
    /// id, peer (`UID:NAME` on the UNIX socket, `ADDR:PORT` on TCP, the certificate's subject
    /// over TLS), role (`read-only`, `read-write`), writer or reader, bytes sent, queue.
    #[command(verbatim_doc_comment)]
    Ps {
        /// JSON (the admin snapshot; see docs/admin.md).
        #[arg(long)]
        json: bool,
    },
    /// Change the daemon's log filter while it runs
    ///
    /// LEVEL is `off`, `error`, `warn`, `info`, `debug` or `trace` (for logd's own modules), or
    /// a list of `TARGET=LEVEL` directives such as `logd=info,logd::console=debug` (a bare
    /// level in the list sets the default for every target). Anything else (`warning`,
    /// `verbose`, a bare target such as `logd::serve`) is refused with the list of valid levels,
    /// and the filter stays as it was. The filter is kept across re-execs, until the next
    /// `log-level` or restart.
    LogLevel {
        /// A level, or TARGET=LEVEL directives, comma-separated.
        #[arg(value_name = "LEVEL")]
        level: String,
    },
    /// Stream lifecycle events as they happen, until interrupted
    ///
    /// The events:
    ///
    /// - domain and log opened or closed;
    /// - rotations;
    /// - guest connected or disconnected;
    /// - subscriber joined or left;
    /// - write lock moved;
    /// - bytes dropped, errors;
    /// - a re-exec done (`reexeced`, with the pid before and after: the same) or failed
    ///   (`reexec_failed`, with the reason).
    ///
    /// Each line is the time (RFC 3339, UTC, to the millisecond), the event and its fields:
    ///
    /// ```
    /// 2026-12-06T16:40:01.123Z log_opened domain=vm1 path=/var/log/logd/vm1.log
    /// ```
    #[command(verbatim_doc_comment)]
    Events {
        /// One JSON object per line (fields in docs/admin.md), the time as `at_ms`, milliseconds
        /// since the Unix epoch.
        #[arg(long)]
        json: bool,
    },
    /// A live view of every stream, busiest first, refreshed every second; q quits.
    ///
    /// It shows input and output rates, bytes in, rotations, drops, guest state and
    /// subscribers. The bottom line names the keys:
    ///
    /// - `s` sorts by the next column: IN/s (the default), IN, ROT, DROP (largest first), then
    ///   DOMAIN (A to Z);
    /// - `/` filters by domain: type part of a name; Enter keeps the filter (shown on the
    ///   bottom line), Esc clears it, Backspace takes a character back;
    /// - `q` or Ctrl-C quits (while the filter is typed, only Ctrl-C).
    ///
    /// The terminal is restored on every exit path.
    #[command(verbatim_doc_comment)]
    Top,
    /// Hand everything to a new logd process (as SIGUSR1 does) and report how it went
    ///
    /// logd execs the binary at its configured path (the config key `binary`), or `--binary`,
    /// in the same process (see SIGNALS in logd(8), and docs/LIFECYCLE.md). Every pipe,
    /// console, subscriber and client connection is carried over, and the pid stays. On success
    /// the new image answers, on the same connection:
    ///
    /// ```
    /// re-exec done: pid 23941 -> 23941, 1 domains and 6 fds carried, blackout 8.0 ms (10.2 ms from the request)
    /// ```
    ///
    /// The blackout runs from the moment the old image stops reading to the moment the new one
    /// reads again. The figure in parentheses counts from the request.
    ///
    /// If the re-exec fails, logd goes on serving, with nothing lost, and `reexec` exits 1.
    /// Before the exec (here, a missing binary), the pid stays:
    ///
    /// ```
    /// logdctl: re-exec failed; the old process goes on: cannot run /usr/bin/logd: No such file or directory (os error 2)
    /// ```
    ///
    /// After the exec, the old binary takes over in its guardian's process, whose pid the
    /// message gives:
    ///
    /// ```
    /// logdctl: re-exec failed; the old binary took over as pid 24174: the new binary (pid 23941) exited before it was ready
    /// ```
    #[command(verbatim_doc_comment)]
    Reexec {
        /// Run this binary instead of the configured one (made absolute against the current
        /// directory).
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
        /// Print the report as JSON: `at_ms`, `from_pid`, `to_pid`, `error` (null on success),
        /// `blackout_us`, `total_us`, `domains`, `fds`.
        #[arg(long)]
        json: bool,
    },
    /// One domain in depth
    ///
    /// Every counter of every stream, the last error, rates, subscribers.
    Stats {
        /// The domain's name.
        domain: String,
        /// JSON: the domain as the admin socket reports it (see docs/admin.md).
        #[arg(long)]
        json: bool,
    },
    /// Connect this terminal to a console, as `virsh console` and conserver's `console` do
    ///
    /// - It goes through logd's console socket, which any local user may reach: logd knows the
    ///   caller's uid and gives it the role the console's `--read-write` and `--read-only`
    ///   lists say (root and logd's own uid may type; a user in no list is refused). The
    ///   console needs no `--unix` or `--tcp` listener.
    /// - The terminal is put in raw mode: every key goes to the console, Ctrl-C included.
    /// - The escape (`^]`, Ctrl-], unless `--escape`), then a key, is a command:
    ///
    ///   - `.` (or `d`, `q`) detaches;
    ///   - `w`: who is attached, and who may type;
    ///   - `l` asks for the write lock, `f` forces it (a read-write user only), `s` spies
    ///     (gives it up and watches);
    ///   - `r` replays the last lines;
    ///   - `b` sends a BREAK, `k` a SysRq;
    ///   - `?` lists them;
    ///   - the escape's last key again types the escape itself.
    ///
    ///   See docs/CONSOLES.md, "logdctl attach".
    /// - The terminal is restored whatever ends the session: detaching, the console closing, an
    ///   error, or SIGTERM, SIGHUP or SIGQUIT (exit status 128 + the signal number).
    #[command(verbatim_doc_comment)]
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
    /// Run a command with its stdout and stderr going into a capped log
    ///
    /// Opens the log (`--truncate` removes it and its backups first), then execs CMD with stdout
    /// and stderr on the log's pipe. stdin is left alone. The exit status is CMD's. If CMD cannot
    /// be run, logdctl says why on its own stderr and exits 127 (not found) or 126 (other
    /// errors).
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
    /// Append a message (a line) to a log, open or not
    ///
    /// A newline is added unless `-n` is given. When a pipe is open, the message lands after
    /// every byte already in the pipe.
    Append {
        #[command(flatten)]
        domain: DomainArgs,
        /// The log path (as for `run`).
        #[arg(long, value_name = "PATH")]
        log: String,
        /// Do not add a newline at the end of the message.
        #[arg(short = 'n')]
        no_newline: bool,
        /// The message.
        message: String,
    },
    /// Print the position INODE:OFFSET of the end of a log
    ///
    /// The end of the active file, including every byte written into the log's pipe before the
    /// command ran.
    Position {
        /// The log path.
        #[arg(long, value_name = "PATH")]
        log: String,
        /// Print INODE:OFFSET:BIRTH, which adds the file's creation time.
        ///
        /// That form stays exact when the file system reuses a rotated-away file's inode for a
        /// newer file.
        #[arg(long)]
        exact: bool,
    },
    /// Write a log's raw bytes to stdout, oldest first, across rotated files
    ///
    /// It starts at `--from` or at the oldest byte, and stops after `--max` bytes or at the end.
    /// If the position has been rotated away, it says so on stderr and starts at the oldest
    /// byte. A position in none of the log's files is an error naming it and the log (exit 1):
    /// a file rotated away is known by the position's birth time (`position --exact`), so the
    /// short form INODE:OFFSET of a file rotated away is refused too.
    Read {
        /// The log path.
        #[arg(long, value_name = "PATH")]
        log: String,
        /// Start at this position (as printed by `position`, INODE:OFFSET or INODE:OFFSET:BIRTH)
        /// [default: the oldest byte].
        #[arg(long, value_name = "INODE:OFFSET")]
        from: Option<Position>,
        /// Read at most this many bytes (suffixes K, M, G allowed) [default: everything].
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        max: Option<u64>,
    },
    /// Print the last bytes, or lines, of a log across rotated files.
    Tail {
        /// The log path.
        #[arg(long, value_name = "PATH")]
        log: String,
        /// How many bytes (suffixes K, M, G allowed); the default is what OpenStack's console-log
        /// shows.
        #[arg(long, default_value = "100KiB", value_parser = parse_size)]
        bytes: u64,
        /// The last LINES lines instead, across rotated files (a last line without its newline
        /// counts); not with `--bytes`, which it replaces.
        ///
        /// As GNU tail's `-n`: if the log holds fewer lines, all of it. logdctl reads back from
        /// the end in growing steps until it has enough lines, so a huge log is not read whole.
        #[arg(short = 'n', long, value_name = "LINES", conflicts_with = "bytes")]
        lines: Option<u64>,
        /// Keep printing what is written, across rotations, until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// As `--follow`, but a log that does not exist yet, or was removed, is waited for.
        ///
        /// As GNU tail's `-F`: logdctl says on stderr that it waits (`logdctl: LOG does not exist
        /// yet; waiting for it to appear`, or `has become inaccessible`), looks again every 200
        /// ms, and once the log is there says `logdctl: LOG has appeared; following it` and
        /// prints it from its first byte.
        #[arg(short = 'F', long)]
        follow_retry: bool,
    },
}

fn parse_size(s: &str) -> Result<u64, String> {
    config::parse_size(s)
}
