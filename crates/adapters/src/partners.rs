//! Partners (one DynamoDB item each: status, policy, public keys, pseudonym key secret)
//! and one-time claims (a client assertion's `jti`, refused when seen again).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;
use pulselake_domain::partner::{PartnerStatus, Policy};

use crate::error::AwsError;

/// A partner as registered.
#[derive(Debug, Clone, PartialEq)]
pub struct Partner {
    pub client_id: String,
    pub status: PartnerStatus,
    pub policy: Policy,
    /// The partner's public keys, a JWK Set (JSON).
    pub jwks: String,
    /// The Secrets Manager secret holding the partner's pseudonym key.
    pub key_secret: String,
    /// The stored record's version (0: never stored): a write goes over exactly this
    /// version, so two changes at once cannot undo each other.
    pub version: u64,
}

/// Port: the partner registry.
pub trait Partners: Send + Sync {
    fn get(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<Partner>, AwsError>> + Send;
    /// Stores `partner` as the next version, only if the stored one is still
    /// `partner.version` (0: none may exist). `Ok(false)`: it changed meanwhile (read it
    /// again and redo the change), nothing was written.
    fn put(&self, partner: &Partner) -> impl Future<Output = Result<bool, AwsError>> + Send;
    fn all(&self) -> impl Future<Output = Result<Vec<Partner>, AwsError>> + Send;
}

/// Port: things that may happen once (a `jti`), remembered until they expire.
pub trait OnceClaims: Send + Sync {
    /// `Ok(true)` the first time `key` is claimed before `expires_at` (epoch s).
    fn claim(
        &self,
        key: &str,
        expires_at: i64,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    /// Whether `key` was claimed and has not expired (an access token the API issued).
    fn held(&self, key: &str) -> impl Future<Output = Result<bool, AwsError>> + Send;
}

pub struct DynamoPartners {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoPartners {
    pub fn from_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> DynamoPartners {
        DynamoPartners {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
        }
    }
}

fn status_name(s: PartnerStatus) -> &'static str {
    match s {
        PartnerStatus::Active => "active",
        PartnerStatus::Suspended => "suspended",
    }
}

fn decode(item: &HashMap<String, AttributeValue>) -> Option<Partner> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let status = match text("status")?.as_str() {
        "active" => PartnerStatus::Active,
        _ => PartnerStatus::Suspended,
    };
    Some(Partner {
        client_id: text("client_id")?,
        status,
        // A stored policy that no longer validates denies everything: the item is skipped.
        policy: Policy::from_json(&text("policy")?).ok()?,
        jwks: text("jwks")?,
        key_secret: text("key_secret")?,
        // 1 for a partner stored before records had versions.
        version: item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(1),
    })
}

impl Partners for DynamoPartners {
    async fn get(&self, client_id: &str) -> Result<Option<Partner>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("client_id", AttributeValue::S(client_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        Ok(out.item().and_then(decode))
    }

    async fn put(&self, p: &Partner) -> Result<bool, AwsError> {
        let policy = serde_json::to_string(&p.policy)
            .map_err(|e| AwsError::permanent("dynamodb:PutItem", e.to_string()))?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("client_id", AttributeValue::S(p.client_id.clone()))
            .item("status", AttributeValue::S(status_name(p.status).into()))
            .item("policy", AttributeValue::S(policy))
            .item("jwks", AttributeValue::S(p.jwks.clone()))
            .item("key_secret", AttributeValue::S(p.key_secret.clone()))
            .item("version", AttributeValue::N((p.version + 1).to_string()))
            .condition_expression(crate::registry::at_version("client_id", p.version));
        let put = if p.version == 0 {
            put
        } else {
            put.expression_attribute_values(":read", AttributeValue::N(p.version.to_string()))
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if crate::aws::is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(AwsError::from_sdk("dynamodb:PutItem", e)),
        }
    }

    async fn all(&self) -> Result<Vec<Partner>, AwsError> {
        let items = crate::aws::scan_items(self.client.scan().table_name(&self.table)).await?;
        let mut out: Vec<Partner> = items.iter().filter_map(decode).collect();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(out)
    }
}

/// One-time claims in a DynamoDB table keyed `id`, expiring through TTL (`expiration`).
pub struct DynamoOnce {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoOnce {
    pub fn from_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> DynamoOnce {
        DynamoOnce {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
        }
    }
}

impl OnceClaims for DynamoOnce {
    async fn claim(&self, key: &str, expires_at: i64) -> Result<bool, AwsError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(key.to_owned()))
            .item("expiration", AttributeValue::N(expires_at.to_string()))
            // An expired claim TTL has not removed yet counts as gone.
            .condition_expression("attribute_not_exists(id) OR expiration < :now")
            .expression_attribute_values(":now", AttributeValue::N(crate::epoch_s().to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(AwsError::from_sdk("dynamodb:PutItem", e)),
        }
    }

    async fn held(&self, key: &str) -> Result<bool, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        let expires = out
            .item()
            .and_then(|i| i.get("expiration"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok());
        Ok(expires.is_some_and(|e| e >= crate::epoch_s()))
    }
}

/// In-memory partners: for unit tests.
#[derive(Default)]
pub struct MemoryPartners(pub Mutex<BTreeMap<String, Partner>>);

impl Partners for MemoryPartners {
    async fn get(&self, client_id: &str) -> Result<Option<Partner>, AwsError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(client_id)
            .cloned())
    }

    async fn put(&self, p: &Partner) -> Result<bool, AwsError> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let stored = all.get(&p.client_id).map_or(0, |x| x.version);
        if stored != p.version {
            return Ok(false);
        }
        let next = Partner {
            version: p.version + 1,
            ..p.clone()
        };
        all.insert(p.client_id.clone(), next);
        Ok(true)
    }

    async fn all(&self) -> Result<Vec<Partner>, AwsError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect())
    }
}

/// In-memory one-time claims: for unit tests.
#[derive(Default)]
pub struct MemoryOnce(pub Mutex<HashMap<String, i64>>);

impl OnceClaims for MemoryOnce {
    async fn claim(&self, key: &str, expires_at: i64) -> Result<bool, AwsError> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = crate::epoch_s();
        match m.get(key) {
            Some(&exp) if exp >= now => Ok(false),
            _ => {
                m.insert(key.to_owned(), expires_at);
                Ok(true)
            }
        }
    }

    async fn held(&self, key: &str) -> Result<bool, AwsError> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(m.get(key).is_some_and(|&exp| exp >= crate::epoch_s()))
    }
}
