//! The re-exec state: everything one logd process hands to its successor, in a versioned format.
//!
//! At a re-exec (see [`crate::handover::reexec`]) the old process freezes every actor and writes a
//! [`State`] into a memfd that the new process inherits, with every fd the state names. The
//! bytes are a [`Header`] (magic, format version, the writer's pid and a random token), then the
//! body of that version, both encoded with the protocol crate's codec.
//!
//! Fds travel by number: an inherited fd keeps its number across `exec`. Each carries the
//! `st_dev`/`st_ino` it had when written, and [`Inherited::take`] refuses an fd that is closed,
//! taken twice, or not the same file, so a state can never make the new process adopt the wrong
//! descriptor.
//!
//! Versions: [`VERSION`] is written; every version from [`OLDEST_READABLE`] up is read (a
//! newer binary must restore from the previous release). Since version 5, the daemon, each
//! console and each subscriber end with an extension list ([`StateExt`], [`ConsoleExt`],
//! [`SubscriberExt`]): something new to carry is a new variant, appended, and needs no new
//! version, since a successor reads every variant its predecessor could write. A change to a
//! field still bumps [`VERSION`] and keeps the old body type with a conversion, in `old`
//! (`StateV1` to `StateV2` to `StateV4` to [`State`]). `integration/fixtures/state-vN.bin`
//! pins the bytes of each version; its test fails if that version's encoding drifts.
#![allow(unsafe_code)] // four blocks: adopting an inherited fd; fcntl and fstat on bare fd numbers, and reading what fstat filled

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use logd_protocol::codec::{self, ProtocolError};
use logd_protocol::{ConsoleProtocol, DomainId, Uuid, WritePolicy};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use serde::{Deserialize, Serialize};

use crate::console::telnet;

mod old;
use old::{StateV1, StateV2, StateV3, StateV4};

/// The first bytes of every state.
pub const MAGIC: [u8; 8] = *b"LOGDSTAT";
/// The format version this binary writes. Version 2 added the virtlogd listener; version 3 a
/// console's access settings and each subscriber's role; version 4 a console's notice settings;
/// version 5 the extension lists.
pub const VERSION: u32 = 5;
/// The oldest format version this binary reads.
pub const OLDEST_READABLE: u32 = 1;

/// Why a state could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot encode the state: {0}")]
    Encode(ProtocolError),
    #[error("malformed state: {0}")]
    Decode(ProtocolError),
    #[error("not a logd state (bad magic)")]
    BadMagic,
    #[error(
        "state format version {found} is not supported (this logd reads versions \
         {OLDEST_READABLE} to {VERSION})"
    )]
    Unsupported { found: u32 },
    #[error("the state was written by pid {writer}, not by this process's parent (pid {parent})")]
    WrongParent { writer: u32, parent: u32 },
    #[error("the state's token does not match the one in the environment")]
    BadToken,
    #[error("inherited fd {raw} is not open")]
    FdClosed { raw: RawFd },
    #[error("inherited fd {raw} is not the file the state describes")]
    FdMismatch { raw: RawFd },
    #[error("the state names fd {raw} twice")]
    FdTwice { raw: RawFd },
}

/// What precedes the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    magic: [u8; 8],
    version: u32,
    /// The process that wrote the state (the new process's parent).
    pid: u32,
    /// Also passed in the environment: a state left over from another re-exec is refused.
    token: [u8; 16],
}

/// A carried fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fd {
    pub raw: RawFd,
    pub dev: u64,
    pub ino: u64,
}

/// The whole daemon (format version 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// When the re-exec was asked for and when the actors froze (CLOCK_MONOTONIC, ns: the same
    /// clock in both processes), for the blackout figures.
    pub asked_mono_ns: u64,
    pub frozen_mono_ns: u64,
    /// When the first process of this line of re-execs started (ms since the Unix epoch).
    pub started_ms: u64,
    /// The daemon's uptime at the freeze.
    pub uptime_ms: u64,
    /// Re-execs completed before this one.
    pub reexecs: u32,
    /// `<socket>.lock`, flocked.
    pub lock: Fd,
    pub main: ListenerState,
    pub admin: ListenerState,
    /// The Prometheus listener, if configured.
    pub metrics: Option<Fd>,
    /// The next console subscriber id (ids stay unique across re-execs).
    pub next_subscriber_id: u64,
    pub domains: Vec<DomainState>,
    pub connections: Vec<ConnState>,
    /// The virtlogd socket, if served (version 2).
    pub virtlogd: Option<ListenerState>,
    /// What later versions added (version 5).
    pub ext: Vec<StateExt>,
}

/// Something carried for the whole daemon since format version 5. Variants are only appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StateExt {
    /// The console socket (`logdctl attach`), its listener.
    ConsoleSocket(ListenerState),
}

/// Something carried for a console since format version 5. Variants are only appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConsoleExt {
    /// Its TLS listener: the settings, the credentials as the old image read them (the new
    /// image reads the directory again, and falls back on these), and the listening socket.
    /// Its TLS subscribers are not carried: their sessions live in the old image.
    Tls {
        settings: crate::console::tls::TlsSettings,
        pems: crate::console::tls::Pems,
        listener: Fd,
    },
}

/// Something carried for a console subscriber since format version 5. Variants are only
/// appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriberExt {
    /// The uid that attached it: its escape commands are that uid's (and root's).
    Owner(u32),
    /// Read-only by its own choice (a spy): it may ask for the write lock again.
    Spy,
}

impl State {
    /// Calls `f` with every fd the state names.
    pub fn each_fd(&self, f: &mut dyn FnMut(&Fd)) {
        f(&self.lock);
        f(&self.main.fd);
        f(&self.admin.fd);
        if let Some(v) = &self.virtlogd {
            f(&v.fd);
        }
        if let Some(m) = &self.metrics {
            f(m);
        }
        for e in &self.ext {
            match e {
                StateExt::ConsoleSocket(l) => f(&l.fd),
            }
        }
        for c in &self.connections {
            f(&c.fd);
        }
        for d in &self.domains {
            for s in &d.streams {
                match s {
                    StreamState::Pipe(p) => {
                        f(&p.fd);
                        p.sink.file.iter().for_each(&mut *f);
                    }
                    StreamState::Console(c) => {
                        c.sink.file.iter().for_each(&mut *f);
                        if let GuestState::Listen { listener, .. } = &c.guest {
                            f(listener);
                        }
                        c.guest_conn.iter().for_each(&mut *f);
                        c.tcp.iter().for_each(|(_, fd)| f(fd));
                        c.unix.iter().for_each(|(_, fd)| f(fd));
                        c.subscribers.iter().for_each(|s| f(&s.fd));
                        for e in &c.ext {
                            match e {
                                ConsoleExt::Tls { listener, .. } => f(listener),
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Whether the carried fds are still as the state describes them when a process takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    /// Nobody has read or written them since the old image froze: a new image's take-over,
    /// or a guardian's whose new image was never told `Go`.
    Exact,
    /// A new image was told `Go` and died (or hung) before `Running`: it may have read and
    /// written them in between. The guardian then trusts nothing that image may have acted
    /// on: logs are opened again by path, and carried console input and subscriber queues are
    /// dropped rather than sent twice (docs/LIFECYCLE.md, "After `Go`").
    AfterGo,
}

/// A listening UNIX socket of the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerState {
    pub fd: Fd,
    pub path: PathBuf,
    /// Whether logd created the socket file (and removes it at exit), or systemd did.
    pub owned: bool,
}

/// One domain actor. (Generic over the console's state so that the bodies of older versions
/// reuse it with theirs.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainState<C = ConsoleState> {
    pub driver: String,
    pub uuid: Uuid,
    pub name: String,
    pub since_ms: u64,
    pub streams: Vec<StreamState<C>>,
}

/// One stream of a domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StreamState<C = ConsoleState> {
    Pipe(PipeState),
    Console(Box<C>),
}

/// A rotating file and its sink's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkState {
    pub path: PathBuf,
    /// The active file, or None while it is unwritable (the new process retries it).
    pub file: Option<Fd>,
    pub max_size: u64,
    pub max_backups: u32,
    pub inode: u64,
    pub birth: u64,
    pub size: u64,
    pub newline_end: u64,
    pub rotations: u64,
    pub bytes_in: u64,
    pub bytes_written: u64,
    pub dropped_disk: u64,
    /// The last error and when (ms since the Unix epoch).
    pub last_error: Option<(String, u64)>,
}

/// A stdio pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeState {
    pub fd: Fd,
    pub pipe_size: u32,
    pub grow_refused: bool,
    pub pipe_grows: u32,
    pub pipe_grow_refused: u32,
    pub sink: SinkState,
}

/// How a console reaches its guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuestState {
    Listen { path: PathBuf, listener: Fd },
    Connect { path: PathBuf },
    Fd,
}

/// A console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleState {
    pub name: String,
    pub domain: DomainId,
    pub guest: GuestState,
    /// The live guest connection.
    pub guest_conn: Option<Fd>,
    /// The TCP address as configured, and its listener.
    pub tcp: Option<(String, Fd)>,
    pub unix: Option<(PathBuf, Fd)>,
    pub protocol: ConsoleProtocol,
    pub write: WritePolicy,
    pub replay_limit: usize,
    pub max_subscribers: usize,
    pub queue_limit: usize,
    pub sink: SinkState,
    /// Input accepted from subscribers, not yet written to the guest.
    #[serde(with = "serde_bytes")]
    pub input: Vec<u8>,
    /// The replay ring's bytes, oldest first.
    #[serde(with = "serde_bytes")]
    pub replay: Vec<u8>,
    /// Subscribers in write-lock order (the first holds the lock in exclusive mode).
    pub subscribers: Vec<SubscriberState>,
    pub slow_disconnects: u64,
    pub refused: u64,
    pub guest_connects: u64,
    /// Who may watch and who may type (version 3).
    pub access: crate::console::Access,
    /// What subscribers are told, and whether the log is marked (version 4).
    pub notices: crate::console::Notices,
    /// What later versions added (version 5).
    pub ext: Vec<ConsoleExt>,
}

/// A console subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberState {
    pub id: u64,
    pub peer: String,
    pub since_ms: u64,
    /// TCP or UNIX.
    pub tcp: bool,
    pub fd: Fd,
    pub protocol: ConsoleProtocol,
    pub decoder: telnet::Decoder,
    /// Output queued and not yet sent, in order.
    #[serde(with = "serde_bytes")]
    pub unsent: Vec<u8>,
    pub bytes_sent: u64,
    pub told_read_only: bool,
    /// Its role (version 3).
    pub role: crate::console::Role,
    /// What later versions added (version 5).
    pub ext: Vec<SubscriberExt>,
}

/// Which socket a client connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnEndpoint {
    Main,
    Admin,
    /// The virtlogd socket (always parked between calls: [`ConnMode::Requests`]).
    Virtlogd,
    /// The console socket (`logdctl attach`), since version 5.
    Console,
}

/// Where a client connection was when it was parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnMode {
    /// Before the hello.
    Hello,
    /// Between requests.
    Requests,
    /// Streaming events.
    Events,
    /// Waiting for the answer to its `Reexec` request: the new process gives it.
    AwaitingReexec,
}

/// A client connection of the main or admin socket, parked between requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnState {
    pub fd: Fd,
    pub endpoint: ConnEndpoint,
    pub mode: ConnMode,
    /// Bytes received and not yet a whole frame.
    #[serde(with = "serde_bytes")]
    pub pending: Vec<u8>,
}

/// Encodes a state, written by this process for a child holding `token`.
pub fn encode(state: &State, token: [u8; 16]) -> Result<Vec<u8>, StateError> {
    let header = Header {
        magic: MAGIC,
        version: VERSION,
        pid: std::process::id(),
        token,
    };
    let mut out = codec::encode_large(&header).map_err(StateError::Encode)?;
    out.extend(codec::encode_large(state).map_err(StateError::Encode)?);
    Ok(out)
}

/// Decodes a state, checking it was written by `parent` for `token`.
pub fn decode(bytes: &[u8], parent: u32, token: [u8; 16]) -> Result<State, StateError> {
    if !bytes.starts_with(&MAGIC) {
        return Err(StateError::BadMagic);
    }
    let (header, used): (Header, usize) = codec::decode_large(bytes).map_err(StateError::Decode)?;
    if !(OLDEST_READABLE..=VERSION).contains(&header.version) {
        return Err(StateError::Unsupported {
            found: header.version,
        });
    }
    if header.pid != parent {
        return Err(StateError::WrongParent {
            writer: header.pid,
            parent,
        });
    }
    if header.token != token {
        return Err(StateError::BadToken);
    }
    let body = &bytes[used..];
    let (state, used): (State, usize) = match header.version {
        1 => codec::decode_large::<StateV1>(body)
            .map(|(s, used)| (State::from(StateV4::from(StateV2::from(s))), used))
            .map_err(StateError::Decode)?,
        2 => codec::decode_large::<StateV2>(body)
            .map(|(s, used)| (State::from(StateV4::from(s)), used))
            .map_err(StateError::Decode)?,
        3 => codec::decode_large::<StateV3>(body)
            .map(|(s, used)| (State::from(StateV4::from(s)), used))
            .map_err(StateError::Decode)?,
        4 => codec::decode_large::<StateV4>(body)
            .map(|(s, used)| (State::from(s), used))
            .map_err(StateError::Decode)?,
        _ => codec::decode_large(body).map_err(StateError::Decode)?,
    };
    if used != body.len() {
        return Err(StateError::Decode(ProtocolError::TrailingBytes(
            body.len() - used,
        )));
    }
    Ok(state)
}

/// Marks fds to be carried to the next process (clears close-on-exec), or back (sets it again,
/// when a re-exec is abandoned), and describes them. The first error is kept; the caller checks
/// [`Carrier::finish`].
pub struct Carrier {
    out: bool,
    error: Option<std::io::Error>,
    /// How many fds were marked.
    pub count: usize,
}

impl Carrier {
    /// For a re-exec: fds lose close-on-exec.
    pub fn out() -> Self {
        Carrier {
            out: true,
            error: None,
            count: 0,
        }
    }

    /// For an abandoned re-exec: fds get close-on-exec again.
    pub fn back() -> Self {
        Carrier {
            out: false,
            error: None,
            count: 0,
        }
    }

    /// Marks one fd and describes it.
    pub fn fd(&mut self, fd: impl AsFd) -> Fd {
        let fd = fd.as_fd();
        let raw = fd.as_raw_fd();
        let flags = if self.out {
            FdFlag::empty()
        } else {
            FdFlag::FD_CLOEXEC
        };
        let res = fcntl(fd, FcntlArg::F_SETFD(flags))
            .and_then(|_| nix::sys::stat::fstat(fd))
            .map_err(std::io::Error::from);
        self.count += 1;
        match res {
            Ok(st) => Fd {
                raw,
                dev: st.st_dev,
                ino: st.st_ino,
            },
            Err(e) => {
                self.error.get_or_insert(e);
                Fd {
                    raw,
                    dev: 0,
                    ino: 0,
                }
            }
        }
    }

    /// The first error, if any fd could not be marked.
    pub fn finish(self) -> Result<usize, std::io::Error> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.count),
        }
    }
}

/// The fds a state names, adopted by the new process one by one, from any thread.
///
/// One flag per fd number, not a locked set: the workers adopt their domains' fds at the same
/// time, and 20,000 adoptions through one lock would serialize them.
pub struct Inherited {
    taken: Vec<AtomicBool>,
    count: AtomicUsize,
}

impl Inherited {
    /// For fds numbered below `limit` (a number at or above it is refused as not open).
    pub fn up_to(limit: usize) -> Inherited {
        Inherited {
            taken: (0..limit).map(|_| AtomicBool::new(false)).collect(),
            count: AtomicUsize::new(0),
        }
    }

    /// For every fd a state names.
    pub fn for_state(state: &State) -> Inherited {
        let mut max = 0;
        state.each_fd(&mut |fd| max = max.max(fd.raw));
        Inherited::up_to(max.max(0) as usize + 1)
    }

    /// How many fds were adopted.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Adopts a carried fd: checks it is open, not adopted already, and the same file the
    /// state describes; sets close-on-exec again.
    pub fn take(&self, fd: &Fd) -> Result<OwnedFd, StateError> {
        let raw = fd.raw;
        if raw < 0 {
            return Err(StateError::FdClosed { raw });
        }
        let Some(flag) = self.taken.get(raw as usize) else {
            return Err(StateError::FdClosed { raw });
        };
        if flag.swap(true, Ordering::AcqRel) {
            return Err(StateError::FdTwice { raw });
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        // Only the right file may be wrapped: ask the kernel first, on the number alone.
        match fd_identity(raw) {
            None => return Err(StateError::FdClosed { raw }),
            Some((dev, ino)) if (dev, ino) != (fd.dev, fd.ino) => {
                return Err(StateError::FdMismatch { raw })
            }
            Some(_) => {}
        }
        // SAFETY: the fd is open and is the file the state describes (checked just above), it
        // was inherited from the previous process for exactly this use, and its flag in `taken`
        // guarantees no other OwnedFd is made from it, so it is owned and closed exactly once.
        // It gets close-on-exec again from [`seal`](Self::seal), with every other one at once.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    /// Gives every fd of this process (from 3 up) close-on-exec again, once every inherited one
    /// has been taken: one `close_range(2)` instead of one `fcntl(2)` per fd (10,000 domains'
    /// worth of system calls out of the blackout). Falls back to one `fcntl` per fd taken on a
    /// kernel without `CLOSE_RANGE_CLOEXEC` (before 5.11). Nothing may start a process between
    /// the takes and this (nothing does: the take-over spawns nothing before `Go`).
    pub fn seal(&self) {
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC closes nothing and touches no memory:
        // it only sets a flag on the open fds of the range.
        let sealed =
            unsafe { nix::libc::close_range(3, u32::MAX, nix::libc::CLOSE_RANGE_CLOEXEC as i32) }
                == 0;
        if sealed {
            return;
        }
        for (raw, taken) in self.taken.iter().enumerate() {
            if taken.load(Ordering::Acquire) {
                // SAFETY: `raw` was taken, so it is open and owned by this process until its
                // owner closes it; the borrow lasts for this one call, made while the taking
                // threads hold their fds (the take-over has not gone on yet).
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw as RawFd) };
                let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
            }
        }
    }
}

/// Whether `raw` is an open fd of this process, asked on the bare number: no `BorrowedFd` is
/// made, since one must name an open fd.
pub(crate) fn fd_is_open(raw: RawFd) -> bool {
    // SAFETY: fcntl(F_GETFD) takes any integer and touches no memory; for a number that is not
    // an open fd it fails with EBADF.
    unsafe { nix::libc::fcntl(raw, nix::libc::F_GETFD) >= 0 }
}

/// The device and inode of the open fd `raw` (None if it is not open), asked on the bare
/// number.
fn fd_identity(raw: RawFd) -> Option<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<nix::libc::stat>::uninit();
    // SAFETY: fstat writes one whole `struct stat` through the pointer, which points to one of
    // ours; for a number that is not an open fd it fails with EBADF and writes nothing.
    if unsafe { nix::libc::fstat(raw, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

/// An inherited socket, registered with this thread's event loop (non-blocking, as tokio needs).
pub mod sockets {
    use std::io;
    use std::os::fd::{AsFd, OwnedFd};

    fn nonblocking<S: From<OwnedFd> + AsFd, T>(
        fd: OwnedFd,
        register: impl FnOnce(S) -> io::Result<T>,
    ) -> io::Result<T> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        register(S::from(fd))
    }

    pub fn unix_listener(fd: OwnedFd) -> io::Result<tokio::net::UnixListener> {
        nonblocking(fd, tokio::net::UnixListener::from_std)
    }

    pub fn unix_stream(fd: OwnedFd) -> io::Result<tokio::net::UnixStream> {
        nonblocking(fd, tokio::net::UnixStream::from_std)
    }

    pub fn tcp_listener(fd: OwnedFd) -> io::Result<tokio::net::TcpListener> {
        nonblocking(fd, tokio::net::TcpListener::from_std)
    }

    pub fn tcp_stream(fd: OwnedFd) -> io::Result<tokio::net::TcpStream> {
        nonblocking(fd, tokio::net::TcpStream::from_std)
    }
}

#[cfg(test)]
mod tests;
