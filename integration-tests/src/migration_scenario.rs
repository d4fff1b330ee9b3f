//! Migration reconciliation on the demo lake: the partner export the file scenario
//! backfilled, taken as the legacy source (`pulselake migrate reconcile --from-export`),
//! matches the lake device-day by device-day; the same source with one reading the lake
//! never received names that reading's device and day. And a short dual run: a legacy
//! Kafka topic and the devices send overlapping readings, reconciled afterwards.

use std::collections::{BTreeMap, BTreeSet};

use pulselake_cli::migrate::{counts_of_export, lake_counts, report_lines};
use pulselake_domain::Partition;
use pulselake_domain::reconcile::{Reconciliation, reconcile};
use pulselake_domain::time::Date;

use crate::scenario::{file_devices, partner_export};
use crate::{LocalPlatform, Result, inspect};

/// The reading the second source has and the lake never got.
pub const LOST: (&str, &str) = ("dev-file-007", "2026-11-01");

#[derive(Debug, Default)]
pub struct MigrationReport {
    pub matching: Reconciliation,
    pub with_a_lost_reading: Reconciliation,
    pub lines: Vec<String>,
}

impl MigrationReport {
    pub fn adds_up(&self) -> bool {
        let lost = &self.with_a_lost_reading.differences;
        self.matching.differences.is_empty()
            && self.matching.matched == file_devices().len()
            && lost.len() == 1
            && lost[0].device == LOST.0
            && lost[0].day.to_string() == LOST.1
            && self.with_a_lost_reading.missing() == 1
    }
}

pub async fn run_migration(
    platform: &LocalPlatform,
    progress: &mut dyn FnMut(String),
) -> Result<MigrationReport> {
    let stack = &platform.stack;
    let export = partner_export(&file_devices());
    let source = counts_of_export(&export)?;
    let mut lost = export.clone();
    lost.push_str(&format!(
        "{},hr-0,heart_rate,70,/min,{}T06:00:00Z\n",
        LOST.0, LOST.1
    ));
    let lost_source = counts_of_export(&lost)?;
    let days: BTreeSet<Date> = source.keys().map(|k| k.1).collect();
    let keys: Vec<String> = inspect::list_keys(stack, &stack.names.lake_bucket, "readings/")
        .await?
        .into_iter()
        .filter(|k| Partition::from_object_key(k).is_some_and(|p| days.contains(&p.date)))
        .collect();
    progress(format!(
        "the backfilled partner export as the legacy source: {} device-days; {} lake files on its days",
        source.len(),
        keys.len()
    ));
    let lake = lake_counts(&keys, &days, |key| async move {
        inspect::get_bytes(stack, &stack.names.lake_bucket, &key)
            .await
            .map_err(|e| pulselake_cli::AdminError::Setup(e.to_string()))
    })
    .await?;
    let mut r = MigrationReport {
        matching: reconcile(&source, &lake),
        with_a_lost_reading: reconcile(&lost_source, &lake),
        ..MigrationReport::default()
    };
    r.lines = report_lines(&r.matching);
    r.lines.extend(report_lines(&r.with_a_lost_reading));
    Ok(r)
}

// ---------------------------------------------------------------- dual run

/// Devices of the dual run: the legacy platform still writes all of them to its Kafka
/// topic; the first [`MOVED`] have moved to IoT Core and publish the latest readings too.
const LEGACY_DEVICES: usize = 4;
const MOVED: usize = 2;
/// Readings per device on the legacy topic (one message a minute, two metrics each), and
/// how many of the latest the moved devices also publish through IoT Core.
const MINUTES: i64 = 12;
const OVERLAP: i64 = 5;

#[derive(Debug, Default)]
pub struct DualRunReport {
    pub legacy_readings: usize,
    pub device_readings: usize,
    /// Kafka records Lambda delivered a second time (an at-least-once redelivery).
    pub redelivered_readings: usize,
    pub failed_items: usize,
    pub lake_rows_kafka: usize,
    pub lake_rows_stream: usize,
    pub lake_distinct: usize,
    pub reconciliation: Reconciliation,
    pub lines: Vec<String>,
}

impl DualRunReport {
    pub fn adds_up(&self) -> bool {
        self.failed_items == 0
            && self.lake_rows_kafka == self.legacy_readings + self.redelivered_readings
            && self.lake_rows_stream == self.device_readings
            && self.lake_distinct == self.legacy_readings
            && self.reconciliation.differences.is_empty()
            && self.reconciliation.matched > 0
    }
}

fn legacy_devices(since: i64) -> Vec<pulselake_domain::DeviceRecord> {
    (0..LEGACY_DEVICES)
        .map(|d| pulselake_domain::DeviceRecord {
            device_id: format!("dev-legacy-{d:03}"),
            assignments: vec![pulselake_domain::Assignment {
                subject_id: format!("subj-l{d:03}"),
                valid_from: since,
                valid_to: None,
                cohort: None,
            }],
        })
        .collect()
}

/// One device message a minute: a heart rate and an SpO2, as the legacy producers and
/// the devices both send it.
fn dual_run_message(device: &str, minute: i64, at: i64) -> Vec<u8> {
    let ts = pulselake_domain::time::format_rfc3339_ms(at);
    serde_json::json!({"v": 1, "device_id": device, "message_id": format!("{device}-{minute}"),
        "readings": [
            {"sensor_id": "hr-0", "metric": "heart_rate", "value": 60 + minute % 30, "unit": "/min", "measured_at": ts},
            {"sensor_id": "spo2-0", "metric": "spo2", "value": 95 + minute % 5, "unit": "%", "measured_at": ts}]})
    .to_string()
    .into_bytes()
}

/// A short dual run: the legacy topic (through legacy-stream-ingest's Kafka handler, one
/// batch delivered twice) and the moved devices (through IoT Core and Kinesis) send
/// overlapping readings; the lake holds each reading id once per path, and `migrate
/// reconcile` against the legacy side's export finds every reading, counted once.
pub async fn run_dual_run(
    platform: &LocalPlatform,
    progress: &mut dyn FnMut(String),
) -> Result<DualRunReport> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use crate::invoke::{Invoker, LegacyStreamIngestFn};

    let stack = &platform.stack;
    let now = stream_ingest::now_ms();
    let start = (now - (MINUTES + 2) * 60_000) / 60_000 * 60_000;
    let devices = legacy_devices(start - 86_400_000);
    crate::onboard::import(stack, &devices).await?;
    let mut report = DualRunReport::default();
    let mut export = String::from("device_id,sensor_id,metric,value,unit,measured_at\n");
    let mut partitions: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let mut published = Vec::new();
    for (d, device) in devices.iter().enumerate() {
        let id = &device.device_id;
        let partition = d % 2;
        for minute in 0..MINUTES {
            let at = start + minute * 60_000;
            let payload = dual_run_message(id, minute, at);
            let ts = pulselake_domain::time::format_rfc3339_ms(at);
            export.push_str(&format!(
                "{id},hr-0,heart_rate,{},/min,{ts}\n",
                60 + minute % 30
            ));
            export.push_str(&format!("{id},spo2-0,spo2,{},%,{ts}\n", 95 + minute % 5));
            let records = partitions
                .entry(format!("legacy-vitals-{partition}"))
                .or_default();
            records.push(
                serde_json::json!({"topic": "legacy-vitals", "partition": partition,
                "offset": records.len(), "timestamp": at + 1_000, "timestampType": "CREATE_TIME",
                "key": STANDARD.encode(id), "value": STANDARD.encode(&payload), "headers": []}),
            );
            report.legacy_readings += 2;
            if d < MOVED && minute >= MINUTES - OVERLAP {
                published.push((crate::iot::topic_for(id), payload));
                report.device_readings += 2;
            }
        }
    }
    let batch = |records: serde_json::Value| {
        serde_json::json!({"eventSource": "aws:kafka",
            "eventSourceArn": "arn:aws:kafka:eu-west-1:123456789012:cluster/legacy-vitals/0b7e1f52-5d1c-4d0e",
            "bootstrapServers": "b-1.legacy-vitals.kafka.eu-west-1.amazonaws.com:9098",
            "records": records})
    };
    let legacy = LegacyStreamIngestFn(platform.stream_ingest().await?);
    let first: BTreeMap<_, _> = partitions
        .iter()
        .take(1)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut failed = 0;
    for event in [
        batch(serde_json::json!(partitions)),
        batch(serde_json::json!(first)),
    ] {
        let resp = legacy.invoke(event).await.map_err(|e| e.to_string())?;
        failed += resp["batchItemFailures"].as_array().map_or(0, Vec::len);
    }
    report.failed_items = failed;
    report.redelivered_readings = first.values().map(Vec::len).sum::<usize>() * 2;
    progress(format!(
        "legacy topic: {} readings of {LEGACY_DEVICES} devices through legacy-stream-ingest (MSK event shape); one partition's batch delivered again ({} readings)",
        report.legacy_readings, report.redelivered_readings
    ));
    let mut mapping = crate::esm::KinesisMapping::new(
        stack,
        platform.stream_ingest().await?,
        crate::esm::MappingConfig::default(),
    )
    .at_latest()
    .await?;
    crate::iot::publish(stack, &published).await?;
    mapping.drain().await?;
    crate::firehose::flush(stack).await?;
    progress(format!(
        "devices moved to IoT Core: {MOVED} of them sent their latest {} readings through Kinesis as well",
        report.device_readings
    ));

    let lake = inspect::lake(stack).await?;
    let ours: Vec<_> = lake
        .rows
        .iter()
        .filter(|r| r.device_id.starts_with("dev-legacy-"))
        .collect();
    report.lake_rows_kafka = ours
        .iter()
        .filter(|r| r.source == pulselake_domain::Source::Kafka)
        .count();
    report.lake_rows_stream = ours
        .iter()
        .filter(|r| r.source == pulselake_domain::Source::Stream)
        .count();
    report.lake_distinct = ours
        .iter()
        .map(|r| r.reading_id)
        .collect::<BTreeSet<_>>()
        .len();

    let source = counts_of_export(&export)?;
    let days: BTreeSet<Date> = source.keys().map(|k| k.1).collect();
    let keys: Vec<String> = inspect::list_keys(stack, &stack.names.lake_bucket, "readings/")
        .await?
        .into_iter()
        .filter(|k| Partition::from_object_key(k).is_some_and(|p| days.contains(&p.date)))
        .collect();
    let mut lake_side = lake_counts(&keys, &days, |key| async move {
        inspect::get_bytes(stack, &stack.names.lake_bucket, &key)
            .await
            .map_err(|e| pulselake_cli::AdminError::Setup(e.to_string()))
    })
    .await?;
    // The legacy platform's devices only: the rest of the fleet is not on its topic.
    lake_side.retain(|(device, _), _| device.starts_with("dev-legacy-"));
    report.reconciliation = reconcile(&source, &lake_side);
    report.lines = report_lines(&report.reconciliation);
    Ok(report)
}
