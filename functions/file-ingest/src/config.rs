//! Typed configuration from the environment, checked at cold start.

use std::time::Duration;

use pulselake_adapters::{ConfigError, env_number, env_var};

#[derive(Debug, Clone)]
pub struct Config {
    pub lake_bucket: String,
    pub quarantine_bucket: String,
    pub processed_bucket: String,
    pub dedup_table: String,
    pub registry_table: String,
    pub alias_table: String,
    pub ops_topic_arn: String,
    pub mappings_parameter: Option<String>,
    pub dedup_ttl: Duration,
    /// The secret whose value keys file references (lake file names, logs).
    pub naming_key_secret: String,
    /// The lake's retention (`LAKE_RETENTION_YEARS`, at least 3): older readings are
    /// refused at the door.
    pub retention_years: u32,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            lake_bucket: env_var("LAKE_BUCKET")?,
            quarantine_bucket: env_var("QUARANTINE_BUCKET")?,
            processed_bucket: env_var("PROCESSED_BUCKET")?,
            dedup_table: env_var("DEDUP_TABLE")?,
            registry_table: env_var("REGISTRY_TABLE")?,
            alias_table: env_var("ALIAS_TABLE")?,
            ops_topic_arn: env_var("OPS_TOPIC_ARN")?,
            mappings_parameter: env_var("DEVICE_MAPPINGS_PARAMETER").ok(),
            dedup_ttl: Duration::from_secs(env_number("DEDUP_TTL_DAYS", 400u64)? * 86_400),
            naming_key_secret: env_var("NAMING_KEY_SECRET")?,
            retention_years: env_number(
                "LAKE_RETENTION_YEARS",
                pulselake_domain::retention::MIN_RETENTION_YEARS,
            )?,
        })
    }
}
