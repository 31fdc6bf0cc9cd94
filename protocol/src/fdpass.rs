//! File descriptors over a UNIX stream socket (SCM_RIGHTS).
//!
//! Ancillary data rides on the first byte of the `sendmsg` that carries it, so a sender attaches
//! a frame's fds to the call that sends the frame's first bytes, and a receiver collects every fd
//! it is given into a queue and hands them to the frame that claims them
//! ([`crate::Response::fd_count`]).
//!
//! The daemon reads requests with plain `read`, which makes the kernel discard any fd a client
//! tries to pass: it never holds an fd it did not ask for.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::codec::{ProtocolError, MAX_FDS_PER_FRAME};

/// Sends `data` with `fds` attached. Returns how many bytes went out (it may be fewer than
/// `data.len()` on a non-blocking socket; the fds always travel with the first byte).
/// `MSG_NOSIGNAL`: a vanished peer is an `EPIPE` error, never a SIGPIPE.
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<usize, Errno> {
    let raw: Vec<i32> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let cmsgs = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsgs };
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(data)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
}

/// Receives bytes into `buf`, appending any fds that came with them to `fds` (close-on-exec).
/// Returns the number of bytes read; 0 means the peer closed the connection.
///
/// More than [`MAX_FDS_PER_FRAME`] fds in one message is an error; the ones received are closed.
#[allow(unsafe_code)] // one block: owning the fds the kernel installed
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> Result<usize, ProtocolError> {
    // Room for the most fds Linux sends in one message (SCM_MAX_FD), so the kernel never
    // truncates and every fd it installs is seen here and closed if unwanted.
    let mut cmsg = nix::cmsg_space!([i32; 253]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => break msg,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(ProtocolError::Io(e.into())),
        }
    };
    let n = msg.bytes;
    let cmsgs = msg.cmsgs().map_err(|_| ProtocolError::TooManyFds)?;
    for c in cmsgs {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: the kernel just installed this fd in our table for us; nothing else
                // owns it, so wrapping it in an OwnedFd makes it closed exactly once.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if fds.len() > MAX_FDS_PER_FRAME {
        fds.clear();
        return Err(ProtocolError::TooManyFds);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn an_fd_travels_with_its_bytes() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut r, w) = std::io::pipe().unwrap();
        let sent = send_with_fds(a.as_fd(), b"frame", &[w.as_fd()]).unwrap();
        assert_eq!(sent, 5);
        drop(w);
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..n], b"frame");
        assert_eq!(fds.len(), 1);
        let mut w2 = std::fs::File::from(fds.pop().unwrap());
        w2.write_all(b"through").unwrap();
        drop(w2);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "through");
    }

    #[test]
    fn too_many_fds_are_refused_and_closed() {
        let (a, b) = UnixStream::pair().unwrap();
        let pipes: Vec<_> = (0..MAX_FDS_PER_FRAME + 1)
            .map(|_| std::io::pipe().unwrap())
            .collect();
        let fds: Vec<BorrowedFd> = pipes.iter().map(|(_, w)| w.as_fd()).collect();
        send_with_fds(a.as_fd(), b"x", &fds).unwrap();
        let mut buf = [0u8; 4];
        let mut got = Vec::new();
        assert!(matches!(
            recv_with_fds(b.as_fd(), &mut buf, &mut got),
            Err(ProtocolError::TooManyFds)
        ));
        assert!(got.is_empty());
    }
}
