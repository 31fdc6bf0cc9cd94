//! The daemon's signals: which ones it handles, and the stray ones it ignores so that no habit
//! of an operator or a tool can stop or kill it (logd(8), "SIGNALS").

use tokio::signal::unix::{signal, SignalKind};

use super::DaemonError;

/// The signals the daemon handles. No signal a daemon may be sent by habit is left at its
/// default action, which would kill or stop logd and every guest's log with it (logd(8),
/// "SIGNALS"):
/// - SIGTERM, SIGINT, SIGQUIT: drain every pipe, then stop;
/// - SIGUSR1: re-exec; SIGHUP: reload the configuration file;
/// - SIGUSR2, SIGALRM: logged and ignored;
/// - SIGPIPE: handled, so a vanished client is an EPIPE error;
/// - job control (SIGTSTP, SIGTTIN, SIGTTOU), resource limits (SIGXFSZ, SIGXCPU), timers and
///   I/O notices (SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGSTKFLT) and the real-time signals:
///   ignored ([`ignore_stray_signals`]).
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
    alrm: tokio::signal::unix::Signal,
    _pipe: tokio::signal::unix::Signal,
}

impl Signals {
    /// A stop signal received and not yet handled (taken: the caller acts on it).
    pub(crate) fn stop_pending(&mut self) -> Option<&'static str> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        [
            (&mut self.term, "SIGTERM"),
            (&mut self.int, "SIGINT"),
            (&mut self.quit, "SIGQUIT"),
        ]
        .into_iter()
        .find_map(|(s, name)| s.poll_recv(&mut cx).is_ready().then_some(name))
    }

    /// The next signal, and what it asks for.
    pub(crate) async fn next(&mut self) -> Sig {
        tokio::select! {
            _ = self.term.recv() => Sig::Stop("SIGTERM"),
            _ = self.int.recv() => Sig::Stop("SIGINT"),
            _ = self.quit.recv() => Sig::Stop("SIGQUIT"),
            _ = self.usr1.recv() => Sig::Reexec,
            _ = self.hup.recv() => Sig::Reload,
            _ = self.usr2.recv() => Sig::Ignored("SIGUSR2"),
            _ = self.alrm.recv() => Sig::Ignored("SIGALRM"),
        }
    }

    pub(crate) fn install() -> Result<Signals, DaemonError> {
        ignore_stray_signals()?;
        let s = |k| signal(k).map_err(DaemonError::Signals);
        Ok(Signals {
            term: s(SignalKind::terminate())?,
            int: s(SignalKind::interrupt())?,
            quit: s(SignalKind::quit())?,
            usr1: s(SignalKind::user_defined1())?,
            hup: s(SignalKind::hangup())?,
            usr2: s(SignalKind::user_defined2())?,
            alrm: s(SignalKind::alarm())?,
            // A vanished client must be an EPIPE error, never a fatal signal.
            _pipe: s(SignalKind::pipe())?,
        })
    }
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
        SIGTSTP, SIGTTIN, SIGTTOU, SIGXFSZ, SIGXCPU, SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGSTKFLT,
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
