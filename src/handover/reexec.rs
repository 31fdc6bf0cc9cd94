//! Re-exec: handing every pipe, socket and subscriber to a new process without losing a byte.
//!
//! On SIGUSR1 or `logdctl reexec` the serving process (the *old* one):
//! 1. stops accepting and parks every client connection between two requests ([`Handoff`]);
//! 2. freezes every domain: each takes in what its sources wrote so far, flushes it to its
//!    files, stops reading, and describes its streams ([`crate::handover::state`]);
//! 3. writes the state to a memfd, clears close-on-exec on exactly the fds the state names,
//!    and spawns the binary at the path resolved at start-up, with the same arguments;
//! 4. waits for the new process to say `Ready` (it has read the state, checked it came from
//!    its parent, and rebuilt every actor, still frozen), then answers `Go` and exits.
//!
//! If the binary cannot be run, exits, says `Failed`, or is not ready within
//! [`READY_TIMEOUT`], the old process answers `Abort` (or kills it), sets close-on-exec again,
//! thaws its actors and goes on serving: nothing was closed, so nothing is lost. A new process
//! told `Abort` exits without touching a single fd.
//!
//! While both processes hold the fds only one ever reads or writes them: the old one is frozen
//! from step 2 on, the new one starts only at `Go`. Bytes written meanwhile wait in the kernel
//! (pipe buffers, socket buffers, listen backlogs) and are read once, by the new process.
//!
//! A new process, not the same one: `exec` in place would leave nothing to fall back on when
//! the new binary is broken. So the pid changes at each re-exec; `<socket>.lock` holds the
//! current pid, and systemd is told `MAINPID` (docs/LIFECYCLE.md).
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
pub const ENV: &str = "LOGD_REEXEC";
/// How long the old process waits for the new one to be ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the old process waits for client connections to finish the request in hand.
pub const PARK_TIMEOUT: Duration = Duration::from_secs(1);
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
pub enum Phase {
    Running,
    Freezing,
    /// The new process has them; this one is about to exit.
    Committed,
}

/// A request to re-exec; `reply` hears why it failed (success is answered by the new process).
pub struct Trigger {
    /// Run this binary instead of the configured one.
    pub binary: Option<PathBuf>,
    pub reply: Option<oneshot::Sender<String>>,
}

/// What the client connections and the re-exec share.
pub struct Handoff {
    phase: watch::Sender<Phase>,
    /// The parked connections; None once the state has taken them (a connection parking
    /// later is not carried, so it must not be marked either).
    parked: Mutex<Option<Vec<ConnState>>>,
    live: AtomicUsize,
    trigger: mpsc::Sender<Trigger>,
}

/// Counts a live client connection (see [`Handoff::live`]).
pub struct Live(Arc<Handoff>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Handoff {
    /// The handoff and the receiving end of re-exec requests (the daemon's main loop).
    pub fn new() -> (Arc<Handoff>, mpsc::Receiver<Trigger>) {
        let (tx, rx) = mpsc::channel(4);
        let h = Handoff {
            phase: watch::Sender::new(Phase::Running),
            parked: Mutex::new(Some(Vec::new())),
            live: AtomicUsize::new(0),
            trigger: tx,
        };
        (Arc::new(h), rx)
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Resolves when connections must park.
    pub async fn freezing(&self) {
        let mut rx = self.phase.subscribe();
        let _ = rx.wait_for(|p| *p == Phase::Freezing).await;
    }

    /// Counts a connection as live until the guard drops.
    pub fn live(self: &Arc<Self>) -> Live {
        self.live.fetch_add(1, Ordering::SeqCst);
        Live(self.clone())
    }

    /// Parks a connection: `describe` marks its fd to be carried and describes it (None: it
    /// cannot be carried). Returns when the re-exec was abandoned and the connection goes on
    /// here (true if it had been marked); never returns once it is handed over. A connection
    /// that comes too late (the state has been written) is neither marked nor carried: it
    /// waits, and closes with this process.
    pub async fn park(&self, describe: impl FnOnce() -> Option<ConnState>) -> bool {
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
    pub fn ask(&self, binary: Option<PathBuf>) -> Option<oneshot::Receiver<String>> {
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
    pub async fn park_all(&self, timeout: Duration) -> Vec<ConnState> {
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
    pub fn resume(&self) {
        *self.parked.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
        self.phase.send_replace(Phase::Running);
    }

    /// The new process has everything: connections here stay parked until exit.
    pub fn commit(&self) {
        self.phase.send_replace(Phase::Committed);
    }
}

/// The handshake between the old process and the new one, over a socketpair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handshake {
    /// New → old: every actor is rebuilt, frozen; waiting for `Go`.
    Ready { pid: u32 },
    /// New → old: the state could not be restored (the new process exits).
    Failed { reason: String },
    /// Old → new: take over (the old process exits).
    Go,
    /// Old → new: exit without touching anything.
    Abort,
}

/// Why a handshake message could not be exchanged.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the other process closed the handshake")]
    Closed,
    #[error("handshake: {0}")]
    Protocol(#[from] codec::ProtocolError),
    #[error("handshake: {0}")]
    Io(#[from] std::io::Error),
}

/// Sends one handshake message (blocking: the socket buffer always has room for one).
pub fn send(sock: &std::os::unix::net::UnixStream, msg: &Handshake) -> Result<(), HandshakeError> {
    let frame = codec::encode_frame(msg, MAX_HANDSHAKE)?;
    (&*sock).write_all(&frame)?;
    Ok(())
}

/// Receives one handshake message.
pub async fn recv(sock: &tokio::net::UnixStream) -> Result<Handshake, HandshakeError> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        if let Some(m) = codec::decode_frame(&mut buf, MAX_HANDSHAKE)? {
            return Ok(m);
        }
        sock.readable().await?;
        match sock.try_read_buf(&mut buf) {
            Ok(0) => return Err(HandshakeError::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// What the old process hands to the new one at spawn time.
pub struct Spawned {
    pub child: std::process::Child,
    /// The old process's end of the handshake.
    pub handshake: std::os::unix::net::UnixStream,
}

/// Why the new process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
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
pub fn spawn(exe: &std::path::Path, state: &State) -> Result<Spawned, SpawnError> {
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

/// A new process's inheritance, found in [`ENV`].
pub struct Successor {
    state: std::fs::File,
    pub handshake: std::os::unix::net::UnixStream,
    token: [u8; 16],
    pub parent: u32,
    /// The log filter the old process had set at run time ([`crate::host::logging::CARRY_ENV`]).
    pub log_filter: Option<String>,
}

impl Successor {
    /// Reads and clears [`ENV`]; None when this process is not a re-exec's successor. Call
    /// before any thread starts.
    pub fn from_env() -> Option<Result<Successor, String>> {
        let filter = std::env::var(crate::host::logging::CARRY_ENV).ok();
        // Called before any other thread exists, so this races with nothing.
        std::env::remove_var(crate::host::logging::CARRY_ENV);
        let v = std::env::var(ENV).ok()?;
        std::env::remove_var(ENV);
        Some(
            Self::parse(&v)
                .map(|s| Successor {
                    log_filter: filter,
                    ..s
                })
                .ok_or_else(|| format!("malformed {ENV}={v:?}")),
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
        // SAFETY: both fds are open (checked above) and were passed by the parent for this use
        // only (LOGD_REEXEC names them and is removed above, so nothing adopts them twice).
        let (state, hs) = unsafe { (OwnedFd::from_raw_fd(state), OwnedFd::from_raw_fd(hs)) };
        for fd in [&state, &hs] {
            let _ = nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
        }
        Some(Successor {
            state: std::fs::File::from(state),
            handshake: std::os::unix::net::UnixStream::from(hs),
            token,
            parent: nix::unistd::getppid().as_raw() as u32,
            log_filter: None,
        })
    }

    /// Reads the state and checks it came from this process's parent.
    pub fn read_state(&mut self) -> Result<State, String> {
        let mut bytes = Vec::new();
        self.state
            .rewind()
            .and_then(|()| self.state.read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read the state: {e}"))?;
        crate::handover::state::decode(&bytes, self.parent, self.token).map_err(|e| e.to_string())
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
    pub async fn ready(&self) -> Result<(), String> {
        send(
            &self.handshake,
            &Handshake::Ready {
                pid: std::process::id(),
            },
        )
        .map_err(|e| e.to_string())?;
        let sock = self
            .handshake
            .try_clone()
            .and_then(|s| crate::handover::state::sockets::unix_stream(s.into()))
            .map_err(|e| format!("handshake socket: {e}"))?;
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
