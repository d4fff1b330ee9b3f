//! Compaction on the local stack, on a lake the stream and file scenarios filled and
//! catalog-sync catalogued: every partition becomes one file sorted by subject, DuckDB
//! finds exactly the same rows (count and checksum), a second run is a no-op, Glue keeps
//! every partition; erasure afterwards finds the subject by the footer statistics.

use pulselake_local::compaction_scenario::run_compaction;
use pulselake_local::simulator::FleetConfig;
use pulselake_local::{LocalPlatform, scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_lake_holds_the_same_rows_sorted_by_subject() {
    let p = LocalPlatform::start(None).await.unwrap();
    let fleet = FleetConfig {
        devices: 12,
        sensors_per_device: 6,
        fault_share: 0.0,
        ..FleetConfig::default()
    };
    scenario::run_stream(&p, fleet, 4, &mut |_| {})
        .await
        .unwrap();
    scenario::run_files(&p, &mut |_| {}).await.unwrap();
    scenario::run_catalog(&p, &mut |_| {}).await.unwrap();
    let r = run_compaction(&p, &mut |_| {}).await.unwrap();
    assert!(r.files_before > r.partitions, "{r:?}");
    assert_eq!(r.files_after, r.partitions, "one file per partition: {r:?}");
    assert_eq!(r.lake_after, r.lake_before, "every reading exactly once");
    assert_eq!(r.unsorted_files, 0);
    assert_eq!(r.second_run_no_ops, r.partitions);
    assert!(r.glue_partitions_kept);
    assert!(r.adds_up());
}
