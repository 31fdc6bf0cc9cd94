//! What the endpoint exposes: every family's name, type and help, and their samples from a
//! snapshot.
//!
//! The names follow Prometheus's conventions (docs/DECISIONS.md, "Metric names"):
//! `logd_<subject>_<what>_<unit>`, the unit a base unit (`bytes`, `seconds`) and always last,
//! then `_total` for a counter. A count of things (`logd_domains`, `…_rotations_total`) has no
//! unit. The process families are the standard `process_*` ones, with their usual names and
//! meanings, so that dashboards made for any exporter read them. No rates: a counter and
//! PromQL's `rate()` give them over any window.

use logd_protocol::admin::{
    DaemonSnapshot, DomainSnapshot, GuestState, StreamKind, StreamSnapshot,
};

use super::text::{labels, Family, Kind, Text};
use crate::host::process::Usage;

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        help,
    }
}

// Per stream; labels `domain`, `driver`, `stream` (`stdio` or the console's name), `path`.
const STREAM_IN: Family = counter(
    "logd_stream_in_bytes_total",
    "Bytes taken from a stream's source (and appended messages)",
);
const STREAM_WRITTEN: Family = counter(
    "logd_stream_written_bytes_total",
    "Bytes written to a stream's log",
);
const STREAM_DROPPED: Family = counter(
    "logd_stream_dropped_bytes_total",
    "Bytes a stream dropped, by reason (disk: its log could not be written)",
);
const STREAM_ROTATIONS: Family = counter(
    "logd_stream_rotations_total",
    "Rotations of a stream's log since it was opened",
);
const STREAM_FILE_SIZE: Family = gauge(
    "logd_stream_file_size_bytes",
    "Size of a stream's active log file",
);
const STREAM_GUEST: Family = gauge(
    "logd_stream_guest_connected",
    "1 when the stream's source is connected, else 0",
);
// Per console stream, with the same labels.
const CONSOLE_SUBSCRIBERS: Family = gauge("logd_console_subscribers", "Subscribers of a console");
const CONSOLE_SLOW: Family = counter(
    "logd_console_slow_disconnects_total",
    "Console subscribers cut off for falling behind",
);
const CONSOLE_REFUSED: Family = counter(
    "logd_console_refused_total",
    "Console subscribers turned away: not allowed (a UNIX peer or attach in no list, a TLS client \
     without an accepted certificate), or the console full",
);
// The daemon.
const DOMAINS: Family = gauge("logd_domains", "Domains in the registry's table");
const DOMAIN_ACTORS: Family = gauge(
    "logd_domain_actors",
    "Domain actors running (as many as the domains, once every stop has been handled)",
);
const BUILD_INFO: Family = gauge(
    "logd_build_info",
    "1, labelled with the running build's version and GNU build-id",
);
// The standard process families (help texts as Prometheus's client libraries write them).
const PROCESS_CPU: Family = counter(
    "process_cpu_seconds_total",
    "Total user and system CPU time spent in seconds.",
);
const PROCESS_OPEN_FDS: Family = gauge("process_open_fds", "Number of open file descriptors.");
const PROCESS_MAX_FDS: Family = gauge(
    "process_max_fds",
    "Maximum number of open file descriptors.",
);
const PROCESS_RESIDENT: Family = gauge(
    "process_resident_memory_bytes",
    "Resident memory size in bytes.",
);
const PROCESS_VIRTUAL: Family = gauge(
    "process_virtual_memory_bytes",
    "Virtual memory size in bytes.",
);
const PROCESS_START: Family = gauge(
    "process_start_time_seconds",
    "Start time of the process since unix epoch in seconds (a re-exec keeps it).",
);

/// Every family, in the order [`encode`] writes them (a test holds it to that, and checks
/// each name against the convention and the admin guide).
#[cfg(test)]
pub const ALL: &[&Family] = &[
    &STREAM_IN,
    &STREAM_WRITTEN,
    &STREAM_DROPPED,
    &STREAM_ROTATIONS,
    &STREAM_FILE_SIZE,
    &STREAM_GUEST,
    &CONSOLE_SUBSCRIBERS,
    &CONSOLE_SLOW,
    &CONSOLE_REFUSED,
    &DOMAINS,
    &DOMAIN_ACTORS,
    &BUILD_INFO,
    &PROCESS_CPU,
    &PROCESS_OPEN_FDS,
    &PROCESS_MAX_FDS,
    &PROCESS_RESIDENT,
    &PROCESS_VIRTUAL,
    &PROCESS_START,
];

/// A stream with its labels, rendered once.
struct Row<'a> {
    stream: &'a StreamSnapshot,
    labels: String,
    /// The labels and `reason="disk"`.
    disk: String,
}

impl<'a> Row<'a> {
    fn new(d: &'a DomainSnapshot, s: &'a StreamSnapshot) -> Row<'a> {
        let name = match &s.kind {
            StreamKind::Stdio => "stdio",
            StreamKind::Console { name } => name,
        };
        let base = [
            ("domain", d.id.name.as_str()),
            ("driver", d.id.driver.as_str()),
            ("stream", name),
            ("path", s.path.as_str()),
        ];
        let mut disk = base.to_vec();
        disk.push(("reason", "disk"));
        Row {
            stream: s,
            labels: labels(&base),
            disk: labels(&disk),
        }
    }
}

/// The exposition of a snapshot, and of what /proc says of the process (`usage`, read at the
/// scrape; the fds and resident memory are the snapshot's, as `logdctl ps` shows them).
pub fn encode(snap: &DaemonSnapshot, usage: &Usage, domain_actors: u64) -> String {
    let rows: Vec<Row> = snap
        .domains
        .iter()
        .flat_map(|d| d.streams.iter().map(move |s| Row::new(d, s)))
        .collect();
    let consoles = || {
        rows.iter()
            .filter(|r| matches!(r.stream.kind, StreamKind::Console { .. }))
    };
    let mut t = Text::default();
    let per_stream = |t: &mut Text, f: &Family, value: fn(&StreamSnapshot) -> u64| {
        t.family(f, rows.iter().map(|r| (r.labels.as_str(), value(r.stream))));
    };
    per_stream(&mut t, &STREAM_IN, |s| s.bytes_in);
    per_stream(&mut t, &STREAM_WRITTEN, |s| s.bytes_written);
    t.family(
        &STREAM_DROPPED,
        rows.iter()
            .map(|r| (r.disk.as_str(), r.stream.dropped_disk)),
    );
    per_stream(&mut t, &STREAM_ROTATIONS, |s| s.rotations);
    per_stream(&mut t, &STREAM_FILE_SIZE, |s| s.file_size);
    per_stream(&mut t, &STREAM_GUEST, |s| {
        u64::from(s.guest == GuestState::Connected)
    });
    t.family(
        &CONSOLE_SUBSCRIBERS,
        consoles().map(|r| (r.labels.as_str(), r.stream.subscribers.len() as u64)),
    );
    t.family(
        &CONSOLE_SLOW,
        consoles().map(|r| (r.labels.as_str(), r.stream.slow_disconnects)),
    );
    t.family(
        &CONSOLE_REFUSED,
        consoles().map(|r| (r.labels.as_str(), r.stream.refused)),
    );

    t.family(&DOMAINS, [("", snap.domains.len() as u64)]);
    t.family(&DOMAIN_ACTORS, [("", domain_actors)]);
    let version = snap.version.strip_prefix("logd ").unwrap_or(&snap.version);
    let build = labels(&[("version", version), ("build_id", &snap.build_id)]);
    t.family(&BUILD_INFO, [(build.as_str(), 1)]);

    t.family(&PROCESS_CPU, [("", usage.cpu_seconds)]);
    t.family(&PROCESS_OPEN_FDS, [("", snap.fds)]);
    t.family(&PROCESS_MAX_FDS, [("", usage.max_fds)]);
    t.family(&PROCESS_RESIDENT, [("", snap.rss_kib * 1024)]);
    t.family(&PROCESS_VIRTUAL, [("", usage.virtual_bytes)]);
    t.family(&PROCESS_START, [("", snap.started_ms as f64 / 1000.0)]);
    t.finish()
}

#[cfg(test)]
mod tests;
