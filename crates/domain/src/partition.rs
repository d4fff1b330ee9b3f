//! The lake's partition layout: `readings/metric=<m>/year=YYYY/month=MM/day=DD/`.
//!
//! The patient is a column, never a partition: Firehose allows ~500 active
//! partitions, and per-patient partitions would mean millions of tiny files.

use std::fmt;

use crate::metric::Metric;
use crate::time::Date;

/// Prefix of the readings table in the lake bucket.
pub const READINGS_PREFIX: &str = "readings/";

/// Prefix of compaction plans in the lake bucket (outside `readings/`: no catalog
/// notification). A partition with a plan is being compacted: erasure leaves it for
/// its next pass (docs/lifecycle.md).
pub const COMPACTION_PLANS_PREFIX: &str = "_compaction/";

/// One lake partition: a metric on a UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub metric: Metric,
    pub date: Date,
}

impl Partition {
    pub fn of(metric: Metric, measured_at_ms: i64) -> Partition {
        Partition {
            metric,
            date: Date::from_epoch_ms(measured_at_ms),
        }
    }

    /// Partition values in Glue's key order: metric, year, month, day.
    pub fn values(&self) -> [String; 4] {
        [
            self.metric.name().to_owned(),
            format!("{:04}", self.date.year),
            format!("{:02}", self.date.month),
            format!("{:02}", self.date.day),
        ]
    }

    /// Finds the partition of a lake object key such as
    /// `readings/metric=spo2/year=2026/month=11/day=22/file.parquet`.
    /// Anything else (error prefixes, other tables, malformed values) is `None`.
    pub fn from_object_key(key: &str) -> Option<Partition> {
        let (dir, file) = key.strip_prefix(READINGS_PREFIX)?.rsplit_once('/')?;
        if file.is_empty() {
            return None;
        }
        dir.parse().ok()
    }

    /// The partition's folder in the lake bucket, with its trailing slash.
    pub fn prefix(&self) -> String {
        format!("{READINGS_PREFIX}{self}/")
    }

    /// Where a compaction of this partition keeps its plan while it runs.
    pub fn compaction_plan_key(&self) -> String {
        format!("{COMPACTION_PLANS_PREFIX}{self}/plan.json")
    }
}

/// A path that is not a partition's (`metric=<m>/year=YYYY/month=MM/day=DD`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a lake partition (metric=<metric>/year=YYYY/month=MM/day=DD): {0:?}")]
pub struct NotAPartition(pub String);

/// Parses what [`Partition`]'s `Display` writes: `metric=spo2/year=2026/month=11/day=22`.
impl std::str::FromStr for Partition {
    type Err = NotAPartition;

    fn from_str(path: &str) -> Result<Partition, NotAPartition> {
        let parse = || {
            let mut parts = path.split('/');
            let metric = Metric::from_name(parts.next()?.strip_prefix("metric=")?)?;
            let year = fixed_digits(parts.next()?.strip_prefix("year=")?, 4)?;
            let month = fixed_digits(parts.next()?.strip_prefix("month=")?, 2)?;
            let day = fixed_digits(parts.next()?.strip_prefix("day=")?, 2)?;
            if parts.next().is_some() {
                return None;
            }
            let date = Date::new(year as i32, month as u8, day as u8)?;
            Some(Partition { metric, date })
        };
        parse().ok_or_else(|| NotAPartition(path.chars().take(200).collect()))
    }
}

fn fixed_digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

/// `metric=heart_rate/year=2026/month=11/day=22` (no leading table prefix, no trailing slash).
impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "metric={}/year={:04}/month={:02}/day={:02}",
            self.metric.name(),
            self.date.year,
            self.date.month,
            self.date.day
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339_ms;

    #[test]
    fn partitions_are_zero_padded_utc_days() {
        let t = parse_rfc3339_ms("2026-01-05T23:30:00-05:00").unwrap();
        let p = Partition::of(Metric::Spo2, t);
        assert_eq!(p.to_string(), "metric=spo2/year=2026/month=01/day=06");
        assert_eq!(p.values(), ["spo2", "2026", "01", "06"]);
    }

    #[test]
    fn object_keys_parse_back_and_junk_does_not() {
        let p = Partition::from_object_key(
            "readings/metric=heart_rate/year=2020/month=10/day=12/a.parquet",
        )
        .unwrap();
        assert_eq!(p.to_string(), "metric=heart_rate/year=2020/month=10/day=12");
        for junk in [
            "errors/format-conversion-failed/2026/11/22/x",
            "readings/metric=heart_rate/year=2020/month=10/day=12/",
            "readings/metric=mood/year=2020/month=10/day=12/a",
            "readings/metric=spo2/year=20/month=10/day=12/a",
            "readings/metric=spo2/year=2020/month=13/day=12/a",
            "readings/metric=spo2/year=2020/month=02/day=30/a",
            "readings/metric=spo2/year=2020/month=10/day=12/sub/a",
            "other/metric=spo2/year=2020/month=10/day=12/a",
        ] {
            assert_eq!(Partition::from_object_key(junk), None, "{junk}");
        }
    }

    #[test]
    fn a_partition_path_parses_back_to_its_partition() {
        let p = Partition::of(
            Metric::BpSystolic,
            parse_rfc3339_ms("2026-11-22T10:00:00Z").unwrap(),
        );
        assert_eq!(p.to_string().parse::<Partition>(), Ok(p));
        assert_eq!(
            p.prefix(),
            "readings/metric=bp_systolic/year=2026/month=11/day=22/"
        );
        for junk in [
            "",
            "metric=spo2/year=2026/month=11",
            "metric=spo2/year=2026/month=11/day=22/x",
        ] {
            assert!(junk.parse::<Partition>().is_err(), "{junk}");
        }
    }
}
