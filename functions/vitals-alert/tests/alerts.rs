//! vitals-alert against in-memory ports: pages, cooldowns, redelivered batches, history,
//! publish failures and cohorts.

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pulselake_adapters::kinesis_events::StreamBatch;
use pulselake_adapters::{
    CachedRegistry, MemoryAlertStates, MemoryHeartbeats, MemoryPublisher, MemoryRegistry,
};
use pulselake_domain::alerting::RuleSet;
use pulselake_domain::time::format_rfc3339_ms;
use pulselake_domain::{Assignment, DeviceMappings, DeviceRecord, TimePolicy};
use serde_json::json;
use vitals_alert::VitalsAlert;

type Alerting = VitalsAlert<MemoryRegistry, MemoryAlertStates, MemoryPublisher, MemoryHeartbeats>;

const NOW: i64 = 1_795_342_530_000;
const MIN: i64 = 60_000;

const RULES: &str = r#"{"version": 1, "history_after_seconds": 300, "rules": [
    {"id": "hr-high", "metric": "heart_rate", "severity": "high", "threshold": {"above": 130}, "cooldown_seconds": 600},
    {"id": "spo2-low", "metric": "spo2", "severity": "critical", "sustained": {"below": 90, "readings": 3}},
    {"id": "hr-high-neonatal", "metric": "heart_rate", "cohort": "neonatal", "severity": "critical", "threshold": {"above": 200}}
]}"#;

fn alerting() -> Alerting {
    let device = |id: &str, subject: &str, cohort: Option<&str>| DeviceRecord {
        device_id: id.into(),
        assignments: vec![Assignment {
            subject_id: subject.into(),
            valid_from: NOW - 30 * 86_400_000,
            valid_to: None,
            cohort: cohort.map(str::to_owned),
        }],
    };
    VitalsAlert {
        registry: CachedRegistry::new(
            MemoryRegistry::new([
                device("dev-1", "subj-1", None),
                device("dev-2", "subj-2", Some("neonatal")),
            ]),
            Duration::from_secs(300),
            Duration::from_secs(60),
        ),
        mappings: DeviceMappings::builtin(),
        rules: RuleSet::from_json(RULES).unwrap(),
        states: MemoryAlertStates::default(),
        publisher: MemoryPublisher::default(),
        policy: TimePolicy::stream(),
        heartbeats: MemoryHeartbeats::default(),
        heard: Default::default(),
    }
}

/// A batch of single-reading messages: (device, metric, value, unit, minutes before NOW).
fn batch(readings: &[(&str, &str, f64, &str, i64)]) -> StreamBatch {
    let records: Vec<_> = readings
        .iter()
        .enumerate()
        .map(|(i, (device, metric, value, unit, ago))| {
            let msg = json!({"v": 1, "device_id": device, "message_id": format!("m-{i}"), "sent_at": format_rfc3339_ms(NOW),
                "readings": [{"sensor_id": "s-0", "metric": metric, "value": value, "unit": unit,
                              "measured_at": format_rfc3339_ms(NOW - ago * MIN)}]});
            json!({"eventID": format!("shardId-000000000000:{}", 100 + i),
                   "kinesis": {"data": STANDARD.encode(msg.to_string()), "sequenceNumber": format!("{}", 100 + i),
                               "partitionKey": device, "approximateArrivalTimestamp": NOW as f64 / 1000.0}})
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn sent(a: &Alerting) -> Vec<(String, String)> {
    a.publisher
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|x| (x.rule.clone(), x.subject.clone()))
        .collect()
}

#[tokio::test]
async fn a_threshold_pages_once_then_cools_down() {
    let a = alerting();
    let out = a
        .handle(
            &batch(&[
                ("dev-1", "heart_rate", 120.0, "/min", 4),
                ("dev-1", "heart_rate", 140.0, "/min", 3),
                ("dev-1", "heart_rate", 150.0, "/min", 2),
                ("dev-1", "heart_rate", 155.0, "/min", 1),
            ]),
            NOW,
        )
        .await
        .unwrap();
    assert!(out.failed_sequence_numbers.is_empty());
    assert_eq!(sent(&a), [("hr-high".to_owned(), "subj-1".to_owned())]);
    let alert = a.publisher.sent.lock().unwrap()[0].clone();
    assert_eq!(alert.value, 140.0, "the first breaching reading pages");
    assert_eq!(alert.measured_at, format_rfc3339_ms(NOW - 3 * MIN));
    let body = serde_json::to_string(&alert).unwrap();
    assert!(
        !body.contains("dev-1"),
        "no device serial in the alert: {body}"
    );
}

#[tokio::test]
async fn a_redelivered_batch_never_pages_twice() {
    let a = alerting();
    let b = batch(&[
        ("dev-1", "spo2", 88.0, "%", 3),
        ("dev-1", "spo2", 87.0, "%", 2),
        ("dev-1", "spo2", 86.0, "%", 1),
    ]);
    a.handle(&b, NOW).await.unwrap();
    let again = a.handle(&b, NOW + 1000).await.unwrap();
    assert_eq!(again.stats.replays, 3);
    assert_eq!(sent(&a), [("spo2-low".to_owned(), "subj-1".to_owned())]);
}

#[tokio::test]
async fn sustained_needs_consecutive_breaches_across_batches() {
    let a = alerting();
    a.handle(
        &batch(&[
            ("dev-1", "spo2", 88.0, "%", 5),
            ("dev-1", "spo2", 87.0, "%", 4),
        ]),
        NOW,
    )
    .await
    .unwrap();
    assert!(sent(&a).is_empty());
    a.handle(&batch(&[("dev-1", "spo2", 86.0, "%", 3)]), NOW)
        .await
        .unwrap();
    assert_eq!(
        sent(&a).len(),
        1,
        "the third breach in a row, in a later batch, pages"
    );
}

#[tokio::test]
async fn backfilled_readings_are_evaluated_but_never_page() {
    let a = alerting();
    let out = a
        .handle(&batch(&[("dev-1", "heart_rate", 180.0, "/min", 60)]), NOW)
        .await
        .unwrap();
    assert_eq!(out.stats.suppressed, 1);
    assert!(sent(&a).is_empty());
    // A live breach right after still pages: history starts no cooldown.
    a.handle(&batch(&[("dev-1", "heart_rate", 180.0, "/min", 1)]), NOW)
        .await
        .unwrap();
    assert_eq!(sent(&a).len(), 1);
}

#[tokio::test]
async fn a_failed_publish_is_retried_and_pages_exactly_once() {
    let a = alerting();
    let b = batch(&[
        ("dev-1", "heart_rate", 150.0, "/min", 1),
        ("dev-1", "spo2", 97.0, "%", 1),
    ]);
    a.publisher.failing.store(true, Ordering::Relaxed);
    let out = a.handle(&b, NOW).await.unwrap();
    assert_eq!(
        out.failed_sequence_numbers,
        ["100"],
        "only the record that raised the alert"
    );
    a.publisher.failing.store(false, Ordering::Relaxed);
    // Lambda retries from the failed record: its reading is a replay now, but the alert
    // raised is still pending and goes out.
    let retried = a.handle(&b, NOW + 1000).await.unwrap();
    assert!(retried.failed_sequence_numbers.is_empty());
    assert_eq!(sent(&a).len(), 1);
    a.handle(&b, NOW + 2000).await.unwrap();
    assert_eq!(sent(&a).len(), 1, "and never again");
}

#[tokio::test]
async fn cohort_rules_apply_to_their_cohort_only() {
    let a = alerting();
    a.handle(
        &batch(&[
            ("dev-1", "heart_rate", 210.0, "/min", 1),
            ("dev-2", "heart_rate", 210.0, "/min", 1),
        ]),
        NOW,
    )
    .await
    .unwrap();
    let mut got = sent(&a);
    got.sort();
    assert_eq!(
        got,
        [
            ("hr-high".to_owned(), "subj-1".to_owned()),
            ("hr-high".to_owned(), "subj-2".to_owned()),
            ("hr-high-neonatal".to_owned(), "subj-2".to_owned())
        ]
    );
}

#[tokio::test]
async fn normal_readings_cost_no_state_writes_and_bad_records_are_skipped() {
    let a = alerting();
    let mut b = batch(&[
        ("dev-1", "heart_rate", 72.0, "/min", 2),
        ("dev-9", "heart_rate", 200.0, "/min", 1),
    ]);
    b.records
        .extend(batch(&[("dev-1", "mood", 1.0, "x", 1)]).records);
    let out = a.handle(&b, NOW).await.unwrap();
    assert!(out.failed_sequence_numbers.is_empty());
    assert_eq!(out.stats.readings, 1);
    assert_eq!(
        out.stats.skipped_readings, 2,
        "unknown device, unknown metric"
    );
    assert_eq!(a.states.saves.load(Ordering::Relaxed), 0);
}

fn alerting_with(rules: &str) -> Alerting {
    Alerting {
        rules: RuleSet::from_json(rules).unwrap(),
        ..alerting()
    }
}

#[tokio::test]
async fn a_critically_low_heart_rate_of_0_and_18_pages_once() {
    // 0 and 18 are outside heart rate's plausible range (the lake quarantines them as
    // out_of_range), yet they are the values a monitor must never go quiet on.
    let a = alerting_with(pulselake_domain::alerting::DEFAULT_RULES);
    let out = a
        .handle(
            &batch(&[
                ("dev-1", "heart_rate", 18.0, "/min", 5),
                ("dev-1", "heart_rate", 0.0, "/min", 4),
                ("dev-1", "heart_rate", 18.0, "/min", 3),
                ("dev-1", "heart_rate", 0.0, "/min", 2),
                ("dev-1", "heart_rate", 0.0, "/min", 1),
            ]),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(sent(&a), [("hr-low".to_owned(), "subj-1".to_owned())]);
    assert_eq!((out.stats.readings, out.stats.implausible), (5, 5));
    let alert = a.publisher.sent.lock().unwrap()[0].clone();
    assert_eq!(
        alert.kind,
        pulselake_domain::alerting::AlertKind::Physiological
    );
}

#[tokio::test]
async fn a_sensor_that_keeps_sending_implausible_values_raises_one_technical_alarm() {
    let a = alerting_with(pulselake_domain::alerting::DEFAULT_RULES);
    let readings: Vec<_> = (1..=8)
        .rev()
        .map(|ago| ("dev-1", "spo2", 127.0, "%", ago))
        .collect();
    a.handle(&batch(&readings), NOW).await.unwrap();
    assert_eq!(sent(&a), [("spo2-sensor".to_owned(), "subj-1".to_owned())]);
    let alert = a.publisher.sent.lock().unwrap()[0].clone();
    assert_eq!(alert.kind, pulselake_domain::alerting::AlertKind::Technical);
}

#[tokio::test]
async fn a_conflicting_value_for_one_reading_is_not_evaluated() {
    // The same sensor, metric and instant twice: 72 first, then 140. The lake keeps 72
    // (140 is quarantined as conflicting_duplicate), so 140 must not page.
    let a = alerting();
    let out = a
        .handle(
            &batch(&[
                ("dev-1", "heart_rate", 72.0, "/min", 1),
                ("dev-1", "heart_rate", 140.0, "/min", 1),
            ]),
            NOW,
        )
        .await
        .unwrap();
    assert!(sent(&a).is_empty());
    assert_eq!((out.stats.readings, out.stats.repeats), (1, 1));
}
