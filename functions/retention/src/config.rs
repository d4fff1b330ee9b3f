//! Typed configuration from the environment, checked at cold start.

use pulselake_adapters::{ConfigError, env_number, env_var};
use pulselake_domain::retention::MIN_RETENTION_YEARS;

#[derive(Debug, Clone)]
pub struct Config {
    pub lake_bucket: String,
    pub glue_database: String,
    pub glue_table: String,
    pub audit_bucket: String,
    /// Calendar years of measurements the lake keeps (at least 3).
    pub years: u32,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let years: u32 = env_number("RETENTION_YEARS", MIN_RETENTION_YEARS)?;
        if years < MIN_RETENTION_YEARS {
            return Err(ConfigError::Invalid {
                name: "RETENTION_YEARS".into(),
                why: format!("{years} is below the {MIN_RETENTION_YEARS} years the lake must keep"),
            });
        }
        Ok(Config {
            lake_bucket: env_var("LAKE_BUCKET")?,
            glue_database: env_var("GLUE_DATABASE")?,
            glue_table: env_var("GLUE_TABLE")?,
            audit_bucket: env_var("AUDIT_BUCKET")?,
            years,
        })
    }
}
