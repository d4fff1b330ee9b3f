//! Alerting on the local stack: devices publish through the IoT rule to Kinesis; a
//! second event source mapping feeds vitals-alert (real SDK clients: DynamoDB state,
//! SSM rules, SNS); pages are read from an SQS queue subscribed to the alerts topic.

use pulselake_domain::time::format_rfc3339_ms;
use pulselake_domain::{Assignment, DeviceRecord};
use pulselake_local::esm::{KinesisMapping, MappingConfig};
use pulselake_local::scenario::run_alerts;
use pulselake_local::{LocalPlatform, invoke_now_ms, iot};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn episodes_page_once_storms_page_once_history_and_redelivery_never_page() {
    let p = LocalPlatform::start(None).await.unwrap();
    let r = run_alerts(&p, 6, &mut |_| {}).await.unwrap();
    assert_eq!(r.episodes, 12, "{r:?}");
    assert_eq!(r.episode_pages, 12, "every threshold episode pages: {r:?}");
    assert_eq!(
        r.storm_pages, 1,
        "20 low SpO2 readings in a row: one page: {r:?}"
    );
    assert_eq!(r.backfill_pages, 0, "{r:?}");
    assert!(
        r.suppressed >= r.backfill_readings.min(1),
        "history is evaluated: {r:?}"
    );
    assert_eq!(r.redelivery_pages, 0, "{r:?}");
    assert_eq!(r.duplicate_ids, 0, "{r:?}");
    assert_eq!(
        r.malformed, 0,
        "every page has its attributes and no device: {r:?}"
    );
    assert_eq!(r.latencies_ms.len(), 12);
    assert!(r.adds_up(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_of_change_pages_with_filterable_attributes_and_a_pseudonymous_subject() {
    let p = LocalPlatform::start(None).await.unwrap();
    let s = &p.stack;
    let now = invoke_now_ms();
    s.register_devices(&[DeviceRecord {
        device_id: "dev-rise".into(),
        assignments: vec![Assignment {
            subject_id: "subj-rise".into(),
            valid_from: now - 86_400_000,
            valid_to: None,
            cohort: None,
        }],
    }])
    .await
    .unwrap();
    let msg = |value: f64, ago_min: i64| {
        let at = now - ago_min * 60_000;
        let body = serde_json::json!({"v": 1, "device_id": "dev-rise", "message_id": format!("m-{ago_min}"),
            "sent_at": format_rfc3339_ms(now),
            "readings": [{"sensor_id": "t-0", "metric": "body_temp", "value": value, "unit": "Cel", "measured_at": format_rfc3339_ms(at)}]});
        (iot::topic_for("dev-rise"), body.to_string().into_bytes())
    };
    // 37.0 -> 37.4 -> 38.3 within 12 minutes: a rise of 1.3 degrees, no fever yet.
    iot::publish(s, &[msg(37.0, 4), msg(37.4, 3), msg(38.3, 1)])
        .await
        .unwrap();
    let mut mapping = KinesisMapping::new(
        s,
        p.vitals_alert().await.unwrap(),
        MappingConfig {
            batch_size: 100,
            function_name: "vitals-alert".into(),
            ..MappingConfig::default()
        },
    );
    mapping.drain().await.unwrap();
    let mut pages = Vec::new();
    for _ in 0..50 {
        let out = s
            .sqs
            .receive_message()
            .queue_url(&s.alerts_inbox_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        pages.extend(out.messages().iter().cloned());
        if !pages.is_empty() {
            break;
        }
    }
    assert_eq!(pages.len(), 1, "{pages:?}");
    let attrs = pages[0].message_attributes().unwrap();
    let attr = |k: &str| attrs[k].string_value().unwrap_or_default().to_owned();
    assert_eq!(attr("rule"), "temp-rise");
    assert_eq!(attr("metric"), "body_temp");
    assert_eq!(attr("severity"), "warning");
    let body: serde_json::Value = serde_json::from_str(pages[0].body().unwrap()).unwrap();
    assert_eq!(body["subject"], "subj-rise");
    assert_eq!(body["value"], 38.3);
    assert_eq!(body["alert_id"].as_str().map(str::len), Some(32));
    assert!(!pages[0].body().unwrap().contains("dev-rise"));
    // State is in DynamoDB with an expiry, keyed by subject and rule.
    let item = s
        .dynamodb
        .get_item()
        .table_name(&s.names.alert_state_table)
        .key(
            "key",
            aws_sdk_dynamodb::types::AttributeValue::S("subj-rise#temp-rise".into()),
        )
        .send()
        .await
        .unwrap();
    let item = item.item().expect("the pair's state is stored");
    assert!(item.contains_key("expiration"));
    assert!(
        !item.contains_key("pending"),
        "published alerts are cleared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rules_document_fails_at_init_with_its_reason() {
    let p = LocalPlatform::start(None).await.unwrap();
    p.stack
        .set_alert_rules(r#"{"version": 1, "rules": [{"id": "hr", "metric": "heart_rate", "severity": "high", "threshold": {"above": 900}}]}"#)
        .await
        .unwrap();
    let err = match p.vitals_alert().await {
        Ok(_) => panic!("a bad rules document must not start"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("rule \"hr\"") && err.contains("plausible range"),
        "{err}"
    );
}
