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
