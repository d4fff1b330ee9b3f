//! `make bench`: the export worker's hot path on one core, lake Parquet to NDJSON:
//! one day's heart-rate partition (1,000,000 readings of 2,000 subjects in 4 files)
//! is decoded row group by row group, admitted under a limited-data-set scope,
//! pseudonymized (HMAC-SHA256, once per subject) and written as FHIR Observations,
//! flushed every 100,000 lines as the worker flushes files. Reports Observations/s
//! (target: at least 500,000/s) and the process's peak RSS.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use export_worker::{Converter, FILE_RESOURCES};
use pulselake_benchkit::{Bench, Timings, peak_rss_mb};
use pulselake_domain::partner::{Mode, OutputFormat, Scope};
use pulselake_domain::{Metric, NamingKey, Reading, ReadingId, Source};
use pulselake_lake::{FileLayout, LakeFile, encode_readings};

const READINGS: usize = 1_000_000;
const FILES: usize = 4;
const SUBJECTS: usize = 2_000;
const DAY: i64 = 1_795_305_600_000;

fn lake_files() -> Vec<Bytes> {
    let per_file = READINGS / FILES;
    (0..FILES)
        .map(|f| {
            let rows: Vec<Reading<'static>> = (0..per_file)
                .map(|i| {
                    let n = f * per_file + i;
                    let subject = n % SUBJECTS;
                    let at = DAY + (n / SUBJECTS) as i64 * 20_000;
                    let device = format!("dev-{subject:06}");
                    Reading {
                        reading_id: ReadingId::derive(&device, "hr-0", Metric::HeartRate, at),
                        subject_id: Cow::Owned(format!("subj-{subject:08x}")),
                        device_id: Cow::Owned(device),
                        sensor_id: Cow::Borrowed("hr-0"),
                        metric: Metric::HeartRate,
                        value: 60.0 + (n % 40) as f64,
                        measured_at: at,
                        received_at: at + 1_500,
                        source: Source::Stream,
                        source_ref: Cow::Borrowed("shardId-000000000000:49590000000000000"),
                        cohort: None,
                    }
                })
                .collect();
            Bytes::from(encode_readings(&rows, FileLayout::default()).unwrap())
        })
        .collect()
}

/// One pass over the partition; returns (Observations written, NDJSON bytes).
fn export(files: &[Bytes], scope: &Scope, key: &NamingKey) -> (u64, u64) {
    let mut conv = Converter::new(scope, key);
    let mut buf = Vec::with_capacity(64 << 20);
    let (mut lines, mut bytes, mut in_file) = (0u64, 0u64, 0u64);
    for f in files {
        let file = LakeFile::open(f.clone(), Metric::HeartRate).unwrap();
        for g in 0..file.row_groups() {
            for r in file.row_group(g).unwrap() {
                if conv.admits(&r, None) {
                    conv.single(&r, &mut buf);
                    lines += 1;
                    in_file += 1;
                    if in_file == FILE_RESOURCES {
                        bytes += buf.len() as u64;
                        buf.clear();
                        in_file = 0;
                    }
                }
            }
        }
    }
    (lines, bytes + buf.len() as u64)
}

fn main() {
    let files = lake_files();
    let parquet_mb = files.iter().map(Bytes::len).sum::<usize>() as f64 / 1e6;
    let scope = Scope {
        metrics: vec![Metric::HeartRate],
        cohorts: vec!["*".into()],
        group: None,
        measured_from: None,
        measured_to: None,
        since: None,
        until: None,
        mode: Mode::Limited,
        format: OutputFormat::Ndjson,
    };
    let key = NamingKey::new(b"bench-partner-key-0123456789abcdef".to_vec());
    let (lines, _) = export(&files, &scope, &key);
    assert_eq!(lines as usize, READINGS, "every reading exported");
    // `cargo test --all-targets` runs this too (without `--bench`): one pass is the smoke test.
    if !std::env::args().any(|a| a == "--bench") {
        println!("export bench: one partition exported (run `make bench` to measure)");
        return;
    }
    let mut ndjson = 0;
    let runs = Timings::measure(5, Duration::from_secs(5), || {
        ndjson = export(&files, &scope, &key).1;
    });
    // Only the export's buffers have run in the process so far (the slices are smaller).
    let peak_mb = peak_rss_mb();
    let median = runs.median();
    println!(
        "export-worker: {READINGS} heart-rate readings of {SUBJECTS} subjects, {FILES} lake files ({parquet_mb:.1} MB Parquet) -> {:.0} MB FHIR NDJSON, one core",
        ndjson as f64 / 1e6
    );
    println!(
        "  throughput  {:.2} M Observations/s  ({:.0} ms per partition, median of {} runs; target 0.5 M/s)",
        READINGS as f64 / median.as_secs_f64() / 1e6,
        median.as_secs_f64() * 1e3,
        runs.runs()
    );
    println!("  peak RSS    {peak_mb:.1} MB (whole process, including the generated lake files)");
    let mut bench = Bench::new("export");
    bench.rate("throughput", READINGS as f64 / 1e6, "M/s", &runs);
    if let Err(e) = bench.finish() {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
