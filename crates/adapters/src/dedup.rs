//! Exactly-once file ingestion: claims in DynamoDB, each taken by one conditional write
//! (never check-then-put). Three kinds of item, one table, partition key `id`:
//!
//! - `object#<bucket>/<key>#<version>`: one S3 object version's ingestion. `status` is
//!   IN_PROGRESS (with `in_progress_expiry`: a crashed attempt's claim lapses and can be
//!   taken again), COMPLETED or FAILED; `expiration` is the TTL attribute.
//! - `content#<sha256>`: the first object that brought this content; identical content
//!   under another name is a duplicate.
//! - `source#<bucket>/<key>`: what the latest ingested version of a source key wrote to
//!   the lake, so a corrected re-upload replaces it (see docs/file-ingestion.md).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::is_conditional_failure;
use crate::error::AwsError;

/// Result of trying to claim an object for ingestion.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This invocation owns the ingestion now.
    Acquired,
    /// Already ingested: a redelivered event, nothing to do.
    Completed,
    /// Another invocation is ingesting it right now (its claim has not lapsed).
    InProgress,
}

/// What the latest ingested version of a source key produced in the lake.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceManifest {
    /// Which version it was (the S3 event's sequencer, or version/etag when absent).
    pub version: String,
    /// S3 event sequencer of that version, when known: orders versions of one key.
    pub sequencer: Option<String>,
    /// Lake object keys it wrote.
    pub outputs: Vec<String>,
}

/// Port: the dedup table.
pub trait DedupStore: Send + Sync {
    /// Claims `object_id` until `in_progress_until` (epoch s); the item expires at `expires_at`.
    fn claim(
        &self,
        object_id: &str,
        now: i64,
        in_progress_until: i64,
        expires_at: i64,
    ) -> impl Future<Output = Result<Claim, AwsError>> + Send;

    /// Marks a claimed object COMPLETED (or FAILED), with a short outcome for operators.
    fn finish(
        &self,
        object_id: &str,
        completed: bool,
        outcome: &str,
        expires_at: i64,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// Records `object_id` as the first holder of `sha256`; returns the earlier holder if
    /// the content was already claimed by another object.
    fn claim_content(
        &self,
        sha256: &str,
        object_id: &str,
        expires_at: i64,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;

    fn manifest(
        &self,
        source: &str,
    ) -> impl Future<Output = Result<Option<SourceManifest>, AwsError>> + Send;

    fn put_manifest(
        &self,
        source: &str,
        m: &SourceManifest,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// DynamoDB adapter.
pub struct DynamoDedup {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDedup {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> DynamoDedup {
        DynamoDedup {
            client,
            table: table.into(),
        }
    }

    pub fn from_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> DynamoDedup {
        DynamoDedup::new(aws_sdk_dynamodb::Client::new(sdk), table)
    }

    async fn status_of(&self, id: &str) -> Result<Option<String>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        Ok(out
            .item()
            .and_then(|i| i.get("status"))
            .and_then(|v| v.as_s().ok())
            .cloned())
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl DedupStore for DynamoDedup {
    async fn claim(
        &self,
        object_id: &str,
        now: i64,
        in_progress_until: i64,
        expires_at: i64,
    ) -> Result<Claim, AwsError> {
        // Taken when free, when an earlier attempt failed, or when its claim has lapsed.
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", s(object_id))
            .item("status", s("IN_PROGRESS"))
            .item("in_progress_expiry", n(in_progress_until))
            .item("expiration", n(expires_at))
            .condition_expression(
                "attribute_not_exists(id) OR #s = :failed OR (#s = :in_progress AND in_progress_expiry < :now)",
            )
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":failed", s("FAILED"))
            .expression_attribute_values(":in_progress", s("IN_PROGRESS"))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Acquired),
            Err(e) if is_conditional_failure(&e) => {
                match self.status_of(object_id).await?.as_deref() {
                    Some("COMPLETED") => Ok(Claim::Completed),
                    _ => Ok(Claim::InProgress),
                }
            }
            Err(e) => Err(AwsError::from_sdk("dynamodb:PutItem", e)),
        }
    }

    async fn finish(
        &self,
        object_id: &str,
        completed: bool,
        outcome: &str,
        expires_at: i64,
    ) -> Result<(), AwsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("id", s(object_id))
            .update_expression(
                "SET #s = :s, outcome = :o, expiration = :e REMOVE in_progress_expiry",
            )
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":s", s(if completed { "COMPLETED" } else { "FAILED" }))
            .expression_attribute_values(":o", s(outcome))
            .expression_attribute_values(":e", n(expires_at))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e))?;
        Ok(())
    }

    async fn claim_content(
        &self,
        sha256: &str,
        object_id: &str,
        expires_at: i64,
    ) -> Result<Option<String>, AwsError> {
        let id = format!("content#{sha256}");
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", s(&id))
            .item("object", s(object_id))
            .item("expiration", n(expires_at))
            .condition_expression("attribute_not_exists(id) OR #o = :me")
            .expression_attribute_names("#o", "object")
            .expression_attribute_values(":me", s(object_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(e) if is_conditional_failure(&e) => {
                let out = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("id", s(&id))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
                Ok(Some(
                    out.item()
                        .and_then(|i| i.get("object"))
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default(),
                ))
            }
            Err(e) => Err(AwsError::from_sdk("dynamodb:PutItem", e)),
        }
    }

    async fn manifest(&self, source: &str) -> Result<Option<SourceManifest>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(&format!("source#{source}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        Ok(out.item().map(|i| SourceManifest {
            version: i
                .get("version")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default(),
            sequencer: i.get("sequencer").and_then(|v| v.as_s().ok()).cloned(),
            outputs: i
                .get("outputs")
                .and_then(|v| v.as_ss().ok())
                .cloned()
                .unwrap_or_default(),
        }))
    }

    async fn put_manifest(&self, source: &str, m: &SourceManifest) -> Result<(), AwsError> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", s(&format!("source#{source}")))
            .item("version", s(&m.version));
        if let Some(seq) = &m.sequencer {
            req = req.item("sequencer", s(seq));
        }
        if !m.outputs.is_empty() {
            // A string set cannot be empty in DynamoDB.
            req = req.item("outputs", AttributeValue::Ss(m.outputs.clone()));
        }
        req.send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:PutItem", e))?;
        Ok(())
    }
}

/// An in-memory dedup table with the same conditional semantics: for unit tests.
#[derive(Default)]
pub struct MemoryDedup {
    objects: Mutex<HashMap<String, (String, i64)>>,
    contents: Mutex<HashMap<String, String>>,
    manifests: Mutex<HashMap<String, SourceManifest>>,
}

impl MemoryDedup {
    pub fn status(&self, object_id: &str) -> Option<String> {
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(object_id)
            .map(|(s, _)| s.clone())
    }
}

impl DedupStore for MemoryDedup {
    async fn claim(
        &self,
        object_id: &str,
        now: i64,
        in_progress_until: i64,
        _expires_at: i64,
    ) -> Result<Claim, AwsError> {
        let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        let claim = match objects.get(object_id) {
            Some((status, _)) if status == "COMPLETED" => Claim::Completed,
            Some((status, until)) if status == "IN_PROGRESS" && *until >= now => Claim::InProgress,
            _ => Claim::Acquired,
        };
        if claim == Claim::Acquired {
            objects.insert(
                object_id.to_owned(),
                ("IN_PROGRESS".into(), in_progress_until),
            );
        }
        Ok(claim)
    }

    async fn finish(
        &self,
        object_id: &str,
        completed: bool,
        _outcome: &str,
        _expires_at: i64,
    ) -> Result<(), AwsError> {
        let status = if completed { "COMPLETED" } else { "FAILED" };
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(object_id.to_owned(), (status.into(), 0));
        Ok(())
    }

    async fn claim_content(
        &self,
        sha256: &str,
        object_id: &str,
        _expires_at: i64,
    ) -> Result<Option<String>, AwsError> {
        let mut contents = self.contents.lock().unwrap_or_else(|p| p.into_inner());
        match contents.get(sha256) {
            Some(holder) if holder != object_id => Ok(Some(holder.clone())),
            _ => {
                contents.insert(sha256.to_owned(), object_id.to_owned());
                Ok(None)
            }
        }
    }

    async fn manifest(&self, source: &str) -> Result<Option<SourceManifest>, AwsError> {
        Ok(self
            .manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(source)
            .cloned())
    }

    async fn put_manifest(&self, source: &str, m: &SourceManifest) -> Result<(), AwsError> {
        self.manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(source.to_owned(), m.clone());
        Ok(())
    }
}
