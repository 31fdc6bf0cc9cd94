//! The old image's side of a re-exec (steps O1 to O6 in [`crate::handover`]), and its undoing
//! when the re-exec fails before the exec.
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
    self, GuardianFailure, HandoverError, Handshake, HandshakeError, PARK_TIMEOUT, READY_TIMEOUT,
};
use crate::handover::state::{Carrier, ListenerState, State};

impl Running {
    /// Re-execs (step O1: systemd hears of it). Returns only if it failed, with everything as it was (and `reply`, if any,
    /// hears why); on success the new image replaces this one, in the same process.
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

    /// Steps O2 to O6. Every failure goes through [`Running::undo`] before it is returned; on
    /// success this image is replaced by the new one, in the same process.
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
        // The fd store's record and the store itself whole before the exec ends the recorder's
        // thread (it batches its work for 50 ms).
        crate::control::stored::flush();
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
        let console = listener(&self.console, &mut carrier);
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
            ext: vec![crate::handover::state::StateExt::ConsoleSocket(console)],
        };
        let mut prepared = match reexec::prepare(&state) {
            Ok(p) => p,
            Err(e) => return Err(self.undo(e.into()).await),
        };
        drop(state);
        // O5: the guardian, which holds every fd while the new image takes over, and takes
        // over itself if that one does not (with these settings if it cannot read the file).
        let config = match self.cfg.effective_text() {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(cause = %e, "cannot write the settings in force for the guardian; it reads the file or uses the defaults");
                None
            }
        };
        let guardian = match reexec::spawn_guardian(&mut prepared, config.as_deref()) {
            Ok(g) => g,
            Err(e) => return Err(self.undo(e.into()).await),
        };
        let gpid = guardian.id();
        since("guardian spawned");
        let answer = match prepared
            .ours
            .try_clone()
            .and_then(|s| crate::handover::state::sockets::unix_stream(s.into()))
        {
            Ok(hs) => tokio::time::timeout(READY_TIMEOUT, reexec::recv(&hs)).await,
            Err(e) => Ok(Err(HandshakeError::Io(e))),
        };
        let failure = match answer {
            Ok(Ok(Handshake::Guarding)) => None,
            Ok(Ok(Handshake::Failed { reason })) => {
                Some(GuardianFailure::Refused { pid: gpid, reason })
            }
            Ok(Ok(said)) => Some(GuardianFailure::Unexpected { pid: gpid, said }),
            Ok(Err(HandshakeError::Closed)) => Some(GuardianFailure::Exited { pid: gpid }),
            Ok(Err(source)) => Some(GuardianFailure::Handshake { pid: gpid, source }),
            Err(_) => Some(GuardianFailure::NotReady { pid: gpid }),
        };
        if let Some(failure) = failure {
            let _ = reexec::send(&prepared.ours, &Handshake::Abort);
            let status = reap(guardian).await;
            return Err(self.undo(HandoverError::Guardian { failure, status }).await);
        }
        // The guardian is the main process while this pid changes images: if the new image
        // dies, systemd must not take that for the service's end (and kill the guardian). If
        // systemd cannot be told, there is no exec.
        if let Err(source) = crate::host::systemd::notify_sent_and_wait(
            &format!("MAINPID={gpid}"),
            std::time::Duration::from_secs(1),
        ) {
            let _ = reexec::send(&prepared.ours, &Handshake::Abort);
            reap(guardian).await;
            return Err(self
                .undo(HandoverError::NameGuardian {
                    guardian: gpid,
                    source,
                })
                .await);
        }
        // A stop asked for meanwhile wins over the re-exec: this process drains and exits. One
        // sent after this look stays pending (every thread blocks it) across the exec, and the
        // new image stops once it has taken over.
        if let Some(stop) = sig.stop_pending() {
            self.stop_requested = Some(stop);
            let _ = reexec::send(&prepared.ours, &Handshake::Abort);
            reap(guardian).await;
            return Err(self.undo(HandoverError::StopInstead).await);
        }
        since("guardian guarding");
        // O6: the new image, in place. From here on the guardian decides.
        tracing::info!(
            guardian = gpid,
            domains = n_domains,
            "handing everything over to the new image, in place"
        );
        if crate::handover::successor::sigterm_before_exec() {
            // For the tests: a stop sent at the worst moment, past the last look for one.
            tracing::warn!("LOGD_REEXEC_FAULT: sending this process SIGTERM just before the exec");
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGTERM);
        }
        let source = reexec::exec_in_place(exe, &prepared, gpid);
        // Still this image: the guardian is told, and names this pid main again.
        let _ = reexec::send(&prepared.ours, &Handshake::Abort);
        reap(guardian).await;
        Err(self
            .undo(HandoverError::Exec {
                exe: exe.to_owned(),
                source,
            })
            .await)
    }

    /// Puts everything back after a failed hand-over: close-on-exec on the carried fds, the
    /// actors thawed, the connections unparked, the accept loops running. Returns `why`.
    async fn undo(&mut self, why: HandoverError) -> HandoverError {
        let mut back = Carrier::back();
        back.fd(self.lock.file());
        for l in [
            Some(&self.main),
            Some(&self.admin),
            Some(&self.console),
            self.virtlogd.as_ref(),
        ]
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

/// Waits for the guardian to exit once told `Abort` (killing it if it does not within 3 s: it
/// names this pid `MAINPID` again first, behind a barrier of up to 1 s), and says how it ended.
async fn reap(mut child: std::process::Child) -> String {
    let waited = tokio::task::spawn_blocking(move || {
        for _ in 0..300 {
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
