//! Typed configuration from the environment, checked at cold start.

use pulselake_adapters::{ConfigError, env_var};

#[derive(Debug, Clone)]
pub struct Config {
    pub registry_table: String,
    pub heartbeat_table: String,
    pub alerts_topic_arn: String,
    /// The alert rules document (its `device_silence` section); built-in rules when absent.
    pub rules_parameter: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            registry_table: env_var("REGISTRY_TABLE")?,
            heartbeat_table: env_var("HEARTBEAT_TABLE")?,
            alerts_topic_arn: env_var("ALERTS_TOPIC_ARN")?,
            rules_parameter: env_var("ALERT_RULES_PARAMETER").ok(),
        })
    }
}
