//! Every integration test of logd, in one binary (as ripgrep does): the real `logd` and
//! `logdctl`, driven through the kit in `harness/` (which wraps the `logd-kit` crate the bench
//! shares). The tests run in parallel threads of this one process, so none may change what the
//! process shares: its environment, working directory, umask, rlimits or signal dispositions.
//! A test that needs any of those changed sets it on the child it spawns.

mod harness;

mod access;
mod admin;
mod attach;
mod cli;
mod console;
mod declared;
mod e2e;
mod faults;
mod fdstore;
mod libvirt;
mod lifecycle;
mod notices;
mod persisted;
mod reexec;
mod roles;
mod shipping;
mod tls;
mod units;
mod virtlogd;
