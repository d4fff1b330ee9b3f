//! How long the lake keeps a reading: by its *measurement* date (the partition's day),
//! never by when it was uploaded, so a 2020 backfill goes with the rest of 2020.

use crate::partition::Partition;
use crate::time::Date;

/// The fewest years the lake may keep (a hard requirement); configuration can only
/// lengthen it.
pub const MIN_RETENTION_YEARS: u32 = 3;

/// The first day still kept on `today` when `years` calendar years are kept: the
/// earliest day `d` such that `d` plus `years` years is not before `today`. From
/// 29 February the cut-off is 1 March (28 February plus three years is already past).
pub fn cutoff(today: Date, years: u32) -> Date {
    let year = today.year - years as i32;
    Date::new(year, today.month, today.day)
        .or_else(|| Date::new(year, 3, 1))
        .unwrap_or(today)
}

/// The fewest calendar years (at least [`MIN_RETENTION_YEARS`]) that keep `day` on
/// `today`: how a stack that must hold an old sample (the local one, with the 2020
/// vendor export) sets its retention without a date that runs out.
pub fn years_covering(day: Date, today: Date) -> u32 {
    let mut years = MIN_RETENTION_YEARS;
    while day < cutoff(today, years) && years < 10_000 {
        years += 1;
    }
    years
}

/// Whether a partition is past retention on `today`.
pub fn expired(p: &Partition, today: Date, years: u32) -> bool {
    p.date < cutoff(today, years)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metric;

    fn d(y: i32, m: u8, day: u8) -> Date {
        Date::new(y, m, day).unwrap()
    }

    #[test]
    fn three_calendar_years_back_counting_leap_days() {
        assert_eq!(cutoff(d(2026, 11, 30), 3), d(2023, 11, 30));
        // 1,096 days in these three years (2024 is a leap year): 1,095 would be a day short.
        let span = d(2026, 11, 30).start_epoch_ms() - cutoff(d(2026, 11, 30), 3).start_epoch_ms();
        assert_eq!(span / crate::time::DAY_MS, 1096);
        assert_eq!(cutoff(d(2028, 2, 29), 3), d(2025, 3, 1));
        assert_eq!(cutoff(d(2028, 2, 28), 3), d(2025, 2, 28));
        assert_eq!(cutoff(d(2026, 1, 1), 5), d(2021, 1, 1));
    }

    #[test]
    fn the_years_covering_a_day_keep_it_and_no_fewer_would() {
        let today = d(2026, 12, 3);
        assert_eq!(years_covering(d(2026, 1, 1), today), 3);
        let y = years_covering(d(2020, 10, 12), today);
        assert_eq!(y, 7);
        assert!(d(2020, 10, 12) >= cutoff(today, y));
        assert!(d(2020, 10, 12) < cutoff(today, y - 1));
    }

    #[test]
    fn a_partition_goes_the_day_after_its_third_anniversary() {
        let p = Partition {
            metric: Metric::HeartRate,
            date: d(2023, 11, 30),
        };
        assert!(
            !expired(&p, d(2026, 11, 30), 3),
            "exactly three years: kept"
        );
        assert!(expired(&p, d(2026, 12, 1), 3));
        assert!(!expired(&p, d(2026, 12, 1), 4));
    }
}
