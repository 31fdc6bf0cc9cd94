//! The console's TLS listener: accepting, handshakes, and what becomes of a peer once its
//! handshake is done.
//!
//! A peer's handshake runs beside the console's other work, driven from its poll: at most
//! [`HANDSHAKE_TIME`] each, and never more at once than the console has room for subscribers
//! (`max_subscribers`, counting those joined and those waiting for a name). A peer past that
//! bound is closed at once, counted as refused. A handshake that fails (a certificate the CA did
//! not sign, a client that speaks no TLS, a timeout) is logged at `warn` with the reason,
//! counted in the console's `refused`, and sent as a `subscriber_refused` event. A peer whose
//! handshake succeeds gets its role from its certificate ([`TlsSettings::role_of`]): it joins
//! as any subscriber, shown as its certificate's subject, or is refused with a line saying why,
//! over TLS, as a UNIX peer in no list is.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use logd_protocol::admin::EventKind;
use rustls::ServerConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

use super::stream::{TlsStream, TryIo};
use super::{Credentials, Refusal, Subject, TlsConfig};
use crate::console::subscriber::Socket;
use crate::console::{notice, Console, ConsoleError};
use crate::serve::events;

/// How long a peer has to finish its handshake.
pub(crate) const HANDSHAKE_TIME: Duration = Duration::from_secs(10);

/// The listener and the handshakes in progress.
pub(crate) struct TlsListener {
    pub(crate) listener: TcpListener,
    handshakes: Vec<Handshake>,
}

impl TlsListener {
    /// Binds the console's TLS address, or takes `kept` (a re-exec's listener) instead.
    pub(crate) fn open(
        tls: &TlsConfig,
        kept: Option<TcpListener>,
    ) -> Result<TlsListener, ConsoleError> {
        if tls.creds.is_none() {
            return Err(ConsoleError::TlsCredentials {
                dir: tls.settings.dir.clone(),
            });
        }
        let listener = match kept {
            Some(l) => l,
            None => std::net::TcpListener::bind(tls.settings.addr.as_str())
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(TcpListener::from_std)
                .map_err(|source| ConsoleError::TlsListen {
                    addr: tls.settings.addr.clone(),
                    source,
                })?,
        };
        Ok(TlsListener {
            listener,
            handshakes: Vec::new(),
        })
    }

    /// The address it listens on (a port 0 bound).
    fn local_addr(&self) -> Option<String> {
        self.listener.local_addr().ok().map(|a| a.to_string())
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum HandshakeError {
    #[error("no TLS handshake within {} s", HANDSHAKE_TIME.as_secs())]
    Timeout,
    #[error("the peer closed the connection during the TLS handshake")]
    Closed,
    #[error("TLS handshake failed: {0}")]
    Tls(rustls::Error),
    #[error("I/O error during the TLS handshake: {0}")]
    Io(io::Error),
}

/// One peer's handshake.
pub(super) struct Handshake {
    pub(super) tcp: TcpStream,
    pub(super) conn: ServerConnection,
    addr: SocketAddr,
    deadline: Pin<Box<Sleep>>,
}

impl Handshake {
    /// A handshake with a peer just accepted, due within [`HANDSHAKE_TIME`].
    pub(super) fn new(
        tcp: TcpStream,
        addr: SocketAddr,
        server: std::sync::Arc<rustls::ServerConfig>,
    ) -> Result<Handshake, rustls::Error> {
        Ok(Handshake {
            conn: ServerConnection::new(server)?,
            tcp,
            addr,
            deadline: Box::pin(tokio::time::sleep(HANDSHAKE_TIME)),
        })
    }

    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), HandshakeError>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(HandshakeError::Timeout));
        }
        loop {
            while self.conn.wants_write() {
                match self.tcp.poll_write_ready(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(HandshakeError::Io(e))),
                    Poll::Ready(Ok(())) => {}
                }
                match self.conn.write_tls(&mut TryIo(&self.tcp)) {
                    Ok(_) => {}
                    Err(e) if retry(&e) => {}
                    Err(e) => return Poll::Ready(Err(HandshakeError::Io(e))),
                }
            }
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            match self.tcp.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(HandshakeError::Io(e))),
                Poll::Ready(Ok(())) => {}
            }
            match self.conn.read_tls(&mut TryIo(&self.tcp)) {
                Ok(0) => return Poll::Ready(Err(HandshakeError::Closed)),
                Ok(_) => {
                    if let Err(e) = self.conn.process_new_packets() {
                        // Its alert tells the peer why, if the socket takes it.
                        let _ = self.conn.write_tls(&mut TryIo(&self.tcp));
                        return Poll::Ready(Err(HandshakeError::Tls(e)));
                    }
                }
                Err(e) if retry(&e) => {}
                Err(e) => return Poll::Ready(Err(HandshakeError::Io(e))),
            }
        }
    }
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl Console {
    /// The TLS address subscribers connect to, as bound.
    pub(crate) fn tls_addr(&self) -> Option<String> {
        self.tls.as_ref().and_then(TlsListener::local_addr)
    }

    /// Accepts TLS peers and moves their handshakes on; those done join or are refused.
    pub(crate) fn poll_tls(&mut self, cx: &mut Context<'_>) {
        let waiting = self.subs.len() + self.joining.len();
        let max = self.cfg.max_subscribers;
        let Some(server) = self
            .cfg
            .tls
            .as_ref()
            .and_then(|t| t.creds.as_ref())
            .map(|c| c.server.clone())
        else {
            return;
        };
        let Some(t) = self.tls.as_mut() else { return };
        let mut dropped = Vec::new();
        loop {
            match t.listener.poll_accept(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(e)) => {
                    tracing::warn!(cause = %e, "accepting a TLS subscriber failed");
                    break;
                }
                Poll::Ready(Ok((tcp, addr))) => {
                    if waiting + t.handshakes.len() >= max {
                        // No room to say why in TLS before a handshake: closed at once.
                        dropped.push(addr);
                        continue;
                    }
                    match Handshake::new(tcp, addr, server.clone()) {
                        Ok(h) => t.handshakes.push(h),
                        Err(e) => {
                            tracing::warn!(peer = %addr, cause = %e, "cannot start a TLS session")
                        }
                    }
                }
            }
        }
        let mut done = Vec::new();
        let mut i = 0;
        while i < t.handshakes.len() {
            match t.handshakes[i].poll(cx) {
                Poll::Pending => i += 1,
                Poll::Ready(r) => done.push((t.handshakes.remove(i), r)),
            }
        }
        for addr in dropped {
            self.stats.refused += 1;
            tracing::warn!(peer = %addr, max_subscribers = max, "refused a TLS subscriber: the console is full, with its handshakes in progress; closed");
            self.refused_event(addr.to_string(), "full");
        }
        for (h, r) in done {
            match r {
                Ok(()) => self.tls_done(h, cx),
                Err(e) => {
                    self.stats.refused += 1;
                    tracing::warn!(peer = %h.addr, cause = %e, "refused a TLS subscriber: its handshake failed");
                    self.refused_event(h.addr.to_string(), "tls handshake failed");
                }
            }
        }
    }

    fn refused_event(&self, peer: String, reason: &str) {
        events::emit(|| EventKind::SubscriberRefused {
            domain: self.cfg.domain.name.clone(),
            console: self.cfg.name.clone(),
            peer,
            reason: reason.into(),
        });
    }

    /// A peer whose handshake is done: it joins with the role its certificate gives, or is
    /// told why not.
    fn tls_done(&mut self, h: Handshake, cx: &mut Context<'_>) {
        let Some(tls) = &self.cfg.tls else { return };
        let addr = h.addr;
        let subject = h
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(Subject::of);
        let stream = match TlsStream::new(h.tcp, h.conn) {
            Ok(s) => s,
            Err(e) => {
                self.stats.refused += 1;
                tracing::warn!(peer = %addr, cause = %e, "refused a TLS subscriber: its first data is not TLS");
                self.refused_event(addr.to_string(), "tls handshake failed");
                return;
            }
        };
        let sock = Socket::Tls(Box::new(stream));
        let subject = match subject.transpose() {
            Ok(s) => s,
            Err(e) => {
                self.stats.refused += 1;
                tracing::warn!(peer = %addr, cause = %e, "refused a TLS subscriber: its certificate");
                self.refused_event(addr.to_string(), "bad certificate");
                let line = format!(
                    "[logd: refused: {e}; console {} cannot tell who you are]\r\n",
                    self.cfg.name
                );
                self.turn_away(sock, &line, cx);
                return;
            }
        };
        let identity = match &subject {
            Some(s) => s.text.clone(),
            None => format!("anonymous@{addr}"),
        };
        match tls.settings.role_of(subject.as_ref()) {
            Ok(role) => {
                tracing::info!(peer = %identity, %addr, %role, "TLS handshake done");
                self.join(sock, identity, role, None, cx);
            }
            Err(why) => {
                self.stats.refused += 1;
                let (reason, log, line) = match why {
                    Refusal::NoCertificate => (
                        "no certificate",
                        "refused a TLS subscriber: no client certificate, and tls_anonymous is refuse",
                        format!(
                            "[logd: refused: console {} needs a client certificate signed by its CA \
                             (tls_anonymous = refuse)]\r\n",
                            self.cfg.name
                        ),
                    ),
                    Refusal::NotListed => (
                        "not allowed",
                        "refused a TLS subscriber: its certificate's subject is in neither tls_read_write nor tls_read_only",
                        format!(
                            "[logd: refused: certificate {identity} may not use console {}: its \
                             subject is in neither tls_read_write nor tls_read_only]\r\n",
                            self.cfg.name
                        ),
                    ),
                };
                tracing::warn!(peer = %identity, %addr, "{log}");
                self.refused_event(identity, reason);
                self.turn_away(sock, &line, cx);
            }
        }
    }

    /// What a re-exec carries of its TLS: the settings, the credentials as read, the listener
    /// (marked to be carried).
    pub(crate) fn tls_ext(
        &self,
        carrier: &mut crate::handover::state::Carrier,
    ) -> Option<crate::handover::state::ConsoleExt> {
        let (Some(t), Some(cfg)) = (&self.tls, &self.cfg.tls) else {
            return None;
        };
        let creds = cfg.creds.as_ref()?;
        Some(crate::handover::state::ConsoleExt::Tls {
            settings: cfg.settings.clone(),
            pems: creds.pems.clone(),
            listener: carrier.fd(&t.listener),
        })
    }

    /// The TLS listener a previous process carried, if any, with its settings. The credentials
    /// are read again from their directory (a re-exec picks renewed certificates up); if that
    /// fails, the carried ones serve, with a warning. It reads files: it runs while the
    /// take-over rebuilds the console, before the console serves anyone.
    pub(crate) fn restore_tls(
        st: &crate::handover::state::ConsoleState,
        inherited: &crate::handover::state::Inherited,
    ) -> Result<Option<(TlsConfig, TlsListener)>, crate::datapath::stream::RestoreError> {
        use crate::datapath::stream::RestoreError;
        use crate::handover::state::ConsoleExt;
        // Other extensions will come (variants are appended): look for this one.
        #[allow(clippy::unnecessary_find_map)]
        let Some((settings, pems, listener)) = st.ext.iter().find_map(|e| match e {
            ConsoleExt::Tls {
                settings,
                pems,
                listener,
            } => Some((settings, pems, listener)),
        }) else {
            return Ok(None);
        };
        let listener = crate::handover::state::sockets::tcp_listener(inherited.take(listener)?)
            .map_err(|source| RestoreError::Register {
                what: format!("console {} (TLS listener)", st.name),
                source,
            })?;
        let creds = match Credentials::load(&settings.dir) {
            Ok(c) => {
                if c.pems != *pems {
                    tracing::info!(console = %st.name, dir = %settings.dir.display(), "TLS credentials changed on disk: the new ones serve from now on");
                }
                c
            }
            Err(e) => {
                tracing::warn!(console = %st.name, cause = %e, "cannot read the TLS credentials again; the ones read before the re-exec serve");
                Credentials::from_pems(&settings.dir, pems.clone()).map_err(|e| {
                    RestoreError::Register {
                        what: format!("console {} (TLS credentials)", st.name),
                        source: io::Error::other(e.to_string()),
                    }
                })?
            }
        };
        let cfg = TlsConfig {
            settings: settings.clone(),
            creds: Some(creds),
        };
        let l = TlsListener {
            listener,
            handshakes: Vec::new(),
        };
        Ok(Some((cfg, l)))
    }

    /// Before a re-exec: a TLS subscriber's session lives in this process and cannot be
    /// carried, so each is told to reconnect and closed, and handshakes in progress are
    /// dropped. The write lock passes on if a TLS subscriber held it (the notices are queued,
    /// and carried with the queues).
    pub(crate) fn part_tls(&mut self) {
        let Some(t) = self.tls.as_mut() else { return };
        t.handshakes.clear();
        let holder = self.holder().map(|h| self.subs[h].id);
        let mut i = 0;
        while i < self.subs.len() {
            if !self.subs[i].is_tls() {
                i += 1;
                continue;
            }
            let mut s = self.subs.remove(i);
            s.say_goodbye("logd is re-executing; reconnect");
            s.close_now();
            tracing::info!(subscriber = s.id, peer = %s.peer, "TLS subscriber told to reconnect: its session cannot be carried across a re-exec");
            events::emit(|| EventKind::SubscriberLeft {
                domain: self.cfg.domain.name.clone(),
                console: self.cfg.name.clone(),
                id: s.id,
                reason: "reexec".into(),
            });
        }
        let now = self.holder();
        if self.cfg.write == logd_protocol::WritePolicy::Exclusive
            && now.map(|h| self.subs[h].id) != holder
            && holder.is_some()
        {
            let who = now.map(|h| notice::who(&self.subs[h].peer, self.subs[h].id));
            let moved = notice::lock_moved(who.as_deref());
            for (j, s) in self.subs.iter_mut().enumerate() {
                if Some(j) == now {
                    s.notice("you now hold the write lock");
                    s.told_read_only = false;
                } else {
                    s.notice(&moved);
                }
            }
        }
    }
}
