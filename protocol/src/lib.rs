//! The wire protocol of logd.
//!
//! Everything that crosses logd's UNIX sockets is defined here, so the daemon, `logdctl` and any
//! other client (a management daemon, a test) agree on it byte for byte:
//!
//! - [`message`]: the request and response types, the handshake and the typed errors;
//! - [`codec`]: the frame format (a length prefix, then a bincode payload), the frame limits,
//!   and the only two functions that know the payload encoding ([`codec::encode`], [`codec::decode`]);
//! - [`fdpass`]: sending and receiving file descriptors with SCM_RIGHTS, with a cap per message;
//! - [`admin`]: the admin socket's requests and the snapshot of every live actor;
//! - [`client`]: a small blocking client that does the handshake and one request at a time;
//! - [`virtlogd`]: libvirt's virtlogd RPC (virNet framing, XDR), which logd also serves.
//!
//! `docs/protocol.md` in the repository describes the bytes. Nothing here depends on actix or on an
//! async runtime: the daemon drives these functions from tokio, the client from blocking sockets.

pub mod admin;
pub mod client;
pub mod codec;
pub mod fdpass;
pub mod message;
pub mod virtlogd;

pub use codec::{
    ProtocolError, MAX_FDS_PER_FRAME, MAX_READ_LEN, MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME,
};
pub use message::*;
