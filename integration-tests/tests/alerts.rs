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

/// Pages that reached the alerts inbox within a few seconds: (rule, body).
async fn pages(s: &pulselake_local::Stack, want: usize) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for _ in 0..10 {
        let got = s
            .sqs
            .receive_message()
            .queue_url(&s.alerts_inbox_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in got.messages() {
            let rule = m.message_attributes().unwrap()["rule"]
                .string_value()
                .unwrap_or_default()
                .to_owned();
            out.push((rule, serde_json::from_str(m.body().unwrap()).unwrap()));
            s.sqs
                .delete_message()
                .queue_url(&s.alerts_inbox_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        if out.len() >= want && got.messages().is_empty() {
            break;
        }
    }
    out
}

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

fn hr_message(device: &str, value: f64, at: i64, now: i64) -> (String, Vec<u8>) {
    let body = serde_json::json!({"v": 1, "device_id": device, "message_id": format!("m-{at}"),
        "sent_at": format_rfc3339_ms(now),
        "readings": [{"sensor_id": "hr-0", "metric": "heart_rate", "value": value, "unit": "/min", "measured_at": format_rfc3339_ms(at)}]});
    (iot::topic_for(device), body.to_string().into_bytes())
}

async fn drain_alerting(p: &LocalPlatform) {
    let mut mapping = KinesisMapping::new(
        &p.stack,
        p.vitals_alert().await.unwrap(),
        MappingConfig {
            batch_size: 100,
            function_name: "vitals-alert".into(),
            ..MappingConfig::default()
        },
    );
    mapping.drain().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sustained_heart_rate_of_0_and_18_pages_once() {
    // Outside the plausible range (the lake quarantines them), and the worst values there are.
    let p = LocalPlatform::start(None).await.unwrap();
    let s = &p.stack;
    let now = invoke_now_ms();
    s.register_devices(&[assigned("dev-crit", "subj-crit", now - 86_400_000)])
        .await
        .unwrap();
    let msgs: Vec<_> = [18.0, 0.0, 18.0, 0.0, 0.0]
        .iter()
        .enumerate()
        .map(|(i, v)| hr_message("dev-crit", *v, now - (5 - i as i64) * 60_000, now))
        .collect();
    iot::publish(s, &msgs).await.unwrap();
    drain_alerting(&p).await;
    let got = pages(s, 1).await;
    let rules: Vec<&str> = got.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(rules, ["hr-low"], "{got:?}");
    assert_eq!(got[0].1["subject"], "subj-crit");
    assert_eq!(got[0].1["kind"], "physiological");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_falls_silent_pages_once_and_recovers_once() {
    let p = LocalPlatform::start(None).await.unwrap();
    let s = &p.stack;
    let now = invoke_now_ms();
    s.register_devices(&[assigned("dev-quiet", "subj-quiet", now - 86_400_000)])
        .await
        .unwrap();
    iot::publish(s, &[hr_message("dev-quiet", 72.0, now - 1000, now)])
        .await
        .unwrap();
    drain_alerting(&p).await;
    let watch = p.device_watch().await.unwrap();
    let min = 60_000;
    // The sweep runs every minute; the clock jumps past the 10-minute silence window.
    let quiet = watch.sweep(now + 5 * min).await.unwrap();
    assert_eq!((quiet.devices, quiet.silence_pages), (1, 0));
    let first = watch.sweep(now + 11 * min).await.unwrap();
    let again = watch.sweep(now + 12 * min).await.unwrap();
    assert_eq!(
        (first.silence_pages, again.silence_pages),
        (1, 0),
        "one page per silence"
    );
    assert_eq!(again.silent, 1);
    // The device is heard again (a new vitals-alert container, as after a cold start:
    // a warm one records a device at most every 2.5 minutes).
    iot::publish(s, &[hr_message("dev-quiet", 73.0, now, now)])
        .await
        .unwrap();
    drain_alerting(&p).await;
    // (Later sweeps on this jumped clock would find the device silent again: it was
    // last heard at the real time, 13 simulated minutes ago.)
    let back = watch.sweep(now + 13 * min).await.unwrap();
    assert_eq!(
        (back.recovery_pages, back.silence_pages, back.silent),
        (1, 0, 0)
    );
    let got = pages(s, 2).await;
    let rules: Vec<&str> = got.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(rules, ["device-silent", "device-recovered"], "{got:?}");
    for (_, body) in &got {
        assert_eq!(body["kind"], "technical");
        assert_eq!(body["subject"], "subj-quiet");
        assert!(
            !body.to_string().contains("dev-quiet"),
            "no device in a page"
        );
    }
}
