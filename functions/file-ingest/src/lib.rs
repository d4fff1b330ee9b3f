//! file-ingest: staged files (seed vendor exports, generic CSV, NDJSON device messages,
//! gzip of any) -> validated readings -> Parquet in the lake, each file exactly once;
//! raw files archived, bad rows quarantined with reasons, ops told of failures.

pub mod chunks;
pub mod config;
pub mod csv;
pub mod error;
pub mod event;
pub mod formats;
pub mod handler;
pub mod intern;
pub mod ndjson;
pub mod pipeline;
pub mod report;
pub mod rows;

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use pulselake_adapters::lambda_batch::{sqs_messages, sqs_response};
use pulselake_adapters::{
    AwsError, CachedRegistry, DedupStore, DynamoAliases, DynamoDedup, DynamoRegistry, Metrics,
    Notifier, ObjectReader, ObjectWriter, RegistryLookup, S3Objects, SdkConfig, SnsTopic,
    SubjectAliases,
};
use pulselake_domain::{DeviceMappings, NamingKey};

pub use config::Config;
pub use handler::{BatchStats, Buckets, FileIngest, Message, Outcome};

pub type AwsFileIngest =
    FileIngest<S3Objects, DynamoDedup, DynamoRegistry, DynamoAliases, SnsTopic>;

/// Builds the function's dependencies once per cold start.
pub async fn build(
    config: &Config,
    sdk: &SdkConfig,
) -> Result<AwsFileIngest, lambda_runtime::Error> {
    let mappings = match &config.mappings_parameter {
        Some(name) => DeviceMappings::from_json(
            &pulselake_adapters::params::read_parameter(sdk, name).await?,
        )?,
        None => DeviceMappings::builtin(),
    };
    Ok(FileIngest {
        objects: S3Objects::from_config(sdk),
        dedup: DynamoDedup::from_config(sdk, &config.dedup_table),
        registry: CachedRegistry::new(
            DynamoRegistry::from_config(sdk, &config.registry_table),
            Duration::from_secs(300),
            Duration::from_secs(60),
        ),
        aliases: DynamoAliases::from_config(sdk, &config.alias_table),
        notifier: SnsTopic::from_config(sdk, &config.ops_topic_arn),
        mappings,
        buckets: Buckets {
            lake: config.lake_bucket.clone(),
            quarantine: config.quarantine_bucket.clone(),
            processed: config.processed_bucket.clone(),
        },
        limits: pipeline::Limits {
            retention_years: config.retention_years,
            ..Default::default()
        },
        dedup_ttl: config.dedup_ttl,
        naming: NamingKey::new(
            pulselake_adapters::secrets::read_secret(sdk, &config.naming_key_secret, None)
                .await?
                .into_bytes(),
        ),
    })
}

/// Why the whole batch failed (each message is retried, then goes to the DLQ).
#[derive(Debug, thiserror::Error)]
#[error("file batch failed: {0}")]
pub struct BatchError(AwsError);

impl From<BatchError> for lambda_runtime::Diagnostic {
    fn from(e: BatchError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "FileIngest.BatchFailed".into(),
            error_message: e.to_string(),
        }
    }
}

/// One invocation: the SQS batch, with a partial batch response by message id.
pub async fn function_handler<
    O: ObjectReader + ObjectWriter,
    D: DedupStore,
    R: RegistryLookup,
    A: SubjectAliases,
    N: Notifier,
>(
    event: LambdaEvent<SqsEvent>,
    ingest: &FileIngest<O, D, R, A, N>,
) -> Result<SqsBatchResponse, BatchError> {
    let left = Duration::from_millis((event.context.deadline as i64 - now_ms()).max(0) as u64);
    let deadline = tokio::time::Instant::now() + left;
    let messages = sqs_messages(&event.payload);
    let outcome = ingest
        .handle_batch(&messages, deadline)
        .await
        .map_err(BatchError)?;
    let s = &outcome.stats;
    let mut m = Metrics::new("file-ingest");
    m.count("FilesIngested", s.files_ingested as u64)
        .count("FilesDuplicate", s.duplicates as u64)
        .count("FilesAlreadyIngested", s.already_ingested as u64)
        .count("ReadingsWritten", s.readings_written)
        .count("ReadingsQuarantined", s.readings_quarantined)
        .count("BytesRead", s.bytes)
        .count("MessagesFailed", s.failed_messages as u64);
    for (reason, n) in &s.files_quarantined {
        m.count_reason("FilesQuarantined", reason.code(), *n as u64);
    }
    m.flush();
    tracing::info!(
        messages = s.messages,
        ingested = s.files_ingested,
        duplicates = s.duplicates,
        quarantined = s.files_quarantined.values().sum::<usize>(),
        written = s.readings_written,
        failed = s.failed_messages,
        "batch processed"
    );
    Ok(sqs_response(outcome.failed_message_ids))
}

pub use pulselake_adapters::now_ms;
