//! Compaction on the local stack, on a lake the stream and file scenarios filled and
//! catalog-sync catalogued: every partition becomes one file sorted by subject, DuckDB
//! finds exactly the same rows (count and checksum), a second run is a no-op, Glue keeps
//! every partition; erasure afterwards finds the subject by the footer statistics.

use pulselake_local::compaction_scenario::run_compaction;
use pulselake_local::erasure_scenario::run_erasure;
use pulselake_local::partner_client::fixture;
use pulselake_local::partner_scenario::RESEARCH_POLICY;
use pulselake_local::simulator::FleetConfig;
use pulselake_local::{LocalPlatform, inspect, onboard, pyarrow, scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_lake_holds_the_same_rows_sorted_by_subject() {
    let p = LocalPlatform::start(None).await.unwrap();
    let fleet = || FleetConfig {
        devices: 12,
        sensors_per_device: 6,
        fault_share: 0.0,
        ..FleetConfig::default()
    };
    scenario::run_stream(&p, fleet(), 4, &mut |_| {})
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

    // Erasure on the compacted lake copies the row groups the subject is not in as
    // stored; pyarrow and DuckDB (inside the scenario) read the result.
    let jwks = std::fs::read_to_string(fixture("research-rs384.jwks.json")).unwrap();
    onboard::add_partner(&p.stack, "research", RESEARCH_POLICY, &jwks)
        .await
        .unwrap();
    let erased = Box::pin(run_erasure(&p, fleet(), &mut |_| {}))
        .await
        .unwrap();
    assert!(erased.adds_up(), "{erased:?}");
    assert!(
        erased.evidence.files_rewritten.len() < r.partitions,
        "only the files of partitions the patient was measured in"
    );
    let dir = std::env::temp_dir().join(format!(
        "pulselake-compaction-pyarrow-{}",
        std::process::id()
    ));
    inspect::export_lake(&p.stack, &dir).await.unwrap();
    let files = pyarrow::read_all(&dir).unwrap();
    let mismatches = pyarrow::mismatches(&dir, &files);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!files.is_empty());
    assert!(mismatches.is_empty(), "{mismatches:?}");
}
