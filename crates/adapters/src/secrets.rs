//! Keys kept in Secrets Manager (KMS-encrypted, versioned, rotatable), read once at cold
//! start. Secret values are never logged.

use crate::error::AwsError;

/// The current value of a secret (a version stage, when given: `AWSCURRENT`,
/// `AWSPREVIOUS`, or a version id).
pub async fn read_secret(
    sdk: &aws_config::SdkConfig,
    secret_id: &str,
    version: Option<&str>,
) -> Result<String, AwsError> {
    const OP: &str = "secretsmanager:GetSecretValue";
    let mut req = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(secret_id);
    req = match version {
        Some(v) if v.starts_with("AWS") => req.version_stage(v),
        Some(v) => req.version_id(v),
        None => req,
    };
    let out = req.send().await.map_err(|e| AwsError::from_sdk(OP, e))?;
    out.secret_string()
        .map(str::to_owned)
        .ok_or_else(|| AwsError::permanent(OP, "the secret has no string value"))
}
