//! The re-exec scenarios: while one domain is written to steadily and the others idle,
//! - `reexec_blackout_N` asks logd for re-execs on its admin socket and reads the blackout logd
//!   reports ([`blackout`]);
//! - `reexec_log_gap_N` and `virtlogd_reexec_log_gap_N` send SIGUSR1 to logd or to virtlogd and
//!   measure from outside, by the log file's size, how long the log stops growing ([`log_gap`],
//!   with its [`sampler`]).
//!
//! Both write through a [`steady`] writer.

mod blackout;
pub(crate) mod log_gap;
mod sampler;
mod steady;

pub(crate) use blackout::reexec_blackout;
pub(crate) use log_gap::{reexec_log_gap, GapDaemon};
