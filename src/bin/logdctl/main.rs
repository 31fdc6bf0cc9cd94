//! `logdctl`: the command-line client of logd. See logdctl(1), `docs/man/logdctl.1`.
//!
//! The commands and their options are in `args`. This file dispatches them, and serves the
//! commands on a log (`run`, `append`, `position`, `read`, `tail`). The admin socket's commands
//! are in `admin` and `top`, the console commands in `console` and `attach`, the terminal's raw
//! mode in `term`, and reaching (or starting) a daemon in `connect`.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use logd::config;
use logd_protocol::client::{Client, ClientError};
use logd_protocol::{ErrorCode, OpenFlags, Position, ReadFrom, MAX_READ_LEN};

mod admin;
mod args;
mod attach;
mod connect;
mod console;
mod term;
mod top;
mod when;

use args::{Args, Cmd, ConsoleCmd};
use connect::{admin_connect, client_connect as trusted_connect, connect, SERVER_UID};

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

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _ = SERVER_UID.set(args.server_uid);
    let _ = connect::MAIN_SOCKET.set(args.socket.clone().unwrap_or_else(config::default_socket));
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
        Cmd::Attach {
            domain,
            name,
            read_only,
            force,
            escape,
        } => {
            let console_socket = args
                .console_socket
                .clone()
                .unwrap_or_else(|| config::console_socket_for(&socket));
            return attach::run(attach::Options {
                console_socket: &console_socket,
                domain,
                name,
                read_only: *read_only,
                force: *force,
                escape,
            });
        }
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
        Cmd::Console(c) => console::run(&mut client, c),
        Cmd::Ps { .. }
        | Cmd::Attach { .. }
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
        Cmd::Tail {
            log,
            bytes,
            lines,
            follow,
            follow_retry,
        } => {
            let last = |client: &mut Client| match lines {
                Some(n) => last_lines(client, &log, n),
                None => copy_out(client, &log, ReadFrom::Last(bytes), bytes),
            };
            if follow_retry {
                return follow_waiting(&mut client, &log, last);
            }
            let mut next = last(&mut client)?;
            if follow {
                loop {
                    std::thread::sleep(FOLLOW_POLL);
                    next = copy_out(&mut client, &log, ReadFrom::Position(next), u64::MAX)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How often `tail -f` and `-F` look for more.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// `tail -F`: `last` if the log is there, then what is written, as `-f`; while the log is
/// missing (not there yet, or removed), says so once on stderr and looks again every
/// [`FOLLOW_POLL`]. A log that appears is printed from its first byte.
fn follow_waiting(
    client: &mut Client,
    log: &str,
    last: impl Fn(&mut Client) -> anyhow::Result<Position>,
) -> anyhow::Result<ExitCode> {
    let missing = |e: &anyhow::Error| {
        matches!(
            e.downcast_ref::<ClientError>(),
            Some(ClientError::Server(w)) if w.code == ErrorCode::NotFound
        )
    };
    // None: not seen yet; Some(None): gone; Some(Some(p)): following from p.
    let mut state: Option<Option<Position>> = None;
    loop {
        let read = match state {
            None => last(client),
            Some(None) => copy_out(client, log, ReadFrom::Start, u64::MAX),
            Some(Some(p)) => copy_out(client, log, ReadFrom::Position(p), u64::MAX),
        };
        match read {
            Ok(next) => {
                if state == Some(None) {
                    eprintln!("logdctl: {log} has appeared; following it");
                }
                state = Some(Some(next));
            }
            Err(e) if missing(&e) => {
                match state {
                    None => {
                        eprintln!("logdctl: {log} does not exist yet; waiting for it to appear")
                    }
                    Some(Some(_)) => {
                        eprintln!(
                            "logdctl: {log} has become inaccessible; waiting for it to appear"
                        )
                    }
                    Some(None) => {}
                }
                state = Some(None);
            }
            Err(e) => return Err(e),
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// Prints the last `n` lines of a log; returns the position after them. Reads the last 64 KiB,
/// then 4 times more each time, until the bytes read hold `n` line ends before the last byte,
/// or are the whole log.
fn last_lines(client: &mut Client, log: &str, n: u64) -> anyhow::Result<Position> {
    let mut want: u64 = 64 * 1024;
    loop {
        let (data, next, whole) = read_last(client, log, want)?;
        let start = match start_of_last_lines(&data, n) {
            Some(start) => start,
            None if whole => 0,
            None => {
                want = want.saturating_mul(4);
                continue;
            }
        };
        let mut out = std::io::stdout().lock();
        out.write_all(&data[start..]).context("writing to stdout")?;
        out.flush().context("writing to stdout")?;
        return Ok(next);
    }
}

/// The last `want` bytes of a log (fewer if it holds fewer), the position after them, and
/// whether they are the whole log.
fn read_last(
    client: &mut Client,
    log: &str,
    want: u64,
) -> anyhow::Result<(Vec<u8>, Position, bool)> {
    let mut data = Vec::new();
    let mut from = ReadFrom::Last(want);
    loop {
        let left = want - data.len() as u64;
        let (chunk, next, gap) = client.read_log(log, from, left.min(MAX_READ_LEN))?;
        if gap {
            eprintln!("logdctl: some of {log} was rotated away before it could be read");
        }
        data.extend_from_slice(&chunk);
        // Stops at `want` bytes: a log written to as fast as it is read would not end.
        if chunk.is_empty() || data.len() as u64 >= want {
            let whole = (data.len() as u64) < want;
            return Ok((data, next, whole));
        }
        from = ReadFrom::Position(next);
    }
}

/// Where the last `n` lines of `data` start, as GNU tail counts them (a last line without its
/// newline is a line), or None if `data` holds fewer than `n` whole lines' ends before them:
/// the caller reads further back, or prints everything if `data` is the whole log.
fn start_of_last_lines(data: &[u8], n: u64) -> Option<usize> {
    if n == 0 {
        return Some(data.len());
    }
    // A newline as the last byte ends the last line; it does not start another.
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, &b) in body.iter().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                return Some(i + 1);
            }
        }
    }
    None
}

#[cfg(test)]
mod lines {
    use super::start_of_last_lines as start;

    #[test]
    fn last_lines_as_gnu_tail_counts_them() {
        assert_eq!(start(b"a\nb\nc\n", 2), Some(2));
        assert_eq!(
            start(b"a\nb\nc", 2),
            Some(2),
            "an unterminated last line counts"
        );
        assert_eq!(start(b"a\nb\nc\n", 3), None, "maybe more lines before");
        assert_eq!(start(b"a\nb\n", 0), Some(4));
        assert_eq!(start(b"\n\n\n", 2), Some(1));
        assert_eq!(start(b"", 1), None);
    }
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

/// The manual page and the completions, generated from `args::Args` (kit::man, docs/DECISIONS.md,
/// "Man pages and completions").
#[cfg(test)]
mod man {
    use std::path::Path;

    use clap::CommandFactory;
    use logd_kit::man::Manual;

    fn manual() -> Manual {
        Manual::new(
            super::args::Args::command(),
            "1",
            Path::new(env!("CARGO_MANIFEST_DIR")),
        )
    }

    /// Fails when a flag, its help or the prose changed and the page was not regenerated.
    #[test]
    fn the_page_and_the_completions_are_generated_from_the_definitions() {
        manual().check();
    }

    #[test]
    fn every_option_and_command_is_on_the_page_and_has_help() {
        let m = manual();
        assert_eq!(m.missing_from_page(), Vec::<String>::new());
        assert_eq!(m.undocumented(), Vec::<String>::new());
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
            assert!(out.contains("logdctl"), "{out}");
        }
    }
}
