//! Device identities in AWS IoT Core: a thing per device, an X.509 certificate bound to
//! it, and the stack's device policy (connect as itself, publish to its own topic). Used
//! by the admin CLI; the functions never touch IoT.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use crate::error::AwsError;

/// What a device is handed once at registration. AWS keeps no copy of the private key:
/// it is written to the operator's output directory and never logged.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    pub certificate_id: String,
    pub certificate_pem: String,
    pub private_key: String,
}

/// Port: device identities.
pub trait DeviceIdentities: Send + Sync {
    /// Creates the thing (if absent) and a new active certificate with the device
    /// policy, attached to the thing.
    fn register(
        &self,
        device_id: &str,
    ) -> impl Future<Output = Result<Credentials, AwsError>> + Send;

    /// Revokes every certificate of the thing; returns how many.
    fn revoke(&self, device_id: &str) -> impl Future<Output = Result<usize, AwsError>> + Send;

    /// Active certificates per thing (every thing, for listing).
    fn active_certificates(
        &self,
    ) -> impl Future<Output = Result<BTreeMap<String, usize>, AwsError>> + Send;
}

pub struct IotIdentities {
    client: aws_sdk_iot::Client,
    policy: String,
}

impl IotIdentities {
    pub fn from_config(sdk: &aws_config::SdkConfig, policy: impl Into<String>) -> IotIdentities {
        IotIdentities {
            client: aws_sdk_iot::Client::new(sdk),
            policy: policy.into(),
        }
    }

    async fn certificates(&self, device_id: &str) -> Result<Vec<String>, AwsError> {
        let out = self
            .client
            .list_thing_principals()
            .thing_name(device_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iot:ListThingPrincipals", e))?;
        Ok(out
            .principals()
            .iter()
            .filter(|p| p.contains(":cert/"))
            .cloned()
            .collect())
    }
}

fn certificate_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

impl DeviceIdentities for IotIdentities {
    async fn register(&self, device_id: &str) -> Result<Credentials, AwsError> {
        let exists = self
            .client
            .describe_thing()
            .thing_name(device_id)
            .send()
            .await
            .is_ok();
        if !exists {
            self.client
                .create_thing()
                .thing_name(device_id)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("iot:CreateThing", e))?;
        }
        let cert = self
            .client
            .create_keys_and_certificate()
            .set_as_active(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iot:CreateKeysAndCertificate", e))?;
        let arn = cert.certificate_arn().unwrap_or_default().to_owned();
        self.client
            .attach_policy()
            .policy_name(&self.policy)
            .target(&arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iot:AttachPolicy", e))?;
        self.client
            .attach_thing_principal()
            .thing_name(device_id)
            .principal(&arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iot:AttachThingPrincipal", e))?;
        Ok(Credentials {
            certificate_id: cert.certificate_id().unwrap_or_default().to_owned(),
            certificate_pem: cert.certificate_pem().unwrap_or_default().to_owned(),
            private_key: cert
                .key_pair()
                .and_then(|k| k.private_key())
                .unwrap_or_default()
                .to_owned(),
        })
    }

    async fn revoke(&self, device_id: &str) -> Result<usize, AwsError> {
        let certs = self.certificates(device_id).await?;
        for arn in &certs {
            self.client
                .update_certificate()
                .certificate_id(certificate_id(arn))
                .new_status(aws_sdk_iot::types::CertificateStatus::Revoked)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("iot:UpdateCertificate", e))?;
        }
        Ok(certs.len())
    }

    async fn active_certificates(&self) -> Result<BTreeMap<String, usize>, AwsError> {
        let mut out = BTreeMap::new();
        let mut things = self.client.list_things().into_paginator().send();
        while let Some(page) = things.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("iot:ListThings", e))?;
            for thing in page.things() {
                let Some(name) = thing.thing_name() else {
                    continue;
                };
                let mut active = 0;
                for arn in self.certificates(name).await? {
                    let d = self
                        .client
                        .describe_certificate()
                        .certificate_id(certificate_id(&arn))
                        .send()
                        .await
                        .map_err(|e| AwsError::from_sdk("iot:DescribeCertificate", e))?;
                    let status = d.certificate_description().and_then(|c| c.status());
                    active +=
                        usize::from(status == Some(&aws_sdk_iot::types::CertificateStatus::Active));
                }
                out.insert(name.to_owned(), active);
            }
        }
        Ok(out)
    }
}

/// In-memory identities: for unit tests.
#[derive(Default)]
pub struct MemoryIdentities {
    /// Per thing: (certificate id, active).
    pub things: Mutex<BTreeMap<String, Vec<(String, bool)>>>,
}

impl DeviceIdentities for MemoryIdentities {
    async fn register(&self, device_id: &str) -> Result<Credentials, AwsError> {
        let mut things = self.things.lock().unwrap_or_else(|p| p.into_inner());
        let certs = things.entry(device_id.to_owned()).or_default();
        let id = format!("cert-{device_id}-{}", certs.len());
        certs.push((id.clone(), true));
        Ok(Credentials {
            certificate_id: id,
            certificate_pem: "-----BEGIN CERTIFICATE-----".into(),
            private_key: "-----BEGIN RSA PRIVATE KEY-----".into(),
        })
    }

    async fn revoke(&self, device_id: &str) -> Result<usize, AwsError> {
        let mut things = self.things.lock().unwrap_or_else(|p| p.into_inner());
        let certs = things.entry(device_id.to_owned()).or_default();
        certs.iter_mut().for_each(|c| c.1 = false);
        Ok(certs.len())
    }

    async fn active_certificates(&self) -> Result<BTreeMap<String, usize>, AwsError> {
        let things = self.things.lock().unwrap_or_else(|p| p.into_inner());
        Ok(things
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().filter(|c| c.1).count()))
            .collect())
    }
}
