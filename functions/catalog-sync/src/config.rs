//! Typed configuration from the environment, checked at cold start.

use pulselake_adapters::{ConfigError, env_var};

#[derive(Debug, Clone)]
pub struct Config {
    pub lake_bucket: String,
    pub database: String,
    pub table: String,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            lake_bucket: env_var("LAKE_BUCKET")?,
            database: env_var("GLUE_DATABASE")?,
            table: env_var("GLUE_TABLE").unwrap_or_else(|_| "readings".into()),
        })
    }
}
