//! The re-exec's guardian: the old binary, started by the old image just before it execs the
//! new one in place. It holds a copy of every carried fd and touches none. If the new image says
//! `Running`, the guardian exits and the pid never changed. If the new image dies, refuses or
//! hangs before that, the guardian takes over from the same state, and only then does logd's
//! pid change (to the guardian's).

use std::time::Duration;

use crate::handover::reexec::{recv, send, Handshake, HandshakeError, READY_TIMEOUT};
use crate::handover::state::Staleness;
use crate::handover::successor::Successor;

/// Why the guardian takes over: what the new image did instead of running.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GuardReason {
    #[error("the new binary (pid {pid}) could not take over: {reason}")]
    Refused { pid: u32, reason: String },
    #[error("the new binary (pid {pid}) exited before it was ready")]
    ExitedEarly { pid: u32 },
    #[error("the new binary (pid {pid}) said {said:?}")]
    Unexpected { pid: u32, said: Handshake },
    #[error("the new binary (pid {pid}): {source}")]
    Handshake { pid: u32, source: HandshakeError },
    #[error("the new binary (pid {pid}) was not ready within {} s (killed)", READY_TIMEOUT.as_secs())]
    NotReady { pid: u32 },
    #[error("the new binary (pid {pid}) was told to go and died before it ran")]
    DiedAfterGo { pid: u32 },
    #[error("the new binary (pid {pid}) was told to go and did not run within {} s (killed)", READY_TIMEOUT.as_secs())]
    NotRunning { pid: u32 },
}

/// Guards the re-exec. Returns why the guardian must take over, once the new image (the
/// writer's pid) is gone, and whether that image was told `Go` (it may then have used the
/// carried fds); exits this process when there is nothing to take over (the new image runs, or
/// the old one abandoned the exec).
pub(crate) async fn guard(succ: &Successor) -> (GuardReason, Staleness) {
    let pid = succ.writer;
    let hs = match succ
        .handshake
        .try_clone()
        .and_then(|s| crate::handover::state::sockets::unix_stream(s.into()))
    {
        Ok(hs) => hs,
        Err(e) => succ.refuse(&format!("cannot watch the handshake: {e}")),
    };
    if let Err(e) = send(&succ.handshake, &Handshake::Guarding) {
        succ.refuse(&format!("cannot tell the old image it is guarded: {e}"));
    }
    tracing::info!(writer = pid, "guarding the re-exec");
    let (reason, staleness) = match tokio::time::timeout(READY_TIMEOUT, recv(&hs)).await {
        Ok(Ok(Handshake::Ready { pid: ready })) if ready == pid => {
            match send(&succ.handshake, &Handshake::Go) {
                // Not sent: the new image never thawed.
                Err(source) => (GuardReason::Handshake { pid, source }, Staleness::Exact),
                Ok(()) => (
                    match tokio::time::timeout(READY_TIMEOUT, recv(&hs)).await {
                        Ok(Ok(Handshake::Running)) => {
                            // Only now is the new image main again: had it died before, systemd
                            // would have seen its main process die (and stopped the unit, the
                            // guardian with it). The new image waits for this exit before it
                            // notifies systemd itself.
                            crate::host::systemd::notify_and_wait(
                                &format!("MAINPID={pid}"),
                                Duration::from_secs(1),
                            );
                            tracing::info!(pid, "the new binary runs; the guardian exits");
                            crate::daemon::signals::forward_pending(nix::unistd::Pid::from_raw(
                                pid as i32,
                            ));
                            std::process::exit(0);
                        }
                        Ok(Ok(said)) => GuardReason::Unexpected { pid, said },
                        Ok(Err(HandshakeError::Closed)) => GuardReason::DiedAfterGo { pid },
                        Ok(Err(source)) => GuardReason::Handshake { pid, source },
                        Err(_) => GuardReason::NotRunning { pid },
                    },
                    Staleness::AfterGo,
                ),
            }
        }
        // The exec failed: the old image goes on, and is main again.
        Ok(Ok(Handshake::Abort)) => {
            crate::host::systemd::notify_and_wait(
                &format!("MAINPID={pid}"),
                Duration::from_secs(1),
            );
            crate::daemon::signals::forward_pending(nix::unistd::Pid::from_raw(pid as i32));
            std::process::exit(0);
        }
        Ok(Ok(Handshake::Failed { reason })) => {
            (GuardReason::Refused { pid, reason }, Staleness::Exact)
        }
        Ok(Ok(said)) => (GuardReason::Unexpected { pid, said }, Staleness::Exact),
        Ok(Err(HandshakeError::Closed)) => (GuardReason::ExitedEarly { pid }, Staleness::Exact),
        Ok(Err(source)) => (GuardReason::Handshake { pid, source }, Staleness::Exact),
        Err(_) => (GuardReason::NotReady { pid }, Staleness::Exact),
    };
    match staleness {
        Staleness::Exact => tracing::error!("re-exec failed: {reason}; the old binary takes over"),
        Staleness::AfterGo => tracing::error!(
            "re-exec failed: {reason}; the old binary takes over, from a state the new binary may \
             have used: logs are opened again by path, carried console input and subscriber \
             queues are dropped"
        ),
    }
    // Only one process may read the fds: the new image must be gone first.
    let writer = nix::unistd::Pid::from_raw(pid as i32);
    let gone = || nix::unistd::getppid() != writer;
    if !gone() {
        let _ = nix::sys::signal::kill(writer, nix::sys::signal::Signal::SIGKILL);
    }
    for _ in 0..500 {
        if gone() {
            return (reason, staleness);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A process that outlives SIGKILL is stuck in the kernel (a frozen file system): taking
    // over beside it could read a pipe twice. Nothing is left to do safely.
    tracing::error!(pid, "the new binary does not die; the guardian gives up");
    std::process::exit(1);
}
