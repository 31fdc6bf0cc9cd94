//! A new process's inheritance: what `LOGD_REEXEC` (a re-exec's new image) or
//! `LOGD_REEXEC_GUARD` (its guardian) names, the state it reads, and its side of the handshake.
#![allow(unsafe_code)] // one block: adopting the two fds named in the environment, once they are known open

use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::handover::reexec::{
    recv, send, Handshake, HandshakeError, ENV, GUARD_CONFIG_ENV, GUARD_ENV, READY_TIMEOUT,
};
use crate::handover::state::State;

/// How long a new image waits for `Go` after `Ready`.
const GO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Which side of a re-exec this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A child of the old process, which waits on the handshake (a re-exec by a logd that did
    /// not yet exec in place: `LOGD_REEXEC` names no guardian).
    Child,
    /// The old process's pid, exec'd in place; the guardian, this pid's child, waits on the
    /// handshake.
    InPlace { guardian: u32 },
    /// The guardian: the old binary, holding every fd until the new image runs, and taking
    /// over if it does not.
    Guardian,
}

/// Makes a re-exec's new process fail at a given step the way a real fault would, so the tests
/// can show that no failure of the new image loses anything: `LOGD_REEXEC_FAULT=killed-in-restore`
/// (it is SIGKILLed once its domains are rebuilt), `hang-in-restore` (it stops there, for an
/// hour), `panic-after-ready` (it panics once it has said `Ready`, before it hears `Go`) or
/// `killed-after-go[:N]` (it thaws on `Go` and serves until its logs have rotated N more times
/// than the state says and nothing carried is left to deliver, then is SIGKILLed before it says
/// `Running`: see `take_over`). Read only by a successor, and removed at once, so it never
/// reaches the next re-exec. The tests set it in a wrapper that runs logd as the new binary;
/// nothing else should.
pub(crate) const FAULT_ENV: &str = "LOGD_REEXEC_FAULT";

/// A fault [`FAULT_ENV`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    KilledInRestore,
    HangInRestore,
    PanicAfterReady,
    /// The *old* image sends itself SIGTERM just before its exec (past its last look for a
    /// stop): [`sigterm_before_exec`].
    SigtermBeforeExec,
    /// Rotations to wait for beyond the state's, once thawed.
    KilledAfterGo {
        rotations: u64,
    },
}

/// Whether this process, as the old image of a re-exec, is to send itself SIGTERM just before
/// the exec (`LOGD_REEXEC_FAULT=sigterm-before-exec`, read at start by [`Successor::from_env`]).
pub(crate) fn sigterm_before_exec() -> bool {
    SIGTERM_BEFORE_EXEC.load(std::sync::atomic::Ordering::Relaxed)
}

static SIGTERM_BEFORE_EXEC: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

impl Fault {
    fn parse(v: &str) -> Option<Fault> {
        match v {
            "killed-in-restore" => Some(Fault::KilledInRestore),
            "hang-in-restore" => Some(Fault::HangInRestore),
            "panic-after-ready" => Some(Fault::PanicAfterReady),
            "sigterm-before-exec" => Some(Fault::SigtermBeforeExec),
            "killed-after-go" => Some(Fault::KilledAfterGo { rotations: 0 }),
            _ => {
                let n = v.strip_prefix("killed-after-go:")?.parse().ok()?;
                Some(Fault::KilledAfterGo { rotations: n })
            }
        }
    }
}

/// [`ENV`] or [`GUARD_ENV`] is set but does not name two inherited fds, a token and, where
/// one is due, a pid.
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

/// A new process's inheritance, found in [`ENV`] or [`GUARD_ENV`].
pub struct Successor {
    /// The memfd, until [`Successor::read_state`] has read it (it holds the whole state).
    state: Option<std::fs::File>,
    pub(crate) handshake: std::os::unix::net::UnixStream,
    token: [u8; 16],
    /// The pid that wrote the state (and serves until the take-over): the parent, this very
    /// pid (in place), or the guardian's parent.
    pub(crate) writer: u32,
    pub(crate) role: Role,
    /// The log filter the old process had set at run time ([`crate::host::logging::CARRY_ENV`]).
    pub log_filter: Option<String>,
    /// A fault to act out, for the tests ([`FAULT_ENV`]).
    fault: Option<Fault>,
    /// For a guardian: the settings the old process ran with, as a config file
    /// ([`crate::config::Config::effective_text`], [`GUARD_CONFIG_ENV`]), for when this binary
    /// cannot read the file now.
    pub config_text: Option<String>,
}

/// The most a carried configuration may be (1,024 consoles fit many times over).
const MAX_CONFIG_TEXT: u64 = 16 << 20;

/// Reads the settings the old process carried in the memfd `fd` names (closing it); None,
/// logged, if they cannot be read.
fn read_config(fd: &str) -> Option<String> {
    use std::io::Read;
    let fd: RawFd = fd.parse().ok().filter(|&n| n > 2)?;
    if !crate::handover::state::fd_is_open(fd) {
        return None;
    }
    // SAFETY: the fd is open (checked above) and nothing else owns it: the old image passed
    // it to this guardian for this use only, and `from_env`, the only caller, removed the
    // variable that names it before reading it, so it is adopted once.
    #[allow(unsafe_code)]
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut text = String::new();
    // Unreadable: the guardian falls back to the defaults, and says so.
    file.take(MAX_CONFIG_TEXT)
        .read_to_string(&mut text)
        .ok()
        .map(|_| text)
}

impl Successor {
    /// Reads and clears [`ENV`] and [`GUARD_ENV`]; None when this process is not a re-exec's
    /// new image or guardian. Call before any thread starts.
    pub fn from_env() -> Option<Result<Successor, MalformedEnv>> {
        let filter = std::env::var(crate::host::logging::CARRY_ENV).ok();
        let fault = std::env::var(FAULT_ENV).ok().and_then(|f| Fault::parse(&f));
        if fault == Some(Fault::SigtermBeforeExec) {
            SIGTERM_BEFORE_EXEC.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let guard = std::env::var(GUARD_ENV).ok();
        let v = std::env::var(ENV).ok();
        let config = std::env::var(GUARD_CONFIG_ENV).ok();
        // Called before any other thread exists, so this races with nothing.
        for var in [
            crate::host::logging::CARRY_ENV,
            FAULT_ENV,
            GUARD_ENV,
            ENV,
            GUARD_CONFIG_ENV,
        ] {
            std::env::remove_var(var);
        }
        let config_text = match (&guard, config) {
            (Some(_), Some(fd)) => read_config(&fd),
            _ => None,
        };
        let (parsed, v) = match (guard, v) {
            (Some(g), _) => (Self::parse(&g, true), g),
            (None, Some(v)) => (Self::parse(&v, false), v),
            (None, None) => return None,
        };
        Some(
            parsed
                .map(|s| Successor {
                    log_filter: filter,
                    fault,
                    config_text,
                    ..s
                })
                .ok_or(MalformedEnv(v)),
        )
    }

    /// `STATE:HS:TOKEN`, then the guardian's pid (in place) or, for a guardian, the writer's.
    fn parse(v: &str, guardian: bool) -> Option<Successor> {
        let mut it = v.split(':');
        let state: RawFd = it.next()?.parse().ok()?;
        let hs: RawFd = it.next()?.parse().ok()?;
        let hex = it.next()?;
        let pid: Option<u32> = match it.next() {
            Some(p) => Some(p.parse().ok().filter(|&p| p > 1)?),
            None => None,
        };
        if hex.len() != 32 || it.next().is_some() || state < 3 || hs < 3 || state == hs {
            return None;
        }
        let (role, writer) = match (guardian, pid) {
            (true, Some(writer)) => (Role::Guardian, writer),
            (true, None) => return None,
            (false, Some(guardian)) => (Role::InPlace { guardian }, std::process::id()),
            (false, None) => (Role::Child, nix::unistd::getppid().as_raw() as u32),
        };
        let mut token = [0u8; 16];
        for (i, b) in token.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        if !crate::handover::state::fd_is_open(state) || !crate::handover::state::fd_is_open(hs) {
            return None;
        }
        // SAFETY: both fds are open and distinct (checked above), and nothing else owns them:
        // the old image passed them for this use only, and `from_env`, the one caller outside
        // tests, removed the variable before parsing it, so nothing adopts them twice (the
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
            writer,
            role,
            log_filter: None,
            fault: None,
            config_text: None,
        })
    }

    /// Whether this process is a re-exec's guardian (the old binary, standing by).
    pub fn is_guardian(&self) -> bool {
        self.role == Role::Guardian
    }

    /// Says `Running` (every domain is thawed), then, off the serving path, waits until the
    /// other side has exited (it tells systemd `MAINPID` first, bounded) and calls `then`. A
    /// guardian that took over has nobody to tell.
    pub(crate) fn running(self, then: impl FnOnce() + 'static) {
        if self.role == Role::Guardian {
            then();
            return;
        }
        if let Err(e) = send(&self.handshake, &Handshake::Running) {
            tracing::warn!(cause = %e, "cannot tell the other process this one runs");
        }
        let hs = self
            .handshake
            .try_clone()
            .and_then(|s| crate::handover::state::sockets::unix_stream(s.into()));
        let role = self.role;
        actix_rt::spawn(async move {
            if let Ok(hs) = hs {
                // The other side says nothing more: this ends when it exits (closing its end).
                let _ = tokio::time::timeout(2 * READY_TIMEOUT, async {
                    while recv(&hs).await.is_ok() {}
                })
                .await;
            }
            // The guardian is this pid's child: reaped here, not left a zombie.
            if let Role::InPlace { guardian } = role {
                reap(guardian).await;
            }
            then();
        });
    }

    /// Acts out [`Fault::KilledInRestore`] if it was asked for: called once every domain is
    /// rebuilt.
    pub(crate) fn restored(&self) {
        match self.fault {
            Some(Fault::KilledInRestore) => {
                tracing::warn!("{FAULT_ENV}: killing this process in the middle of its take-over");
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            }
            Some(Fault::HangInRestore) => {
                tracing::warn!("{FAULT_ENV}: hanging in the middle of the take-over");
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
            _ => {}
        }
    }

    /// The rotations [`Fault::KilledAfterGo`] waits for (beyond the state's), if it was asked
    /// for.
    pub(crate) fn killed_after_go(&self) -> Option<u64> {
        match self.fault {
            Some(Fault::KilledAfterGo { rotations }) => Some(rotations),
            _ => None,
        }
    }

    /// Reads the state and checks it came from the pid that should have written it (this very
    /// pid, the parent, or the guardian's recorded writer) and the token. The memfd is closed
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
            self.writer,
            self.token,
        )?)
    }

    /// Tells the other side this process cannot take over, and exits at once: nothing it
    /// inherited is touched. The old process (a child's parent) goes on with all of it, or,
    /// for an image exec'd in place, the guardian takes over. A guardian that cannot start
    /// tells the old image, which then does not exec.
    pub fn refuse(&self, reason: &str) -> ! {
        tracing::error!("cannot take over from pid {}: {reason}", self.writer);
        let _ = send(
            &self.handshake,
            &Handshake::Failed {
                reason: reason.to_owned(),
            },
        );
        std::process::exit(1);
    }

    /// Says `Ready` and waits for the word of the other side (the old process, or the
    /// guardian). Returns when this process must take over (`Go`, or the other side died
    /// without a word); exits at once on `Abort`. A guardian has decided already: it returns
    /// at once.
    pub(crate) async fn ready(&self) -> Result<(), HandshakeError> {
        if self.role == Role::Guardian {
            return Ok(());
        }
        let said = send(
            &self.handshake,
            &Handshake::Ready {
                pid: std::process::id(),
            },
        );
        match (said, self.role) {
            (Ok(()), _) => {}
            // The guardian is gone: nobody else holds the fds to serve them.
            (Err(e), Role::InPlace { .. }) => {
                tracing::warn!(cause = %e, "the guardian is gone; taking over unguarded");
                return Ok(());
            }
            (Err(e), _) => return Err(e),
        }
        if self.fault == Some(Fault::PanicAfterReady) {
            panic!("{FAULT_ENV}: panicking after Ready, before Go");
        }
        let sock = self
            .handshake
            .try_clone()
            .and_then(|s| crate::handover::state::sockets::unix_stream(s.into()))?;
        let word = tokio::time::timeout(GO_TIMEOUT, recv(&sock)).await;
        // The other side is gone: the parent (a child's) or the guardian (in place). Either
        // way nobody else holds the fds to serve them.
        let gone = |closed: bool| match self.role {
            Role::Child => nix::unistd::getppid().as_raw() as u32 != self.writer,
            Role::InPlace { .. } => closed,
            Role::Guardian => false,
        };
        match word {
            Ok(Ok(Handshake::Go)) => Ok(()),
            Ok(Err(HandshakeError::Closed)) if gone(true) => {
                tracing::warn!("the other process died before saying go; taking over");
                Ok(())
            }
            Err(_) if gone(false) => {
                tracing::warn!("the other process died before saying go; taking over");
                Ok(())
            }
            other => {
                tracing::info!(answer = ?other.map(|r| r.map_err(|e| e.to_string())), "the old process goes on; exiting without touching anything");
                std::process::exit(1);
            }
        }
    }
}

/// Waits (a little) for the guardian, this pid's child, to be reaped once it has exited.
async fn reap(guardian: u32) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let pid = nix::unistd::Pid::from_raw(guardian as i32);
    for _ in 0..100 {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await
            }
            _ => return,
        }
    }
    tracing::warn!(
        guardian,
        "the re-exec's guardian has not exited; it is left behind"
    );
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
        let s = Successor::parse(&format!("{a}:{b}:{TOKEN}"), false).expect("well formed");
        assert_eq!(
            s.token,
            [
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]
        );
        assert_eq!(s.state.as_ref().unwrap().as_raw_fd(), a);
        assert_eq!(s.handshake.as_raw_fd(), b);
        assert_eq!(s.writer, nix::unistd::getppid().as_raw() as u32);
        assert_eq!(s.role, Role::Child);
        // Adopted fds go no further than this process: close-on-exec again.
        for fd in [s.state.as_ref().unwrap().as_fd(), s.handshake.as_fd()] {
            let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert_ne!(flags & nix::libc::FD_CLOEXEC, 0);
        }
    }

    #[test]
    fn the_fourth_field_names_the_guardian_or_for_a_guardian_the_writer() {
        let (a, b) = two_fds();
        let s = Successor::parse(&format!("{a}:{b}:{TOKEN}:4242"), false).expect("in place");
        assert_eq!(s.role, Role::InPlace { guardian: 4242 });
        assert_eq!(
            s.writer,
            std::process::id(),
            "an image exec'd in place wrote its own state"
        );
        drop(s);
        let (a, b) = two_fds();
        let s = Successor::parse(&format!("{a}:{b}:{TOKEN}:77"), true).expect("a guardian");
        assert_eq!(s.role, Role::Guardian);
        assert_eq!(s.writer, 77);
        drop(s);
        // A guardian must be told the writer; pids 0 and 1 are nobody's writer or guardian.
        let (a, b) = two_fds();
        for v in [
            format!("{a}:{b}:{TOKEN}"),
            format!("{a}:{b}:{TOKEN}:1"),
            format!("{a}:{b}:{TOKEN}:0"),
            format!("{a}:{b}:{TOKEN}:x"),
        ] {
            assert!(Successor::parse(&v, true).is_none(), "{v:?} was accepted");
        }
        // The test owns them again, to close them.
        assert!(Successor::parse(&format!("{a}:{b}:{TOKEN}"), false).is_some());
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
            assert!(Successor::parse(v, false).is_none(), "{v:?} was accepted");
        }
        // Nothing was adopted (an adopted fd would have been closed with the refused value).
        for fd in [a, b] {
            assert!(crate::handover::state::fd_is_open(fd), "fd {fd} was closed");
        }
        // The test owns them again, to close them.
        let s = Successor::parse(&format!("{a}:{b}:{TOKEN}"), false);
        assert!(s.is_some());
    }
}
