//! Typed configuration from the environment; a missing or bad value fails the cold
//! start with a message naming the variable, never a request.

use std::time::Duration;

use pulselake_adapters::{ConfigError, env_number, env_var};
use pulselake_domain::TimePolicy;
use pulselake_domain::time::DAY_MS;

/// Which event source mapping invokes this deployment of the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The devices' Kinesis stream (the default).
    Kinesis,
    /// A legacy platform's Kafka topic: Amazon MSK or a self-managed cluster.
    Kafka,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub trigger: Trigger,
    /// Firehose delivery stream into the lake.
    pub delivery_stream: String,
    pub quarantine_bucket: String,
    pub registry_table: String,
    /// SSM parameter holding the device-mapping document; the built-in mappings when unset.
    pub mappings_parameter: Option<String>,
    pub policy: TimePolicy,
    pub registry_ttl: Duration,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let mut policy = TimePolicy::stream();
        policy.max_future_skew_ms = env_number("MAX_FUTURE_SKEW_SECONDS", 300i64)? * 1000;
        policy.max_age_ms = Some(env_number("MAX_READING_AGE_HOURS", 7 * 24i64)? * DAY_MS / 24);
        let trigger = match env_var("TRIGGER").ok().as_deref() {
            None | Some("kinesis") => Trigger::Kinesis,
            Some("kafka") => Trigger::Kafka,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "TRIGGER".into(),
                    why: format!("{other:?} is not a trigger; use kinesis or kafka"),
                });
            }
        };
        Ok(Config {
            trigger,
            delivery_stream: env_var("DELIVERY_STREAM_NAME")?,
            quarantine_bucket: env_var("QUARANTINE_BUCKET")?,
            registry_table: env_var("REGISTRY_TABLE")?,
            mappings_parameter: env_var("DEVICE_MAPPINGS_PARAMETER").ok(),
            policy,
            registry_ttl: Duration::from_secs(env_number("REGISTRY_CACHE_SECONDS", 300u64)?),
        })
    }
}
