//! Validation and normalization: a raw reading plus its device's registry record
//! become a canonical [`Reading`], or a [`Rejection`] with a typed reason.

use std::borrow::Cow;

use crate::message::RawReading;
use crate::metric::{Metric, NormalizeError};
use crate::reading::{Reading, ReadingId, Source};
use crate::reason::{Reason, Rejection};
use crate::registry::DeviceRecord;
use crate::time::{DAY_MS, format_rfc3339_ms, parse_rfc3339_ms};

/// The time window a reading must fall in, relative to when it was received.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimePolicy {
    /// How far ahead of receipt a device clock may run.
    pub max_future_skew_ms: i64,
    /// How old a reading may be on arrival; `None` for history (backfills).
    pub max_age_ms: Option<i64>,
    /// Nothing before this instant is plausible device data.
    pub earliest_ms: i64,
    /// The lake's retention in calendar years: a reading measured before the cut-off on
    /// its day of receipt is `past_retention` (`None`: not checked).
    pub retention_years: Option<u32>,
}

impl TimePolicy {
    /// Live device data: 5 minutes of clock skew, up to 7 days late (a device offline for
    /// a week flushing its buffer; Kinesis keeps records at most 7 days anyway).
    pub fn stream() -> TimePolicy {
        TimePolicy {
            max_future_skew_ms: 5 * 60_000,
            max_age_ms: Some(7 * DAY_MS),
            earliest_ms: earliest(),
            retention_years: None,
        }
    }

    /// Files and migration backfills are history: any age after 2000-01-01 is accepted,
    /// inside the lake's retention (`retention_years`, at least
    /// [`crate::retention::MIN_RETENTION_YEARS`]).
    pub fn history(retention_years: u32) -> TimePolicy {
        TimePolicy {
            max_future_skew_ms: 5 * 60_000,
            max_age_ms: None,
            earliest_ms: earliest(),
            retention_years: Some(retention_years.max(crate::retention::MIN_RETENTION_YEARS)),
        }
    }

    pub fn check(&self, measured_at: i64, received_at: i64) -> Result<(), Rejection> {
        if measured_at > received_at.saturating_add(self.max_future_skew_ms) {
            return Err(Rejection::new(
                Reason::TimestampInFuture,
                format!(
                    "measured_at {} is more than {} s after receipt",
                    format_rfc3339_ms(measured_at),
                    self.max_future_skew_ms / 1000
                ),
            ));
        }
        let too_old = measured_at < self.earliest_ms
            || self
                .max_age_ms
                .is_some_and(|age| measured_at < received_at.saturating_sub(age));
        if too_old {
            return Err(Rejection::new(
                Reason::TimestampTooOld,
                format!(
                    "measured_at {} is older than accepted",
                    format_rfc3339_ms(measured_at)
                ),
            ));
        }
        if let Some(years) = self.retention_years {
            let cutoff =
                crate::retention::cutoff(crate::time::Date::from_epoch_ms(received_at), years);
            if measured_at < cutoff.start_epoch_ms() {
                return Err(Rejection::new(
                    Reason::PastRetention,
                    format!(
                        "measured before the lake's retention cut-off {cutoff} ({years} years)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn earliest() -> i64 {
    parse_rfc3339_ms("2000-01-01T00:00:00Z").unwrap_or(946_684_800_000)
}

/// Where readings come from, for the rows' provenance columns.
#[derive(Debug, Clone, Copy)]
pub struct Provenance<'a> {
    pub source: Source,
    pub source_ref: &'a str,
    pub received_at: i64,
}

/// Validates `raw` from `device` and builds the canonical reading (the lake's rule:
/// a value outside the metric's plausible range is rejected as `out_of_range`).
pub fn normalize<'a>(
    raw: RawReading<'a>,
    device: &'a DeviceRecord,
    prov: Provenance<'a>,
    policy: &TimePolicy,
) -> Result<Reading<'a>, Rejection> {
    build(raw, device, prov, policy, true).map(|a| a.reading)
}

/// A reading as alerting sees it: valid in every respect but perhaps the plausible
/// range. A heart rate of 0 is no row for the lake, but a monitor must not go quiet
/// when the value is at its worst: rules see it, and `plausible` says what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessed<'a> {
    pub reading: Reading<'a>,
    pub plausible: bool,
}

/// As [`normalize`], keeping implausible values (flagged) instead of rejecting them.
pub fn assess<'a>(
    raw: RawReading<'a>,
    device: &'a DeviceRecord,
    prov: Provenance<'a>,
    policy: &TimePolicy,
) -> Result<Assessed<'a>, Rejection> {
    build(raw, device, prov, policy, false)
}

fn build<'a>(
    raw: RawReading<'a>,
    device: &'a DeviceRecord,
    prov: Provenance<'a>,
    policy: &TimePolicy,
    require_plausible: bool,
) -> Result<Assessed<'a>, Rejection> {
    let metric = Metric::from_name(&raw.metric).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownMetric,
            format!("metric {:?} is not in the catalog", truncate(&raw.metric)),
        )
    })?;
    let value = metric.convert(raw.value, &raw.unit).map_err(|e| match e {
        NormalizeError::UnknownUnit => Rejection::new(
            Reason::UnknownUnit,
            format!(
                "unit {:?} cannot be converted to {} for {metric}",
                truncate(&raw.unit),
                metric.unit()
            ),
        ),
        NormalizeError::NonFinite | NormalizeError::OutOfRange { .. } => {
            Rejection::new(Reason::NonFiniteValue, "value is not finite")
        }
    })?;
    let plausible = metric.is_plausible(value);
    if require_plausible && !plausible {
        let s = metric.spec();
        return Err(Rejection::new(
            Reason::OutOfRange,
            format!(
                "{metric} {value} {} is outside {}..={}",
                s.unit, s.min, s.max
            ),
        ));
    }
    policy.check(raw.measured_at, prov.received_at)?;
    let assignment = device.assignment_at(raw.measured_at).ok_or_else(|| {
        Rejection::new(
            Reason::DeviceUnassigned,
            format!(
                "device has no subject assigned at {}",
                format_rfc3339_ms(raw.measured_at)
            ),
        )
    })?;
    let reading = Reading {
        reading_id: ReadingId::derive(&device.device_id, &raw.sensor_id, metric, raw.measured_at),
        subject_id: Cow::Borrowed(&assignment.subject_id),
        device_id: Cow::Borrowed(&device.device_id),
        sensor_id: raw.sensor_id,
        metric,
        value,
        measured_at: raw.measured_at,
        received_at: prov.received_at,
        source: prov.source,
        source_ref: Cow::Borrowed(prov.source_ref),
        cohort: assignment.cohort.as_deref().map(Cow::Borrowed),
    };
    Ok(Assessed { reading, plausible })
}

/// Vendor strings echoed into a rejection are cut short: a reason, not a copy of the payload.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Assignment;

    const NOW: i64 = 1_795_342_530_000;

    fn device() -> DeviceRecord {
        DeviceRecord {
            device_id: "dev-1".into(),
            assignments: vec![Assignment {
                subject_id: "subj-9".into(),
                valid_from: NOW - 30 * DAY_MS,
                valid_to: None,
                cohort: None,
            }],
        }
    }

    fn raw(metric: &str, value: f64, unit: &str, at: i64) -> RawReading<'static> {
        RawReading {
            sensor_id: "s".into(),
            metric: metric.to_owned().into(),
            value,
            unit: unit.to_owned().into(),
            measured_at: at,
        }
    }

    fn check(r: RawReading<'static>) -> Result<f64, Reason> {
        let d = device();
        let prov = Provenance {
            source: Source::Stream,
            source_ref: "x",
            received_at: NOW,
        };
        normalize(r, &d, prov, &TimePolicy::stream())
            .map(|r| r.value)
            .map_err(|e| e.reason)
    }

    #[test]
    fn a_valid_reading_is_normalized_with_subject_and_id() {
        let d = device();
        let prov = Provenance {
            source: Source::Stream,
            source_ref: "shard:1",
            received_at: NOW,
        };
        let r = normalize(
            raw("body_temp", 98.6, "[degF]", NOW - 1000),
            &d,
            prov,
            &TimePolicy::stream(),
        )
        .unwrap();
        assert_eq!(r.value, 37.0);
        assert_eq!(r.subject_id, "subj-9");
        assert_eq!(
            r.reading_id,
            ReadingId::derive("dev-1", "s", Metric::BodyTemp, NOW - 1000)
        );
    }

    #[test]
    fn each_fault_has_its_own_reason() {
        assert_eq!(
            check(raw("mood", 1.0, "1", NOW)),
            Err(Reason::UnknownMetric)
        );
        assert_eq!(
            check(raw("heart_rate", 72.0, "mg/dL", NOW)),
            Err(Reason::UnknownUnit)
        );
        assert_eq!(
            check(raw("heart_rate", 720.0, "/min", NOW)),
            Err(Reason::OutOfRange)
        );
        assert_eq!(
            check(raw("heart_rate", 72.0, "/min", NOW + 10 * 60_000)),
            Err(Reason::TimestampInFuture)
        );
        assert_eq!(
            check(raw("heart_rate", 72.0, "/min", NOW - 8 * DAY_MS)),
            Err(Reason::TimestampTooOld)
        );
        assert_eq!(
            check(raw("heart_rate", 72.0, "/min", NOW - 31 * DAY_MS)),
            Err(Reason::TimestampTooOld)
        );
        assert_eq!(
            check(raw("heart_rate", 72.0, "/min", NOW + 60_000)),
            Ok(72.0),
            "small skew is accepted"
        );
    }

    #[test]
    fn alerting_sees_implausible_values_flagged_where_the_lake_rejects_them() {
        let d = device();
        let prov = Provenance {
            source: Source::Stream,
            source_ref: "x",
            received_at: NOW,
        };
        for v in [0.0, 18.0, 420.0] {
            let a = assess(
                raw("heart_rate", v, "/min", NOW),
                &d,
                prov,
                &TimePolicy::stream(),
            )
            .unwrap();
            assert_eq!((a.reading.value, a.plausible), (v, false));
            assert_eq!(
                check(raw("heart_rate", v, "/min", NOW)),
                Err(Reason::OutOfRange)
            );
        }
        let a = assess(
            raw("heart_rate", 72.0, "/min", NOW),
            &d,
            prov,
            &TimePolicy::stream(),
        )
        .unwrap();
        assert!(a.plausible);
        // Every other fault is still a rejection.
        let late = assess(
            raw("heart_rate", 0.0, "/min", NOW - 8 * DAY_MS),
            &d,
            prov,
            &TimePolicy::stream(),
        );
        assert_eq!(late.unwrap_err().reason, Reason::TimestampTooOld);
    }

    #[test]
    fn readings_outside_every_assignment_are_unassigned() {
        let d = device();
        let prov = Provenance {
            source: Source::File,
            source_ref: "x",
            received_at: NOW,
        };
        let r = normalize(
            raw("heart_rate", 72.0, "/min", NOW - 40 * DAY_MS),
            &d,
            prov,
            &TimePolicy::history(3),
        );
        assert_eq!(r.unwrap_err().reason, Reason::DeviceUnassigned);
    }

    #[test]
    fn history_accepts_old_data_but_not_before_2000() {
        let p = TimePolicy::history(50);
        assert!(
            p.check(parse_rfc3339_ms("2020-10-12T00:00:00Z").unwrap(), NOW)
                .is_ok()
        );
        assert_eq!(p.check(0, NOW).unwrap_err().reason, Reason::TimestampTooOld);
    }

    #[test]
    fn history_refuses_what_the_lake_would_not_keep() {
        let p = TimePolicy::history(3);
        let today = crate::time::Date::from_epoch_ms(NOW);
        let cutoff = crate::retention::cutoff(today, 3).start_epoch_ms();
        assert!(p.check(cutoff, NOW).is_ok(), "the cut-off day is kept");
        let e = p.check(cutoff - 1, NOW).unwrap_err();
        assert_eq!(e.reason, Reason::PastRetention);
        assert!(e.detail.contains("3 years"), "{e}");
        assert_eq!(
            TimePolicy::history(1).retention_years,
            Some(3),
            "never fewer than the lake's minimum"
        );
    }
}
