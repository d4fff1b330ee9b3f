//! `make bench`: erasure's rewrite on one core, of a lake file of at least 1 GB without
//! one subject's rows, twice: as Firehose leaves a file (arrival order: every row group
//! holds the subject, so every group is decoded and encoded again) and as compaction
//! leaves it (sorted by subject: the footer clears all but one group or two, which are
//! rewritten; the others are copied as stored). Reports rows rewritten per second
//! (target: at least 2 M/s) and the process's peak RSS (the file itself and its rewrite
//! are in memory here; the rewrite adds one row group).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::time::Instant;

use bytes::Bytes;
use pulselake_domain::{Metric, Reading, ReadingId, Source};
use pulselake_lake::erase::erase_subjects;
use pulselake_lake::{FileLayout, GroupWriter, with_columns};

const SUBJECTS: usize = 4_000;
const BATCH: usize = 1 << 20;

/// Rows `b * BATCH ..`, of `total` rows: subjects interleaved, or in subject order.
fn batch(b: usize, total: usize, sorted: bool) -> Vec<Reading<'static>> {
    (0..BATCH)
        .map(|i| {
            let n = b * BATCH + i;
            let subject = if sorted {
                n * SUBJECTS / total
            } else {
                n % SUBJECTS
            };
            let at = 1_795_305_600_000 + (n / SUBJECTS) as i64 * 20_000;
            Reading {
                reading_id: ReadingId::derive("dev", "hr-0", Metric::HeartRate, n as i64),
                subject_id: Cow::Owned(format!("subj-{subject:08x}")),
                device_id: Cow::Owned(format!("dev-{subject:06}")),
                sensor_id: Cow::Borrowed("hr-0"),
                metric: Metric::HeartRate,
                value: 60.0 + (n % 40) as f64,
                measured_at: at,
                received_at: at + 1_500,
                source: Source::Stream,
                source_ref: Cow::Owned(format!(
                    "shardId-000000000003:{}",
                    49_590_000_000u64 + n as u64
                )),
            }
        })
        .collect()
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A file of about `target_bytes` (whole batches); its bytes and rows.
fn lake_file(target_bytes: usize, sorted: bool) -> (Bytes, u64) {
    // ~36 bytes a row: the number of rows is fixed before the first batch.
    let total = (target_bytes / 36).div_ceil(BATCH).max(1) * BATCH;
    let layout = FileLayout {
        sorted_by_subject: sorted,
        ..FileLayout::default()
    };
    let mut writer = GroupWriter::new(Vec::new(), layout).unwrap();
    for b in 0..total / BATCH {
        with_columns(&batch(b, total, sorted), |c| writer.write(c)).unwrap();
    }
    let rows = writer.rows();
    (Bytes::from(writer.finish().unwrap()), rows)
}

/// Erases subject 17 from a file; the rows it had and the time taken.
fn erase(file: &Bytes, rows: u64, sorted: bool) -> (f64, u64) {
    let subject = 17;
    let gone = BTreeSet::from([format!("subj-{subject:08x}")]);
    let t = Instant::now();
    let r = erase_subjects(
        file.clone(),
        Metric::HeartRate,
        &gone,
        FileLayout::default(),
    )
    .unwrap();
    let took = t.elapsed().as_secs_f64();
    let expected = if sorted {
        (0..rows as usize)
            .filter(|n| n * SUBJECTS / rows as usize == subject)
            .count() as u64
    } else {
        (rows - subject as u64).div_ceil(SUBJECTS as u64)
    };
    assert_eq!(r.rows_removed, expected, "the subject's rows, all of them");
    (took, r.copied_groups.len() as u64)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    // `cargo test --all-targets` runs this too (without `--bench`): small files then.
    let target_bytes: usize = if bench { 1 << 30 } else { 1 };
    for (sorted, name) in [
        (false, "as Firehose leaves it"),
        (true, "compacted (sorted by subject)"),
    ] {
        let (file, rows) = lake_file(target_bytes, sorted);
        let (took, copied) = erase(&file, rows, sorted);
        if !bench {
            continue;
        }
        let groups = rows.div_ceil(FileLayout::default().row_group_rows as u64);
        println!(
            "erasure, file {name}: one subject of {SUBJECTS} removed from {:.2} GB, {:.1} M rows, {groups} row groups ({copied} copied as stored), one core",
            file.len() as f64 / 1e9,
            rows as f64 / 1e6,
        );
        println!(
            "  throughput  {:.2} M rows rewritten/s  ({:.1} s; target 2 M/s)",
            rows as f64 / took / 1e6,
            took
        );
    }
    if !bench {
        println!("erase bench: small files rewritten (run `make bench` to measure)");
        return;
    }
    println!(
        "  peak RSS    {:.0} MB (whole process: a file and its rewrite are held in memory here)",
        peak_rss_mb()
    );
}
