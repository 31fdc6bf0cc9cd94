//! `logdctl ps` and `logdctl stats`: the admin socket's snapshot, as tables or JSON.

use std::path::Path;
use std::process::ExitCode;

use logd_protocol::admin::{DomainSnapshot, GuestState, StreamKind, SubscriberSnapshot};

/// Bytes, short: 512, 1.5K, 20M, 3.1G.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["", "K", "M", "G"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}")
    } else if v < 10.0 {
        format!("{v:.1}{}", UNITS[u])
    } else {
        format!("{v:.0}{}", UNITS[u])
    }
}

/// Escapes what the daemon's clients named (paths, console names, peers, error messages)
/// for a terminal: a log path may hold ESC sequences (`cli::escape_controls`).
pub fn for_terminal(d: &mut DomainSnapshot) {
    let esc = |s: &mut String| {
        if let std::borrow::Cow::Owned(e) = logd::cli::escape_controls(s) {
            *s = e;
        }
    };
    esc(&mut d.id.name);
    esc(&mut d.id.driver);
    for st in &mut d.streams {
        esc(&mut st.path);
        if let StreamKind::Console { name } = &mut st.kind {
            esc(name);
        }
        if let Some(e) = &mut st.last_error {
            esc(&mut e.message);
        }
        for sub in &mut st.subscribers {
            esc(&mut sub.peer);
        }
    }
}

/// One subscriber on one line, as `ps` and `stats` show it.
fn subscriber(sub: &SubscriberSnapshot) -> String {
    format!(
        "#{:<5} {:<22} {:<10} {:<6} sent {:>7}  queue {}/{}  {:?}",
        sub.id,
        sub.peer,
        sub.role.to_string(),
        if sub.writer { "writer" } else { "reader" },
        human(sub.bytes_sent),
        human(sub.queue),
        human(sub.queue_limit),
        sub.protocol
    )
}

pub fn guest(g: GuestState) -> &'static str {
    match g {
        GuestState::Connected => "up",
        GuestState::Waiting => "wait",
        GuestState::Eof => "eof",
    }
}

fn rows(d: &DomainSnapshot, out: &mut String) {
    use std::fmt::Write;
    for s in &d.streams {
        let kind = match &s.kind {
            StreamKind::Stdio => "stdio".to_owned(),
            StreamKind::Console { name } => name.clone(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:<9} {:>7} {:>7} {:>4} {:>6} {:<7} {:>7}/s  {}",
            d.id.name,
            kind,
            human(s.bytes_in),
            human(s.bytes_written),
            s.rotations,
            human(s.dropped_disk),
            guest(s.guest),
            human(s.rate_in),
            s.path
        );
        for sub in &s.subscribers {
            let _ = writeln!(out, "  {}", subscriber(sub));
        }
    }
}

const HEADER: &str =
    "DOMAIN           STREAM         IN WRITTEN  ROT   DROP GUEST      RATE    PATH";

pub fn ps(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let mut snap = crate::connect::admin_connect(socket)?.snapshot()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&snap)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    for d in &mut snap.domains {
        for_terminal(d);
        rows(d, &mut out);
    }
    println!("{}", daemon_line(&snap));
    println!("{HEADER}");
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `logd 0.1.0 pid 123 build 6a95… up 3h12m, 2 re-execs (last: ok, blackout 4.1 ms)`.
fn daemon_line(s: &logd_protocol::admin::DaemonSnapshot) -> String {
    let up = s.uptime_ms / 1000;
    let mut line = format!(
        "{} pid {} build {} up {}h{:02}m{:02}s",
        s.version,
        s.pid,
        if s.build_id.is_empty() {
            "?"
        } else {
            &s.build_id[..s.build_id.len().min(12)]
        },
        up / 3600,
        up / 60 % 60,
        up % 60
    );
    if s.reexecs > 0 || s.last_reexec.is_some() {
        line.push_str(&format!(", {} re-execs", s.reexecs));
    }
    if let Some(r) = &s.last_reexec {
        match &r.error {
            None => line.push_str(&format!(
                " (last: pid {} -> {}, blackout {:.1} ms)",
                r.from_pid,
                r.to_pid,
                r.blackout_us as f64 / 1000.0
            )),
            Some(e) => line.push_str(&format!(" (last failed: {e})")),
        }
    }
    line
}

pub fn reexec(
    socket: &Path,
    binary: &Option<std::path::PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let binary = match binary {
        Some(b) => Some(
            std::path::absolute(b)
                .map_err(|e| anyhow::anyhow!("binary {}: {e}", b.display()))?
                .display()
                .to_string(),
        ),
        None => None,
    };
    let mut c = crate::connect::admin_connect(socket)?;
    let r = c.reexec(binary)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "re-exec done: pid {} -> {}, {} domains and {} fds carried, blackout {:.1} ms ({:.1} ms from the request)",
            r.from_pid,
            r.to_pid,
            r.domains,
            r.fds,
            r.blackout_us as f64 / 1000.0,
            r.total_us as f64 / 1000.0
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn events(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut c = crate::connect::admin_connect(socket)?;
    c.subscribe_events()?;
    let mut out = std::io::stdout().lock();
    loop {
        let ev = c.next_event()?;
        // {"log_opened": {fields}} becomes {"at_ms": …, "event": "log_opened", fields…}.
        let mut flat = serde_json::Map::new();
        flat.insert("at_ms".into(), ev.at_ms.into());
        if let serde_json::Value::Object(o) = serde_json::to_value(&ev.kind)? {
            for (name, fields) in o {
                flat.insert("event".into(), name.into());
                if let serde_json::Value::Object(f) = fields {
                    flat.extend(f);
                }
            }
        }
        if json {
            writeln!(out, "{}", serde_json::Value::Object(flat))?;
        } else {
            let name = flat.remove("event").unwrap_or_default();
            let at = flat
                .remove("at_ms")
                .and_then(|v| v.as_u64())
                .map_or_else(|| "?".to_owned(), crate::when::rfc3339_ms);
            let fields: Vec<String> = flat
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => {
                        format!("{k}={}", logd::cli::escape_controls(s))
                    }
                    other => format!("{k}={other}"),
                })
                .collect();
            writeln!(
                out,
                "{at} {} {}",
                name.as_str().unwrap_or("?"),
                fields.join(" ")
            )?;
        }
        out.flush()?;
    }
}

pub fn stats(socket: &Path, domain: &str, json: bool) -> anyhow::Result<ExitCode> {
    let mut d = crate::connect::admin_connect(socket)?.domain(domain)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(ExitCode::SUCCESS);
    }
    for_terminal(&mut d);
    println!("domain {} ({} {})", d.id.name, d.id.driver, d.id.uuid);
    println!("mailbox {}/{}", d.mailbox.depth, d.mailbox.capacity);
    for s in &d.streams {
        println!();
        match &s.kind {
            StreamKind::Stdio => println!("stdio log {}", s.path),
            StreamKind::Console { name } => println!("console {name}, log {}", s.path),
        }
        println!("  bytes in       {}", s.bytes_in);
        println!("  bytes written  {}", s.bytes_written);
        println!("  file size      {}", s.file_size);
        println!("  rotations      {}", s.rotations);
        println!("  dropped (disk) {}", s.dropped_disk);
        println!("  guest          {}", guest(s.guest));
        println!(
            "  rate in/out    {}/s / {}/s",
            human(s.rate_in),
            human(s.rate_out)
        );
        if let Some(e) = &s.last_error {
            println!(
                "  last error     {} (at {})",
                e.message,
                crate::when::rfc3339_ms(e.at_ms)
            );
        }
        if matches!(s.kind, StreamKind::Console { .. }) {
            println!("  slow disconnects {}", s.slow_disconnects);
            for sub in &s.subscribers {
                println!("  subscriber {}", subscriber(sub));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
