//! `make bench`: erasure's rewrite on one core: a lake file of at least 1 GB (Firehose's
//! interleaved order, so every row group holds the subject) rewritten without one
//! subject's rows, row group by row group. Reports rows rewritten per second (target:
//! at least 2 M/s) and the process's peak RSS (the file itself and its rewrite are in
//! memory here; the rewrite adds one row group).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::time::Instant;

use bytes::Bytes;
use pulselake_domain::{Metric, Reading, ReadingId, Source};
use pulselake_lake::erase::erase_subjects;
use pulselake_lake::{FileLayout, GroupWriter, with_columns};

const SUBJECTS: usize = 4_000;
const BATCH: usize = 1 << 20;

fn batch(b: usize) -> Vec<Reading<'static>> {
    (0..BATCH)
        .map(|i| {
            let n = b * BATCH + i;
            let subject = n % SUBJECTS;
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

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    // `cargo test --all-targets` runs this too (without `--bench`): a small file then.
    let target_bytes: usize = if bench { 1 << 30 } else { 1 };
    let mut writer = GroupWriter::new(Vec::new(), FileLayout::default()).unwrap();
    let mut b = 0;
    loop {
        with_columns(&batch(b), |c| writer.write(c)).unwrap();
        b += 1;
        if writer.rows() as usize * 36 >= target_bytes {
            break;
        }
    }
    let rows = writer.rows();
    let file = Bytes::from(writer.finish().unwrap());
    let gone = BTreeSet::from([format!("subj-{:08x}", 17)]);
    let t = Instant::now();
    let r = erase_subjects(
        file.clone(),
        Metric::HeartRate,
        &gone,
        FileLayout::default(),
    )
    .unwrap();
    let took = t.elapsed();
    assert_eq!(
        r.rows_removed,
        (rows - 17).div_ceil(SUBJECTS as u64),
        "the subject's rows, all of them"
    );
    if !bench {
        println!("erase bench: a small file rewritten (run `make bench` to measure)");
        return;
    }
    println!(
        "erasure: one subject of {SUBJECTS} removed from a {:.2} GB lake file of {:.1} M rows ({} row groups), one core",
        file.len() as f64 / 1e9,
        rows as f64 / 1e6,
        rows.div_ceil(FileLayout::default().row_group_rows as u64)
    );
    println!(
        "  throughput  {:.2} M rows rewritten/s  ({:.1} s; target 2 M/s)",
        rows as f64 / took.as_secs_f64() / 1e6,
        took.as_secs_f64()
    );
    println!(
        "  peak RSS    {:.0} MB (whole process: the file and its rewrite are held in memory here)",
        peak_rss_mb()
    );
}
