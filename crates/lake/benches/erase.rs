//! `make bench`: erasure's rewrite on one core, of a lake file of at least 1 GB without
//! one subject's rows, twice: as Firehose leaves a file (arrival order: every row group
//! holds the subject, so every group is decoded and encoded again) and as compaction
//! leaves it (sorted by subject: the footer clears all but one group or two, which are
//! rewritten; the others are copied as stored). The file is on disk and read as the
//! erasure function reads S3: the footer, then each group's subject column, then each
//! group, by ranged reads; the new file is written out as it grows (the function's
//! multipart upload). Reports rows rewritten per second (target: at least 2 M/s) and the
//! peak RSS of the rewrite (bounded by a row group and a part, not by the file).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use pulselake_domain::{Metric, Reading, ReadingId, Source};
use pulselake_lake::erase::{Eraser, footer_len, groups_to_look_at, rows_in_group};
use pulselake_lake::{FileLayout, GroupWriter, LakeFile, with_columns};

const SUBJECTS: usize = 4_000;
const BATCH: usize = 1 << 16;
/// The erasure function's part size.
const PART: usize = 8 << 20;

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
                cohort: None,
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

/// Resets the peak RSS to the current RSS (Linux), so the rewrite's peak is its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Writes a file of about `target_bytes` (whole batches) to `path`; its rows.
fn lake_file(path: &Path, target_bytes: usize, sorted: bool) -> u64 {
    // ~36 bytes a row: the number of rows is fixed before the first batch.
    let total = (target_bytes / 36).div_ceil(BATCH).max(1) * BATCH;
    let layout = FileLayout {
        sorted_by_subject: sorted,
        ..FileLayout::default()
    };
    let sink = std::io::BufWriter::new(File::create(path).unwrap());
    let mut writer = GroupWriter::new(sink, layout).unwrap();
    for b in 0..total / BATCH {
        with_columns(&batch(b, total, sorted), |c| writer.write(c)).unwrap();
    }
    let rows = writer.rows();
    writer.finish().unwrap().flush().unwrap();
    rows
}

fn read_at(file: &File, start: u64, end: u64) -> Bytes {
    let mut buf = vec![0; (end - start) as usize];
    file.read_exact_at(&mut buf, start).unwrap();
    Bytes::from(buf)
}

/// Erases subject 17 from the file at `path` into `out`, as the erasure function does;
/// the rows removed and the groups copied as stored.
fn erase(path: &Path, out: &Path, gone: &BTreeSet<String>) -> (u64, u64) {
    let file = File::open(path).unwrap();
    let size = file.metadata().unwrap().len();
    let len = footer_len(&read_at(&file, size - 8, size)).unwrap();
    let footer = read_at(&file, size - 8 - len, size - 8);
    let mut lake = LakeFile::from_footer(&footer, size, Metric::HeartRate).unwrap();
    let mut hits = vec![0; lake.row_groups()];
    for g in groups_to_look_at(&lake, gone) {
        let (a, b) = lake.subject_chunk_range(g);
        lake.hold(a, read_at(&file, a, b));
        hits[g] = rows_in_group(&lake, g, gone).unwrap();
    }
    let mut sink = File::create(out).unwrap();
    let mut eraser = Eraser::new(&lake, gone, FileLayout::default()).unwrap();
    for (g, h) in hits.iter().enumerate() {
        let (a, b) = lake.group_range(g);
        lake.hold(a, read_at(&file, a, b));
        eraser.push(&lake, g, *h == 0).unwrap();
        if eraser.buffered() >= PART {
            sink.write_all(&eraser.take_output()).unwrap();
        }
    }
    sink.write_all(&eraser.take_output()).unwrap();
    let (rewrite, tail) = eraser.finish().unwrap();
    sink.write_all(&tail).unwrap();
    (rewrite.rows_removed, rewrite.copied_groups.len() as u64)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    // `cargo test --all-targets` runs this too (without `--bench`): small files then.
    let target_bytes: usize = if bench { 1 << 30 } else { 1 };
    let dir = std::env::temp_dir().join(format!("pulselake-erase-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let subject = 17;
    let gone = BTreeSet::from([format!("subj-{subject:08x}")]);
    for (sorted, name) in [
        (false, "as Firehose leaves it"),
        (true, "compacted (sorted by subject)"),
    ] {
        let (path, out) = (dir.join("in.parquet"), dir.join("out.parquet"));
        let rows = lake_file(&path, target_bytes, sorted);
        reset_peak_rss();
        let t = Instant::now();
        let (removed, copied) = erase(&path, &out, &gone);
        let took = t.elapsed().as_secs_f64();
        let peak = peak_rss_mb();
        let expected = if sorted {
            (0..rows as usize)
                .filter(|n| n * SUBJECTS / rows as usize == subject)
                .count() as u64
        } else {
            (rows - subject as u64).div_ceil(SUBJECTS as u64)
        };
        assert_eq!(removed, expected, "the subject's rows, all of them");
        let kept = pulselake_lake::row_count(Bytes::from(std::fs::read(&out).unwrap())).unwrap();
        assert_eq!(kept, rows - removed, "every other row");
        let size = std::fs::metadata(&path).unwrap().len();
        if bench {
            let groups = rows.div_ceil(FileLayout::default().row_group_rows as u64);
            println!(
                "erasure, file {name}: one subject of {SUBJECTS} removed from {:.2} GB, {:.1} M rows, {groups} row groups ({copied} copied as stored), one core",
                size as f64 / 1e9,
                rows as f64 / 1e6,
            );
            println!(
                "  throughput  {:.2} M rows rewritten/s  ({:.1} s; target 2 M/s)",
                rows as f64 / took / 1e6,
                took
            );
            println!(
                "  peak RSS    {peak:.0} MB during the rewrite (the file is read a row group at a time; the new one leaves in {} MiB parts)",
                PART >> 20
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if !bench {
        println!("erase bench: small files rewritten (run `make bench` to measure)");
    }
}
