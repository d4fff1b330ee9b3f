//! Typed configuration from the environment, checked at cold start.

use pulselake_adapters::{ConfigError, env_number, env_var};

#[derive(Debug, Clone)]
pub struct Config {
    pub lake_bucket: String,
    pub audit_bucket: String,
    /// Rows a partition may hold to be compacted in memory.
    pub max_rows: u64,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            lake_bucket: env_var("LAKE_BUCKET")?,
            audit_bucket: env_var("AUDIT_BUCKET")?,
            max_rows: env_number("MAX_PARTITION_ROWS", 20_000_000)?,
        })
    }
}
