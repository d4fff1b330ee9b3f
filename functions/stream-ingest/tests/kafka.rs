//! stream-ingest taking a legacy platform's Kafka topic (Amazon MSK or a self-managed
//! cluster such as Event Hubs' Kafka endpoint), built from the event shapes AWS
//! documents: the same readings as through Kinesis, partial failures by topic-partition
//! and offset, and a redelivered batch that changes nothing.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pulselake_adapters::{
    AwsError, FailedEntry, MemoryObjects, MemorySink, ObjectWriter, RecordSink,
};
use pulselake_domain::{Reading, Reason, Source};
use serde_json::json;
use stream_ingest::{Ingest, KafkaBatch, KafkaOutcome, StreamBatch, kafka_response};
use support::*;
use tokio::time::Instant;

fn msk_fixture() -> KafkaBatch {
    serde_json::from_str(include_str!("../../../events/stream-ingest.msk.json")).unwrap()
}

/// A self-managed Kafka batch on one topic-partition: (key, value) per record, in base64
/// unless given raw, at offsets from 100.
fn kafka_batch(records: &[(Option<&str>, serde_json::Value)]) -> KafkaBatch {
    let records: Vec<_> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| {
            json!({"topic": "vitals", "partition": 2, "offset": 100 + i, "timestamp": NOW,
                   "timestampType": "CREATE_TIME", "key": key.map(|k| STANDARD.encode(k)),
                   "value": value, "headers": [{"trace": [1, 2, 3]}]})
        })
        .collect();
    serde_json::from_value(json!({"eventSource": "SelfManagedKafka",
        "bootstrapServers": "legacy-hub.servicebus.windows.net:9093",
        "records": {"vitals-2": records}}))
    .unwrap()
}

fn value(payload: &[u8]) -> serde_json::Value {
    json!(STANDARD.encode(payload))
}

async fn run_kafka<S: RecordSink, Q: ObjectWriter>(
    i: &Ingest<S, Q, pulselake_adapters::MemoryRegistry>,
    b: &KafkaBatch,
) -> KafkaOutcome {
    i.handle_kafka(b, Instant::now() + Duration::from_secs(30), NOW + 500)
        .await
        .expect("the batch is handled")
}

/// What a reading is, without where it came from.
fn content(r: &Reading<'_>) -> (String, String, String, String, i64, u64) {
    (
        r.reading_id.to_string(),
        r.subject_id.to_string(),
        r.device_id.to_string(),
        r.sensor_id.to_string(),
        r.measured_at,
        r.value.to_bits(),
    )
}

#[tokio::test]
async fn the_msk_event_lands_the_same_readings_as_its_kinesis_twin() {
    // The MSK fixture carries the same two payloads (native and vendor format) as the
    // first two Kinesis fixture records, as a legacy producer would during a dual run.
    let mut kinesis: StreamBatch =
        serde_json::from_str(include_str!("../../../events/stream-ingest.kinesis.json")).unwrap();
    kinesis.records.truncate(2);
    let by_kinesis = ingest(MemorySink::default(), MemoryObjects::default());
    let out = run(&by_kinesis, &kinesis).await.unwrap();
    assert!(out.failed_sequence_numbers.is_empty());
    let by_kafka = ingest(MemorySink::default(), MemoryObjects::default());
    let out = run_kafka(&by_kafka, &msk_fixture()).await;
    assert!(out.failed.is_empty());
    assert_eq!(out.stats.records, 2);

    let (k, m) = (lake_rows(&by_kinesis.sink), lake_rows(&by_kafka.sink));
    assert_eq!(k.len(), 4, "three native readings and one vendor reading");
    let set = |rows: &[Reading<'_>]| rows.iter().map(content).collect::<BTreeSet<_>>();
    assert_eq!(
        set(&k),
        set(&m),
        "the same reading ids, subjects, sensors, times and values"
    );
    assert!(m.iter().all(|r| r.source == Source::Kafka));
    assert!(
        m.iter()
            .any(|r| r.source_ref == "kafka:legacy-vitals/vitals-0:15"),
        "{:?}",
        m.iter().map(|r| &r.source_ref).collect::<Vec<_>>()
    );
    assert!(entries(&by_kafka.quarantine).is_empty());
}

#[tokio::test]
async fn the_self_managed_event_with_a_null_key_is_ingested() {
    let b: KafkaBatch =
        serde_json::from_str(include_str!("../../../events/stream-ingest.kafka.json")).unwrap();
    let i = ingest(MemorySink::default(), MemoryObjects::default());
    let out = run_kafka(&i, &b).await;
    assert!(out.failed.is_empty());
    assert_eq!(out.stats.readings_delivered, 4);
    let refs: BTreeSet<String> = lake_rows(&i.sink)
        .into_iter()
        .map(|r| r.source_ref.into_owned())
        .collect();
    assert!(
        refs.contains("kafka:legacy-hub.servicebus.windows.net/vitals-3:90832516"),
        "{refs:?}"
    );
    assert!(
        refs.contains("kafka:legacy-hub.servicebus.windows.net/vitals-4:7"),
        "{refs:?}"
    );
}

#[tokio::test]
async fn bad_records_are_quarantined_one_by_one_with_their_reasons() {
    let big = vec![b'x'; pulselake_domain::MAX_PAYLOAD_BYTES + 1];
    let b = kafka_batch(&[
        (Some("dev-1"), value(&v1("dev-1", good(3)))),
        (Some("dev-1"), serde_json::Value::Null),
        (None, json!("%%% not base64")),
        (None, value(&big)),
        (Some("dev-2"), value(&v1("dev-1", good(1)))),
        (None, value(b"{\"v\":1,\"device_id\":")),
        (None, value(&v1("dev-unknown", good(2)))),
    ]);
    let i = ingest(MemorySink::default(), MemoryObjects::default());
    let out = run_kafka(&i, &b).await;
    assert!(
        out.failed.is_empty(),
        "bad input is quarantined, never retried"
    );
    assert_eq!(lake_rows(&i.sink).len(), 3);
    let q = entries(&i.quarantine);
    let reasons: Vec<(String, Option<Reason>)> =
        q.iter().map(|e| (e.reference.clone(), e.reason)).collect();
    let at = |offset: u32| format!("kafka:legacy-hub.servicebus.windows.net/vitals-2:{offset}");
    for (offset, reason) in [
        (101, Reason::NotJson),
        (102, Reason::InvalidBase64),
        (103, Reason::Oversized),
        (104, Reason::DeviceMismatch),
        (105, Reason::NotJson),
        (106, Reason::UnknownDevice),
    ] {
        assert!(
            reasons.contains(&(at(offset), Some(reason))),
            "offset {offset}: {reasons:?}"
        );
    }
    assert!(q.iter().all(|e| e.source == "kafka"));
    assert_eq!(
        out.stats.readings_delivered + out.stats.readings_quarantined(),
        3 + 1 + 2
    );
    // No device identifier in the quarantine's object keys: stream positions only.
    for key in i.quarantine.keys(QUARANTINE) {
        assert!(!key.contains("dev-"), "{key}");
        assert!(
            key.contains("/kafka-legacy-hub.servicebus.windows.net-vitals-2/100-106.ndjson"),
            "{key}"
        );
    }
}

#[tokio::test]
async fn an_unreadable_key_cannot_speak_for_a_device() {
    let b: KafkaBatch = serde_json::from_value(json!({"eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:eu-west-1:1:cluster/c/u",
        "records": {"t-0": [{"topic": "t", "partition": 0, "offset": 1, "timestamp": NOW,
            "key": "%%", "value": STANDARD.encode(v1("dev-1", good(1)))}]}}))
    .unwrap();
    let i = ingest(MemorySink::default(), MemoryObjects::default());
    let out = run_kafka(&i, &b).await;
    assert_eq!(out.stats.quarantined_readings[&Reason::DeviceMismatch], 1);
    assert!(lake_rows(&i.sink).is_empty());
}

struct RefusesRecordsContaining(&'static str);

impl RecordSink for RefusesRecordsContaining {
    async fn put_batch(&self, records: &[&[u8]]) -> Result<Vec<FailedEntry>, AwsError> {
        Ok(records
            .iter()
            .enumerate()
            .filter(|(_, r)| String::from_utf8_lossy(r).contains(self.0))
            .map(|(index, _)| FailedEntry {
                index,
                code: "ServiceUnavailableException".into(),
            })
            .collect())
    }
}

#[tokio::test(start_paused = true)]
async fn undeliverable_records_are_reported_by_topic_partition_and_offset() {
    // Firehose records pack lines of neighbouring Kafka records; a refused one fails
    // every Kafka record with a line in it, and no other.
    let big = |tag: &str| {
        let readings = (0..40)
            .map(|n| {
                reading(
                    &format!("{tag}-{n}"),
                    "heart_rate",
                    json!(70),
                    "/min",
                    NOW - 10,
                )
            })
            .collect();
        value(&v1("dev-1", readings))
    };
    let poison = value(&v1(
        "dev-1",
        vec![reading("poison", "heart_rate", json!(77), "/min", NOW - 10)],
    ));
    let b = kafka_batch(&[
        (Some("dev-1"), big("a")),
        (Some("dev-1"), poison),
        (None, big("c")),
        (None, big("d")),
    ]);
    let i = ingest(RefusesRecordsContaining("poison"), MemoryObjects::default());
    let out = run_kafka(&i, &b).await;
    let failed: Vec<i64> = out.failed.iter().map(|f| f.offset).collect();
    assert!(failed.contains(&101), "{failed:?}");
    assert!(
        !failed.contains(&103),
        "d shares no record with the poison: {failed:?}"
    );
    assert!(out.failed.iter().all(|f| f.partition == "vitals-2"));
    let s = &out.stats;
    assert_eq!(s.readings_delivered + s.readings_failed, 121);
    // The response in the shape the Kafka event source mapping reads.
    let response = serde_json::to_value(kafka_response(out.failed)).unwrap();
    assert!(
        response["batchItemFailures"]
            .as_array()
            .unwrap()
            .contains(&json!({"itemIdentifier": {"partition": "vitals-2", "offset": 101}})),
        "{response}"
    );
}

#[tokio::test]
async fn a_redelivered_batch_changes_nothing() {
    let b = kafka_batch(&[
        (Some("dev-1"), value(&v1("dev-1", good(4)))),
        (None, value(b"not json")),
    ]);
    let i = ingest(MemorySink::default(), MemoryObjects::default());
    let first = run_kafka(&i, &b).await;
    let rows_first = lake_rows(&i.sink);
    let quarantine_keys = i.quarantine.keys(QUARANTINE);
    let again = run_kafka(&i, &b).await;
    let rows_again = lake_rows(&i.sink);
    assert_eq!(first.stats, again.stats);
    assert_eq!(
        rows_first
            .iter()
            .map(|r| (content(r), r.source_ref.to_string(), r.received_at))
            .collect::<Vec<_>>(),
        rows_again
            .iter()
            .map(|r| (content(r), r.source_ref.to_string(), r.received_at))
            .collect::<Vec<_>>(),
        "identical rows: the lake's readers deduplicate them on the reading id"
    );
    assert_eq!(
        i.quarantine.keys(QUARANTINE),
        quarantine_keys,
        "the quarantine object is overwritten, not added"
    );
    assert_eq!(entries(&i.quarantine).len(), 1);
}
