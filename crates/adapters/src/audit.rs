//! The audit store: one JSON object per record in the audit bucket (Object Lock,
//! compliance mode: appended, never changed), under a prefix per kind and day, so
//! Athena (the `audit` Glue table) can query them. Records carry no patient identifier
//! beyond counts and per-partner pseudonyms.

use std::future::Future;
use std::sync::Mutex;

use crate::error::AwsError;
use crate::objects::ObjectWriter;

/// Port: appends audit records.
pub trait AuditLog: Send + Sync {
    /// Appends `record` (a JSON object) of `kind` (e.g. `partner-api`), at `at` (epoch ms).
    fn append(
        &self,
        kind: &str,
        at: i64,
        record: &serde_json::Value,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Audit records as objects in a bucket.
pub struct BucketAuditLog<W> {
    pub writer: W,
    pub bucket: String,
}

impl<W: ObjectWriter> AuditLog for BucketAuditLog<W> {
    async fn append(
        &self,
        kind: &str,
        at: i64,
        record: &serde_json::Value,
    ) -> Result<(), AwsError> {
        let d = pulselake_domain::time::Date::from_epoch_ms(at);
        let key = format!(
            "records/kind={kind}/year={:04}/month={:02}/day={:02}/{at}-{:016x}.json",
            d.year,
            d.month,
            d.day,
            fastrand::u64(..)
        );
        let body = serde_json::to_vec(record)
            .map_err(|e| AwsError::permanent("s3:PutObject", e.to_string()))?;
        self.writer
            .put(&self.bucket, &key, body, "application/json")
            .await
    }
}

/// In-memory audit records: for unit tests.
#[derive(Default)]
pub struct MemoryAuditLog(pub Mutex<Vec<(String, serde_json::Value)>>);

impl AuditLog for MemoryAuditLog {
    async fn append(
        &self,
        kind: &str,
        _at: i64,
        record: &serde_json::Value,
    ) -> Result<(), AwsError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((kind.to_owned(), record.clone()));
        Ok(())
    }
}
