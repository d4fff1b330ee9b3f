//! Compaction of the demo's lake (every partition, as the daily run does for finished
//! days): many Firehose files per partition become one file sorted by subject; DuckDB
//! finds the same rows before and after (count and checksum), a second run changes
//! nothing, and Glue still lists every partition.

use std::path::PathBuf;

use compaction::Outcome;

use crate::{LocalPlatform, Result, duckdb, inspect};

/// What the scenario observed.
#[derive(Debug, Default)]
pub struct CompactionReport {
    pub partitions: usize,
    pub files_before: usize,
    pub files_after: usize,
    /// DuckDB (rows, checksum) of the whole lake, before and after.
    pub lake_before: (u64, String),
    pub lake_after: (u64, String),
    /// Partitions a second run found already compact.
    pub second_run_no_ops: usize,
    /// Files whose rows are not sorted by subject, then time.
    pub unsorted_files: usize,
    pub glue_partitions_kept: bool,
}

impl CompactionReport {
    pub fn adds_up(&self) -> bool {
        self.lake_before == self.lake_after
            && self.files_after <= self.files_before
            && self.second_run_no_ops == self.partitions
            && self.unsorted_files == 0
            && self.glue_partitions_kept
    }
}

async fn lake_checksum(p: &LocalPlatform) -> Result<(u64, String)> {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "pulselake-compaction-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    inspect::export_lake(&p.stack, &dir).await?;
    let rows = duckdb::query(
        &dir,
        "SELECT count(*), coalesce(sum(hash(reading_id, subject_id, device_id, sensor_id, value, measured_at, received_at, source, source_ref)), 0) FROM readings",
    );
    let _ = std::fs::remove_dir_all(&dir);
    let rows = rows?;
    let first = rows.first().ok_or("DuckDB returned no row")?;
    Ok((first[0].parse()?, first[1].clone()))
}

pub async fn run_compaction(
    p: &LocalPlatform,
    progress: &mut dyn FnMut(String),
) -> Result<CompactionReport> {
    let s = &p.stack;
    let job = p.compaction().await;
    let partitions = inspect::lake_partitions(s).await?;
    let glue_before = inspect::glue_partitions(s).await?;
    let mut report = CompactionReport {
        partitions: partitions.len(),
        files_before: inspect::lake(s).await?.files,
        lake_before: lake_checksum(p).await?,
        ..CompactionReport::default()
    };
    for part in &partitions {
        job.compaction.compact(*part, "demo", || true).await?;
    }
    let lake = inspect::lake(s).await?;
    report.files_after = lake.files;
    report.lake_after = lake_checksum(p).await?;
    for key in inspect::list_keys(s, &s.names.lake_bucket, "readings/").await? {
        let Some(part) = pulselake_domain::Partition::from_object_key(&key) else {
            continue;
        };
        let rows = pulselake_lake::read_readings(
            inspect::get_bytes(s, &s.names.lake_bucket, &key).await?,
            part.metric,
        )?;
        let sorted = rows.windows(2).all(|w| {
            (w[0].subject_id.as_ref(), w[0].measured_at)
                <= (w[1].subject_id.as_ref(), w[1].measured_at)
        });
        report.unsorted_files += usize::from(!sorted);
    }
    progress(format!(
        "{} partitions: {} lake files became {}, each sorted by subject then time",
        report.partitions, report.files_before, report.files_after
    ));
    for part in &partitions {
        if job.compaction.compact(*part, "again", || true).await? == Outcome::AlreadyCompact {
            report.second_run_no_ops += 1;
        }
    }
    // catalog-sync hears of every file created and removed: a partition keeps its Glue
    // entry through the swap, since it never becomes empty.
    let mut catalog = crate::sqs_esm::SqsMapping::new(
        s.sqs.clone(),
        &s.catalog_queue_url,
        p.catalog_sync().await?,
    );
    catalog.drain(std::time::Duration::from_secs(120)).await?;
    report.glue_partitions_kept = inspect::glue_partitions(s).await? == glue_before;
    Ok(report)
}
