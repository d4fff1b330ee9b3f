//! Team environments: what a team's compiled Lake Formation filter lets DuckDB return
//! equals the policy's meaning computed independently over the same lake (golden tests
//! for a metric-, a window- and a cohort-limited team), with files from before the cohort
//! column in the lake; and the `pulselake teams` round trip against the local stack.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use pulselake_cli::preview::preview;
use pulselake_cli::teams::lake_table;
use pulselake_domain::team::{TeamPolicy, admits, compile};
use pulselake_domain::time::parse_rfc3339_ms;
use pulselake_domain::{Metric, Partition, Reading, ReadingId, Source};
use pulselake_lake::{FileLayout, encode_readings};
use pulselake_local::moto::venv_bin;

const NOW: i64 = 1_796_000_000_000;

fn at(t: &str) -> i64 {
    parse_rfc3339_ms(t).unwrap()
}

/// A lake of three metrics over four days around a window's edges, readings of three
/// cohorts and of none, one file per partition; `old` partitions are written without the
/// cohort column (files from before it existed).
fn lake(dir: &Path) -> Vec<Reading<'static>> {
    let days = [
        "2026-03-14T23:59:59.999Z",
        "2026-03-15T00:00:00Z",
        "2026-05-31T12:00:00Z",
        "2026-06-01T00:00:00Z",
    ];
    let cohorts = [Some("neonatal"), Some("adult"), None, Some("cardiology")];
    let mut all = Vec::new();
    for metric in [Metric::HeartRate, Metric::Spo2, Metric::BodyTemp] {
        for day in days {
            let rows: Vec<Reading<'static>> = (0..12)
                .map(|i| {
                    let measured_at = at(day)
                        + i64::from(i % 3)
                            * (if day.ends_with(".999Z") {
                                -1_000
                            } else {
                                1_000
                            });
                    let device = format!("dev-{i:03}");
                    Reading {
                        reading_id: ReadingId::derive(
                            &device,
                            "s-0",
                            metric,
                            measured_at + i64::from(i) * 7,
                        ),
                        subject_id: format!("subj-{}", i % 5).into(),
                        device_id: device.into(),
                        sensor_id: "s-0".into(),
                        metric,
                        value: 50.0 + f64::from(i),
                        measured_at: measured_at + i64::from(i) * 7,
                        received_at: measured_at + 2_000,
                        source: Source::Stream,
                        source_ref: format!("shard-0:{i}").into(),
                        cohort: cohorts[i as usize % 4].map(Into::into),
                    }
                })
                .collect();
            all.extend(rows);
        }
    }
    // One file per partition, each row in its measurement day's (some cross midnight).
    let mut partitions: BTreeMap<Partition, Vec<Reading<'static>>> = BTreeMap::new();
    for r in &all {
        partitions
            .entry(Partition::of(r.metric, r.measured_at))
            .or_default()
            .push(r.clone());
    }
    for (p, rows) in partitions {
        let folder = dir.join(p.prefix());
        std::fs::create_dir_all(&folder).unwrap();
        let file = folder.join("part-0.parquet");
        std::fs::write(
            &file,
            encode_readings(&rows, FileLayout::default()).unwrap(),
        )
        .unwrap();
    }
    // Heart rate of 15 March as a file from before the cohort column: its rows have none.
    let old = dir.join("readings/metric=heart_rate/year=2026/month=03/day=15/part-0.parquet");
    let script = "import duckdb, sys; f = sys.argv[1]; duckdb.sql(f\"COPY (SELECT * EXCLUDE (cohort) FROM read_parquet('{f}')) TO '{f}.old' (FORMAT parquet)\")";
    let out = std::process::Command::new(venv_bin("python"))
        .args(["-c", script])
        .arg(&old)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(old.with_extension("parquet.old"), &old).unwrap();
    for r in all.iter_mut() {
        if r.metric == Metric::HeartRate
            && Partition::of(r.metric, r.measured_at)
                .prefix()
                .contains("month=03/day=15")
        {
            r.cohort = None;
        }
    }
    all
}

fn policy(json: &str) -> TeamPolicy {
    serde_json::from_str(json).unwrap()
}

const COMMON: &str = r#""purpose":"p","owner":"o@example.org","expires":"2099-01-01T00:00:00Z","dua":"D-1",
  "budget":{"bytes_per_query":10000000000,"bytes_per_month":100000000000},"role_arn":"arn:aws:iam::123456789012:role/t""#;

#[test]
fn what_duckdb_returns_through_each_compiled_filter_is_the_policy_computed_independently() {
    let dir = std::env::temp_dir().join(format!("pulselake-team-golden-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rows = lake(&dir);
    let table = lake_table().unwrap();
    let cases = [
        (
            "metric-limited",
            format!(
                r#"{{"metrics":["spo2"],"cohorts":["*"],"columns":["value","measured_at"],{COMMON}}}"#
            ),
        ),
        (
            "window-limited",
            format!(
                r#"{{"metrics":["heart_rate","spo2","body_temp"],"cohorts":["*"],"earliest":"2026-03-15T00:00:00Z","latest":"2026-06-01T00:00:00Z","columns":["value","measured_at","cohort"],{COMMON}}}"#
            ),
        ),
        (
            "cohort-limited",
            format!(
                r#"{{"metrics":["heart_rate","spo2"],"cohorts":["neonatal","cardiology"],"columns":["subject_id","value"],{COMMON}}}"#
            ),
        ),
    ];
    for (name, json) in cases {
        let p = policy(&json);
        let c = compile("golden", &p, &table, NOW).unwrap();
        // Independently: the rows the policy admits, and the columns it lists plus the
        // partition keys, in table order.
        let expected: BTreeMap<String, f64> = rows
            .iter()
            .filter(|r| admits(&p, r.metric.name(), r.cohort.as_deref(), r.measured_at))
            .map(|r| (r.reading_id.to_string(), r.value))
            .collect();
        assert!(
            !expected.is_empty() && expected.len() < rows.len(),
            "{name}: a narrowing policy"
        );
        let mut columns: Vec<&str> = pulselake_lake::COLUMNS
            .iter()
            .map(|c| c.name)
            .filter(|n| p.columns.iter().any(|c| c == n))
            .collect();
        columns.extend(pulselake_lake::PARTITION_KEYS);
        // DuckDB, through the filter.
        let got: BTreeMap<String, f64> = pulselake_local::duckdb::query(
            &dir,
            &format!(
                "SELECT reading_id, value FROM readings WHERE {}",
                c.row_filter
            ),
        )
        .unwrap()
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect();
        assert_eq!(got, expected, "{name}: rows through {}", c.row_filter);
        let shown = preview(
            &venv_bin("python"),
            &dir,
            &c.row_filter,
            &c.columns
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>(),
            &table,
        )
        .unwrap();
        assert_eq!(shown.columns, columns, "{name}: columns");
        assert_eq!(shown.visible as usize, expected.len(), "{name}");
        assert_eq!(shown.total as usize, rows.len());
    }
    // The cohort-limited team never sees a row without a cohort (old files included).
    let p = policy(&format!(
        r#"{{"metrics":["heart_rate"],"cohorts":["neonatal"],"columns":["value"],{COMMON}}}"#
    ));
    let c = compile("golden", &p, &table, NOW).unwrap();
    let ids: BTreeSet<String> = pulselake_local::duckdb::query(
        &dir,
        &format!(
            "SELECT reading_id FROM readings WHERE ({}) AND cohort IS NULL",
            c.row_filter
        ),
    )
    .unwrap()
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    assert!(ids.is_empty(), "{ids:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
