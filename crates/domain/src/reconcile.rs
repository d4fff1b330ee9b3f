//! Migration reconciliation: a legacy source's readings per device and day against the
//! lake's, by count and by an order-independent checksum of the reading ids (the sum of
//! the 128-bit ids, wrapping), as data validation tools compare tables: a lost reading,
//! an extra one, or one swapped for another (same count, other id) is seen, and which
//! device and day it is on is named.

use std::collections::BTreeMap;

use crate::reading::ReadingId;
use crate::time::Date;

/// Readings of one device on one UTC day (of measurement).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayCount {
    pub readings: u64,
    /// Sum of the reading ids as 128-bit integers, wrapping; `None` when the source gave
    /// counts only.
    pub checksum: Option<u128>,
}

impl DayCount {
    pub fn add(&mut self, id: ReadingId) {
        self.readings += 1;
        let sum = self.checksum.unwrap_or(0);
        self.checksum = Some(sum.wrapping_add(u128::from_be_bytes(id.0)));
    }

    /// Equal counts, and equal checksums where both sides have one.
    fn matches(&self, other: &DayCount) -> bool {
        self.readings == other.readings
            && match (self.checksum, other.checksum) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// Counts keyed by (device, day).
pub type Counts = BTreeMap<(String, Date), DayCount>;

/// What differs on one device-day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub device: String,
    pub day: Date,
    pub source: DayCount,
    pub lake: DayCount,
}

impl Difference {
    /// Readings the lake lacks (negative: it has more).
    pub fn missing(&self) -> i64 {
        self.source.readings as i64 - self.lake.readings as i64
    }
}

/// The comparison of a source with the lake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciliation {
    pub matched: usize,
    /// Device-days whose counts or checksums differ (including days the lake lacks and
    /// days only the lake has).
    pub differences: Vec<Difference>,
    pub source_readings: u64,
    pub lake_readings: u64,
}

impl Reconciliation {
    /// Readings the lake lacks, summed over the days where it has fewer.
    pub fn missing(&self) -> u64 {
        self.differences
            .iter()
            .map(|d| d.missing().max(0) as u64)
            .sum()
    }

    /// Readings the lake has beyond the source.
    pub fn extra(&self) -> u64 {
        self.differences
            .iter()
            .map(|d| (-d.missing()).max(0) as u64)
            .sum()
    }
}

/// Compares `source` with `lake` on the device-days of either.
pub fn reconcile(source: &Counts, lake: &Counts) -> Reconciliation {
    let mut r = Reconciliation {
        source_readings: source.values().map(|c| c.readings).sum(),
        lake_readings: lake.values().map(|c| c.readings).sum(),
        ..Reconciliation::default()
    };
    let keys: std::collections::BTreeSet<&(String, Date)> =
        source.keys().chain(lake.keys()).collect();
    for key in keys {
        let s = source.get(key).copied().unwrap_or_default();
        let l = lake.get(key).copied().unwrap_or_default();
        if s.matches(&l) {
            r.matched += 1;
        } else {
            r.differences.push(Difference {
                device: key.0.clone(),
                day: key.1,
                source: s,
                lake: l,
            });
        }
    }
    r
}

/// What is wrong with a counts file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct CountsError(pub Vec<String>);

/// The counts file format: a header `device_id,day,readings[,checksum]`, one line per
/// device-day, `day` as `YYYY-MM-DD`, `checksum` as 32 hex digits (what
/// [`counts_csv`] writes).
pub fn parse_counts(text: &str) -> Result<Counts, CountsError> {
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines
        .next()
        .map(|(_, h)| h.trim().split(',').map(str::trim).collect())
        .unwrap_or_default();
    if header.get(..3) != Some(&["device_id", "day", "readings"][..]) {
        return Err(CountsError(vec![
            "the header must be device_id,day,readings[,checksum]".into(),
        ]));
    }
    let with_checksum = header.get(3) == Some(&"checksum");
    let mut out = Counts::new();
    let mut problems = Vec::new();
    for (i, line) in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let (Some(device), Some(day), Some(readings)) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            problems.push(format!("line {n}: expected device_id,day,readings"));
            continue;
        };
        let day = match day_of(day) {
            Some(d) => d,
            None => {
                problems.push(format!("line {n}: day {day:?} is not YYYY-MM-DD"));
                continue;
            }
        };
        let Ok(readings) = readings.parse::<u64>() else {
            problems.push(format!("line {n}: readings {readings:?} is not a count"));
            continue;
        };
        let checksum = match (with_checksum, fields.get(3)) {
            (true, Some(c)) => match u128::from_str_radix(c, 16) {
                Ok(sum) if c.len() == 32 => Some(sum),
                _ => {
                    problems.push(format!("line {n}: checksum {c:?} is not 32 hex digits"));
                    continue;
                }
            },
            (true, None) => {
                problems.push(format!("line {n}: the checksum is missing"));
                continue;
            }
            (false, _) => None,
        };
        if device.is_empty() {
            problems.push(format!("line {n}: no device_id"));
            continue;
        }
        if out
            .insert(((*device).to_owned(), day), DayCount { readings, checksum })
            .is_some()
        {
            problems.push(format!("line {n}: {device} on {day} is listed twice"));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(CountsError(problems))
    }
}

fn day_of(s: &str) -> Option<Date> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// Counts as the counts file format.
pub fn counts_csv(counts: &Counts) -> String {
    let mut out = String::from("device_id,day,readings,checksum\n");
    for ((device, day), c) in counts {
        let sum = c.checksum.map(|s| format!("{s:032x}")).unwrap_or_default();
        out.push_str(&format!("{device},{day},{},{sum}\n", c.readings));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Metric;

    fn counts(ids: &[(&str, i64)]) -> Counts {
        let mut c = Counts::new();
        for (device, at) in ids {
            let id = ReadingId::derive(device, "s", Metric::HeartRate, *at);
            c.entry(((*device).to_owned(), Date::from_epoch_ms(*at)))
                .or_default()
                .add(id);
        }
        c
    }

    const DAY: i64 = 86_400_000;

    #[test]
    fn a_lost_an_extra_and_a_swapped_reading_are_each_named_by_device_and_day() {
        let source = counts(&[("d1", 0), ("d1", 1), ("d2", 0), ("d2", DAY), ("d3", 5)]);
        assert_eq!(reconcile(&source, &source).differences, []);
        assert_eq!(reconcile(&source, &source).matched, 4);
        // d1 lost a reading; d2's second day has an extra one; d3's reading is another.
        let lake = counts(&[
            ("d1", 0),
            ("d2", 0),
            ("d2", DAY),
            ("d2", DAY + 1),
            ("d3", 6),
        ]);
        let r = reconcile(&source, &lake);
        let named: Vec<(String, String, i64)> = r
            .differences
            .iter()
            .map(|d| (d.device.clone(), d.day.to_string(), d.missing()))
            .collect();
        assert_eq!(
            named,
            [
                ("d1".to_owned(), "1970-01-01".to_owned(), 1),
                ("d2".to_owned(), "1970-01-02".to_owned(), -1),
                ("d3".to_owned(), "1970-01-01".to_owned(), 0),
            ]
        );
        assert_eq!((r.missing(), r.extra(), r.matched), (1, 1, 1));
        // The order of the readings does not matter.
        let shuffled = counts(&[("d3", 5), ("d2", DAY), ("d1", 1), ("d2", 0), ("d1", 0)]);
        assert_eq!(reconcile(&source, &shuffled).differences, []);
    }

    #[test]
    fn counts_files_round_trip_and_bad_lines_are_named() {
        let c = counts(&[("d1", 0), ("d1", 1), ("d2", DAY)]);
        assert_eq!(parse_counts(&counts_csv(&c)).unwrap(), c);
        let counts_only = parse_counts("device_id,day,readings\nd1,1970-01-01,2\n").unwrap();
        assert_eq!(
            reconcile(&counts_only, &c).differences.len(),
            1,
            "d2 is missing from the source"
        );
        let bad = "device_id,day,readings,checksum\nd1,1970-1-1,2,00\nd1,1970-01-01,x,00\nd1,1970-01-01,1,zz\nd1,1970-01-01,1,00000000000000000000000000000000\nd1,1970-01-01,1,00000000000000000000000000000000\n";
        let e = parse_counts(bad).unwrap_err().0;
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            e[0].starts_with("line 2:") && e[3].contains("listed twice"),
            "{e:?}"
        );
        assert!(parse_counts("device,day\n").is_err());
    }
}
