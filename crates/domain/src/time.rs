//! UTC time as epoch milliseconds: parsing RFC 3339 and calendar dates.
//!
//! Hand-rolled because it sits on the hot path of every reading: no allocation,
//! no time-zone database (the lake is UTC; offsets in input are applied, then dropped).

/// Milliseconds in one day.
pub const DAY_MS: i64 = 86_400_000;

/// A calendar date in UTC (proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// The UTC date that contains the instant `epoch_ms`.
    pub fn from_epoch_ms(epoch_ms: i64) -> Date {
        civil_from_days(epoch_ms.div_euclid(DAY_MS))
    }

    /// Milliseconds since the epoch at 00:00:00 UTC of this date.
    pub fn start_epoch_ms(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * DAY_MS
    }

    /// Parses `YYYYMMDD` (as in vendor file names), rejecting impossible dates.
    pub fn parse_compact(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() != 8 {
            return None;
        }
        let year = digits(b, 0, 4)? as i32;
        let month = digits(b, 4, 2)? as u8;
        let day = digits(b, 6, 2)? as u8;
        Date::new(year, month, day)
    }

    /// A checked constructor.
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }
}

/// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> Date {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    Date { year, month, day }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Parses an RFC 3339 timestamp (`2026-11-22T10:15:30.250Z`, `...+01:00`) to epoch
/// milliseconds. A time zone designator is required: a timestamp without one is
/// ambiguous and is rejected rather than guessed. Fractions beyond milliseconds are
/// truncated. A space instead of `T` and a lowercase `t`/`z` are accepted (RFC 3339 5.6 note).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 0, 4)? as i32;
    let month = digits(b, 5, 2)? as u8;
    let day = digits(b, 8, 2)? as u8;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b[13] != b':' || b[16] != b':' || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let date = Date::new(year, month, day)?;
    let mut i = 19;
    let mut millis = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_min: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = i64::from(digits(b, i + 1, 2)?);
            let om = i64::from(digits(b, i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'+' { m } else { -m }
        }
        _ => return None,
    };
    // A leap second (:60) is folded onto the next second's start.
    let secs = i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    Some(date.start_epoch_ms() + secs * 1000 + i64::from(millis) - offset_min * 60_000)
}

/// Parses a timestamp from a file source: RFC 3339 with a zone, or the same without a
/// zone (`2026-11-22T10:15:30`, `2026-11-22 10:15:30.5`), which is taken as UTC: files
/// are UTC unless their format says otherwise (docs/file-ingestion.md).
pub fn parse_timestamp_utc_default_ms(s: &str) -> Option<i64> {
    if let Some(ms) = parse_rfc3339_ms(s) {
        return Some(ms);
    }
    let b = s.as_bytes();
    if b.len() < 19 || b.len() > 29 {
        return None;
    }
    let mut zoned = String::with_capacity(b.len() + 1);
    zoned.push_str(s);
    zoned.push('Z');
    parse_rfc3339_ms(&zoned)
}

/// Writes `epoch_ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ` into `out`.
pub fn write_rfc3339_ms(epoch_ms: i64, out: &mut String) {
    use std::fmt::Write;
    let date = Date::from_epoch_ms(epoch_ms);
    let ms_of_day = epoch_ms.rem_euclid(DAY_MS);
    let (h, rem) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let (s, ms) = (rem / 1000, rem % 1000);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z",
        date.year, date.month, date.day
    );
}

/// `epoch_ms` as an RFC 3339 string (convenience for reports and documents).
pub fn format_rfc3339_ms(epoch_ms: i64) -> String {
    let mut s = String::with_capacity(24);
    write_rfc3339_ms(epoch_ms, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_with_and_without_fraction() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2026-11-22T10:15:30Z"),
            Some(1_795_342_530_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-22T10:15:30.250Z"),
            Some(1_795_342_530_250)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-22T10:15:30.2Z"),
            Some(1_795_342_530_200)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-22T10:15:30.123456789Z"),
            Some(1_795_342_530_123)
        );
    }

    #[test]
    fn applies_offsets_to_reach_utc() {
        let utc = parse_rfc3339_ms("2026-11-22T10:15:30Z").unwrap();
        assert_eq!(parse_rfc3339_ms("2026-11-22T11:15:30+01:00"), Some(utc));
        assert_eq!(parse_rfc3339_ms("2026-11-22T05:15:30-05:00"), Some(utc));
    }

    #[test]
    fn rejects_malformed_or_zoneless_timestamps() {
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22T10:15:30",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T10:15:30.Z",
            "2026-11-22T10:15:30Zjunk",
            "2026-11-22T10:15:30+0100",
            "not a timestamp at all",
            "२०२६-11-22T10:15:30Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad:?} should be rejected");
        }
    }

    #[test]
    fn civil_dates_round_trip_over_four_centuries() {
        for days in (-146_097 * 2..146_097 * 2).step_by(37) {
            let d = civil_from_days(days);
            assert_eq!(days_from_civil(d.year, d.month, d.day), days);
        }
        assert_eq!(
            civil_from_days(0),
            Date {
                year: 1970,
                month: 1,
                day: 1
            }
        );
        assert_eq!(
            Date::from_epoch_ms(-1),
            Date {
                year: 1969,
                month: 12,
                day: 31
            }
        );
        assert_eq!(Date::parse_compact("20240229"), Date::new(2024, 2, 29));
        assert_eq!(Date::parse_compact("20230229"), None);
    }

    #[test]
    fn file_timestamps_without_a_zone_are_utc() {
        let utc = parse_rfc3339_ms("2026-11-22T10:15:30Z");
        assert_eq!(parse_timestamp_utc_default_ms("2026-11-22T10:15:30"), utc);
        assert_eq!(parse_timestamp_utc_default_ms("2026-11-22 10:15:30"), utc);
        assert_eq!(
            parse_timestamp_utc_default_ms("2026-11-22T11:15:30+01:00"),
            utc
        );
        assert_eq!(parse_timestamp_utc_default_ms("2026-11-22"), None);
        assert_eq!(
            parse_timestamp_utc_default_ms("2026-11-22T10:15:30ZZ"),
            None
        );
    }

    #[test]
    fn formats_what_it_parses() {
        for s in [
            "2026-11-22T10:15:30.250Z",
            "1999-12-31T23:59:59.999Z",
            "2020-10-12T00:00:00.000Z",
        ] {
            assert_eq!(format_rfc3339_ms(parse_rfc3339_ms(s).unwrap()), s);
        }
    }
}
