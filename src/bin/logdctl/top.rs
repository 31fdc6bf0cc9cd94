//! `logdctl top`: a live view of every stream, refreshed every second, busiest first. Keys sort
//! it (`s`), filter it by domain (`/`) and quit it (`q`); the bottom line says so.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use logd_protocol::admin::StreamKind;
use logd_protocol::client::AdminClient;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::admin::{guest, human};
use super::term;

/// Alternate screen on, cursor hidden / the reverse.
const ENTER: &str = "\x1b[?1049h\x1b[?25l";
const LEAVE: &str = "\x1b[?25h\x1b[?1049l";

/// The terminal's size, from the environment or 80×24.
fn size() -> (usize, usize) {
    let get = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (mut cols, mut rows) = (get("COLUMNS", 80), get("LINES", 24));
    if let Ok(out) = std::process::Command::new("stty")
        .arg("size")
        .stdin(std::process::Stdio::inherit())
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text
            .split_whitespace()
            .filter_map(|v| v.parse::<usize>().ok());
        if let (Some(r), Some(c)) = (it.next(), it.next()) {
            rows = r;
            cols = c;
        }
    }
    (cols.max(40), rows.max(5))
}

fn fit(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        format!("{s:<w$}")
    } else {
        let keep: String = s
            .chars()
            .rev()
            .take(w.saturating_sub(1))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{keep}")
    }
}

/// One stream, as a row of the table.
#[derive(Debug, Clone, Default)]
struct Row {
    domain: String,
    stream: String,
    rate_in: u64,
    rate_out: u64,
    bytes_in: u64,
    rotations: u64,
    dropped: u64,
    guest: &'static str,
    subscribers: usize,
}

/// What `s` cycles through: the column the rows are sorted by, largest first (names A to Z).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Sort {
    #[default]
    Rate,
    Bytes,
    Rotations,
    Drops,
    Name,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Rate => Sort::Bytes,
            Sort::Bytes => Sort::Rotations,
            Sort::Rotations => Sort::Drops,
            Sort::Drops => Sort::Name,
            Sort::Name => Sort::Rate,
        }
    }

    /// As the help line names it: the column's header.
    fn label(self) -> &'static str {
        match self {
            Sort::Rate => "IN/s",
            Sort::Bytes => "IN",
            Sort::Rotations => "ROT",
            Sort::Drops => "DROP",
            Sort::Name => "DOMAIN",
        }
    }

    fn order(self, rows: &mut [Row]) {
        let by_name = |a: &Row, b: &Row| a.domain.cmp(&b.domain).then(a.stream.cmp(&b.stream));
        rows.sort_by(|a, b| {
            let first = match self {
                Sort::Rate => b.rate_in.cmp(&a.rate_in),
                Sort::Bytes => b.bytes_in.cmp(&a.bytes_in),
                Sort::Rotations => b.rotations.cmp(&a.rotations),
                Sort::Drops => b.dropped.cmp(&a.dropped),
                Sort::Name => std::cmp::Ordering::Equal,
            };
            first.then_with(|| by_name(a, b))
        });
    }
}

/// What the keys changed: the sort, the filter, and whether the filter is being typed.
#[derive(Debug, Default)]
struct View {
    sort: Sort,
    /// Rows whose domain holds this text are shown (all when empty).
    filter: String,
    editing: bool,
}

/// What a key asks of the loop.
#[derive(Debug, PartialEq, Eq)]
enum Key {
    /// Draw again with the view as changed.
    Redraw,
    Quit,
    Ignored,
}

impl View {
    /// One byte from the terminal (raw mode). While the filter is typed, every printable key
    /// goes into it (`q` too): Enter keeps it, Esc clears it, Backspace takes a character back.
    fn key(&mut self, b: u8) -> Key {
        match (self.editing, b) {
            (_, 3) => Key::Quit, // Ctrl-C
            (true, b'\r' | b'\n') => {
                self.editing = false;
                Key::Redraw
            }
            (true, 0x1b) => {
                self.editing = false;
                self.filter.clear();
                Key::Redraw
            }
            (true, 0x7f | 0x08) => {
                self.filter.pop();
                Key::Redraw
            }
            (true, 0x20..=0x7e) => {
                self.filter.push(b as char);
                Key::Redraw
            }
            (true, _) => Key::Ignored,
            (false, b'q') => Key::Quit,
            (false, b's') => {
                self.sort = self.sort.next();
                Key::Redraw
            }
            (false, b'/') => {
                self.editing = true;
                Key::Redraw
            }
            (false, 0x1b) if !self.filter.is_empty() => {
                self.filter.clear();
                Key::Redraw
            }
            (false, _) => Key::Ignored,
        }
    }

    /// The bottom line: the keys, or the filter being typed.
    fn help(&self) -> String {
        if self.editing {
            format!(
                "filter by domain: {}_   Enter keeps it, Esc clears it",
                self.filter
            )
        } else {
            let filter = if self.filter.is_empty() {
                String::new()
            } else {
                format!(" [{}]", self.filter)
            };
            format!("s sort ({})  / filter{filter}  q quit", self.sort.label())
        }
    }
}

/// The daemon's line and one row per stream.
fn fetch(client: &mut AdminClient) -> anyhow::Result<(String, Vec<Row>)> {
    let mut snap = client.snapshot()?;
    snap.domains.iter_mut().for_each(crate::admin::for_terminal);
    let mut rows = Vec::new();
    for d in &snap.domains {
        for s in &d.streams {
            rows.push(Row {
                domain: d.id.name.clone(),
                stream: match &s.kind {
                    StreamKind::Stdio => "stdio".to_owned(),
                    StreamKind::Console { name } => name.clone(),
                },
                rate_in: s.rate_in,
                rate_out: s.rate_out,
                bytes_in: s.bytes_in,
                rotations: s.rotations,
                dropped: s.dropped_disk,
                guest: guest(s.guest),
                subscribers: s.subscribers.len(),
            });
        }
    }
    let title = format!(
        "logd top  pid {}  up {}s  domains {}  fds {}  rss {}K",
        snap.pid,
        snap.uptime_ms / 1000,
        snap.domains.len(),
        snap.fds,
        snap.rss_kib
    );
    Ok((title, rows))
}

/// The whole screen for a terminal of `cols` × `lines`: the title, the header, as many rows as
/// fit, and the help line on the last line.
fn render(title: &str, rows: &[Row], view: &View, cols: usize, lines: usize) -> String {
    let mut shown: Vec<Row> = rows
        .iter()
        .filter(|r| r.domain.contains(&view.filter))
        .cloned()
        .collect();
    view.sort.order(&mut shown);
    let mut out = String::new();
    out.push_str("\x1b[H\x1b[2J");
    out.push_str(&fit(title, cols));
    out.push_str("\r\n");
    // The fixed columns take 60; the domain name gets the rest.
    let name_w = cols.saturating_sub(61).clamp(8, 40);
    let header = format!(
        "{} {:<9} {:>8} {:>8} {:>8} {:>5} {:>6} {:<4} {:>4}",
        fit("DOMAIN", name_w),
        "STREAM",
        "IN/s",
        "OUT/s",
        "IN",
        "ROT",
        "DROP",
        "GST",
        "SUBS"
    );
    out.push_str(&format!("\x1b[7m{}\x1b[0m\r\n", fit(&header, cols)));
    // Title, header and help take three lines.
    for l in shown.iter().take(lines.saturating_sub(3)) {
        let row = format!(
            "{} {:<9} {:>8} {:>8} {:>8} {:>5} {:>6} {:<4} {:>4}",
            fit(&l.domain, name_w),
            fit(&l.stream, 9),
            human(l.rate_in),
            human(l.rate_out),
            human(l.bytes_in),
            l.rotations,
            human(l.dropped),
            l.guest,
            l.subscribers
        );
        out.push_str(&fit(&row, cols));
        out.push_str("\r\n");
    }
    // The help line, on the last line whatever the number of rows, without a newline after
    // it (one would scroll the screen).
    out.push_str(&format!("\x1b[{lines};1H"));
    out.push_str(fit(&view.help(), cols).trim_end());
    out
}

pub fn run(socket: &Path) -> anyhow::Result<ExitCode> {
    let mut client = crate::connect::admin_connect(socket)?;
    term::catch_signals()?;
    term::raw_mode(LEAVE)?;
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(ENTER.as_bytes());
    let stdin = std::io::stdin();
    let mut view = View::default();
    loop {
        let (title, rows) = match fetch(&mut client) {
            Ok(f) => f,
            Err(e) => term::leave(1, &format!("{e}")),
        };
        let draw = |view: &View, stdout: &mut std::io::Stdout| {
            let (cols, lines) = size();
            let _ = stdout.write_all(render(&title, &rows, view, cols, lines).as_bytes());
            let _ = stdout.flush();
        };
        draw(&view, &mut stdout);
        // Wait a second for keys, drawing again at once when one changes the view.
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let mut fds = [PollFd::new(
                std::os::fd::AsFd::as_fd(&stdin),
                PollFlags::POLLIN,
            )];
            let ms = PollTimeout::from(left.as_millis().min(1000) as u16);
            match poll(&mut fds, ms) {
                Ok(0) => break,
                Ok(_) => {
                    let mut b = [0u8; 16];
                    let n = nix::unistd::read(&stdin, &mut b).unwrap_or(0);
                    if n == 0 {
                        term::leave(0, "");
                    }
                    let mut redraw = false;
                    for &c in &b[..n] {
                        match view.key(c) {
                            Key::Quit => term::leave(0, ""),
                            Key::Redraw => redraw = true,
                            Key::Ignored => {}
                        }
                    }
                    if redraw {
                        draw(&view, &mut stdout);
                    }
                }
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(domain: &str, rate_in: u64, bytes_in: u64, rotations: u64, dropped: u64) -> Row {
        Row {
            domain: domain.to_owned(),
            stream: "stdio".to_owned(),
            rate_in,
            bytes_in,
            rotations,
            dropped,
            guest: "up",
            ..Row::default()
        }
    }

    fn sample() -> Vec<Row> {
        vec![
            row("web-1", 10, 500, 1, 0),
            row("db-1", 300, 100, 0, 7),
            row("web-2", 20, 9000, 5, 0),
        ]
    }

    /// The domains on the screen, top to bottom.
    fn order(screen: &str) -> Vec<String> {
        screen
            .split("\r\n")
            .skip(2)
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.contains('-'))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn s_cycles_the_sort_column() {
        let mut v = View::default();
        let rows = sample();
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push((v.sort.label(), order(&render("t", &rows, &v, 80, 24))));
            assert_eq!(v.key(b's'), Key::Redraw);
        }
        assert_eq!(v.sort, Sort::Rate, "five presses come back to the start");
        let want = [
            ("IN/s", ["db-1", "web-2", "web-1"]),
            ("IN", ["web-2", "web-1", "db-1"]),
            ("ROT", ["web-2", "web-1", "db-1"]),
            ("DROP", ["db-1", "web-1", "web-2"]),
            ("DOMAIN", ["db-1", "web-1", "web-2"]),
        ];
        for ((label, got), (wl, wo)) in seen.iter().zip(want) {
            assert_eq!((*label, got.as_slice()), (wl, &wo.map(String::from)[..]));
        }
    }

    #[test]
    fn slash_filters_by_domain_enter_keeps_it_esc_clears_it() {
        let mut v = View::default();
        let rows = sample();
        v.key(b'/');
        for &c in b"wqb" {
            v.key(c);
        }
        v.key(0x7f);
        assert_eq!(v.filter, "wq", "q is typed into the filter, not a quit");
        v.key(0x7f);
        v.key(0x7f);
        for &c in b"web" {
            v.key(c);
        }
        let screen = render("t", &rows, &v, 80, 24);
        assert!(screen.contains("filter by domain: web_"), "{screen}");
        v.key(b'\r');
        assert!(!v.editing);
        let screen = render("t", &rows, &v, 80, 24);
        assert_eq!(order(&screen), ["web-2", "web-1"]);
        assert!(
            screen.ends_with("s sort (IN/s)  / filter [web]  q quit"),
            "{screen:?}"
        );
        v.key(b'/');
        v.key(0x1b);
        assert_eq!((v.editing, v.filter.as_str()), (false, ""));
        assert_eq!(order(&render("t", &rows, &v, 80, 24)).len(), 3);
        assert_eq!(v.key(b'q'), Key::Quit);
    }

    /// The help line is on the last line; the layout of the table is as before it: the domain
    /// column is as wide as the terminal leaves it (80 columns: 19), and no line is wider than
    /// the terminal.
    #[test]
    fn the_help_line_is_at_the_bottom_and_the_columns_stay() {
        let rows: Vec<Row> = (0..40)
            .map(|i| row(&format!("a-very-long-domain-name-{i:02}"), i, 0, 0, 0))
            .collect();
        for (cols, name_w) in [(80, 19), (90, 29), (101, 40), (200, 40)] {
            let screen = render("t", &rows, &View::default(), cols, 24);
            let (table, help) = screen.rsplit_once("\x1b[24;1H").unwrap();
            assert_eq!(help, "s sort (IN/s)  / filter  q quit");
            let lines: Vec<&str> = table.split("\r\n").collect();
            // Title, header, 21 rows, and the empty rest after the last "\r\n".
            assert_eq!(lines.len(), 24, "{cols}");
            let header = lines[1].trim_start_matches("\x1b[7m");
            assert_eq!(header.find("STREAM"), Some(name_w + 1), "{cols}: {header}");
            // The names are 26 characters: cut, from the left, in a narrower column.
            assert_eq!(
                lines[2].starts_with('…'),
                name_w < 26,
                "{cols}: {}",
                lines[2]
            );
            assert_eq!(
                lines[2].chars().nth(name_w),
                Some(' '),
                "{cols}: {}",
                lines[2]
            );
            for l in &lines[2..23] {
                assert!(l.chars().count() <= cols, "{cols}: {l}");
            }
        }
    }
}
