//! The optional Prometheus endpoint (`metrics_listen`, off by default).
//!
//! Each scrape takes a fresh snapshot from the actors (the same as `logdctl ps`) and encodes it
//! ([`families`], in the text format of [`text`]), so the metrics always match `ps --json`,
//! their label sets are exactly the live streams, and a removed domain's metrics are gone at
//! the next scrape. Nothing is kept between scrapes.
//!
//! The HTTP side is the least that Prometheus needs: `GET /metrics` over HTTP/1.x, one request
//! per connection, bounded in size and time.
//!
//! The metrics name every domain and log path. On TCP (`ADDR:PORT`) any local user can read
//! them; `unix:PATH` serves them on a UNIX socket instead, mode 0600 in a checked directory
//! (`sockdir`), and only root and logd's own uid are answered (`SO_PEERCRED`), as on the main
//! socket.

pub mod families;
pub mod text;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::control::registry::{self, Registry};

/// Scrapes served at once; more wait for the TCP backlog.
const MAX_SCRAPERS: usize = 8;
/// Longest request head read.
const MAX_REQUEST: usize = 8192;
/// Time for a scraper to send its request and take the answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {source}")]
pub struct MetricsError {
    pub addr: String,
    pub source: std::io::Error,
}

/// The endpoint's listening socket: TCP, or a UNIX socket (`unix:PATH`).
pub enum MetricsListener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

impl AsFd for MetricsListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            MetricsListener::Tcp(l) => l.as_fd(),
            MetricsListener::Unix { listener, .. } => listener.as_fd(),
        }
    }
}

impl MetricsListener {
    /// Adopts a listener carried over a re-exec, TCP or UNIX by its address family.
    pub fn carried(fd: OwnedFd) -> std::io::Result<MetricsListener> {
        use nix::sys::socket::{getsockname, AddressFamily, SockaddrLike, SockaddrStorage};
        let addr: SockaddrStorage = getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd))?;
        if addr.family() == Some(AddressFamily::Unix) {
            let listener = crate::handover::state::sockets::unix_listener(fd)?;
            let path = listener
                .local_addr()?
                .as_pathname()
                .map(PathBuf::from)
                .unwrap_or_default();
            Ok(MetricsListener::Unix { listener, path })
        } else {
            crate::handover::state::sockets::tcp_listener(fd).map(MetricsListener::Tcp)
        }
    }

    /// The address, for logs.
    pub fn describe(&self) -> String {
        match self {
            MetricsListener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into()),
            MetricsListener::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }

    /// Removes a UNIX socket's file (at shutdown; a re-exec keeps it).
    pub fn remove_socket_file(&self) {
        if let MetricsListener::Unix { path, .. } = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds the endpoint (before the daemon says it is ready, so a bad address stops start-up):
/// `ADDR:PORT`, or `unix:PATH` (absolute) for a UNIX socket, mode 0600, whose directory is
/// checked as the main socket's is (`sockdir`).
pub fn bind(addr: &str) -> Result<MetricsListener, MetricsError> {
    let err = |source| MetricsError {
        addr: addr.to_owned(),
        source,
    };
    if let Some(path) = addr.strip_prefix("unix:") {
        let path = std::path::Path::new(path);
        if !path.is_absolute() || path.file_name().is_none() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the socket path must be absolute (unix:/run/logd/metrics.sock)",
            )));
        }
        let io = |e: crate::host::sockdir::SockDirError| err(std::io::Error::other(e.to_string()));
        if let Some(dir) = path.parent() {
            crate::host::sockdir::ensure(dir, crate::host::sockdir::Rule::for_socket(path))
                .map_err(io)?;
        }
        let l = crate::host::sockdir::bind(path).map_err(io)?;
        l.set_nonblocking(true).map_err(err)?;
        return Ok(MetricsListener::Unix {
            listener: UnixListener::from_std(l).map_err(err)?,
            path: path.to_owned(),
        });
    }
    let l = std::net::TcpListener::bind(addr).map_err(err)?;
    l.set_nonblocking(true).map_err(err)?;
    TcpListener::from_std(l)
        .map(MetricsListener::Tcp)
        .map_err(err)
}

/// Serves scrapes until `stop`; then hands the listener back (a re-exec carries it).
pub async fn serve(
    listener: MetricsListener,
    registry: Addr<Registry>,
    stop: CancellationToken,
) -> MetricsListener {
    let limit = Arc::new(Semaphore::new(MAX_SCRAPERS));
    let daemon_uid = nix::unistd::geteuid().as_raw();
    loop {
        let accepted = tokio::select! {
            r = accept(&listener, daemon_uid) => r,
            _ = stop.cancelled() => return listener,
        };
        let (sock, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(cause = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // With every slot taken, waiting for one must not hold up a stop or a re-exec (the
        // scrapers have up to TIMEOUT each): the waiting scraper is closed then.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p,
            _ = stop.cancelled() => return listener,
        };
        let Ok(permit) = permit else {
            return listener;
        };
        let registry = registry.clone();
        actix_rt::spawn(async move {
            let _permit = permit;
            let served = match sock {
                Scraper::Tcp(s) => tokio::time::timeout(TIMEOUT, scrape(s, registry)).await,
                Scraper::Unix(s) => tokio::time::timeout(TIMEOUT, scrape(s, registry)).await,
                Scraper::Refused(mut s) => {
                    tracing::warn!(%peer, "refused a metrics scraper with another uid");
                    let _ = s
                        .write_all(b"HTTP/1.0 403 Forbidden\r\nConnection: close\r\n\r\n")
                        .await;
                    Ok(())
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, cause = %e, "metrics scrape timed out");
            }
        });
    }
}

/// An accepted scraper.
enum Scraper {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
    /// A UNIX peer that is neither root nor logd's uid.
    Refused(tokio::net::UnixStream),
}

async fn accept(l: &MetricsListener, daemon_uid: u32) -> std::io::Result<(Scraper, String)> {
    match l {
        MetricsListener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            Ok((Scraper::Tcp(s), peer.to_string()))
        }
        MetricsListener::Unix { listener, .. } => {
            let (s, _) = listener.accept().await?;
            let uid = s.peer_cred().ok().map(|c| c.uid());
            let peer = format!("uid {}", uid.map_or("?".into(), |u| u.to_string()));
            if uid == Some(0) || uid == Some(daemon_uid) {
                Ok((Scraper::Unix(s), peer))
            } else {
                Ok((Scraper::Refused(s), peer))
            }
        }
    }
}

async fn scrape<S: AsyncRead + AsyncWrite + Unpin>(mut sock: S, registry: Addr<Registry>) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_REQUEST {
            let _ = sock
                .write_all(b"HTTP/1.0 431 Request Header Fields Too Large\r\n\r\n")
                .await;
            return;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body, ctype) = if method != "GET" {
        (
            "405 Method Not Allowed",
            "only GET\n".to_owned(),
            "text/plain",
        )
    } else if path != "/metrics" && !path.starts_with("/metrics?") {
        ("404 Not Found", "try /metrics\n".to_owned(), "text/plain")
    } else {
        match registry::call(&registry, registry::Snapshot { only: None }).await {
            Ok(snap) => (
                "200 OK",
                families::encode(
                    &snap,
                    &crate::host::process::usage(),
                    crate::control::domain::running() as u64,
                ),
                text::CONTENT_TYPE,
            ),
            Err(_) => (
                "503 Service Unavailable",
                "shutting down\n".to_owned(),
                "text/plain",
            ),
        }
    };
    let reply = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(reply.as_bytes()).await;
    let _ = sock.shutdown().await;
}
