//! A small Markdown subset, converted to man(7) roff: the prose of logd's manual pages is written
//! in it (`docs/man/*.extra.md`, and the long help of `logdctl`'s commands), so that it reads as
//! plain text in `--help` and in the sources, and as a typeset page in `man`.
//!
//! The subset, and nothing else (anything outside it is an error naming the line, never a page
//! that renders wrong):
//! - `## HEADING` (a section, `.SH`) and `### Heading` (a subsection, `.SS`);
//! - paragraphs, separated by blank lines;
//! - bullet lists: `- item`, continuation lines indented by two spaces;
//! - definition lists: a term on its own line, then `: definition`, continued two spaces in;
//! - inside a list item or a definition, more blocks indented by two spaces (paragraphs, lists,
//!   code), after a blank line;
//! - fenced code blocks (```` ``` ````), set verbatim;
//! - inline: `` `code` `` and `**bold**` (bold), `*italic*`, and `name(N)` references (the
//!   name bold, as man-pages(7) asks).

use std::fmt;

/// Why a text is not in the subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkdownError {
    /// 1-based, in the text given.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for MarkdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for MarkdownError {}

#[derive(Debug, PartialEq, Eq)]
enum Block {
    Section(String),
    Subsection(String),
    Paragraph(Vec<String>),
    List(Vec<Vec<Block>>),
    Definitions(Vec<(String, Vec<Block>)>),
    Code(Vec<String>),
}

/// Converts `md` to roff lines (each ending in a newline). Top-level paragraphs start with `.PP`.
pub fn to_roff(md: &str) -> Result<String, MarkdownError> {
    let lines: Vec<(usize, &str)> = md.lines().enumerate().map(|(i, l)| (i + 1, l)).collect();
    let blocks = parse(&lines)?;
    let mut out = String::new();
    render(&blocks, false, &mut out);
    Ok(out)
}

/// The text of each `## HEADING` of `md`, in order.
pub fn sections(md: &str) -> Vec<&str> {
    md.lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(str::trim)
        .collect()
}

fn error(line: usize, reason: impl Into<String>) -> MarkdownError {
    MarkdownError {
        line,
        reason: reason.into(),
    }
}

fn is_blank(l: &str) -> bool {
    l.trim().is_empty()
}

/// A line that starts a block other than a paragraph.
fn starts_block(lines: &[(usize, &str)], i: usize) -> bool {
    let l = lines[i].1;
    l.starts_with("- ")
        || l.starts_with("```")
        || l.starts_with('#')
        || lines.get(i + 1).is_some_and(|(_, n)| n.starts_with(": "))
}

/// The lines that belong to an item or a definition after its first line: those indented by two
/// spaces, and blank lines followed by such lines. Returns them de-indented, and where they end.
fn indented<'a>(lines: &[(usize, &'a str)], mut i: usize) -> (Vec<(usize, &'a str)>, usize) {
    let mut body = Vec::new();
    while i < lines.len() {
        let (n, l) = lines[i];
        if let Some(rest) = l.strip_prefix("  ") {
            body.push((n, rest));
            i += 1;
        } else if is_blank(l) {
            let next = lines[i..].iter().position(|(_, l)| !is_blank(l));
            match next.map(|k| lines[i + k].1) {
                Some(l) if l.starts_with("  ") => {
                    body.push((n, ""));
                    i += 1;
                }
                _ => break,
            }
        } else {
            break;
        }
    }
    (body, i)
}

fn parse(lines: &[(usize, &str)]) -> Result<Vec<Block>, MarkdownError> {
    let mut blocks = Vec::new();
    let mut in_code = false;
    for (n, l) in lines {
        if l.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && l.matches('`').count() % 2 == 1 {
            return Err(error(*n, "a `code` span that is not closed on its line"));
        }
    }
    let mut i = 0;
    while i < lines.len() {
        let (n, l) = lines[i];
        if is_blank(l) {
            i += 1;
        } else if l.starts_with(' ') || l.starts_with('\t') {
            return Err(error(
                n,
                "an indented line outside a list item or a definition",
            ));
        } else if let Some(h) = l.strip_prefix("## ") {
            blocks.push(Block::Section(h.trim().to_owned()));
            i += 1;
        } else if let Some(h) = l.strip_prefix("### ") {
            blocks.push(Block::Subsection(h.trim().to_owned()));
            i += 1;
        } else if l.starts_with('#') {
            return Err(error(n, "only ## and ### headings"));
        } else if l.starts_with('|') {
            return Err(error(n, "no tables: use a definition list"));
        } else if l.starts_with("```") {
            let end = lines[i + 1..]
                .iter()
                .position(|(_, l)| l.trim_start().starts_with("```"))
                .ok_or_else(|| error(n, "a code block that is not closed"))?;
            let code = lines[i + 1..i + 1 + end]
                .iter()
                .map(|(_, l)| (*l).to_owned())
                .collect();
            blocks.push(Block::Code(code));
            i += end + 2;
        } else if l.starts_with("- ") {
            let mut items = Vec::new();
            while i < lines.len() && lines[i].1.starts_with("- ") {
                let (n, l) = lines[i];
                let (mut body, next) = indented(lines, i + 1);
                body.insert(0, (n, &l[2..]));
                items.push(parse(&body)?);
                i = next;
                // Items separated by a blank line are still one list.
                if i + 1 < lines.len() && is_blank(lines[i].1) && lines[i + 1].1.starts_with("- ") {
                    i += 1;
                }
            }
            blocks.push(Block::List(items));
        } else if lines.get(i + 1).is_some_and(|(_, l)| l.starts_with(": ")) {
            let mut defs = Vec::new();
            while i + 1 < lines.len() && lines[i + 1].1.starts_with(": ") {
                let term = lines[i].1.trim().to_owned();
                let (n, l) = lines[i + 1];
                let (mut body, next) = indented(lines, i + 2);
                body.insert(0, (n, &l[2..]));
                defs.push((term, parse(&body)?));
                i = next;
                while i < lines.len() && is_blank(lines[i].1) {
                    i += 1;
                }
                if i < lines.len() && !lines.get(i + 1).is_some_and(|(_, l)| l.starts_with(": ")) {
                    break;
                }
            }
            blocks.push(Block::Definitions(defs));
        } else if l.starts_with(": ") {
            return Err(error(n, "a definition without its term on the line before"));
        } else {
            let mut para = vec![l.trim().to_owned()];
            i += 1;
            while i < lines.len() && !is_blank(lines[i].1) && !starts_block(lines, i) {
                let (n, l) = lines[i];
                if l.starts_with(' ') {
                    return Err(error(n, "an indented line inside a paragraph"));
                }
                para.push(l.trim().to_owned());
                i += 1;
            }
            blocks.push(Block::Paragraph(para));
        }
    }
    Ok(blocks)
}

/// `nested`: inside a list item or a definition, whose first block follows its `.IP` or `.TP`.
fn render(blocks: &[Block], nested: bool, out: &mut String) {
    for (k, block) in blocks.iter().enumerate() {
        let first = nested && k == 0;
        match block {
            Block::Section(h) => {
                out.push_str(&format!(".SH {}\n", macro_arg(h)));
            }
            Block::Subsection(h) => {
                out.push_str(&format!(".SS {}\n", macro_arg(h)));
            }
            Block::Paragraph(lines) => {
                if !first {
                    out.push_str(if nested { ".IP\n" } else { ".PP\n" });
                }
                for l in lines {
                    out.push_str(&text_line(&inline(l)));
                }
            }
            Block::Code(lines) => {
                if !first {
                    out.push_str(if nested { ".IP\n" } else { ".PP\n.RS 4\n" });
                }
                out.push_str(".nf\n");
                for l in lines {
                    out.push_str(&text_line(&escape(l)));
                }
                out.push_str(".fi\n");
                if !first && !nested {
                    out.push_str(".RE\n");
                }
            }
            Block::List(items) => {
                if nested {
                    out.push_str(".RS\n");
                }
                for item in items {
                    out.push_str(".IP \\(bu 2\n");
                    render(item, true, out);
                }
                if nested {
                    out.push_str(".RE\n");
                }
            }
            Block::Definitions(defs) => {
                if nested {
                    out.push_str(".RS\n");
                }
                for (term, body) in defs {
                    out.push_str(".TP\n");
                    out.push_str(&text_line(&inline(term)));
                    render(body, true, out);
                }
                if nested {
                    out.push_str(".RE\n");
                }
            }
        }
    }
}

/// A macro's argument: quoted, with the text escaped.
fn macro_arg(s: &str) -> String {
    format!("\"{}\"", escape(s).replace('"', "\\(dq"))
}

/// A text line: a leading `.` or `'` would make it a request.
fn text_line(s: &str) -> String {
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}\n")
    } else {
        format!("{s}\n")
    }
}

/// Escapes the characters roff would read as its own: the backslash, the hyphen (an option's
/// `-` must stay a minus, to be copied and pasted) and the apostrophe.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            '\'' => out.push_str("\\(aq"),
            _ => out.push(c),
        }
    }
    out
}

/// Converts one line's inline marks: code and bold to bold, italic to italic, `name(N)` to a
/// bold name. An unmatched mark is left as it is.
pub fn inline(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        let word_start = !out.ends_with(|c: char| c.is_alphanumeric() || c == '_');
        if let Some(r) = rest.strip_prefix('`') {
            if let Some(end) = r.find('`') {
                out.push_str(&format!("\\fB{}\\fR", escape(&r[..end])));
                rest = &r[end + 1..];
                continue;
            }
        } else if let Some(r) = rest.strip_prefix("**") {
            if let Some(end) = r.find("**") {
                out.push_str(&format!("\\fB{}\\fR", inline(&r[..end])));
                rest = &r[end + 2..];
                continue;
            }
        } else if let Some(r) = rest.strip_prefix('*') {
            if let Some(end) = r.find('*') {
                if end > 0 && !r.starts_with(' ') && !r[..end].ends_with(' ') {
                    out.push_str(&format!("\\fI{}\\fR", escape(&r[..end])));
                    rest = &r[end + 1..];
                    continue;
                }
            }
        } else if let Some((name, len)) = reference(rest).filter(|_| word_start) {
            out.push_str(&format!("\\fB{}\\fR", escape(name)));
            out.push_str(&escape(&rest[name.len()..len]));
            rest = &rest[len..];
            continue;
        }
        // Copy up to the next character that may start a mark.
        let c = rest.chars().next().expect("not empty");
        if word_start && c.is_ascii_lowercase() {
            // A word that is not a reference: copied whole, so that `reference` sees only
            // word starts.
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(rest.len());
            out.push_str(&escape(&rest[..end]));
            rest = &rest[end..];
        } else {
            out.push_str(&escape(&rest[..c.len_utf8()]));
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// `logd(8)` at the start of `s`: the name, and the length of the whole reference.
fn reference(s: &str) -> Option<(&str, usize)> {
    let name_len = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))?;
    if name_len == 0 || !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return None;
    }
    let tail = &s[name_len..];
    let section = tail.strip_prefix('(')?;
    let close = section.find(')')?;
    let number = &section[..close];
    let ok = (1..=3).contains(&number.len())
        && number.starts_with(|c: char| c.is_ascii_digit())
        && number.chars().all(|c| c.is_ascii_alphanumeric());
    ok.then_some((&s[..name_len], name_len + 1 + close + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_and_paragraphs() {
        let md = "## EXIT STATUS\n0 on success,\n1 on error.\n\nAnother.\n### A part\nText.\n";
        assert_eq!(
            to_roff(md).unwrap(),
            ".SH \"EXIT STATUS\"\n.PP\n0 on success,\n1 on error.\n.PP\nAnother.\n\
             .SS \"A part\"\n.PP\nText.\n"
        );
    }

    #[test]
    fn bullet_lists_with_continuations_and_nested_lists() {
        let md = "- one,\n  continued;\n- two:\n\n  - inner\n\n  After.\n";
        assert_eq!(
            to_roff(md).unwrap(),
            ".IP \\(bu 2\none,\ncontinued;\n.IP \\(bu 2\ntwo:\n.RS\n.IP \\(bu 2\ninner\n.RE\n\
             .IP\nAfter.\n"
        );
    }

    #[test]
    fn definition_lists() {
        let md = "`--socket PATH`\n: Listen here.\n  Really.\n\n  More.\n\n`x`\n: Y.\n\nAfter.\n";
        assert_eq!(
            to_roff(md).unwrap(),
            ".TP\n\\fB\\-\\-socket PATH\\fR\nListen here.\nReally.\n.IP\nMore.\n\
             .TP\n\\fBx\\fR\nY.\n.PP\nAfter.\n"
        );
    }

    #[test]
    fn code_blocks_are_verbatim_and_escaped() {
        let md = "Before.\n```\n.leading dot\n  a\\b 'q' --x\n```\n";
        assert_eq!(
            to_roff(md).unwrap(),
            ".PP\nBefore.\n.PP\n.RS 4\n.nf\n\\&.leading dot\n  a\\eb \\(aqq\\(aq \\-\\-x\n.fi\n.RE\n"
        );
    }

    #[test]
    fn code_inside_a_definition() {
        let md = "`ps`\n: First:\n\n  ```\n  logd 0.1.0\n  ```\n";
        assert_eq!(
            to_roff(md).unwrap(),
            ".TP\n\\fBps\\fR\nFirst:\n.IP\n.nf\nlogd 0.1.0\n.fi\n"
        );
    }

    #[test]
    fn inline_marks() {
        assert_eq!(inline("a `b-c` d"), "a \\fBb\\-c\\fR d");
        assert_eq!(inline("**The pid stays**."), "\\fBThe pid stays\\fR.");
        assert_eq!(inline("a *guardian* b"), "a \\fIguardian\\fR b");
        assert_eq!(inline("2 * 3 * 4"), "2 * 3 * 4");
        assert_eq!(inline("see logd(8), and"), "see \\fBlogd\\fR(8), and");
        assert_eq!(inline("virtlogd(8)."), "\\fBvirtlogd\\fR(8).");
        assert_eq!(inline("f(x) and Foo(1)"), "f(x) and Foo(1)");
        assert_eq!(inline("it's"), "it\\(aqs");
    }

    #[test]
    fn a_leading_dot_is_not_a_request() {
        assert_eq!(to_roff("x\n.y\n").unwrap(), ".PP\nx\n\\&.y\n");
    }

    #[test]
    fn what_is_outside_the_subset_is_refused_with_its_line() {
        assert_eq!(to_roff("a\n\n| t | u |\n").unwrap_err().line, 3);
        assert_eq!(to_roff("# Title\n").unwrap_err().line, 1);
        assert_eq!(to_roff("a\n\n  indented\n").unwrap_err().line, 3);
        assert_eq!(to_roff("```\nopen\n").unwrap_err().line, 1);
        assert_eq!(to_roff("\n: no term\n").unwrap_err().line, 2);
        assert_eq!(to_roff("a `b\nc` d\n").unwrap_err().line, 1);
    }

    #[test]
    fn section_names() {
        assert_eq!(sections("## A\nx\n## B C\n"), ["A", "B C"]);
    }
}
