//! Shared SDK configuration, loaded once per cold start.

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the SDK configuration from the environment (region, credentials and, for the
/// local stack, `AWS_ENDPOINT_URL`). Call once in `main` and build every client from it.
pub async fn load_config() -> SdkConfig {
    with_client_policy(aws_config::defaults(BehaviorVersion::latest()))
        .load()
        .await
}

/// The SDK's own retries and timeouts, set once for every client: standard mode (with
/// its retry quota, so a failing service is not hammered), 3 attempts, and a bound on
/// each attempt so a stuck connection cannot eat an invocation. The ports' own retries
/// ([`crate::retry`]) cover what the SDK does not see as a failure.
pub fn with_client_policy(loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    use std::time::Duration;
    loader
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(50)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(20))
                .build(),
        )
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
        _ => Err(ConfigError::Missing(name.to_owned())),
    }
}

/// Reads an optional numeric environment variable with a default.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| ConfigError::NotANumber {
            name: name.to_owned(),
            value: v.clone(),
        }),
        _ => Ok(default),
    }
}

/// Configuration that makes a function unable to start, naming what to set.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: environment variable {0} must be set")]
    Missing(String),
    #[error("configuration: environment variable {name}={value:?} is not a valid number")]
    NotANumber { name: String, value: String },
    #[error("configuration: environment variable {name}: {why}")]
    Invalid { name: String, why: String },
}

/// Every item a Scan returns, page after page (the request as the caller built it:
/// table, filter, consistency).
pub async fn scan_items(
    request: aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder,
) -> Result<
    Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
    crate::AwsError,
> {
    let mut out = Vec::new();
    let mut pages = request.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| crate::AwsError::from_sdk("dynamodb:Scan", e))?;
        out.extend(page.items().iter().cloned());
    }
    Ok(out)
}

/// Whether a DynamoDB call failed because its condition did not hold (an expected
/// outcome of a conditional write: a claim taken, a count already made).
pub(crate) fn is_conditional_failure<E>(
    e: &aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    e.as_service_error().and_then(|se| se.code()) == Some("ConditionalCheckFailedException")
}
