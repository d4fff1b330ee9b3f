//! A device speaks only for itself: a message published on device A's topic that claims
//! device B (in the native and the flat vendor format) reaches neither the lake nor the
//! alert evaluator; it is quarantined as `device_mismatch`.

use pulselake_domain::time::format_rfc3339_ms;
use pulselake_domain::{Assignment, DeviceRecord, Reason};
use pulselake_local::esm::{KinesisMapping, MappingConfig};
use pulselake_local::{LocalPlatform, firehose, inspect, invoke_now_ms, iot};

fn assigned(device: &str, subject: &str, since: i64) -> DeviceRecord {
    DeviceRecord {
        device_id: device.into(),
        assignments: vec![Assignment {
            subject_id: subject.into(),
            valid_from: since,
            valid_to: None,
            cohort: None,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_claiming_another_device_reaches_neither_the_lake_nor_alerting() {
    let p = LocalPlatform::start(None).await.unwrap();
    let s = &p.stack;
    let now = invoke_now_ms();
    s.register_devices(&[
        assigned("dev-a", "subj-a", now - 86_400_000),
        assigned("dev-b", "subj-b", now - 86_400_000),
        assigned("ACME-B", "subj-c", now - 86_400_000),
    ])
    .await
    .unwrap();
    // Heart rates that would page hr-high, for a patient the publisher does not wear.
    let v1 = |value: f64, ago: i64| {
        serde_json::json!({"v": 1, "device_id": "dev-b", "readings": [{"sensor_id": "hr-0",
            "metric": "heart_rate", "value": value, "unit": "/min",
            "measured_at": format_rfc3339_ms(now - ago * 1000)}]})
        .to_string()
        .into_bytes()
    };
    let flat = serde_json::json!({"serial": "ACME-B", "type": "HR", "val": 170.0, "uom": "bpm", "ts": now - 3000})
        .to_string()
        .into_bytes();
    let from_a = iot::topic_for("dev-a");
    iot::publish(s, &[(from_a.clone(), v1(160.0, 2)), (from_a, flat)])
        .await
        .unwrap();
    let mut lake = KinesisMapping::new(
        s,
        p.stream_ingest().await.unwrap(),
        MappingConfig::default(),
    );
    lake.drain().await.unwrap();
    firehose::flush(s).await.unwrap();
    let mut alerting = KinesisMapping::new(
        s,
        p.vitals_alert().await.unwrap(),
        MappingConfig {
            function_name: "vitals-alert".into(),
            ..MappingConfig::default()
        },
    );
    alerting.drain().await.unwrap();

    assert!(
        inspect::lake(s).await.unwrap().rows.is_empty(),
        "nothing reaches the lake"
    );
    let q = inspect::stream_quarantine(s).await.unwrap();
    assert_eq!(
        q.readings_by_reason().get(&Reason::DeviceMismatch),
        Some(&2),
        "{:?}",
        q.entries
    );
    let pages = s
        .sqs
        .receive_message()
        .queue_url(&s.alerts_inbox_url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(
        pages.messages().is_empty(),
        "no page for a patient on someone else's claim"
    );
    assert_eq!(
        p.metric_total("stream-ingest/ReadingsQuarantined"),
        2.0,
        "counted (and alarmed on, per reason)"
    );
}
