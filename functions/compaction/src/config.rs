//! Typed configuration from the environment, checked at cold start.

use pulselake_adapters::{ConfigError, env_number, env_var};

#[derive(Debug, Clone)]
pub struct Config {
    pub lake_bucket: String,
    pub audit_bucket: String,
    /// Rows sorted in memory at once at most: an output file's range of subjects, or
    /// one subject's day (a subject with more is skipped, with the reason).
    pub max_rows: u64,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            lake_bucket: env_var("LAKE_BUCKET")?,
            audit_bucket: env_var("AUDIT_BUCKET")?,
            max_rows: env_number("MAX_SORT_ROWS", 8_000_000)?,
        })
    }
}
