//! `logdctl top`: a live view of every stream, refreshed every second, busiest first.

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

fn frame(client: &mut AdminClient) -> anyhow::Result<String> {
    let mut snap = client.snapshot()?;
    snap.domains.iter_mut().for_each(crate::admin::for_terminal);
    let (cols, rows) = size();
    let mut lines = Vec::new();
    for d in &snap.domains {
        for s in &d.streams {
            let kind = match &s.kind {
                StreamKind::Stdio => "stdio".to_owned(),
                StreamKind::Console { name } => name.clone(),
            };
            let guest = guest(s.guest);
            lines.push((
                s.rate_in,
                d.id.name.clone(),
                kind,
                s.rate_out,
                s.bytes_in,
                s.rotations,
                s.dropped_disk,
                guest,
                s.subscribers.len(),
            ));
        }
    }
    lines.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut out = String::new();
    out.push_str("\x1b[H\x1b[2J");
    let title = format!(
        "logd top  pid {}  up {}s  domains {}  fds {}  rss {}K   (q quits)",
        snap.pid,
        snap.uptime_ms / 1000,
        snap.domains.len(),
        snap.fds,
        snap.rss_kib
    );
    out.push_str(&fit(&title, cols));
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
    for l in lines.iter().take(rows.saturating_sub(3)) {
        let row = format!(
            "{} {:<9} {:>8} {:>8} {:>8} {:>5} {:>6} {:<4} {:>4}",
            fit(&l.1, name_w),
            fit(&l.2, 9),
            human(l.0),
            human(l.3),
            human(l.4),
            l.5,
            human(l.6),
            l.7,
            l.8
        );
        out.push_str(&fit(&row, cols));
        out.push_str("\r\n");
    }
    Ok(out)
}

pub fn run(socket: &Path) -> anyhow::Result<ExitCode> {
    let mut client = crate::connect::admin_connect(socket)?;
    term::catch_signals()?;
    term::raw_mode(LEAVE)?;
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(ENTER.as_bytes());
    let stdin = std::io::stdin();
    loop {
        match frame(&mut client) {
            Ok(f) => {
                let _ = stdout.write_all(f.as_bytes());
                let _ = stdout.flush();
            }
            Err(e) => term::leave(1, &format!("{e}")),
        }
        // Wait a second for a key; q or Ctrl-C quits.
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
                    if n == 0 || b[..n].iter().any(|&c| c == b'q' || c == 3) {
                        term::leave(0, "");
                    }
                }
                Err(_) => break,
            }
        }
    }
}
