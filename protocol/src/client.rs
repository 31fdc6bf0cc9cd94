//! A blocking client: connect, handshake, then one request and one response at a time.
//!
//! `logdctl` is built on it, and so can be any program that wants a log pipe from logd without
//! an async runtime.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::BytesMut;

use crate::admin::{
    AdminRequest, AdminResponse, DaemonSnapshot, DomainSnapshot, Event, ReexecReport,
};
use crate::codec::{self, ProtocolError, MAX_ADMIN_FRAME, MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME};
use crate::fdpass;
use crate::message::*;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to logd at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The socket is served by a process of a uid this client does not trust: nothing was sent.
    #[error(
        "refusing to talk to {path}: it is served by uid {uid} (pid {pid}), not by root or uid \
         {client_uid}; nothing was sent (a logd run by a dedicated user must be trusted by name, \
         e.g. logdctl --server-uid {uid})"
    )]
    UntrustedServer {
        path: PathBuf,
        uid: u32,
        pid: i32,
        client_uid: u32,
    },
    #[error("cannot check who serves {path} (SO_PEERCRED): {source}")]
    PeerCred {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("protocol error talking to logd: {0}")]
    Protocol(#[from] ProtocolError),
    /// The daemon refused the request; the message says why.
    #[error("{}", .0.message)]
    Server(WireError),
    #[error("logd closed the connection")]
    Closed,
    #[error("logd sent an unexpected answer to {request}: {got}")]
    Unexpected { request: &'static str, got: String },
}

/// What the daemon bound for a new console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleAdded {
    /// The TCP address subscribers connect to (with the real port).
    pub tcp: Option<String>,
    pub unix: Option<String>,
    /// The end of the console's log when it was added.
    pub position: Position,
}

/// One connection to logd.
pub struct Client {
    sock: UnixStream,
    buf: BytesMut,
    fds: Vec<OwnedFd>,
    welcome: Welcome,
}

impl Client {
    /// Connects to the socket at `path`, checks who serves it (see [`Client::connect_trusting`])
    /// and does the handshake.
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        Self::connect_trusting(path, None)
    }

    /// Connects to the socket at `path` and does the handshake, but first checks the server's
    /// credentials (`SO_PEERCRED`): it must run as root, as this process's uid, or as
    /// `server_uid`. Anyone who can create the socket's path (a directory in `/tmp` made by
    /// another user) could otherwise receive this client's requests, and the pipes it fills.
    pub fn connect_trusting(path: &Path, server_uid: Option<u32>) -> Result<Self, ClientError> {
        let sock = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
        check_server(&sock, path, server_uid)?;
        Self::handshake(sock)
    }

    /// Does the handshake on an already connected socket (whose peer the caller trusts).
    pub fn handshake(sock: UnixStream) -> Result<Self, ClientError> {
        let mut c = Client {
            sock,
            buf: BytesMut::with_capacity(8192),
            fds: Vec::new(),
            welcome: Welcome {
                version: 0,
                server: String::new(),
            },
        };
        // A daemon that refuses this peer (uid, client limit) answers before reading the hello
        // and closes; its answer is still readable after our write fails, and says why.
        let sent = c.send(&Hello::current());
        let answer = c.receive();
        if let (Err(e), Err(ClientError::Closed)) = (&sent, &answer) {
            return Err(ClientError::Protocol(ProtocolError::Io(
                std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    format!("the handshake failed: {e}"),
                ),
            )));
        }
        match answer? {
            Response::Welcome(w) => c.welcome = w,
            Response::Error(e) => return Err(e.into()),
            other => {
                return Err(ClientError::Unexpected {
                    request: "Hello",
                    got: format!("{other:?}"),
                })
            }
        }
        Ok(c)
    }

    /// What the daemon said in the handshake.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Bounds how long one call may wait for the daemon (None: forever).
    pub fn set_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.sock.set_read_timeout(t)?;
        self.sock.set_write_timeout(t)
    }

    /// Sends one request and waits for its response. A [`Response::Error`] becomes
    /// [`ClientError::Server`]. The fds the response carries are returned with it.
    pub fn call(&mut self, req: &Request) -> Result<(Response, Vec<OwnedFd>), ClientError> {
        self.send(req)?;
        let resp = self.receive()?;
        if let Response::Error(e) = resp {
            return Err(e.into());
        }
        let n = resp.fd_count();
        if self.fds.len() != n {
            let got = self.fds.len();
            self.fds.clear();
            return Err(ProtocolError::UnexpectedFds { got, expected: n }.into());
        }
        Ok((resp, std::mem::take(&mut self.fds)))
    }

    /// Opens a log; returns the position at open time and the write end of its pipe.
    pub fn open_log(
        &mut self,
        domain: DomainId,
        path: &str,
        flags: OpenFlags,
    ) -> Result<(Position, OwnedFd), ClientError> {
        let req = Request::OpenLog {
            domain,
            path: path.to_owned(),
            flags,
        };
        match self.call(&req)? {
            (Response::LogOpened { position }, mut fds) => Ok((position, fds.remove(0))),
            (other, _) => Err(unexpected(&req, other)),
        }
    }

    /// The position of the end of a log, including every byte already written into its pipe.
    pub fn position(&mut self, path: &str) -> Result<Position, ClientError> {
        let req = Request::GetPosition {
            path: path.to_owned(),
        };
        match self.call(&req)? {
            (Response::Position(p), _) => Ok(p),
            (other, _) => Err(unexpected(&req, other)),
        }
    }

    /// Reads up to `max_len` bytes of a log; returns the data, the next position and the gap flag.
    pub fn read_log(
        &mut self,
        path: &str,
        from: ReadFrom,
        max_len: u64,
    ) -> Result<(Vec<u8>, Position, bool), ClientError> {
        let req = Request::ReadLog {
            path: path.to_owned(),
            from,
            max_len,
        };
        match self.call(&req)? {
            (Response::LogData { data, next, gap }, _) => Ok((data, next, gap)),
            (other, _) => Err(unexpected(&req, other)),
        }
    }

    /// Appends a message to a log; returns the end position after it.
    pub fn append_log(
        &mut self,
        domain: DomainId,
        path: &str,
        message: &[u8],
    ) -> Result<Position, ClientError> {
        let req = Request::AppendLog {
            domain,
            path: path.to_owned(),
            message: message.to_vec(),
        };
        match self.call(&req)? {
            (Response::Position(p), _) => Ok(p),
            (other, _) => Err(unexpected(&req, other)),
        }
    }

    /// Adds a console. Returns what the daemon bound, and with [`GuestSide::Fd`] the guest's end
    /// of the console's socketpair.
    pub fn add_console(
        &mut self,
        spec: ConsoleSpec,
    ) -> Result<(ConsoleAdded, Option<OwnedFd>), ClientError> {
        self.add_console_request(Request::AddConsole(spec))
    }

    /// Adds a console and has the daemon persist it, so that it is created again at its next
    /// start (see [`Request::AddConsolePersistent`]). Returns once it is written to the
    /// daemon's persisted consoles file; a daemon that cannot write it does not add the console.
    pub fn add_console_persistent(
        &mut self,
        spec: ConsoleSpec,
    ) -> Result<ConsoleAdded, ClientError> {
        let (added, _) = self.add_console_request(Request::AddConsolePersistent(spec))?;
        Ok(added)
    }

    /// Adds a console with options [`ConsoleSpec`] has no room for
    /// ([`Request::AddConsoleWith`]). Without options this is [`Client::add_console`], and with
    /// [`ConsoleOption::Persist`] alone [`Client::add_console_persistent`], so that a daemon
    /// that predates `AddConsoleWith` serves them.
    pub fn add_console_with(
        &mut self,
        spec: ConsoleSpec,
        options: Vec<ConsoleOption>,
    ) -> Result<(ConsoleAdded, Option<OwnedFd>), ClientError> {
        match options.as_slice() {
            [] => self.add_console(spec),
            [ConsoleOption::Persist] => Ok((self.add_console_persistent(spec)?, None)),
            _ => self.add_console_request(Request::AddConsoleWith { spec, options }),
        }
    }

    fn add_console_request(
        &mut self,
        req: Request,
    ) -> Result<(ConsoleAdded, Option<OwnedFd>), ClientError> {
        match self.call(&req)? {
            (
                Response::ConsoleAdded {
                    tcp,
                    unix,
                    position,
                    ..
                },
                mut fds,
            ) => Ok((
                ConsoleAdded {
                    tcp,
                    unix,
                    position,
                },
                fds.pop(),
            )),
            (other, _) => Err(unexpected(&req, other)),
        }
    }

    /// Removes a console.
    pub fn remove_console(&mut self, domain: DomainId, name: &str) -> Result<(), ClientError> {
        let req = Request::RemoveConsole {
            domain,
            name: name.to_owned(),
        };
        match self.call(&req)? {
            (Response::Done, _) => Ok(()),
            (other, _) => Err(unexpected(&req, other)),
        }
    }

    /// Lists every console.
    /// Attaches to a console ([`Request::AttachConsole`]): returns the subscriber as the daemon
    /// made it, and this end of its connection.
    pub fn attach_console(
        &mut self,
        domain: &str,
        console: &str,
        read_only: bool,
        force: bool,
    ) -> Result<(Attached, OwnedFd), ClientError> {
        let req = Request::AttachConsole {
            domain: domain.to_owned(),
            console: console.to_owned(),
            read_only,
            force,
        };
        match self.call(&req)? {
            (
                Response::Attached {
                    subscriber,
                    peer,
                    role,
                    writer,
                },
                mut fds,
            ) => Ok((
                Attached {
                    subscriber,
                    peer,
                    role,
                    writer,
                },
                fds.remove(0),
            )),
            (other, _) => Err(unexpected(&req, other)),
        }
    }

    /// A command about an attached subscriber ([`Request::ConsoleCommand`]).
    pub fn console_command(
        &mut self,
        subscriber: u64,
        command: ConsoleCommand,
    ) -> Result<ConsoleReply, ClientError> {
        let req = Request::ConsoleCommand {
            subscriber,
            command,
        };
        match self.call(&req)? {
            (Response::ConsoleReply(r), _) => Ok(r),
            (other, _) => Err(unexpected(&req, other)),
        }
    }

    pub fn list_consoles(&mut self) -> Result<Vec<ConsoleInfo>, ClientError> {
        let req = Request::ListConsoles;
        match self.call(&req)? {
            (Response::Consoles(c), _) => Ok(c),
            (other, _) => Err(unexpected(&req, other)),
        }
    }

    fn send<T: serde::Serialize>(&mut self, msg: &T) -> Result<(), ClientError> {
        use std::io::Write;
        let frame = codec::encode_frame(msg, MAX_REQUEST_FRAME)?;
        self.sock
            .write_all(&frame)
            .map_err(|e| ClientError::Protocol(e.into()))
    }

    fn receive(&mut self) -> Result<Response, ClientError> {
        self.receive_as(MAX_RESPONSE_FRAME)
    }

    fn receive_as<T: serde::de::DeserializeOwned>(&mut self, max: usize) -> Result<T, ClientError> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some(resp) = codec::decode_frame(&mut self.buf, max)? {
                return Ok(resp);
            }
            let n = fdpass::recv_with_fds(self.sock.as_fd(), &mut chunk, &mut self.fds)?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Err(ClientError::Closed)
                } else {
                    Err(ProtocolError::Truncated(self.buf.len()).into())
                };
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A connection to logd's admin socket.
pub struct AdminClient {
    inner: Client,
}

impl AdminClient {
    /// Connects to the admin socket at `path`, checks who serves it and does the handshake (see
    /// [`Client::connect_trusting`]).
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        Self::connect_trusting(path, None)
    }

    /// As [`AdminClient::connect`], also trusting a daemon run by `server_uid`.
    pub fn connect_trusting(path: &Path, server_uid: Option<u32>) -> Result<Self, ClientError> {
        Ok(AdminClient {
            inner: Client::connect_trusting(path, server_uid)?,
        })
    }

    /// Sends one admin request and waits for its answer; an error answer becomes
    /// [`ClientError::Server`].
    pub fn call(&mut self, req: &AdminRequest) -> Result<AdminResponse, ClientError> {
        self.inner.send(req)?;
        match self.inner.receive_as::<AdminResponse>(MAX_ADMIN_FRAME)? {
            AdminResponse::Error(e) => Err(e.into()),
            r => Ok(r),
        }
    }

    /// Every live actor. Asked in this version's layout; a daemon that predates it (it answers
    /// `Malformed`) is asked again the old way, and its answer converted ([`crate::admin::v1`]).
    pub fn snapshot(&mut self) -> Result<DaemonSnapshot, ClientError> {
        match self.call(&AdminRequest::SnapshotV2) {
            Ok(AdminResponse::SnapshotV2(s)) => return Ok(s),
            Err(e) if !is_malformed(&e) => return Err(e),
            Ok(other) => {
                return Err(ClientError::Unexpected {
                    request: "SnapshotV2",
                    got: format!("{other:?}"),
                })
            }
            Err(_) => {}
        }
        match self.call(&AdminRequest::Snapshot)? {
            AdminResponse::Snapshot(s) => Ok(s.into()),
            other => Err(ClientError::Unexpected {
                request: "Snapshot",
                got: format!("{other:?}"),
            }),
        }
    }

    /// Re-execs the daemon (into `binary` if given) and waits for the outcome: the report of
    /// the new process, or the error the old one went on after.
    pub fn reexec(&mut self, binary: Option<String>) -> Result<ReexecReport, ClientError> {
        match self.call(&AdminRequest::Reexec { binary })? {
            AdminResponse::Reexeced(r) => Ok(r),
            other => Err(ClientError::Unexpected {
                request: "Reexec",
                got: format!("{other:?}"),
            }),
        }
    }

    /// Disconnects a console subscriber.
    pub fn kick(&mut self, subscriber: u64) -> Result<(), ClientError> {
        self.call(&AdminRequest::Kick { subscriber }).map(|_| ())
    }

    /// Gives a console's write lock to a subscriber.
    pub fn grant(&mut self, subscriber: u64) -> Result<(), ClientError> {
        self.call(&AdminRequest::Grant { subscriber }).map(|_| ())
    }

    /// Starts the event stream: this connection then only carries events. Call
    /// [`AdminClient::next_event`] for each.
    pub fn subscribe_events(&mut self) -> Result<(), ClientError> {
        self.inner.send(&AdminRequest::Events)
    }

    /// The next event of the stream (blocks until one comes).
    pub fn next_event(&mut self) -> Result<Event, ClientError> {
        match self.inner.receive_as::<AdminResponse>(MAX_ADMIN_FRAME)? {
            AdminResponse::Event(e) => Ok(e),
            AdminResponse::Error(e) => Err(e.into()),
            other => Err(ClientError::Unexpected {
                request: "Events",
                got: format!("{other:?}"),
            }),
        }
    }

    /// Changes the daemon's tracing filter.
    pub fn set_log_level(&mut self, filter: &str) -> Result<(), ClientError> {
        self.call(&AdminRequest::SetLogLevel {
            filter: filter.to_owned(),
        })
        .map(|_| ())
    }

    /// One domain, by name; from an older daemon as [`AdminClient::snapshot`] does.
    pub fn domain(&mut self, name: &str) -> Result<DomainSnapshot, ClientError> {
        let req = AdminRequest::DomainSnapshotV2 {
            name: name.to_owned(),
        };
        match self.call(&req) {
            Ok(AdminResponse::DomainV2(d)) => return Ok(d),
            Err(e) if !is_malformed(&e) => return Err(e),
            Ok(other) => {
                return Err(ClientError::Unexpected {
                    request: req.kind(),
                    got: format!("{other:?}"),
                })
            }
            Err(_) => {}
        }
        let req = AdminRequest::DomainSnapshot {
            name: name.to_owned(),
        };
        match self.call(&req)? {
            AdminResponse::Domain(d) => Ok(d.into()),
            other => Err(ClientError::Unexpected {
                request: req.kind(),
                got: format!("{other:?}"),
            }),
        }
    }
}

/// Whether the daemon could not decode the request: it predates it.
pub fn is_malformed(e: &ClientError) -> bool {
    matches!(e, ClientError::Server(w) if w.code == crate::ErrorCode::Malformed)
}

/// Checks that the peer of `sock` runs as root, as this process's uid, or as `server_uid`.
fn check_server(
    sock: &UnixStream,
    path: &Path,
    server_uid: Option<u32>,
) -> Result<(), ClientError> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let cred = getsockopt(sock, PeerCredentials).map_err(|e| ClientError::PeerCred {
        path: path.to_owned(),
        source: e.into(),
    })?;
    let client_uid = nix::unistd::geteuid().as_raw();
    let uid = cred.uid();
    if uid == 0 || uid == client_uid || Some(uid) == server_uid {
        return Ok(());
    }
    Err(ClientError::UntrustedServer {
        path: path.to_owned(),
        uid,
        pid: cred.pid(),
        client_uid,
    })
}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> Self {
        ClientError::Server(e)
    }
}

fn unexpected(req: &Request, got: Response) -> ClientError {
    ClientError::Unexpected {
        request: req.kind(),
        got: format!("{got:?}"),
    }
}

/// A subscriber made by [`Client::attach_console`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub subscriber: u64,
    /// How others see it (`UID:NAME`).
    pub peer: String,
    pub role: crate::admin::Role,
    /// It holds the write lock, or may write.
    pub writer: bool,
}
