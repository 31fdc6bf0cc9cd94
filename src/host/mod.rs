//! What logd takes from the host it runs on:
//! - [`config`]: defaults, the TOML file and overrides;
//! - [`consoles`]: the consoles the file declares (`[[console]]`);
//! - [`persisted`]: the persisted consoles file (`logdctl console add --persist`), read and
//!   written whole;
//! - [`size`]: sizes in bytes or with a unit, as the file and command lines write them;
//! - [`paths`]: which log paths a client may name;
//! - [`sockdir`]: the directories of the sockets, trusted only when closed to other users;
//! - [`systemd`]: readiness notification and socket activation;
//! - [`fdstore`]: systemd's fd store (`FDSTORE=1`), and the names of the fds logd keeps there;
//! - [`logging`]: the daemon's own tracing, with a filter changeable at run time;
//! - [`process`]: this process's fds, memory and CPU time, from /proc.

pub mod config;
pub mod consoles;
pub(crate) mod fdstore;
pub mod logging;
pub mod paths;
pub mod persisted;
pub mod process;
pub(crate) mod size;
pub mod sockdir;
pub mod systemd;
