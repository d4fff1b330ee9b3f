//! Shared SDK configuration, loaded once per cold start.

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the SDK configuration from the environment (region, credentials and, for the
/// local stack, `AWS_ENDPOINT_URL`). Call once in `main` and build every client from it.
pub async fn load_config() -> SdkConfig {
    aws_config::load_defaults(BehaviorVersion::latest()).await
}

/// An S3 client. Against a custom endpoint (the local stack) addressing is path-style,
/// since `bucket.127.0.0.1` does not resolve.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let builder =
        aws_sdk_s3::config::Builder::from(config).force_path_style(config.endpoint_url().is_some());
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// Reads a required environment variable, naming it in the error so a misconfigured
/// function fails at init with a message that says what to set.
pub fn env_var(name: &str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError(format!(
            "environment variable {name} must be set"
        ))),
    }
}

/// Reads an optional numeric environment variable with a default.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| {
            ConfigError(format!(
                "environment variable {name}={v:?} is not a valid number"
            ))
        }),
        _ => Ok(default),
    }
}

/// Configuration that makes a function unable to start.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);
