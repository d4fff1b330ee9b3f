//! Typed configuration from the environment, checked at cold start.

use pulselake_adapters::{ConfigError, env_var};

#[derive(Debug, Clone)]
pub struct Config {
    pub jobs_table: String,
    pub partners_table: String,
    /// The device registry: a Group export needs the subjects' cohorts.
    pub registry_table: String,
    pub lake_bucket: String,
    pub exports_bucket: String,
    pub audit_bucket: String,
    /// Erasure requests: tombstoned subjects are never exported.
    pub erasure_table: String,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            jobs_table: env_var("EXPORT_JOBS_TABLE")?,
            partners_table: env_var("PARTNERS_TABLE")?,
            registry_table: env_var("REGISTRY_TABLE")?,
            lake_bucket: env_var("LAKE_BUCKET")?,
            exports_bucket: env_var("EXPORTS_BUCKET")?,
            audit_bucket: env_var("AUDIT_BUCKET")?,
            erasure_table: env_var("ERASURE_TABLE")?,
        })
    }
}
