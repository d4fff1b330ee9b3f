//! catalog-sync against in-memory ports: coalescing, chunking, idempotency, partial
//! failures, what is ignored, and partitions whose data went away.

use std::sync::atomic::Ordering;

use catalog_sync::{CatalogSync, Message};
use pulselake_adapters::{MemoryCatalog, MemoryObjects, ObjectWriter};
use pulselake_domain::Partition;

const LAKE: &str = "lake";

type Sync = CatalogSync<MemoryCatalog, MemoryObjects>;

fn sync() -> Sync {
    CatalogSync {
        catalog: MemoryCatalog::default(),
        objects: MemoryObjects::default(),
        lake_bucket: LAKE.into(),
    }
}

fn event(kind: &str, bucket: &str, keys: &[String]) -> String {
    let records: Vec<_> = keys
        .iter()
        .map(|k| {
            serde_json::json!({"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": kind,
                "s3": {"bucket": {"name": bucket}, "object": {"key": k, "size": 1, "eTag": "e"}}})
        })
        .collect();
    serde_json::json!({ "Records": records }).to_string()
}

fn created(keys: &[String]) -> String {
    event("ObjectCreated:Put", LAKE, keys)
}

fn day_key(metric: &str, day: u32, file: &str) -> String {
    format!("readings/metric={metric}/year=2026/month=11/day={day:02}/{file}.parquet")
}

fn partition(metric: &str, day: u32) -> Partition {
    Partition::from_object_key(&day_key(metric, day, "x")).unwrap()
}

async fn run(s: &Sync, bodies: &[String]) -> Vec<String> {
    let ids: Vec<String> = (0..bodies.len()).map(|i| format!("m-{i}")).collect();
    let msgs: Vec<Message<'_>> = bodies
        .iter()
        .zip(&ids)
        .map(|(b, id)| Message {
            id: Some(id),
            body: Some(b),
            receive_count: 1,
        })
        .collect();
    s.handle_batch(&msgs).await.unwrap().failed_message_ids
}

#[tokio::test]
async fn many_messages_naming_one_partition_make_one_glue_call_for_one_partition() {
    let s = sync();
    let bodies: Vec<String> = (0..10)
        .map(|i| created(&[day_key("heart_rate", 20, &format!("f{i}"))]))
        .collect();
    assert!(run(&s, &bodies).await.is_empty());
    assert_eq!(s.catalog.snapshot(), [partition("heart_rate", 20)]);
    assert_eq!(*s.catalog.calls.lock().unwrap(), [1]);
}

#[tokio::test]
async fn partitions_go_to_glue_in_chunks_of_at_most_100() {
    let s = sync();
    let metrics = [
        "heart_rate",
        "spo2",
        "body_temp",
        "respiratory_rate",
        "bp_systolic",
        "bp_diastolic",
        "glucose",
    ];
    // 7 metrics x 30 days = 210 partitions, spread over 10 messages.
    let keys: Vec<String> = metrics
        .iter()
        .flat_map(|m| (1..=30).map(move |d| day_key(m, d, "f")))
        .collect();
    let bodies: Vec<String> = keys.chunks(21).map(created).collect();
    assert!(run(&s, &bodies).await.is_empty());
    assert_eq!(*s.catalog.calls.lock().unwrap(), [100, 100, 10]);
    assert_eq!(s.catalog.snapshot().len(), 210);
}

#[tokio::test]
async fn a_partition_that_already_exists_is_success_and_redelivery_changes_nothing() {
    let s = sync();
    let body = created(&[day_key("spo2", 3, "a")]);
    assert!(run(&s, std::slice::from_ref(&body)).await.is_empty());
    assert!(run(&s, &[body.clone(), body]).await.is_empty());
    assert_eq!(s.catalog.snapshot(), [partition("spo2", 3)]);
}

#[tokio::test]
async fn a_refused_partition_fails_exactly_the_messages_that_named_it() {
    let s = sync();
    *s.catalog.refuse.lock().unwrap() = Some((
        partition("spo2", 4),
        "ResourceNumberLimitExceededException".into(),
    ));
    let bodies = [
        created(&[day_key("spo2", 4, "a")]),
        created(&[day_key("heart_rate", 4, "a")]),
        created(&[day_key("heart_rate", 4, "b"), day_key("spo2", 4, "b")]),
    ];
    assert_eq!(run(&s, &bodies).await, ["m-0", "m-2"]);
    assert_eq!(s.catalog.snapshot(), [partition("heart_rate", 4)]);
}

#[tokio::test]
async fn glue_unavailable_fails_the_messages_so_they_are_retried() {
    let s = sync();
    s.catalog.unavailable.store(true, Ordering::Relaxed);
    let bodies = [
        created(&[day_key("spo2", 5, "a")]),
        created(&[day_key("glucose", 5, "a")]),
    ];
    assert_eq!(run(&s, &bodies).await, ["m-0", "m-1"]);
    s.catalog.unavailable.store(false, Ordering::Relaxed);
    assert!(run(&s, &bodies).await.is_empty());
    assert_eq!(s.catalog.snapshot().len(), 2);
}

#[tokio::test]
async fn error_output_staging_other_tables_other_buckets_and_test_events_are_ignored() {
    let s = sync();
    let bodies = [
        created(&["errors/format-conversion-failed/year=2026/month=11/day=20/x".into()]),
        created(&["_staging/0a1b2c/part-0000.parquet".into()]),
        created(&["quarantine/metric=spo2/year=2026/month=11/day=20/x".into()]),
        created(&["readings/metric=spo2/year=2026/month=11/day=20/".into()]),
        event(
            "ObjectCreated:Put",
            "another-bucket",
            &[day_key("spo2", 20, "x")],
        ),
        r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"lake"}"#.into(),
    ];
    assert!(run(&s, &bodies).await.is_empty());
    assert!(s.catalog.snapshot().is_empty());
    assert!(
        s.catalog.calls.lock().unwrap().is_empty(),
        "no Glue call for nothing"
    );
}

#[tokio::test]
async fn an_unreadable_message_fails_alone() {
    let s = sync();
    let bodies = ["not json".to_owned(), created(&[day_key("spo2", 6, "a")])];
    assert_eq!(run(&s, &bodies).await, ["m-0"]);
    assert_eq!(s.catalog.snapshot(), [partition("spo2", 6)]);
}

#[tokio::test]
async fn a_message_without_an_id_fails_the_batch() {
    let s = sync();
    let body = created(&[day_key("spo2", 6, "a")]);
    let msgs = [Message {
        id: None,
        body: Some(&body),
        receive_count: 1,
    }];
    assert!(s.handle_batch(&msgs).await.is_err());
}

#[tokio::test]
async fn a_partition_is_dropped_when_its_last_file_goes_and_kept_while_one_remains() {
    let s = sync();
    let (a, b) = (day_key("spo2", 7, "a"), day_key("spo2", 7, "b"));
    let other = day_key("heart_rate", 7, "a");
    for k in [&a, &b, &other] {
        s.objects
            .insert(LAKE, k, bytes::Bytes::from_static(b"PAR1"));
    }
    assert!(
        run(&s, &[created(&[a.clone(), b.clone(), other.clone()])])
            .await
            .is_empty()
    );
    assert_eq!(s.catalog.snapshot().len(), 2);

    s.objects.delete(LAKE, &a, None).await.unwrap();
    assert!(
        run(
            &s,
            &[event(
                "ObjectRemoved:Delete",
                LAKE,
                std::slice::from_ref(&a)
            )]
        )
        .await
        .is_empty()
    );
    assert_eq!(s.catalog.snapshot().len(), 2, "b still holds data");

    s.objects.delete(LAKE, &b, None).await.unwrap();
    let removed = event("ObjectRemoved:DeleteMarkerCreated", LAKE, &[b]);
    assert!(run(&s, std::slice::from_ref(&removed)).await.is_empty());
    assert_eq!(s.catalog.snapshot(), [partition("heart_rate", 7)]);
    // Redelivered: the partition is already gone, which is fine.
    assert!(run(&s, &[removed]).await.is_empty());
}

#[tokio::test]
async fn the_sample_event_registers_its_url_encoded_partition() {
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(include_str!("../../../events/catalog-sync.sqs.json")).unwrap();
    let mut s = sync();
    s.lake_bucket = "pulselake-lake-123456789012".into();
    let msgs = pulselake_adapters::lambda_batch::sqs_messages(&event);
    let out = s.handle_batch(&msgs).await.unwrap();
    assert!(out.failed_message_ids.is_empty());
    assert_eq!(
        s.catalog
            .snapshot()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["metric=heart_rate/year=2026/month=11/day=22"]
    );
}
