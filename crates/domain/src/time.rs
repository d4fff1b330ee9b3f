//! UTC time as epoch milliseconds: RFC 3339 parsing and formatting and calendar dates,
//! on the `time` crate (no time-zone database: the lake is UTC; offsets in input are
//! applied, then dropped).
//!
//! Measured with the crate: an RFC 3339 timestamp parses in ~30 ns, a small share of
//! the stream path's ~350 ns per reading (`make bench`).

use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Month, OffsetDateTime, PrimitiveDateTime, UtcDateTime};

/// Milliseconds in one day.
pub const DAY_MS: i64 = 86_400_000;

/// A calendar date in UTC (proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

/// `YYYY-MM-DD`.
impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Instants beyond the `time` crate's years (+-9999) are clamped to them: nothing
/// plausible lies there, and a date must still be given.
fn utc(epoch_ms: i64) -> UtcDateTime {
    let nanos = i128::from(epoch_ms) * 1_000_000;
    UtcDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(if epoch_ms < 0 {
        UtcDateTime::MIN
    } else {
        UtcDateTime::MAX
    })
}

impl Date {
    /// 00:00:00 UTC of 1 January of `year`, in ms since the epoch.
    pub fn year_start_ms(year: i32) -> i64 {
        Date {
            year,
            month: 1,
            day: 1,
        }
        .start_epoch_ms()
    }

    /// The UTC date that contains the instant `epoch_ms`.
    pub fn from_epoch_ms(epoch_ms: i64) -> Date {
        let d = utc(epoch_ms).date();
        Date {
            year: d.year(),
            month: d.month() as u8,
            day: d.day(),
        }
    }

    /// Milliseconds since the epoch at 00:00:00 UTC of this date.
    pub fn start_epoch_ms(self) -> i64 {
        let date = Month::try_from(self.month)
            .ok()
            .and_then(|m| time::Date::from_calendar_date(self.year, m, self.day).ok());
        date.map_or(0, |d| d.midnight().as_utc().unix_timestamp() * 1000)
    }

    /// Parses `YYYYMMDD` (as in vendor file names), rejecting impossible dates.
    pub fn parse_compact(s: &str) -> Option<Date> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let d = time::Date::parse(s, format_description!("[year][month][day]")).ok()?;
        Date::new(d.year(), d.month() as u8, d.day())
    }

    /// A checked constructor.
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        let m = Month::try_from(month).ok()?;
        time::Date::from_calendar_date(year, m, day).ok()?;
        Some(Date { year, month, day })
    }
}

fn epoch_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos().div_euclid(1_000_000)) as i64
}

/// Parses an RFC 3339 timestamp (`2026-11-22T10:15:30.250Z`, `...+01:00`) to epoch
/// milliseconds. A time zone designator is required: a timestamp without one is
/// ambiguous and is rejected rather than guessed. Fractions beyond milliseconds are
/// truncated. A space instead of `T` and a lowercase `t`/`z` are accepted (RFC 3339 5.6
/// note). A leap second (`:60`) is refused (the crate's choice; devices do not send them).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339).ok().map(epoch_ms)
}

/// A timestamp without a zone, as legacy file exports write them.
const ZONELESS: &[BorrowedFormatItem<'_>] = format_description!(
    "[year]-[month]-[day][first [T][t][ ]][hour]:[minute]:[second][optional [.[subsecond]]]"
);

/// Parses a timestamp from a file source: RFC 3339 with a zone, or the same without a
/// zone (`2026-11-22T10:15:30`, `2026-11-22 10:15:30.5`), which is taken as UTC: files
/// are UTC unless their format says otherwise (docs/file-ingestion.md).
pub fn parse_timestamp_utc_default_ms(s: &str) -> Option<i64> {
    if let Some(ms) = parse_rfc3339_ms(s) {
        return Some(ms);
    }
    PrimitiveDateTime::parse(s, ZONELESS)
        .ok()
        .map(|t| epoch_ms(t.assume_utc()))
}

/// `epoch_ms` as an HTTP date (`Mon, 07 Dec 2026 10:00:00 GMT`, RFC 9110 5.6.7).
pub fn format_http_date(epoch_ms: i64) -> String {
    const HTTP: &[BorrowedFormatItem<'_>] = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    utc(epoch_ms).format(HTTP).unwrap_or_default()
}

/// `epoch_ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(epoch_ms: i64) -> String {
    const MILLIS: &[BorrowedFormatItem<'_>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    utc(epoch_ms).format(MILLIS).unwrap_or_default()
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
            let d = Date::from_epoch_ms(days * DAY_MS);
            assert_eq!(d.start_epoch_ms(), days * DAY_MS);
            assert_eq!(Date::from_epoch_ms(days * DAY_MS + DAY_MS - 1), d);
        }
        assert_eq!(
            Date::from_epoch_ms(0),
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
    fn http_dates_are_imf_fixdate() {
        assert_eq!(
            format_http_date(1_795_342_530_000),
            "Sun, 22 Nov 2026 10:15:30 GMT"
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
