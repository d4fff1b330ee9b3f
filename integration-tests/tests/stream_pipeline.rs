//! Stream ingestion end to end on the local stack: IoT rule -> Kinesis -> event source
//! mapping -> stream-ingest (real SDK clients) -> Firehose (moto) -> delivery -> lake.

use pulselake_domain::Reason;
use pulselake_local::LocalPlatform;
use pulselake_local::proxy::FaultPlan;
use pulselake_local::scenario::run_stream;
use pulselake_local::simulator::FleetConfig;

fn small_fleet(fault_share: f64) -> FleetConfig {
    FleetConfig {
        devices: 24,
        sensors_per_device: 12,
        fault_share,
        acme_share: 0.25,
        ..FleetConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reading_sent_is_in_the_lake_or_quarantined_with_its_reason() {
    let platform = LocalPlatform::start(None).await.unwrap();
    let r = run_stream(&platform, small_fleet(0.15), 3, &mut |_| {})
        .await
        .unwrap();
    assert!(r.ledger.readings > 500, "{r:?}");
    assert!(
        r.ledger.corrupt_messages > 0 && !r.ledger.expected_quarantine.is_empty(),
        "faults were injected: {r:?}"
    );
    assert_eq!(
        r.lake_distinct + r.quarantined(),
        r.ledger.readings,
        "{r:?}"
    );
    assert_eq!(r.quarantined_by_reason, r.ledger.expected_quarantine);
    assert_eq!(
        r.unreadable_by_reason.get(&Reason::NotJson),
        Some(&r.ledger.corrupt_messages)
    );
    assert_eq!(r.lake_rows, r.lake_distinct, "no reading twice in the lake");
    assert_eq!(r.esm.function_errors, 0);
    assert!(r.adds_up());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_record_failures_and_throttling_are_retried_without_loss_or_duplicates() {
    let faults = FaultPlan {
        record_failure_rate: 0.25,
        throttle_every: 3,
        seed: 11,
    };
    let platform = LocalPlatform::start(Some(faults)).await.unwrap();
    let r = run_stream(&platform, small_fleet(0.0), 2, &mut |_| {})
        .await
        .unwrap();
    assert!(r.firehose_refused > 0, "records were refused: {r:?}");
    assert!(r.firehose_throttled > 0, "calls were throttled: {r:?}");
    assert_eq!(
        r.lake_distinct,
        r.ledger.expected_in_lake(),
        "nothing lost: {r:?}"
    );
    assert_eq!(
        r.quarantined(),
        r.deactivated_readings,
        "only the deactivated device: {r:?}"
    );
    assert_eq!(
        r.lake_rows, r.lake_distinct,
        "only failed entries were resent, so no duplicates"
    );
    assert_eq!(
        r.esm.records_retried, 0,
        "the function absorbed the failures itself"
    );
}
