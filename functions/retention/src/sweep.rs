//! One retention run: find the lake partitions measured before the cut-off, and remove
//! each one: its Glue partition first, then every version of every object under it.
//! In that order a run stopped anywhere is resumed by the next one (a partition whose
//! objects remain is found again; dropping a Glue partition twice is harmless), and no
//! query ever sees a catalogued partition whose files are half gone.

use std::time::Instant;

use pulselake_adapters::{
    AuditLog, AwsError, Catalog, DELETE_BATCH, NOT_FOUND, ObjectReader, VersionedObjects,
};
use pulselake_domain::partition::READINGS_PREFIX;
use pulselake_domain::retention::{cutoff, expired};
use pulselake_domain::time::{Date, format_rfc3339_ms};
use pulselake_domain::{Metric, Partition};
use serde::Serialize;

/// The retention job over its ports.
pub struct Retention<V, C, A> {
    pub objects: V,
    pub catalog: C,
    pub audit: A,
    pub lake_bucket: String,
    pub years: u32,
}

/// What a run did (or, dry, would do). Written to the audit store as it is.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct RetentionReport {
    pub today: String,
    /// The first measurement day kept.
    pub cutoff: String,
    pub years: u32,
    pub dry_run: bool,
    /// Partitions measured before the cut-off, found in this run.
    pub partitions_expired: usize,
    /// Of those, removed (or, dry, that would be).
    pub partitions_removed: usize,
    pub object_versions: usize,
    pub bytes: u64,
    /// Prefixes under `readings/` that are not partitions: reported, never touched.
    pub skipped: Vec<String>,
    /// What could not be removed, and why (retried by the next run).
    pub failures: Vec<String>,
    /// False when the run stopped for time: the next run continues.
    pub complete: bool,
    pub seconds: f64,
}

impl<V, C, A> Retention<V, C, A>
where
    V: ObjectReader + VersionedObjects,
    C: Catalog,
    A: AuditLog,
{
    /// Runs once on the day of `now_ms`; `keep_going` is asked before each partition
    /// (the Lambda deadline). The report goes to the audit store, dry or not.
    pub async fn run(
        &self,
        now_ms: i64,
        dry_run: bool,
        mut keep_going: impl FnMut() -> bool,
    ) -> Result<RetentionReport, AwsError> {
        let started = Instant::now();
        let today = Date::from_epoch_ms(now_ms);
        let first_kept = cutoff(today, self.years);
        let mut report = RetentionReport {
            today: date_text(today),
            cutoff: date_text(first_kept),
            years: self.years,
            dry_run,
            complete: true,
            ..RetentionReport::default()
        };
        let partitions = self.expired_partitions(today, &mut report).await?;
        report.partitions_expired = partitions.len();
        for p in partitions {
            if !keep_going() {
                report.complete = false;
                break;
            }
            match self.remove(&p, dry_run, &mut report).await {
                Ok(()) => report.partitions_removed += 1,
                Err(e) => report.failures.push(format!("{p}: {e}")),
            }
        }
        report.seconds = started.elapsed().as_secs_f64();
        let record = serde_json::to_value(&report)
            .map_err(|e| AwsError::permanent("audit", e.to_string()))?;
        self.audit.append("retention", now_ms, &record).await?;
        Ok(report)
    }

    /// Partitions measured before the cut-off, oldest first. Years and months after
    /// it are not listed further.
    async fn expired_partitions(
        &self,
        today: Date,
        report: &mut RetentionReport,
    ) -> Result<Vec<Partition>, AwsError> {
        let first_kept = cutoff(today, self.years);
        let bucket = &self.lake_bucket;
        let mut found = Vec::new();
        for metric_dir in self.objects.list_dirs(bucket, READINGS_PREFIX).await? {
            let known = metric_dir
                .strip_prefix(READINGS_PREFIX)
                .and_then(|m| m.strip_prefix("metric="))
                .and_then(|m| Metric::from_name(m.trim_end_matches('/')));
            if known.is_none() {
                report.skipped.push(metric_dir);
                continue;
            }
            for year_dir in self.objects.list_dirs(bucket, &metric_dir).await? {
                match number_after(&year_dir, "year=") {
                    Some(y) if y > first_kept.year => continue,
                    Some(_) => {}
                    None => {
                        report.skipped.push(year_dir);
                        continue;
                    }
                }
                for month_dir in self.objects.list_dirs(bucket, &year_dir).await? {
                    for day_dir in self.objects.list_dirs(bucket, &month_dir).await? {
                        match Partition::from_object_key(&format!("{day_dir}_")) {
                            Some(p) if expired(&p, today, self.years) => found.push(p),
                            Some(_) => {}
                            None => report.skipped.push(day_dir),
                        }
                    }
                }
            }
        }
        found.sort_by_key(|p| (p.date, p.metric));
        Ok(found)
    }

    async fn remove(
        &self,
        p: &Partition,
        dry_run: bool,
        report: &mut RetentionReport,
    ) -> Result<(), AwsError> {
        let prefix = p.prefix();
        let versions = self
            .objects
            .list_versions(&self.lake_bucket, &prefix)
            .await?;
        report.object_versions += versions.len();
        report.bytes += versions.iter().map(|v| v.size).sum::<u64>();
        if dry_run {
            return Ok(());
        }
        let refused = self.catalog.delete_partitions(&[*p]).await?;
        if let Some(e) = refused.iter().find(|e| e.code != NOT_FOUND) {
            return Err(AwsError::permanent(
                "glue:BatchDeletePartition",
                e.code.clone(),
            ));
        }
        for batch in versions.chunks(DELETE_BATCH) {
            let failed = self
                .objects
                .delete_versions(&self.lake_bucket, batch)
                .await?;
            if let Some((_, code)) = failed.first() {
                return Err(AwsError::permanent(
                    "s3:DeleteObjects",
                    format!("{} object version(s) not deleted ({code})", failed.len()),
                ));
            }
        }
        Ok(())
    }
}

fn date_text(d: Date) -> String {
    format_rfc3339_ms(d.start_epoch_ms())[..10].to_owned()
}

/// `readings/metric=x/year=2023/` -> 2023.
fn number_after(dir: &str, label: &str) -> Option<i32> {
    let last = dir.trim_end_matches('/').rsplit('/').next()?;
    let digits = last.strip_prefix(label)?;
    (digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())?
}
