//! file-ingest with in-memory adapters: formats, exactly-once semantics, the corrected
//! re-upload rule, and every kind of bad file, each with a clear reason and no loss.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use file_ingest::event::ObjectRef;
use file_ingest::{Buckets, FileIngest, Message, Outcome};
use pulselake_adapters::{
    CachedRegistry, MemoryAliases, MemoryDedup, MemoryNotifier, MemoryObjects, MemoryRegistry,
};
use pulselake_domain::quarantine::QuarantineEntry;
use pulselake_domain::time::parse_rfc3339_ms;
use pulselake_domain::{
    Assignment, DeviceMappings, DeviceRecord, Metric, Partition, Reading, Reason,
};
use tokio::time::Instant;

type Ingest = FileIngest<MemoryObjects, MemoryDedup, MemoryRegistry, MemoryAliases, MemoryNotifier>;

const STAGING: &str = "staging";

fn seed_sample() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../integration-tests/fixtures/seed-sample/P1.20201012.heart_rate.csv"
    );
    std::fs::read(path).expect("the seed sample fixture")
}

fn ingest() -> Ingest {
    let since = parse_rfc3339_ms("2020-01-01T00:00:00Z").unwrap();
    let registry = MemoryRegistry::new(["dev-1", "dev-2"].map(|d| DeviceRecord {
        device_id: d.into(),
        assignments: vec![Assignment {
            subject_id: format!("subj-{d}"),
            valid_from: since,
            valid_to: None,
            cohort: None,
        }],
    }));
    FileIngest {
        objects: MemoryObjects::default(),
        dedup: MemoryDedup::default(),
        registry: CachedRegistry::new(registry, Duration::from_secs(60), Duration::from_secs(60)),
        aliases: MemoryAliases(HashMap::from([(
            "seed:P1".to_owned(),
            "subj-p1".to_owned(),
        )])),
        notifier: MemoryNotifier::default(),
        mappings: DeviceMappings::builtin(),
        buckets: Buckets {
            lake: "lake".into(),
            quarantine: "quarantine".into(),
            processed: "processed".into(),
        },
        // Retention long enough for the 2020 vendor sample (the lake's 3 years are
        // tested on their own).
        limits: file_ingest::pipeline::Limits {
            retention_years: years_covering_the_sample(),
            ..Default::default()
        },
        dedup_ttl: Duration::from_secs(86_400),
        naming: pulselake_domain::NamingKey::new(b"test naming key".to_vec()),
    }
}

fn years_covering_the_sample() -> u32 {
    use pulselake_domain::time::Date;
    pulselake_domain::retention::years_covering(
        Date::new(2020, 10, 12).unwrap(),
        Date::from_epoch_ms(pulselake_adapters::now_ms()),
    )
}

fn object(key: &str, etag: &str) -> ObjectRef {
    ObjectRef {
        bucket: STAGING.into(),
        key: key.into(),
        size: 0,
        etag: etag.into(),
        version_id: None,
        sequencer: None,
    }
}

fn upload(i: &Ingest, key: &str, body: impl Into<Bytes>) -> ObjectRef {
    let body: Bytes = body.into();
    i.objects.insert(STAGING, key, body.clone());
    object(
        key,
        &format!(
            "{:x}",
            body.len() * 31 + body.first().copied().unwrap_or(0) as usize
        ),
    )
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

fn lake_rows(i: &Ingest) -> Vec<(Partition, Reading<'static>)> {
    let mut out = Vec::new();
    for key in i.objects.keys("lake") {
        if let Some(p) = Partition::from_object_key(&key) {
            for r in pulselake_lake::read_readings(i.objects.get("lake", &key).unwrap(), p.metric)
                .unwrap()
            {
                out.push((p, r));
            }
        }
    }
    out
}

fn report(i: &Ingest) -> Vec<QuarantineEntry> {
    i.objects
        .keys("quarantine")
        .into_iter()
        .filter(|k| k.ends_with(".ndjson"))
        .flat_map(|k| {
            let body = i.objects.get("quarantine", &k).unwrap();
            body.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn csv(rows: &[&str]) -> Vec<u8> {
    let mut s = String::from("device_id,sensor_id,metric,value,unit,measured_at\n");
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s.into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_sample_lands_as_1440_heart_rate_readings_in_its_day() {
    let i = ingest();
    let obj = upload(&i, "seed/P1.20201012.heart_rate.csv", seed_sample());
    let Outcome::Ingested(r) = i.ingest_object(&obj, far()).await.unwrap() else {
        panic!("ingested")
    };
    assert_eq!(
        (r.readings, r.written, r.quarantined_readings()),
        (1440, 1440, 0)
    );
    let rows = lake_rows(&i);
    assert_eq!(rows.len(), 1440);
    assert!(
        rows.iter()
            .all(|(p, _)| p.to_string() == "metric=heart_rate/year=2020/month=10/day=12")
    );
    assert!(
        rows.iter()
            .all(|(_, r)| r.subject_id == "subj-p1" && r.unit() == "/min")
    );
    let times: Vec<i64> = rows.iter().map(|(_, r)| r.measured_at).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "sorted by subject, then time"
    );
    assert_eq!(times[0], parse_rfc3339_ms("2020-10-12T00:00:00Z").unwrap());
    // Archived under its full key, gone from staging, no staging leftovers in the lake.
    assert!(
        i.objects
            .get("processed", "seed/P1.20201012.heart_rate.csv")
            .is_some()
    );
    assert!(
        i.objects
            .get(STAGING, "seed/P1.20201012.heart_rate.csv")
            .is_none()
    );
    assert!(
        i.objects
            .keys("lake")
            .iter()
            .all(|k| k.starts_with("readings/"))
    );
    // No patient identifier in any object name the platform wrote.
    assert!(i.objects.keys("lake").iter().all(|k| !k.contains("P1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_three_times_ingests_once() {
    let i = ingest();
    let obj = upload(&i, "seed/P1.20201012.heart_rate.csv", seed_sample());
    assert!(matches!(
        i.ingest_object(&obj, far()).await.unwrap(),
        Outcome::Ingested(_)
    ));
    // The raw file is gone from staging; a redelivered event finds the claim COMPLETED.
    for _ in 0..2 {
        assert_eq!(
            i.ingest_object(&obj, far()).await.unwrap(),
            Outcome::AlreadyIngested
        );
    }
    assert_eq!(lake_rows(&i).len(), 1440);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_content_under_another_name_is_a_duplicate() {
    let i = ingest();
    let a = upload(
        &i,
        "csv/a.csv",
        csv(&["dev-1,hr,heart_rate,70,/min,2026-11-20T10:00:00Z"]),
    );
    let mut b = upload(
        &i,
        "csv/copy-of-a.csv",
        csv(&["dev-1,hr,heart_rate,70,/min,2026-11-20T10:00:00Z"]),
    );
    b.etag = "other".into();
    assert!(matches!(
        i.ingest_object(&a, far()).await.unwrap(),
        Outcome::Ingested(_)
    ));
    let Outcome::DuplicateContent { of, .. } = i.ingest_object(&b, far()).await.unwrap() else {
        panic!("duplicate")
    };
    assert!(of.contains("csv/a.csv"));
    assert_eq!(lake_rows(&i).len(), 1);
    assert!(
        i.objects.get("processed", "csv/copy-of-a.csv").is_some(),
        "the duplicate is archived too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrected_file_under_the_same_name_replaces_the_earlier_data() {
    let i = ingest();
    let v1 = upload(
        &i,
        "csv/day.csv",
        csv(&[
            "dev-1,hr,heart_rate,70,/min,2026-11-20T10:00:00Z",
            "dev-1,hr,heart_rate,999,/min,2026-11-20T10:01:00Z",
            "dev-1,spo2,spo2,97,%,2026-11-20T10:00:00Z",
        ]),
    );
    i.ingest_object(&v1, far()).await.unwrap();
    // The correction fixes a value and drops the SpO2 row: its partition must not keep the old row.
    let v2 = upload(
        &i,
        "csv/day.csv",
        csv(&[
            "dev-1,hr,heart_rate,70,/min,2026-11-20T10:00:00Z",
            "dev-1,hr,heart_rate,99,/min,2026-11-20T10:01:00Z",
        ]),
    );
    assert_ne!(v1.version(), v2.version());
    assert!(matches!(
        i.ingest_object(&v2, far()).await.unwrap(),
        Outcome::Ingested(_)
    ));
    let mut rows: Vec<(Metric, f64)> = lake_rows(&i)
        .into_iter()
        .map(|(p, r)| (p.metric, r.value))
        .collect();
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(rows, [(Metric::HeartRate, 70.0), (Metric::HeartRate, 99.0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_delivery_waits_while_the_file_is_in_progress() {
    let i = ingest();
    let obj = upload(
        &i,
        "csv/a.csv",
        csv(&["dev-1,hr,heart_rate,70,/min,2026-11-20T10:00:00Z"]),
    );
    use pulselake_adapters::DedupStore;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    i.dedup
        .claim(&obj.object_id(), now, now + 300, now + 900)
        .await
        .unwrap();
    assert_eq!(i.ingest_object(&obj, far()).await.unwrap(), Outcome::Busy);
    let msgs = [Message {
        id: Some("m-1"),
        body: Some(&s3_body(&obj)),
        receive_count: 1,
    }];
    let out = i.handle_batch(&msgs, far()).await.unwrap();
    assert_eq!(
        out.failed_message_ids,
        ["m-1"],
        "retried later, after the other finishes"
    );
}

/// The notification S3 sends for `obj`.
fn s3_body(obj: &ObjectRef) -> String {
    serde_json::json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": obj.bucket}, "object": {"key": obj.key, "size": 1, "eTag": obj.etag}}}]})
    .to_string()
}

async fn quarantined_whole(key: &str, body: impl Into<Bytes>) -> (Reason, Ingest) {
    let i = ingest();
    let obj = upload(&i, key, body);
    match i.ingest_object(&obj, far()).await.unwrap() {
        Outcome::Quarantined { reason, .. } => {
            assert!(
                lake_rows(&i).is_empty(),
                "nothing of a quarantined file reaches the lake"
            );
            assert!(i.objects.keys("lake").is_empty(), "no staged leftovers");
            let raw: Vec<_> = i
                .objects
                .keys("quarantine")
                .into_iter()
                .filter(|k| k.ends_with("/raw"))
                .collect();
            assert_eq!(raw.len(), 1, "the raw file is kept in quarantine");
            let sent = i.notifier.sent.lock().unwrap().clone();
            assert_eq!(sent.len(), 1, "ops are told");
            assert!(
                !sent[0].1.contains(key) && !sent[0].1.contains("P1"),
                "by reference only: {}",
                sent[0].1
            );
            (reason, i)
        }
        other => panic!("{key}: expected quarantine, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_header_only_files_are_quarantined() {
    assert_eq!(
        quarantined_whole("csv/empty.csv", Vec::new()).await.0,
        Reason::EmptyFile
    );
    assert_eq!(
        quarantined_whole("csv/header.csv", csv(&[])).await.0,
        Reason::EmptyFile
    );
    assert_eq!(
        quarantined_whole(
            "seed/P1.20201012.heart_rate.csv",
            "minute_in_day,heartrate\n"
        )
        .await
        .0,
        Reason::EmptyFile
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_delimiter_is_named_in_the_reason() {
    let (reason, i) = quarantined_whole("csv/semi.csv", "device_id;sensor_id;metric;value;unit;measured_at\ndev-1;hr;heart_rate;70;/min;2026-11-20T10:00:00Z\n").await;
    assert_eq!(reason, Reason::BadHeader);
    let entry = report(&i)
        .into_iter()
        .find(|e| e.reason == Some(Reason::BadHeader))
        .unwrap();
    assert!(entry.detail.unwrap().contains("';'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_gzip_is_quarantined_whole() {
    let mut gz = gzip(&csv(
        &["dev-1,hr,heart_rate,70,/min,2026-11-20T10:00:00Z"; 200]
    ));
    gz.truncate(gz.len() / 2);
    assert_eq!(
        quarantined_whole("csv/cut.csv.gz", gz).await.0,
        Reason::CorruptCompression
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_off_the_vendor_pattern_unknown_prefixes_and_unknown_patients_are_quarantined() {
    assert_eq!(
        quarantined_whole("seed/P1-heart.csv", seed_sample())
            .await
            .0,
        Reason::BadFileName
    );
    assert_eq!(
        quarantined_whole("uploads/x.csv", seed_sample()).await.0,
        Reason::UnknownFormat
    );
    assert_eq!(
        quarantined_whole("seed/P404.20201012.heart_rate.csv", seed_sample())
            .await
            .0,
        Reason::UnknownSubject
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_without_one_valid_row_is_quarantined_whole_with_its_row_report() {
    let (reason, i) = quarantined_whole(
        "csv/bad.csv",
        csv(&[
            "dev-1,hr,heart_rate,abc,/min,2026-11-20T10:00:00Z",
            "dev-9,hr,heart_rate,70,/min,2026-11-20T10:00:00Z",
        ]),
    )
    .await;
    assert_eq!(reason, Reason::NoValidRows);
    let mut reasons: Vec<Reason> = report(&i).iter().filter_map(|e| e.reason).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            Reason::UnknownDevice,
            Reason::ValueNotNumber,
            Reason::NoValidRows
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_quarantined_with_line_and_reason_and_the_rest_lands() {
    let i = ingest();
    let mut body = csv(&[
        "dev-1,hr,heart_rate,70,/min,2026-11-20T10:00:00Z", // 2 ok
        "dev-1,hr,heart_rate,71,/min",                      // 3 ragged
        "dev-1,hr,heart_rate,400,/min,2026-11-20T10:02:00Z", // 4 out of range
        "dev-1,hr,heart_rate,70,/min,2026-11-20T10:00:00Z", // 5 duplicate of 2
        "dev-1,hr,heart_rate,72,/min,2026-11-20 10:03:00",  // 6 ok (no zone: UTC)
        "dev-1,hr,heart_rate,73,/min,not-a-time",           // 7 invalid timestamp
        "dev-2,glu,glucose,5.5,mmol/L,2026-11-20T10:04:00+01:00", // 8 ok, converted
    ]);
    body.extend_from_slice(b"dev-1,hr,heart_rate,\xff\xfe,/min,2026-11-20T10:05:00Z\n"); // 9 not UTF-8
    let obj = upload(&i, "csv/mixed.csv", body);
    let Outcome::Ingested(r) = i.ingest_object(&obj, far()).await.unwrap() else {
        panic!("ingested")
    };
    assert_eq!(r.lines, 8);
    assert_eq!(r.written, 3);
    assert_eq!(
        r.written + r.quarantined_readings(),
        r.readings,
        "every reading accounted for"
    );
    let mut found: Vec<(String, Reason)> = report(&i)
        .into_iter()
        .map(|e| {
            (
                e.reference.rsplit('#').next().unwrap().to_owned(),
                e.reason.unwrap(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("L3".into(), Reason::RaggedRow),
            ("L4".into(), Reason::OutOfRange),
            ("L5".into(), Reason::DuplicateRow),
            ("L7".into(), Reason::InvalidTimestamp),
            ("L9".into(), Reason::NotUtf8),
        ]
    );
    let glucose = lake_rows(&i)
        .into_iter()
        .find(|(p, _)| p.metric == Metric::Glucose)
        .unwrap()
        .1;
    assert_eq!(
        (glucose.value, glucose.subject_id.as_ref()),
        (99.0858, "subj-dev-2")
    );
    assert_eq!(
        glucose.measured_at,
        parse_rfc3339_ms("2026-11-20T09:04:00Z").unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_older_than_the_lake_s_retention_is_quarantined_as_past_retention() {
    use pulselake_domain::time::{DAY_MS, format_rfc3339_ms};
    let mut i = ingest();
    i.limits.retention_years = 3;
    let now = pulselake_adapters::now_ms();
    let kept = format_rfc3339_ms(now - 1_000 * DAY_MS);
    let past = format_rfc3339_ms(now - 1_200 * DAY_MS);
    let body = csv(&[
        &format!("dev-1,hr,heart_rate,70,/min,{kept}"),
        &format!("dev-1,hr,heart_rate,71,/min,{past}"),
    ]);
    let obj = upload(&i, "csv/backfill.csv", body);
    let Outcome::Ingested(r) = i.ingest_object(&obj, far()).await.unwrap() else {
        panic!("ingested")
    };
    assert_eq!((r.written, r.quarantined_readings()), (1, 1));
    let entries = report(&i);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].reason, Some(Reason::PastRetention));
    assert!(entries[0].reference.ends_with("#L3"), "{:?}", entries[0]);
    let cutoff =
        pulselake_domain::retention::cutoff(pulselake_domain::time::Date::from_epoch_ms(now), 3);
    assert!(
        entries[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains(&cutoff.to_string())),
        "the reason names the cut-off: {:?}",
        entries[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_ndjson_go_through_the_same_mappings_as_the_stream() {
    let i = ingest();
    let lines = [
        r#"{"v":1,"device_id":"dev-1","readings":[{"sensor_id":"hr-0","metric":"heart_rate","value":72,"unit":"/min","measured_at":"2026-11-20T10:00:00Z"},{"sensor_id":"t","metric":"body_temp","value":98.6,"unit":"[degF]","measured_at":"2026-11-20T10:00:00Z"}]}"#,
        r#"{"serial":"dev-2","type":"SPO2","val":97,"uom":"pct","ts":1795168800000}"#,
        r#"{"v":1,"device_id":"dev-1","readings":[{"sensor_id":"hr-0","metric":"heart_rate","value":"72","unit":"/min","measured_at":"2026-11-20T10:01:00Z"}]}"#,
        r#"not json"#,
    ];
    let obj = upload(
        &i,
        "ndjson/export.jsonl.gz",
        gzip(lines.join("\n").as_bytes()),
    );
    let Outcome::Ingested(r) = i.ingest_object(&obj, far()).await.unwrap() else {
        panic!("ingested")
    };
    assert_eq!(
        (r.written, r.quarantined_readings(), r.unreadable_lines),
        (3, 1, 1)
    );
    let temp = lake_rows(&i)
        .into_iter()
        .find(|(p, _)| p.metric == Metric::BodyTemp)
        .unwrap()
        .1;
    assert_eq!(temp.value, 37.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_event_and_an_unreadable_message_are_told_apart() {
    let i = ingest();
    let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"staging"}"#;
    let msgs = [
        Message {
            id: Some("t"),
            body: Some(test),
            receive_count: 1,
        },
        Message {
            id: Some("x"),
            body: Some("garbage"),
            receive_count: 1,
        },
    ];
    let out = i.handle_batch(&msgs, far()).await.unwrap();
    assert_eq!(
        out.failed_message_ids,
        ["x"],
        "garbage goes to the DLQ after its retries; the test event is done"
    );
}

/// The reference suffixes (`L<line>`) and reasons of the row report, sorted.
fn rows_by_reason(i: &Ingest) -> Vec<(String, Reason)> {
    let mut found: Vec<(String, Reason)> = report(i)
        .into_iter()
        .map(|e| {
            (
                e.reference.rsplit('#').next().unwrap().to_owned(),
                e.reason.unwrap(),
            )
        })
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_poisonous_row_is_quarantined_and_the_ten_good_rows_land() {
    // A 3,000-byte device id breaks a DynamoDB key limit; it must cost one row, not the file.
    let i = ingest();
    let poison = format!(
        "{},hr,heart_rate,70,/min,2026-11-20T10:00:00Z",
        "d".repeat(3000)
    );
    let good: Vec<String> = (0..10)
        .map(|m| {
            format!(
                "dev-1,hr,heart_rate,{},/min,2026-11-20T10:{m:02}:00Z",
                60 + m
            )
        })
        .collect();
    let mut rows: Vec<&str> = good.iter().map(String::as_str).collect();
    rows.insert(4, &poison);
    let obj = upload(&i, "csv/poison.csv", csv(&rows));
    let Outcome::Ingested(r) = i.ingest_object(&obj, far()).await.unwrap() else {
        panic!("ingested")
    };
    assert_eq!((r.written, r.quarantined_readings()), (10, 1));
    assert_eq!(lake_rows(&i).len(), 10);
    assert_eq!(rows_by_reason(&i), [("L6".to_owned(), Reason::InvalidId)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_over_128_bytes_or_with_control_characters_never_land_from_files() {
    let i = ingest();
    let long_sensor = format!(
        "dev-1,{},heart_rate,70,/min,2026-11-20T10:00:00Z",
        "s".repeat(129)
    );
    let body = csv(&[
        &long_sensor,
        "dev-1,\"hr\n0\",heart_rate,71,/min,2026-11-20T10:01:00Z",
        "dev-1,\"hr\u{0}0\",heart_rate,72,/min,2026-11-20T10:02:00Z",
        "dev-1,hr,heart_rate,73,/min,2026-11-20T10:03:00Z",
    ]);
    let obj = upload(&i, "csv/ids.csv", body);
    let Outcome::Ingested(r) = i.ingest_object(&obj, far()).await.unwrap() else {
        panic!("ingested")
    };
    assert_eq!((r.written, r.quarantined_readings()), (1, 3));
    assert!(
        rows_by_reason(&i)
            .iter()
            .all(|(_, r)| *r == Reason::InvalidId)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_metrics_from_one_sensor_at_one_instant_both_land_and_a_conflict_is_quarantined() {
    let i = ingest();
    let body = csv(&[
        "dev-1,ox-0,heart_rate,72,/min,2026-11-20T10:00:00Z",
        "dev-1,ox-0,spo2,97,%,2026-11-20T10:00:00Z",
        "dev-1,ox-0,heart_rate,140,/min,2026-11-20T10:00:00Z", // 4: conflict with line 2
        "dev-1,ox-0,heart_rate,72,/min,2026-11-20T10:00:00Z",  // 5: exact repeat of line 2
    ]);
    let obj = upload(&i, "csv/oximeter.csv", body);
    let Outcome::Ingested(r) = i.ingest_object(&obj, far()).await.unwrap() else {
        panic!("ingested")
    };
    assert_eq!((r.written, r.quarantined_readings()), (2, 2));
    let rows = lake_rows(&i);
    let hr = rows
        .iter()
        .find(|(p, _)| p.metric == Metric::HeartRate)
        .unwrap();
    assert_eq!(hr.1.value, 72.0, "the first value is kept");
    assert_ne!(rows[0].1.reading_id, rows[1].1.reading_id);
    assert_eq!(
        rows_by_reason(&i),
        [
            ("L4".to_owned(), Reason::ConflictingDuplicate),
            ("L5".to_owned(), Reason::DuplicateRow)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsafe_key_is_a_bad_file_name_and_is_never_archived_under_it() {
    let (reason, i) =
        quarantined_whole("seed/../../x.20201012.heart_rate.csv", seed_sample()).await;
    assert_eq!(reason, Reason::BadFileName);
    assert!(i.objects.keys("processed").is_empty());
    assert!(
        i.objects
            .keys("quarantine")
            .iter()
            .all(|k| !k.contains(".."))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_with_a_column_twice_is_quarantined_as_a_bad_header() {
    let body = b"device_id,sensor_id,metric,value,unit,measured_at,value\ndev-1,hr,heart_rate,70,/min,2026-11-20T10:00:00Z,99\n";
    assert_eq!(
        quarantined_whole("csv/twice.csv", body.to_vec()).await.0,
        Reason::BadHeader
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unterminated_quote_is_reported_as_such() {
    // Mid-file, the open quote would swallow everything after it: the file is refused.
    let mut body = csv(&["dev-1,\"hr,heart_rate,70,/min,2026-11-20T10:00:00Z"]);
    for m in 0..40_000 {
        body.extend(
            format!(
                "dev-1,hr,heart_rate,70,/min,2026-11-20T10:{:02}:00Z\n",
                m % 60
            )
            .bytes(),
        );
    }
    let (reason, _) = quarantined_whole("csv/open-quote.csv", body).await;
    assert_eq!(reason, Reason::UnterminatedQuote);
    // On the last row, it costs that row only.
    let i = ingest();
    let body = b"device_id,sensor_id,metric,value,unit,measured_at\ndev-1,hr,heart_rate,70,/min,2026-11-20T10:00:00Z\ndev-1,\"hr,heart_rate,70,/min,2026-11-20T10:01:00Z\n";
    let obj = upload(&i, "csv/last-open.csv", body.to_vec());
    let Outcome::Ingested(r) = i.ingest_object(&obj, far()).await.unwrap() else {
        panic!("ingested")
    };
    assert_eq!(r.written, 1);
    assert_eq!(
        rows_by_reason(&i),
        [("L3".to_owned(), Reason::UnterminatedQuote)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_order_mark_does_not_cost_the_first_ndjson_line() {
    let i = ingest();
    let mut body = b"\xef\xbb\xbf".to_vec();
    body.extend_from_slice(br#"{"v":1,"device_id":"dev-1","readings":[{"sensor_id":"hr-0","metric":"heart_rate","value":72,"unit":"/min","measured_at":"2026-11-20T10:00:00Z"}]}"#);
    let obj = upload(&i, "ndjson/bom.ndjson", body);
    let Outcome::Ingested(r) = i.ingest_object(&obj, far()).await.unwrap() else {
        panic!("ingested")
    };
    assert_eq!((r.written, r.unreadable_lines), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_padding_after_a_gzip_member_is_accepted_as_gzip_does() {
    let i = ingest();
    let mut body = gzip(&csv(&["dev-1,hr,heart_rate,70,/min,2026-11-20T10:00:00Z"]));
    body.extend([0u8; 512]);
    let obj = upload(&i, "csv/padded.csv.gz", body);
    let Outcome::Ingested(r) = i.ingest_object(&obj, far()).await.unwrap() else {
        panic!("ingested")
    };
    assert_eq!(r.written, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_is_quarantined_as_oversized_long_before_the_timeout() {
    // 200 MiB of newlines in ~200 KB of gzip: stopped by the ratio bound after 64 MiB.
    let bomb = gzip(&vec![b'\n'; 200 << 20]);
    let started = std::time::Instant::now();
    let (reason, i) = quarantined_whole("csv/bomb.csv.gz", bomb).await;
    assert_eq!(reason, Reason::Oversized);
    let entry = report(&i)
        .into_iter()
        .find(|e| e.reason == Some(Reason::Oversized))
        .unwrap();
    assert!(
        entry
            .detail
            .unwrap()
            .contains("decompresses more than 100x")
    );
    eprintln!("bomb refused after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_row_report_lists_the_first_rows_of_each_reason_and_counts_the_rest() {
    let mut i = ingest();
    i.limits.report_rows_per_reason = 5;
    let mut rows: Vec<String> = (0..50)
        .map(|m| format!("dev-1,hr,heart_rate,700,/min,2026-11-20T10:{m:02}:00Z"))
        .collect();
    rows.push("dev-1,hr,heart_rate,70,/min,2026-11-20T11:00:00Z".into());
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    let obj = upload(&i, "csv/many-bad.csv", csv(&rows));
    let Outcome::Ingested(r) = i.ingest_object(&obj, far()).await.unwrap() else {
        panic!("ingested")
    };
    assert_eq!((r.written, r.quarantined_readings()), (1, 50));
    let entries = report(&i);
    assert_eq!(entries.len(), 6, "5 rows listed and one entry for the rest");
    let counted: usize = entries.iter().map(|e| e.readings_quarantined()).sum();
    assert_eq!(counted, 50, "the report still accounts for every row");
    assert!(
        entries
            .iter()
            .any(|e| e.reference.ends_with("#omitted-out_of_range"))
    );
}
