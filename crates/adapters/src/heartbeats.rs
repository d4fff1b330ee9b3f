//! When each device was last heard, and the silences declared: one DynamoDB item per
//! device (`device_id`, `last_seen`, and while silent `silent_seen`, `silent_subject`,
//! `silent_paged`, `silent_recovering`). vitals-alert writes heartbeats; the device-watch
//! sweep reads them all and moves silences along with conditional writes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;
use pulselake_domain::silence::{Heartbeat, Silent};

use crate::aws::is_conditional_failure;
use crate::error::AwsError;

/// Port: device heartbeats.
pub trait Heartbeats: Send + Sync {
    /// Records that `device_id` was heard at `at` (never moves `last_seen` back).
    fn beat(
        &self,
        device_id: &str,
        at: i64,
        expires_at: i64,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// Every device's heartbeat.
    fn all(&self) -> impl Future<Output = Result<Vec<(String, Heartbeat)>, AwsError>> + Send;

    /// Replaces the silence of `device_id`, if it is still as `current` says (the same
    /// declared silence; or, with none declared, the same `last_seen`). `Ok(false)` when
    /// it changed meanwhile: the next sweep decides again.
    fn set_silence(
        &self,
        device_id: &str,
        current: &Heartbeat,
        new: Option<&Silent>,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;

    /// Removes the heartbeats of `devices` (an erasure: while theirs, a device's last
    /// sign of life, and a declared silence, are the subject's); how many there were.
    fn forget(&self, devices: &[String]) -> impl Future<Output = Result<usize, AwsError>> + Send;
}

pub struct DynamoHeartbeats {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoHeartbeats {
    pub fn from_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        DynamoHeartbeats {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
        }
    }
}

fn number(item: &HashMap<String, AttributeValue>, key: &str) -> Option<i64> {
    item.get(key)?.as_n().ok()?.parse().ok()
}

fn flag(item: &HashMap<String, AttributeValue>, key: &str) -> bool {
    item.get(key)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

fn decode(item: &HashMap<String, AttributeValue>) -> Option<(String, Heartbeat)> {
    let device = item.get("device_id")?.as_s().ok()?.clone();
    let last_seen = number(item, "last_seen")?;
    let silent = match number(item, "silent_seen") {
        None => None,
        Some(seen) => Some(Silent {
            seen,
            subject: item.get("silent_subject")?.as_s().ok()?.clone(),
            paged: flag(item, "silent_paged"),
            recovering: flag(item, "silent_recovering"),
        }),
    };
    Some((device, Heartbeat { last_seen, silent }))
}

impl Heartbeats for DynamoHeartbeats {
    async fn forget(&self, devices: &[String]) -> Result<usize, AwsError> {
        let mut n = 0;
        for d in devices {
            let out = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("device_id", AttributeValue::S(d.clone()))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("dynamodb:DeleteItem", e))?;
            n += usize::from(out.attributes().is_some());
        }
        Ok(n)
    }

    async fn beat(&self, device_id: &str, at: i64, expires_at: i64) -> Result<(), AwsError> {
        const OP: &str = "dynamodb:UpdateItem";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("device_id", AttributeValue::S(device_id.to_owned()))
            .update_expression("SET last_seen = :t, expiration = :e")
            .condition_expression("attribute_not_exists(last_seen) OR last_seen < :t")
            .expression_attribute_values(":t", AttributeValue::N(at.to_string()))
            .expression_attribute_values(":e", AttributeValue::N(expires_at.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A later heartbeat is stored already.
            Err(e) if is_conditional_failure(&e) => Ok(()),
            Err(e) => Err(AwsError::from_sdk(OP, e)),
        }
    }

    async fn all(&self) -> Result<Vec<(String, Heartbeat)>, AwsError> {
        let mut out = Vec::new();
        for item in crate::aws::scan_items(self.client.scan().table_name(&self.table)).await? {
            match decode(&item) {
                Some(hb) => out.push(hb),
                None => tracing::warn!("a heartbeat item is malformed; skipped"),
            }
        }
        Ok(out)
    }

    async fn set_silence(
        &self,
        device_id: &str,
        current: &Heartbeat,
        new: Option<&Silent>,
    ) -> Result<bool, AwsError> {
        const OP: &str = "dynamodb:UpdateItem";
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("device_id", AttributeValue::S(device_id.to_owned()));
        update = match &current.silent {
            Some(s) => update
                .condition_expression("silent_seen = :was")
                .expression_attribute_values(":was", AttributeValue::N(s.seen.to_string())),
            None => update
                .condition_expression("last_seen = :ls AND attribute_not_exists(silent_seen)")
                .expression_attribute_values(
                    ":ls",
                    AttributeValue::N(current.last_seen.to_string()),
                ),
        };
        update = match new {
            Some(s) => update
                .update_expression(
                    "SET silent_seen = :seen, silent_subject = :subject, silent_paged = :paged, silent_recovering = :rec",
                )
                .expression_attribute_values(":seen", AttributeValue::N(s.seen.to_string()))
                .expression_attribute_values(":subject", AttributeValue::S(s.subject.clone()))
                .expression_attribute_values(":paged", AttributeValue::Bool(s.paged))
                .expression_attribute_values(":rec", AttributeValue::Bool(s.recovering)),
            None => update.update_expression(
                "REMOVE silent_seen, silent_subject, silent_paged, silent_recovering",
            ),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(AwsError::from_sdk(OP, e)),
        }
    }
}

/// In-memory heartbeats with the same conditions: for unit tests.
#[derive(Default)]
pub struct MemoryHeartbeats {
    pub items: Mutex<HashMap<String, Heartbeat>>,
    /// Heartbeat writes made (a measure of write traffic).
    pub beats: std::sync::atomic::AtomicUsize,
}

impl Heartbeats for MemoryHeartbeats {
    async fn forget(&self, devices: &[String]) -> Result<usize, AwsError> {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        Ok(devices
            .iter()
            .filter(|d| items.remove(*d).is_some())
            .count())
    }

    async fn beat(&self, device_id: &str, at: i64, _expires_at: i64) -> Result<(), AwsError> {
        self.beats
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let hb = items.entry(device_id.to_owned()).or_insert(Heartbeat {
            last_seen: at,
            silent: None,
        });
        hb.last_seen = hb.last_seen.max(at);
        Ok(())
    }

    async fn all(&self) -> Result<Vec<(String, Heartbeat)>, AwsError> {
        let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        Ok(items.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    async fn set_silence(
        &self,
        device_id: &str,
        current: &Heartbeat,
        new: Option<&Silent>,
    ) -> Result<bool, AwsError> {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let Some(hb) = items.get_mut(device_id) else {
            return Ok(false);
        };
        let unchanged = match (&current.silent, &hb.silent) {
            (Some(c), Some(s)) => c.seen == s.seen,
            (None, None) => hb.last_seen == current.last_seen,
            _ => false,
        };
        if unchanged {
            hb.silent = new.cloned();
        }
        Ok(unchanged)
    }
}
