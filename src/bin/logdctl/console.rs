//! `logdctl console add`, `remove` and `list`, on the main socket (`kick` and `grant` go to the
//! admin socket, in `main.rs`).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use anyhow::bail;
use logd_protocol::client::{Client, ClientError};
use logd_protocol::{
    ConsoleOption, ConsoleProtocol, ConsoleSpec, ErrorCode, GuestSide, WritePolicy,
};

use crate::args::{ConsoleCmd, TlsAnonymousArg, WriteArg};

pub(crate) fn run(client: &mut Client, cmd: ConsoleCmd) -> anyhow::Result<ExitCode> {
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
            persist,
            tcp_write,
            read_write,
            read_only,
            no_notices,
            mark_log,
            tls,
            tls_dir,
            tls_read_write,
            tls_read_only,
            tls_anonymous,
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
            let mut options = Vec::new();
            if persist {
                options.push(ConsoleOption::Persist);
            }
            if tcp_write {
                options.push(ConsoleOption::TcpWrite);
            }
            if !read_write.is_empty() {
                options.push(ConsoleOption::ReadWrite(read_write));
            }
            if !read_only.is_empty() {
                options.push(ConsoleOption::ReadOnly(read_only));
            }
            if no_notices {
                options.push(ConsoleOption::NoNotices);
            }
            if mark_log {
                options.push(ConsoleOption::MarkLog);
            }
            if let Some(a) = tls {
                options.push(ConsoleOption::Tls(a));
            }
            if let Some(d) = tls_dir {
                options.push(ConsoleOption::TlsDir(d));
            }
            if !tls_read_write.is_empty() {
                options.push(ConsoleOption::TlsReadWrite(tls_read_write));
            }
            if !tls_read_only.is_empty() {
                options.push(ConsoleOption::TlsReadOnly(tls_read_only));
            }
            if let Some(a) = tls_anonymous {
                options.push(ConsoleOption::TlsAnonymous(
                    match a {
                        TlsAnonymousArg::Refuse => "refuse",
                        TlsAnonymousArg::ReadOnly => "read-only",
                    }
                    .into(),
                ));
            }
            let flags: Vec<&str> = options.iter().map(ConsoleOption::flag).collect();
            let flags = flags.join(", ");
            let (added, fd) = client
                .add_console_with(spec, options)
                .map_err(|e| match e {
                    ClientError::Server(w) if w.code == ErrorCode::Malformed => anyhow::anyhow!(
                        "{}: this logd is too old for {flags} (it did not understand the \
                         request); nothing was added",
                        w.message
                    ),
                    e => e.into(),
                })?;
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
