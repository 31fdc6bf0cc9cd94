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

/// When this image started ([`mono_ns`]), as `main` first noted it ([`note_image_start`]): a
/// re-exec's timeline shows how long the exec and the image's start took.
static IMAGE_START_NS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Notes that this image starts now (the first line of `main`).
pub fn note_image_start() {
    let _ = IMAGE_START_NS.set(mono_ns());
}

/// When this image started, if `main` noted it.
pub fn image_start_ns() -> Option<u64> {
    IMAGE_START_NS.get().copied()
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

/// `ms` after the Unix epoch in UTC, as RFC 3339 with milliseconds:
/// `2026-12-06T13:40:40.123Z` (the marks logd may write in a console's log).
pub fn utc_text(ms: u64) -> String {
    let (days, in_day) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Days to a civil date (Howard Hinnant's `civil_from_days`), for days >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_text_is_rfc3339_with_milliseconds() {
        assert_eq!(utc_text(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_text(1_796_564_440_123), "2026-12-06T13:40:40.123Z");
        // A leap day, and the last millisecond of a year.
        assert_eq!(utc_text(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc_text(1_704_067_199_999), "2023-12-31T23:59:59.999Z");
    }

    #[test]
    fn wall_milliseconds_round_trip_and_clamp_before_the_epoch() {
        assert_eq!(unix_ms(from_unix_ms(1_700_000_000_123)), 1_700_000_000_123);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
        let a = mono_ns();
        assert!(mono_ns() >= a);
        assert!(since_coarse_ms(coarse_ms()) < Duration::from_secs(1));
    }
}
