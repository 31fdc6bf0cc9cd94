//! `logdctl`: the command-line client of logd. See `docs/man/logdctl.1.md`.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use logd::config;
use logd_protocol::client::{Client, ClientError};
use logd_protocol::{
    ConsoleProtocol, ConsoleSpec, DomainId, GuestSide, OpenFlags, Position, ReadFrom, Uuid,
    WritePolicy, MAX_READ_LEN,
};

/// Talk to logd: capture a command's output into a capped log, append to logs, read them.
#[derive(Debug, Parser)]
#[command(name = "logdctl", version, about, long_about = None)]
struct Args {
    /// logd's socket [default: /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock]
    #[arg(long, global = true, env = "LOGD_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// logd's admin socket [default: beside the main socket, logd-admin.sock]
    #[arg(long, global = true, env = "LOGD_ADMIN_SOCKET", value_name = "PATH")]
    admin_socket: Option<PathBuf>,
    /// Start a daemon if none answers, even as root (a non-root user's default socket always
    /// gets one started).
    #[arg(long, global = true, env = "LOGD_AUTOSTART")]
    autostart: bool,
    /// Also trust a logd run by this uid. By default logdctl talks only to a daemon run by root
    /// or by its own uid (checked with SO_PEERCRED before it sends anything).
    #[arg(long, global = true, env = "LOGD_SERVER_UID", value_name = "UID")]
    server_uid: Option<u32>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Args)]
struct DomainArgs {
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
    fn id(&self) -> anyhow::Result<DomainId> {
        let mut id = DomainId::from_name(&self.driver, &self.domain);
        if let Some(u) = &self.uuid {
            id.uuid = Uuid::parse_str(u).with_context(|| format!("invalid UUID {u:?}"))?;
        }
        Ok(id)
    }
}

#[derive(Debug, Subcommand)]
enum ConsoleCmd {
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
        /// With --guest-fd: the command to run with the guest's end as fd 3.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Remove a console (its log stays).
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
enum WriteArg {
    Exclusive,
    Shared,
    None,
}

#[derive(Debug, Subcommand)]
enum Cmd {
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
    /// Connect this terminal to a console, as `virsh console` does. Ctrl-] detaches.
    Attach {
        /// The domain's name.
        #[arg(long, value_name = "NAME")]
        domain: String,
        /// The console's name.
        #[arg(long, value_name = "CONSOLE")]
        name: String,
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

#[allow(unsafe_code)] // one block: SIGPIPE back to its default before any thread exists
fn main() -> ExitCode {
    // A closed stdout (`logdctl ps --json | head`) ends logdctl quietly, as it does any Unix
    // filter, instead of a panic in println!.
    // SAFETY: setting a signal's disposition to SIG_DFL installs no handler code, and no other
    // thread exists yet.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("logdctl: {}", logd::cli::report(&e));
            ExitCode::FAILURE
        }
    }
}

/// `--server-uid`: a uid trusted to serve logd besides root and our own.
static SERVER_UID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();

/// Connects to the admin socket, checking who serves it.
fn admin_connect(socket: &Path) -> Result<logd_protocol::client::AdminClient, ClientError> {
    logd_protocol::client::AdminClient::connect_trusting(
        socket,
        SERVER_UID.get().copied().flatten(),
    )
}

/// Connects to the main socket, checking who serves it.
fn client_connect(socket: &Path) -> Result<Client, ClientError> {
    Client::connect_trusting(socket, SERVER_UID.get().copied().flatten())
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _ = SERVER_UID.set(args.server_uid);
    let explicit = args.socket.is_some();
    let socket = args.socket.clone().unwrap_or_else(config::default_socket);
    let autostart = args.autostart || (!explicit && !config::is_root());
    let admin_socket = args
        .admin_socket
        .clone()
        .unwrap_or_else(|| config::admin_socket_for(&socket));
    match &args.cmd {
        Cmd::Console(ConsoleCmd::Kick { subscriber }) => {
            admin_connect(&admin_socket)?.kick(*subscriber)?;
            return Ok(ExitCode::SUCCESS);
        }
        Cmd::Console(ConsoleCmd::Grant { subscriber }) => {
            admin_connect(&admin_socket)?.grant(*subscriber)?;
            return Ok(ExitCode::SUCCESS);
        }
        Cmd::Ps { json } => return admin::ps(&admin_socket, *json),
        Cmd::Events { json } => return admin::events(&admin_socket, *json),
        Cmd::Top => return top::run(&admin_socket),
        Cmd::Reexec { binary, json } => return admin::reexec(&admin_socket, binary, *json),
        Cmd::LogLevel { level } => {
            admin_connect(&admin_socket)?.set_log_level(level)?;
            return Ok(ExitCode::SUCCESS);
        }
        Cmd::Stats { domain, json } => return admin::stats(&admin_socket, domain, *json),
        _ => {}
    }
    let mut client = connect(&socket, autostart)?;
    match args.cmd {
        Cmd::Run {
            domain,
            log,
            truncate,
            command,
        } => {
            let (_, fd) = client.open_log(domain.id()?, &log, OpenFlags { truncate })?;
            drop(client);
            // Keep a way to report an exec failure once stderr is the pipe.
            let err = nix::unistd::dup(std::io::stderr()).context("dup stderr")?;
            nix::unistd::dup2_stdout(&fd).context("redirect stdout")?;
            nix::unistd::dup2_stderr(&fd).context("redirect stderr")?;
            drop(fd);
            let e = std::process::Command::new(&command[0])
                .args(&command[1..])
                .exec();
            let mut err = std::fs::File::from(err);
            let _ = writeln!(err, "logdctl: cannot run {:?}: {e}", command[0]);
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            Ok(ExitCode::from(code))
        }
        Cmd::Console(c) => console(&mut client, c),
        Cmd::Attach { domain, name } => attach::run(&mut client, &domain, &name),
        Cmd::Ps { .. }
        | Cmd::Stats { .. }
        | Cmd::LogLevel { .. }
        | Cmd::Events { .. }
        | Cmd::Reexec { .. }
        | Cmd::Top => {
            unreachable!("handled above")
        }
        Cmd::Append {
            domain,
            log,
            no_newline,
            message,
        } => {
            let mut m = message.into_bytes();
            if !no_newline && !m.ends_with(b"\n") {
                m.push(b'\n');
            }
            client.append_log(domain.id()?, &log, &m)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Position { log, exact } => {
            let p = client.position(&log)?;
            println!("{}", if exact { p.exact() } else { p.to_string() });
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Read { log, from, max } => {
            let from = from.map(ReadFrom::Position).unwrap_or(ReadFrom::Start);
            copy_out(&mut client, &log, from, max.unwrap_or(u64::MAX))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Tail { log, bytes, follow } => {
            let mut next = copy_out(&mut client, &log, ReadFrom::Last(bytes), bytes)?;
            if follow {
                loop {
                    std::thread::sleep(Duration::from_millis(200));
                    next = copy_out(&mut client, &log, ReadFrom::Position(next), u64::MAX)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

mod admin {
    //! `logdctl ps` and `logdctl stats`: the admin socket's snapshot, as tables or JSON.

    use std::path::Path;
    use std::process::ExitCode;

    use logd_protocol::admin::{DomainSnapshot, GuestState, StreamKind, SubscriberSnapshot};

    /// Bytes, short: 512, 1.5K, 20M, 3.1G.
    pub fn human(n: u64) -> String {
        const UNITS: [&str; 4] = ["", "K", "M", "G"];
        let mut v = n as f64;
        let mut u = 0;
        while v >= 1024.0 && u + 1 < UNITS.len() {
            v /= 1024.0;
            u += 1;
        }
        if u == 0 {
            format!("{n}")
        } else if v < 10.0 {
            format!("{v:.1}{}", UNITS[u])
        } else {
            format!("{v:.0}{}", UNITS[u])
        }
    }

    /// Escapes what the daemon's clients named (paths, console names, peers, error messages)
    /// for a terminal: a log path may hold ESC sequences (`cli::escape_controls`).
    pub fn for_terminal(d: &mut DomainSnapshot) {
        let esc = |s: &mut String| {
            if let std::borrow::Cow::Owned(e) = logd::cli::escape_controls(s) {
                *s = e;
            }
        };
        esc(&mut d.id.name);
        esc(&mut d.id.driver);
        for st in &mut d.streams {
            esc(&mut st.path);
            if let StreamKind::Console { name } = &mut st.kind {
                esc(name);
            }
            if let Some(e) = &mut st.last_error {
                esc(&mut e.message);
            }
            for sub in &mut st.subscribers {
                esc(&mut sub.peer);
            }
        }
    }

    /// One subscriber on one line, as `ps` and `stats` show it.
    fn subscriber(sub: &SubscriberSnapshot) -> String {
        format!(
            "#{:<5} {:<22} {:<6} sent {:>7}  queue {}/{}  {:?}",
            sub.id,
            sub.peer,
            if sub.writer { "writer" } else { "reader" },
            human(sub.bytes_sent),
            human(sub.queue),
            human(sub.queue_limit),
            sub.protocol
        )
    }

    pub fn guest(g: GuestState) -> &'static str {
        match g {
            GuestState::Connected => "up",
            GuestState::Waiting => "wait",
            GuestState::Eof => "eof",
        }
    }

    fn rows(d: &DomainSnapshot, out: &mut String) {
        use std::fmt::Write;
        for s in &d.streams {
            let kind = match &s.kind {
                StreamKind::Stdio => "stdio".to_owned(),
                StreamKind::Console { name } => name.clone(),
            };
            let _ = writeln!(
                out,
                "{:<16} {:<9} {:>7} {:>7} {:>4} {:>6} {:<7} {:>7}/s  {}",
                d.id.name,
                kind,
                human(s.bytes_in),
                human(s.bytes_written),
                s.rotations,
                human(s.dropped_disk),
                guest(s.guest),
                human(s.rate_in),
                s.path
            );
            for sub in &s.subscribers {
                let _ = writeln!(out, "  {}", subscriber(sub));
            }
        }
    }

    const HEADER: &str =
        "DOMAIN           STREAM         IN WRITTEN  ROT   DROP GUEST      RATE    PATH";

    pub fn ps(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
        let mut snap = crate::admin_connect(socket)?.snapshot()?;
        if json {
            println!("{}", serde_json::to_string_pretty(&snap)?);
            return Ok(ExitCode::SUCCESS);
        }
        let mut out = String::new();
        for d in &mut snap.domains {
            for_terminal(d);
            rows(d, &mut out);
        }
        println!("{}", daemon_line(&snap));
        println!("{HEADER}");
        print!("{out}");
        Ok(ExitCode::SUCCESS)
    }

    /// `logd 0.1.0 pid 123 build 6a95… up 3h12m, 2 re-execs (last: ok, blackout 4.1 ms)`.
    fn daemon_line(s: &logd_protocol::admin::DaemonSnapshot) -> String {
        let up = s.uptime_ms / 1000;
        let mut line = format!(
            "{} pid {} build {} up {}h{:02}m{:02}s",
            s.version,
            s.pid,
            if s.build_id.is_empty() {
                "?"
            } else {
                &s.build_id[..s.build_id.len().min(12)]
            },
            up / 3600,
            up / 60 % 60,
            up % 60
        );
        if s.reexecs > 0 || s.last_reexec.is_some() {
            line.push_str(&format!(", {} re-execs", s.reexecs));
        }
        if let Some(r) = &s.last_reexec {
            match &r.error {
                None => line.push_str(&format!(
                    " (last: pid {} -> {}, blackout {:.1} ms)",
                    r.from_pid,
                    r.to_pid,
                    r.blackout_us as f64 / 1000.0
                )),
                Some(e) => line.push_str(&format!(" (last failed: {e})")),
            }
        }
        line
    }

    pub fn reexec(
        socket: &Path,
        binary: &Option<std::path::PathBuf>,
        json: bool,
    ) -> anyhow::Result<ExitCode> {
        let binary = match binary {
            Some(b) => Some(
                std::path::absolute(b)
                    .map_err(|e| anyhow::anyhow!("binary {}: {e}", b.display()))?
                    .display()
                    .to_string(),
            ),
            None => None,
        };
        let mut c = crate::admin_connect(socket)?;
        let r = c.reexec(binary)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            println!(
                "re-exec done: pid {} -> {}, {} domains and {} fds carried, blackout {:.1} ms ({:.1} ms from the request)",
                r.from_pid,
                r.to_pid,
                r.domains,
                r.fds,
                r.blackout_us as f64 / 1000.0,
                r.total_us as f64 / 1000.0
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    pub fn events(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
        use std::io::Write;
        let mut c = crate::admin_connect(socket)?;
        c.subscribe_events()?;
        let mut out = std::io::stdout().lock();
        loop {
            let ev = c.next_event()?;
            // {"log_opened": {fields}} becomes {"at_ms": …, "event": "log_opened", fields…}.
            let mut flat = serde_json::Map::new();
            flat.insert("at_ms".into(), ev.at_ms.into());
            if let serde_json::Value::Object(o) = serde_json::to_value(&ev.kind)? {
                for (name, fields) in o {
                    flat.insert("event".into(), name.into());
                    if let serde_json::Value::Object(f) = fields {
                        flat.extend(f);
                    }
                }
            }
            if json {
                writeln!(out, "{}", serde_json::Value::Object(flat))?;
            } else {
                let name = flat.remove("event").unwrap_or_default();
                let at = flat.remove("at_ms").unwrap_or_default();
                let fields: Vec<String> = flat
                    .iter()
                    .map(|(k, v)| match v {
                        serde_json::Value::String(s) => {
                            format!("{k}={}", logd::cli::escape_controls(s))
                        }
                        other => format!("{k}={other}"),
                    })
                    .collect();
                writeln!(
                    out,
                    "{at} {} {}",
                    name.as_str().unwrap_or("?"),
                    fields.join(" ")
                )?;
            }
            out.flush()?;
        }
    }

    pub fn stats(socket: &Path, domain: &str, json: bool) -> anyhow::Result<ExitCode> {
        let mut d = crate::admin_connect(socket)?.domain(domain)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&d)?);
            return Ok(ExitCode::SUCCESS);
        }
        for_terminal(&mut d);
        println!("domain {} ({} {})", d.id.name, d.id.driver, d.id.uuid);
        println!("mailbox {}/{}", d.mailbox.depth, d.mailbox.capacity);
        for s in &d.streams {
            println!();
            match &s.kind {
                StreamKind::Stdio => println!("stdio log {}", s.path),
                StreamKind::Console { name } => println!("console {name}, log {}", s.path),
            }
            println!("  bytes in       {}", s.bytes_in);
            println!("  bytes written  {}", s.bytes_written);
            println!("  file size      {}", s.file_size);
            println!("  rotations      {}", s.rotations);
            println!("  dropped (disk) {}", s.dropped_disk);
            println!("  guest          {}", guest(s.guest));
            println!(
                "  rate in/out    {}/s / {}/s",
                human(s.rate_in),
                human(s.rate_out)
            );
            if let Some(e) = &s.last_error {
                println!("  last error     {} (at {} ms)", e.message, e.at_ms);
            }
            if matches!(s.kind, StreamKind::Console { .. }) {
                println!("  slow disconnects {}", s.slow_disconnects);
                for sub in &s.subscribers {
                    println!("  subscriber {}", subscriber(sub));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

mod term {
    //! The terminal for `attach` and `top`: raw mode, put back on every way out (normal exit,
    //! errors, and SIGTERM/SIGHUP/SIGQUIT, caught on a thread of their own).

    use std::sync::Mutex;

    use anyhow::Context;
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::termios::{self, SetArg, Termios};

    /// The settings to put back, and what to print first (e.g. leave the alternate screen).
    static SAVED: Mutex<Option<(Termios, &'static str)>> = Mutex::new(None);

    /// Puts the terminal (if stdin is one) in raw mode; `undo` is printed when it is restored.
    pub fn raw_mode(undo: &'static str) -> anyhow::Result<()> {
        if let Ok(t) = termios::tcgetattr(std::io::stdin()) {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &raw)
                .context("cannot put the terminal in raw mode")?;
            *SAVED.lock().unwrap() = Some((t, undo));
        }
        Ok(())
    }

    /// Puts the terminal back as it was (idempotent).
    pub fn restore() {
        if let Some((t, undo)) = SAVED.lock().map(|mut g| g.take()).unwrap_or(None) {
            // Straight to fd 1: another thread may hold std's stdout lock for good.
            if !undo.is_empty() {
                let _ = nix::unistd::write(std::io::stdout(), undo.as_bytes());
            }
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &t);
        }
    }

    /// Terminal back as it was, then exit.
    pub fn leave(code: i32, why: &str) -> ! {
        restore();
        if !why.is_empty() {
            eprint!("\r\n[logdctl: {why}]\r\n");
        }
        std::process::exit(code);
    }

    /// Signals that would end us are taken by a thread that restores the terminal first.
    /// Call before starting any other thread (they inherit the blocked mask).
    pub fn catch_signals() -> anyhow::Result<()> {
        let mut set = SigSet::empty();
        for s in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
            set.add(s);
        }
        set.thread_block().context("cannot block signals")?;
        std::thread::spawn(move || {
            if let Ok(sig) = set.wait() {
                leave(128 + sig as i32, &format!("{sig}"));
            }
        });
        Ok(())
    }
}

mod top {
    //! `logdctl top`: a live view of every stream, refreshed every second, busiest first.

    use std::io::Write;
    use std::path::Path;
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use logd_protocol::admin::StreamKind;
    use logd_protocol::client::AdminClient;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    use super::admin::{guest, human};
    use super::term;

    /// Alternate screen on, cursor hidden / the reverse.
    const ENTER: &str = "\x1b[?1049h\x1b[?25l";
    const LEAVE: &str = "\x1b[?25h\x1b[?1049l";

    /// The terminal's size, from the environment or 80×24.
    fn size() -> (usize, usize) {
        let get = |k: &str, d: usize| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let (mut cols, mut rows) = (get("COLUMNS", 80), get("LINES", 24));
        if let Ok(out) = std::process::Command::new("stty")
            .arg("size")
            .stdin(std::process::Stdio::inherit())
            .output()
        {
            let text = String::from_utf8_lossy(&out.stdout);
            let mut it = text
                .split_whitespace()
                .filter_map(|v| v.parse::<usize>().ok());
            if let (Some(r), Some(c)) = (it.next(), it.next()) {
                rows = r;
                cols = c;
            }
        }
        (cols.max(40), rows.max(5))
    }

    fn fit(s: &str, w: usize) -> String {
        if s.chars().count() <= w {
            format!("{s:<w$}")
        } else {
            let keep: String = s
                .chars()
                .rev()
                .take(w.saturating_sub(1))
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("…{keep}")
        }
    }

    fn frame(client: &mut AdminClient) -> anyhow::Result<String> {
        let mut snap = client.snapshot()?;
        snap.domains.iter_mut().for_each(crate::admin::for_terminal);
        let (cols, rows) = size();
        let mut lines = Vec::new();
        for d in &snap.domains {
            for s in &d.streams {
                let kind = match &s.kind {
                    StreamKind::Stdio => "stdio".to_owned(),
                    StreamKind::Console { name } => name.clone(),
                };
                let guest = guest(s.guest);
                lines.push((
                    s.rate_in,
                    d.id.name.clone(),
                    kind,
                    s.rate_out,
                    s.bytes_in,
                    s.rotations,
                    s.dropped_disk,
                    guest,
                    s.subscribers.len(),
                ));
            }
        }
        lines.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut out = String::new();
        out.push_str("\x1b[H\x1b[2J");
        let title = format!(
            "logd top  pid {}  up {}s  domains {}  fds {}  rss {}K   (q quits)",
            snap.pid,
            snap.uptime_ms / 1000,
            snap.domains.len(),
            snap.fds,
            snap.rss_kib
        );
        out.push_str(&fit(&title, cols));
        out.push_str("\r\n");
        // The fixed columns take 60; the domain name gets the rest.
        let name_w = cols.saturating_sub(61).clamp(8, 40);
        let header = format!(
            "{} {:<9} {:>8} {:>8} {:>8} {:>5} {:>6} {:<4} {:>4}",
            fit("DOMAIN", name_w),
            "STREAM",
            "IN/s",
            "OUT/s",
            "IN",
            "ROT",
            "DROP",
            "GST",
            "SUBS"
        );
        out.push_str(&format!("\x1b[7m{}\x1b[0m\r\n", fit(&header, cols)));
        for l in lines.iter().take(rows.saturating_sub(3)) {
            let row = format!(
                "{} {:<9} {:>8} {:>8} {:>8} {:>5} {:>6} {:<4} {:>4}",
                fit(&l.1, name_w),
                fit(&l.2, 9),
                human(l.0),
                human(l.3),
                human(l.4),
                l.5,
                human(l.6),
                l.7,
                l.8
            );
            out.push_str(&fit(&row, cols));
            out.push_str("\r\n");
        }
        Ok(out)
    }

    pub fn run(socket: &Path) -> anyhow::Result<ExitCode> {
        let mut client = crate::admin_connect(socket)?;
        term::catch_signals()?;
        term::raw_mode(LEAVE)?;
        let mut stdout = std::io::stdout();
        let _ = stdout.write_all(ENTER.as_bytes());
        let stdin = std::io::stdin();
        loop {
            match frame(&mut client) {
                Ok(f) => {
                    let _ = stdout.write_all(f.as_bytes());
                    let _ = stdout.flush();
                }
                Err(e) => term::leave(1, &format!("{e}")),
            }
            // Wait a second for a key; q or Ctrl-C quits.
            let deadline = Instant::now() + Duration::from_secs(1);
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                let mut fds = [PollFd::new(
                    std::os::fd::AsFd::as_fd(&stdin),
                    PollFlags::POLLIN,
                )];
                let ms = PollTimeout::from(left.as_millis().min(1000) as u16);
                match poll(&mut fds, ms) {
                    Ok(0) => break,
                    Ok(_) => {
                        let mut b = [0u8; 16];
                        let n = nix::unistd::read(&stdin, &mut b).unwrap_or(0);
                        if n == 0 || b[..n].iter().any(|&c| c == b'q' || c == 3) {
                            term::leave(0, "");
                        }
                    }
                    Err(_) => break,
                }
            }
        }
    }
}

mod attach {
    //! `logdctl attach`: the user's terminal on a console, in raw mode, until Ctrl-].
    //!
    //! The terminal is restored on every way out: detach, the console closing, an error, and
    //! SIGTERM/SIGHUP/SIGQUIT (caught on a thread of their own).

    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use anyhow::{bail, Context};
    use bytes::Bytes;
    use logd::telnet;
    use logd_protocol::client::Client;
    use logd_protocol::ConsoleProtocol;

    use super::term::leave;

    /// Ctrl-]
    const DETACH: u8 = 0x1d;

    trait Conn: Read + Write + Send {
        fn split(&self) -> std::io::Result<Box<dyn Conn>>;
    }
    impl Conn for UnixStream {
        fn split(&self) -> std::io::Result<Box<dyn Conn>> {
            Ok(Box::new(self.try_clone()?))
        }
    }
    impl Conn for std::net::TcpStream {
        fn split(&self) -> std::io::Result<Box<dyn Conn>> {
            Ok(Box::new(self.try_clone()?))
        }
    }

    pub fn run(
        client: &mut Client,
        domain: &str,
        name: &str,
    ) -> anyhow::Result<std::process::ExitCode> {
        let consoles = client.list_consoles()?;
        let Some(c) = consoles
            .iter()
            .find(|c| c.domain.name == domain && c.name == name)
        else {
            bail!("no console {name:?} in domain {domain:?} (see `logdctl console list`)");
        };
        let mut conn: Box<dyn Conn> = match (&c.unix, &c.tcp) {
            (Some(p), _) => {
                Box::new(UnixStream::connect(p).with_context(|| format!("cannot connect to {p}"))?)
            }
            (None, Some(a)) => Box::new(
                std::net::TcpStream::connect(a.as_str())
                    .with_context(|| format!("cannot connect to {a}"))?,
            ),
            (None, None) => {
                bail!("console {domain}/{name} has no subscriber listener (--tcp or --unix)")
            }
        };
        let telnet_mode = c.protocol == ConsoleProtocol::Telnet;
        let mut input_conn = conn
            .split()
            .context("cannot duplicate the console connection")?;

        super::term::catch_signals()?;
        super::term::raw_mode("")?;
        eprint!("[logdctl: attached to {domain}/{name}; Ctrl-] detaches]\r\n");

        // Keys to the console.
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 4096];
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return, // stdin closed: keep showing output
                    Ok(n) => n,
                };
                let keys = &buf[..n];
                let (keys, detach) = match keys.iter().position(|&b| b == DETACH) {
                    Some(i) => (&keys[..i], true),
                    None => (keys, false),
                };
                let out = if telnet_mode {
                    telnet::escape(&Bytes::copy_from_slice(keys))
                } else {
                    Bytes::copy_from_slice(keys)
                };
                if input_conn.write_all(&out).is_err() {
                    leave(1, "console connection lost");
                }
                if detach {
                    leave(0, "detached");
                }
            }
        });

        // Console to the screen.
        let mut stdout = std::io::stdout().lock();
        let mut decoder = telnet::Decoder::default();
        let mut buf = [0u8; 65536];
        let (mut data, mut reply) = (Vec::new(), Vec::new());
        loop {
            let n = match conn.read(&mut buf) {
                Ok(0) | Err(_) => leave(0, "console closed"),
                Ok(n) => n,
            };
            let shown: &[u8] = if telnet_mode {
                data.clear();
                reply.clear();
                decoder.decode(&buf[..n], &mut data, &mut reply);
                &data
            } else {
                &buf[..n]
            };
            if stdout
                .write_all(shown)
                .and_then(|()| stdout.flush())
                .is_err()
            {
                leave(1, "cannot write to the terminal");
            }
        }
    }
}

fn console(client: &mut Client, cmd: ConsoleCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ConsoleCmd::Add {
            domain,
            name,
            guest_listen,
            guest_connect,
            guest_fd,
            log,
            truncate,
            tcp,
            unix,
            telnet,
            replay,
            write,
            max_subscribers,
            queue_limit,
            command,
        } => {
            let guest = match (guest_listen, guest_connect, guest_fd) {
                (Some(path), _, _) => GuestSide::Listen { path },
                (_, Some(path), _) => GuestSide::Connect { path },
                (_, _, true) => GuestSide::Fd,
                _ => bail!(
                    "say how the guest is reached: --guest-listen, --guest-connect or --guest-fd"
                ),
            };
            if !command.is_empty() && guest != GuestSide::Fd {
                bail!("a command after -- is only for --guest-fd");
            }
            let spec = ConsoleSpec {
                domain: domain.id()?,
                name,
                guest,
                log,
                truncate,
                tcp,
                unix,
                protocol: if telnet {
                    ConsoleProtocol::Telnet
                } else {
                    ConsoleProtocol::Raw
                },
                write: match write {
                    WriteArg::Exclusive => WritePolicy::Exclusive,
                    WriteArg::Shared => WritePolicy::Shared,
                    WriteArg::None => WritePolicy::None,
                },
                replay,
                max_subscribers,
                queue_limit,
            };
            let (added, fd) = client.add_console(spec)?;
            if let Some(t) = &added.tcp {
                println!("{t}");
            }
            if let Some(fd) = fd {
                std::io::stdout().flush().ok();
                exec_with_fd3(fd, &command)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ConsoleCmd::Kick { .. } | ConsoleCmd::Grant { .. } => unreachable!("handled in run"),
        ConsoleCmd::Remove { domain, name } => {
            client.remove_console(domain.id()?, &name)?;
            Ok(ExitCode::SUCCESS)
        }
        ConsoleCmd::List { json } => {
            let list = client.list_consoles()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<16} {:<10} {:<22} {:<7} {:>4}  LOG",
                "DOMAIN", "CONSOLE", "TCP", "GUEST", "SUBS"
            );
            for c in list {
                let esc = logd::cli::escape_controls;
                println!(
                    "{:<16} {:<10} {:<22} {:<7} {:>4}  {}",
                    esc(&c.domain.name),
                    esc(&c.name),
                    c.tcp.as_deref().unwrap_or("-"),
                    if c.guest_connected { "up" } else { "down" },
                    c.subscribers,
                    esc(&c.log)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Execs `command` with `fd` as its fd 3 (dup2 in the child clears close-on-exec on it).
#[allow(unsafe_code)] // one block: the fork hook that makes the guest's end fd 3
fn exec_with_fd3(fd: std::os::fd::OwnedFd, command: &[String]) -> anyhow::Result<()> {
    let mut cmd = std::process::Command::new(&command[0]);
    cmd.args(&command[1..]);
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    // SAFETY: the closure runs in the child between fork and exec and only calls dup2 and
    // fcntl, which are async-signal-safe; `raw` stays open in the parent until exec replaces it.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself does nothing, and would leave close-on-exec set: clear it.
            let res = if raw == 3 {
                nix::libc::fcntl(3, nix::libc::F_SETFD, 0)
            } else {
                nix::libc::dup2(raw, 3)
            };
            if res < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let e = cmd.exec();
    drop(fd);
    bail!("cannot run {:?}: {e}", command[0])
}

/// Copies up to `limit` bytes of a log to stdout, from `from` until no more data comes.
/// Returns the position after the last byte.
fn copy_out(
    client: &mut Client,
    log: &str,
    mut from: ReadFrom,
    limit: u64,
) -> anyhow::Result<Position> {
    let mut out = std::io::stdout().lock();
    let mut left = limit;
    loop {
        let want = left.min(MAX_READ_LEN);
        let (data, next, gap) = client.read_log(log, from, want)?;
        if gap {
            eprintln!("logdctl: some of {log} was rotated away before it could be read");
        }
        out.write_all(&data).context("writing to stdout")?;
        left -= data.len() as u64;
        if data.is_empty() || left == 0 {
            out.flush().context("writing to stdout")?;
            return Ok(next);
        }
        from = ReadFrom::Position(next);
    }
}

/// Connects to logd, starting one first if allowed and none answers.
fn connect(socket: &Path, autostart: bool) -> anyhow::Result<Client> {
    match client_connect(socket) {
        Ok(c) => return Ok(c),
        Err(ClientError::Connect { source, .. })
            if autostart
                && matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) => {}
        Err(e) => return Err(e.into()),
    }
    start_daemon(socket)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client_connect(socket) {
            Ok(c) => return Ok(c),
            Err(ClientError::Connect { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e).context("the logd that logdctl started does not answer"),
        }
    }
}

/// Starts `logd` in the background, in its own session, logging to `logd.log` beside the socket.
fn start_daemon(socket: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("logd")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("logd"));
    let dir = socket.parent().unwrap_or(Path::new("/"));
    // Checked before anything is opened or started there: `/tmp/logd-$UID` may have been
    // made by another user, with a `logd.log` symlink planted in it.
    logd::sockdir::ensure(dir, logd::sockdir::Rule::for_socket(socket))?;
    let log_path = dir.join("logd.log");
    let log = logd::sockdir::open_nofollow(&log_path, true)?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("--socket")
        .arg(socket)
        .args(["--idle-exit", "30"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    eprintln!(
        "logdctl: started logd (pid {}) on {}; its own log is {}",
        child.id(),
        socket.display(),
        log_path.display()
    );
    if child.id() == 0 {
        bail!("logd did not start");
    }
    Ok(())
}
