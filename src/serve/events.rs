//! The event bus: lifecycle events for `logdctl events`.
//!
//! Actors publish with [`emit`]; the admin socket's `Events` connections subscribe. The bus is a
//! bounded broadcast ring ([`CAPACITY`] events): publishing never blocks and never allocates
//! when nobody listens, and a listener that falls behind is told how many events it lost
//! instead of slowing anyone down.

use std::sync::OnceLock;

use logd_protocol::admin::{Event, EventKind};
use tokio::sync::broadcast;

/// Events kept for listeners that are behind.
pub const CAPACITY: usize = 1024;

fn bus() -> &'static broadcast::Sender<Event> {
    static BUS: OnceLock<broadcast::Sender<Event>> = OnceLock::new();
    BUS.get_or_init(|| broadcast::channel(CAPACITY).0)
}

/// Whether anyone listens (so callers can skip building an event).
pub fn wanted() -> bool {
    bus().receiver_count() > 0
}

/// Publishes an event built by `f`, if anyone listens.
pub fn emit(f: impl FnOnce() -> EventKind) {
    if wanted() {
        let _ = bus().send(Event {
            at_ms: crate::clock::now_unix_ms(),
            kind: f(),
        });
    }
}

/// A new listener.
pub fn subscribe() -> broadcast::Receiver<Event> {
    bus().subscribe()
}
