//! `logdctl attach`: the user's terminal on a console, in raw mode, with an escape menu.
//!
//! The attach goes through logd's console socket: logd knows the caller's uid, joins it to the
//! console with the role the console's lists give it, and hands back one end of a socketpair
//! (raw bytes both ways). The escape sequence (`Ctrl-]` by default, or conserver's `^Ec`), then
//! a key, is a command: each is one request on a new connection to the console socket, about
//! this subscriber. The terminal is restored on every way out: detach, the console closing, an
//! error, and SIGTERM/SIGHUP/SIGQUIT (caught on a thread of their own).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use logd_protocol::{ConsoleCommand, ConsoleReply};

use super::term::leave;

/// Lines a replay gives when the user just presses Enter.
const DEFAULT_REPLAY_LINES: u32 = 20;

const HELP: &str = "commands, after the escape:\r\n\
    \x20 .  d  q   detach\r\n\
    \x20 w         who is attached, and who holds the write lock\r\n\
    \x20 l         ask for the write lock (type again after spying)\r\n\
    \x20 f         force: take the write lock (read-write users only)\r\n\
    \x20 s         spy: watch read-only\r\n\
    \x20 r         replay the last lines (asks how many)\r\n\
    \x20 b         send a BREAK\r\n\
    \x20 k         send a SysRq (asks for the key)\r\n\
    \x20 ?  h      this help\r\n\
    \x20 the escape's last key again sends it to the guest";

/// What `attach` was asked.
pub struct Options<'a> {
    pub console_socket: &'a Path,
    pub domain: &'a str,
    pub name: &'a str,
    pub read_only: bool,
    pub force: bool,
    pub escape: &'a str,
}

pub fn run(o: Options<'_>) -> anyhow::Result<std::process::ExitCode> {
    let escape = parse_escape(o.escape)?;
    let mut client = super::trusted_connect(o.console_socket)?;
    let (me, fd) = client
        .attach_console(o.domain, o.name, o.read_only, o.force)
        .with_context(|| format!("cannot attach to {}/{}", o.domain, o.name))?;
    drop(client);
    let mut conn = UnixStream::from(fd);
    let mut input_conn = conn
        .try_clone()
        .context("cannot duplicate the console connection")?;

    super::term::catch_signals()?;
    super::term::raw_mode("")?;
    let stance = match (me.role, me.writer) {
        (_, true) => "you may type",
        (logd_protocol::admin::Role::ReadWrite, false) => "read-write, waiting for the lock",
        (logd_protocol::admin::Role::ReadOnly, _) => "read-only",
    };
    eprint!(
        "[logdctl: attached to {}/{} as {}]\r\n[logdctl: {stance}; {} then ? for help]\r\n",
        o.domain, o.name, me.peer, o.escape
    );

    let menu = Menu {
        socket: o.console_socket.to_owned(),
        subscriber: me.subscriber,
    };
    // Keys to the console, the escape sequence and its commands taken out.
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut matched = 0;
        let mut byte = [0u8; 1];
        loop {
            let b = match stdin.read(&mut byte) {
                Ok(0) | Err(_) => return, // stdin closed: keep showing output
                Ok(_) => byte[0],
            };
            let out: Vec<u8> = if b == escape[matched] {
                matched += 1;
                if matched < escape.len() {
                    continue;
                }
                matched = 0;
                match menu.command(&mut stdin, &escape) {
                    Some(literal) => literal,
                    None => continue,
                }
            } else {
                // A partial match is typed as it was, then this key.
                let mut out = escape[..matched].to_vec();
                matched = 0;
                out.push(b);
                out
            };
            if input_conn.write_all(&out).is_err() {
                leave(1, "console connection lost");
            }
        }
    });

    // Console to the screen.
    let mut stdout = std::io::stdout().lock();
    let mut buf = [0u8; 65536];
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) | Err(_) => leave(0, "console closed"),
            Ok(n) => n,
        };
        if stdout
            .write_all(&buf[..n])
            .and_then(|()| stdout.flush())
            .is_err()
        {
            leave(1, "cannot write to the terminal");
        }
    }
}

/// The escape as bytes: `^X` is Ctrl-X, anything else is itself (`^]`, `^Ec`, `~`).
fn parse_escape(s: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '^' => match chars.next() {
                Some(k @ ('@'..='_' | 'a'..='z')) => out.push(k.to_ascii_uppercase() as u8 & 0x1f),
                Some('?') => out.push(0x7f),
                _ => bail!("--escape {s:?}: `^` must be followed by a control key (^] or ^E)"),
            },
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c as u8),
            _ => bail!("--escape {s:?}: only ASCII keys and ^X"),
        }
    }
    if out.is_empty() || out.len() > 3 {
        bail!("--escape {s:?}: one to three keys");
    }
    Ok(out)
}

/// The escape menu: each command is one request about this subscriber.
struct Menu {
    socket: PathBuf,
    subscriber: u64,
}

impl Menu {
    /// Reads the command key after the escape and does it. Returns bytes to send to the
    /// console (the escape itself, typed twice), or None.
    fn command(&self, stdin: &mut impl Read, escape: &[u8]) -> Option<Vec<u8>> {
        say("command? (? for help)");
        let key = read_key(stdin)?;
        let cmd = match key {
            b'.' | b'd' | b'q' => leave(0, "detached"),
            b'?' | b'h' => {
                say(HELP);
                return None;
            }
            k if k == *escape.last().expect("an escape has a key") => {
                return Some(escape.to_vec());
            }
            b'w' => ConsoleCommand::Who,
            b'l' => ConsoleCommand::Lock { force: false },
            b'f' => ConsoleCommand::Lock { force: true },
            b's' => ConsoleCommand::Spy,
            b'b' => ConsoleCommand::Break,
            b'r' => {
                say(&format!(
                    "replay how many lines? (Enter: {DEFAULT_REPLAY_LINES})"
                ));
                let lines = read_number(stdin).unwrap_or(DEFAULT_REPLAY_LINES);
                ConsoleCommand::Replay { lines }
            }
            b'k' => {
                say("SysRq key?");
                ConsoleCommand::SysRq(read_key(stdin)?)
            }
            k => {
                say(&format!(
                    "no command {:?}; ? for help",
                    char::from(k).escape_default().to_string()
                ));
                return None;
            }
        };
        match self.ask(cmd) {
            Ok(reply) => show(reply),
            Err(e) => say(&format!("{e:#}")),
        }
        None
    }

    fn ask(&self, cmd: ConsoleCommand) -> anyhow::Result<ConsoleReply> {
        let mut c = super::trusted_connect(&self.socket)?;
        Ok(c.console_command(self.subscriber, cmd)?)
    }
}

fn show(reply: ConsoleReply) {
    match reply {
        ConsoleReply::Said(s) => say(&s),
        ConsoleReply::Who(subs) => {
            let mut out = String::from("attached (in write-lock order):");
            for s in &subs {
                let lock = if s.writer { "  <- may type" } else { "" };
                out.push_str(&format!(
                    "\r\n  #{:<5} {:<24} {}{lock}",
                    s.id, s.peer, s.role
                ));
            }
            say(&out);
        }
        ConsoleReply::Replay(bytes) => {
            say("replay:");
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&bytes);
            let _ = err.flush();
            say("end of replay");
        }
    }
}

/// A line of logdctl's own, on stderr (stdout is the console's).
fn say(s: &str) {
    eprint!("\r\n[logdctl: {s}]\r\n");
}

fn read_key(stdin: &mut impl Read) -> Option<u8> {
    let mut b = [0u8; 1];
    match stdin.read(&mut b) {
        Ok(1) => Some(b[0]),
        _ => None,
    }
}

/// Digits up to Enter, echoed; None if there were none.
fn read_number(stdin: &mut impl Read) -> Option<u32> {
    let mut n: Option<u32> = None;
    loop {
        match read_key(stdin)? {
            b'\r' | b'\n' => return n,
            d @ b'0'..=b'9' => {
                eprint!("{}", char::from(d));
                n = Some(
                    n.unwrap_or(0)
                        .saturating_mul(10)
                        .saturating_add(u32::from(d - b'0')),
                );
            }
            0x7f | 0x08 => {
                eprint!("\x08 \x08");
                n = n.map(|v| v / 10).filter(|_| n.unwrap_or(0) >= 10);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_parse_as_virsh_and_conserver_spell_them() {
        assert_eq!(parse_escape("^]").unwrap(), vec![0x1d]);
        assert_eq!(parse_escape("^Ec").unwrap(), vec![0x05, b'c']);
        assert_eq!(parse_escape("^ec").unwrap(), vec![0x05, b'c']);
        assert_eq!(parse_escape("~").unwrap(), vec![b'~']);
        assert!(parse_escape("").is_err());
        assert!(parse_escape("^").is_err());
        assert!(parse_escape("^1").is_err());
        assert!(parse_escape("abcd").is_err());
    }
}
