//! One TLS connection after its handshake: rustls's sans-IO `ServerConnection` over a tokio
//! `TcpStream`, driven by readiness as the console drives a plain socket (`poll_read_ready`,
//! then `try_read` until `WouldBlock`), so a TLS subscriber goes through the same queue and the
//! same slow-subscriber rules as a TCP one.
//!
//! Output: plaintext is taken only when rustls has sent everything it held before (TLS bytes
//! that the socket did not take wait in rustls, at most one write's worth), so a subscriber
//! that does not read fills its queue, as on TCP, and is cut off the same way.

use std::io::{self, IoSlice, Read, Write};
use std::task::{Context, Poll};

use rustls::ServerConnection;
use tokio::net::TcpStream;

/// The most plaintext taken from the queue at once: what rustls may hold, encrypted and not yet
/// sent, when the socket is full.
const MAX_PLAINTEXT: usize = 16 * 1024;

/// `Read` and `Write` on a `TcpStream` that never wait: `WouldBlock` clears tokio's readiness,
/// so the next `poll_*_ready` registers the task.
pub(super) struct TryIo<'a>(pub(super) &'a TcpStream);

impl Read for TryIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for TryIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TLS connection whose handshake is done.
pub(crate) struct TlsStream {
    tcp: TcpStream,
    conn: ServerConnection,
    /// Plaintext rustls has decrypted and nobody has read yet.
    plaintext: usize,
    /// The peer closed (close_notify or EOF): a read returns at once.
    closed: bool,
    /// close_notify was queued.
    notified: bool,
}

impl Drop for TlsStream {
    /// A TLS connection ends with close_notify, whoever ends it (a kick, a console removed, a
    /// stop), so the peer can tell the end from a cut: best effort, without waiting.
    fn drop(&mut self) {
        self.close_notify_now();
    }
}

/// A TLS error as an I/O error (the connection is then done with).
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream {
    /// The connection once `conn` finished its handshake over `tcp`.
    pub(crate) fn new(tcp: TcpStream, mut conn: ServerConnection) -> io::Result<TlsStream> {
        // What came with the handshake's last flight is already decrypted.
        let st = conn.process_new_packets().map_err(tls_error)?;
        Ok(TlsStream {
            plaintext: st.plaintext_bytes_to_read(),
            closed: st.peer_has_closed(),
            tcp,
            conn,
            notified: false,
        })
    }

    /// Encrypted bytes rustls holds that the socket has not taken.
    #[cfg(test)]
    pub(super) fn held(&mut self) -> usize {
        self.conn
            .process_new_packets()
            .map_or(0, |st| st.tls_bytes_to_write())
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub(crate) fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.plaintext > 0 || self.closed {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_read_ready(cx)
    }

    pub(crate) fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_write_ready(cx)
    }

    /// Plaintext the peer sent: `Ok(0)` once it closed, `WouldBlock` when the socket has no
    /// more for now.
    pub(crate) fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => {
                    self.plaintext = self.plaintext.saturating_sub(n);
                    if n == 0 {
                        self.closed = true;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // EOF without close_notify: closed all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.closed = true;
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
            self.plaintext = 0;
            if self.closed {
                return Ok(0);
            }
            let n = self.conn.read_tls(&mut TryIo(&self.tcp))?;
            let st = match self.conn.process_new_packets() {
                Ok(st) => st,
                Err(e) => {
                    // Its alert, if the socket takes it.
                    let _ = self.conn.write_tls(&mut TryIo(&self.tcp));
                    return Err(tls_error(e));
                }
            };
            self.plaintext = st.plaintext_bytes_to_read();
            if n == 0 {
                self.closed = true;
            }
            // What rustls answers by itself (a key update), if the socket takes it.
            let _ = self.send_held();
        }
    }

    /// Sends the TLS bytes rustls holds; `WouldBlock` if the socket did not take them all.
    fn send_held(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut TryIo(&self.tcp))?;
        }
        Ok(())
    }

    /// Takes plaintext to send (at most [`MAX_PLAINTEXT`]) once everything before it has gone
    /// to the socket; returns how much it took. `WouldBlock` takes nothing.
    pub(crate) fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.send_held()?;
        let mut taken = 0;
        let mut w = self.conn.writer();
        for b in bufs {
            let want = (MAX_PLAINTEXT - taken).min(b.len());
            if want == 0 {
                break;
            }
            let n = w.write(&b[..want])?;
            taken += n;
            if n < want {
                break;
            }
        }
        // Taken either way: what the socket does not take now waits for `poll_send_held`.
        let _ = self.send_held();
        Ok(taken)
    }

    /// `Ready` once rustls holds nothing more to send (the socket took it all).
    pub(crate) fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            match self.tcp.poll_write_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            match self.conn.write_tls(&mut TryIo(&self.tcp)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Writes `data` and what rustls held before it, as far as the socket takes them now.
    pub(crate) fn write_now(&mut self, data: &[u8]) {
        let _ = self.conn.writer().write_all(data);
        let _ = self.send_held();
    }

    /// Queues close_notify (once) and sends it with what rustls held, as far as the socket takes
    /// them now.
    pub(crate) fn close_notify_now(&mut self) {
        if !self.notified {
            self.notified = true;
            self.conn.send_close_notify();
        }
        let _ = self.send_held();
    }
}
