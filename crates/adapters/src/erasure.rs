//! Erasure requests (GDPR Art. 17), one item per subject in the erasure table: who
//! asked, why, when, and when it was done with the evidence's audit record. A subject
//! with an item is tombstoned: nothing of theirs may leave, whatever the item's status.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::AwsError;

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRequest {
    pub subject_id: String,
    /// A reference to the request that means nothing outside the system (the evidence
    /// names it, never the subject).
    pub request_id: String,
    pub requested_by: String,
    pub reason: String,
    /// The legacy patient keys that named the subject (`seed:P1`), removed from the
    /// alias table at the request: the pass finds the subject's raw files by them.
    pub aliases: Vec<String>,
    /// The devices assigned to the subject when the request was recorded (their
    /// assignments removed then): the pass finds the subject's rows among the rejected
    /// rows of raw files and quarantine reports by them.
    pub devices: Vec<String>,
    /// When each of those devices was the subject's (its assignments, as removed): what
    /// a device said then is the subject's, in any copy.
    pub periods: Vec<DevicePeriod>,
    pub requested_at: i64,
    /// When the lake was verified free of the subject; `None` while pending.
    pub completed_at: Option<i64>,
    /// The audit record with the evidence.
    pub evidence: Option<String>,
}

/// A device assigned to a subject from `from` until `to` (epoch ms; `None`: open).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DevicePeriod {
    pub device_id: String,
    pub from: i64,
    pub to: Option<i64>,
}

impl DevicePeriod {
    pub fn covers(&self, at: i64) -> bool {
        at >= self.from && self.to.is_none_or(|to| at < to)
    }
}

/// Port: the erasure table.
pub trait ErasureRequests: Send + Sync {
    /// Records a request; `false` when the subject has one already (kept as it is).
    fn record(&self, r: &ErasureRequest) -> impl Future<Output = Result<bool, AwsError>> + Send;
    /// Every request, pending and done (the tombstones).
    fn all(&self) -> impl Future<Output = Result<Vec<ErasureRequest>, AwsError>> + Send;
    /// Marks a request done, with its evidence.
    fn complete(
        &self,
        subject_id: &str,
        at: i64,
        evidence: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

pub struct DynamoErasures {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoErasures {
    pub fn from_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> DynamoErasures {
        DynamoErasures {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
        }
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn from_item(item: &std::collections::HashMap<String, AttributeValue>) -> Option<ErasureRequest> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let num = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
    };
    Some(ErasureRequest {
        subject_id: text("subject_id")?,
        request_id: text("request_id")?,
        requested_by: text("requested_by").unwrap_or_default(),
        reason: text("reason").unwrap_or_default(),
        aliases: item
            .get("aliases")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|a| a.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
        devices: item
            .get("devices")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|a| a.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
        periods: text("periods")
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
        requested_at: num("requested_at")?,
        completed_at: num("completed_at"),
        evidence: text("evidence"),
    })
}

impl ErasureRequests for DynamoErasures {
    async fn record(&self, r: &ErasureRequest) -> Result<bool, AwsError> {
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("subject_id", s(&r.subject_id))
            .item("request_id", s(&r.request_id))
            .item("requested_by", s(&r.requested_by))
            .item("reason", s(&r.reason))
            .item(
                "aliases",
                AttributeValue::L(r.aliases.iter().map(|a| s(a)).collect()),
            )
            .item(
                "devices",
                AttributeValue::L(r.devices.iter().map(|d| s(d)).collect()),
            )
            .item(
                "periods",
                s(&serde_json::to_string(&r.periods)
                    .map_err(|e| AwsError::permanent("dynamodb:PutItem", e.to_string()))?),
            )
            .item("requested_at", n(r.requested_at))
            .condition_expression("attribute_not_exists(subject_id)")
            .send()
            .await;
        match out {
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

    async fn all(&self) -> Result<Vec<ErasureRequest>, AwsError> {
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true);
        let items = crate::aws::scan_items(scan).await?;
        Ok(items.iter().filter_map(from_item).collect())
    }

    async fn complete(&self, subject_id: &str, at: i64, evidence: &str) -> Result<(), AwsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("subject_id", s(subject_id))
            .update_expression("SET completed_at = :at, evidence = :e")
            .condition_expression("attribute_exists(subject_id)")
            .expression_attribute_values(":at", n(at))
            .expression_attribute_values(":e", s(evidence))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e))?;
        Ok(())
    }
}

/// In memory, for unit tests.
#[derive(Default)]
pub struct MemoryErasures(pub Mutex<BTreeMap<String, ErasureRequest>>);

impl ErasureRequests for MemoryErasures {
    async fn record(&self, r: &ErasureRequest) -> Result<bool, AwsError> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.contains_key(&r.subject_id) {
            return Ok(false);
        }
        m.insert(r.subject_id.clone(), r.clone());
        Ok(true)
    }

    async fn all(&self) -> Result<Vec<ErasureRequest>, AwsError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect())
    }

    async fn complete(&self, subject_id: &str, at: i64, evidence: &str) -> Result<(), AwsError> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let r = m
            .get_mut(subject_id)
            .ok_or_else(|| AwsError::permanent("erasure", "no such request"))?;
        r.completed_at = Some(at);
        r.evidence = Some(evidence.to_owned());
        Ok(())
    }
}
