//! Instants as Unix seconds, and the two ways dates are shown: ISO (`2019-11-21`) on the wire
//! and the portal's `21-Nov-2019` in the Smartcard Details table.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// Now, in Unix seconds.
pub fn now() -> i64 {
    unix(SystemTime::now())
}

/// A system time in Unix seconds (times before 1970 count as 1970).
pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix seconds as a system time (negative counts as 1970).
pub fn system_time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// The civil date (year, month 1–12, day 1–31) of Unix seconds, in UTC.
pub fn civil(secs: i64) -> (i64, u32, u32) {
    // Days to civil date, after Howard Hinnant's `civil_from_days`.
    let z = secs.div_euclid(DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2019-11-21`.
pub fn iso_date(secs: i64) -> String {
    let (y, m, d) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `21-Nov-2019`, as the Smartcard Details table shows dates.
pub fn display_date(secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d) = civil(secs);
    let month = MONTHS.get(m as usize - 1).copied().unwrap_or("???");
    format!("{d}-{month}-{y}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_the_seeds_show_them() {
        // 2017-11-21T00:00:00Z and 2019-11-21T12:00:00Z.
        assert_eq!(display_date(1_511_222_400), "21-Nov-2017");
        assert_eq!(iso_date(1_574_337_600), "2019-11-21");
        assert_eq!(iso_date(0), "1970-01-01");
        // A leap day.
        assert_eq!(display_date(951_782_400), "29-Feb-2000");
        assert_eq!(unix(system_time(1_234_567)), 1_234_567);
    }
}
