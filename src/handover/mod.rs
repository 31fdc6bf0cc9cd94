//! The handover: on SIGUSR1 or `logdctl reexec`, the serving process (the *old* one) hands
//! every fd it holds, and the state of every actor, to a new process, and exits. Not a byte is
//! lost, and if anything fails before the new process is told to go, the old one goes on as if
//! nothing had happened. docs/LIFECYCLE.md tells it for operators, with who holds which fd.
//!
//! The old process ([`hand_over`]):
//! - O1. tells systemd it is reloading;
//! - O2. stops accepting: the accept loops hand back their listeners, still open;
//! - O3. parks every client connection between two requests ([`reexec::Handoff`]), waiting at
//!   most [`reexec::PARK_TIMEOUT`] for those busy with one;
//! - O4. freezes every domain, all at once, with no drain: each stops reading, and describes
//!   its streams with their fds marked to be carried. What it had read is in its files already
//!   (writes are synchronous); what its sources write from now on waits in the kernel;
//! - O5. writes the [`state`] to a memfd, clears close-on-exec on exactly the fds it names, and
//!   spawns the binary as a child with the same arguments ([`reexec::spawn`]);
//! - O6. waits at most [`reexec::READY_TIMEOUT`] for the new process's word ([`reexec::Handshake`]);
//! - O7. on `Ready`: names the new pid in the lock file and answers `Go`; on `Running` (at most
//!   [`reexec::READY_TIMEOUT`] later; until then it keeps every fd), names it to systemd and
//!   exits.
//!
//! Any other word, or none, and it answers `Abort` (or kills the child), sets close-on-exec
//! again, thaws its actors, unparks the connections and accepts again ([`reexec::HandoverError`]
//! says why).
//!
//! The new process ([`take_over`]):
//! - N1. finds the memfd, its handshake end and a token in `LOGD_REEXEC` ([`reexec::Successor`]);
//! - N2. reads the configuration (in `main`);
//! - N3. reads the state, checking the magic, the version, its parent's pid and the token;
//! - N4. adopts each fd the state names, checking it is the file described ([`state::Inherited`]);
//! - N5. rebuilds the daemon and every domain on its worker, all frozen;
//! - N6. says `Ready` and waits for `Go` (`Abort`: it exits without touching a single fd);
//! - N7. on `Go`: thaws the domains and says `Running`, writes its pid, accepts, resumes each
//!   parked connection, and tells systemd it is ready once the old process has exited.
//!
//! Any failure before `Go` is told to the old process as `Failed` ([`take_over`]'s
//! `TakeOverError`), and the new process exits.
//!
//! While both processes hold the fds, only one ever reads or writes them: the old one is
//! frozen from O4 on, the new one starts only at N7. A new process that dies before `Running`
//! is a failed re-exec: the old one still holds everything.
//!
//! A new process, not the same one: `exec` in place would leave nothing to fall back on when
//! the new binary is broken. So the pid changes at each re-exec; `<socket>.lock` holds the
//! current pid, and systemd is told `MAINPID`.
//!
//! The modules:
//! - [`hand_over`] and [`take_over`]: the two sides of the procedure, step by step;
//! - [`reexec`]: its parts: parking, spawning, the handshake, the successor, the errors;
//! - [`state`]: what one process hands the next, in a versioned format, and the fds it carries;
//! - [`identity`]: which binary is serving, and its line of re-execs.

pub(crate) mod hand_over;
pub mod identity;
pub mod reexec;
pub(crate) mod state;
pub(crate) mod take_over;
