//! Typed configuration from the environment, checked at cold start.

use pulselake_adapters::{ConfigError, env_var};

#[derive(Debug, Clone)]
pub struct Config {
    /// The API's public base URL (`https://<api id>.execute-api.<region>.amazonaws.com/v1`).
    pub base_url: String,
    pub partners_table: String,
    pub jobs_table: String,
    pub claims_table: String,
    pub signing_key_id: String,
    pub audit_bucket: String,
    pub exports_bucket: String,
    pub lake_bucket: String,
    pub export_queue_url: String,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            base_url: env_var("PUBLIC_BASE_URL")?.trim_end_matches('/').to_owned(),
            partners_table: env_var("PARTNERS_TABLE")?,
            jobs_table: env_var("EXPORT_JOBS_TABLE")?,
            claims_table: env_var("CLAIMS_TABLE")?,
            signing_key_id: env_var("TOKEN_SIGNING_KEY")?,
            audit_bucket: env_var("AUDIT_BUCKET")?,
            exports_bucket: env_var("EXPORTS_BUCKET")?,
            lake_bucket: env_var("LAKE_BUCKET")?,
            export_queue_url: env_var("EXPORT_QUEUE_URL")?,
        })
    }
}

/// Where the API is and what it works on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The public base URL (`https://<api>/v1`): token audience, absolute URLs.
    pub base_url: String,
    pub lake_bucket: String,
    pub exports_bucket: String,
}

impl Settings {
    pub fn token_url(&self) -> String {
        format!("{}/auth/token", self.base_url)
    }

    pub fn fhir_base(&self) -> String {
        format!("{}/fhir", self.base_url)
    }
}
