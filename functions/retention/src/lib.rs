//! retention: daily (EventBridge schedule), every lake partition measured more than
//! `RETENTION_YEARS` calendar years ago is removed, by measurement date, never by upload
//! date: its Glue partition, then every version of every file under it. A dry run
//! (`{"dry_run": true}`) reports and deletes nothing. A run that runs out of time stops
//! between partitions; the next one continues. Each run's report goes to the audit
//! store; the log line carries counts only.

pub mod config;
pub mod sweep;

use lambda_runtime::LambdaEvent;
use pulselake_adapters::{
    AuditLog, AwsError, BucketAuditLog, Catalog, GlueCatalog, Metrics, ObjectReader, S3Objects,
    SdkConfig, VersionedObjects,
};
use serde::Deserialize;

pub use config::Config;
pub use sweep::{Retention, RetentionReport};

pub type AwsRetention = Retention<S3Objects, GlueCatalog, BucketAuditLog<S3Objects>>;

/// The scheduled event's input (EventBridge sends the rule's constant input).
#[derive(Debug, Default, Deserialize)]
pub struct RunRequest {
    #[serde(default)]
    pub dry_run: bool,
}

/// Builds the job once per cold start.
pub fn build(config: &Config, sdk: &SdkConfig) -> AwsRetention {
    Retention {
        objects: S3Objects::from_config(sdk),
        catalog: GlueCatalog::from_config(sdk, &config.glue_database, &config.glue_table),
        audit: BucketAuditLog {
            writer: S3Objects::from_config(sdk),
            bucket: config.audit_bucket.clone(),
        },
        lake_bucket: config.lake_bucket.clone(),
        years: config.years,
    }
}

/// A run that could not finish its listing or its report (partition-level failures
/// are in the report instead); the schedule runs it again.
#[derive(Debug, thiserror::Error)]
#[error("retention run failed: {0}")]
pub struct RunError(#[from] pub AwsError);

impl From<RunError> for lambda_runtime::Diagnostic {
    fn from(e: RunError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "Retention.RunFailed".into(),
            error_message: e.to_string(),
        }
    }
}

/// Time kept back from the deadline: one partition's removal (a listing, a Glue call,
/// a few DeleteObjects calls) and the report fit in it.
const MARGIN_MS: i64 = 60_000;

/// One scheduled run.
pub async fn function_handler<V, C, A>(
    event: LambdaEvent<RunRequest>,
    job: &Retention<V, C, A>,
) -> Result<RetentionReport, RunError>
where
    V: ObjectReader + VersionedObjects,
    C: Catalog,
    A: AuditLog,
{
    let stop_at = event.context.deadline as i64 - MARGIN_MS;
    let result = job
        .run(now_ms(), event.payload.dry_run, || now_ms() < stop_at)
        .await;
    match &result {
        Ok(r) => {
            Metrics::new("retention")
                .count("PartitionsExpired", r.partitions_expired as u64)
                .count("PartitionsRemoved", r.partitions_removed as u64)
                .count("ObjectVersionsDeleted", r.object_versions as u64)
                .count("RemovalFailures", r.failures.len() as u64)
                .flush();
            tracing::info!(
                dry_run = r.dry_run,
                cutoff = %r.cutoff,
                expired = r.partitions_expired,
                removed = r.partitions_removed,
                versions = r.object_versions,
                bytes = r.bytes,
                skipped = r.skipped.len(),
                failures = r.failures.len(),
                complete = r.complete,
                "retention run done"
            );
        }
        Err(e) => tracing::error!(error = %e, "retention run failed"),
    }
    Ok(result?)
}

pub use pulselake_adapters::now_ms;

#[cfg(test)]
mod tests {
    use super::*;
    use pulselake_adapters::{MemoryAuditLog, MemoryCatalog, MemoryObjects};
    use pulselake_domain::time::parse_rfc3339_ms;
    use pulselake_domain::{Metric, Partition};

    const LAKE: &str = "lake";

    fn job() -> Retention<MemoryObjects, MemoryCatalog, MemoryAuditLog> {
        Retention {
            objects: MemoryObjects::default(),
            catalog: MemoryCatalog::default(),
            audit: MemoryAuditLog::default(),
            lake_bucket: LAKE.into(),
            years: 3,
        }
    }

    fn add(job: &Retention<MemoryObjects, MemoryCatalog, MemoryAuditLog>, p: Partition) {
        job.objects
            .insert(LAKE, &format!("readings/{p}/part-0.parquet"), vec![1u8; 10]);
        job.catalog.partitions.lock().unwrap().push(p);
    }

    fn on(day: &str) -> Partition {
        Partition::of(
            Metric::Spo2,
            parse_rfc3339_ms(&format!("{day}T12:00:00Z")).unwrap(),
        )
    }

    #[tokio::test]
    async fn only_partitions_measured_before_the_cutoff_go_and_unknown_prefixes_stay() {
        let j = job();
        for day in ["2022-01-05", "2023-11-29", "2023-11-30", "2026-11-29"] {
            add(&j, on(day));
        }
        j.objects.insert(
            LAKE,
            "readings/metric=spo2/year=20x3/month=01/day=01/a",
            vec![1],
        );
        j.objects
            .insert(LAKE, "readings/_tmp/year=2001/month=01/day=01/a", vec![1]);
        let now = parse_rfc3339_ms("2026-11-30T03:15:00Z").unwrap();

        let dry = j.run(now, true, || true).await.unwrap();
        assert_eq!((dry.partitions_expired, dry.object_versions), (2, 2));
        assert_eq!(j.objects.keys(LAKE).len(), 6, "a dry run deletes nothing");
        assert_eq!(j.catalog.snapshot().len(), 4);

        let run = j.run(now, false, || true).await.unwrap();
        assert_eq!(run.cutoff, "2023-11-30");
        assert_eq!((run.partitions_removed, run.bytes), (2, 20));
        assert!(run.complete && run.failures.is_empty());
        assert_eq!(run.skipped.len(), 2, "{:?}", run.skipped);
        assert_eq!(
            j.catalog.snapshot(),
            vec![on("2023-11-30"), on("2026-11-29")]
        );
        assert_eq!(j.objects.keys(LAKE).len(), 4);
        assert_eq!(j.audit.0.lock().unwrap().len(), 2, "every run is reported");

        let again = j.run(now, false, || true).await.unwrap();
        assert_eq!(again.partitions_expired, 0, "a second run is a no-op");
    }

    #[tokio::test]
    async fn a_run_out_of_time_stops_between_partitions_and_the_next_one_finishes() {
        let j = job();
        for day in ["2020-01-01", "2020-06-01", "2021-01-01", "2022-01-01"] {
            add(&j, on(day));
        }
        let now = parse_rfc3339_ms("2026-11-30T03:15:00Z").unwrap();
        let mut budget = 3;
        let first = j
            .run(now, false, || {
                budget -= 1;
                budget >= 0
            })
            .await
            .unwrap();
        assert!(!first.complete);
        assert_eq!(first.partitions_removed, 3);
        assert_eq!(j.catalog.snapshot(), vec![on("2022-01-01")], "oldest first");
        let second = j.run(now, false, || true).await.unwrap();
        assert!(second.complete);
        assert_eq!(second.partitions_removed, 1);
        assert!(j.catalog.snapshot().is_empty() && j.objects.keys(LAKE).is_empty());
    }

    #[tokio::test]
    async fn a_clock_before_the_lake_began_removes_nothing() {
        let j = job();
        add(&j, on("2020-01-01"));
        let run = j.run(0, false, || true).await.unwrap();
        assert_eq!(run.partitions_expired, 0);
        assert_eq!(j.objects.keys(LAKE).len(), 1);
    }
}
