//! The daemon's clocks, in one place:
//! - wall-clock milliseconds since the Unix epoch, for what people and other processes read
//!   (event times, a domain's creation, a subscriber's arrival);
//! - CLOCK_MONOTONIC nanoseconds, the same clock in both processes of a re-exec, for the
//!   blackout figures;
//! - a coarse 32-bit millisecond clock for the poller's 40-byte slots.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 for a time before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// The wall-clock time `ms` milliseconds after the Unix epoch.
pub fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for both processes of a re-exec.
pub fn mono_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// A coarse clock: milliseconds since its first use, wrapping every 49 days (compare with
/// `wrapping_sub`, as [`since_coarse_ms`] does).
pub fn coarse_ms() -> u32 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u32
}

/// The time since `then`, a [`coarse_ms`] reading.
pub fn since_coarse_ms(then: u32) -> Duration {
    Duration::from_millis(u64::from(coarse_ms().wrapping_sub(then)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_milliseconds_round_trip_and_clamp_before_the_epoch() {
        assert_eq!(unix_ms(from_unix_ms(1_700_000_000_123)), 1_700_000_000_123);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
        let a = mono_ns();
        assert!(mono_ns() >= a);
        assert!(since_coarse_ms(coarse_ms()) < Duration::from_secs(1));
    }
}
