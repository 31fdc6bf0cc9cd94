//! Control: who owns which log (docs/ARCHITECTURE.md, "Who owns what"):
//! - [`registry`]: the actor holding the table of domains and open paths;
//! - [`table`]: the registry's compact map (a slab of entries and a hash index of their ids);
//! - [`domain`]: the actor of one guest, owning its log streams and consoles;
//! - [`fanin`]: one answer from each of many actors, with a single wake-up;
//! - [`declared`]: the consoles of the config file, made to match it (start, re-exec, SIGHUP);
//! - [`persisted`]: the consoles added with `logdctl console add --persist`, and their file
//!   kept equal to them;
//! - [`stored`]: the pipes kept in systemd's fd store, their record, and their re-adoption after
//!   a crash.

pub(crate) mod declared;
pub mod domain;
pub mod fanin;
pub(crate) mod persisted;
pub(crate) mod recover;
pub mod registry;
pub(crate) mod stored;
pub mod table;
