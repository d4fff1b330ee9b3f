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

/// pyarrow (pinned) sees min and max of every lake file's `value` column and skips a
/// row group with them: two row groups of disjoint value ranges, a filter that only
/// the second can match, one row group scanned.
#[test]
fn pyarrow_reads_the_value_statistics_and_skips_a_row_group_with_them() {
    use std::borrow::Cow;

    use pulselake_domain::{Metric, Reading, ReadingId, Source};
    use pulselake_lake::{FileLayout, encode_readings};

    let rows: Vec<Reading<'static>> = (0..200)
        .map(|i| {
            let at = 1_795_305_600_000 + i as i64 * 60_000;
            Reading {
                reading_id: ReadingId::derive("dev-1", "hr-0", Metric::HeartRate, at),
                subject_id: Cow::Borrowed("subj-1"),
                device_id: Cow::Borrowed("dev-1"),
                sensor_id: Cow::Borrowed("hr-0"),
                metric: Metric::HeartRate,
                // Group 1: 50-99; group 2: 150-199.
                value: if i < 100 {
                    50.0 + (i % 50) as f64
                } else {
                    150.0 + (i % 50) as f64
                },
                measured_at: at,
                received_at: at + 1_000,
                source: Source::Stream,
                source_ref: Cow::Borrowed("shard-0:1"),
                cohort: None,
            }
        })
        .collect();
    let layout = FileLayout {
        row_group_rows: 100,
        sorted_by_subject: false,
    };
    let dir = std::env::temp_dir().join(format!("pulselake-stats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("part-0.parquet");
    std::fs::write(&file, encode_readings(&rows, layout).unwrap()).unwrap();
    const SCRIPT: &str = r#"
import json, sys
import pyarrow.dataset as ds
import pyarrow.parquet as pq
md = pq.ParquetFile(sys.argv[1]).metadata
col = [i for i in range(md.num_columns) if md.schema.column(i).name == "value"][0]
stats = []
for g in range(md.num_row_groups):
    s = md.row_group(g).column(col).statistics
    stats.append([s.min, s.max] if s is not None and s.has_min_max else None)
fragment = next(ds.dataset(sys.argv[1], format="parquet").get_fragments())
kept = fragment.split_by_row_group(filter=ds.field("value") > 120)
print(json.dumps({"stats": stats, "groups_scanned": len(kept)}))
"#;
    let out = std::process::Command::new(pulselake_local::moto::venv_bin("python"))
        .arg("-c")
        .arg(SCRIPT)
        .arg(&file)
        .output()
        .expect("the venv's python (make venv)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got["stats"],
        serde_json::json!([[50.0, 99.0], [150.0, 199.0]]),
        "pyarrow sees min and max of `value`"
    );
    assert_eq!(
        got["groups_scanned"], 1,
        "the row group of 50-99 is skipped"
    );
}
