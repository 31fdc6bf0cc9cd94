//! Times as people read them: `at_ms` (milliseconds since the Unix epoch, as the admin socket
//! sends them) in RFC 3339, UTC, with milliseconds. Twenty lines of calendar arithmetic
//! (Howard Hinnant's `civil_from_days`) instead of a time crate: UTC needs no time-zone data.

/// `1796575201123` → `2026-12-06T16:40:01.123Z`.
pub(crate) fn rfc3339_ms(at_ms: u64) -> String {
    let (secs, ms) = (at_ms / 1000, at_ms % 1000);
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    )
}

/// The proleptic Gregorian date of a day counted from 1970-01-01
/// (<https://howardhinnant.github.io/date_algorithms.html#civil_from_days>).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        // date -u -d @1796575201 → Sun Dec  6 16:40:01 UTC 2026
        assert_eq!(rfc3339_ms(1_796_575_201_123), "2026-12-06T16:40:01.123Z");
        // A leap day, and the last millisecond of a leap year.
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_735_689_599_999), "2024-12-31T23:59:59.999Z");
    }

    /// Every day for 1,000 years against the dates counted one day at a time.
    #[test]
    fn every_day_follows_the_calendar() {
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for day in 0..365_250 {
            assert_eq!(civil_from_days(day), (y, m, d), "day {day}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
