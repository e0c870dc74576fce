//! Wall-clock formatting for CoreStatus and Ping, without a date crate: the dates are UTC,
//! and one small civil-calendar conversion is all that is needed.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds and microseconds since the epoch, as `Timestamp:` of a Ping response.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

/// `(YYYY-MM-DD, HH:MM:SS)` in UTC.
pub fn date_time(t: SystemTime) -> (String, String) {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fixture_dates() {
        // 1795460960 is the Ping timestamp of fixture 02, captured 2026-11-23 19:09:20 UTC.
        let t = UNIX_EPOCH + Duration::from_secs(1_795_460_960);
        assert_eq!(date_time(t), ("2026-11-23".to_string(), "19:09:20".to_string()));
        assert_eq!(
            date_time(UNIX_EPOCH),
            ("1970-01-01".to_string(), "00:00:00".to_string())
        );
    }
}
