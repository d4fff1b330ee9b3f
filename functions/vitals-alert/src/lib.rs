//! vitals-alert: a second consumer of the vitals stream, independent of stream-ingest
//! (its own event source mapping, its own failures and retries). Readings are decoded
//! and validated by the same domain code as the lake's; rules from a validated document
//! decide; state and cooldowns live in DynamoDB; alerts go to SNS.

pub mod config;
pub mod evaluate;

use std::time::Duration;

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::LambdaEvent;
use pulselake_adapters::kinesis_events::StreamBatch;
use pulselake_adapters::lambda_batch::kinesis_response;
use pulselake_adapters::{
    AlertPublisher, AlertStates, CachedRegistry, DynamoAlertStates, DynamoHeartbeats,
    DynamoRegistry, Heartbeats, Metrics, RegistryLookup, SdkConfig, SnsAlerts,
};
use pulselake_domain::alerting::{DEFAULT_RULES, RuleSet};
use pulselake_domain::{DeviceMappings, TimePolicy};

pub use config::Config;
pub use evaluate::{AlertError, AlertStats, Outcome, VitalsAlert};

pub type AwsVitalsAlert =
    VitalsAlert<DynamoRegistry, DynamoAlertStates, SnsAlerts, DynamoHeartbeats>;

/// Builds the function once per cold start. The rules document is read and validated
/// here: a bad one fails the container's start with the reason, never a patient's page.
pub async fn build(
    config: &Config,
    sdk: &SdkConfig,
) -> Result<AwsVitalsAlert, lambda_runtime::Error> {
    let rules_text = match &config.rules_parameter {
        Some(name) => pulselake_adapters::params::read_parameter(sdk, name).await?,
        None => DEFAULT_RULES.to_owned(),
    };
    let rules = RuleSet::from_json(&rules_text)?;
    let mappings = match &config.mappings_parameter {
        Some(name) => DeviceMappings::from_json(
            &pulselake_adapters::params::read_parameter(sdk, name).await?,
        )?,
        None => DeviceMappings::builtin(),
    };
    tracing::info!(rules = rules.rules().len(), "alert rules loaded");
    Ok(VitalsAlert {
        registry: CachedRegistry::new(
            DynamoRegistry::from_config(sdk, &config.registry_table),
            Duration::from_secs(300),
            Duration::from_secs(60),
        ),
        mappings,
        rules,
        states: DynamoAlertStates::from_config(sdk, &config.state_table),
        publisher: SnsAlerts::from_config(sdk, &config.alerts_topic_arn),
        policy: TimePolicy::stream(),
        heartbeats: DynamoHeartbeats::from_config(sdk, &config.heartbeat_table),
        heard: Default::default(),
    })
}

impl From<AlertError> for lambda_runtime::Diagnostic {
    fn from(e: AlertError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "VitalsAlert.BatchFailed".into(),
            error_message: e.to_string(),
        }
    }
}

/// One invocation: the Kinesis batch, with a partial batch response by sequence number.
pub async fn function_handler<
    R: RegistryLookup,
    S: AlertStates,
    P: AlertPublisher,
    H: Heartbeats,
>(
    event: LambdaEvent<StreamBatch>,
    alert: &VitalsAlert<R, S, P, H>,
) -> Result<KinesisEventResponse, AlertError> {
    let result = alert.handle(&event.payload, now_ms()).await;
    match &result {
        Ok(o) => {
            let s = &o.stats;
            let mut m = Metrics::new("vitals-alert");
            m.count("RecordsReceived", s.records as u64)
                .count("ReadingsEvaluated", s.readings as u64)
                .count("AlertsPublished", s.published as u64)
                .count("AlertsSuppressed", s.suppressed as u64)
                .count("ReplaysIgnored", s.replays as u64)
                .count("StateConflicts", s.conflicts as u64)
                .count("ReadingsImplausible", s.implausible as u64)
                .count("RecordsDeviceMismatch", s.mismatched as u64)
                .count("HeartbeatsRecorded", s.heartbeats as u64)
                .count("RecordsFailed", s.failed_records as u64);
            if let Some(max) = s.latencies_ms.iter().max() {
                m.millis("AlertLatency", *max as f64);
            }
            m.flush();
            tracing::info!(
                records = s.records,
                readings = s.readings,
                pairs = s.pairs,
                published = s.published,
                suppressed = s.suppressed,
                replays = s.replays,
                writes = s.state_writes,
                failed_records = s.failed_records,
                "batch evaluated"
            );
        }
        Err(e) => {
            Metrics::new("vitals-alert")
                .count("BatchesFailed", 1)
                .flush();
            tracing::error!(error = %e, records = event.payload.records.len(), "batch failed");
        }
    }
    let outcome = result?;
    Ok(kinesis_response(outcome.failed_sequence_numbers))
}

pub use pulselake_adapters::now_ms;
