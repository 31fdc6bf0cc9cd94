//! The re-exec's parts: parking client connections ([`Handoff`]), spawning the new process with
//! the state ([`spawn`]), the handshake between the two ([`Handshake`]), the new process's
//! inheritance ([`Successor`]), and why a re-exec fails ([`HandoverError`]). The procedure that
//! puts them together, step by step, is in [`crate::handover`].
#![allow(unsafe_code)] // one block: adopting the two fds named in LOGD_REEXEC, once they are known open

use std::ffi::OsString;
use std::io::{Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use logd_protocol::codec;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::handover::state::{Carrier, ConnState, State};

/// The environment variable that tells a new process it is a re-exec's successor:
/// `STATE_FD:HANDSHAKE_FD:TOKEN`.
pub(crate) const ENV: &str = "LOGD_REEXEC";
/// How long the old process waits for the new one to be ready.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the old process waits for client connections to finish the request in hand.
pub(crate) const PARK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a new process waits for `Go` after `Ready`.
const GO_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest handshake message.
const MAX_HANDSHAKE: usize = 64 * 1024;

/// The arguments the daemon was started with (a re-exec passes them on).
static ARGS: OnceLock<Vec<OsString>> = OnceLock::new();

/// Remembers the daemon's arguments for re-execs (call once, at start-up).
pub fn remember_args() {
    let _ = ARGS.set(std::env::args_os().skip(1).collect());
}

/// Where client connections are: serving, parking for a re-exec, or handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    Freezing,
    /// The new process has them; this one is about to exit.
    Committed,
}

/// A request to re-exec; `reply` hears why it failed (success is answered by the new process).
pub(crate) struct Trigger {
    /// Run this binary instead of the configured one.
    pub(crate) binary: Option<PathBuf>,
    pub(crate) reply: Option<oneshot::Sender<HandoverError>>,
}

/// What the client connections and the re-exec share.
pub(crate) struct Handoff {
    phase: watch::Sender<Phase>,
    /// The parked connections; None once the state has taken them (a connection parking
    /// later is not carried, so it must not be marked either).
    parked: Mutex<Option<Vec<ConnState>>>,
    live: AtomicUsize,
    trigger: mpsc::Sender<Trigger>,
}

/// Counts a live client connection (see [`Handoff::live`]).
pub(crate) struct Live(Arc<Handoff>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Handoff {
    /// The handoff and the receiving end of re-exec requests (the daemon's main loop).
    pub(crate) fn new() -> (Arc<Handoff>, mpsc::Receiver<Trigger>) {
        let (tx, rx) = mpsc::channel(4);
        let h = Handoff {
            phase: watch::Sender::new(Phase::Running),
            parked: Mutex::new(Some(Vec::new())),
            live: AtomicUsize::new(0),
            trigger: tx,
        };
        (Arc::new(h), rx)
    }

    pub(crate) fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Resolves when connections must park.
    pub(crate) async fn freezing(&self) {
        let mut rx = self.phase.subscribe();
        let _ = rx.wait_for(|p| *p == Phase::Freezing).await;
    }

    /// Counts a connection as live until the guard drops.
    pub(crate) fn live(self: &Arc<Self>) -> Live {
        self.live.fetch_add(1, Ordering::SeqCst);
        Live(self.clone())
    }

    /// Parks a connection: `describe` marks its fd to be carried and describes it (None: it
    /// cannot be carried). Returns when the re-exec was abandoned and the connection goes on
    /// here (true if it had been marked); never returns once it is handed over. A connection
    /// that comes too late (the state has been written) is neither marked nor carried: it
    /// waits, and closes with this process.
    pub(crate) async fn park(&self, describe: impl FnOnce() -> Option<ConnState>) -> bool {
        let marked = {
            let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
            match (parked.as_mut(), self.phase() == Phase::Freezing) {
                (Some(list), true) => match describe() {
                    Some(c) => {
                        list.push(c);
                        true
                    }
                    None => false,
                },
                _ => false,
            }
        };
        let mut rx = self.phase.subscribe();
        let _ = rx.wait_for(|p| *p != Phase::Freezing).await;
        if *rx.borrow() == Phase::Committed {
            std::future::pending::<()>().await;
        }
        marked
    }

    /// Asks for a re-exec. None if too many are queued already.
    pub(crate) fn ask(&self, binary: Option<PathBuf>) -> Option<oneshot::Receiver<HandoverError>> {
        let (tx, rx) = oneshot::channel();
        self.trigger
            .try_send(Trigger {
                binary,
                reply: Some(tx),
            })
            .ok()?;
        Some(rx)
    }

    /// Has every connection park, waiting at most `timeout` for those busy with a request.
    /// Returns the parked ones; the others are left behind (they close with this process).
    pub(crate) async fn park_all(&self, timeout: Duration) -> Vec<ConnState> {
        self.phase.send_replace(Phase::Freezing);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let parked = self
                .parked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map_or(0, Vec::len);
            let live = self.live.load(Ordering::SeqCst);
            if parked >= live {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    busy = live - parked,
                    "client connections still busy with a request are left behind"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Closed: from now on a connection that parks is not carried.
        self.parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default()
    }

    /// The re-exec was abandoned: parked connections go on here.
    pub(crate) fn resume(&self) {
        *self.parked.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
        self.phase.send_replace(Phase::Running);
    }

    /// The new process has everything: connections here stay parked until exit.
    pub(crate) fn commit(&self) {
        self.phase.send_replace(Phase::Committed);
    }
}

/// The handshake between the old process and the new one, over a socketpair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Handshake {
    /// New → old: every actor is rebuilt, frozen; waiting for `Go`.
    Ready { pid: u32 },
    /// New → old: the state could not be restored (the new process exits).
    Failed { reason: String },
    /// Old → new: take over (the old process exits).
    Go,
    /// Old → new: exit without touching anything.
    Abort,
    /// New → old, after `Go`: every domain is thawed and reading; the old process may exit.
    /// Until then it keeps every fd, so a new process that dies before it says this loses no
    /// byte that was still in a pipe (added in 0.1 after `Abort`: the encoding of the others
    /// is unchanged).
    Running,
}

/// Why a handshake message could not be exchanged.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("the other process closed the handshake")]
    Closed,
    #[error("handshake: {0}")]
    Protocol(#[from] codec::ProtocolError),
    #[error("handshake: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a re-exec failed. The old process goes on serving with everything it had: nothing was
/// closed on the way.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandoverError {
    #[error("the registry stopped")]
    RegistryStopped,
    #[error(transparent)]
    Freeze(#[from] crate::control::domain::FreezeError),
    #[error("cannot mark a listener to be carried: {0}")]
    MarkListener(#[source] std::io::Error),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The new process ran but did not take over; `status` says how it ended.
    #[error("{failure} ({status})")]
    Successor {
        failure: SuccessorFailure,
        status: String,
    },
}

/// What the new process did instead of taking over.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SuccessorFailure {
    #[error("a stop signal came during the re-exec; stopping instead (pid {pid} told to exit)")]
    StopInstead { pid: u32 },
    #[error("the new process (pid {pid}) went away before go: {source}")]
    GoneBeforeGo { pid: u32, source: HandshakeError },
    #[error("the new process (pid {pid}) could not take over: {reason}")]
    Refused { pid: u32, reason: String },
    #[error("the new process (pid {pid}) said {said:?}")]
    Unexpected { pid: u32, said: Handshake },
    #[error("the new process (pid {pid}) exited before it was ready")]
    ExitedEarly { pid: u32 },
    #[error("the new process (pid {pid}): {source}")]
    Handshake { pid: u32, source: HandshakeError },
    #[error("the new process (pid {pid}) was not ready within {} s", READY_TIMEOUT.as_secs())]
    NotReady { pid: u32 },
    #[error("the new process (pid {pid}) was told to go and died before it ran")]
    DiedAfterGo { pid: u32 },
    #[error("the new process (pid {pid}) was told to go and did not run within {} s", READY_TIMEOUT.as_secs())]
    NotRunning { pid: u32 },
}

/// Sends one handshake message (blocking: the socket buffer always has room for one).
pub(crate) fn send(
    sock: &std::os::unix::net::UnixStream,
    msg: &Handshake,
) -> Result<(), HandshakeError> {
    let frame = codec::encode_frame(msg, MAX_HANDSHAKE)?;
    (&*sock).write_all(&frame)?;
    Ok(())
}

/// Receives one handshake message.
pub(crate) async fn recv(sock: &tokio::net::UnixStream) -> Result<Handshake, HandshakeError> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        if let Some(m) = codec::decode_frame(&mut buf, MAX_HANDSHAKE)? {
            return Ok(m);
        }
        sock.readable().await?;
        match sock.try_read_buf(&mut buf) {
            // A peer that exits with our message unread resets the connection: it is gone all
            // the same.
            Ok(0) => return Err(HandshakeError::Closed),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err(HandshakeError::Closed)
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// What the old process hands to the new one at spawn time.
pub(crate) struct Spawned {
    pub(crate) child: std::process::Child,
    /// The old process's end of the handshake.
    pub(crate) handshake: std::os::unix::net::UnixStream,
}

/// Why the new process could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    #[error("cannot write the state: {0}")]
    State(#[from] crate::handover::state::StateError),
    #[error("cannot create the state memfd or the handshake socket: {0}")]
    Setup(std::io::Error),
    #[error("cannot run {exe}: {source}")]
    Exec {
        exe: PathBuf,
        source: std::io::Error,
    },
}

/// Writes the state to a memfd and spawns `exe` with the daemon's arguments, the memfd and its
/// end of a handshake socketpair (the carried fds must already be marked).
pub(crate) fn spawn(exe: &std::path::Path, state: &State) -> Result<Spawned, SpawnError> {
    let mut token = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut token))
        .map_err(SpawnError::Setup)?;
    let bytes = crate::handover::state::encode(state, token)?;
    let memfd =
        nix::sys::memfd::memfd_create(c"logd-state", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| SpawnError::Setup(e.into()))?;
    let mut file = std::fs::File::from(memfd);
    file.write_all(&bytes).map_err(SpawnError::Setup)?;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(SpawnError::Setup)?;
    let mut carrier = Carrier::out();
    let state_fd = carrier.fd(&file);
    let hs_fd = carrier.fd(&theirs);
    carrier.finish().map_err(SpawnError::Setup)?;
    let token_hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
    let args = ARGS.get().cloned().unwrap_or_default();
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&args)
        .env(ENV, format!("{}:{}:{token_hex}", state_fd.raw, hs_fd.raw));
    // A log filter set at run time (`logdctl log-level`) outlives the re-exec.
    match crate::host::logging::carried() {
        Some(f) => cmd.env(crate::host::logging::CARRY_ENV, f),
        None => cmd.env_remove(crate::host::logging::CARRY_ENV),
    };
    let child = cmd.spawn().map_err(|source| SpawnError::Exec {
        exe: exe.to_owned(),
        source,
    })?;
    // The child has its copies; ours close here.
    drop(file);
    drop(theirs);
    Ok(Spawned {
        child,
        handshake: ours,
    })
}

/// Makes a re-exec's new process fail at a given step the way a real fault would, so the tests
/// can show that no failure of the new image loses anything: `LOGD_REEXEC_FAULT=killed-in-restore`
/// (it is SIGKILLed once its domains are rebuilt) or `panic-after-ready` (it panics once it has
/// said `Ready`, before it hears `Go`). Read only by a successor, and removed at once, so it
/// never reaches the next re-exec. The tests set it in a wrapper that runs logd as the new
/// binary; nothing else should.
pub(crate) const FAULT_ENV: &str = "LOGD_REEXEC_FAULT";

/// A fault [`FAULT_ENV`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    KilledInRestore,
    PanicAfterReady,
}

impl Fault {
    fn parse(v: &str) -> Option<Fault> {
        match v {
            "killed-in-restore" => Some(Fault::KilledInRestore),
            "panic-after-ready" => Some(Fault::PanicAfterReady),
            _ => None,
        }
    }
}

/// [`ENV`] is set but does not name two inherited fds and a token.
#[derive(Debug, thiserror::Error)]
#[error("malformed {ENV}={0:?}")]
pub struct MalformedEnv(String);

/// Why the new process could not read the state it was handed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadStateError {
    #[error("cannot read the state: {0}")]
    Read(#[source] std::io::Error),
    #[error(transparent)]
    State(#[from] crate::handover::state::StateError),
}

/// A new process's inheritance, found in [`ENV`].
pub struct Successor {
    /// The memfd, until [`Successor::read_state`] has read it (it holds the whole state).
    state: Option<std::fs::File>,
    pub(crate) handshake: std::os::unix::net::UnixStream,
    token: [u8; 16],
    pub(crate) parent: u32,
    /// The log filter the old process had set at run time ([`crate::host::logging::CARRY_ENV`]).
    pub log_filter: Option<String>,
    /// A fault to act out, for the tests ([`FAULT_ENV`]).
    fault: Option<Fault>,
}

impl Successor {
    /// Reads and clears [`ENV`]; None when this process is not a re-exec's successor. Call
    /// before any thread starts.
    pub fn from_env() -> Option<Result<Successor, MalformedEnv>> {
        let filter = std::env::var(crate::host::logging::CARRY_ENV).ok();
        let fault = std::env::var(FAULT_ENV).ok().and_then(|f| Fault::parse(&f));
        // Called before any other thread exists, so this races with nothing.
        std::env::remove_var(crate::host::logging::CARRY_ENV);
        std::env::remove_var(FAULT_ENV);
        let v = std::env::var(ENV).ok()?;
        std::env::remove_var(ENV);
        Some(
            Self::parse(&v)
                .map(|s| Successor {
                    log_filter: filter,
                    fault,
                    ..s
                })
                .ok_or(MalformedEnv(v)),
        )
    }

    fn parse(v: &str) -> Option<Successor> {
        let mut it = v.split(':');
        let state: RawFd = it.next()?.parse().ok()?;
        let hs: RawFd = it.next()?.parse().ok()?;
        let hex = it.next()?;
        if hex.len() != 32 || it.next().is_some() || state < 3 || hs < 3 || state == hs {
            return None;
        }
        let mut token = [0u8; 16];
        for (i, b) in token.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        if !crate::handover::state::fd_is_open(state) || !crate::handover::state::fd_is_open(hs) {
            return None;
        }
        // SAFETY: both fds are open and distinct (checked above), and nothing else owns them:
        // the parent passed them for this use only, and `from_env`, the one caller outside
        // tests, removed LOGD_REEXEC before parsing it, so nothing adopts them twice (the
        // tests pass fds they have given up with `into_raw_fd`).
        let (state, hs) = unsafe { (OwnedFd::from_raw_fd(state), OwnedFd::from_raw_fd(hs)) };
        for fd in [&state, &hs] {
            let _ = nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
        }
        Some(Successor {
            state: Some(std::fs::File::from(state)),
            handshake: std::os::unix::net::UnixStream::from(hs),
            token,
            parent: nix::unistd::getppid().as_raw() as u32,
            log_filter: None,
            fault: None,
        })
    }

    /// Says `Running` (every domain is thawed), then, off the serving path, waits until the old
    /// process has exited (it tells systemd `MAINPID` first, bounded) and calls `then`.
    pub(crate) fn running(self, then: impl FnOnce() + 'static) {
        if let Err(e) = send(&self.handshake, &Handshake::Running) {
            tracing::warn!(cause = %e, "cannot tell the old process this one runs");
        }
        let hs = self
            .handshake
            .try_clone()
            .and_then(|s| crate::handover::state::sockets::unix_stream(s.into()));
        actix_rt::spawn(async move {
            if let Ok(hs) = hs {
                // The old process says nothing more: this ends when it exits (closing its end).
                let _ = tokio::time::timeout(2 * READY_TIMEOUT, async {
                    while recv(&hs).await.is_ok() {}
                })
                .await;
            }
            then();
        });
    }

    /// Acts out [`Fault::KilledInRestore`] if it was asked for: called once every domain is
    /// rebuilt.
    pub(crate) fn restored(&self) {
        if self.fault == Some(Fault::KilledInRestore) {
            tracing::warn!("{FAULT_ENV}: killing this process in the middle of its take-over");
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Reads the state and checks it came from this process's parent. The memfd is closed
    /// then, so its memory is not held while the take-over goes on (a second call fails).
    pub(crate) fn read_state(&mut self) -> Result<State, ReadStateError> {
        let mut bytes = Vec::new();
        let mut file = self.state.take().ok_or_else(|| {
            ReadStateError::Read(std::io::Error::other("the state was read already"))
        })?;
        file.rewind()
            .and_then(|()| file.read_to_end(&mut bytes))
            .map_err(ReadStateError::Read)?;
        drop(file);
        Ok(crate::handover::state::decode(
            &bytes,
            self.parent,
            self.token,
        )?)
    }

    /// Tells the parent this process cannot take over, and exits at once: nothing it inherited
    /// is touched (the parent goes on with all of it).
    pub fn refuse(&self, reason: &str) -> ! {
        tracing::error!("cannot take over from pid {}: {reason}", self.parent);
        let _ = send(
            &self.handshake,
            &Handshake::Failed {
                reason: reason.to_owned(),
            },
        );
        std::process::exit(1);
    }

    /// Says `Ready` and waits for the parent's word. Returns when this process must take over
    /// (`Go`, or the parent died without a word); exits at once on `Abort`.
    pub(crate) async fn ready(&self) -> Result<(), HandshakeError> {
        send(
            &self.handshake,
            &Handshake::Ready {
                pid: std::process::id(),
            },
        )?;
        if self.fault == Some(Fault::PanicAfterReady) {
            panic!("{FAULT_ENV}: panicking after Ready, before Go");
        }
        let sock = self
            .handshake
            .try_clone()
            .and_then(|s| crate::handover::state::sockets::unix_stream(s.into()))?;
        let word = tokio::time::timeout(GO_TIMEOUT, recv(&sock)).await;
        let parent_alive = || nix::unistd::getppid().as_raw() as u32 == self.parent;
        match word {
            Ok(Ok(Handshake::Go)) => Ok(()),
            Ok(Err(HandshakeError::Closed)) | Err(_) if !parent_alive() => {
                tracing::warn!(
                    parent = self.parent,
                    "the old process died before saying go; taking over"
                );
                Ok(())
            }
            other => {
                tracing::info!(answer = ?other.map(|r| r.map_err(|e| e.to_string())), "the old process goes on; exiting without touching anything");
                std::process::exit(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd, IntoRawFd};

    const TOKEN: &str = "00112233445566778899aabbccddeeff";

    /// Two open fds the test gives up (the successor owns them once parsed).
    fn two_fds() -> (RawFd, RawFd) {
        let (r, w) = nix::unistd::pipe().unwrap();
        (r.into_raw_fd(), w.into_raw_fd())
    }

    #[test]
    fn a_well_formed_value_adopts_both_fds_and_reads_the_token() {
        let (a, b) = two_fds();
        let s = Successor::parse(&format!("{a}:{b}:{TOKEN}")).expect("well formed");
        assert_eq!(
            s.token,
            [
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]
        );
        assert_eq!(s.state.as_ref().unwrap().as_raw_fd(), a);
        assert_eq!(s.handshake.as_raw_fd(), b);
        assert_eq!(s.parent, nix::unistd::getppid().as_raw() as u32);
        // Adopted fds go no further than this process: close-on-exec again.
        for fd in [s.state.as_ref().unwrap().as_fd(), s.handshake.as_fd()] {
            let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert_ne!(flags & nix::libc::FD_CLOEXEC, 0);
        }
    }

    #[test]
    fn malformed_values_adopt_nothing() {
        let (a, b) = two_fds();
        let bad = [
            String::new(),
            format!("{a}"),
            format!("{a}:{b}"),
            format!("{a}:{b}:"),
            // A token of the wrong length, or not hex.
            format!("{a}:{b}:{}", &TOKEN[..30]),
            format!("{a}:{b}:{TOKEN}00"),
            format!("{a}:{b}:{}zz", &TOKEN[..30]),
            // Something after the token.
            format!("{a}:{b}:{TOKEN}:1"),
            // The same fd twice, a standard stream, a negative or non-numeric fd.
            format!("{a}:{a}:{TOKEN}"),
            format!("2:{b}:{TOKEN}"),
            format!("{a}:-1:{TOKEN}"),
            format!("x:{b}:{TOKEN}"),
            format!(" {a}:{b}:{TOKEN}"),
            // An fd that is not open.
            format!("{a}:1000000:{TOKEN}"),
        ];
        for v in &bad {
            assert!(Successor::parse(v).is_none(), "{v:?} was accepted");
        }
        // Nothing was adopted (an adopted fd would have been closed with the refused value).
        for fd in [a, b] {
            assert!(crate::handover::state::fd_is_open(fd), "fd {fd} was closed");
        }
        // The test owns them again, to close them.
        let s = Successor::parse(&format!("{a}:{b}:{TOKEN}"));
        assert!(s.is_some());
    }
}
