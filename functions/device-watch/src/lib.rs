//! device-watch: every minute (EventBridge schedule), the heartbeats vitals-alert
//! records are swept; an assigned device silent for longer than the rules document's
//! `device_silence.after_seconds` raises one technical page, and one recovery page when
//! it is heard again.

pub mod config;
pub mod watch;

use std::time::Duration;

use lambda_runtime::LambdaEvent;
use pulselake_adapters::{
    AlertPublisher, CachedRegistry, DynamoHeartbeats, DynamoRegistry, Heartbeats, Metrics,
    RegistryLookup, SdkConfig, SnsAlerts,
};
use pulselake_domain::alerting::{DEFAULT_RULES, RuleSet};

pub use config::Config;
pub use watch::{DeviceWatch, WatchError, WatchStats};

pub type AwsDeviceWatch = DeviceWatch<DynamoRegistry, DynamoHeartbeats, SnsAlerts>;

/// Builds the function once per cold start; the rules document is validated here.
pub async fn build(
    config: &Config,
    sdk: &SdkConfig,
) -> Result<AwsDeviceWatch, lambda_runtime::Error> {
    let rules_text = match &config.rules_parameter {
        Some(name) => pulselake_adapters::params::read_parameter(sdk, name).await?,
        None => DEFAULT_RULES.to_owned(),
    };
    let rules = RuleSet::from_json(&rules_text)?;
    Ok(DeviceWatch {
        registry: CachedRegistry::new(
            DynamoRegistry::from_config(sdk, &config.registry_table),
            Duration::from_secs(60),
            Duration::from_secs(60),
        ),
        heartbeats: DynamoHeartbeats::from_config(sdk, &config.heartbeat_table),
        publisher: SnsAlerts::from_config(sdk, &config.alerts_topic_arn),
        rule: rules.device_silence,
    })
}

impl From<WatchError> for lambda_runtime::Diagnostic {
    fn from(e: WatchError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "DeviceWatch.SweepFailed".into(),
            error_message: e.to_string(),
        }
    }
}

/// One scheduled sweep. The event's content does not matter: the clock does.
pub async fn function_handler<R: RegistryLookup, H: Heartbeats, P: AlertPublisher>(
    _event: LambdaEvent<serde_json::Value>,
    watch: &DeviceWatch<R, H, P>,
) -> Result<WatchStats, WatchError> {
    let result = watch.sweep(now_ms()).await;
    match &result {
        Ok(s) => {
            Metrics::new("device-watch")
                .count("DevicesWatched", s.devices as u64)
                .count("DevicesSilent", s.silent as u64)
                .count("SilencePages", s.silence_pages as u64)
                .count("RecoveryPages", s.recovery_pages as u64)
                .count("TransitionsFailed", s.failed as u64)
                .flush();
            tracing::info!(
                devices = s.devices,
                silent = s.silent,
                silence_pages = s.silence_pages,
                recovery_pages = s.recovery_pages,
                failed = s.failed,
                "sweep done"
            );
        }
        Err(e) => tracing::error!(error = %e, "sweep failed"),
    }
    result
}

pub use pulselake_adapters::now_ms;
