//! Shared by the stream-ingest handler tests: a registry, the handler on in-memory
//! adapters, device messages, batches as Lambda sends them, and readers of what landed.
#![allow(dead_code)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pulselake_adapters::RetryPolicy;
use pulselake_adapters::{
    CachedRegistry, MemoryObjects, MemoryRegistry, MemorySink, ObjectWriter, RecordSink,
};
use pulselake_domain::time::{DAY_MS, format_rfc3339_ms};
use pulselake_domain::{
    Assignment, DeviceMappings, DeviceRecord, QuarantineEntry, Reading, TimePolicy,
};
use serde_json::json;
use stream_ingest::{Ingest, IngestError, Outcome, StreamBatch};
use tokio::time::Instant;

pub const NOW: i64 = 1_795_342_530_000;

pub fn registry() -> MemoryRegistry {
    MemoryRegistry::new([
        DeviceRecord {
            device_id: "dev-1".into(),
            assignments: vec![Assignment {
                subject_id: "subj-1".into(),
                valid_from: NOW - 30 * DAY_MS,
                valid_to: None,
                cohort: None,
            }],
        },
        DeviceRecord {
            device_id: "dev-000123".into(),
            assignments: vec![Assignment {
                subject_id: "subj-3".into(),
                valid_from: 0,
                valid_to: None,
                cohort: None,
            }],
        },
        DeviceRecord {
            device_id: "dev-returned".into(),
            assignments: vec![],
        },
        DeviceRecord {
            device_id: "ACME-7781".into(),
            assignments: vec![Assignment {
                subject_id: "subj-2".into(),
                valid_from: 0,
                valid_to: None,
                cohort: None,
            }],
        },
    ])
}

pub fn ingest<S: RecordSink, Q: ObjectWriter>(
    sink: S,
    quarantine: Q,
) -> Ingest<S, Q, MemoryRegistry> {
    Ingest {
        sink,
        quarantine,
        quarantine_bucket: QUARANTINE.into(),
        registry: CachedRegistry::new(registry(), Duration::from_secs(60), Duration::from_secs(60)),
        mappings: DeviceMappings::builtin(),
        policy: TimePolicy::stream(),
        retry: RetryPolicy::default(),
        scratch: Default::default(),
    }
}

pub fn reading(
    sensor: &str,
    metric: &str,
    value: serde_json::Value,
    unit: &str,
    at: i64,
) -> serde_json::Value {
    json!({"sensor_id": sensor, "metric": metric, "value": value, "unit": unit, "measured_at": format_rfc3339_ms(at)})
}

pub fn v1(device: &str, readings: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"v": 1, "device_id": device, "message_id": "m", "readings": readings}),
    )
    .unwrap()
}

pub fn good(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            reading(
                &format!("hr-{i}"),
                "heart_rate",
                json!(60 + i),
                "/min",
                NOW - 1000,
            )
        })
        .collect()
}

/// The device a payload claims (native or flat vendor format), as the IoT topic of its
/// publisher would name it.
pub fn claimed_device(data: &str) -> String {
    let payload = STANDARD.decode(data).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
    v["device_id"]
        .as_str()
        .or(v["serial"].as_str())
        .unwrap_or("unknown")
        .to_owned()
}

/// A Kinesis batch as Lambda sends it, with raw `data` strings (base64 unless testing
/// otherwise), each published by the device it claims.
pub fn batch_of(datas: &[String]) -> StreamBatch {
    let published: Vec<(String, String)> = datas
        .iter()
        .map(|d| (claimed_device(d), d.clone()))
        .collect();
    batch_published(&published)
}

/// A batch of (publishing device, raw data) records.
pub fn batch_published(records: &[(String, String)]) -> StreamBatch {
    let records: Vec<_> = records
        .iter()
        .enumerate()
        .map(|(i, (publisher, d))| {
            json!({"eventID": format!("shardId-000000000003:{}", 1000 + i), "eventSource": "aws:kinesis",
                   "kinesis": {"data": d, "sequenceNumber": format!("{}", 1000 + i), "partitionKey": publisher,
                               "approximateArrivalTimestamp": NOW as f64 / 1000.0}})
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

pub fn batch(payloads: &[Vec<u8>]) -> StreamBatch {
    batch_of(
        &payloads
            .iter()
            .map(|p| STANDARD.encode(p))
            .collect::<Vec<_>>(),
    )
}

pub async fn run<S: RecordSink, Q: ObjectWriter>(
    i: &Ingest<S, Q, MemoryRegistry>,
    b: &StreamBatch,
) -> Result<Outcome, IngestError> {
    i.handle(b, Instant::now() + Duration::from_secs(30), NOW + 500)
        .await
}

pub fn lake_rows(sink: &MemorySink) -> Vec<Reading<'static>> {
    sink.take()
        .iter()
        .flat_map(|rec| {
            rec.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice::<Reading>(l).unwrap().into_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

pub const QUARANTINE: &str = "quarantine";

pub fn entries(q: &MemoryObjects) -> Vec<QuarantineEntry> {
    q.keys(QUARANTINE)
        .iter()
        .filter_map(|k| q.get(QUARANTINE, k))
        .flat_map(|body| {
            body.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}
