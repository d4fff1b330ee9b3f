//! stream-ingest: Kinesis (device messages from IoT Core) -> canonical readings ->
//! Firehose -> the lake. Bad records go to quarantine with a reason; records that
//! could not be finished are reported back as batch item failures.
//!
//! The same binary, deployed a second time with `TRIGGER=kafka`, takes a legacy
//! platform's Kafka topic (Amazon MSK, or Event Hubs' Kafka endpoint) during the
//! migration, through the same path.

pub mod config;
pub mod delivery;
pub mod event;
pub mod handler;
pub mod record;

use std::time::Duration;

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::LambdaEvent;
use pulselake_adapters::{
    CachedRegistry, DynamoRegistry, FirehoseSink, Metrics, ObjectWriter, RecordSink,
    RegistryLookup, S3Objects, SdkConfig,
};
use pulselake_domain::DeviceMappings;

pub use config::{Config, Trigger};
pub use event::StreamBatch;
pub use handler::{Ingest, IngestError, KafkaOutcome, Outcome, Stats};
pub use pulselake_adapters::kafka_events::KafkaBatch;
pub use pulselake_adapters::lambda_batch::{KafkaBatchResponse, kafka_response};

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
    let deadline = deadline_of(&event.context, now_ms);
    let result = ingest.handle(&event.payload, deadline, now_ms).await;
    report(
        result.as_ref().map(|o| &o.stats),
        event.payload.records.len(),
    );
    Ok(response(result?.failed_sequence_numbers))
}

/// One Kafka invocation: as [`function_handler`], answering with the failed
/// topic-partitions and offsets.
pub async fn kafka_handler<S: RecordSink, Q: ObjectWriter, R: RegistryLookup>(
    event: LambdaEvent<KafkaBatch>,
    ingest: &Ingest<S, Q, R>,
) -> Result<KafkaBatchResponse, IngestError> {
    let now_ms = now_ms();
    let deadline = deadline_of(&event.context, now_ms);
    let result = ingest.handle_kafka(&event.payload, deadline, now_ms).await;
    let records = event.payload.records.values().map(Vec::len).sum();
    report(result.as_ref().map(|o| &o.stats), records);
    Ok(kafka_response(result?.failed))
}

fn deadline_of(context: &lambda_runtime::Context, now_ms: i64) -> tokio::time::Instant {
    let left = Duration::from_millis((context.deadline as i64 - now_ms).max(0) as u64);
    tokio::time::Instant::now() + left
}

/// Metrics and one summary log line for the invocation.
fn report(result: Result<&Stats, &IngestError>, records: usize) {
    match result {
        Ok(s) => {
            emit(s);
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
                .count("RecordsReceived", records as u64);
            m.flush();
            tracing::error!(error = %e, records, "batch failed");
        }
    }
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
