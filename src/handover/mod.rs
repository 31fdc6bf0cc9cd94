//! The handover: a re-exec hands every fd and the state of every actor to a new process
//! (docs/LIFECYCLE.md):
//! - [`reexec`]: the procedure's parts: spawning the successor and the handshake;
//! - [`state`]: what one process hands the next, in a versioned format, and the fds it carries;
//! - [`identity`]: which binary is serving, and its line of re-execs.

pub mod identity;
pub mod reexec;
pub mod state;
