//! The old process's side of a re-exec (steps O1 to O7 in [`crate::handover`]), and its undoing
//! when the new process does not take over.
//!
//! These are methods of the daemon's `Running`: the procedure moves the daemon's own listeners,
//! lock file and actors, so it needs them all, but it is kept here, beside the state format and
//! the new process's side, so that the whole handover reads in one folder.

use std::path::Path;

use logd_protocol::admin::{EventKind, ReexecReport};
use tokio::sync::oneshot;

use crate::control::registry::{self, ThawCause};
use crate::daemon::listen::Listener;
use crate::daemon::signals::Signals;
use crate::daemon::Running;
use crate::handover::reexec::{
    self, HandoverError, Handshake, HandshakeError, SuccessorFailure, PARK_TIMEOUT, READY_TIMEOUT,
};
use crate::handover::state::{Carrier, ListenerState, State};

impl Running {
    /// Re-execs (step O1: systemd hears of it). Returns only if it failed, with everything as it was (and `reply`, if any,
    /// hears why); on success this process exits.
    pub(crate) async fn reexec(
        &mut self,
        sig: &mut Signals,
        binary: Option<std::path::PathBuf>,
        reply: Option<oneshot::Sender<HandoverError>>,
    ) {
        let asked = crate::clock::mono_ns();
        let asked_ms = crate::clock::now_unix_ms();
        let exe = binary
            .or_else(|| self.cfg.binary.clone())
            .unwrap_or_else(|| crate::handover::identity::get().exe.clone());
        tracing::info!(exe = %exe.display(), "re-exec: handing over to a new process");
        crate::host::systemd::notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=re-executing",
            asked / 1000
        ));
        let Err(why) = self.hand_over(&exe, asked, sig).await;
        let reason = why.to_string();
        tracing::error!("re-exec failed; this process goes on serving: {reason}");
        crate::handover::identity::set_last_reexec(ReexecReport {
            at_ms: asked_ms,
            from_pid: std::process::id(),
            to_pid: std::process::id(),
            error: Some(reason.clone()),
            blackout_us: 0,
            total_us: (crate::clock::mono_ns().saturating_sub(asked)) / 1000,
            domains: 0,
            fds: 0,
        });
        crate::serve::events::emit(|| EventKind::ReexecFailed { reason });
        if let Some(r) = reply {
            let _ = r.send(why);
        }
        crate::host::systemd::notify("READY=1\nSTATUS=serving (the last re-exec failed)");
    }

    /// Steps O2 to O7. Every failure goes through [`Running::undo`] before it is returned.
    async fn hand_over(
        &mut self,
        exe: &Path,
        asked: u64,
        sig: &mut Signals,
    ) -> Result<std::convert::Infallible, HandoverError> {
        let since = |what: &str| {
            tracing::debug!(
                us = crate::clock::mono_ns().saturating_sub(asked) / 1000,
                "re-exec: {what}"
            )
        };
        // O2, O3: stop accepting, park the connections.
        self.stop_accepting().await;
        let connections = self.handoff.park_all(PARK_TIMEOUT).await;
        since("connections parked");
        // O4: freeze the domains.
        let frozen = crate::clock::mono_ns();
        let domains = match self.registry.send(registry::Freeze).await {
            Ok(Ok(d)) => d,
            // Some domains may have frozen and marked their fds: undo thaws them.
            Ok(Err(e)) => return Err(self.undo(e.into()).await),
            Err(_) => return Err(self.undo(HandoverError::RegistryStopped).await),
        };
        since("domains frozen");
        // O5: the daemon's own fds, then the state, then the new process.
        let mut carrier = Carrier::out();
        let lock = carrier.fd(self.lock.file());
        let listener = |l: &Listener, c: &mut Carrier| ListenerState {
            fd: c.fd(l.listener.as_ref().expect("accepting stopped")),
            path: l.path.clone(),
            owned: l.owned,
        };
        let main = listener(&self.main, &mut carrier);
        let admin = listener(&self.admin, &mut carrier);
        let virtlogd = self.virtlogd.as_ref().map(|v| listener(v, &mut carrier));
        let metrics = self.metrics.as_ref().map(|l| carrier.fd(l));
        if let Err(e) = carrier.finish() {
            return Err(self.undo(HandoverError::MarkListener(e)).await);
        }
        let lineage = crate::handover::identity::lineage();
        let n_domains = domains.len();
        let state = State {
            asked_mono_ns: asked,
            frozen_mono_ns: frozen,
            started_ms: lineage.started_ms,
            uptime_ms: crate::handover::identity::uptime_ms(),
            reexecs: lineage.reexecs,
            lock,
            main,
            admin,
            metrics,
            next_subscriber_id: crate::console::next_subscriber_id(),
            domains,
            connections,
            virtlogd,
        };
        let spawned = match reexec::spawn(exe, &state) {
            Ok(s) => s,
            Err(e) => return Err(self.undo(e.into()).await),
        };
        drop(state);
        since("new process spawned");
        // O6: its word.
        let hs = match spawned
            .handshake
            .try_clone()
            .and_then(|s| crate::handover::state::sockets::unix_stream(s.into()))
        {
            Ok(hs) => Some(hs),
            Err(e) => {
                tracing::warn!(cause = %e, "re-exec: cannot watch the handshake");
                None
            }
        };
        let answer = match &hs {
            Some(hs) => tokio::time::timeout(READY_TIMEOUT, reexec::recv(hs)).await,
            None => Ok(Err(HandshakeError::Closed)),
        };
        let pid = spawned.child.id();
        since("answer from the new process");
        // A stop asked for meanwhile wins over the re-exec: this process drains and exits.
        let stop = match answer {
            Ok(Ok(Handshake::Ready { .. })) => sig.stop_pending(),
            _ => None,
        };
        let failure = match answer {
            Ok(Ok(Handshake::Ready { .. })) if stop.is_some() => {
                self.stop_requested = stop;
                SuccessorFailure::StopInstead { pid }
            }
            // O7: the lock file names the new process, which is told to go; once it runs,
            // systemd is told, and this process exits.
            Ok(Ok(Handshake::Ready { pid: ready })) if ready == pid => {
                self.lock.write_pid_of(pid);
                match reexec::send(&spawned.handshake, &Handshake::Go) {
                    Ok(()) => {
                        let hs = hs.as_ref().expect("an answer came through it");
                        match self.until_running(hs, pid).await {
                            Ok(()) => {
                                self.handoff.commit();
                                // systemd must know the new main process before this one exits.
                                crate::host::systemd::notify_and_wait(
                                    &format!("MAINPID={pid}"),
                                    std::time::Duration::from_secs(1),
                                );
                                tracing::info!(
                                    pid,
                                    domains = n_domains,
                                    "handed everything over to the new process; exiting"
                                );
                                std::process::exit(0);
                            }
                            Err(f) => {
                                self.lock.write_pid();
                                f
                            }
                        }
                    }
                    Err(source) => {
                        self.lock.write_pid();
                        SuccessorFailure::GoneBeforeGo { pid, source }
                    }
                }
            }
            Ok(Ok(Handshake::Failed { reason })) => SuccessorFailure::Refused { pid, reason },
            Ok(Ok(said)) => SuccessorFailure::Unexpected { pid, said },
            Ok(Err(HandshakeError::Closed)) => SuccessorFailure::ExitedEarly { pid },
            Ok(Err(source)) => SuccessorFailure::Handshake { pid, source },
            Err(_) => SuccessorFailure::NotReady { pid },
        };
        let _ = reexec::send(&spawned.handshake, &Handshake::Abort);
        let status = reap(spawned.child).await;
        Err(self
            .undo(HandoverError::Successor { failure, status })
            .await)
    }

    /// After `Go`: waits for the new process to say it runs. Until then this process holds
    /// every fd, frozen: if the new one dies first, nothing still in a pipe is lost, and this
    /// one goes on (what the new one had read, if it had thawed already, dies with it).
    async fn until_running(
        &self,
        hs: &tokio::net::UnixStream,
        pid: u32,
    ) -> Result<(), SuccessorFailure> {
        match tokio::time::timeout(READY_TIMEOUT, reexec::recv(hs)).await {
            Ok(Ok(Handshake::Running)) => Ok(()),
            Ok(Ok(said)) => Err(SuccessorFailure::Unexpected { pid, said }),
            Ok(Err(HandshakeError::Closed)) => Err(SuccessorFailure::DiedAfterGo { pid }),
            Ok(Err(source)) => Err(SuccessorFailure::Handshake { pid, source }),
            Err(_) => Err(SuccessorFailure::NotRunning { pid }),
        }
    }

    /// Puts everything back after a failed hand-over: close-on-exec on the carried fds, the
    /// actors thawed, the connections unparked, the accept loops running. Returns `why`.
    async fn undo(&mut self, why: HandoverError) -> HandoverError {
        let mut back = Carrier::back();
        back.fd(self.lock.file());
        for l in [Some(&self.main), Some(&self.admin), self.virtlogd.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Some(l) = &l.listener {
                back.fd(l);
            }
        }
        if let Some(l) = &self.metrics {
            back.fd(l);
        }
        let _ = back.finish();
        let _ = self
            .registry
            .send(registry::Thaw {
                cause: ThawCause::Abandoned,
            })
            .await;
        self.handoff.resume();
        self.start_accepting();
        why
    }
}

/// Waits for a failed new process to exit (killing it if it does not), and says how it ended.
async fn reap(mut child: std::process::Child) -> String {
    let waited = tokio::task::spawn_blocking(move || {
        for _ in 0..100 {
            if let Ok(Some(st)) = child.try_wait() {
                return st.to_string();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        child
            .wait()
            .map(|st| format!("killed: {st}"))
            .unwrap_or_else(|e| e.to_string())
    })
    .await;
    waited.unwrap_or_else(|e| e.to_string())
}
