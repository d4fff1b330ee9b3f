//! The functions as real Lambda binaries: `cargo lambda watch` runs them under the
//! Lambda Runtime API against the local stack, and `cargo lambda invoke` sends them
//! the sample events in `events/`, exactly as a developer would.

use pulselake_domain::time::parse_rfc3339_ms;
use pulselake_domain::{Assignment, DeviceRecord, Reason};
use pulselake_local::lambda_watch::LambdaWatch;
use pulselake_local::{LocalPlatform, inspect};

fn assigned(device: &str, subject: &str) -> DeviceRecord {
    DeviceRecord {
        device_id: device.into(),
        assignments: vec![Assignment {
            subject_id: subject.into(),
            valid_from: parse_rfc3339_ms("2026-01-01T00:00:00Z").unwrap(),
            valid_to: None,
            cohort: None,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_ingest_binary_handles_the_sample_kinesis_event() {
    let platform = LocalPlatform::start(None).await.unwrap();
    let stack = &platform.stack;
    stack
        .register_devices(&[
            assigned("dev-000123", "subj-a"),
            assigned("ACME-7781", "subj-b"),
        ])
        .await
        .unwrap();
    let mut env = platform.moto.env();
    env.extend(stack.stream_ingest_env());
    let watch = LambdaWatch::start(&env, "stream-ingest").unwrap();

    let response = watch
        .invoke_cli("events/stream-ingest.kinesis.json")
        .unwrap();

    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([]),
        "{response}"
    );
    // v1 message (3 readings) and ACME message (1) went to Firehose; the truncated one to quarantine.
    let raw = inspect::list_keys(stack, &stack.names.firehose_buffer_bucket, "raw/")
        .await
        .unwrap();
    let mut lines = 0;
    for key in raw {
        let body = inspect::get_bytes(stack, &stack.names.firehose_buffer_bucket, &key)
            .await
            .unwrap();
        lines += body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
    }
    assert_eq!(lines, 4);
    let q = inspect::stream_quarantine(stack).await.unwrap();
    assert_eq!(q.unreadable_by_reason().get(&Reason::NotJson), Some(&1));
}
