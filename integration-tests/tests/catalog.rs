//! The Glue catalog on the local stack: lake notifications -> SQS -> catalog-sync ->
//! Glue partitions, checked against the lake; and the lake read by DuckDB.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use pulselake_domain::time::parse_rfc3339_ms;
use pulselake_domain::{Assignment, DeviceRecord, Partition};
use pulselake_local::invoke::Invoker;
use pulselake_local::moto::workspace_root;
use pulselake_local::scenario::run_catalog;
use pulselake_local::sqs_esm::{SqsMapping, sqs_event};
use pulselake_local::{LocalPlatform, Stack, duckdb, inspect};

async fn put(stack: &Stack, bucket: &str, key: &str, body: Vec<u8>) {
    stack
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
}

async fn ingest_files(p: &LocalPlatform, files: &[(&str, Vec<u8>)]) {
    let s = &p.stack;
    for (key, body) in files {
        put(s, &s.names.staging_bucket, key, body.clone()).await;
    }
    let mut files_queue = SqsMapping::new(
        s.sqs.clone(),
        &s.files_queue_url,
        p.file_ingest().await.unwrap(),
    );
    files_queue.drain(Duration::from_secs(60)).await.unwrap();
}

async fn platform_with_device() -> LocalPlatform {
    let p = LocalPlatform::start(None).await.unwrap();
    p.stack
        .register_aliases(&[("seed:P1", "subj-7f3a")])
        .await
        .unwrap();
    p.stack
        .register_devices(&[DeviceRecord {
            device_id: "dev-1".into(),
            assignments: vec![Assignment {
                subject_id: "subj-1".into(),
                valid_from: parse_rfc3339_ms("2026-01-01T00:00:00Z").unwrap(),
                valid_to: None,
                cohort: None,
            }],
        }])
        .await
        .unwrap();
    p
}

fn seed_sample() -> Vec<u8> {
    std::fs::read(
        workspace_root().join("integration-tests/fixtures/seed-sample/P1.20201012.heart_rate.csv"),
    )
    .unwrap()
}

const CSV_HEADER: &str = "device_id,sensor_id,metric,value,unit,measured_at\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lake_partition_gets_exactly_one_glue_partition_and_a_partition_emptied_is_dropped() {
    let p = platform_with_device().await;
    let day = |d: u32, m: &str, v: u32| {
        format!(
            "dev-1,s-{m},{m},{v},{},2026-11-{d:02}T10:00:00Z\n",
            if m == "spo2" { "%" } else { "/min" }
        )
    };
    let first = format!(
        "{CSV_HEADER}{}{}{}",
        day(1, "heart_rate", 70),
        day(1, "spo2", 97),
        day(2, "heart_rate", 71)
    );
    ingest_files(
        &p,
        &[
            ("seed/P1.20201012.heart_rate.csv", seed_sample()),
            ("csv/a/day.csv", first.into_bytes()),
        ],
    )
    .await;
    let r = run_catalog(&p, &mut |_| {}).await.unwrap();
    assert!(r.adds_up(), "{r:?}");
    assert_eq!(r.glue_partitions, 4, "{r:?}");
    assert_eq!(r.partitions_created, 4, "{r:?}");
    assert_eq!(r.messages_retried, 0, "{r:?}");

    // The partition's location is the lake folder, with the table's formats: Athena reads it.
    let glue = &p.stack.glue;
    let got = glue
        .get_partition()
        .database_name(&p.stack.names.glue_database)
        .table_name(&p.stack.names.glue_table)
        .set_partition_values(Some(vec![
            "heart_rate".into(),
            "2020".into(),
            "10".into(),
            "12".into(),
        ]))
        .send()
        .await
        .unwrap();
    let sd = got
        .partition()
        .and_then(|x| x.storage_descriptor())
        .unwrap();
    assert_eq!(
        sd.location(),
        Some(
            format!(
                "s3://{}/readings/metric=heart_rate/year=2020/month=10/day=12/",
                p.stack.names.lake_bucket
            )
            .as_str()
        )
    );
    assert_eq!(sd.columns().len(), pulselake_lake::COLUMNS.len());
    assert!(
        sd.serde_info()
            .and_then(|s| s.serialization_library())
            .unwrap_or_default()
            .contains("Parquet")
    );

    // A corrected file drops its SpO2 row: that day's SpO2 partition has no data left.
    let corrected = format!(
        "{CSV_HEADER}{}{}",
        day(1, "heart_rate", 72),
        day(2, "heart_rate", 71)
    );
    ingest_files(&p, &[("csv/a/day.csv", corrected.into_bytes())]).await;
    let r = run_catalog(&p, &mut |_| {}).await.unwrap();
    assert!(r.adds_up(), "{r:?}");
    assert_eq!(r.glue_partitions, 3, "{r:?}");
    let glue_now = inspect::glue_partitions(&p.stack).await.unwrap();
    assert!(
        !glue_now
            .iter()
            .any(|x| x.metric == pulselake_domain::Metric::Spo2),
        "{glue_now:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_partition_in_many_messages_and_two_concurrent_batches_is_one_glue_partition() {
    let p = LocalPlatform::start(None).await.unwrap();
    let s = &p.stack;
    // Firehose-like deliveries: 30 files into one partition, 10 into another, plus error output.
    for i in 0..40 {
        let day = if i < 30 { 20 } else { 21 };
        let key = format!(
            "readings/metric=spo2/year=2026/month=11/day={day}/pulselake-lake-1-{i:04}.parquet"
        );
        put(s, &s.names.lake_bucket, &key, b"PAR1".to_vec()).await;
    }
    put(
        s,
        &s.names.lake_bucket,
        "errors/format-conversion-failed/year=2026/month=11/day=20/x",
        b"{}".to_vec(),
    )
    .await;

    let mut messages = Vec::new();
    for _ in 0..50 {
        let out = s
            .sqs
            .receive_message()
            .queue_url(&s.catalog_queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        messages.extend(
            out.messages()
                .iter()
                .filter(|m| m.body().is_some_and(|b| b.contains("ObjectCreated")))
                .cloned(),
        );
        if messages.len() >= 40 {
            break;
        }
    }
    assert_eq!(
        messages.len(),
        40,
        "the error object is not notified: the notification filters on readings/"
    );
    // Two containers, each with half the messages, running at the same time.
    let (a, b) = (
        p.catalog_sync().await.unwrap(),
        p.catalog_sync().await.unwrap(),
    );
    let (first, second) = messages.split_at(20);
    let (ra, rb) = tokio::join!(
        a.invoke(sqs_event(&s.names.catalog_queue, first).unwrap()),
        b.invoke(sqs_event(&s.names.catalog_queue, second).unwrap())
    );
    for r in [ra, rb] {
        let r = r.unwrap();
        assert_eq!(
            r["batchItemFailures"].as_array().map(Vec::len),
            Some(0),
            "{r}"
        );
    }
    // Redelivery of a whole batch changes nothing either.
    let again = a
        .invoke(sqs_event(&s.names.catalog_queue, first).unwrap())
        .await
        .unwrap();
    assert_eq!(
        again["batchItemFailures"].as_array().map(Vec::len),
        Some(0),
        "{again}"
    );

    let glue = inspect::glue_partitions(s).await.unwrap();
    let expected: std::collections::BTreeSet<Partition> = [20, 21]
        .iter()
        .map(|d| {
            Partition::from_object_key(&format!(
                "readings/metric=spo2/year=2026/month=11/day={d}/f"
            ))
            .unwrap()
        })
        .collect();
    assert_eq!(glue, expected);
    assert_eq!(p.metric_total("catalog-sync/PartitionsCreated"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_reads_the_seed_sample_from_the_lake_with_the_catalog_types() {
    let p = platform_with_device().await;
    ingest_files(&p, &[("seed/P1.20201012.heart_rate.csv", seed_sample())]).await;
    let dir = std::env::temp_dir().join(format!("pulselake-duckdb-test-{}", std::process::id()));
    assert!(inspect::export_lake(&p.stack, &dir).await.unwrap() >= 1);
    let q = |sql: &str| duckdb::query(&dir, sql).unwrap();

    let summary = q(
        "SELECT metric, year, month, day, count(*), count(DISTINCT reading_id), round(sum(value)), \
                     min(measured_at), max(measured_at), any_value(subject_id), any_value(unit), any_value(loinc), any_value(source) \
                     FROM readings GROUP BY ALL",
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(summary.len(), 1, "{summary:?}");
    let row = &summary[0];
    // The vendor file: 1,440 minutes of 2020-10-12 (UTC), values summing to 92,377 bpm.
    assert_eq!(
        &row[..7],
        ["heart_rate", "2020", "10", "12", "1440", "1440", "92377.0"],
        "{row:?}"
    );
    assert!(row[7].starts_with("2020-10-12 00:00:00"), "{row:?}");
    assert!(row[8].starts_with("2020-10-12 23:59:00"), "{row:?}");
    assert_eq!(
        &row[9..],
        ["subj-7f3a", "/min", "8867-4", "file"],
        "{row:?}"
    );

    let dir2 = std::env::temp_dir().join(format!("pulselake-duckdb-types-{}", std::process::id()));
    inspect::export_lake(&p.stack, &dir2).await.unwrap();
    let types = duckdb::query(
        &dir2,
        "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM readings)",
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir2);
    let types: Vec<(String, String)> = types
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let expected: Vec<(String, String)> = pulselake_lake::COLUMNS
        .iter()
        .map(|c| {
            let t = match c.glue_type {
                "string" => "VARCHAR",
                "double" => "DOUBLE",
                "timestamp" => "TIMESTAMP WITH TIME ZONE",
                other => panic!("a Glue type this test does not know: {other}"),
            };
            (c.name.to_owned(), t.to_owned())
        })
        .collect();
    // Data columns in file order, then the Hive keys (DuckDB lists those by name).
    let (data, keys) = types.split_at(expected.len().min(types.len()));
    assert_eq!(data, expected.as_slice());
    let mut keys = keys.to_vec();
    keys.sort();
    let mut want: Vec<(String, String)> = pulselake_lake::PARTITION_KEYS
        .iter()
        .map(|k| (k.to_string(), "VARCHAR".to_owned()))
        .collect();
    want.sort();
    assert_eq!(keys, want);
}
