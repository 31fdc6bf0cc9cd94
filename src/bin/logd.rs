//! `logd`: the daemon. See `docs/man/logd.8.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use logd::config::{Config, Overrides};

/// mimalloc, not glibc's malloc: an idle domain's tokio task and fd registration are 128-byte
/// aligned, and mimalloc's size classes hold them with no waste (docs/DECISIONS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Owns the stdio and console streams of virtual machines and caps their logs.
#[derive(Debug, Parser)]
#[command(name = "logd", version, about, long_about = None)]
struct Args {
    /// TOML configuration file (see logd(8) for the keys).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on this UNIX socket instead of the default.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Serve the admin socket here [default: beside the main socket, logd-admin.sock].
    #[arg(long, value_name = "PATH")]
    admin_socket: Option<PathBuf>,
    /// Serve the console socket here: `logdctl attach` for any local user, each console
    /// judging the caller by its lists [default: beside the main socket, logd-console.sock].
    #[arg(long, value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// Also serve libvirt's virtlogd RPC on this socket, so that libvirtd uses logd in place of
    /// virtlogd. Without PATH: /run/libvirt/virtlogd-sock as root (where libvirtd looks), else
    /// $XDG_RUNTIME_DIR/libvirt/virtlogd-sock. A root logd serving it accepts log paths under
    /// /var/log/libvirt. Off by default; see docs/LIBVIRT.md.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "")]
    virtlogd_socket: Option<PathBuf>,
    /// Keep logs under this directory instead of the default.
    #[arg(long, value_name = "DIR")]
    log_root: Option<PathBuf>,
    /// Keep the consoles added with `logdctl console add --persist` in FILE [default:
    /// /var/lib/logd/consoles.toml as root, else $XDG_STATE_HOME/logd-consoles.toml]. Also the
    /// config key `consoles_file`.
    #[arg(long, value_name = "FILE")]
    consoles_file: Option<PathBuf>,
    /// Exit after SECONDS with no open log and no client (logdctl starts session daemons
    /// with 30); 0 or absent: never.
    #[arg(long, value_name = "SECONDS")]
    idle_exit: Option<u64>,
    /// More log output: -v for debug, -vv for trace (RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    // First of all, before any thread: the signals logd is sent on purpose are read from a
    // signalfd, never by whichever thread the kernel picks.
    logd::daemon::block_signals();
    // Before anything else (and any thread): a re-exec's successor adopts its inheritance.
    let successor = logd::successor::Successor::from_env();
    logd::reexec::remember_args();
    let args = Args::parse();
    let level = match args.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let carried = match &successor {
        Some(Ok(s)) => s.log_filter.clone(),
        _ => None,
    };
    logd::logging::init(level, carried.as_deref());
    let successor = match successor {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            tracing::error!("{e}");
            eprintln!("logd: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(args, successor) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = logd::cli::report(&e);
            tracing::error!("{line}");
            eprintln!("logd: {line}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args, successor: Option<logd::successor::Successor>) -> anyhow::Result<()> {
    let verbose = args.verbose;
    let overrides = Overrides {
        socket: args.socket,
        admin_socket: args.admin_socket,
        console_socket: args.console_socket,
        virtlogd_socket: args.virtlogd_socket.map(|p| {
            if p.as_os_str().is_empty() {
                logd::config::default_virtlogd_socket()
            } else {
                p
            }
        }),
        log_root: args.log_root,
        idle_exit: args.idle_exit,
        consoles_file: args.consoles_file,
    };
    let cfg = Config::load(args.config.as_deref(), &overrides).context("configuration");
    let cfg = match (cfg, &successor) {
        (Ok(c), _) => c,
        // A guardian is the old binary: a file written for the new one (a key it does not
        // know) must not stop the upgrade. It guards with the settings the old process ran
        // with (carried, as a file's text), which matter only if it has to take over.
        (Err(e), Some(s)) if s.is_guardian() => {
            let line = logd::cli::report(&e);
            let carried = s
                .config_text
                .as_deref()
                .map(|text| Config::from_text(args.config.as_deref(), Some(text), &overrides));
            match carried {
                Some(Ok(c)) => {
                    tracing::warn!("guarding with the settings the old process ran with: {line}");
                    c
                }
                other => {
                    if let Some(Err(e)) = other {
                        tracing::warn!("the old process's settings do not read: {e}");
                    }
                    tracing::warn!("guarding with the command line and the defaults: {line}");
                    Config::load(None, &overrides).context("configuration")?
                }
            }
        }
        // The old process goes on; it is told why this one cannot take over.
        (Err(e), Some(s)) => s.refuse(&logd::cli::report(&e)),
        (Err(e), None) => return Err(e),
    };
    // The file's log level, unless -v, RUST_LOG or a re-exec's carried filter said otherwise.
    let carried = successor.as_ref().and_then(|s| s.log_filter.as_ref());
    if let (Some(level), 0, None, None) = (
        &cfg.log_level,
        verbose,
        std::env::var_os("RUST_LOG"),
        carried,
    ) {
        logd::logging::set_filter(level).context("log_level")?;
    }
    logd::identity::init(cfg.binary.clone());
    logd::daemon::run(cfg, successor).context("logd stopped")?;
    Ok(())
}
