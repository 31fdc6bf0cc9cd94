//! The manual pages and shell completions of logd's binaries, generated from their clap
//! definitions, so that neither can drift from the options the binaries take.
//!
//! A page is made of:
//! - NAME and SYNOPSIS, from the `Command`;
//! - DESCRIPTION, from the `## DESCRIPTION` section of the page's prose
//!   (`docs/man/NAME.SECTION.extra.md`, in the Markdown subset of [`crate::roff`]);
//! - OPTIONS, every option with its long help, default, environment variable and possible values,
//!   rendered by `clap_mangen`;
//! - COMMANDS: each command (and each command of a command group) as a subsection with its own
//!   synopsis, its long help (Markdown, converted) and its options;
//! - the prose's other sections, in their order.
//!
//! Each binary's unit tests ([`Manual::check`] and the others) compare what this renders with the
//! committed files, and write them instead with `LOGD_BLESS=1`. Nothing here is in the shipped
//! binaries: the kit is a dev-dependency.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use clap::{Arg, ArgAction, Command};
use clap_complete::Shell;

use crate::roff;

/// One binary's manual page and completions.
pub struct Manual {
    /// The binary's command, as `CommandFactory::command()` gives it.
    pub cmd: Command,
    /// "8" for the daemon, "1" for the client.
    pub section: &'static str,
    /// The workspace root (`env!("CARGO_MANIFEST_DIR")` of the `logd` package).
    pub root: PathBuf,
}

/// The first comment of every generated file.
const NOTICE: &str = "Generated from the clap definitions by kit::man; do not edit. \
                      Regenerate: LOGD_BLESS=1 cargo test --locked -p logd --bins";

/// The package both binaries come in: the title's source field.
const PACKAGE: &str = "logd";

/// The sections a page generates itself, which its prose must not have.
const GENERATED: [&str; 5] = ["NAME", "SYNOPSIS", "OPTIONS", "COMMANDS", "DESCRIPTION"];

impl Manual {
    pub fn new(mut cmd: Command, section: &'static str, root: &Path) -> Manual {
        cmd.build();
        Manual {
            cmd,
            section,
            root: root.to_owned(),
        }
    }

    fn name(&self) -> &str {
        self.cmd.get_name()
    }

    /// `docs/man/logd.8`.
    pub fn page_path(&self) -> PathBuf {
        self.root
            .join("docs/man")
            .join(format!("{}.{}", self.name(), self.section))
    }

    /// `docs/man/logd.8.extra.md`: the prose that is not about one option or command.
    pub fn prose_path(&self) -> PathBuf {
        self.root
            .join("docs/man")
            .join(format!("{}.{}.extra.md", self.name(), self.section))
    }

    /// The page, in roff.
    pub fn render(&self) -> String {
        let prose_path = self.prose_path();
        let prose = std::fs::read_to_string(&prose_path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", prose_path.display()));
        let (description, rest) =
            split_description(&prose).unwrap_or_else(|e| panic!("{}: {e}", prose_path.display()));
        let md = |text: &str| {
            roff::to_roff(text).unwrap_or_else(|e| panic!("{}: {e}", prose_path.display()))
        };

        let name = self.name();
        let version = self.cmd.get_version().expect("the command has a version");
        let manual = match self.section {
            "8" => "System Manager's Manual",
            _ => "User Commands",
        };
        let man = clap_mangen::Man::new(punctuated(self.cmd.clone()));
        let mut out = format!(".\\\" {NOTICE}\n");
        // roff's preamble (the apostrophe string, which clap_mangen's text uses), once; then the
        // title with an empty date (clap_mangen would leave the empty field out, and the others
        // would shift into its place): a dated page would never match its committed file.
        let title = rendered(|w| man.render_title(w), false);
        let preamble = title.lines().take_while(|l| !l.starts_with(".TH"));
        for line in preamble {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&format!(
            ".TH {} {} \"\" {} {}\n",
            name.to_uppercase(),
            self.section,
            quoted(&format!("{PACKAGE} {version}")),
            quoted(manual)
        ));
        // Left-aligned, and no word broken at a hyphen: paths, keys and options are copied from
        // the page as they are.
        out.push_str(".nh\n.ad l\n");

        out.push_str(".SH NAME\n");
        let about = self.cmd.get_about().expect("the command has an about");
        out.push_str(&format!(
            "{} \\- {}\n",
            name,
            roff::escape(&lower_first(about.to_string().trim_end_matches('.')))
        ));

        out.push_str(".SH SYNOPSIS\n");
        out.push_str(&synopsis(&self.cmd, name, &[]));

        out.push_str(".SH DESCRIPTION\n");
        out.push_str(md(&description).trim_start_matches(".PP\n"));

        out.push_str(&postprocess(&rendered(
            |w| man.render_options_section(w),
            true,
        )));

        if self.cmd.has_subcommands() {
            let globals: Vec<String> = self
                .cmd
                .get_arguments()
                .filter(|a| a.is_global_set())
                .map(|a| a.get_id().to_string())
                .collect();
            out.push_str(".SH COMMANDS\n");
            out.push_str("The options above may be given before or after the command.\n");
            for (path, sub) in leaves(&self.cmd, name) {
                out.push_str(&format!(".SS {}\n", quoted(&path)));
                out.push_str(&synopsis(&sub, &path, &globals));
                let long = match (sub.get_long_about(), sub.get_about()) {
                    (Some(long), _) => long.to_string(),
                    (None, Some(about)) => about.to_string(),
                    (None, None) => panic!("{path} has no help"),
                };
                out.push_str(&md(&sentence(&long)));
                let sub = punctuated(hide_inherited(sub, &globals));
                if sub.get_arguments().any(|a| !a.is_hide_set()) {
                    let man = clap_mangen::Man::new(sub);
                    let options = rendered(|w| man.render_options_section(w), true);
                    // A list in the help leaves a 2-character indent, which `.TP` would keep.
                    out.push_str(".PP\n");
                    out.push_str(&postprocess(
                        options
                            .strip_prefix(".SH OPTIONS\n")
                            .expect("one options section"),
                    ));
                }
            }
        }
        // ENVIRONMENT, when options take their value from the environment: generated, before
        // the first of the sections that conventionally follow it.
        match environment(&self.cmd) {
            None => out.push_str(&md(&rest)),
            Some(env) => {
                if roff::sections(&rest).contains(&"ENVIRONMENT") {
                    panic!(
                        "{}: ENVIRONMENT is generated (from the options' env)",
                        prose_path.display()
                    );
                }
                let (before, after) = split_before(&rest, &["FILES", "EXAMPLES", "SEE ALSO"]);
                out.push_str(&md(&before));
                out.push_str(&env);
                out.push_str(&md(&after));
            }
        }
        out
    }

    /// The completion scripts: `dist/completions/NAME.bash`, `_NAME` (zsh), `NAME.fish`.
    pub fn completions(&self) -> Vec<(PathBuf, String)> {
        let name = self.name().to_owned();
        let dir = self.root.join("dist/completions");
        [
            (Shell::Bash, format!("{name}.bash")),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ]
        .into_iter()
        .map(|(shell, file)| {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut self.cmd.clone(), &name, &mut buf);
            let text = String::from_utf8(buf).expect("completions are UTF-8");
            // zsh reads `#compdef` on the first line only.
            let text = match text.split_once('\n') {
                Some((first, rest)) if first.starts_with("#compdef") => {
                    format!("{first}\n# {NOTICE}\n{rest}")
                }
                _ => format!("# {NOTICE}\n{text}"),
            };
            (dir.join(file), text)
        })
        .collect()
    }

    /// Compares the page and the completions with the committed files; with `LOGD_BLESS=1`,
    /// writes those that differ instead.
    pub fn check(&self) {
        let mut files = vec![(self.page_path(), self.render())];
        files.extend(self.completions());
        check_generated(&self.root, &files);
    }

    /// Every long option of every command that the rendered page does not name, as
    /// `COMMAND --option`, and every command without its subsection.
    pub fn missing_from_page(&self) -> Vec<String> {
        let page = self.render();
        let mut missing = Vec::new();
        let mut cmds = vec![(self.name().to_owned(), self.cmd.clone())];
        cmds.extend(leaves(&self.cmd, self.name()));
        for (path, cmd) in &cmds {
            if path != self.name() && !page.contains(&format!(".SS {}\n", quoted(path))) {
                missing.push(path.clone());
            }
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    if !page.contains(&format!("\\fB\\-\\-{}\\fR", roff::escape(long))) {
                        missing.push(format!("{path} --{long}"));
                    }
                }
            }
        }
        missing
    }

    /// Every option and argument, of every command, that has no help text.
    pub fn undocumented(&self) -> Vec<String> {
        let mut cmds = vec![(self.name().to_owned(), self.cmd.clone())];
        cmds.extend(leaves(&self.cmd, self.name()));
        let mut out = Vec::new();
        for (path, cmd) in &cmds {
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    out.push(format!("{path} {}", arg.get_id()));
                }
            }
        }
        out
    }
}

/// Writes `render` into a string; `strip_preamble` drops roff's preamble, which only the first
/// part of a page carries.
fn rendered(
    render: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    strip_preamble: bool,
) -> String {
    let mut buf = Vec::new();
    render(&mut buf).expect("rendering into memory");
    let text = String::from_utf8(buf).expect("roff is UTF-8");
    if !strip_preamble {
        return text;
    }
    let preamble = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
    text.strip_prefix(preamble).unwrap_or(&text).to_owned()
}

/// What clap_mangen leaves as it is in a help text: a blank line between paragraphs (a break,
/// `.sp`, not an empty input line) and `` `code` `` (bold, as in the prose).
fn postprocess(roff: &str) -> String {
    let mut out = String::with_capacity(roff.len());
    for line in roff.lines() {
        if line.is_empty() {
            out.push_str(".sp\n");
        } else if line.starts_with('.') {
            out.push_str(line);
            out.push('\n');
        } else {
            let mut parts = line.split('`');
            let mut bold = false;
            let n = line.matches('`').count();
            out.push_str(parts.next().unwrap_or_default());
            for (i, part) in parts.enumerate() {
                // A lone backtick, the last of an odd number, stays.
                if n % 2 == 1 && i == n - 1 {
                    out.push('`');
                } else {
                    out.push_str(if bold { "\\fR" } else { "\\fB" });
                    bold = !bold;
                }
                out.push_str(part);
            }
            out.push('\n');
        }
    }
    out
}

/// The `## DESCRIPTION` section's body, and the rest of the prose. Each keeps every line of the
/// prose where it was, the other's lines blank, so that an error names the file's line. The
/// prose may not have the sections the page generates.
fn split_description(prose: &str) -> Result<(String, String), String> {
    for s in roff::sections(prose) {
        if s != "DESCRIPTION" && GENERATED.contains(&s) {
            return Err(format!(
                "the section {s} is generated; it cannot be in the prose"
            ));
        }
    }
    let (mut description, mut rest) = (String::new(), String::new());
    let (mut found, mut seen) = (false, false);
    let mut in_description = false;
    for line in prose.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            seen = true;
            in_description = h.trim() == "DESCRIPTION";
            if in_description {
                found = true;
                description.push('\n');
                rest.push('\n');
                continue;
            }
        } else if !seen && !line.trim().is_empty() {
            return Err("text before the first section".into());
        }
        let (to, blank) = if in_description {
            (&mut description, &mut rest)
        } else {
            (&mut rest, &mut description)
        };
        to.push_str(line);
        to.push('\n');
        blank.push('\n');
    }
    if !found {
        return Err("no ## DESCRIPTION section".into());
    }
    Ok((description, rest))
}

/// The prose split before its first section named in `names` (the whole of it before, if none).
/// Each part keeps the other's lines blank, as [`split_description`]'s do.
fn split_before(prose: &str, names: &[&str]) -> (String, String) {
    let at = prose
        .lines()
        .position(|l| {
            l.strip_prefix("## ")
                .is_some_and(|h| names.contains(&h.trim()))
        })
        .unwrap_or(usize::MAX);
    let (mut before, mut after) = (String::new(), String::new());
    for (i, line) in prose.lines().enumerate() {
        let (to, blank) = if i < at {
            (&mut before, &mut after)
        } else {
            (&mut after, &mut before)
        };
        to.push_str(line);
        to.push('\n');
        blank.push('\n');
    }
    (before, after)
}

/// `.SH ENVIRONMENT`: each variable an option reads, and the option.
fn environment(cmd: &Command) -> Option<String> {
    let vars: Vec<(String, &str)> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_hide_env_set())
        .filter_map(|a| Some((a.get_env()?.to_string_lossy().into_owned(), a.get_long()?)))
        .collect();
    if vars.is_empty() {
        return None;
    }
    let mut out = String::from(".SH ENVIRONMENT\n");
    for (var, long) in vars {
        out.push_str(&format!(
            ".TP\n\\fB{}\\fR\nThe same as \\fB\\-\\-{}\\fR, which wins over it.\n",
            roff::escape(&var),
            roff::escape(long)
        ));
    }
    Some(out)
}

/// Every command that is run (not a group of commands), depth first, with its full name.
fn leaves(cmd: &Command, path: &str) -> Vec<(String, Command)> {
    let mut out = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        let sub_path = format!("{path} {}", sub.get_name());
        if sub.has_subcommands() {
            out.extend(leaves(sub, &sub_path));
        } else {
            out.push((sub_path, sub.clone()));
        }
    }
    out
}

/// The command with the options it inherits (the global ones, `--help`) hidden: the page
/// documents them once.
fn hide_inherited(mut cmd: Command, globals: &[String]) -> Command {
    let ids: Vec<String> = cmd
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| globals.contains(id) || id == "help" || id == "version")
        .collect();
    for id in ids {
        cmd = cmd.mut_arg(id, |a| a.hide(true));
    }
    cmd
}

/// A help text whose first paragraph, its summary, ends with a full stop. clap drops the stop
/// from a summary (the list of commands, `-h`), but the page's sentences need it.
fn sentence(text: &str) -> String {
    let end = text.find("\n\n").unwrap_or(text.len());
    let summary = text[..end].trim_end();
    if summary.ends_with(['.', '!', '?', ':']) {
        text.to_owned()
    } else {
        format!("{summary}.{}", &text[end..])
    }
}

/// The command with each option's help a sentence (see [`sentence`]).
fn punctuated(mut cmd: Command) -> Command {
    let ids: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.get_long_help().is_none() && a.get_help().is_some())
        .map(|a| a.get_id().to_string())
        .collect();
    for id in ids {
        cmd = cmd.mut_arg(id, |a| {
            let help = sentence(&a.get_help().expect("filtered").to_string());
            a.long_help(help)
        });
    }
    cmd
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", roff::escape(s))
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn is_inherited(arg: &Arg, globals: &[String]) -> bool {
    let id = arg.get_id().as_str();
    globals.iter().any(|g| g == id) || id == "help" || id == "version"
}

/// A synopsis line: the command in bold, each option with its value's name, optional ones in
/// brackets, the options of a group of alternatives together (`( a | b )` when one is required);
/// a command's inherited options left out.
fn synopsis(cmd: &Command, name: &str, globals: &[String]) -> String {
    let alternatives: Vec<(Vec<String>, bool)> = cmd
        .get_groups()
        .filter(|g| !(*g).clone().is_multiple())
        .map(|g| {
            let ids = g.get_args().map(|id| id.to_string()).collect();
            (ids, g.is_required_set())
        })
        .filter(|(ids, _): &(Vec<String>, bool)| ids.len() > 1)
        .collect();
    let mut parts = vec![format!("\\fB{}\\fR", roff::escape(name))];
    let mut done: Vec<String> = Vec::new();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().to_string();
        if arg.is_hide_set()
            || arg.is_positional()
            || is_inherited(arg, globals)
            || done.contains(&id)
        {
            continue;
        }
        match alternatives.iter().find(|(ids, _)| ids.contains(&id)) {
            Some((ids, required)) => {
                let members: Vec<String> = ids
                    .iter()
                    .filter_map(|id| cmd.get_arguments().find(|a| a.get_id() == id))
                    .filter_map(synopsis_option)
                    .collect();
                done.extend(ids.iter().cloned());
                let (open, close) = if *required { ("(", ")") } else { ("[", "]") };
                parts.push(format!("{open}{}{close}", members.join(" | ")));
            }
            None => {
                let Some(option) = synopsis_option(arg) else {
                    continue;
                };
                let repeated = matches!(arg.get_action(), ArgAction::Append | ArgAction::Count);
                let dots = if repeated { "..." } else { "" };
                if arg.is_required_set() {
                    parts.push(format!("{option}{dots}"));
                } else {
                    parts.push(format!("[{option}]{dots}"));
                }
            }
        }
    }
    for arg in cmd.get_positionals().filter(|a| !a.is_hide_set()) {
        let many = arg.get_num_args().expect("built").max_values() > 1;
        let v = format!(
            "\\fI{}\\fR{}",
            roff::escape(&value_name(arg)),
            if many { "..." } else { "" }
        );
        let v = if arg.is_last_set() {
            format!("\\fB\\-\\-\\fR {v}")
        } else {
            v
        };
        parts.push(if arg.is_required_set() {
            v
        } else {
            format!("[{v}]")
        });
    }
    if cmd.has_subcommands() {
        parts.push("\\fICOMMAND\\fR".into());
    }
    format!(".PP\n{}\n", parts.join(" "))
}

/// `--option VALUE` (or `--option [VALUE]`), in roff.
fn synopsis_option(arg: &Arg) -> Option<String> {
    let flag = match (arg.get_short(), arg.get_long()) {
        (Some(s), Some(l)) => format!("\\fB\\-{s}\\fR|\\fB\\-\\-{}\\fR", roff::escape(l)),
        (Some(s), None) => format!("\\fB\\-{s}\\fR"),
        (None, Some(l)) => format!("\\fB\\-\\-{}\\fR", roff::escape(l)),
        (None, None) => return None,
    };
    let range = arg.get_num_args().expect("built");
    if !range.takes_values() {
        return Some(flag);
    }
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| roff::escape(v.get_name()))
        .collect();
    let v = if values.is_empty() {
        format!("\\fI{}\\fR", roff::escape(&value_name(arg)))
    } else {
        values.join("|")
    };
    Some(if range.min_values() == 0 {
        format!("{flag} [{v}]")
    } else {
        format!("{flag} {v}")
    })
}

fn value_name(arg: &Arg) -> String {
    match arg.get_value_names() {
        Some(names) => names
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        None => arg.get_id().as_str().to_uppercase(),
    }
}

/// Compares `files` (absolute paths under `root`) with what is on disk. With `LOGD_BLESS=1`
/// writes those that differ; otherwise panics naming them and their first differing line.
pub fn check_generated(root: &Path, files: &[(PathBuf, String)]) {
    let bless = std::env::var_os("LOGD_BLESS").is_some();
    let mut stale = Vec::new();
    for (path, want) in files {
        let have = std::fs::read_to_string(path).unwrap_or_default();
        if &have == want {
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        if bless {
            // Written aside and renamed: a test reading the file never sees half of it.
            let tmp = path.with_extension("blessing");
            std::fs::create_dir_all(path.parent().expect("a file in a directory"))
                .and_then(|()| std::fs::write(&tmp, want))
                .and_then(|()| std::fs::rename(&tmp, path))
                .unwrap_or_else(|e| panic!("cannot write {rel}: {e}"));
            eprintln!("wrote {rel}");
            continue;
        }
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(h, w)| h != w)
            .unwrap_or_else(|| have.lines().count().min(want.lines().count()));
        let show = |text: &str| text.lines().nth(line).unwrap_or("(end of file)").to_owned();
        stale.push(format!(
            "{rel}, line {}:\n  committed: {}\n  generated: {}",
            line + 1,
            show(&have),
            show(want)
        ));
    }
    assert!(
        stale.is_empty(),
        "generated from the clap definitions, and out of date (run with LOGD_BLESS=1 to \
         regenerate: LOGD_BLESS=1 cargo test --locked -p logd --bins):\n{}",
        stale.join("\n")
    );
}

impl Manual {
    /// `man --warnings` on the page as rendered now (not the committed file, which
    /// [`Manual::check`] compares), with `MANWIDTH=80`: what it says on stderr (empty if the page
    /// is clean). None if `man` is not here (and not required: see [`crate::require_tool`]).
    pub fn man_warnings(&self) -> Option<String> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let page = dir
            .path()
            .join(self.page_path().file_name().expect("a file name"));
        std::fs::write(&page, self.render()).expect("writing the page");
        man_warnings(&page)
    }

    /// The bash completion as rendered now, loaded by bash, which is asked for the completion of
    /// the command: its output, or the error. None if bash is not here.
    pub fn bash_completion(&self) -> Option<Result<String, String>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (path, text) = self
            .completions()
            .into_iter()
            .find(|(p, _)| p.extension().is_some_and(|e| e == "bash"))
            .expect("a bash completion");
        let script = dir.path().join(path.file_name().expect("a file name"));
        std::fs::write(&script, text).expect("writing the completion");
        bash_completion(&script, self.name())
    }
}

/// `man --warnings` on a page, with `MANWIDTH=80`: what it says on stderr (empty if the page is
/// clean). None if `man` is not here (and not required: see [`crate::require_tool`]).
pub fn man_warnings(page: &Path) -> Option<String> {
    let man = crate::require_tool("man")?;
    crate::require_tool("groff")?;
    let out = Process::new(man)
        .args(["--warnings", "-l"])
        .arg(page)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "")
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .output()
        .expect("running man");
    assert!(out.status.success(), "man failed on {}", page.display());
    assert!(
        !out.stdout.is_empty(),
        "man rendered nothing for {}",
        page.display()
    );
    Some(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Loads a bash completion script and asks bash for the completion of `name`: its output, or
/// the error. None if bash is not here.
pub fn bash_completion(script: &Path, name: &str) -> Option<Result<String, String>> {
    let bash = crate::require_tool("bash")?;
    let out = Process::new(bash)
        .arg("-c")
        .arg(format!("source \"$1\" && complete -p {name}"))
        .arg("bash")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .expect("running bash");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Some(if out.status.success() && out.stderr.is_empty() {
        Ok(text)
    } else {
        Err(text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backticks_in_help_become_bold() {
        assert_eq!(
            postprocess("a `b` c `d`\n.TP\nx ` y\n\nz\n"),
            "a \\fBb\\fR c \\fBd\\fR\n.TP\nx ` y\n.sp\nz\n"
        );
    }

    #[test]
    fn summaries_end_with_a_full_stop() {
        assert_eq!(sentence("Add a console"), "Add a console.");
        assert_eq!(sentence("Add it.\n\nMore"), "Add it.\n\nMore");
        assert_eq!(sentence("Add it\n\nMore"), "Add it.\n\nMore");
        assert_eq!(sentence("Kept [default: 32]"), "Kept [default: 32].");
    }

    #[test]
    fn the_environment_goes_before_the_sections_that_follow_it() {
        let (b, a) = split_before("## EXIT STATUS\n0\n## FILES\nf\n", &["FILES", "SEE ALSO"]);
        assert_eq!(
            (b.as_str(), a.as_str()),
            ("## EXIT STATUS\n0\n\n\n", "\n\n## FILES\nf\n")
        );
        let (b, a) = split_before("## X\n", &["FILES"]);
        assert_eq!((b.as_str(), a.as_str()), ("## X\n", "\n"));
        let mut cmd = Command::new("t").arg(Arg::new("s").long("socket").env("T_SOCKET"));
        cmd.build();
        assert_eq!(
            environment(&cmd).unwrap(),
            ".SH ENVIRONMENT\n.TP\n\\fBT_SOCKET\\fR\nThe same as \\fB\\-\\-socket\\fR, which wins over it.\n"
        );
    }

    #[test]
    fn the_description_is_split_from_the_rest() {
        let (d, r) = split_description("## DESCRIPTION\nd\n## FILES\nf\n").unwrap();
        assert_eq!((d.as_str(), r.as_str()), ("\nd\n\n\n", "\n\n## FILES\nf\n"));
        assert!(split_description("## FILES\nf\n").is_err());
        assert!(split_description("## DESCRIPTION\nd\n## OPTIONS\nf\n").is_err());
        assert!(split_description("x\n## DESCRIPTION\nd\n## F\n").is_err());
    }

    #[test]
    fn a_synopsis_names_every_visible_option_with_its_value() {
        let mut cmd = Command::new("t")
            .arg(Arg::new("socket").long("socket").value_name("PATH"))
            .arg(
                Arg::new("log")
                    .long("log")
                    .value_name("PATH")
                    .required(true),
            )
            .arg(
                Arg::new("v")
                    .short('v')
                    .long("verbose")
                    .action(ArgAction::Count),
            )
            .arg(Arg::new("cmd").last(true).num_args(1..).required(true));
        cmd.build();
        assert_eq!(
            synopsis(&cmd, "t", &[]),
            ".PP\n\\fBt\\fR [\\fB\\-\\-socket\\fR \\fIPATH\\fR] \\fB\\-\\-log\\fR \\fIPATH\\fR \
             [\\fB\\-v\\fR|\\fB\\-\\-verbose\\fR]... \\fB\\-\\-\\fR \\fICMD\\fR...\n"
        );
    }
}
