//! How a subscriber is shown: `UID:NAME` for a UNIX peer, `ADDR:PORT` for a TCP one.
//!
//! A uid's name comes from NSS (`getpwuid_r`), which may read files or ask a directory server,
//! and may take long. The console's thread never calls it: a name is looked up on tokio's
//! blocking pool, and kept in a small process-wide cache. A UNIX subscriber whose uid is not
//! cached yet waits for that lookup before it joins (its role is already decided, from numbers
//! alone), for at most [`NAME_WAIT`]; past that it is shown by number (`65534:65534`) and joins,
//! and the lookup still fills the cache for the next one.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a joining subscriber waits for its uid's name.
pub(crate) const NAME_WAIT: Duration = Duration::from_secs(1);
/// Most names kept (the cache is emptied when full: a host has few users that connect).
const MAX_NAMES: usize = 4096;

static NAMES: Mutex<Option<HashMap<u32, Arc<str>>>> = Mutex::new(None);

/// `UID:NAME` when the name is known, else `UID:UID`.
pub(crate) fn unix_identity(uid: u32, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{uid}:{n}"),
        None => format!("{uid}:{uid}"),
    }
}

/// The uid's name if a lookup has found it already.
pub(crate) fn cached_name(uid: u32) -> Option<Arc<str>> {
    let names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    names.as_ref().and_then(|m| m.get(&uid).cloned())
}

fn remember(uid: u32, name: Arc<str>) {
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let m = names.get_or_insert_with(HashMap::new);
    if m.len() >= MAX_NAMES {
        m.clear();
    }
    m.insert(uid, name);
}

/// A UNIX peer's identity once its name is looked up (on the blocking pool), or after
/// [`NAME_WAIT`] by number. A uid with no name shows as its number.
pub(crate) fn unix_identity_later(uid: u32) -> Pin<Box<dyn Future<Output = String>>> {
    Box::pin(async move {
        let lookup = tokio::task::spawn_blocking(move || {
            let name: Arc<str> = match nix::unistd::User::from_uid(uid.into()) {
                Ok(Some(u)) => u.name.into(),
                _ => uid.to_string().into(),
            };
            remember(uid, name.clone());
            name
        });
        match tokio::time::timeout(NAME_WAIT, lookup).await {
            Ok(Ok(name)) => unix_identity(uid, Some(&name)),
            _ => {
                tracing::warn!(uid, wait = ?NAME_WAIT, "no name for a subscriber's uid in time: shown by number");
                unix_identity(uid, None)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_is_shown_with_its_name_once_looked_up() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(unix_identity_later(0)), "0:root");
        assert_eq!(cached_name(0).as_deref(), Some("root"));
        // A uid without a name: its number.
        assert_eq!(
            rt.block_on(unix_identity_later(4_000_000_007)),
            "4000000007:4000000007"
        );
        assert_eq!(unix_identity(7, None), "7:7");
    }
}
