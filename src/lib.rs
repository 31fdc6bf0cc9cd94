//! logd: a daemon that owns the stdio and console streams of virtual machines and caps their logs.
//!
//! The source tree is the design (docs/ARCHITECTURE.md tells the whole story):
//! - [`daemon`]: start-up, threads, listeners, signals and shutdown;
//! - [`datapath`]: a guest's bytes from its pipe to its log's files;
//! - [`console`]: a guest's serial chardev fanned out to its log and its subscribers;
//! - [`control`]: the registry and the actor of each domain;
//! - [`serve`]: the sockets (main, admin, virtlogd), their requests, events and metrics;
//! - [`handover`]: the re-exec that hands everything to a new process;
//! - [`host`]: configuration, paths, socket directories, systemd and logging;
//! - [`clock`]: the daemon's clocks;
//! - [`cli`]: what the binaries share in reporting to a person.
#![deny(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod console;
pub(crate) mod control;
pub mod daemon;
pub(crate) mod datapath;
pub(crate) mod handover;
pub(crate) mod host;
pub(crate) mod serve;

// The library's public surface: what the binaries use.
pub use console::telnet;
pub use datapath::rotate;
pub use handover::{identity, reexec, successor};
pub use host::{config, logging, sockdir};
