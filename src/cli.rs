//! What the two binaries share in how they talk to a person: error reports.

/// Formats an error and its causes as one line, `outer: cause: root cause`, leaving out a cause
/// whose text the line already holds (many errors here name their cause in their own message).
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
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_causes_are_left_out() {
        let io = std::io::Error::other("disk on fire");
        let e = anyhow::Error::new(io)
            .context("cannot write x: disk on fire")
            .context("saving");
        assert_eq!(report(&e), "saving: cannot write x: disk on fire");
    }
}
