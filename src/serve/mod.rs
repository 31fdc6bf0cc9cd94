//! The sockets and what they serve:
//! - [`server`]: the accept loop of every socket, and the main and admin sockets' connections
//!   and requests;
//! - [`admin`]: the admin requests that one response answers;
//! - [`virtlogd`]: the virtlogd socket, libvirt's RPC served from the same requests;
//! - [`shared`]: what every socket's connections share: their state, admission, the reply
//!   budget, writing a frame, parking for a re-exec;
//! - [`logs`]: the log requests, whichever socket they come in on;
//! - [`checks`]: the checks a request's fields pass before the registry sees them (logd's
//!   protocol; virtlogd's own flags and lengths are `virtlogd`'s);
//! - [`events`]: the bounded event bus behind `logdctl events`;
//! - [`metrics`]: the optional Prometheus endpoint.
//!
//! The modules are layered, with no way back: `server` dispatches to `virtlogd` and `admin`;
//! `server` and `virtlogd` serve the log requests of `logs` (methods of `Shared`); all three use
//! `shared` (the state, admission, parking); `server` and `logs` use `checks`, and so does
//! `host::consoles`, which checks the consoles of the config file by the same rules.

mod admin;
pub(crate) mod checks;
pub mod events;
mod logs;
pub mod metrics;
pub mod server;
mod shared;
pub mod virtlogd;
