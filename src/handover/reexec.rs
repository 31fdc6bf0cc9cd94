//! The re-exec's parts: parking client connections ([`Handoff`]), writing the state
//! ([`prepare`]), starting the guardian ([`spawn_guardian`]), the exec in place
//! ([`exec_in_place`]), the handshake ([`Handshake`]), and why a re-exec fails before the exec
//! ([`HandoverError`]). The procedure that puts them together, step by step, is in
//! [`crate::handover`].

use std::ffi::OsString;
use std::io::{Read, Write};

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use logd_protocol::codec;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::handover::state::{Carrier, ConnState, State};

/// The environment variable that tells a new image it is a re-exec's successor:
/// `STATE_FD:HANDSHAKE_FD:TOKEN:GUARDIAN_PID` (without the pid, from a logd that spawned its
/// successor as a child).
pub(crate) const ENV: &str = "LOGD_REEXEC";
/// How long the old image waits for the guardian to guard, and the guardian for the new image
/// to be ready, then to run.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the old process waits for client connections to finish the request in hand.
pub(crate) const PARK_TIMEOUT: Duration = Duration::from_secs(1);
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
}

/// The handshake between the old process and the new one, over a socketpair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Handshake {
    /// New image → guardian: every actor is rebuilt, frozen; waiting for `Go`.
    Ready { pid: u32 },
    /// New image → guardian (which takes over), or guardian → old image (which does not
    /// exec): this process cannot take over, and exits.
    Failed { reason: String },
    /// Guardian → new image: take over.
    Go,
    /// Old image → guardian: the exec failed or was called off; exit without touching
    /// anything.
    Abort,
    /// New image → guardian, after `Go`: every domain is thawed and reading; the guardian may
    /// exit. Until then it keeps every fd, so a new image that dies before it
    /// says this loses no byte that was still in a pipe.
    Running,
    /// Guardian → old image: it runs, has read its configuration, and holds every fd; the old
    /// image may exec the new one. (`Running` and `Guarding` come after the others, which keep
    /// their encoding.)
    Guarding,
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

/// Why a re-exec failed before the exec. The old image goes on serving with everything it had:
/// nothing was closed on the way. (Once the exec has happened, a failure is the guardian's to
/// handle: [`crate::handover::guard`].)
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
    /// The guardian ran but did not say it guards; `status` says how it ended.
    #[error("{failure} ({status})")]
    Guardian {
        failure: GuardianFailure,
        status: String,
    },
    #[error("a stop signal came during the re-exec; stopping instead")]
    StopInstead,
    /// Under systemd, the guardian must be `MAINPID` before the exec: a new image that died
    /// while it was the main process would be taken for the service's end.
    #[error(
        "cannot name the guardian (pid {guardian}) MAINPID, so a new image that died would end \
         the service: {source}"
    )]
    NameGuardian {
        guardian: u32,
        source: crate::host::systemd::NotifyError,
    },
    #[error("cannot run {exe}: {source}")]
    Exec {
        exe: PathBuf,
        source: std::io::Error,
    },
}

/// What the guardian did instead of saying `Guarding`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GuardianFailure {
    #[error("the guardian (pid {pid}) could not start: {reason}")]
    Refused { pid: u32, reason: String },
    #[error("the guardian (pid {pid}) said {said:?}")]
    Unexpected { pid: u32, said: Handshake },
    #[error("the guardian (pid {pid}) exited before it was ready")]
    Exited { pid: u32 },
    #[error("the guardian (pid {pid}): {source}")]
    Handshake { pid: u32, source: HandshakeError },
    #[error("the guardian (pid {pid}) was not ready within {} s", READY_TIMEOUT.as_secs())]
    NotReady { pid: u32 },
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

/// Why the state could not be written, or the guardian started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    #[error("cannot write the state: {0}")]
    State(#[from] crate::handover::state::StateError),
    #[error("cannot create the state memfd or the handshake socket: {0}")]
    Setup(std::io::Error),
    #[error("cannot run the guardian (the running binary, {exe}): {source}")]
    Guardian {
        exe: PathBuf,
        source: std::io::Error,
    },
}

/// The state, written and ready to be handed over.
pub(crate) struct Prepared {
    memfd: std::fs::File,
    /// The serving pid's end of the handshake: the old image's, and across the exec the new
    /// image's.
    pub(crate) ours: std::os::unix::net::UnixStream,
    /// The guardian's end, until it is spawned.
    theirs: Option<std::os::unix::net::UnixStream>,
    token_hex: String,
}

/// Writes the state to a memfd (under a fresh random token) and makes the handshake socketpair.
pub(crate) fn prepare(state: &State) -> Result<Prepared, SpawnError> {
    let mut token = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut token))
        .map_err(SpawnError::Setup)?;
    let bytes = crate::handover::state::encode(state, token)?;
    let memfd =
        nix::sys::memfd::memfd_create(c"logd-state", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| SpawnError::Setup(e.into()))?;
    let mut memfd = std::fs::File::from(memfd);
    memfd.write_all(&bytes).map_err(SpawnError::Setup)?;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(SpawnError::Setup)?;
    Ok(Prepared {
        memfd,
        ours,
        theirs: Some(theirs),
        token_hex: token.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

/// The daemon's arguments and the run-time log filter, on a command that runs logd again.
fn same_daemon(cmd: &mut std::process::Command) {
    cmd.args(ARGS.get().cloned().unwrap_or_default());
    // A log filter set at run time (`logdctl log-level`) outlives the re-exec.
    match crate::host::logging::carried() {
        Some(f) => cmd.env(crate::host::logging::CARRY_ENV, f),
        None => cmd.env_remove(crate::host::logging::CARRY_ENV),
    };
}

/// Starts the guardian: the running binary (through its fd, whatever is on disk now), with the
/// memfd, its end of the handshake and every carried fd (which must be marked already), told
/// by [`GUARD_ENV`] which pid wrote the state, and by
/// [`GUARD_CONFIG_ENV`](GUARD_CONFIG_ENV) where the settings in
/// force are (`config`, a config file's text), for when it cannot read the file.
pub(crate) fn spawn_guardian(
    p: &mut Prepared,
    config: Option<&str>,
) -> Result<std::process::Child, SpawnError> {
    use std::io::{Seek, Write};
    let theirs = p.theirs.take().expect("one guardian per state");
    let config = match config {
        Some(text) => {
            let fd = nix::sys::memfd::memfd_create(
                c"logd-config",
                nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
            )
            .map_err(|e| SpawnError::Setup(e.into()))?;
            let mut f = std::fs::File::from(fd);
            f.write_all(text.as_bytes()).map_err(SpawnError::Setup)?;
            f.rewind().map_err(SpawnError::Setup)?;
            Some(f)
        }
        None => None,
    };
    let mut carrier = Carrier::out();
    let state_fd = carrier.fd(&p.memfd);
    let hs_fd = carrier.fd(&theirs);
    let config_fd = config.as_ref().map(|f| carrier.fd(f));
    carrier.finish().map_err(SpawnError::Setup)?;
    let id = crate::handover::identity::get();
    let exe = match &id.running {
        Some(f) => PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(f)
        )),
        None => PathBuf::from("/proc/self/exe"),
    };
    let mut cmd = std::process::Command::new(&exe);
    same_daemon(&mut cmd);
    cmd.env(
        GUARD_ENV,
        format!(
            "{}:{}:{}:{}",
            state_fd.raw,
            hs_fd.raw,
            p.token_hex,
            std::process::id()
        ),
    );
    match &config_fd {
        Some(fd) => cmd.env(GUARD_CONFIG_ENV, fd.raw.to_string()),
        None => cmd.env_remove(GUARD_CONFIG_ENV),
    };
    let child = cmd
        .spawn()
        .map_err(|source| SpawnError::Guardian { exe, source })?;
    // The guardian has its copies of its end and of the settings; ours close here.
    drop(theirs);
    drop(config);
    Ok(child)
}

/// Replaces this image with `exe`, in place (the pid stays), handing it the memfd and our end
/// of the handshake, whose other end the guardian (`guardian`, a pid) holds. Returns only if
/// the exec failed, with this image intact.
pub(crate) fn exec_in_place(exe: &std::path::Path, p: &Prepared, guardian: u32) -> std::io::Error {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let mut carrier = Carrier::out();
    let state_fd = carrier.fd(&p.memfd);
    let hs_fd = carrier.fd(&p.ours);
    if let Err(e) = carrier.finish() {
        return e;
    }
    let cstr = |b: &[u8]| CString::new(b).map_err(std::io::Error::other);
    let built = (|| -> std::io::Result<(CString, Vec<CString>, Vec<CString>)> {
        let path = cstr(exe.as_os_str().as_bytes())?;
        let mut argv = vec![path.clone()];
        for a in ARGS.get().cloned().unwrap_or_default() {
            argv.push(cstr(a.as_bytes())?);
        }
        let mut env = Vec::new();
        for (k, v) in std::env::vars_os() {
            if k == crate::host::logging::CARRY_ENV || k == ENV {
                continue;
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            env.push(cstr(&kv)?);
        }
        env.push(cstr(
            format!(
                "{ENV}={}:{}:{}:{guardian}",
                state_fd.raw, hs_fd.raw, p.token_hex
            )
            .as_bytes(),
        )?);
        // A log filter set at run time (`logdctl log-level`) outlives the re-exec.
        if let Some(f) = crate::host::logging::carried() {
            env.push(cstr(
                format!("{}={f}", crate::host::logging::CARRY_ENV).as_bytes(),
            )?);
        }
        Ok((path, argv, env))
    })();
    let e = match built {
        Ok((path, argv, env)) => {
            // Not std's exec, which clears the signal mask on the way: the purposeful signals
            // stay blocked (`daemon::signals`), and one sent now stays pending for the new
            // image's signalfd.
            let Err(e) = nix::unistd::execve(&path, &argv, &env);
            std::io::Error::from(e)
        }
        Err(e) => e,
    };
    // Still this image: the two fds go no further.
    let mut back = Carrier::back();
    back.fd(&p.memfd);
    back.fd(&p.ours);
    let _ = back.finish();
    e
}

/// The variable that names a guardian's memfd holding the old process's settings.
pub(crate) const GUARD_CONFIG_ENV: &str = "LOGD_REEXEC_GUARD_CONFIG";

/// The environment variable that makes a logd a re-exec's guardian:
/// `STATE_FD:HANDSHAKE_FD:TOKEN:WRITER_PID`.
pub(crate) const GUARD_ENV: &str = "LOGD_REEXEC_GUARD";
