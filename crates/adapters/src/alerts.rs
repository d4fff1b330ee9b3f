//! Alerting's outside world: the per-(subject, rule) state in DynamoDB, written with
//! optimistic concurrency, and the alerts topic.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_sns::types::MessageAttributeValue;
use pulselake_domain::alerting::{Alert, RuleState};

use crate::error::AwsError;
use crate::retry::RetryPolicy;

/// One (subject, rule) pair as stored: its evaluation state, and alerts raised but not
/// yet confirmed published (so a crash between the two never loses a page).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredState {
    pub version: u64,
    pub state: RuleState,
    pub pending: Vec<Alert>,
}

/// Port: alert state.
pub trait AlertStates: Send + Sync {
    /// The stored pairs among `keys` (absent ones are new).
    fn load(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<HashMap<String, StoredState>, AwsError>> + Send;

    /// Writes `new` if the stored version is still `expected` (`None`: not stored yet).
    /// `Ok(false)` when someone else wrote first: reload and evaluate again.
    fn save(
        &self,
        key: &str,
        expected: Option<u64>,
        new: &StoredState,
        expires_at: i64,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;

    /// Removes every (subject, rule) pair of `subject` (an erasure); how many there were.
    fn forget_subject(&self, subject: &str)
    -> impl Future<Output = Result<usize, AwsError>> + Send;
}

/// Port: where alerts go.
pub trait AlertPublisher: Send + Sync {
    fn publish(&self, alert: &Alert) -> impl Future<Output = Result<(), AwsError>> + Send;
}

pub struct DynamoAlertStates {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoAlertStates {
    pub fn from_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        DynamoAlertStates {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
        }
    }
}

fn decode(item: &HashMap<String, AttributeValue>) -> Option<(String, StoredState)> {
    let key = item.get("key")?.as_s().ok()?.clone();
    let version = item.get("version")?.as_n().ok()?.parse().ok()?;
    let state = match item.get("state").and_then(|v| v.as_s().ok()) {
        Some(text) => serde_json::from_str(text).ok()?,
        None => RuleState::default(),
    };
    let pending = match item.get("pending").and_then(|v| v.as_s().ok()) {
        Some(text) => serde_json::from_str(text).ok()?,
        None => Vec::new(),
    };
    Some((
        key,
        StoredState {
            version,
            state,
            pending,
        },
    ))
}

impl AlertStates for DynamoAlertStates {
    async fn forget_subject(&self, subject: &str) -> Result<usize, AwsError> {
        let items = crate::aws::scan_items(
            self.client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(#k, :subject)")
                .expression_attribute_names("#k", "key")
                .expression_attribute_values(":subject", AttributeValue::S(format!("{subject}#")))
                .projection_expression("#k"),
        )
        .await?;
        for item in &items {
            if let Some(key) = item.get("key") {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .key("key", key.clone())
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("dynamodb:DeleteItem", e))?;
            }
        }
        Ok(items.len())
    }

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, StoredState>, AwsError> {
        const OP: &str = "dynamodb:BatchGetItem";
        let mut out = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let mut wanted = KeysAndAttributes::builder().consistent_read(true);
            for k in chunk {
                wanted = wanted.keys(HashMap::from([(
                    "key".to_owned(),
                    AttributeValue::S(k.clone()),
                )]));
            }
            let mut request = Some(HashMap::from([(
                self.table.clone(),
                wanted
                    .build()
                    .map_err(|e| AwsError::permanent(OP, e.to_string()))?,
            )]));
            let mut backoff = RetryPolicy::default().backoff(None);
            while let Some(items) = request.take() {
                let resp = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(items))
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk(OP, e))?;
                for item in resp
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    match decode(item) {
                        Some((k, s)) => {
                            out.insert(k, s);
                        }
                        None => {
                            return Err(AwsError::permanent(
                                OP,
                                "an alert state item is malformed",
                            ));
                        }
                    }
                }
                let unprocessed = resp.unprocessed_keys().filter(|u| !u.is_empty()).cloned();
                if unprocessed.is_some() && !backoff.wait().await {
                    return Err(AwsError::transient(
                        OP,
                        "keys stayed unprocessed (throttled)",
                    ));
                }
                request = unprocessed;
            }
        }
        Ok(out)
    }

    async fn save(
        &self,
        key: &str,
        expected: Option<u64>,
        new: &StoredState,
        expires_at: i64,
    ) -> Result<bool, AwsError> {
        const OP: &str = "dynamodb:PutItem";
        let state = serde_json::to_string(&new.state)
            .map_err(|e| AwsError::permanent(OP, e.to_string()))?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("key", AttributeValue::S(key.to_owned()))
            .item("version", AttributeValue::N(new.version.to_string()))
            .item("state", AttributeValue::S(state))
            .item("expiration", AttributeValue::N(expires_at.to_string()));
        if !new.pending.is_empty() {
            let pending = serde_json::to_string(&new.pending)
                .map_err(|e| AwsError::permanent(OP, e.to_string()))?;
            put = put.item("pending", AttributeValue::S(pending));
        }
        put = match expected {
            None => put
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", "key"),
            Some(v) => put
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(AwsError::from_sdk(OP, e)),
        }
    }
}

/// The alerts topic. Message attributes let subscribers filter (by severity, kind, metric, rule)
/// without reading bodies.
pub struct SnsAlerts {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsAlerts {
    pub fn from_config(sdk: &aws_config::SdkConfig, topic_arn: impl Into<String>) -> Self {
        SnsAlerts {
            client: aws_sdk_sns::Client::new(sdk),
            topic_arn: topic_arn.into(),
        }
    }
}

fn attribute(v: &str) -> Result<MessageAttributeValue, AwsError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(|e| AwsError::permanent("sns:Publish", e.to_string()))
}

impl AlertPublisher for SnsAlerts {
    async fn publish(&self, alert: &Alert) -> Result<(), AwsError> {
        const OP: &str = "sns:Publish";
        let body =
            serde_json::to_string(alert).map_err(|e| AwsError::permanent(OP, e.to_string()))?;
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .message(body)
            .message_attributes("severity", attribute(alert.severity.as_str())?)
            .message_attributes("kind", attribute(alert.kind.as_str())?)
            .message_attributes("metric", attribute(&alert.metric)?)
            .message_attributes("rule", attribute(&alert.rule)?)
            .message_attributes("alert_id", attribute(&alert.alert_id)?)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        Ok(())
    }
}

/// In-memory state with the same versioning: for unit tests and benchmarks.
#[derive(Default)]
pub struct MemoryAlertStates {
    pub items: Mutex<HashMap<String, StoredState>>,
    /// Saves made (a measure of write traffic).
    pub saves: std::sync::atomic::AtomicUsize,
}

impl AlertStates for MemoryAlertStates {
    async fn forget_subject(&self, subject: &str) -> Result<usize, AwsError> {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let before = items.len();
        let prefix = format!("{subject}#");
        items.retain(|k, _| !k.starts_with(&prefix));
        Ok(before - items.len())
    }

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, StoredState>, AwsError> {
        let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        Ok(keys
            .iter()
            .filter_map(|k| items.get(k).map(|s| (k.clone(), s.clone())))
            .collect())
    }

    async fn save(
        &self,
        key: &str,
        expected: Option<u64>,
        new: &StoredState,
        _expires_at: i64,
    ) -> Result<bool, AwsError> {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        if items.get(key).map(|s| s.version) != expected {
            return Ok(false);
        }
        items.insert(key.to_owned(), new.clone());
        self.saves
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }
}

/// Keeps published alerts in memory; can be told to fail: for unit tests.
#[derive(Default)]
pub struct MemoryPublisher {
    pub sent: Mutex<Vec<Alert>>,
    pub failing: std::sync::atomic::AtomicBool,
}

impl AlertPublisher for MemoryPublisher {
    async fn publish(&self, alert: &Alert) -> Result<(), AwsError> {
        if self.failing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(AwsError::transient("sns:Publish", "unavailable"));
        }
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(alert.clone());
        Ok(())
    }
}
