//! Configuration documents (device mappings, alert rules) kept in SSM parameters,
//! read once at cold start: changing one is data, not a deploy of code.

use crate::error::AwsError;

/// Reads a parameter's value (decrypted if it is a SecureString).
pub async fn read_parameter(sdk: &aws_config::SdkConfig, name: &str) -> Result<String, AwsError> {
    const OP: &str = "ssm:GetParameter";
    let out = aws_sdk_ssm::Client::new(sdk)
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(OP, e))?;
    out.parameter()
        .and_then(|p| p.value())
        .map(str::to_owned)
        .ok_or_else(|| AwsError::permanent(OP, format!("parameter {name} has no value")))
}
