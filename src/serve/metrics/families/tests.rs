use super::*;
use logd_protocol::admin::{MailboxSnapshot, SubscriberSnapshot};
use logd_protocol::{ConsoleProtocol, DomainId};

/// Units a name may end with (before `_total`): Prometheus's base units.
const BASE_UNITS: &[&str] = &["bytes", "seconds"];
/// Words no name may hold: other units (use a base unit), rates (use `rate()`), and the
/// suffixes and types Prometheus reserves.
const FORBIDDEN: &[&str] = &[
    "ms",
    "us",
    "ns",
    "milliseconds",
    "microseconds",
    "nanoseconds",
    "minutes",
    "hours",
    "days",
    "kib",
    "mib",
    "gib",
    "kb",
    "mb",
    "gb",
    "kilobytes",
    "megabytes",
    "gigabytes",
    "bits",
    "percent",
    "per",
    "rate",
    "count",
    "sum",
    "bucket",
    "gauge",
    "counter",
    "total",
    "info",
];
/// Gauges that count things, or are 0/1, and so have no unit.
const DIMENSIONLESS: &[&str] = &[
    "logd_domains",
    "logd_domain_actors",
    "logd_console_subscribers",
    "logd_stream_guest_connected",
    "process_open_fds",
    "process_max_fds",
];

/// Why a family's name breaks the convention (docs/DECISIONS.md, "Metric names").
fn check(f: &Family) -> Result<(), String> {
    let name = f.name;
    let snake = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_');
    if !snake {
        return Err(format!("{name}: not snake_case"));
    }
    let Some(rest) = name
        .strip_prefix("logd_")
        .or_else(|| name.strip_prefix("process_"))
    else {
        return Err(format!("{name}: neither logd_ nor process_"));
    };
    if f.help.trim().is_empty() {
        return Err(format!("{name}: no help"));
    }
    let mut words: Vec<&str> = rest.split('_').collect();
    match f.kind {
        Kind::Counter if words.last() != Some(&"total") => {
            return Err(format!("{name}: a counter ends in _total"))
        }
        Kind::Counter => {
            words.pop();
        }
        Kind::Gauge if words.last() == Some(&"info") => {
            words.pop();
            if words.iter().any(|w| BASE_UNITS.contains(w)) {
                return Err(format!("{name}: an info gauge has no unit"));
            }
        }
        Kind::Gauge => {}
    }
    if let Some(w) = words.iter().find(|w| FORBIDDEN.contains(w)) {
        return Err(format!("{name}: `{w}` has no place in a name"));
    }
    let last = words.last().copied().unwrap_or_default();
    if let Some(w) = words[..words.len().saturating_sub(1)]
        .iter()
        .find(|w| BASE_UNITS.contains(w))
    {
        return Err(format!("{name}: the unit `{w}` comes last"));
    }
    let unitless_gauge = f.kind == Kind::Gauge
        && !name.ends_with("_info")
        && !BASE_UNITS.contains(&last)
        && !DIMENSIONLESS.contains(&name);
    if unitless_gauge {
        return Err(format!(
            "{name}: a gauge ends in a base unit ({BASE_UNITS:?}) or _info, or counts things \
             (DIMENSIONLESS)"
        ));
    }
    Ok(())
}

#[test]
fn every_name_follows_the_convention() {
    for f in ALL {
        check(f).unwrap();
    }
    let mut names: Vec<&str> = ALL.iter().map(|f| f.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ALL.len(), "a name twice");
}

#[test]
fn the_check_refuses_bad_names() {
    let bad = [
        counter("logd_stream_bytes_in_total", "h"),
        gauge("logd_stream_rate_in_bytes_per_second", "h"),
        gauge("logd_uptime_ms", "h"),
        gauge("logd_resident_memory_kib", "h"),
        counter("logd_stream_in_bytes", "h"),
        gauge("logd_stream_in_bytes_total", "h"),
        gauge("logd_open_files", "h"),
        gauge("logd_build", "h"),
        gauge("logd_stream_size_bytes_info", "h"),
        counter("logd_stream_written_bytes_total", ""),
        counter("logdStreamBytes_total", "h"),
        counter("other_bytes_total", "h"),
    ];
    for f in &bad {
        assert!(check(f).is_err(), "{} passed", f.name);
    }
}

fn stream(kind: StreamKind, path: &str) -> StreamSnapshot {
    StreamSnapshot {
        kind,
        path: path.into(),
        bytes_in: 1000,
        bytes_written: 900,
        file_size: 400,
        rotations: 2,
        dropped_disk: 100,
        guest: GuestState::Connected,
        last_error: None,
        rate_in: 50,
        rate_out: 50,
        subscribers: Vec::new(),
        slow_disconnects: 0,
        refused: 0,
    }
}

fn sample() -> DaemonSnapshot {
    let mailbox = MailboxSnapshot {
        depth: 0,
        capacity: 64,
    };
    let mut console = stream(
        StreamKind::Console {
            name: "serial0".into(),
        },
        "/var/log/logd/vm \"1\"/console.log",
    );
    console.slow_disconnects = 3;
    console.refused = 4;
    console.guest = GuestState::Waiting;
    console.subscribers.push(SubscriberSnapshot {
        id: 1,
        peer: "127.0.0.1:4000".into(),
        since_ms: 0,
        bytes_sent: 0,
        queue: 0,
        queue_limit: 1,
        writer: true,
        protocol: ConsoleProtocol::Raw,
        role: logd_protocol::admin::Role::ReadWrite,
    });
    DaemonSnapshot {
        version: "logd 1.2.3".into(),
        pid: 42,
        uptime_ms: 5000,
        fds: 27,
        rss_kib: 2048,
        registry: mailbox,
        domains: vec![DomainSnapshot {
            id: DomainId::from_name("qemu", "vm1"),
            since_ms: 0,
            mailbox,
            streams: vec![stream(StreamKind::Stdio, "/var/log/logd/vm1.log"), console],
        }],
        build_id: "ab12".into(),
        exe: "/usr/sbin/logd".into(),
        exe_mtime_ms: 0,
        started_ms: 1_700_000_000_250,
        reexecs: 1,
        last_reexec: None,
    }
}

const USAGE: Usage = Usage {
    cpu_seconds: 1.25,
    virtual_bytes: 1 << 30,
    max_fds: 1024,
};

#[test]
fn the_output_has_every_family_and_nothing_else() {
    let text = encode(&sample(), &USAGE, 1);
    let typed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let all: Vec<&str> = ALL.iter().map(|f| f.name).collect();
    assert_eq!(typed, all, "{text}");
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let name = l.split(['{', ' ']).next().unwrap();
        assert!(all.contains(&name), "{name} is no family: {text}");
    }
    for name in &all {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{"))),
            "{name} has no sample: {text}"
        );
    }
}

#[test]
fn the_values_are_the_snapshots() {
    let text = encode(&sample(), &USAGE, 1);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str, stream: Option<&str>| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == name && stream.is_none_or(|st| s.labels.get("stream") == Some(st))
            })
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            ref v => panic!("{name}: {v:?}"),
        }
    };
    assert_eq!(value("logd_stream_in_bytes_total", Some("stdio")), 1000.0);
    assert_eq!(
        value("logd_stream_written_bytes_total", Some("stdio")),
        900.0
    );
    assert_eq!(
        value("logd_stream_dropped_bytes_total", Some("stdio")),
        100.0
    );
    assert_eq!(value("logd_stream_rotations_total", Some("stdio")), 2.0);
    assert_eq!(value("logd_stream_file_size_bytes", Some("stdio")), 400.0);
    assert_eq!(value("logd_stream_guest_connected", Some("stdio")), 1.0);
    assert_eq!(value("logd_stream_guest_connected", Some("serial0")), 0.0);
    assert_eq!(value("logd_console_subscribers", Some("serial0")), 1.0);
    assert_eq!(
        value("logd_console_slow_disconnects_total", Some("serial0")),
        3.0
    );
    assert_eq!(value("logd_console_refused_total", Some("serial0")), 4.0);
    assert_eq!(value("logd_domains", None), 1.0);
    assert_eq!(value("logd_domain_actors", None), 1.0);
    assert_eq!(value("process_cpu_seconds_total", None), 1.25);
    assert_eq!(value("process_open_fds", None), 27.0);
    assert_eq!(value("process_max_fds", None), 1024.0);
    assert_eq!(
        value("process_resident_memory_bytes", None),
        2048.0 * 1024.0
    );
    assert_eq!(
        value("process_virtual_memory_bytes", None),
        (1u64 << 30) as f64
    );
    assert_eq!(value("process_start_time_seconds", None), 1_700_000_000.25);
    assert!(
        text.contains("logd_build_info{version=\"1.2.3\",build_id=\"ab12\"} 1\n"),
        "{text}"
    );
    // Only the console has console families, and the dropped bytes say why.
    assert!(
        !text.contains("logd_console_subscribers{domain=\"vm1\",driver=\"qemu\",stream=\"stdio\"")
    );
    assert!(text.contains("stream=\"stdio\",path=\"/var/log/logd/vm1.log\",reason=\"disk\"} 100\n"));
    // A quote in a path is escaped.
    assert!(
        text.contains(r#"path="/var/log/logd/vm \"1\"/console.log""#),
        "{text}"
    );
}

#[test]
fn no_streams_no_stream_families() {
    let mut snap = sample();
    snap.domains.clear();
    let text = encode(&snap, &USAGE, 0);
    assert!(!text.contains("logd_stream"), "{text}");
    assert!(text.contains("logd_domains 0\n"), "{text}");
}

#[test]
fn the_admin_guide_names_every_family() {
    let guide = include_str!("../../../../docs/admin.md");
    for f in ALL {
        assert!(
            guide.contains(&format!("`{}`", f.name)),
            "docs/admin.md does not name {}",
            f.name
        );
    }
}
