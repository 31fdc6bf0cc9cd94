//! The daemon's signals: which ones it handles, and the stray ones it ignores so that no habit
//! of an operator or a tool can stop or kill it (logd(8), "SIGNALS").

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tokio::io::unix::AsyncFd;

use super::DaemonError;

/// The signals a daemon is sent on purpose. They are blocked in every thread from the first
/// line of `main` ([`block_signals`]) and read from a signalfd: a signal the process is sent is
/// never taken by some thread's handler at a moment nobody looks (during a re-exec), and a
/// blocked signal stays pending across the exec, for the new image to read.
pub(crate) fn purposeful() -> SigSet {
    use Signal::*;
    let mut set = SigSet::empty();
    for sig in [SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM] {
        set.add(sig);
    }
    set
}

/// Blocks the purposeful signals in this thread, and so in every thread it starts: call it
/// first in `main`, before any thread exists. (A child started with `std::process::Command`
/// begins with an empty mask; the guardian, this same binary, blocks them again first.)
pub fn block_signals() {
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&purposeful()),
        None,
    );
}

/// The daemon's signals. No signal a daemon may be sent by habit is left at its default
/// action, which would kill or stop logd and every guest's log with it (logd(8), "SIGNALS"):
/// - SIGTERM, SIGINT, SIGQUIT: drain every pipe, then stop;
/// - SIGUSR1: re-exec; SIGHUP: reload the configuration file;
/// - SIGUSR2, SIGALRM: logged and ignored;
/// - SIGPIPE: ignored, so a vanished client is an EPIPE error;
/// - job control (SIGTSTP, SIGTTIN, SIGTTOU), resource limits (SIGXFSZ, SIGXCPU), timers and
///   I/O notices (SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGSTKFLT) and the real-time signals:
///   ignored ([`ignore_stray_signals`]).
///
/// The first seven are read from a signalfd ([`block_signals`] keeps them from any handler).
pub(crate) struct Signals {
    fd: AsyncFd<SignalFd>,
}

impl Signals {
    /// A stop signal received and not yet handled (taken: the caller acts on it). Any other
    /// signal stays pending, for whoever reads next (the new image of a re-exec).
    pub(crate) fn stop_pending(&mut self) -> Option<&'static str> {
        let mut stops = SigSet::empty();
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT] {
            stops.add(s);
        }
        let fd =
            SignalFd::with_flags(&stops, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok()?;
        let info = fd.read_signal().ok()??;
        Some(name(info.ssi_signo as i32))
    }

    /// The next signal, and what it asks for.
    pub(crate) async fn next(&mut self) -> Sig {
        loop {
            let mut ready = match self.fd.readable().await {
                Ok(r) => r,
                Err(e) => {
                    // Never: the fd is ours. Do not spin on it.
                    tracing::error!(cause = %e, "cannot wait for signals");
                    return std::future::pending().await;
                }
            };
            match self.fd.get_ref().read_signal() {
                Ok(Some(info)) => {
                    let signo = info.ssi_signo as i32;
                    return match Signal::try_from(signo) {
                        Ok(Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT) => {
                            Sig::Stop(name(signo))
                        }
                        Ok(Signal::SIGUSR1) => Sig::Reexec,
                        Ok(Signal::SIGHUP) => Sig::Reload,
                        _ => Sig::Ignored(name(signo)),
                    };
                }
                Ok(None) => ready.clear_ready(),
                Err(e) => {
                    tracing::warn!(cause = %e, "reading a signal failed");
                    ready.clear_ready();
                }
            }
        }
    }

    pub(crate) fn install() -> Result<Signals, DaemonError> {
        ignore_stray_signals()?;
        // Already blocked by `main`; again, for a caller that did not.
        block_signals();
        let fd = SignalFd::with_flags(
            &purposeful(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )
        .map_err(|e| DaemonError::Signals(e.into()))?;
        // SAFETY: the `SignalFd` owns its fd and closes it only when dropped, which the
        // `AsyncFd` does after it deregisters; `SignalFd::as_raw_fd` always returns that fd,
        // and nothing replaces the `SignalFd` (`get_mut` is never called).
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| DaemonError::Signals(e.into_parts().1))?;
        Ok(Signals { fd })
    }
}

/// Sends `to` the purposeful signals pending here: a guardian that exits hands on what it was
/// sent while it was the main process (a `systemctl reload` during the re-exec is a SIGUSR1 to
/// `$MAINPID`, the guardian's pid then).
pub(crate) fn forward_pending(to: nix::unistd::Pid) {
    let Ok(fd) = SignalFd::with_flags(
        &purposeful(),
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    ) else {
        return;
    };
    while let Ok(Some(info)) = fd.read_signal() {
        if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
            tracing::info!(signal = %sig, pid = %to, "passing on a signal the guardian was sent");
            let _ = nix::sys::signal::kill(to, sig);
        }
    }
}

/// A signal's name, for logs.
fn name(signo: i32) -> &'static str {
    Signal::try_from(signo).map_or("a signal", Signal::as_str)
}

/// What a signal asks of the daemon.
pub(crate) enum Sig {
    Stop(&'static str),
    Reexec,
    Reload,
    Ignored(&'static str),
}

/// Sets the signals logd neither needs nor wants to die or stop of to SIG_IGN: job control
/// (a daemon stopped by a stray ^Z stalls every guest), SIGXFSZ (a write past RLIMIT_FSIZE is
/// then EFBIG, a disk error logd counts), SIGXCPU, the profiling and I/O notices whose default
/// is to terminate, and every real-time signal.
fn ignore_stray_signals() -> Result<(), DaemonError> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal::*};
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    let fixed = [
        SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU, SIGXFSZ, SIGXCPU, SIGVTALRM, SIGPROF, SIGIO, SIGPWR,
        SIGSTKFLT,
    ]
    .map(|s| s as i32);
    let realtime = nix::libc::SIGRTMIN()..=nix::libc::SIGRTMAX();
    for signo in fixed.into_iter().chain(realtime) {
        let set = |sig| {
            // SAFETY: SIG_IGN installs no handler code, so nothing runs in signal context;
            // the previous disposition is not used.
            #[allow(unsafe_code)]
            unsafe {
                sigaction(sig, &ignore)
            }
        };
        let res = match nix::sys::signal::Signal::try_from(signo) {
            Ok(sig) => set(sig).map(drop),
            // Real-time signals have no `Signal` value: the raw call.
            Err(_) => ignore_raw(signo),
        };
        res.map_err(|e| DaemonError::Signals(e.into()))?;
    }
    Ok(())
}

/// SIG_IGN for a signal number nix has no name for (the real-time ones).
fn ignore_raw(signo: i32) -> nix::Result<()> {
    // SAFETY: SIG_IGN runs no code in signal context; `signal` only sets the disposition.
    #[allow(unsafe_code)]
    let old = unsafe { nix::libc::signal(signo, nix::libc::SIG_IGN) };
    if old == nix::libc::SIG_ERR {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}
