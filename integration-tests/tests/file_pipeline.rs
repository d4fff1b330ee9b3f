//! File ingestion end to end on the local stack: upload to staging -> S3 notification ->
//! SQS -> file-ingest (real SDK clients, DynamoDB conditional writes) -> lake, processed,
//! quarantine and the ops topic.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use pulselake_domain::time::parse_rfc3339_ms;
use pulselake_domain::{Assignment, DeviceRecord, Metric};
use pulselake_local::invoke::Invoker;
use pulselake_local::moto::workspace_root;
use pulselake_local::sqs_esm::{SqsMapping, sqs_event};
use pulselake_local::{LocalPlatform, Stack, inspect};

const SEED_KEY: &str = "seed/P1.20201012.heart_rate.csv";

fn seed_sample() -> Vec<u8> {
    std::fs::read(
        workspace_root().join("integration-tests/fixtures/seed-sample/P1.20201012.heart_rate.csv"),
    )
    .unwrap()
}

async fn platform() -> LocalPlatform {
    let p = LocalPlatform::start(None).await.unwrap();
    p.stack
        .register_aliases(&[("seed:P1", "subj-7f3a")])
        .await
        .unwrap();
    let since = parse_rfc3339_ms("2026-01-01T00:00:00Z").unwrap();
    p.stack
        .register_devices(&[DeviceRecord {
            device_id: "dev-1".into(),
            assignments: vec![Assignment {
                subject_id: "subj-1".into(),
                valid_from: since,
                valid_to: None,
                cohort: None,
            }],
        }])
        .await
        .unwrap();
    p
}

async fn upload(stack: &Stack, key: &str, body: Vec<u8>) {
    stack
        .s3
        .put_object()
        .bucket(&stack.names.staging_bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
}

/// Takes the notification S3 sent for an upload off the queue (skipping the test event
/// S3 sends when the notification is configured), as an SQS event for the function.
async fn take_notification(stack: &Stack) -> serde_json::Value {
    for _ in 0..5 {
        let out = stack
            .sqs
            .receive_message()
            .queue_url(&stack.files_queue_url)
            .wait_time_seconds(2)
            .send()
            .await
            .unwrap();
        for m in out.messages() {
            stack
                .sqs
                .delete_message()
                .queue_url(&stack.files_queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            if m.body().is_some_and(|b| b.contains("\"Records\"")) {
                return sqs_event(&stack.names.files_queue, std::slice::from_ref(m)).unwrap();
            }
        }
    }
    panic!("no notification for the upload");
}

fn failures(resp: &serde_json::Value) -> usize {
    resp["batchItemFailures"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_sample_lands_as_1440_heart_rate_readings_in_its_partition() {
    let p = platform().await;
    let s = &p.stack;
    upload(s, SEED_KEY, seed_sample()).await;
    let mut mapping = SqsMapping::new(
        s.sqs.clone(),
        &s.files_queue_url,
        p.file_ingest().await.unwrap(),
    );
    mapping.drain(Duration::from_secs(60)).await.unwrap();
    assert_eq!(mapping.stats.function_errors, 0, "{:?}", mapping.stats);

    let lake = inspect::lake(s).await.unwrap();
    assert_eq!(lake.rows.len(), 1440);
    let parts: Vec<String> = lake.partitions.keys().map(ToString::to_string).collect();
    assert_eq!(parts, ["metric=heart_rate/year=2020/month=10/day=12"]);
    assert!(
        lake.rows
            .iter()
            .all(|r| r.metric == Metric::HeartRate && r.subject_id == "subj-7f3a")
    );
    // Raw file archived under its full key and removed from staging.
    assert!(
        inspect::get_bytes(s, &s.names.processed_bucket, SEED_KEY)
            .await
            .is_ok()
    );
    assert!(
        inspect::list_keys(s, &s.names.staging_bucket, "")
            .await
            .unwrap()
            .is_empty()
    );
    let lake_keys = inspect::list_keys(s, &s.names.lake_bucket, "")
        .await
        .unwrap();
    assert!(
        lake_keys
            .iter()
            .all(|k| k.starts_with("readings/") && !k.contains("P1")),
        "{lake_keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_three_times_and_two_concurrent_deliveries_ingest_once() {
    let p = platform().await;
    let s = &p.stack;
    let f = p.file_ingest().await.unwrap();

    upload(s, SEED_KEY, seed_sample()).await;
    let event = take_notification(s).await;
    for _ in 0..3 {
        let resp = f.invoke(event.clone()).await.unwrap();
        assert_eq!(failures(&resp), 0, "{resp}");
    }
    assert_eq!(inspect::lake(s).await.unwrap().rows.len(), 1440);

    let csv = "device_id,sensor_id,metric,value,unit,measured_at\n\
               dev-1,hr-0,heart_rate,70,/min,2026-11-20T10:00:00Z\n\
               dev-1,hr-0,heart_rate,71,/min,2026-11-20T10:01:00Z\n\
               dev-1,hr-0,heart_rate,700,/min,2026-11-20T10:02:00Z\n";
    upload(s, "csv/partner-a/day.csv", csv.as_bytes().to_vec()).await;
    let event = take_notification(s).await;
    let (a, b) = tokio::join!(f.invoke(event.clone()), f.invoke(event.clone()));
    let (a, b) = (a.unwrap(), b.unwrap());
    // One claims the file; the other finds it in progress (and retries) or already done.
    assert!(failures(&a) + failures(&b) <= 1, "{a} {b}");
    let retry = f.invoke(event).await.unwrap();
    assert_eq!(failures(&retry), 0);
    let lake = inspect::lake(s).await.unwrap();
    assert_eq!(
        lake.rows.len(),
        1440 + 2,
        "lake rows = valid rows, each once"
    );
    assert_eq!(lake.distinct_ids(), lake.rows.len());
    let q = inspect::quarantine(s, "files/").await.unwrap();
    assert_eq!(
        q.readings_by_reason().values().sum::<usize>(),
        1,
        "the out-of-range row, once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrected_reupload_replaces_the_earlier_readings() {
    let p = platform().await;
    let s = &p.stack;
    let mut mapping = SqsMapping::new(
        s.sqs.clone(),
        &s.files_queue_url,
        p.file_ingest().await.unwrap(),
    );
    let header = "device_id,sensor_id,metric,value,unit,measured_at\n";
    upload(
        s,
        "csv/fix-me.csv",
        format!("{header}dev-1,hr-0,heart_rate,70,/min,2026-11-20T10:00:00Z\ndev-1,t,body_temp,39.9,Cel,2026-11-21T10:00:00Z\n").into_bytes(),
    )
    .await;
    mapping.drain(Duration::from_secs(60)).await.unwrap();
    assert_eq!(inspect::lake(s).await.unwrap().rows.len(), 2);
    // The correction changes the heart rate and withdraws the temperature reading.
    upload(
        s,
        "csv/fix-me.csv",
        format!("{header}dev-1,hr-0,heart_rate,72,/min,2026-11-20T10:00:00Z\n").into_bytes(),
    )
    .await;
    mapping.drain(Duration::from_secs(60)).await.unwrap();
    let lake = inspect::lake(s).await.unwrap();
    let values: Vec<(Metric, f64)> = lake.rows.iter().map(|r| (r.metric, r.value)).collect();
    assert_eq!(values, [(Metric::HeartRate, 72.0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_file_notifies_ops_by_reference_only() {
    let p = platform().await;
    let s = &p.stack;
    upload(s, "seed/P1.2020-10-12.heart_rate.csv", seed_sample()).await;
    let mut mapping = SqsMapping::new(
        s.sqs.clone(),
        &s.files_queue_url,
        p.file_ingest().await.unwrap(),
    );
    mapping.drain(Duration::from_secs(60)).await.unwrap();
    let out = s
        .sqs
        .receive_message()
        .queue_url(&s.ops_inbox_url)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let bodies: Vec<&str> = out.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(bodies[0].contains("bad_file_name"), "{}", bodies[0]);
    assert!(
        !bodies[0].contains("P1") && !bodies[0].contains("seed/"),
        "no key, no patient id: {}",
        bodies[0]
    );
    assert!(inspect::lake(s).await.unwrap().rows.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_file_batch_adds_up() {
    let p = LocalPlatform::start(None).await.unwrap();
    let r = pulselake_local::scenario::run_files(&p, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(r.files_ingested, 4, "{r:?}");
    assert_eq!(r.duplicates_skipped, 2, "{r:?}");
    assert_eq!(r.files_quarantined.values().sum::<usize>(), 1, "{r:?}");
    assert_eq!(r.seed_partition_rows, 1440);
    assert_eq!(r.ops_notifications, 1);
    assert!(r.adds_up(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_poisonous_row_costs_one_row_not_the_file() {
    // A 3,000-byte device id breaks a DynamoDB key limit: it would fail the file on every
    // receive. It is quarantined; the 10 good rows land; the message is done.
    let p = platform().await;
    let s = &p.stack;
    let mut body = String::from("device_id,sensor_id,metric,value,unit,measured_at\n");
    for m in 0..10 {
        body.push_str(&format!(
            "dev-1,hr-0,heart_rate,{},/min,2026-11-20T10:{m:02}:00Z\n",
            60 + m
        ));
        if m == 4 {
            body.push_str(&format!(
                "{},hr-0,heart_rate,70,/min,2026-11-20T10:30:00Z\n",
                "d".repeat(3000)
            ));
        }
    }
    upload(s, "csv/poison.csv", body.into_bytes()).await;
    let mut mapping = SqsMapping::new(
        s.sqs.clone(),
        &s.files_queue_url,
        p.file_ingest().await.unwrap(),
    );
    mapping.drain(Duration::from_secs(60)).await.unwrap();
    assert_eq!(mapping.stats.function_errors, 0, "{:?}", mapping.stats);
    assert_eq!(mapping.stats.messages_retried, 0, "{:?}", mapping.stats);
    assert_eq!(inspect::lake(s).await.unwrap().rows.len(), 10);
    let q = inspect::quarantine(s, "files/").await.unwrap();
    assert_eq!(
        q.readings_by_reason().into_iter().collect::<Vec<_>>(),
        [(pulselake_domain::Reason::InvalidId, 1)]
    );
    for queue in [&s.files_queue_url, &s.files_dlq_url] {
        let attrs = s
            .sqs
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let count = |name: aws_sdk_sqs::types::QueueAttributeName| {
            attrs
                .attributes()
                .and_then(|a| a.get(&name))
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(
            count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages),
            "0",
            "{queue}"
        );
        assert_eq!(
            count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            "0",
            "{queue}"
        );
    }
}
