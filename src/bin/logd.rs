//! `logd`: the daemon. See logd(8), `docs/man/logd.8` (`man -l docs/man/logd.8`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use logd::config::{Config, Overrides};

/// mimalloc, not glibc's malloc: an idle domain's tokio task and fd registration are 128-byte
/// aligned, and mimalloc's size classes hold them with no waste (docs/DECISIONS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The manual page, docs/man/logd.8, is generated from these definitions and from
// docs/man/logd.8.extra.md (`LOGD_BLESS=1 cargo test --locked -p logd --bins`): each option's
// prose is its doc comment here, which `--help` shows too.
/// Daemon that owns the stdio and console streams of virtual machines, and caps their logs.
#[derive(Debug, Parser)]
#[command(name = "logd", version, long_about = None)]
struct Args {
    /// Read settings from this TOML file (see CONFIGURATION in logd(8)).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on this UNIX socket instead of the default.
    ///
    /// The default is /run/logd/logd.sock as root, else $XDG_RUNTIME_DIR/logd/logd.sock (see
    /// DEFAULTS). Also the config key `socket`.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Serve the admin socket here [default: beside the main socket, logd-admin.sock].
    ///
    /// Also the config key `admin_socket`, which says more.
    #[arg(long, value_name = "PATH")]
    admin_socket: Option<PathBuf>,
    /// Serve the console socket here: `logdctl attach` for any local user, each console
    /// judging the caller by its lists [default: beside the main socket, logd-console.sock].
    ///
    /// Also the config key `console_socket`, which says more.
    #[arg(long, value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// Also serve libvirt's virtlogd RPC on this socket, so that libvirtd uses logd in place of
    /// virtlogd.
    ///
    /// Without PATH: /run/libvirt/virtlogd-sock as root (where libvirtd looks; it cannot be
    /// changed there), else $XDG_RUNTIME_DIR/libvirt/virtlogd-sock. A root logd serving it
    /// accepts log paths under /var/log/libvirt. Off by default. Also the config key
    /// `virtlogd_socket`, and a socket from systemd named `virtlogd.socket`. See
    /// docs/LIBVIRT.md.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "")]
    virtlogd_socket: Option<PathBuf>,
    /// Keep logs under this directory instead of the default.
    ///
    /// The default is /var/log/logd as root, else $XDG_STATE_HOME/logd (see DEFAULTS). Also the
    /// config key `log_root`.
    #[arg(long, value_name = "DIR")]
    log_root: Option<PathBuf>,
    /// Keep the consoles added with `logdctl console add --persist` in FILE.
    ///
    /// The default is /var/lib/logd/consoles.toml as root, else
    /// $XDG_STATE_HOME/logd-consoles.toml (see DEFAULTS). Also the config key `consoles_file`,
    /// which says more.
    #[arg(long, value_name = "FILE")]
    consoles_file: Option<PathBuf>,
    /// Exit after SECONDS with no open log and no client; 0 or absent: never.
    ///
    /// logd exits with status 0, after draining, once no log has been open and no client
    /// connected for SECONDS. `logdctl` starts session daemons with 30, as virtlogd's session
    /// mode does. Also the config key `idle_exit`.
    #[arg(long, value_name = "SECONDS")]
    idle_exit: Option<u64>,
    /// More log output: -v for debug, -vv for trace.
    ///
    /// `RUST_LOG` (e.g. `RUST_LOG=logd=debug`) overrides both, and both override the config key
    /// `log_level`. `logdctl log-level` changes the filter at run time; that filter is kept
    /// across re-execs.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    logd::clock::note_image_start();
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
        // Said once, on stderr, as every start-up failure: the tracing layer writes to stderr
        // too, so an error! here would print the same line twice.
        Some(Err(e)) => {
            eprintln!("logd: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(args, successor) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logd: {}", logd::cli::report(&e));
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

/// The manual page and the completions, generated from `Args` (kit::man, docs/DECISIONS.md, "Man
/// pages and completions").
#[cfg(test)]
mod man {
    use std::path::Path;

    use clap::CommandFactory;
    use logd_kit::man::Manual;

    fn manual() -> Manual {
        Manual::new(
            super::Args::command(),
            "8",
            Path::new(env!("CARGO_MANIFEST_DIR")),
        )
    }

    /// Fails when a flag, its help or the prose changed and the page was not regenerated.
    #[test]
    fn the_page_and_the_completions_are_generated_from_the_definitions() {
        manual().check();
    }

    #[test]
    fn every_option_is_on_the_page_and_has_help() {
        let m = manual();
        assert_eq!(m.missing_from_page(), Vec::<String>::new());
        assert_eq!(m.undocumented(), Vec::<String>::new());
    }

    /// The keys the config file takes, as its parser lists them for an unknown one.
    fn keys(toml: &str) -> Vec<String> {
        let overrides = logd::config::Overrides::default();
        let err =
            logd::config::Config::from_text(Some(Path::new("t.toml")), Some(toml), &overrides)
                .expect_err("an unknown key");
        let text = format!("{:#}", anyhow::Error::from(err));
        let list = text
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("no list of keys in {text:?}"));
        let list = list.lines().next().unwrap_or_default();
        list.split(", ")
            .map(|k| k.trim().trim_matches('`').to_owned())
            .filter(|k| !k.is_empty())
            .collect()
    }

    /// The shipped `/etc/logd/logd.toml` (`dist/etc/logd/logd.toml`) names every key, each
    /// commented out at its default: as shipped it changes nothing, and with its top-level
    /// lines uncommented it still parses (its examples are values logd takes).
    #[test]
    fn the_shipped_config_file_names_every_key_and_changes_nothing() {
        use logd::config::{Config, Overrides};
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/etc/logd/logd.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let over = Overrides::default();
        let shipped = Config::from_text(Some(&path), Some(&text), &over).unwrap();
        let none = Config::from_text(None, None, &over).unwrap();
        assert_eq!(
            shipped.effective_text().unwrap(),
            none.effective_text().unwrap(),
            "the shipped file changes a setting"
        );
        for key in keys("not_a_key = 1\n") {
            let line = if key == "console" {
                "# [[console]]".to_owned()
            } else {
                format!("# {key} = ")
            };
            assert!(text.contains(&line), "{key} is not in {}", path.display());
        }
        for key in keys("[[console]]\nnot_a_key = 1\n") {
            assert!(
                text.contains(&format!("{key} = ")) || (key == "guest_fd" && text.contains(&key)),
                "the console key {key} is not in {}",
                path.display()
            );
        }
        let top = text.split("# --- Consoles").next().unwrap();
        let uncommented: Vec<&str> = top
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(r)
                    if r.split_once(" = ").is_some_and(|(k, _)| {
                        k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    }) =>
                {
                    r
                }
                _ => l,
            })
            .collect();
        assert!(uncommented.len() > 20);
        if let Err(e) = Config::from_text(Some(&path), Some(&uncommented.join("\n")), &over) {
            panic!("an example value in {} is refused: {e}", path.display());
        }
    }

    /// A key added to the config file's parser must be documented: CONFIGURATION has each of
    /// the file's keys as a term, CONSOLES each of a `[[console]]` table's (in its example, or
    /// named, as `guest_fd` is, which a file may not use).
    #[test]
    fn every_config_key_is_on_the_page() {
        let page = manual().render();
        let file_keys = keys("not_a_key = 1\n");
        assert!(file_keys.len() > 10, "{file_keys:?}");
        for key in file_keys {
            let term = if key == "console" {
                "\\fB[[console]]\\fR".to_owned()
            } else {
                format!("\\fB{}\\fR\n", key.replace('-', "\\-"))
            };
            assert!(
                page.contains(&format!(".TP\n{term}")),
                "{key} is not in CONFIGURATION"
            );
        }
        let console_keys = keys("[[console]]\nnot_a_key = 1\n");
        assert!(console_keys.len() > 10, "{console_keys:?}");
        for key in console_keys {
            let bold = format!("\\fB{}\\fR", key.replace('-', "\\-"));
            assert!(
                page.contains(&format!("\n{key} = "))
                    || page.contains(&format!("\n# {key} = "))
                    || page.contains(&bold),
                "{key} is not in CONSOLES"
            );
        }
    }

    #[test]
    fn man_renders_the_page_without_warnings() {
        if let Some(warnings) = manual().man_warnings() {
            assert_eq!(warnings, "");
        }
    }

    #[test]
    fn the_bash_completion_loads() {
        if let Some(out) = manual().bash_completion() {
            let out = out.unwrap_or_else(|e| panic!("the completion does not load: {e}"));
            assert!(out.contains("logd"), "{out}");
        }
    }
}
