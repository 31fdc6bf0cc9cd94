//! What logd tells a console's subscribers of its own (notices), and the marks it may write in
//! the console's log: their settings and their exact text (docs/CONSOLES.md, "Notices").
//!
//! A notice is logd's line, never console output: the console queues it to its subscribers
//! only, in order with the output ([`super::subscriber::Subscriber::notice`] frames it as
//! `\r\n[logd: TEXT]\r\n`), never to the replay ring or the log. A mark is the one exception a
//! console may opt into (`mark_log`): the guest's comings and goings, written in the log as
//! conserver writes `[-- Console up --]`.

use logd_protocol::WritePolicy;
use serde::{Deserialize, Serialize};

use super::Role;

/// A console's notice settings. The default: subscribers are told, the log is left as the
/// guest wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Notices {
    /// Subscribers get logd's notices in their stream (`notices`, default true). Off, a
    /// subscriber's stream is the console's output byte for byte, up to its last words.
    pub(crate) subscribers: bool,
    /// The guest's connections and disconnections are marked in the log (`mark_log`, default
    /// false).
    pub(crate) mark_log: bool,
}

impl Default for Notices {
    fn default() -> Self {
        Notices {
            subscribers: true,
            mark_log: false,
        }
    }
}

/// A subscriber as notices name it: `PEER (subscriber ID)`.
pub(crate) fn who(peer: &str, id: u64) -> String {
    format!("{peer} (subscriber {id})")
}

/// The greeting each subscriber gets first: the console, its role, who may type (the lock's
/// holder in exclusive mode, `holder` the name of another subscriber holding it), and whether
/// the guest is there.
pub(crate) fn greeting(
    console: &str,
    role: Role,
    write: WritePolicy,
    you_hold: bool,
    holder: Option<&str>,
    guest: bool,
) -> String {
    let typing = match write {
        WritePolicy::Exclusive if you_hold => "you are read-write and hold the write lock".into(),
        WritePolicy::Exclusive => match holder {
            Some(h) => format!("you are {role}; the write lock is held by {h}"),
            None => format!("you are {role}; nobody holds the write lock"),
        },
        WritePolicy::Shared => {
            format!("you are {role}; every read-write subscriber may type (write policy shared)")
        }
        WritePolicy::None => format!("you are {role}; nobody may type (write policy none)"),
    };
    let guest = if guest {
        "the guest is connected"
    } else {
        "the guest is not connected"
    };
    format!("console {console}; {typing}; {guest}")
}

/// Told to the others when the write lock moves (`to` its new holder, None: nobody).
pub(crate) fn lock_moved(to: Option<&str>) -> String {
    match to {
        Some(h) => format!("the write lock is now held by {h}"),
        None => "nobody holds the write lock now".into(),
    }
}

/// The last words of a subscriber cut off for falling behind.
pub(crate) fn cut_off(limit: usize, missed: u64) -> String {
    format!(
        "disconnected: you fell more than {limit} bytes behind the console; {missed} bytes \
         queued for you were not sent"
    )
}

/// Told to a subscriber allowed to type that sent a telnet BREAK (IAC BRK): logd's guest side
/// is a byte stream, with no way to carry a break (docs/CONSOLES.md, "BREAK").
pub(crate) const BREAK_NOT_CARRIED: &str =
    "BREAK cannot reach this guest: its chardev carries bytes only; see CONSOLES.md \"BREAK\"";

/// The guest's coming or going, to subscribers.
pub(crate) fn guest(up: bool) -> &'static str {
    if up {
        "guest connected"
    } else {
        "guest disconnected"
    }
}

/// The guest's coming or going, as marked in the log: one line, on a line of its own (`\r\n`
/// first when the log does not end a line), `at_ms` in UTC.
pub(crate) fn mark(up: bool, at_ms: u64, at_line_start: bool) -> String {
    format!(
        "{}[-- logd: {} {} --]\r\n",
        if at_line_start { "" } else { "\r\n" },
        guest(up),
        crate::clock::utc_text(at_ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_greeting_says_the_role_who_may_type_and_the_guest() {
        use WritePolicy::{Exclusive, Shared};
        let g = |role, write, you, holder, guest| {
            greeting("vm1/serial0", role, write, you, holder, guest)
        };
        assert_eq!(
            g(Role::ReadWrite, Exclusive, true, None, true),
            "console vm1/serial0; you are read-write and hold the write lock; the guest is connected"
        );
        assert_eq!(
            g(
                Role::ReadOnly,
                Exclusive,
                false,
                Some("0:root (subscriber 3)"),
                false
            ),
            "console vm1/serial0; you are read-only; the write lock is held by 0:root \
             (subscriber 3); the guest is not connected"
        );
        assert_eq!(
            g(Role::ReadOnly, Exclusive, false, None, true),
            "console vm1/serial0; you are read-only; nobody holds the write lock; the guest is \
             connected"
        );
        assert_eq!(
            g(Role::ReadWrite, Shared, false, None, true),
            "console vm1/serial0; you are read-write; every read-write subscriber may type \
             (write policy shared); the guest is connected"
        );
        assert_eq!(
            g(Role::ReadWrite, WritePolicy::None, false, None, true),
            "console vm1/serial0; you are read-write; nobody may type (write policy none); the \
             guest is connected"
        );
    }

    #[test]
    fn the_other_texts() {
        assert_eq!(who("127.0.0.1:5000", 7), "127.0.0.1:5000 (subscriber 7)");
        assert_eq!(
            lock_moved(Some("0:root (subscriber 3)")),
            "the write lock is now held by 0:root (subscriber 3)"
        );
        assert_eq!(lock_moved(None), "nobody holds the write lock now");
        assert_eq!(
            cut_off(1024, 2048),
            "disconnected: you fell more than 1024 bytes behind the console; 2048 bytes queued \
             for you were not sent"
        );
        assert_eq!(
            BREAK_NOT_CARRIED,
            "BREAK cannot reach this guest: its chardev carries bytes only; see CONSOLES.md \"BREAK\""
        );
        assert_eq!(
            (guest(true), guest(false)),
            ("guest connected", "guest disconnected")
        );
    }

    #[test]
    fn a_mark_is_a_line_of_its_own_with_the_time_in_utc() {
        let at = 1_796_564_440_123; // 2026-12-06T13:40:40.123Z
        assert_eq!(
            mark(true, at, true),
            "[-- logd: guest connected 2026-12-06T13:40:40.123Z --]\r\n"
        );
        assert_eq!(
            mark(false, at, false),
            "\r\n[-- logd: guest disconnected 2026-12-06T13:40:40.123Z --]\r\n"
        );
    }

    #[test]
    fn notices_are_on_and_marks_off_by_default() {
        assert_eq!(
            Notices::default(),
            Notices {
                subscribers: true,
                mark_log: false
            }
        );
    }
}
