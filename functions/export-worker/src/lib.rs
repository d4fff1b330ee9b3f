//! export-worker: the export queue -> this function, one unit of an export job per
//! message (a lake partition, or a day's blood pressure pair). A unit that fails is
//! reported for retry; its files are named by the unit, so a retry overwrites them.

pub mod config;
pub mod convert;
pub mod export;

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use pulselake_adapters::lambda_batch::{sqs_messages, sqs_response};
use pulselake_adapters::{
    AwsError, BucketAuditLog, CachedRegistry, DynamoErasures, DynamoExportJobs, DynamoPartners,
    DynamoRegistry, Metrics, S3Objects, SdkConfig, SecretsManager, WorkUnit,
};

pub use config::Config;
pub use convert::Converter;
pub use export::{ExportWorker, FILE_RESOURCES, UnitError, UnitReport, WorkerPorts};

/// The worker over AWS.
pub struct AwsPorts;

impl WorkerPorts for AwsPorts {
    type Jobs = DynamoExportJobs;
    type Partners = DynamoPartners;
    type Secrets = SecretsManager;
    type Objects = S3Objects;
    type Registry = DynamoRegistry;
    type Audit = BucketAuditLog<S3Objects>;
    type Erasures = DynamoErasures;
}

pub type AwsExportWorker = ExportWorker<AwsPorts>;

/// The export queue's `maxReceiveCount` (template.yaml): a unit's last delivery.
pub const MAX_RECEIVES: u32 = 3;

/// A batch that cannot be answered message by message (a message without an id): it
/// fails whole, and Lambda retries it.
#[derive(Debug, thiserror::Error)]
#[error("export batch failed: {0}")]
pub struct BatchError(#[from] AwsError);

impl From<BatchError> for lambda_runtime::Diagnostic {
    fn from(e: BatchError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "ExportWorker.BatchFailed".into(),
            error_message: e.to_string(),
        }
    }
}

/// Builds the worker's clients once per cold start.
pub fn build(config: &Config, sdk: &SdkConfig) -> AwsExportWorker {
    ExportWorker {
        jobs: DynamoExportJobs::from_config(sdk, &config.jobs_table),
        partners: DynamoPartners::from_config(sdk, &config.partners_table),
        secrets: SecretsManager::from_config(sdk),
        objects: S3Objects::from_config(sdk),
        registry: CachedRegistry::new(
            DynamoRegistry::from_config(sdk, &config.registry_table),
            Duration::from_secs(300),
            Duration::from_secs(60),
        ),
        audit: BucketAuditLog {
            writer: S3Objects::from_config(sdk),
            bucket: config.audit_bucket.clone(),
        },
        erasures: DynamoErasures::from_config(sdk, &config.erasure_table),
        lake_bucket: config.lake_bucket.clone(),
        exports_bucket: config.exports_bucket.clone(),
    }
}

/// One invocation: units in, a partial batch response out (failed units retried, then
/// dead-lettered; the job's watchdog fails the job if a unit never finishes).
pub async fn function_handler<X: WorkerPorts>(
    event: LambdaEvent<SqsEvent>,
    worker: &ExportWorker<X>,
) -> Result<SqsBatchResponse, BatchError> {
    let mut failed = Vec::new();
    let mut total = UnitReport::default();
    for m in sqs_messages(&event.payload) {
        let Some(id) = m.id.filter(|id| !id.is_empty()).map(str::to_owned) else {
            // Without an id the message cannot be reported alone: fail the batch.
            return Err(AwsError::permanent("sqs", "a message without a messageId").into());
        };
        let Some(unit) = m
            .body
            .and_then(|b| serde_json::from_str::<WorkUnit>(b).ok())
        else {
            // Not a unit: retried, then kept in the DLQ for a person to look at.
            tracing::error!("a message is not an export unit");
            failed.push(id);
            continue;
        };
        match worker.run(&unit, pulselake_adapters::now_ms()).await {
            Ok(r) => {
                tracing::info!(
                    job = %unit.job,
                    rows_read = r.rows_read,
                    resources = r.resources,
                    files = r.files,
                    skipped = r.skipped,
                    completed_job = r.completed_job,
                    "unit exported"
                );
                total.rows_read += r.rows_read;
                total.resources += r.resources;
                total.files += r.files;
            }
            Err(e) if m.receive_count >= MAX_RECEIVES => {
                // The queue's last delivery: the unit goes to the dead-letter queue, and
                // its job fails now rather than wait for the watchdog.
                tracing::error!(job = %unit.job, error = %e, "unit failed for the last time; its export fails");
                if let Err(e) = worker
                    .fail_job(&unit, &e, pulselake_adapters::now_ms())
                    .await
                {
                    tracing::error!(job = %unit.job, error = %e, "the export could not be failed");
                }
                failed.push(id);
            }
            Err(e) => {
                tracing::error!(job = %unit.job, error = %e, "unit failed; it will be retried");
                failed.push(id);
            }
        }
    }
    Metrics::new("export-worker")
        .count("RowsRead", total.rows_read)
        .count("ResourcesExported", total.resources)
        .count("UnitsFailed", failed.len() as u64)
        .flush();
    Ok(sqs_response(failed))
}
