//! This process's resources as /proc and the kernel show them: for `logdctl ps` (fds, resident
//! memory) and for the metrics' standard `process_*` families (`serve::metrics`).
//!
//! Counting the fds lists `/proc/self/fd`, one entry per fd, which costs about 1 ms per 1,000
//! fds (docs/PERFORMANCE.md, "Admin snapshot"); the rest reads one small file or asks the
//! kernel once.

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
    fn this_process_has_fds_and_memory() {
        assert!(open_fds() > 2);
        assert!(resident_kib() > 0);
    }
}
