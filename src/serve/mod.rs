//! The sockets and what they serve:
//! - [`server`]: the main and admin sockets, their connections and requests, admission, and the
//!   log requests every socket shares;
//! - [`virtlogd`]: the virtlogd socket, libvirt's RPC served from the same requests;
//! - [`events`]: the bounded event bus behind `logdctl events`;
//! - [`metrics`]: the optional Prometheus endpoint.

pub mod events;
pub mod metrics;
pub mod server;
pub mod virtlogd;
