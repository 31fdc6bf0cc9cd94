//! This process's resources as /proc and the kernel show them: for `logdctl ps` (fds, resident
//! memory) and for the metrics' standard `process_*` families (`serve::metrics`).
//!
//! Counting the fds lists `/proc/self/fd`, one entry per fd, which costs about 1 ms per 1,000
//! fds (docs/PERFORMANCE.md, "Admin snapshot"); the rest reads one small file or asks the
//! kernel once.

/// What the standard process metrics need beyond the snapshot's fds and resident memory.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// User and system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// The soft limit on open fds (`RLIMIT_NOFILE`).
    pub max_fds: u64,
}

/// CPU time, virtual memory and the fd limit; a value that cannot be read is 0.
pub fn usage() -> Usage {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let (ticks, virtual_bytes) = parse_stat(&stat).unwrap_or_default();
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)
        .unwrap_or(100);
    let max_fds = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(0);
    Usage {
        cpu_seconds: ticks as f64 / per_second as f64,
        virtual_bytes,
        max_fds,
    }
}

/// `/proc/self/stat`'s utime + stime (clock ticks) and vsize (bytes).
fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    // The command name, in parentheses, may hold spaces and parentheses: the fields that follow
    // start after the last ')', with field 3 (state) first. utime, stime and vsize are fields
    // 14, 15 and 23.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)? + field(15)?, field(23)?))
}

/// The fds this process holds. Listing `/proc/self/fd` opens one more, the listing's own, and
/// the kernel lists it too: it is not counted.
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| (d.count() as u64).saturating_sub(1))
        .unwrap_or(0)
}

/// Resident memory, KiB (`VmRSS`).
pub fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_after_the_command_name() {
        // A command name with a space and a ')' of its own, as a process may set.
        let stat = "4242 (lo gd) x) S 1 4242 4242 0 -1 4194560 1200 0 3 0 250 75 0 0 20 0 9 0 \
                    123456 987654321 2048 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((325, 987_654_321)));
        assert_eq!(parse_stat("4242 (logd) S 1"), None);
    }

    #[test]
    fn this_process_has_fds_memory_cpu_time_and_a_limit() {
        let u = usage();
        assert!(u.virtual_bytes > 0, "{u:?}");
        assert!(u.max_fds > 0, "{u:?}");
        assert!(u.cpu_seconds >= 0.0, "{u:?}");
        assert!(open_fds() > 2);
        assert!(resident_kib() > 0);
    }
}
