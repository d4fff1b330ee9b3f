//! catalog-sync: lake objects created or removed -> partitions of the Glue readings
//! table, so Athena sees a new day as soon as its first file lands (no MSCK REPAIR,
//! no crawler), and a partition whose last file went away stops being listed.

pub mod config;
pub mod sync;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use pulselake_adapters::lambda_batch::{sqs_messages, sqs_response};
use pulselake_adapters::{
    AwsError, Catalog, GlueCatalog, Metrics, ObjectReader, S3Objects, SdkConfig,
};

pub use config::Config;
pub use sync::{CatalogSync, Message, SyncOutcome, SyncStats};

pub type AwsCatalogSync = CatalogSync<GlueCatalog, S3Objects>;

/// Builds the function's clients once per cold start (the table's storage descriptor
/// is read on first use and kept for the container's life).
pub fn build(config: &Config, sdk: &SdkConfig) -> AwsCatalogSync {
    CatalogSync {
        catalog: GlueCatalog::from_config(sdk, &config.database, &config.table),
        objects: S3Objects::from_config(sdk),
        lake_bucket: config.lake_bucket.clone(),
    }
}

/// Why the whole batch failed (each message is retried, then goes to the DLQ).
#[derive(Debug, thiserror::Error)]
#[error("catalog batch failed: {0}")]
pub struct BatchError(AwsError);

impl From<BatchError> for lambda_runtime::Diagnostic {
    fn from(e: BatchError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "CatalogSync.BatchFailed".into(),
            error_message: e.to_string(),
        }
    }
}

/// One invocation: the SQS batch, with a partial batch response by message id.
pub async fn function_handler<C: Catalog, O: ObjectReader>(
    event: LambdaEvent<SqsEvent>,
    sync: &CatalogSync<C, O>,
) -> Result<SqsBatchResponse, BatchError> {
    let messages = sqs_messages(&event.payload);
    let outcome = sync.handle_batch(&messages).await.map_err(BatchError)?;
    let s = &outcome.stats;
    Metrics::new("catalog-sync")
        .count("PartitionsCreated", s.created as u64)
        .count("PartitionsExisting", s.existing as u64)
        .count("PartitionsDropped", s.dropped as u64)
        .count("ObjectsIgnored", s.ignored as u64)
        .count("MessagesFailed", s.failed_messages as u64)
        .flush();
    tracing::info!(
        messages = s.messages,
        objects = s.objects,
        partitions = s.partitions,
        created = s.created,
        existing = s.existing,
        dropped = s.dropped,
        ignored = s.ignored,
        failed = s.failed_messages,
        "batch processed"
    );
    Ok(sqs_response(outcome.failed_message_ids))
}
