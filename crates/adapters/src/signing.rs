//! Access tokens are signed by a KMS asymmetric key (RSA, RS256): the private key never
//! leaves KMS; the API verifies with the public key, fetched once per cold start.

use std::future::Future;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::AwsError;

/// Port: signs a token's signing input.
pub trait TokenSigner: Send + Sync {
    /// The RS256 (RSASSA-PKCS1-v1_5, SHA-256) signature of `message`.
    fn sign(&self, message: &[u8]) -> impl Future<Output = Result<Vec<u8>, AwsError>> + Send;
    /// The public key as PEM (SubjectPublicKeyInfo), to verify tokens with.
    fn public_key_pem(&self) -> impl Future<Output = Result<String, AwsError>> + Send;
    /// Names the key in tokens (`kid`).
    fn key_id(&self) -> &str;
}

pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsSigner {
    pub fn from_config(sdk: &aws_config::SdkConfig, key_id: impl Into<String>) -> KmsSigner {
        KmsSigner {
            client: aws_sdk_kms::Client::new(sdk),
            key_id: key_id.into(),
        }
    }
}

/// A DER SubjectPublicKeyInfo as PEM.
pub fn spki_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

impl TokenSigner for KmsSigner {
    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AwsError> {
        let out = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(aws_smithy_types::Blob::new(message.to_vec()))
            .message_type(aws_sdk_kms::types::MessageType::Raw)
            .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::RsassaPkcs1V15Sha256)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("kms:Sign", e))?;
        Ok(out
            .signature()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default())
    }

    async fn public_key_pem(&self) -> Result<String, AwsError> {
        let out = self
            .client
            .get_public_key()
            .key_id(&self.key_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("kms:GetPublicKey", e))?;
        let der = out
            .public_key()
            .ok_or_else(|| AwsError::permanent("kms:GetPublicKey", "the key has no public key"))?;
        Ok(spki_pem(der.as_ref()))
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }
}
