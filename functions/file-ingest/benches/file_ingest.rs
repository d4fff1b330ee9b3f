//! `make bench`: file-ingest's pipeline on a ~100 MB generic CSV (4,000 devices,
//! 30 sensors each), streamed from disk as it would be from S3: parse, validate,
//! sort, Parquet. Reports MB/s, rows/s and the process's peak RSS. Run by `cargo test`
//! (without `--bench`) it ingests a small file once, as a smoke test.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use file_ingest::formats::Format;
use file_ingest::pipeline::{FileSpec, Limits, Pipeline, Step};
use pulselake_adapters::Resolved;
use pulselake_domain::time::{format_rfc3339_ms, parse_rfc3339_ms};
use pulselake_domain::{Assignment, DeviceMappings, DeviceRecord, Metric, TimePolicy};

const DEVICES: u64 = 4000;
const SENSORS: u64 = 30;

fn data_file(target_bytes: u64) -> std::io::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-data");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("readings-{}mb.csv", target_bytes >> 20));
    if path.exists() {
        return Ok(path);
    }
    let metrics: Vec<(Metric, &str, f64)> = vec![
        (Metric::HeartRate, "/min", 72.0),
        (Metric::Spo2, "%", 97.0),
        (Metric::BodyTemp, "Cel", 36.8),
        (Metric::RespiratoryRate, "/min", 16.0),
        (Metric::BpSystolic, "mm[Hg]", 121.0),
        (Metric::BpDiastolic, "mm[Hg]", 79.0),
        (Metric::Glucose, "mg/dL", 98.0),
    ];
    let start = parse_rfc3339_ms("2026-10-01T00:00:00Z").unwrap_or_default();
    let mut w = BufWriter::new(std::fs::File::create(&path)?);
    writeln!(w, "device_id,sensor_id,metric,value,unit,measured_at")?;
    let mut written = 0u64;
    let mut i = 0u64;
    while written < target_bytes {
        let device = i % DEVICES;
        let sensor = (i / DEVICES) % SENSORS;
        let cycle = i / (DEVICES * SENSORS);
        let (metric, unit, base) = metrics[(sensor % 7) as usize];
        let at = format_rfc3339_ms(start + (cycle as i64) * 20_000);
        let line = format!(
            "dev-{device:06},s-{sensor},{},{:.1},{unit},{at}\n",
            metric.name(),
            base + (i % 3) as f64
        );
        w.write_all(line.as_bytes())?;
        written += line.len() as u64;
        i += 1;
    }
    w.flush()?;
    Ok(path)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> std::io::Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    let path = data_file(if bench { 100 << 20 } else { 1 << 20 })?;
    let since = parse_rfc3339_ms("2026-01-01T00:00:00Z").unwrap_or_default();
    let registry: std::collections::HashMap<String, Arc<DeviceRecord>> = (0..DEVICES)
        .map(|d| {
            let id = format!("dev-{d:06}");
            let rec = DeviceRecord {
                device_id: id.clone(),
                assignments: vec![Assignment {
                    subject_id: format!("subj-{:08x}", d * 2_654_435_761 % (1 << 32)),
                    valid_from: since,
                    valid_to: None,
                    cohort: None,
                }],
            };
            (id, Arc::new(rec))
        })
        .collect();
    let mappings = DeviceMappings::builtin();
    let spec = FileSpec {
        format: Format::Csv,
        subject: None,
        source_hash: "0123456789abcdef",
        reference: "bench",
        received_at: parse_rfc3339_ms("2026-11-22T00:00:00Z").unwrap_or_default(),
        mappings: &mappings,
        policy: TimePolicy::history(pulselake_domain::retention::MIN_RETENTION_YEARS),
    };
    // A shared machine's timings vary from run to run: the median of five is reported.
    let runs = if bench { 5 } else { 1 };
    let mut timings = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        let mut pipeline = Pipeline::new(std::fs::File::open(&path)?, &spec, Limits::default());
        let (mut chunks, mut parquet_bytes) = (0, 0u64);
        // The handler's loop, with the registry in memory and the outputs counted and
        // dropped (the handler stores each and drops it).
        let report = loop {
            match pipeline
                .advance()
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?
            {
                Step::Resolve(ids) => {
                    let found: Resolved = ids
                        .into_iter()
                        .map(|id| {
                            let r = registry.get(&id).cloned();
                            (id, r)
                        })
                        .collect();
                    pipeline.resolved(&found);
                }
                Step::Chunk(c) => {
                    chunks += 1;
                    parquet_bytes += c.parquet.len() as u64;
                }
                Step::ReportPart { .. } => {}
                Step::Done(report) => break report,
            }
        };
        timings.push(started.elapsed().as_secs_f64());
        last = Some((report, chunks, parquet_bytes));
    }
    let Some((report, chunks, parquet_bytes)) = last else {
        return Ok(());
    };
    timings.sort_by(f64::total_cmp);
    let secs = timings[timings.len() / 2];
    assert_eq!(
        report.written, report.readings,
        "every row of the bench file is valid"
    );
    if !bench {
        println!(
            "file-ingest bench: {} rows ingested (run `make bench` to measure)",
            report.written
        );
        return Ok(());
    }
    let mb = report.bytes as f64 / (1 << 20) as f64;
    println!(
        "file-ingest: {mb:.0} MB generic CSV, {} rows -> {} Parquet chunks, {:.1} MB ({:.1}x smaller), one core",
        report.written,
        chunks,
        parquet_bytes as f64 / (1 << 20) as f64,
        report.bytes as f64 / parquet_bytes.max(1) as f64
    );
    println!(
        "  throughput  {:.0} MB/s, {:.2} M rows/s ({secs:.2} s, median of {runs} runs: {})",
        mb / secs,
        report.written as f64 / secs / 1e6,
        timings
            .iter()
            .map(|t| format!("{:.0}", mb / t))
            .collect::<Vec<_>>()
            .join(" / ")
            + " MB/s"
    );
    println!(
        "  peak RSS    {:.1} MB (whole process; at most {} rows buffered)",
        peak_rss_mb(),
        report.peak_buffered_rows
    );
    Ok(())
}
