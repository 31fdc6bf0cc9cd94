//! The Prometheus text format, version 0.0.4 (`text/plain; version=0.0.4`): what every
//! Prometheus scrapes, and what `promtool check metrics` reads and lints.
//!
//! Each family is written whole: its `# HELP` and `# TYPE` lines, then its samples, one a
//! line. A counter's family is named as its samples are, `…_total` (OpenMetrics names the
//! family without it, which `promtool` reads as a second family with no help).

use std::fmt::{Display, Write};

/// The HTTP `Content-Type` of this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's type, as its `# TYPE` line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A metric family: the name its samples carry, its type and its help text.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

/// An exposition being written.
#[derive(Default)]
pub struct Text {
    out: String,
}

impl Text {
    /// Writes `family` with one sample per `(labels, value)`, `labels` as [`labels`] renders
    /// them ("" for none). A family with no samples is left out, as the client libraries do.
    pub fn family<'a, V: Display>(
        &mut self,
        family: &Family,
        samples: impl IntoIterator<Item = (&'a str, V)>,
    ) {
        let mut samples = samples.into_iter().peekable();
        if samples.peek().is_none() {
            return;
        }
        // Writing into a String cannot fail.
        let _ = writeln!(
            self.out,
            "# HELP {} {}",
            family.name,
            escape(family.help, false)
        );
        let _ = writeln!(self.out, "# TYPE {} {}", family.name, family.kind.as_str());
        for (labels, value) in samples {
            let _ = writeln!(self.out, "{}{labels} {value}", family.name);
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// `{name="value",…}`, the values escaped; "" for no labels.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let mut out = String::from("{");
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}=\"{}\"", escape(value, true));
    }
    out.push('}');
    out
}

/// A help text's or a label value's escapes: `\\` and `\n`, and `\"` in a label value.
fn escape(s: &str, quote: bool) -> std::borrow::Cow<'_, str> {
    if !s.contains(['\\', '\n', '"']) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Family = Family {
        name: "logd_x_bytes",
        kind: Kind::Gauge,
        help: "A \\ help\nof two lines, \"quoted\"",
    };

    #[test]
    fn a_family_is_help_type_then_samples() {
        let mut t = Text::default();
        let a = labels(&[("domain", "vm"), ("path", "/var/log/a b.log")]);
        t.family(&F, [(a.as_str(), 1u64), ("", 2)]);
        assert_eq!(
            t.finish(),
            "# HELP logd_x_bytes A \\\\ help\\nof two lines, \"quoted\"\n\
             # TYPE logd_x_bytes gauge\n\
             logd_x_bytes{domain=\"vm\",path=\"/var/log/a b.log\"} 1\n\
             logd_x_bytes 2\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("path", "a\"b\\c\nd")]), r#"{path="a\"b\\c\nd"}"#);
        assert_eq!(labels(&[]), "");
    }

    #[test]
    fn a_family_without_samples_is_left_out() {
        let mut t = Text::default();
        t.family(&F, std::iter::empty::<(&str, u64)>());
        assert_eq!(t.finish(), "");
    }

    #[test]
    fn prometheus_parses_it() {
        let mut t = Text::default();
        let l = labels(&[("path", "odd \" \\ \n path")]);
        t.family(&F, [(l.as_str(), 7.5f64)]);
        let text = t.finish();
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        assert_eq!(scrape.samples.len(), 1, "{text}");
        assert_eq!(
            scrape.samples[0].value,
            prometheus_parse::Value::Gauge(7.5),
            "{text}"
        );
    }
}
