//! A subscriber's connection: TCP, UNIX, or TLS over TCP, behind one readiness-based interface
//! (`poll_read_ready`, then `try_read` until `WouldBlock`; `poll_write_ready`, then
//! `try_write_vectored`), which `subscriber` drives for live subscribers and for those being let
//! go (`Parting`).

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use tokio::net::{TcpStream, UnixStream};

use crate::console::tls::stream::TlsStream;

/// Bytes read from a peer at once.
pub(super) const READ_CHUNK: usize = 4096;

/// The connection: TCP, UNIX, or TLS over TCP.
pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// Its session lives in this process: a re-exec cannot carry it (`tls::accept`).
    Tls(Box<TlsStream>),
}

impl Socket {
    pub(super) fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Socket::Tcp(s) => s.poll_read_ready(cx),
            Socket::Unix(s) => s.poll_read_ready(cx),
            Socket::Tls(s) => s.poll_read_ready(cx),
        }
    }

    pub(super) fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Socket::Tcp(s) => s.poll_write_ready(cx),
            Socket::Unix(s) => s.poll_write_ready(cx),
            Socket::Tls(s) => s.poll_write_ready(cx),
        }
    }

    pub(super) fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.try_read(buf),
            Socket::Unix(s) => s.try_read(buf),
            Socket::Tls(s) => s.try_read(buf),
        }
    }

    pub(super) fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.try_write_vectored(bufs),
            Socket::Unix(s) => s.try_write_vectored(bufs),
            Socket::Tls(s) => s.try_write_vectored(bufs),
        }
    }

    /// `Ready` once what was written has left for the socket: at once for TCP and UNIX; for
    /// TLS once rustls holds no encrypted bytes the socket did not take.
    pub(super) fn poll_sent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Socket::Tcp(_) | Socket::Unix(_) => Poll::Ready(Ok(())),
            Socket::Tls(s) => s.poll_send_held(cx),
        }
    }

    /// Writes what fits now, without waiting (notices to a peer about to be dropped).
    pub(crate) fn try_write_now(&mut self, data: &[u8]) {
        let _ = match self {
            Socket::Tcp(s) => s.try_write(data),
            Socket::Unix(s) => s.try_write(data),
            Socket::Tls(s) => {
                s.write_now(data);
                Ok(0)
            }
        };
    }

    /// Tells the peer that nothing more comes (after its last line): it reads that line, then
    /// EOF (TLS: close_notify first).
    pub(crate) fn shutdown_write(&mut self) {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
            Socket::Tls(s) => {
                s.close_notify_now();
                s.tcp().as_raw_fd()
            }
        };
        let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Write);
    }

    /// Reads and discards what the peer sends until it closes (`Ready`). A socket closed with
    /// unread input resets the connection, and the peer may then lose the last line it was
    /// sent: a refused peer is drained until it leaves. (TLS: its records are discarded
    /// undecrypted.)
    pub(crate) fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            let ready = match self {
                Socket::Tcp(s) => s.poll_read_ready(cx),
                Socket::Unix(s) => s.poll_read_ready(cx),
                Socket::Tls(s) => s.tcp().poll_read_ready(cx),
            };
            match ready {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {}
            }
            let read = match self {
                Socket::Tcp(s) => s.try_read(&mut buf),
                Socket::Unix(s) => s.try_read(&mut buf),
                Socket::Tls(s) => s.tcp().try_read(&mut buf),
            };
            match read {
                Ok(0) => return Poll::Ready(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Poll::Ready(()),
            }
        }
    }
}
