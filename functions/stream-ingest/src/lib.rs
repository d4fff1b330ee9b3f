//! stream-ingest: Kinesis (device messages from IoT Core) -> canonical readings ->
//! Firehose -> the lake. Bad records go to quarantine with a reason; records that
//! could not be finished are reported back as batch item failures.

pub mod config;
pub mod delivery;
pub mod event;
pub mod handler;

use std::time::Duration;

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::LambdaEvent;
use pulselake_adapters::{
    CachedRegistry, DynamoRegistry, FirehoseSink, Metrics, ObjectWriter, RecordSink,
    RegistryLookup, S3Objects, SdkConfig,
};
use pulselake_domain::DeviceMappings;

pub use config::Config;
pub use event::StreamBatch;
pub use handler::{Ingest, IngestError, Outcome, Stats};

/// The production wiring: SDK adapters built from one shared configuration.
pub type AwsIngest = Ingest<FirehoseSink, S3Objects, DynamoRegistry>;

/// Builds the function's dependencies once per cold start.
pub async fn build(config: &Config, sdk: &SdkConfig) -> Result<AwsIngest, lambda_runtime::Error> {
    let mappings = match &config.mappings_parameter {
        Some(name) => {
            let doc = pulselake_adapters::params::read_parameter(sdk, name).await?;
            DeviceMappings::from_json(&doc)?
        }
        None => DeviceMappings::builtin(),
    };
    Ok(Ingest {
        sink: FirehoseSink::from_config(sdk, &config.delivery_stream),
        quarantine: S3Objects::from_config(sdk),
        quarantine_bucket: config.quarantine_bucket.clone(),
        registry: CachedRegistry::new(
            DynamoRegistry::from_config(sdk, &config.registry_table),
            config.registry_ttl,
            Duration::from_secs(60),
        ),
        mappings,
        policy: config.policy,
        retry: Default::default(),
        scratch: Default::default(),
    })
}

/// One invocation: runs the batch against the invocation's deadline, emits metrics
/// and one summary log line, and answers Lambda with the failed sequence numbers.
pub async fn function_handler<S: RecordSink, Q: ObjectWriter, R: RegistryLookup>(
    event: LambdaEvent<StreamBatch>,
    ingest: &Ingest<S, Q, R>,
) -> Result<KinesisEventResponse, IngestError> {
    let now_ms = now_ms();
    let left = Duration::from_millis((event.context.deadline as i64 - now_ms).max(0) as u64);
    let deadline = tokio::time::Instant::now() + left;
    let result = ingest.handle(&event.payload, deadline, now_ms).await;
    match &result {
        Ok(outcome) => {
            emit(&outcome.stats);
            let s = &outcome.stats;
            tracing::info!(
                records = s.records,
                delivered = s.readings_delivered,
                quarantined = s.readings_quarantined(),
                unreadable = s.unreadable_records.values().sum::<usize>(),
                duplicates = s.duplicates,
                resent = s.firehose_resent,
                failed_records = s.failed_records,
                "batch processed"
            );
        }
        Err(e) => {
            let mut m = Metrics::new("stream-ingest");
            m.count("BatchesFailed", 1)
                .count("RecordsReceived", event.payload.records.len() as u64);
            m.flush();
            tracing::error!(error = %e, records = event.payload.records.len(), "batch failed");
        }
    }
    let outcome = result?;
    Ok(response(outcome.failed_sequence_numbers))
}

pub use pulselake_adapters::lambda_batch::kinesis_response as response;

fn emit(s: &Stats) {
    let mut m = Metrics::new("stream-ingest");
    m.count("RecordsReceived", s.records as u64)
        .count("ReadingsDelivered", s.readings_delivered as u64)
        .count("ReadingsQuarantined", s.readings_quarantined() as u64)
        .count("DuplicatesAbsorbed", s.duplicates as u64)
        .count("FirehoseEntriesRetried", s.firehose_resent as u64)
        .count("RecordsFailed", s.failed_records as u64)
        .millis("IngestLag", s.max_lag_ms as f64);
    for (reason, n) in &s.quarantined_readings {
        m.count_reason("ReadingsQuarantined", reason.code(), *n as u64);
    }
    for (reason, n) in &s.unreadable_records {
        m.count_reason("RecordsUnreadable", reason.code(), *n as u64);
    }
    m.flush();
}

pub use pulselake_adapters::now_ms;
