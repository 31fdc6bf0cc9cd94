//! Request and response types, the handshake, and typed errors.
//!
//! Compatibility rule: the layout of [`Hello`] never changes, so any two versions can at least tell
//! each other that they disagree. Everything else may change with [`PROTOCOL_VERSION`].

use serde::{Deserialize, Serialize};
pub use uuid::Uuid;

/// The magic bytes at the start of the handshake: a client that is not speaking logd's protocol
/// (a stray `nc`, an HTTP probe) is told so instead of being misparsed.
pub const MAGIC: [u8; 4] = *b"LOGD";

/// The protocol version this crate speaks. Bumped on any incompatible change of a message.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest accepted domain name or driver name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest accepted log path, in bytes (PATH_MAX).
pub const MAX_PATH_LEN: usize = 4096;
/// Longest message accepted by [`Request::AppendLog`], in bytes.
pub const MAX_APPEND_LEN: usize = 64 * 1024;

/// The first frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 4],
    pub version: u32,
}

impl Hello {
    /// The hello of this crate's version.
    pub fn current() -> Self {
        Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
        }
    }
}

/// The daemon's answer to a good [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub version: u32,
    /// The daemon's own version string, for diagnostics.
    pub server: String,
}

/// A place in a rotating log: the inode of one of its files and a byte offset in it.
///
/// Inodes survive renames, so a position taken on `PATH` stays valid after `PATH` has become
/// `PATH.0`, until the file is rotated out of existence.
///
/// File systems hand a freed inode number to the next new file, so the inode alone could make an
/// old position point into a newer file. `birth` (the file's creation time in nanoseconds, from
/// statx) tells them apart; 0 means unknown, and then the inode alone decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    pub inode: u64,
    pub offset: u64,
    pub birth: u64,
}

impl Position {
    /// The full form, `INODE:OFFSET:BIRTH`, which survives inode reuse.
    pub fn exact(&self) -> String {
        format!("{}:{}:{}", self.inode, self.offset, self.birth)
    }

    /// Whether a file with this inode and birth time is the file this position points into.
    pub fn is_in(&self, inode: u64, birth: u64) -> bool {
        self.inode == inode && (self.birth == 0 || birth == 0 || self.birth == birth)
    }
}

/// The short form, `INODE:OFFSET`, as virtlogd clients know it.
impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.inode, self.offset)
    }
}

/// Parses `INODE:OFFSET` (birth unknown) or `INODE:OFFSET:BIRTH`.
impl std::str::FromStr for Position {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fields: Vec<&str> = s.split(':').collect();
        if !(2..=3).contains(&fields.len()) {
            return Err(format!("position {s:?} is not INODE:OFFSET[:BIRTH]"));
        }
        let num = |i: usize, what: &str| -> Result<u64, String> {
            fields.get(i).map_or(Ok(0), |f| {
                f.parse()
                    .map_err(|_| format!("bad {what} in position {s:?}"))
            })
        };
        Ok(Position {
            inode: num(0, "inode")?,
            offset: num(1, "offset")?,
            birth: num(2, "birth time")?,
        })
    }
}

/// Where a [`Request::ReadLog`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadFrom {
    /// The first byte still on disk (offset 0 of the oldest backup).
    Start,
    /// An exact position, as returned by `GetPosition` or a previous read.
    Position(Position),
    /// The last N bytes across all files.
    Last(u64),
}

/// Which domain a log belongs to. Domains are keyed by `(driver, uuid)`; the name is for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainId {
    pub driver: String,
    pub uuid: Uuid,
    pub name: String,
}

impl DomainId {
    /// The namespace of name-derived UUIDs (see [`DomainId::from_name`]).
    pub const NAME_NAMESPACE: Uuid = Uuid::from_u128(0x6c6f_6764_2d64_6f6d_6169_6e2d_6e61_6d65);

    /// A domain identified by name only: its UUID is derived from driver and name (UUID v5), so the
    /// same name always means the same domain.
    pub fn from_name(driver: &str, name: &str) -> Self {
        let key = format!("{driver}/{name}");
        DomainId {
            driver: driver.to_owned(),
            uuid: Uuid::new_v5(&Self::NAME_NAMESPACE, key.as_bytes()),
            name: name.to_owned(),
        }
    }
}

/// Options of [`Request::OpenLog`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFlags {
    /// Remove the log and its backups before opening.
    pub truncate: bool,
}

/// A request from a client. One request gets exactly one [`Response`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Open a log: the daemon creates a pipe, keeps its read end and returns its write end
    /// (one fd) with [`Response::LogOpened`].
    OpenLog {
        domain: DomainId,
        path: String,
        flags: OpenFlags,
    },
    /// The position of the end of the active file, after draining what is in the pipe.
    GetPosition { path: String },
    /// Read up to `max_len` (at most [`crate::MAX_READ_LEN`]) bytes across the rotated files.
    ReadLog {
        path: String,
        from: ReadFrom,
        max_len: u64,
    },
    /// Append a message to a log, open or not.
    AppendLog {
        domain: DomainId,
        path: String,
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
    },
    /// Add a console (a serial chardev of a domain) with its log and its subscriber listeners.
    /// With [`GuestSide::Fd`] the answer carries one fd: the guest's end of a socketpair.
    AddConsole(ConsoleSpec),
    /// Remove a console: its listeners and subscribers are closed, its log is kept. A console
    /// that was persisted ([`Request::AddConsolePersistent`]) leaves the persisted file first,
    /// even if it is not running.
    RemoveConsole { domain: DomainId, name: String },
    /// Every console, with its state.
    ListConsoles,
    /// [`Request::AddConsole`], and the console is also written to the daemon's persisted
    /// consoles file before the answer, so that it is created again at the next start (until a
    /// [`Request::RemoveConsole`]). Answered like `AddConsole`; a console that cannot be
    /// written there is not added (an `Io` error naming the file). [`GuestSide::Fd`] is
    /// refused: nobody would be there to take the guest's end at the next start.
    ///
    /// A variant of its own (appended, so the others keep their encoding), rather than a flag
    /// on `AddConsole`: a daemon that predates it answers `Malformed` instead of adding a
    /// console that it would forget.
    AddConsolePersistent(ConsoleSpec),
    /// [`Request::AddConsole`] with options that [`ConsoleSpec`] has no room for (it is encoded
    /// by position and never changes). Answered like `AddConsole` (`AddConsolePersistent` with
    /// [`ConsoleOption::Persist`]).
    ///
    /// The options are a list of an enum, so that a later option is a new variant: a daemon
    /// that does not know it cannot decode the request and answers `Malformed`, rather than
    /// add a console without it. Each option may appear once.
    AddConsoleWith {
        spec: ConsoleSpec,
        options: Vec<ConsoleOption>,
    },
    /// Attach to a console as a subscriber (`logdctl attach`). The daemon makes a socketpair,
    /// joins its end to the console with the role the caller's credentials (`SO_PEERCRED` of
    /// this connection) give, and answers [`Response::Attached`] with the other end: the
    /// console's output comes out of it, and what is written into it is typed into the guest
    /// (raw bytes, no telnet) if the subscriber may write. Served on the console socket, which
    /// any local user may reach, and on the main socket.
    AttachConsole {
        /// The domain's name.
        domain: String,
        /// The console's name.
        console: String,
        /// Watch only, even if the caller's role would let it type (a spy).
        read_only: bool,
        /// Take the write lock from whoever holds it (the caller's role must be read-write).
        force: bool,
    },
    /// A command from an attached subscriber's escape menu, about that subscriber: allowed to
    /// the uid that attached it (and to root). Answered with [`Response::ConsoleReply`].
    ConsoleCommand {
        subscriber: u64,
        command: ConsoleCommand,
    },
}

/// What an attached subscriber may ask of its console ([`Request::ConsoleCommand`]). Variants
/// are only ever appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsoleCommand {
    /// Who is attached, and who holds the write lock.
    Who,
    /// Ask for the write lock (and become a writer again after `Spy`): granted if nobody else
    /// holds it, else the subscriber waits in line. With `force`, taken from the holder (who is
    /// told by whom).
    Lock { force: bool },
    /// Become read-only (a spy): the write lock, if held, passes on.
    Spy,
    /// The last `lines` lines of the console's recent output (its replay ring).
    Replay { lines: u32 },
    /// Send a serial BREAK to the guest.
    Break,
    /// Send a magic SysRq (a BREAK, then this key) to the guest.
    SysRq(u8),
}

/// An option of [`Request::AddConsoleWith`]. Variants are only ever appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsoleOption {
    /// Also write the console to the daemon's persisted consoles file, as
    /// [`Request::AddConsolePersistent`] does.
    Persist,
    /// Plain TCP subscribers are read-write (by default they are read-only: any local user can
    /// reach a TCP port).
    TcpWrite,
    /// UNIX subscribers that may type: user names, numeric uids, `@GROUP` or `@GID`.
    ReadWrite(Vec<String>),
    /// UNIX subscribers that may watch, in the same form.
    ReadOnly(Vec<String>),
    /// Subscribers get no notices from logd (`[logd: …]` lines): their stream is the console's
    /// output byte for byte (by default they are told when the guest comes and goes, who holds
    /// the write lock, …).
    NoNotices,
    /// The guest's connections and disconnections are marked in the console's log (by default
    /// the log holds the guest's output only).
    MarkLog,
    /// A TLS listener for subscribers: `ADDR:PORT` or `PORT` (127.0.0.1), as the spec's `tcp`.
    /// Needs [`ConsoleOption::TlsDir`].
    Tls(String),
    /// The TLS credentials' directory, in QEMU's `tls-creds-x509` layout: `ca-cert.pem` (the CA
    /// that signs client certificates), `server-cert.pem`, `server-key.pem`, and `ca-crl.pem`
    /// if present. A path as the spec's paths are.
    TlsDir(String),
    /// TLS clients that may type: certificate subjects (`CN=alice,O=Example`, or `CN=alice`
    /// alone).
    TlsReadWrite(Vec<String>),
    /// TLS clients that may watch, in the same form.
    TlsReadOnly(Vec<String>),
    /// What a TLS client without a certificate gets: `refuse` (the default) or `read-only`.
    TlsAnonymous(String),
}

impl ConsoleOption {
    /// The option as `logdctl console add` spells it.
    pub fn flag(&self) -> &'static str {
        match self {
            ConsoleOption::Persist => "--persist",
            ConsoleOption::TcpWrite => "--tcp-write",
            ConsoleOption::ReadWrite(_) => "--read-write",
            ConsoleOption::ReadOnly(_) => "--read-only",
            ConsoleOption::NoNotices => "--no-notices",
            ConsoleOption::MarkLog => "--mark-log",
            ConsoleOption::Tls(_) => "--tls",
            ConsoleOption::TlsDir(_) => "--tls-dir",
            ConsoleOption::TlsReadWrite(_) => "--tls-read-write",
            ConsoleOption::TlsReadOnly(_) => "--tls-read-only",
            ConsoleOption::TlsAnonymous(_) => "--tls-anonymous",
        }
    }
}

/// How logd reaches a console's guest side (the chardev).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuestSide {
    /// logd listens on this UNIX socket; QEMU connects
    /// (`-chardev socket,path=SOCK,server=off,reconnect=1`).
    Listen { path: String },
    /// logd connects to this UNIX socket, on which QEMU listens (`server=on`), retrying while
    /// QEMU starts and reconnecting when it restarts.
    Connect { path: String },
    /// logd makes a socketpair and hands one end to the caller (for `-add-fd` / `fd=N`).
    Fd,
}

/// Who may type into the guest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WritePolicy {
    /// The longest-connected subscriber holds the write lock; the others are read-only.
    #[default]
    Exclusive,
    /// Every subscriber's input is merged.
    Shared,
    /// Nobody: the console is read-only.
    None,
}

/// What subscribers speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsoleProtocol {
    /// Bytes as they are (nc, socat).
    #[default]
    Raw,
    /// Telnet (RFC 854): negotiation, IAC escaping, binary mode.
    Telnet,
}

/// A console to add. Optional fields take the daemon's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSpec {
    pub domain: DomainId,
    /// The console's name within its domain, e.g. `serial0`.
    pub name: String,
    pub guest: GuestSide,
    /// The console's log path, as for `OpenLog`.
    pub log: String,
    pub truncate: bool,
    /// `ADDR:PORT` for the TCP listener (port 0 picks a free port); None: no TCP listener.
    pub tcp: Option<String>,
    /// A UNIX socket path for local subscribers; None: none.
    pub unix: Option<String>,
    pub protocol: ConsoleProtocol,
    pub write: WritePolicy,
    /// Bytes of recent output a new subscriber gets first (default 16 KiB; 0: none).
    pub replay: Option<u64>,
    /// Most subscribers at once (default 32).
    pub max_subscribers: Option<u32>,
    /// A subscriber's output queue limit in bytes (default 1 MiB).
    pub queue_limit: Option<u64>,
}

impl ConsoleSpec {
    /// A console with the daemon's defaults: raw protocol, exclusive writer, default replay,
    /// subscriber limit and queue limit, no listeners (set `tcp` or `unix` for subscribers).
    pub fn new(domain: DomainId, name: &str, guest: GuestSide, log: &str) -> Self {
        ConsoleSpec {
            domain,
            name: name.to_owned(),
            guest,
            log: log.to_owned(),
            truncate: false,
            tcp: None,
            unix: None,
            protocol: ConsoleProtocol::default(),
            write: WritePolicy::default(),
            replay: None,
            max_subscribers: None,
            queue_limit: None,
        }
    }
}

/// A console as `ListConsoles` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleInfo {
    pub domain: DomainId,
    pub name: String,
    pub log: String,
    pub guest: GuestSide,
    pub guest_connected: bool,
    /// The bound TCP address, if any.
    pub tcp: Option<String>,
    pub unix: Option<String>,
    pub protocol: ConsoleProtocol,
    pub write: WritePolicy,
    pub subscribers: u32,
    pub bytes_in: u64,
    /// Subscribers disconnected because they fell behind.
    pub slow_disconnects: u64,
}

impl Request {
    /// A short name for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::OpenLog { .. } => "OpenLog",
            Request::GetPosition { .. } => "GetPosition",
            Request::ReadLog { .. } => "ReadLog",
            Request::AppendLog { .. } => "AppendLog",
            Request::AddConsole(_) => "AddConsole",
            Request::RemoveConsole { .. } => "RemoveConsole",
            Request::ListConsoles => "ListConsoles",
            Request::AddConsolePersistent(_) => "AddConsolePersistent",
            Request::AddConsoleWith { .. } => "AddConsoleWith",
            Request::AttachConsole { .. } => "AttachConsole",
            Request::ConsoleCommand { .. } => "ConsoleCommand",
        }
    }
}

/// The daemon's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The handshake succeeded.
    Welcome(Welcome),
    /// The log is open; the frame carries one fd, the write end of the log's pipe.
    /// `position` is the end of the active file at open time.
    LogOpened { position: Position },
    /// Answer to `GetPosition` and `AppendLog`: the end of the active file.
    Position(Position),
    /// Answer to `ReadLog`. `next` is where the following read should start. `gap` says that the
    /// requested position had been rotated away, so the data starts at the oldest byte left.
    LogData {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        next: Position,
        gap: bool,
    },
    /// The request failed; see the code.
    Error(WireError),
    /// The console is added. `tcp` is the bound address (the real port when 0 was asked).
    /// With `guest_fd`, the frame carries one fd: the guest's end of the console's socketpair.
    ConsoleAdded {
        tcp: Option<String>,
        unix: Option<String>,
        position: Position,
        guest_fd: bool,
    },
    /// The request succeeded and has nothing to report.
    Done,
    /// Answer to `ListConsoles`.
    Consoles(Vec<ConsoleInfo>),
    /// Answer to `AttachConsole`: the frame carries one fd, the caller's end of the console
    /// connection.
    Attached {
        /// The new subscriber's id (for [`Request::ConsoleCommand`]).
        subscriber: u64,
        /// How it is shown to others (`UID:NAME`).
        peer: String,
        role: crate::admin::Role,
        /// It holds the write lock (or may write: `shared`).
        writer: bool,
    },
    /// Answer to `ConsoleCommand`.
    ConsoleReply(ConsoleReply),
}

/// What a [`ConsoleCommand`] did. Variants are only ever appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsoleReply {
    /// `Lock`, `Spy`, `Break`, `SysRq`: what happened, in words for the user.
    Said(String),
    /// `Who`: every subscriber, in write-lock order.
    Who(Vec<crate::admin::SubscriberSnapshot>),
    /// `Replay`: the output, from a line boundary.
    Replay(#[serde(with = "serde_bytes")] Vec<u8>),
}

impl Response {
    /// How many fds travel with this response by SCM_RIGHTS.
    pub fn fd_count(&self) -> usize {
        match self {
            Response::LogOpened { .. } => 1,
            Response::ConsoleAdded { guest_fd: true, .. } => 1,
            Response::Attached { .. } => 1,
            _ => 0,
        }
    }
}

/// A typed error: a stable code for programs, a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code:?})")]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
        }
    }
}

/// Error codes. Their numeric values are part of the protocol (see docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u16)]
pub enum ErrorCode {
    /// The frame could not be decoded.
    Malformed = 1,
    /// The length prefix is larger than the limit.
    FrameTooLarge = 2,
    /// The handshake's magic or version is not one the daemon speaks.
    UnsupportedVersion = 3,
    /// The peer's uid may not use this socket.
    PermissionDenied = 4,
    /// The daemon already serves `max_clients` connections.
    TooManyClients = 5,
    /// A field is invalid (empty name, bad length, …).
    InvalidArgument = 6,
    /// The path lies outside the allowed directories, escapes with `..` or goes through a symlink.
    PathRefused = 7,
    /// The log is already open.
    Busy = 8,
    /// No such log.
    NotFound = 9,
    /// A file-system operation failed.
    Io = 10,
    /// The daemon is shutting down.
    ShuttingDown = 11,
    /// A bug or an unexpected state in the daemon.
    Internal = 12,
    /// A position that does not lie in the log.
    BadPosition = 13,
    /// The connection sat idle past the daemon's `client_idle_timeout` and is closed.
    TimedOut = 14,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_round_trips_as_text() {
        let p = Position {
            inode: 12,
            offset: 34,
            birth: 56,
        };
        assert_eq!(p.exact().parse::<Position>().unwrap(), p);
        assert_eq!(p.to_string(), "12:34");
        assert_eq!("12:34".parse::<Position>().unwrap().birth, 0);
        assert!("12".parse::<Position>().is_err());
        assert!("1:2:3:4".parse::<Position>().is_err());
        assert!("a:1".parse::<Position>().is_err());
    }

    #[test]
    fn name_derived_uuid_is_stable() {
        assert_eq!(
            DomainId::from_name("qemu", "vm1").uuid,
            DomainId::from_name("qemu", "vm1").uuid
        );
        assert_ne!(
            DomainId::from_name("qemu", "vm1").uuid,
            DomainId::from_name("qemu", "vm2").uuid
        );
    }
}
