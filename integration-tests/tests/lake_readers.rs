//! The lake as outside engines read it: the demo's workload (a streamed fleet and the
//! demo's file batch), then every Parquet file is read whole by pyarrow and the whole
//! lake by DuckDB, with the lake's schema and exactly the rows pulselake wrote.

use pulselake_local::LocalPlatform;
use pulselake_local::scenario::{run_catalog, run_files, run_stream};
use pulselake_local::simulator::FleetConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lake_file_of_the_demo_workload_reads_back_in_pyarrow_and_duckdb() {
    let p = LocalPlatform::start(None).await.unwrap();
    let fleet = FleetConfig {
        devices: 20,
        sensors_per_device: 10,
        acme_share: 0.2,
        ..FleetConfig::default()
    };
    let stream = run_stream(&p, fleet, 2, &mut |_| {}).await.unwrap();
    let files = run_files(&p, &mut |_| {}).await.unwrap();
    let r = run_catalog(&p, &mut |_| {}).await.unwrap();
    assert!(
        r.pyarrow_files >= stream.lake_files + 4,
        "stream files and file-ingest chunks: {r:?}"
    );
    assert!(
        r.pyarrow_mismatches.is_empty(),
        "{:?}",
        r.pyarrow_mismatches
    );
    assert_eq!(r.lake_rows, r.duckdb_rows);
    let total: usize = r.duckdb_rows.values().sum();
    assert_eq!(total, stream.lake_rows + files.lake_distinct);
    assert!(r.adds_up(), "{r:?}");
}
