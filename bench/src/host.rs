//! What the bench reads of its host: the CPU other work takes (`/proc/stat`), a thread's CPU
//! time, MemAvailable, the load average, and the open-file limit.

use std::fs;
use std::time::Duration;

use anyhow::{Context, Result};
use logd_kit::{clock_ticks, kib_field, stat_cpu_seconds, Daemon};

use crate::bench::pid_of;

/// CPU seconds the machine spent on anything but this process and `daemon`: busy time from
/// /proc/stat (steal included), less theirs.
pub(crate) fn others_cpu_seconds(daemon: Option<&Daemon>) -> Result<f64> {
    others_cpu_seconds_pid(daemon.map(pid_of))
}

/// [`others_cpu_seconds`] for a daemon known by its pid.
pub(crate) fn others_cpu_seconds_pid(daemon: Option<u32>) -> Result<f64> {
    let stat = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let cpu = stat
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .context("no cpu line in /proc/stat")?;
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .map(|t| t.parse().context("unexpected format of /proc/stat"))
        .collect::<Result<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    let ours = stat_cpu_seconds("/proc/self/stat")?
        + match daemon {
            Some(pid) => stat_cpu_seconds(&format!("/proc/{pid}/stat"))?,
            None => 0.0,
        };
    Ok(busy as f64 / clock_ticks()? - ours)
}

/// The CPU time of the calling thread.
pub(crate) fn thread_cpu_seconds() -> Result<f64> {
    stat_cpu_seconds("/proc/thread-self/stat")
}

/// The CPU time of the calling thread, to the nanosecond (`CLOCK_THREAD_CPUTIME_ID`), where
/// [`thread_cpu_seconds`] counts whole ticks.
pub(crate) fn thread_cpu_seconds_exact() -> Result<f64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .context("clock_gettime(CLOCK_THREAD_CPUTIME_ID)")?;
    Ok(Duration::from(t).as_secs_f64())
}

pub(crate) fn mem_available_kib() -> Result<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    kib_field(&meminfo, "MemAvailable:").context("no MemAvailable in /proc/meminfo")
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews every figure.
pub(crate) fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Raises this process's open-file limit to its hard limit (the daemon it starts inherits it,
/// and raises its own the same way).
pub(crate) fn raise_fd_limit() -> Result<u64> {
    Ok(logd::daemon::raise_fd_limit())
}
