//! `pulselake migrate reconcile`: a legacy source's readings per device and day (a counts
//! file, or computed here from a legacy export) against the lake's, by count and by an
//! order-independent checksum of reading ids. The lake side is read from the lake's own
//! files, for the days the source names only, each reading once (the lake is written at
//! least once); the report goes to the audit store.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use bytes::Bytes;
use pulselake_domain::reconcile::{Counts, DayCount, Reconciliation};
use pulselake_domain::time::{Date, parse_timestamp_utc_default_ms};
use pulselake_domain::{Metric, Partition, ReadingId};

use crate::AdminError;

/// Source counts from a legacy export in the generic CSV layout (a header naming
/// `device_id`, `sensor_id`, `metric` and `measured_at`, any order, more columns
/// ignored; quoted fields are refused). Each row's reading id is derived as every path
/// derives it, so the checksum compares with the lake's.
pub fn counts_of_export(text: &str) -> Result<Counts, AdminError> {
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines
        .next()
        .map(|(_, h)| h.trim().split(',').map(str::trim).collect())
        .unwrap_or_default();
    let at = |name: &str| header.iter().position(|h| *h == name);
    let (Some(device), Some(sensor), Some(metric), Some(measured)) = (
        at("device_id"),
        at("sensor_id"),
        at("metric"),
        at("measured_at"),
    ) else {
        return Err(AdminError::Refused(vec![
            "the export's header must name device_id, sensor_id, metric and measured_at".into(),
        ]));
    };
    let mut out = Counts::new();
    let mut seen: HashSet<ReadingId> = HashSet::new();
    let mut problems = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        if line.contains('"') {
            problems.push(format!(
                "line {n}: quoted fields are not read here; give a counts file (--source)"
            ));
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let field = |c: usize| f.get(c).copied().unwrap_or("");
        let Some(m) = Metric::from_name(field(metric)) else {
            problems.push(format!(
                "line {n}: metric {:?} is not in the catalog",
                field(metric)
            ));
            continue;
        };
        let t = field(measured);
        let Some(ms) = t
            .parse::<i64>()
            .ok()
            .or_else(|| parse_timestamp_utc_default_ms(t))
        else {
            problems.push(format!("line {n}: measured_at {t:?} is not a time"));
            continue;
        };
        let id = ReadingId::derive(field(device), field(sensor), m, ms);
        // A row exported twice is one reading, as it is in the lake.
        if seen.insert(id) {
            out.entry((field(device).to_owned(), Date::from_epoch_ms(ms)))
                .or_default()
                .add(id);
        }
    }
    if problems.len() > 20 {
        let more = problems.len() - 20;
        problems.truncate(20);
        problems.push(format!("... and {more} more"));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(AdminError::Refused(problems))
    }
}

/// The lake's counts on `days`, from lake files given by key (`fetch` reads one).
pub async fn lake_counts<F, Fut>(
    keys: &[String],
    days: &BTreeSet<Date>,
    fetch: F,
) -> Result<Counts, AdminError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Bytes, AdminError>>,
{
    let mut ids: BTreeMap<(String, Date), HashSet<ReadingId>> = BTreeMap::new();
    for key in keys {
        let Some(p) = Partition::from_object_key(key).filter(|p| days.contains(&p.date)) else {
            continue;
        };
        if !key.ends_with(".parquet") {
            continue;
        }
        let file = fetch(key.clone()).await?;
        let rows = pulselake_lake::read_readings(file, p.metric)
            .map_err(|e| AdminError::Setup(format!("lake file {key}: {e}")))?;
        for r in rows {
            ids.entry((r.device_id.into_owned(), p.date))
                .or_default()
                .insert(r.reading_id);
        }
    }
    Ok(ids
        .into_iter()
        .map(|(k, set)| {
            let mut c = DayCount::default();
            for id in set {
                c.add(id);
            }
            (k, c)
        })
        .collect())
}

/// A few readable lines: the totals, then the device-days that differ (the first 20).
pub fn report_lines(r: &Reconciliation) -> Vec<String> {
    let mut out = vec![format!(
        "source {} readings, lake {} on the same days; {} device-day(s) match, {} differ: {} reading(s) missing from the lake, {} extra",
        r.source_readings,
        r.lake_readings,
        r.matched,
        r.differences.len(),
        r.missing(),
        r.extra()
    )];
    for d in r.differences.iter().take(20) {
        let what = match d.missing() {
            0 => "same count, other readings (checksums differ)".to_owned(),
            m if m > 0 => format!("{m} missing from the lake"),
            m => format!("{} extra in the lake", -m),
        };
        out.push(format!(
            "  {} {}: source {}, lake {}: {what}",
            d.device, d.day, d.source.readings, d.lake.readings
        ));
    }
    if r.differences.len() > 20 {
        out.push(format!(
            "  ... and {} more device-days",
            r.differences.len() - 20
        ));
    }
    out
}

/// The audit record of a reconciliation: totals and the device-days that differ.
pub fn audit_record(r: &Reconciliation, source: &str, at: &str) -> serde_json::Value {
    serde_json::json!({
        "action": "migrate-reconcile",
        "at": at,
        "source": source,
        "source_readings": r.source_readings,
        "lake_readings": r.lake_readings,
        "matched_device_days": r.matched,
        "differing_device_days": r.differences.len(),
        "missing": r.missing(),
        "extra": r.extra(),
        "differences": r.differences.iter().take(1000).map(|d| serde_json::json!({
            "device_id": d.device,
            "day": d.day.to_string(),
            "source": d.source.readings,
            "lake": d.lake.readings,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulselake_domain::reconcile::reconcile;
    use pulselake_domain::{Reading, Source};
    use pulselake_lake::{FileLayout, encode_readings};

    fn reading(device: &str, at: i64) -> Reading<'static> {
        Reading {
            reading_id: ReadingId::derive(device, "hr-0", Metric::HeartRate, at),
            subject_id: "subj".into(),
            device_id: device.to_owned().into(),
            sensor_id: "hr-0".into(),
            metric: Metric::HeartRate,
            value: 70.0,
            measured_at: at,
            received_at: at,
            source: Source::File,
            source_ref: "file:x:L1".into(),
            cohort: None,
        }
    }

    #[tokio::test]
    async fn an_export_that_matches_the_lake_reconciles_and_a_dropped_reading_is_named() {
        let at = pulselake_domain::time::parse_rfc3339_ms("2026-11-23T00:00:00Z").unwrap();
        let export = "device_id,sensor_id,metric,value,unit,measured_at\n\
            dev-1,hr-0,heart_rate,70,/min,2026-11-23T00:00:00Z\n\
            dev-1,hr-0,heart_rate,71,/min,2026-11-23T00:00:20Z\n\
            dev-1,hr-0,heart_rate,71,/min,2026-11-23T00:00:20Z\n\
            dev-2,hr-0,heart_rate,72,/min,2026-11-23 00:00:40\n";
        let source = counts_of_export(export).unwrap();
        let rows = [
            reading("dev-1", at),
            reading("dev-1", at + 20_000),
            reading("dev-2", at + 40_000),
        ];
        let key = format!("{}f.parquet", Partition::of(Metric::HeartRate, at).prefix());
        let days: BTreeSet<Date> = source.keys().map(|k| k.1).collect();
        let lake_of = |rows: Vec<Reading<'static>>| {
            let bytes = Bytes::from(encode_readings(&rows, FileLayout::default()).unwrap());
            let (keys, days) = (vec![key.clone()], days.clone());
            async move {
                lake_counts(&keys, &days, |_| {
                    let b = bytes.clone();
                    async move { Ok(b) }
                })
                .await
                .unwrap()
            }
        };
        // The lake holds each reading, one of them twice (at least once delivery).
        let mut twice = rows.to_vec();
        twice.push(rows[0].clone());
        let r = reconcile(&source, &lake_of(twice).await);
        assert_eq!((r.matched, r.differences.len()), (2, 0), "{r:?}");
        // One reading dropped from the lake: named by its device and day.
        let r = reconcile(&source, &lake_of(rows[..2].to_vec()).await);
        let lines = report_lines(&r);
        assert_eq!(
            lines[1], "  dev-2 2026-11-23: source 1, lake 0: 1 missing from the lake",
            "{lines:?}"
        );
        assert_eq!(audit_record(&r, "export.csv", "now")["missing"], 1);
        // A reading swapped for another of the same count is seen by the checksum.
        let r = reconcile(
            &source,
            &lake_of(vec![
                reading("dev-1", at),
                reading("dev-1", at + 1),
                rows[2].clone(),
            ])
            .await,
        );
        assert!(
            report_lines(&r)[1].contains("checksums differ"),
            "{:?}",
            report_lines(&r)
        );
    }

    #[test]
    fn a_bad_export_names_its_lines() {
        let e = counts_of_export("device_id,sensor_id,metric,measured_at\nd,s,pulse,0\nd,s,heart_rate,soon\n\"d\",s,spo2,0\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2: metric \"pulse\"")
                && e.contains("line 3: measured_at")
                && e.contains("line 4: quoted"),
            "{e}"
        );
        assert!(counts_of_export("device,when\n").is_err());
    }
}
