//! Typed configuration from the environment, checked at cold start.

use pulselake_adapters::{ConfigError, env_var};

#[derive(Debug, Clone)]
pub struct Config {
    pub lake_bucket: String,
    pub erasure_table: String,
    pub audit_bucket: String,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            lake_bucket: env_var("LAKE_BUCKET")?,
            erasure_table: env_var("ERASURE_TABLE")?,
            audit_bucket: env_var("AUDIT_BUCKET")?,
        })
    }
}
