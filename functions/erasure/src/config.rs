//! Typed configuration from the environment, checked at cold start.

use pulselake_adapters::{ConfigError, env_var};

#[derive(Debug, Clone)]
pub struct Config {
    pub lake_bucket: String,
    pub erasure_table: String,
    /// Passes and their units' evidence.
    pub passes_table: String,
    /// The erasure queue's URL (a pass's units).
    pub queue_url: String,
    pub audit_bucket: String,
    pub staging_bucket: String,
    pub processed_bucket: String,
    pub quarantine_bucket: String,
    pub naming_key_secret: String,
    /// Exports not yet downloaded lose the subjects' Observations.
    pub exports_bucket: String,
    pub jobs_table: String,
    pub partners_table: String,
    /// Alert state and device heartbeats: the subjects' go too.
    pub alert_state_table: String,
    pub heartbeats_table: String,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            lake_bucket: env_var("LAKE_BUCKET")?,
            erasure_table: env_var("ERASURE_TABLE")?,
            passes_table: env_var("PASSES_TABLE")?,
            queue_url: env_var("ERASURE_QUEUE_URL")?,
            audit_bucket: env_var("AUDIT_BUCKET")?,
            staging_bucket: env_var("STAGING_BUCKET")?,
            processed_bucket: env_var("PROCESSED_BUCKET")?,
            quarantine_bucket: env_var("QUARANTINE_BUCKET")?,
            naming_key_secret: env_var("NAMING_KEY_SECRET")?,
            exports_bucket: env_var("EXPORTS_BUCKET")?,
            jobs_table: env_var("EXPORT_JOBS_TABLE")?,
            partners_table: env_var("PARTNERS_TABLE")?,
            alert_state_table: env_var("ALERT_STATE_TABLE")?,
            heartbeats_table: env_var("HEARTBEATS_TABLE")?,
        })
    }
}
