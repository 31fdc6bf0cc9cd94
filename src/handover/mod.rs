//! The handover: on SIGUSR1 or `logdctl reexec`, the serving image (the *old* one) hands every
//! fd it holds, and the state of every actor, to a new image of the binary, which replaces it in
//! the same process: the pid stays. Not a byte is lost, and if the new image fails, the old
//! binary goes on: in the same process if the exec itself failed, or else in its guardian.
//! docs/LIFECYCLE.md tells it for operators, with who holds which fd.
//!
//! The old image ([`hand_over`]):
//! - O1. tells systemd it is reloading;
//! - O2. stops accepting: the accept loops hand back their listeners, still open;
//! - O3. parks every client connection between two requests ([`reexec::Handoff`]), waiting at
//!   most [`reexec::PARK_TIMEOUT`] for those busy with one;
//! - O4. freezes every domain, all at once, with no drain: each stops reading, and describes
//!   its streams with their fds marked to be carried. What it had read is in its files already
//!   (writes are synchronous); what its sources write from now on waits in the kernel;
//! - O5. writes the [`state`] to a memfd ([`reexec::prepare`]), clears close-on-exec on exactly
//!   the fds it names, and starts the **guardian** ([`guard`]): the running binary again, by
//!   its fd, which inherits every carried fd and touches none. It waits at most
//!   [`reexec::READY_TIMEOUT`] for the guardian's `Guarding` (it has read its configuration);
//! - O6. names the guardian `MAINPID` to systemd (under systemd, a message that cannot be sent
//!   calls the exec off), and execs the new binary in place ([`reexec::exec_in_place`]), with
//!   the purposeful signals blocked so that one sent now waits for the new image's handlers.
//!
//! Until the exec, any failure (the guardian does not say `Guarding` or cannot be named
//! `MAINPID`, a stop signal came, the exec itself fails) answers the guardian `Abort`, sets close-on-exec again, thaws the actors,
//! unparks the connections and accepts again ([`reexec::HandoverError`] says why). Nothing was
//! closed, and the pid never changed.
//!
//! The new image ([`take_over`]), in the same pid:
//! - N1. finds the memfd, its handshake end, a token and the guardian's pid in `LOGD_REEXEC`
//!   ([`successor::Successor`]);
//! - N2. reads the configuration (in `main`);
//! - N3. reads the state, checking the magic, the version, that this very pid wrote it, and the
//!   token;
//! - N4. adopts each fd the state names, checking it is the file described ([`state::Inherited`]);
//! - N5. rebuilds the daemon and every domain on its worker, all frozen;
//! - N6. says `Ready` to the guardian and waits for `Go`; the guardian names this pid `MAINPID`
//!   again first;
//! - N7. on `Go`: thaws the domains and says `Running` (the guardian exits, and is reaped),
//!   accepts, resumes each parked connection, and tells systemd it is ready.
//!
//! The guardian takes over (with [`take_over`] too, from the same state) if the new image says
//! `Failed`, dies, or hangs (it is then killed) before `Running`. If it had said `Go`, the new
//! image may have used the fds: the state is [`state::Staleness::AfterGo`], and the guardian
//! opens the logs again by path and drops carried console input and subscriber queues rather
//! than send anything twice. Only then does the pid change,
//! to the guardian's; systemd knows it already. While several processes hold the fds, only one
//! ever reads or writes them: the old image is frozen from O4 and gone at O6, the new image
//! reads only after `Go`, and the guardian only once the new image is gone.
//!
//! A new image of logd older than this procedure (a child of the old process, named by a
//! three-field `LOGD_REEXEC`) is still taken over from: [`successor::Role::Child`].
//!
//! The modules:
//! - [`hand_over`], [`take_over`] and [`guard`]: the three roles, step by step;
//! - [`reexec`]: the parts: parking, the state's memfd, the guardian's start, the exec, the
//!   handshake, the errors before the exec;
//! - [`successor`]: what a new image or a guardian inherits, and its side of the handshake;
//! - [`state`]: what one image hands the next, in a versioned format, and the fds it carries;
//! - [`identity`]: which binary is serving (and its fd, for the guardian), and its line of
//!   re-execs.

pub(crate) mod guard;
pub(crate) mod hand_over;
pub mod identity;
pub mod reexec;
pub(crate) mod state;
pub mod successor;
pub(crate) mod take_over;
