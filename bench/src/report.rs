//! What the bench prints: each figure as one line `name: value unit` on stdout, notes on stderr,
//! medians over the runs, and the ratios between scenarios that come last.

use std::fmt;

use crate::bench::Bench;

/// The ratios between scenarios, for those that ran.
pub(crate) fn comparisons(b: &mut Bench) {
    #[rustfmt::skip]
    let pairs = [
        // (figure prefix, scenario, compared with, figure suffix)
        ("one_stream_64k", "one_stream_64k", "baseline_64k", "vs_baseline"),
        ("one_stream_64k", "one_stream_64k", "baseline_64k_pipe1m", "vs_baseline_pipe1m"),
        ("one_stream_100b", "one_stream_100b", "baseline_100b", "vs_baseline"),
        ("idle5000", "idle5000_one_stream_64k", "one_stream_64k", "vs_alone"),
        ("idle10000", "idle10000_one_stream_64k", "one_stream_64k", "vs_alone"),
        ("streams_16", "streams_16", "baseline_16_streams", "vs_baseline"),
        // Issue 13: logd through its virtlogd socket, and virtlogd, on the same test.
        ("logd_virtlogd_one_stream_64k", "logd_virtlogd_one_stream_64k", "virtlogd_one_stream_64k", "vs_virtlogd"),
        ("logd_virtlogd_one_stream_100b", "logd_virtlogd_one_stream_100b", "virtlogd_one_stream_100b", "vs_virtlogd"),
        // Issue 18, target 6: logd on its own socket against virtlogd, 64 KiB and 100-byte writes.
        ("one_stream_64k", "one_stream_64k", "virtlogd_one_stream_64k", "vs_virtlogd"),
        ("one_stream_100b", "one_stream_100b", "virtlogd_one_stream_100b", "vs_virtlogd"),
        // Issue 18, target 5: 64 subscribers against a no-daemon fan-out to 64 sockets.
        ("console_fanout_64", "console_fanout_64", "console_fanout_64_baseline", "vs_baseline"),
    ];
    for (prefix, num, den, suffix) in pairs {
        compare(b, prefix, num, den, suffix);
    }
    // Issue 6, target 3: opening the 10,000th domain costs no more than opening the 10th.
    if let (Some(late), Some(early)) = (b.get("open_rate_at_10000"), b.get("open_rate_at_10")) {
        if early > 0.0 {
            b.figure("open_rate_10000_vs_10", late / early * 100.0, "%");
        }
    }
    // Issue 13: opens/s through logd's virtlogd socket as a percentage of virtlogd's.
    for at in ["10", "10000"] {
        let ours = format!("logd_virtlogd_open_rate_at_{at}");
        let name = format!("{ours}_vs_virtlogd");
        percent(b, &name, &ours, &format!("virtlogd_open_rate_at_{at}"));
    }
    // Issue 18, target 3: logd's re-exec log gap as a percentage of virtlogd's, by one method.
    for count in [1, 1000, 10_000] {
        percent(
            b,
            &format!("reexec_log_gap_{count}_vs_virtlogd"),
            &format!("reexec_log_gap_{count}_ms"),
            &format!("virtlogd_reexec_log_gap_{count}_ms"),
        );
    }
    // Issue 6, target 4b: host memory (user plus kernel) per idle domain no more than virtlogd's.
    if let (Some(ours), Some(theirs)) = (
        b.get("host_per_idle_domain_10000"),
        b.get("virtlogd_host_per_idle_domain_10000"),
    ) {
        if theirs > 0.0 {
            b.figure(
                "host_per_idle_domain_10000_vs_virtlogd",
                ours / theirs * 100.0,
                "%",
            );
        }
    }
    // Issue 18, target 1: the same with only the kernel memory that cannot be reclaimed
    // (`KernelMemory::read_pinned`).
    if let (Some(ours), Some(theirs)) = (
        b.get("host_pinned_per_idle_domain_10000"),
        b.get("virtlogd_host_pinned_per_idle_domain_10000"),
    ) {
        if theirs > 0.0 {
            b.figure(
                "host_pinned_per_idle_domain_10000_vs_virtlogd",
                ours / theirs * 100.0,
                "%",
            );
        }
    }
    // Issue 6, target 6: 64 subscribers at no less than half the single-stream file throughput.
    let name = "console_fanout_64_vs_one_stream_64k";
    match (
        b.get("console_fanout_64_throughput"),
        b.get("one_stream_64k_throughput"),
    ) {
        (Some(n), Some(d)) if d > 0.0 => b.figure(name, n / d * 100.0, "%"),
        (Some(_), _) => note(format!("{name}: not computed (one_stream_64k did not run)")),
        _ => {}
    }
}

/// `name`: figure `num` as a percentage of figure `den`, when both were measured (a note says
/// when only `num` was).
fn percent(b: &mut Bench, name: &str, num: &str, den: &str) {
    match (b.get(num), b.get(den)) {
        (Some(n), Some(d)) if d > 0.0 => b.figure(name, n / d * 100.0, "%"),
        (Some(_), _) => note(format!("{name}: not computed ({den} is not measured)")),
        _ => {}
    }
}

/// `PREFIX_SUFFIX`: the throughput of scenario `num` as a percentage of `den`'s, and
/// `PREFIX_cpu_SUFFIX`: the ratio of their CPU per GiB.
fn compare(b: &mut Bench, prefix: &str, num: &str, den: &str, suffix: &str) {
    for (figure, name, scale, unit) in [
        ("throughput", format!("{prefix}_{suffix}"), 100.0, "%"),
        ("cpu", format!("{prefix}_cpu_{suffix}"), 1.0, "x"),
    ] {
        let (n, d) = (format!("{num}_{figure}"), format!("{den}_{figure}"));
        match (b.get(&n), b.get(&d)) {
            (Some(n), Some(d)) if d > 0.0 => b.figure(&name, n / d * scale, unit),
            (Some(_), _) => note(format!("{name}: not computed ({d} did not run)")),
            _ => {}
        }
    }
}

pub(crate) fn note(msg: impl fmt::Display) {
    eprintln!("logd-bench: {msg}");
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
