//! The silence sweep with in-memory ports: one page per silence, one per recovery,
//! a failed publish paged again with the same id, unassigned devices never paged.

use std::sync::atomic::Ordering;
use std::time::Duration;

use device_watch::DeviceWatch;
use pulselake_adapters::{
    CachedRegistry, Heartbeats, MemoryHeartbeats, MemoryPublisher, MemoryRegistry,
};
use pulselake_domain::alerting::{Severity, SilenceRule};
use pulselake_domain::{Assignment, DeviceRecord};

const MIN: i64 = 60_000;
const T0: i64 = 1_795_342_530_000;

type Watch = DeviceWatch<MemoryRegistry, MemoryHeartbeats, MemoryPublisher>;

fn watch() -> Watch {
    let assigned = DeviceRecord {
        device_id: "dev-1".into(),
        assignments: vec![Assignment {
            subject_id: "subj-1".into(),
            valid_from: T0 - 86_400_000,
            valid_to: None,
            cohort: None,
        }],
    };
    let returned = DeviceRecord {
        device_id: "dev-returned".into(),
        assignments: vec![],
    };
    DeviceWatch {
        registry: CachedRegistry::new(
            MemoryRegistry::new([assigned, returned]),
            Duration::from_secs(60),
            Duration::from_secs(60),
        ),
        heartbeats: MemoryHeartbeats::default(),
        publisher: MemoryPublisher::default(),
        rule: Some(SilenceRule {
            after_ms: 10 * MIN,
            severity: Severity::Warning,
        }),
    }
}

fn rules_sent(w: &Watch) -> Vec<String> {
    w.publisher
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.rule.clone())
        .collect()
}

#[tokio::test]
async fn a_silent_device_pages_once_and_its_return_pages_once() {
    let w = watch();
    w.heartbeats.beat("dev-1", T0, 0).await.unwrap();
    for m in [5, 10, 11, 30] {
        w.sweep(T0 + m * MIN).await.unwrap();
    }
    assert_eq!(rules_sent(&w), ["device-silent"]);
    w.heartbeats.beat("dev-1", T0 + 31 * MIN, 0).await.unwrap();
    let s = w.sweep(T0 + 32 * MIN).await.unwrap();
    assert_eq!((s.recovery_pages, s.silent), (1, 0));
    w.sweep(T0 + 33 * MIN).await.unwrap();
    assert_eq!(rules_sent(&w), ["device-silent", "device-recovered"]);
    let sent = w.publisher.sent.lock().unwrap().clone();
    assert_eq!(sent[1].value, 31.0, "silent for 31 minutes");
    assert!(sent.iter().all(|a| a.subject == "subj-1"));
}

#[tokio::test]
async fn a_failed_publish_is_paged_again_by_the_next_sweep_with_the_same_id() {
    let w = watch();
    w.heartbeats.beat("dev-1", T0, 0).await.unwrap();
    w.publisher.failing.store(true, Ordering::Relaxed);
    let s = w.sweep(T0 + 11 * MIN).await.unwrap();
    assert_eq!((s.silence_pages, s.failed, s.silent), (0, 1, 1));
    w.publisher.failing.store(false, Ordering::Relaxed);
    w.sweep(T0 + 12 * MIN).await.unwrap();
    w.sweep(T0 + 13 * MIN).await.unwrap();
    let sent = w.publisher.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    // The id is fixed by the silence (subject and last heartbeat), not by the sweep.
    assert_eq!(
        sent[0].alert_id,
        pulselake_domain::alerting::alert_id("device-silent", "subj-1", T0)
    );
}

#[tokio::test]
async fn unassigned_and_unknown_devices_never_page() {
    let w = watch();
    for d in ["dev-returned", "dev-unknown"] {
        w.heartbeats.beat(d, T0, 0).await.unwrap();
    }
    let s = w.sweep(T0 + 60 * MIN).await.unwrap();
    assert_eq!((s.devices, s.silence_pages, s.silent), (2, 0, 0));
    assert!(rules_sent(&w).is_empty());
}

#[tokio::test]
async fn without_a_silence_rule_the_sweep_does_nothing() {
    let w = Watch {
        rule: None,
        ..watch()
    };
    w.heartbeats.beat("dev-1", T0, 0).await.unwrap();
    assert_eq!(w.sweep(T0 + 600 * MIN).await.unwrap().devices, 0);
}
