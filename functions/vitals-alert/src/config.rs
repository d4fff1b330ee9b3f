//! Typed configuration from the environment, checked at cold start.

use pulselake_adapters::{ConfigError, env_var};

#[derive(Debug, Clone)]
pub struct Config {
    pub registry_table: String,
    pub state_table: String,
    pub alerts_topic_arn: String,
    /// Devices' last-heard times, for the silence sweep (device-watch).
    pub heartbeat_table: String,
    /// The rules document's SSM parameter; the built-in default rules when absent.
    pub rules_parameter: Option<String>,
    pub mappings_parameter: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            registry_table: env_var("REGISTRY_TABLE")?,
            state_table: env_var("ALERT_STATE_TABLE")?,
            alerts_topic_arn: env_var("ALERTS_TOPIC_ARN")?,
            heartbeat_table: env_var("HEARTBEAT_TABLE")?,
            rules_parameter: env_var("ALERT_RULES_PARAMETER").ok(),
            mappings_parameter: env_var("DEVICE_MAPPINGS_PARAMETER").ok(),
        })
    }
}
