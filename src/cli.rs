//! What the two binaries share in how they talk to a person: error reports, and names made
//! safe for a terminal.

use std::borrow::Cow;

/// `s` with its control characters escaped, for a terminal or a log line: a path may hold
/// ESC sequences, BEL or carriage returns, which a terminal would act on. C0 controls and DEL
/// become `\xNN`, other controls (C1) `\u{NN}`. Newlines are escaped too: a name is one line.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Formats an error and its causes as one line, `outer: cause: root cause`, leaving out a cause
/// whose text the line already holds (many errors here name their cause in their own message).
/// Control characters (from a path in the message) are escaped.
pub fn report(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    escape_controls(&line).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_not_copied() {
        assert!(matches!(
            escape_controls("/var/log/vm1.log"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_controls("a\x1b[2Jb\x07\r\n\u{9b}c\\d"),
            "a\\x1b[2Jb\\x07\\x0d\\x0a\\u{9b}c\\d"
        );
        assert_eq!(escape_controls("é ünïcode"), "é ünïcode");
    }

    #[test]
    fn repeated_causes_are_left_out() {
        let io = std::io::Error::other("disk on fire");
        let e = anyhow::Error::new(io)
            .context("cannot write x: disk on fire")
            .context("saving");
        assert_eq!(report(&e), "saving: cannot write x: disk on fire");
    }
}
