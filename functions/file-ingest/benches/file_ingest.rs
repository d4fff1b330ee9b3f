//! `make bench`: file-ingest's pipeline on a ~100 MB generic CSV (4,000 devices,
//! 30 sensors each), streamed from disk as it would be from S3: parse, validate,
//! sort, Parquet. Reports MB/s, rows/s and the process's peak RSS. Run by `cargo test`
//! (without `--bench`) it ingests a small file once, as a smoke test.

use std::hint::black_box;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use file_ingest::chunks::ChunkFile;
use file_ingest::formats::Format;
use file_ingest::pipeline::{FileReport, FileSpec, Limits, Pipeline, Step};
use pulselake_adapters::Resolved;
use pulselake_benchkit::{Bench, Timings, calibration_now, calibration_slice, peak_rss_mb};
use pulselake_domain::time::{format_rfc3339_ms, parse_rfc3339_ms};
use pulselake_domain::{Assignment, DeviceMappings, DeviceRecord, Metric, ReadingId, TimePolicy};
use pulselake_rawfile::intake::Hashed;

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
                    // Every third subject in a cohort, the others in none.
                    cohort: (d % 3 == 0).then(|| "adult".to_owned()),
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
    let (mut total, mut encoding) = (Timings::default(), Timings::default());
    let mut last = None;
    for _ in 0..runs {
        let calibration = calibration_slice();
        let started = Instant::now();
        let (mut chunks, mut parquet_bytes) = (0, 0u64);
        // The handler's loop, with the registry in memory and the outputs counted and
        // dropped (the handler stores each and drops it).
        let (report, encoding_time) = ingest(&path, &spec, &registry, |c| {
            chunks += 1;
            parquet_bytes += c.parquet.len() as u64;
            Ok(())
        })?;
        total.push(started.elapsed(), calibration);
        encoding.push(encoding_time, calibration);
        last = Some((report, chunks, parquet_bytes));
    }
    // Before anything else runs in the process: the pipeline's own peak.
    let peak_mb = peak_rss_mb();
    let Some((report, chunks, parquet_bytes)) = last else {
        return Ok(());
    };
    let secs = total.median().as_secs_f64();
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
        total
            .pairs()
            .map(|(t, _)| format!("{:.0}", mb / t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" / ")
            + " MB/s"
    );
    let mut b = Bench::new("file");
    b.rate("throughput", mb, "MB/s", &total);
    phases(&path, report.written, &total, &encoding, &mut b)?;
    peer(&path, &spec, &registry, &total, &mut b)?;
    println!(
        "  peak RSS    {peak_mb:.1} MB (whole process; at most {} rows buffered)",
        report.peak_buffered_rows
    );
    b.finish().map_err(std::io::Error::other)
}

/// The handler's loop over one file, with the registry in memory: each chunk to
/// `chunk`; the report and the time the pipeline spent encoding.
fn ingest(
    path: &std::path::Path,
    spec: &FileSpec<'_>,
    registry: &std::collections::HashMap<String, Arc<DeviceRecord>>,
    mut chunk: impl FnMut(ChunkFile) -> std::io::Result<()>,
) -> std::io::Result<(FileReport, Duration)> {
    let mut pipeline = Pipeline::new(std::fs::File::open(path)?, spec, Limits::default());
    loop {
        let step = pipeline
            .advance()
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        match step {
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
            Step::Chunk(c) => chunk(c)?,
            Step::ReportPart { .. } => {}
            Step::Done(report) => return Ok((report, pipeline.encoding_time())),
        }
    }
}

/// The phases, per row: reading the file through the content hash and the reading ids
/// timed alone (median of 5) with the code the pipeline runs; sorting and encoding the
/// chunks as the pipeline timed them; what is left is splitting, parsing and validation.
fn phases(
    path: &std::path::Path,
    rows: u64,
    total: &Timings,
    encoding: &Timings,
    bench: &mut Bench,
) -> std::io::Result<()> {
    let read = Timings::measure(5, Duration::ZERO, || {
        let mut hashed = Hashed::new(std::fs::File::open(path).expect("bench file"));
        let mut block = vec![0u8; 1 << 20];
        while hashed.read(&mut block).unwrap_or(0) > 0 {}
        black_box(hashed.tally().finish());
    });
    let devices: Vec<String> = (0..DEVICES).map(|d| format!("dev-{d:06}")).collect();
    let sensors: Vec<String> = (0..SENSORS).map(|s| format!("s-{s}")).collect();
    let ids = Timings::measure(5, Duration::ZERO, || {
        for i in 0..rows as usize {
            let (d, s) = (
                i % DEVICES as usize,
                (i / DEVICES as usize) % SENSORS as usize,
            );
            black_box(ReadingId::derive(
                &devices[d],
                &sensors[s],
                Metric::HeartRate,
                i as i64,
            ));
        }
    });
    let mut rest = Timings::default();
    let runs = total
        .pairs()
        .zip(encoding.pairs())
        .zip(read.pairs().zip(ids.pairs()));
    for (((t, ct), (e, _)), ((r, cr), (i, ci))) in runs {
        let calibration = Duration::from_secs_f64((ct + cr + ci) / 3.0);
        rest.push(t.saturating_sub(e + r + i), calibration);
    }
    println!("  per phase (ns per row):");
    for (name, t) in [
        (
            "read (file through the SHA-256 of its content, alone)",
            &read,
        ),
        ("id (SHA-256 per reading, alone)", &ids),
        (
            "encode (sort, Parquet: dictionaries, statistics, Snappy)",
            encoding,
        ),
        ("rest (split, parse, validate), by difference", &rest),
    ] {
        let ns = t.median().as_secs_f64() * 1e9 / rows as f64;
        println!("    {name:<58} {ns:>6.0} ns");
        let key = name.split_whitespace().next().unwrap_or(name);
        bench.phase(&format!("phase_{key}"), rows as f64, t);
    }
    Ok(())
}

/// The equal-work peer (`bench/peers/file_peer.py`: pyarrow on one thread, in the
/// project's venv) ingests the same file under the same registry, catalog and policy; its
/// Parquet and pulselake's chunks (written by one more, untimed, run) must hold the same
/// rows, column for column, else the comparison would be of unequal work.
fn peer(
    path: &std::path::Path,
    spec: &FileSpec<'_>,
    registry: &std::collections::HashMap<String, Arc<DeviceRecord>>,
    total: &Timings,
    bench: &mut Bench,
) -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        println!("  pyarrow peer: skipped (no .venv; `make venv` makes it)");
        return Ok(());
    }
    let dir = root.join("target/bench-data/file-peer");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut chunks = 0;
    ingest(path, spec, registry, |c| {
        std::fs::write(dir.join(format!("rust-{chunks:03}.parquet")), &c.parquet)?;
        chunks += 1;
        Ok(())
    })?;
    let catalog: Vec<_> = Metric::all()
        .map(|m| {
            let s = m.spec();
            serde_json::json!({"name": s.name, "loinc": s.loinc, "unit": s.unit, "min": s.min, "max": s.max,
                   "accepted": s.accepted.iter().map(|c| serde_json::json!([c.unit, c.scale, c.offset])).collect::<Vec<_>>()})
        })
        .collect();
    let registry: Vec<&DeviceRecord> = registry.values().map(|r| r.as_ref()).collect();
    let years = spec.policy.retention_years.unwrap_or(0);
    let cutoff = pulselake_domain::retention::cutoff(
        pulselake_domain::time::Date::from_epoch_ms(spec.received_at),
        years,
    );
    let description = serde_json::json!({
        "registry": registry, "catalog": catalog, "received_at": spec.received_at,
        "max_future_skew_ms": spec.policy.max_future_skew_ms, "earliest_ms": spec.policy.earliest_ms,
        "retention_cutoff_ms": cutoff.start_epoch_ms(), "source_hash": spec.source_hash,
    });
    std::fs::write(dir.join("spec.json"), serde_json::to_vec(&description)?)?;
    let before = calibration_now();
    let out = std::process::Command::new(&python)
        .arg(root.join("bench/peers/file_peer.py"))
        .arg(&dir)
        .arg(path)
        .output()?;
    let after = calibration_now();
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "the pyarrow peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    if report["equal"] != serde_json::Value::Bool(true) {
        return Err(std::io::Error::other(format!(
            "the pyarrow peer's rows differ from pulselake's: not equal work ({report})"
        )));
    }
    let peer_secs = report["seconds"].as_f64().unwrap_or(f64::NAN);
    // Each side against the calibration timed around it: the machine's speed moves
    // between the two measurements.
    let calibration = (before + after).as_secs_f64() / 2.0;
    let ratio = (peer_secs / calibration) / total.relative();
    println!(
        "  pyarrow peer {peer_secs:.2} s (CPython {}, pyarrow {}, one thread, the same {} rows): pulselake {ratio:.1}x faster \
         (against the calibration around each; {:.1}x by the raw times)",
        report["python"].as_str().unwrap_or("?"),
        report["pyarrow"].as_str().unwrap_or("?"),
        report["rows"],
        peer_secs / total.median().as_secs_f64()
    );
    bench.ratio("pyarrow_peer_ratio", ratio);
    Ok(())
}
