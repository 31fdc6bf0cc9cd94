//! A client of virtlogd's RPC ([`RpcClient`]), for virtlogd and for logd's virtlogd socket alike,
//! with its own XDR encoding.
//!
//! The wire, as libvirt's `src/rpc/virnetprotocol.x` and `src/logging/log_protocol.x` define it
//! (XDR: big-endian 32-bit words, strings and opaques padded to 4 bytes):
//! - A message is a length word that counts itself, a header of six words (program, version,
//!   procedure, type, serial, status), then the payload.
//! - A reply that passes fds has the type REPLY_WITH_FDS (5) and one more word after the header,
//!   the number of fds. The fds come after the message's last byte, each on a one-byte message
//!   of its own with SCM_RIGHTS ancillary data.
//! - A failed call's reply has the status ERROR (1) and a `virNetMessageError` payload: code,
//!   domain, an optional message, and more that the bench does not read.
//! - Program 0x87539319 version 1: DOMAIN_OPEN_LOG_FILE (1) takes a driver name, a domain (a
//!   16-byte uuid and a name), the log's path and flags, and returns the log's position (inode
//!   and offset, 64 bits each) and the write end of a pipe whose read end the daemon keeps.
//!   DOMAIN_GET_LOG_FILE_POSITION (2) takes a path and flags and returns the position.

use std::fmt;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use logd_protocol::fdpass::recv_with_fds;

// The RPC protocol's numbers.
const PROGRAM: u32 = 0x8753_9319;
const PROGRAM_VERSION: u32 = 1;
const PROC_DOMAIN_OPEN_LOG_FILE: u32 = 1;
const PROC_DOMAIN_GET_LOG_FILE_POSITION: u32 = 2;
const TYPE_CALL: u32 = 0;
const TYPE_REPLY: u32 = 1;
const TYPE_REPLY_WITH_FDS: u32 = 5;
const STATUS_OK: u32 = 0;
const STATUS_ERROR: u32 = 1;
/// The header's six words.
const HEADER_LEN: usize = 24;
/// The largest message, length word not included (`VIR_NET_MESSAGE_MAX`).
const MESSAGE_MAX: usize = 16 * 1024 * 1024;
/// The most fds one message may pass (`VIR_NET_MESSAGE_NUM_FDS_MAX`).
const NUM_FDS_MAX: u32 = 32;
/// The longest string the log protocol allows (`VIR_LOG_MANAGER_PROTOCOL_STRING_MAX`).
const STRING_MAX: usize = 4 * 1024 * 1024;

/// One connection to a server of virtlogd's RPC (virtlogd, or logd's virtlogd socket), one
/// call at a time.
pub(super) struct RpcClient {
    sock: UnixStream,
    /// The daemon, for messages.
    peer: &'static str,
    serial: u32,
}

/// Where the daemon is in a log: the file's inode and the offset of its end.
#[derive(Debug)]
pub(super) struct LogFilePosition {
    pub(super) inode: u64,
    pub(super) offset: u64,
}

/// A call's answer: its payload and the fds that came with it.
struct Reply {
    payload: Vec<u8>,
    fds: Vec<OwnedFd>,
}

/// The error a failed call reports.
#[derive(Debug)]
struct RemoteError {
    /// The daemon that reported it.
    peer: &'static str,
    code: i32,
    domain: i32,
    message: Option<String>,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (error code {}, domain {})",
            self.peer,
            self.message.as_deref().unwrap_or("no message"),
            self.code,
            self.domain
        )
    }
}

impl std::error::Error for RemoteError {}

impl RpcClient {
    pub(super) fn connect(path: &Path, peer: &'static str, timeout: Duration) -> Result<RpcClient> {
        let sock = UnixStream::connect(path)
            .with_context(|| format!("connecting to {peer} at {}", path.display()))?;
        let client = RpcClient {
            sock,
            peer,
            serial: 0,
        };
        client.set_timeout(timeout)?;
        Ok(client)
    }

    pub(super) fn set_timeout(&self, timeout: Duration) -> Result<()> {
        self.sock
            .set_read_timeout(Some(timeout))
            .and_then(|()| self.sock.set_write_timeout(Some(timeout)))
            .context("setting the RPC client's timeouts")
    }

    /// DOMAIN_OPEN_LOG_FILE: the log at `path` for the domain, and its pipe's write end.
    pub(super) fn open_log_file(
        &mut self,
        driver: &str,
        uuid: &[u8; 16],
        name: &str,
        path: &Path,
        flags: u32,
    ) -> Result<(LogFilePosition, OwnedFd)> {
        let mut args = XdrWriter::default();
        args.string(driver.as_bytes());
        args.opaque(uuid);
        args.string(name.as_bytes());
        args.string(path.as_os_str().as_bytes());
        args.u32(flags);
        let reply = self
            .call(PROC_DOMAIN_OPEN_LOG_FILE, &args.0)
            .with_context(|| format!("DOMAIN_OPEN_LOG_FILE {}", path.display()))?;
        let mut ret = XdrReader(&reply.payload);
        let pos = ret.position()?;
        ret.end()?;
        let [fd]: [OwnedFd; 1] = reply.fds.try_into().map_err(|fds: Vec<OwnedFd>| {
            anyhow!(
                "DOMAIN_OPEN_LOG_FILE answered with {} fds, not one",
                fds.len()
            )
        })?;
        Ok((pos, fd))
    }

    /// DOMAIN_GET_LOG_FILE_POSITION for the log at `path`, which must be open.
    pub(super) fn log_file_position(&mut self, path: &Path) -> Result<LogFilePosition> {
        let mut args = XdrWriter::default();
        args.string(path.as_os_str().as_bytes());
        args.u32(0);
        let reply = self
            .call(PROC_DOMAIN_GET_LOG_FILE_POSITION, &args.0)
            .with_context(|| format!("DOMAIN_GET_LOG_FILE_POSITION {}", path.display()))?;
        let mut ret = XdrReader(&reply.payload);
        let pos = ret.position()?;
        ret.end()?;
        Ok(pos)
    }

    /// One round trip that needs no open log: the position of a log that is not open, which
    /// the daemon answers with an error.
    pub(super) fn ping(&mut self) -> Result<()> {
        match self.log_file_position(Path::new("/nonexistent/logd-bench.log")) {
            Ok(_) => Ok(()),
            Err(e) if e.is::<RemoteError>() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends a call of `procedure` with the encoded `args` and reads its reply and fds. A
    /// failed call is an error that downcasts to [`RemoteError`].
    fn call(&mut self, procedure: u32, args: &[u8]) -> Result<Reply> {
        self.serial = self.serial.wrapping_add(1);
        let mut msg = XdrWriter::default();
        let len = 4 + HEADER_LEN + args.len();
        msg.u32(u32::try_from(len).context("a call too large")?);
        for word in [
            PROGRAM,
            PROGRAM_VERSION,
            procedure,
            TYPE_CALL,
            self.serial,
            STATUS_OK,
        ] {
            msg.u32(word);
        }
        msg.0.extend_from_slice(args);
        self.sock
            .write_all(&msg.0)
            .with_context(|| format!("sending a call to {}", self.peer))?;

        // Exactly the reply's bytes: a read past them would take the byte that carries the
        // first fd, and the kernel would drop the fd.
        let mut word = [0; 4];
        self.sock
            .read_exact(&mut word)
            .with_context(|| format!("reading the length of {}'s reply", self.peer))?;
        let len = u32::from_be_bytes(word) as usize;
        ensure!(
            (4 + HEADER_LEN..=4 + MESSAGE_MAX).contains(&len),
            "{}'s reply claims {len} bytes",
            self.peer
        );
        let mut body = vec![0; len - 4];
        self.sock
            .read_exact(&mut body)
            .with_context(|| format!("reading {}'s reply", self.peer))?;
        let mut r = XdrReader(&body);
        let [prog, vers, proc_, kind, serial, status] = [(); 6].map(|()| r.u32());
        let (prog, vers, proc_, kind, serial, status) =
            (prog?, vers?, proc_?, kind?, serial?, status?);
        ensure!(
            (prog, vers, proc_, serial) == (PROGRAM, PROGRAM_VERSION, procedure, self.serial),
            "a reply to another call: program {prog:#x} version {vers} procedure {proc_} serial \
             {serial}, for procedure {procedure} serial {}",
            self.serial
        );
        let nfds = match kind {
            TYPE_REPLY => 0,
            TYPE_REPLY_WITH_FDS => r.u32()?,
            other => bail!("{} sent a message of type {other}, not a reply", self.peer),
        };
        ensure!(nfds <= NUM_FDS_MAX, "{} announces {nfds} fds", self.peer);
        let fds = (0..nfds)
            .map(|_| self.recv_fd())
            .collect::<Result<Vec<_>>>()?;
        match status {
            STATUS_OK => Ok(Reply {
                payload: r.0.to_vec(),
                fds,
            }),
            STATUS_ERROR => Err(RemoteError {
                peer: self.peer,
                ..r.remote_error()?
            }
            .into()),
            other => bail!("{}'s reply has status {other}", self.peer),
        }
    }

    /// One fd, on its one-byte message.
    fn recv_fd(&mut self) -> Result<OwnedFd> {
        let (mut byte, mut fds) = ([0; 1], Vec::new());
        let n = recv_with_fds(self.sock.as_fd(), &mut byte, &mut fds)
            .with_context(|| format!("receiving an fd from {}", self.peer))?;
        ensure!(
            n == 1 && fds.len() == 1,
            "expected one fd on one byte from {}, got {} fds on {n} bytes",
            self.peer,
            fds.len()
        );
        fds.pop().context("no fd")
    }
}

/// XDR encoding: big-endian words, variable-length data after its length, padded to 4 bytes.
#[derive(Default)]
struct XdrWriter(Vec<u8>);

impl XdrWriter {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    /// Fixed-length opaque data (its length is in the type, not on the wire).
    fn opaque(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
    }

    /// A string: its length, then its bytes.
    fn string(&mut self, bytes: &[u8]) {
        self.u32(bytes.len() as u32);
        self.opaque(bytes);
    }
}

/// XDR decoding from the front of a buffer.
struct XdrReader<'a>(&'a [u8]);

impl<'a> XdrReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(
            n <= self.0.len(),
            "the reply ends early ({} bytes left, {n} wanted)",
            self.0.len()
        );
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into()?))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(self.u32()? as i32)
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into()?))
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u32()? as usize;
        ensure!(len <= STRING_MAX, "a string of {len} bytes");
        let bytes = self.take(len)?;
        self.take(len.next_multiple_of(4) - len)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// An optional value: a word saying whether it is there, then the value.
    fn optional_string(&mut self) -> Result<Option<String>> {
        match self.u32()? {
            0 => Ok(None),
            _ => self.string().map(Some),
        }
    }

    fn position(&mut self) -> Result<LogFilePosition> {
        Ok(LogFilePosition {
            inode: self.u64()?,
            offset: self.u64()?,
        })
    }

    /// The start of a `virNetMessageError`: code, domain, message (the rest is not read).
    fn remote_error(&mut self) -> Result<RemoteError> {
        Ok(RemoteError {
            peer: "the server",
            code: self.i32()?,
            domain: self.i32()?,
            message: self.optional_string()?,
        })
    }

    fn end(&self) -> Result<()> {
        ensure!(
            self.0.is_empty(),
            "{} bytes more than expected in the reply",
            self.0.len()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtlogd::uuid;
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    use std::thread;

    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

    #[test]
    fn xdr_pads_to_four_bytes_both_ways() {
        let mut w = XdrWriter::default();
        w.string(b"qemu1");
        w.opaque(&[7; 16]);
        w.u32(5);
        assert_eq!(w.0.len(), 4 + 8 + 16 + 4);
        assert_eq!(&w.0[..12], b"\0\0\0\x05qemu1\0\0\0");
        let mut r = XdrReader(&w.0);
        assert_eq!(r.string().unwrap(), "qemu1");
        assert_eq!(r.take(16).unwrap(), &[7; 16]);
        assert_eq!(r.u32().unwrap(), 5);
        r.end().unwrap();
        assert!(r.u32().is_err());
    }

    /// A fake virtlogd on the other end of `server`: checks one call, answers with `reply`
    /// (header type, status, payload) and passes `fd` after it.
    fn serve_one(
        mut server: UnixStream,
        want_proc: u32,
        kind: u32,
        status: u32,
        payload: Vec<u8>,
        fd: Option<OwnedFd>,
    ) -> thread::JoinHandle<Vec<u8>> {
        thread::spawn(move || {
            let mut len = [0; 4];
            server.read_exact(&mut len).unwrap();
            let mut call = vec![0; u32::from_be_bytes(len) as usize - 4];
            server.read_exact(&mut call).unwrap();
            let mut r = XdrReader(&call);
            let header = [(); 6].map(|()| r.u32().unwrap());
            assert_eq!(
                header,
                [PROGRAM, PROGRAM_VERSION, want_proc, TYPE_CALL, 1, STATUS_OK]
            );
            let args = r.0.to_vec();
            let mut reply = XdrWriter::default();
            let fds = u32::from(fd.is_some());
            let len = 4 + HEADER_LEN + if kind == TYPE_REPLY_WITH_FDS { 4 } else { 0 };
            reply.u32((len + payload.len()) as u32);
            for word in [PROGRAM, PROGRAM_VERSION, want_proc, kind, 1, status] {
                reply.u32(word);
            }
            if kind == TYPE_REPLY_WITH_FDS {
                reply.u32(fds);
            }
            reply.0.extend_from_slice(&payload);
            server.write_all(&reply.0).unwrap();
            if let Some(fd) = fd {
                let raw = [fd.as_raw_fd()];
                let cmsg = [ControlMessage::ScmRights(&raw)];
                sendmsg::<()>(
                    server.as_raw_fd(),
                    &[IoSlice::new(&[0])],
                    &cmsg,
                    MsgFlags::empty(),
                    None,
                )
                .unwrap();
            }
            args
        })
    }

    #[test]
    fn an_open_sends_its_arguments_and_receives_the_pipe_after_the_reply() {
        let (client, server) = UnixStream::pair().unwrap();
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        let mut ret = XdrWriter::default();
        for word in [0, 42, 0, 7] {
            ret.u32(word); // inode 42, offset 7, as two hypers
        }
        let fake = serve_one(
            server,
            PROC_DOMAIN_OPEN_LOG_FILE,
            TYPE_REPLY_WITH_FDS,
            STATUS_OK,
            ret.0,
            Some(write_end),
        );
        let mut c = RpcClient {
            sock: client,
            peer: "virtlogd",
            serial: 0,
        };
        let (pos, fd) = c
            .open_log_file("qemu", &uuid(3), "idle-00003", Path::new("/l/3.log"), 0)
            .unwrap();
        assert_eq!((pos.inode, pos.offset), (42, 7));
        let args = fake.join().unwrap();
        let mut want = XdrWriter::default();
        want.string(b"qemu");
        want.opaque(&uuid(3));
        want.string(b"idle-00003");
        want.string(b"/l/3.log");
        want.u32(0);
        assert_eq!(args, want.0);
        // The fd received is the pipe's write end.
        nix::unistd::write(&fd, b"x").unwrap();
        let mut byte = [0];
        assert_eq!(nix::unistd::read(&read_end, &mut byte).unwrap(), 1);
        assert_eq!(&byte, b"x");
    }

    #[test]
    fn a_failed_call_is_a_remote_error_with_virtlogds_message() {
        let (client, server) = UnixStream::pair().unwrap();
        let mut err = XdrWriter::default();
        err.u32(1); // code
        err.u32(56); // domain
        err.u32(1); // the message is there
        err.string(b"No open log file /x");
        let fake = serve_one(
            server,
            PROC_DOMAIN_GET_LOG_FILE_POSITION,
            TYPE_REPLY,
            STATUS_ERROR,
            err.0,
            None,
        );
        let mut c = RpcClient {
            sock: client,
            peer: "virtlogd",
            serial: 0,
        };
        let e = c.log_file_position(Path::new("/x")).unwrap_err();
        fake.join().unwrap();
        let remote = e.downcast_ref::<RemoteError>().expect("a RemoteError");
        assert_eq!(remote.message.as_deref(), Some("No open log file /x"));
        assert_eq!((remote.code, remote.domain), (1, 56));
    }
}
