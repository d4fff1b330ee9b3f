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

/// Port: versioned secrets (partners' pseudonym keys): the current version, and any
/// version by id (an export made before a rotation keeps the key it started with).
pub trait Secrets: Send + Sync {
    /// `(version id, value)` of the current version.
    fn current(
        &self,
        secret_id: &str,
    ) -> impl std::future::Future<Output = Result<(String, String), AwsError>> + Send;
    fn version(
        &self,
        secret_id: &str,
        version_id: &str,
    ) -> impl std::future::Future<Output = Result<String, AwsError>> + Send;
    /// The current version's id, without its value (a caller that only names the
    /// version needs no right to read the key).
    fn current_version(
        &self,
        secret_id: &str,
    ) -> impl std::future::Future<Output = Result<String, AwsError>> + Send;
    /// Every version's id still stored, the current one included.
    fn versions(
        &self,
        secret_id: &str,
    ) -> impl std::future::Future<Output = Result<Vec<String>, AwsError>> + Send;
}

/// Port: creating secrets and new versions of them (the admin CLI: a partner's
/// pseudonym key, and its rotation).
pub trait SecretsAdmin: Secrets {
    /// Creates `name` holding `value` (encrypted with `kms_key`, when given); returns the
    /// version id. `Ok(None)`: it exists already.
    fn create(
        &self,
        name: &str,
        value: &str,
        kms_key: Option<&str>,
    ) -> impl std::future::Future<Output = Result<Option<String>, AwsError>> + Send;
    /// Makes `value` the current version; returns its id.
    fn put_version(
        &self,
        name: &str,
        value: &str,
    ) -> impl std::future::Future<Output = Result<String, AwsError>> + Send;
}

pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManager {
    pub fn from_config(sdk: &aws_config::SdkConfig) -> SecretsManager {
        SecretsManager {
            client: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }
}

impl Secrets for SecretsManager {
    async fn current(&self, secret_id: &str) -> Result<(String, String), AwsError> {
        const OP: &str = "secretsmanager:GetSecretValue";
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        match (out.version_id(), out.secret_string()) {
            (Some(v), Some(s)) => Ok((v.to_owned(), s.to_owned())),
            _ => Err(AwsError::permanent(
                OP,
                "the secret has no current string version",
            )),
        }
    }

    async fn version(&self, secret_id: &str, version_id: &str) -> Result<String, AwsError> {
        const OP: &str = "secretsmanager:GetSecretValue";
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .version_id(version_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        out.secret_string()
            .map(str::to_owned)
            .ok_or_else(|| AwsError::permanent(OP, "the secret version has no string value"))
    }

    async fn current_version(&self, secret_id: &str) -> Result<String, AwsError> {
        const OP: &str = "secretsmanager:DescribeSecret";
        let out = self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        out.version_ids_to_stages()
            .and_then(|m| {
                m.iter()
                    .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
                    .map(|(id, _)| id.clone())
            })
            .ok_or_else(|| AwsError::permanent(OP, "the secret has no current version"))
    }

    async fn versions(&self, secret_id: &str) -> Result<Vec<String>, AwsError> {
        const OP: &str = "secretsmanager:ListSecretVersionIds";
        let mut ids = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .client
                .list_secret_version_ids()
                .secret_id(secret_id)
                // Versions without a stage label are still readable by id: a partner may
                // hold pseudonyms made with any of them.
                .include_deprecated(true)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(OP, e))?;
            ids.extend(
                out.versions()
                    .iter()
                    .filter_map(|v| v.version_id().map(str::to_owned)),
            );
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(ids)
    }
}

impl SecretsAdmin for SecretsManager {
    async fn create(
        &self,
        name: &str,
        value: &str,
        kms_key: Option<&str>,
    ) -> Result<Option<String>, AwsError> {
        let out = self
            .client
            .create_secret()
            .name(name)
            .secret_string(value)
            .set_kms_key_id(kms_key.map(str::to_owned))
            .send()
            .await;
        match out {
            Ok(o) => Ok(Some(o.version_id().unwrap_or_default().to_owned())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_exists_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(AwsError::from_sdk("secretsmanager:CreateSecret", e)),
        }
    }

    async fn put_version(&self, name: &str, value: &str) -> Result<String, AwsError> {
        let out = self
            .client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("secretsmanager:PutSecretValue", e))?;
        Ok(out.version_id().unwrap_or_default().to_owned())
    }
}

/// In-memory secrets: secret id -> versions, the last one current.
#[derive(Default)]
pub struct MemorySecrets(
    pub std::sync::Mutex<std::collections::BTreeMap<String, Vec<(String, String)>>>,
);

impl Secrets for MemorySecrets {
    async fn current(&self, secret_id: &str) -> Result<(String, String), AwsError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(secret_id)
            .and_then(|v| v.last().cloned())
            .ok_or_else(|| AwsError::permanent("secretsmanager:GetSecretValue", "no such secret"))
    }

    async fn version(&self, secret_id: &str, version_id: &str) -> Result<String, AwsError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(secret_id)
            .and_then(|v| {
                v.iter()
                    .find(|(id, _)| id == version_id)
                    .map(|(_, s)| s.clone())
            })
            .ok_or_else(|| {
                AwsError::permanent("secretsmanager:GetSecretValue", "no such secret version")
            })
    }

    async fn current_version(&self, secret_id: &str) -> Result<String, AwsError> {
        Ok(self.current(secret_id).await?.0)
    }

    async fn versions(&self, secret_id: &str) -> Result<Vec<String>, AwsError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(secret_id)
            .map(|v| v.iter().map(|(id, _)| id.clone()).collect())
            .unwrap_or_default())
    }
}

impl SecretsAdmin for MemorySecrets {
    async fn create(
        &self,
        name: &str,
        value: &str,
        _kms_key: Option<&str>,
    ) -> Result<Option<String>, AwsError> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.contains_key(name) {
            return Ok(None);
        }
        m.insert(name.to_owned(), vec![("v1".to_owned(), value.to_owned())]);
        Ok(Some("v1".to_owned()))
    }

    async fn put_version(&self, name: &str, value: &str) -> Result<String, AwsError> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let versions = m.entry(name.to_owned()).or_default();
        let id = format!("v{}", versions.len() + 1);
        versions.push((id.clone(), value.to_owned()));
        Ok(id)
    }
}
