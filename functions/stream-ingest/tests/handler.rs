//! The stream-ingest handler with in-memory adapters: every kind of bad input is
//! quarantined with its reason, nothing panics, and the counts add up.

mod support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pulselake_adapters::{
    AwsError, CachedRegistry, FailedEntry, MemoryObjects, MemoryRegistry, MemorySink, ObjectWriter,
    RecordSink,
};
use pulselake_domain::time::DAY_MS;
use pulselake_domain::{Assignment, DeviceRecord, Reason};
use serde_json::json;
use stream_ingest::{Ingest, IngestError, StreamBatch};
use support::*;

/// Runs one bad record next to a good message and checks the reason and the accounting.
async fn assert_quarantined(bad: Vec<u8>, expect: Reason, bad_readings: usize) {
    let (sink, q) = (MemorySink::default(), MemoryObjects::default());
    let i = ingest(sink, q);
    let out = run(&i, &batch(&[v1("dev-1", good(5)), bad]))
        .await
        .expect("a bad record never fails the batch");
    assert!(out.failed_sequence_numbers.is_empty());
    let s = &out.stats;
    let rows = lake_rows(&i.sink);
    let quarantine = entries(&i.quarantine);
    assert_eq!(
        rows.len(),
        5,
        "the good message is in the lake, the bad record is not"
    );
    assert_eq!(
        quarantine.len(),
        1,
        "one quarantine entry for the bad record"
    );
    let e = &quarantine[0];
    let reason = e.reason.or_else(|| e.rejected.first().map(|r| r.reason));
    assert_eq!(reason, Some(expect), "{e:?}");
    assert_eq!(s.readings_delivered, rows.len());
    assert_eq!(e.readings_quarantined(), bad_readings);
    assert_eq!(s.readings_quarantined(), bad_readings);
    assert_eq!(e.reference, "shardId-000000000003:1001");
    assert!(
        e.payload.is_some() || e.payload_base64.is_some(),
        "the original payload is kept"
    );
}

#[tokio::test]
async fn invalid_base64_is_quarantined_with_the_raw_data() {
    let i = ingest(MemorySink::default(), MemoryObjects::default());
    let b = batch_of(&[
        STANDARD.encode(v1("dev-1", good(2))),
        "!!not base64!!".into(),
    ]);
    let out = run(&i, &b).await.unwrap();
    let q = entries(&i.quarantine);
    assert_eq!(q[0].reason, Some(Reason::InvalidBase64));
    assert_eq!(q[0].payload_base64.as_deref(), Some("!!not base64!!"));
    assert_eq!(out.stats.unreadable_records[&Reason::InvalidBase64], 1);
    assert_eq!(out.stats.readings_delivered, 2);
}

#[tokio::test]
async fn not_json_is_quarantined() {
    assert_quarantined(b"{\"v\":1,\"device_id\":".to_vec(), Reason::NotJson, 0).await;
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_quarantined() {
    assert_quarantined(b"[1,2,3]".to_vec(), Reason::WrongShape, 0).await;
    assert_quarantined(
        br#"{"v":1,"device_id":"dev-1","readings":"many"}"#.to_vec(),
        Reason::WrongShape,
        0,
    )
    .await;
}

#[tokio::test]
async fn nan_and_infinity_are_quarantined() {
    let nan = br#"{"v":1,"device_id":"dev-1","readings":[{"sensor_id":"a","metric":"heart_rate","value":NaN,"unit":"/min","measured_at":"2026-11-22T10:15:29Z"}]}"#;
    assert_quarantined(nan.to_vec(), Reason::NotJson, 0).await;
    let inf = br#"{"v":1,"device_id":"dev-1","readings":[{"sensor_id":"a","metric":"heart_rate","value":-Infinity,"unit":"/min","measured_at":"2026-11-22T10:15:29Z"}]}"#;
    assert_quarantined(inf.to_vec(), Reason::NotJson, 0).await;
}

#[tokio::test]
async fn numbers_as_strings_are_quarantined_per_reading() {
    let bad = v1(
        "dev-1",
        vec![reading("x", "heart_rate", json!("72"), "/min", NOW - 1000)],
    );
    assert_quarantined(bad, Reason::ValueNotNumber, 1).await;
}

#[tokio::test]
async fn unknown_metric_is_quarantined() {
    assert_quarantined(
        v1(
            "dev-1",
            vec![reading("x", "mood", json!(3), "1", NOW - 1000)],
        ),
        Reason::UnknownMetric,
        1,
    )
    .await;
}

#[tokio::test]
async fn a_unit_that_cannot_be_converted_is_quarantined() {
    assert_quarantined(
        v1(
            "dev-1",
            vec![reading("x", "glucose", json!(5), "mg", NOW - 1000)],
        ),
        Reason::UnknownUnit,
        1,
    )
    .await;
}

#[tokio::test]
async fn an_out_of_range_value_is_quarantined() {
    assert_quarantined(
        v1(
            "dev-1",
            vec![reading("x", "spo2", json!(140), "%", NOW - 1000)],
        ),
        Reason::OutOfRange,
        1,
    )
    .await;
}

#[tokio::test]
async fn timestamps_far_in_the_future_or_past_are_quarantined() {
    assert_quarantined(
        v1(
            "dev-1",
            vec![reading("x", "spo2", json!(97), "%", NOW + DAY_MS)],
        ),
        Reason::TimestampInFuture,
        1,
    )
    .await;
    assert_quarantined(
        v1(
            "dev-1",
            vec![reading("x", "spo2", json!(97), "%", NOW - 365 * DAY_MS)],
        ),
        Reason::TimestampTooOld,
        1,
    )
    .await;
}

#[tokio::test]
async fn unknown_and_unassigned_devices_are_quarantined() {
    assert_quarantined(v1("dev-nobody-knows", good(4)), Reason::UnknownDevice, 4).await;
    assert_quarantined(v1("dev-returned", good(2)), Reason::DeviceUnassigned, 2).await;
}

#[tokio::test]
async fn an_oversized_payload_is_quarantined_without_parsing() {
    let huge = v1(
        "dev-1",
        (0..1500)
            .map(|i| {
                reading(
                    &format!("s-{i}"),
                    "heart_rate",
                    json!(70),
                    "/min",
                    NOW - 1000,
                )
            })
            .collect(),
    );
    assert!(huge.len() > 128 * 1024);
    assert_quarantined(huge, Reason::Oversized, 0).await;
}

#[tokio::test]
async fn an_unknown_version_is_quarantined() {
    assert_quarantined(
        br#"{"v":7,"device_id":"dev-1","readings":[]}"#.to_vec(),
        Reason::UnsupportedVersion,
        0,
    )
    .await;
}

#[tokio::test]
async fn an_empty_batch_succeeds_with_nothing_to_do() {
    let i = ingest(MemorySink::default(), MemoryObjects::default());
    let out = run(&i, &StreamBatch::default()).await.unwrap();
    assert!(out.failed_sequence_numbers.is_empty());
    assert!(i.sink.take().is_empty());
    assert!(i.quarantine.keys(QUARANTINE).is_empty());
}

#[tokio::test]
async fn the_same_record_twice_lands_once() {
    let i = ingest(MemorySink::default(), MemoryObjects::default());
    let msg = v1("dev-1", good(3));
    let out = run(&i, &batch(&[msg.clone(), msg])).await.unwrap();
    let rows = lake_rows(&i.sink);
    assert_eq!(rows.len(), 3);
    assert_eq!(out.stats.duplicates, 3);
    assert!(
        i.quarantine.keys(QUARANTINE).is_empty(),
        "a duplicate is not a fault"
    );
}

#[tokio::test]
async fn the_vendor_flat_format_reaches_the_lake_normalized() {
    let i = ingest(MemorySink::default(), MemoryObjects::default());
    let flat = format!(
        r#"{{"serial":"ACME-7781","type":"TEMP","val":98.6,"uom":"F","ts":{}}}"#,
        NOW - 5000
    );
    run(&i, &batch(&[flat.into_bytes()])).await.unwrap();
    let rows = lake_rows(&i.sink);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].metric.name(), rows[0].value, rows[0].unit()),
        ("body_temp", 37.0, "Cel")
    );
    assert_eq!(rows[0].subject_id, "subj-2");
    assert_eq!(rows[0].source_ref, "shardId-000000000003:1000");
}

#[tokio::test]
async fn the_sample_event_is_handled() {
    let i = ingest(MemorySink::default(), MemoryObjects::default());
    let b: StreamBatch =
        serde_json::from_str(include_str!("../../../events/stream-ingest.kinesis.json")).unwrap();
    let reg = MemoryRegistry::new([DeviceRecord {
        device_id: "dev-000123".into(),
        assignments: vec![Assignment {
            subject_id: "s".into(),
            valid_from: 0,
            valid_to: None,
            cohort: None,
        }],
    }]);
    let i = Ingest {
        registry: CachedRegistry::new(reg, Duration::ZERO, Duration::ZERO),
        ..i
    };
    let out = run(&i, &b).await.unwrap();
    assert_eq!(out.stats.readings_delivered, 3);
    assert_eq!(
        out.stats.readings_quarantined(),
        1,
        "ACME-7781 is not registered here"
    );
    assert_eq!(out.stats.unreadable_records.get(&Reason::NotJson), Some(&1));
}

/// Firehose refusing one record for good: only the Kinesis records inside it are retried.
struct RefusesRecordsContaining(&'static str);

impl RecordSink for RefusesRecordsContaining {
    async fn put_batch(&self, records: &[&[u8]]) -> Result<Vec<FailedEntry>, AwsError> {
        Ok(records
            .iter()
            .enumerate()
            .filter(|(_, r)| String::from_utf8_lossy(r).contains(self.0))
            .map(|(index, _)| FailedEntry {
                index,
                code: "InternalFailure".into(),
            })
            .collect())
    }
}

#[tokio::test(start_paused = true)]
async fn undeliverable_readings_report_their_records_as_batch_failures() {
    let i = ingest(RefusesRecordsContaining("poison"), MemoryObjects::default());
    // Firehose records pack lines of neighbouring Kinesis records; a refused one fails
    // every Kinesis record with a line in it, and no other.
    let big = |tag: &str| {
        v1(
            "dev-1",
            (0..40)
                .map(|n| {
                    reading(
                        &format!("{tag}-{n}"),
                        "heart_rate",
                        json!(70),
                        "/min",
                        NOW - 10,
                    )
                })
                .collect(),
        )
    };
    let poison = v1(
        "dev-1",
        vec![reading("poison", "heart_rate", json!(77), "/min", NOW - 10)],
    );
    let out = run(&i, &batch(&[big("a"), poison, big("c"), big("d")]))
        .await
        .unwrap();
    let failed = &out.failed_sequence_numbers;
    assert!(failed.contains(&"1001".to_string()), "{failed:?}");
    assert!(
        !failed.contains(&"1003".to_string()),
        "d shares no record with the poison: {failed:?}"
    );
    let s = &out.stats;
    assert!(
        s.readings_failed >= 1 && s.readings_failed < 20,
        "one Firehose record failed: {s:?}"
    );
    assert_eq!(s.readings_delivered + s.readings_failed, 121);
}

#[tokio::test(start_paused = true)]
async fn when_every_record_fails_the_batch_errors_so_lambda_retries() {
    struct Down;
    impl RecordSink for Down {
        async fn put_batch(&self, _: &[&[u8]]) -> Result<Vec<FailedEntry>, AwsError> {
            Err(AwsError::transient(
                "firehose:PutRecordBatch",
                "ServiceUnavailableException",
            ))
        }
    }
    let i = ingest(Down, MemoryObjects::default());
    let err = run(&i, &batch(&[v1("dev-1", good(2)), v1("dev-1", good(3))]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, IngestError::AllFailed { failed: 2, .. }),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_quarantine_write_reports_the_quarantined_records() {
    struct BrokenBucket;
    impl ObjectWriter for BrokenBucket {
        async fn put(&self, _: &str, _: &str, _: Vec<u8>, _: &str) -> Result<(), AwsError> {
            Err(AwsError::transient("s3:PutObject", "SlowDown"))
        }
        async fn copy(
            &self,
            _: &str,
            _: &str,
            _: Option<&str>,
            _: &str,
            _: &str,
        ) -> Result<(), AwsError> {
            Err(AwsError::transient("s3:CopyObject", "SlowDown"))
        }
        async fn delete(&self, _: &str, _: &str, _: Option<&str>) -> Result<(), AwsError> {
            Err(AwsError::transient("s3:DeleteObject", "SlowDown"))
        }
    }
    let i = ingest(MemorySink::default(), BrokenBucket);
    let out = run(&i, &batch(&[v1("dev-1", good(2)), b"junk".to_vec()]))
        .await
        .unwrap();
    assert_eq!(out.failed_sequence_numbers, ["1001"]);
    assert_eq!(out.stats.readings_delivered, 2);
}

#[tokio::test]
async fn a_device_reassigned_mid_message_attributes_each_reading_to_its_subject() {
    let switch = NOW - 60_000;
    let reg = MemoryRegistry::new([DeviceRecord {
        device_id: "dev-shared".into(),
        assignments: vec![
            Assignment {
                subject_id: "subj-before".into(),
                valid_from: NOW - DAY_MS,
                valid_to: Some(switch),
                cohort: None,
            },
            Assignment {
                subject_id: "subj-after".into(),
                valid_from: switch,
                valid_to: None,
                cohort: None,
            },
        ],
    }]);
    let i = Ingest {
        registry: CachedRegistry::new(reg, Duration::ZERO, Duration::ZERO),
        ..ingest(MemorySink::default(), MemoryObjects::default())
    };
    let readings = vec![
        reading("a", "heart_rate", json!(70), "/min", switch - 1000),
        reading("b", "heart_rate", json!(71), "/min", switch + 1000),
        reading("c", "heart_rate", json!(72), "/min", switch - 2000),
    ];
    run(&i, &batch(&[v1("dev-shared", readings)]))
        .await
        .unwrap();
    let mut rows: Vec<_> = lake_rows(&i.sink)
        .into_iter()
        .map(|r| (r.sensor_id.to_string(), r.subject_id.to_string()))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("a".into(), "subj-before".into()),
            ("b".into(), "subj-after".into()),
            ("c".into(), "subj-before".into())
        ]
    );
}

#[tokio::test]
async fn two_metrics_from_one_sensor_at_one_instant_both_land() {
    // A pulse oximeter reports heart rate and SpO2 under one sensor id at one instant.
    let i = ingest(MemorySink::default(), MemoryObjects::default());
    let at = NOW - 1000;
    let msg = v1(
        "dev-1",
        vec![
            reading("ox-0", "heart_rate", json!(72), "/min", at),
            reading("ox-0", "spo2", json!(97), "%", at),
        ],
    );
    let out = run(&i, &batch(&[msg])).await.unwrap();
    let rows = lake_rows(&i.sink);
    assert_eq!(rows.len(), 2);
    assert_ne!(rows[0].reading_id, rows[1].reading_id);
    assert_eq!(
        (out.stats.duplicates, out.stats.readings_quarantined()),
        (0, 0)
    );
    assert!(i.quarantine.keys(QUARANTINE).is_empty());
}

#[tokio::test]
async fn a_second_value_for_the_same_reading_is_quarantined_as_a_conflict() {
    // 72 then 140 for the same sensor, metric and instant, in two records of a batch:
    // the first is kept, the second is held with its reason, never dropped silently.
    let i = ingest(MemorySink::default(), MemoryObjects::default());
    let at = NOW - 1000;
    let first = v1(
        "dev-1",
        vec![reading("hr-0", "heart_rate", json!(72), "/min", at)],
    );
    let second = v1(
        "dev-1",
        vec![reading("hr-0", "heart_rate", json!(140), "/min", at)],
    );
    let out = run(&i, &batch(&[first.clone(), second, first]))
        .await
        .unwrap();
    let rows = lake_rows(&i.sink);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].value, 72.0);
    assert_eq!(out.stats.duplicates, 1, "the exact repeat is absorbed");
    assert_eq!(
        out.stats
            .quarantined_readings
            .get(&Reason::ConflictingDuplicate),
        Some(&1)
    );
    let q = entries(&i.quarantine);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].rejected[0].reason, Reason::ConflictingDuplicate);
    assert_eq!(q[0].reference, "shardId-000000000003:1001");
}

#[tokio::test]
async fn a_message_claiming_another_device_is_quarantined_as_a_device_mismatch_in_every_format() {
    // Device A's certificate publishes on A's topic, but the message claims device B.
    let i = ingest(MemorySink::default(), MemoryObjects::default());
    let v1_claim = STANDARD.encode(v1("dev-1", good(3)));
    let flat_claim = STANDARD.encode(
        json!({"serial": "ACME-7781", "type": "HR", "val": 72.0, "uom": "bpm", "ts": NOW - 1000})
            .to_string(),
    );
    let records = [
        ("dev-attacker".to_owned(), v1_claim),
        ("dev-1".to_owned(), flat_claim),
        ("dev-1".to_owned(), STANDARD.encode(v1("dev-1", good(2)))),
    ];
    let out = run(&i, &batch_published(&records)).await.unwrap();
    assert_eq!(lake_rows(&i.sink).len(), 2, "only the honest message lands");
    assert_eq!(
        out.stats.quarantined_readings.get(&Reason::DeviceMismatch),
        Some(&4)
    );
    let q = entries(&i.quarantine);
    assert_eq!(q.len(), 2);
    assert!(q.iter().all(|e| e.reason == Some(Reason::DeviceMismatch)));
    assert_eq!(q[0].readings_total, Some(3));
}
