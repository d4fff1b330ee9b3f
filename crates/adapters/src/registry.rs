//! The device registry in DynamoDB, and a per-container cache in front of it.
//!
//! One item per device: `device_id` (partition key) and `assignments`, a list of
//! `{subject_id, valid_from, valid_to?}` with RFC 3339 times. 4,000 devices fit in a
//! container's memory, so after warm-up a batch costs no registry call at all.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use pulselake_domain::time::{format_rfc3339_ms, parse_rfc3339_ms};
use pulselake_domain::{Assignment, DeviceRecord};

use crate::error::AwsError;
use crate::retry::RetryPolicy;

/// Port: fetches the records of the given devices; absent devices are simply missing.
pub trait RegistryLookup: Send + Sync {
    fn fetch(
        &self,
        device_ids: &[&str],
    ) -> impl Future<Output = Result<Vec<DeviceRecord>, AwsError>> + Send;
}

/// DynamoDB adapter.
pub struct DynamoRegistry {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// The erasure requests table (keyed by subject): a write that attributes readings
    /// to a subject checks, in the same transaction, that no request names them.
    tombstones: Option<String>,
}

impl DynamoRegistry {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> DynamoRegistry {
        DynamoRegistry {
            client,
            table: table.into(),
            tombstones: None,
        }
    }

    /// The registry as the admin CLI changes it: every assignment checked against the
    /// erasure requests in `table`.
    pub fn with_tombstones(mut self, table: impl Into<String>) -> DynamoRegistry {
        self.tombstones = Some(table.into());
        self
    }

    pub fn from_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> DynamoRegistry {
        DynamoRegistry::new(aws_sdk_dynamodb::Client::new(sdk), table)
    }
}

/// BatchGetItem takes at most 100 keys.
const BATCH_GET_MAX: usize = 100;

impl RegistryLookup for DynamoRegistry {
    async fn fetch(&self, device_ids: &[&str]) -> Result<Vec<DeviceRecord>, AwsError> {
        const OP: &str = "dynamodb:BatchGetItem";
        let mut out = Vec::with_capacity(device_ids.len());
        for chunk in device_ids.chunks(BATCH_GET_MAX) {
            let keys = chunk
                .iter()
                .map(|id| {
                    HashMap::from([("device_id".to_owned(), AttributeValue::S((*id).to_owned()))])
                })
                .collect();
            let mut request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(false)
                .build()
                .map_err(|e| AwsError::permanent(OP, e.to_string()))?;
            let mut backoff = RetryPolicy::default().backoff(None);
            loop {
                let resp = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk(OP, e))?;
                if let Some(items) = resp.responses().and_then(|r| r.get(&self.table)) {
                    out.extend(items.iter().filter_map(device_from_item));
                }
                match resp.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                    Some(rest) if !rest.keys().is_empty() => {
                        if !backoff.wait().await {
                            return Err(AwsError::transient(
                                OP,
                                "registry keys stayed unprocessed (throttled)",
                            ));
                        }
                        request = rest.clone();
                    }
                    _ => break,
                }
            }
        }
        Ok(out)
    }
}

/// The item written for a device (the registry's storage format).
pub fn device_item(record: &DeviceRecord) -> HashMap<String, AttributeValue> {
    let assignments = record
        .assignments
        .iter()
        .map(|a| {
            let mut m = HashMap::from([
                (
                    "subject_id".to_owned(),
                    AttributeValue::S(a.subject_id.clone()),
                ),
                (
                    "valid_from".to_owned(),
                    AttributeValue::S(format_rfc3339_ms(a.valid_from)),
                ),
            ]);
            if let Some(end) = a.valid_to {
                m.insert(
                    "valid_to".to_owned(),
                    AttributeValue::S(format_rfc3339_ms(end)),
                );
            }
            if let Some(cohort) = &a.cohort {
                m.insert("cohort".to_owned(), AttributeValue::S(cohort.clone()));
            }
            AttributeValue::M(m)
        })
        .collect();
    HashMap::from([
        (
            "device_id".to_owned(),
            AttributeValue::S(record.device_id.clone()),
        ),
        ("assignments".to_owned(), AttributeValue::L(assignments)),
    ])
}

/// Reads a registry item; a malformed assignment is skipped (and logged) rather than
/// trusted, so its readings are quarantined as unassigned instead of mis-attributed.
pub fn device_from_item(item: &HashMap<String, AttributeValue>) -> Option<DeviceRecord> {
    let device_id = item.get("device_id")?.as_s().ok()?.clone();
    let mut assignments = Vec::new();
    if let Some(AttributeValue::L(list)) = item.get("assignments") {
        for a in list {
            match parse_assignment(a) {
                Some(a) => assignments.push(a),
                // No device id here: logs carry no identifiers.
                None => tracing::warn!("a registry assignment is malformed and was ignored"),
            }
        }
    }
    Some(DeviceRecord {
        device_id,
        assignments,
    })
}

fn parse_assignment(a: &AttributeValue) -> Option<Assignment> {
    let m = a.as_m().ok()?;
    let text = |k: &str| m.get(k).and_then(|v| v.as_s().ok());
    let valid_to = match text("valid_to") {
        Some(s) => Some(parse_rfc3339_ms(s)?),
        None => None,
    };
    Some(Assignment {
        subject_id: text("subject_id")?.clone(),
        valid_from: parse_rfc3339_ms(text("valid_from")?)?,
        valid_to,
        cohort: text("cohort").cloned(),
    })
}

/// A device as the cache knows it: its record, or known to be absent.
pub type Resolved = HashMap<String, Option<Arc<DeviceRecord>>>;

/// Caches registry answers per container: known devices for `ttl`, unknown ones for
/// `negative_ttl` (so a newly registered device is picked up quickly).
pub struct CachedRegistry<L> {
    lookup: L,
    ttl: Duration,
    negative_ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<String, CacheEntry>>,
}

/// When a device was looked up, and what was found.
type CacheEntry = (Instant, Option<Arc<DeviceRecord>>);

impl<L: RegistryLookup> CachedRegistry<L> {
    pub fn new(lookup: L, ttl: Duration, negative_ttl: Duration) -> CachedRegistry<L> {
        CachedRegistry {
            lookup,
            ttl,
            negative_ttl,
            max_entries: 200_000,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves every id, calling the registry only for ids not cached (or expired).
    pub async fn resolve<'i>(
        &self,
        ids: impl IntoIterator<Item = &'i str>,
    ) -> Result<Resolved, AwsError> {
        let now = Instant::now();
        let mut resolved = Resolved::new();
        let mut missing: Vec<&str> = Vec::new();
        {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            for id in ids {
                if resolved.contains_key(id) || missing.contains(&id) {
                    continue;
                }
                match entries.get(id) {
                    Some((at, rec))
                        if now.duration_since(*at)
                            < if rec.is_some() {
                                self.ttl
                            } else {
                                self.negative_ttl
                            } =>
                    {
                        resolved.insert(id.to_owned(), rec.clone());
                    }
                    _ => missing.push(id),
                }
            }
        }
        if missing.is_empty() {
            return Ok(resolved);
        }
        let fetched = self.lookup.fetch(&missing).await?;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() + missing.len() > self.max_entries {
            entries.clear();
        }
        let mut found: HashMap<String, Arc<DeviceRecord>> = fetched
            .into_iter()
            .map(|r| (r.device_id.clone(), Arc::new(r)))
            .collect();
        for id in missing {
            let rec = found.remove(id);
            entries.insert(id.to_owned(), (now, rec.clone()));
            resolved.insert(id.to_owned(), rec);
        }
        Ok(resolved)
    }
}

/// An in-memory registry: for unit tests and benchmarks.
#[derive(Default)]
pub struct MemoryRegistry {
    devices: Mutex<HashMap<String, DeviceRecord>>,
    versions: Mutex<HashMap<String, u64>>,
    calls: std::sync::atomic::AtomicUsize,
    /// Subjects with an erasure request (what the erasure table holds in AWS).
    pub tombstoned: Mutex<std::collections::BTreeSet<String>>,
}

impl MemoryRegistry {
    pub fn new(records: impl IntoIterator<Item = DeviceRecord>) -> MemoryRegistry {
        MemoryRegistry {
            devices: Mutex::new(
                records
                    .into_iter()
                    .map(|r| (r.device_id.clone(), r))
                    .collect(),
            ),
            ..MemoryRegistry::default()
        }
    }

    /// How many times `fetch` was called.
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl RegistryLookup for MemoryRegistry {
    async fn fetch(&self, device_ids: &[&str]) -> Result<Vec<DeviceRecord>, AwsError> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(device_ids
            .iter()
            .filter_map(|id| {
                self.devices
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(*id)
                    .cloned()
            })
            .collect())
    }
}

/// What a conditional registry write came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryWrite {
    Written,
    /// The record changed since it was read (or exists already, for a new one):
    /// nothing was written; read it again and redo the change.
    Changed,
    /// The record would attribute readings to a subject with an erasure request:
    /// nothing was written.
    Tombstoned(String),
}

/// Port: changing the registry (the admin CLI), and reading it whole. Every write goes
/// over the version read, so concurrent changes fail rather than overwrite.
pub trait RegistryAdmin: RegistryLookup {
    /// A device's record and the version it is stored at.
    fn read(
        &self,
        device_id: &str,
    ) -> impl Future<Output = Result<Option<(DeviceRecord, u64)>, AwsError>> + Send;
    /// Stores `record` over `version` (0: no record may exist yet), in one transaction
    /// with the check that none of `attributes` (the subjects it newly attributes
    /// readings to) has an erasure request.
    fn write(
        &self,
        record: &DeviceRecord,
        version: u64,
        attributes: &[String],
    ) -> impl Future<Output = Result<RegistryWrite, AwsError>> + Send;
    /// Every record, with its version.
    fn all(&self) -> impl Future<Output = Result<Vec<(DeviceRecord, u64)>, AwsError>> + Send;
    /// The subjects among `subjects` that have an erasure request (to refuse a whole
    /// import before any of it is written).
    fn erased(
        &self,
        subjects: &[String],
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
}

/// A stored record's version: 1 for one written before records had versions.
fn version_of(item: &HashMap<String, AttributeValue>) -> u64 {
    item.get("version")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// The condition that the stored item is still at `version` (0: there is none; 1 also
/// matches an item stored before records had versions).
pub(crate) fn at_version(key: &str, version: u64) -> String {
    match version {
        0 => format!("attribute_not_exists({key})"),
        1 => "attribute_not_exists(version) OR version = :read".to_owned(),
        _ => "version = :read".to_owned(),
    }
}

impl RegistryAdmin for DynamoRegistry {
    async fn read(&self, device_id: &str) -> Result<Option<(DeviceRecord, u64)>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("device_id", AttributeValue::S(device_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        Ok(out
            .item()
            .and_then(|i| Some((device_from_item(i)?, version_of(i)))))
    }

    async fn write(
        &self,
        record: &DeviceRecord,
        version: u64,
        attributes: &[String],
    ) -> Result<RegistryWrite, AwsError> {
        use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem};
        const OP: &str = "dynamodb:TransactWriteItems";
        let mut item = device_item(record);
        item.insert(
            "version".into(),
            AttributeValue::N((version + 1).to_string()),
        );
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(at_version("device_id", version));
        let put = if version == 0 {
            put
        } else {
            put.expression_attribute_values(":read", AttributeValue::N(version.to_string()))
        }
        .build()
        .map_err(|e| AwsError::permanent(OP, e.to_string()))?;
        let mut items = vec![TransactWriteItem::builder().put(put).build()];
        if !attributes.is_empty() {
            let Some(tombstones) = &self.tombstones else {
                return Err(AwsError::permanent(
                    OP,
                    "the registry was opened without the erasure table: assignments cannot be checked",
                ));
            };
            for subject in attributes {
                let check = ConditionCheck::builder()
                    .table_name(tombstones)
                    .key("subject_id", AttributeValue::S(subject.clone()))
                    .condition_expression("attribute_not_exists(subject_id)")
                    .build()
                    .map_err(|e| AwsError::permanent(OP, e.to_string()))?;
                items.push(TransactWriteItem::builder().condition_check(check).build());
            }
        }
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let err = match sent {
            Ok(_) => return Ok(RegistryWrite::Written),
            Err(e) => e,
        };
        let reasons: Vec<Option<String>> = match err.as_service_error() {
            Some(
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(t),
            ) => t
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().map(str::to_owned))
                .collect(),
            _ => return Err(AwsError::from_sdk(OP, err)),
        };
        let failed =
            |i: usize| reasons.get(i).and_then(|c| c.as_deref()) == Some("ConditionalCheckFailed");
        if let Some(i) = (0..attributes.len()).find(|i| failed(i + 1)) {
            return Ok(RegistryWrite::Tombstoned(attributes[i].clone()));
        }
        if failed(0) {
            return Ok(RegistryWrite::Changed);
        }
        Err(AwsError::from_sdk(OP, err))
    }

    async fn all(&self) -> Result<Vec<(DeviceRecord, u64)>, AwsError> {
        let items = crate::aws::scan_items(
            self.client
                .scan()
                .table_name(&self.table)
                .consistent_read(true),
        )
        .await?;
        let mut out: Vec<(DeviceRecord, u64)> = items
            .iter()
            .filter_map(|i| Some((device_from_item(i)?, version_of(i))))
            .collect();
        out.sort_by(|a, b| a.0.device_id.cmp(&b.0.device_id));
        Ok(out)
    }

    async fn erased(&self, subjects: &[String]) -> Result<Vec<String>, AwsError> {
        const OP: &str = "dynamodb:BatchGetItem";
        let Some(table) = &self.tombstones else {
            return Err(AwsError::permanent(
                OP,
                "the registry was opened without the erasure table: assignments cannot be checked",
            ));
        };
        let mut unique: Vec<&String> = subjects.iter().collect();
        unique.sort();
        unique.dedup();
        let mut out = Vec::new();
        for chunk in unique.chunks(BATCH_GET_MAX) {
            let keys = chunk
                .iter()
                .map(|s| {
                    HashMap::from([("subject_id".to_owned(), AttributeValue::S((*s).clone()))])
                })
                .collect();
            let mut request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .projection_expression("subject_id")
                .build()
                .map_err(|e| AwsError::permanent(OP, e.to_string()))?;
            loop {
                let resp = self
                    .client
                    .batch_get_item()
                    .request_items(table, request)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk(OP, e))?;
                if let Some(items) = resp.responses().and_then(|r| r.get(table)) {
                    out.extend(
                        items
                            .iter()
                            .filter_map(|i| i.get("subject_id")?.as_s().ok().cloned()),
                    );
                }
                match resp.unprocessed_keys().and_then(|u| u.get(table)) {
                    Some(rest) if !rest.keys().is_empty() => request = rest.clone(),
                    _ => break,
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

impl RegistryAdmin for MemoryRegistry {
    async fn read(&self, device_id: &str) -> Result<Option<(DeviceRecord, u64)>, AwsError> {
        let devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        Ok(devices
            .get(device_id)
            .map(|r| (r.clone(), versions.get(device_id).copied().unwrap_or(1))))
    }

    async fn write(
        &self,
        record: &DeviceRecord,
        version: u64,
        attributes: &[String],
    ) -> Result<RegistryWrite, AwsError> {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        let id = &record.device_id;
        let stored = match devices.get(id) {
            None => 0,
            Some(_) => versions.get(id).copied().unwrap_or(1),
        };
        if stored != version {
            return Ok(RegistryWrite::Changed);
        }
        let tombstoned = self.tombstoned.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = attributes.iter().find(|s| tombstoned.contains(*s)) {
            return Ok(RegistryWrite::Tombstoned(s.clone()));
        }
        devices.insert(id.clone(), record.clone());
        versions.insert(id.clone(), version + 1);
        Ok(RegistryWrite::Written)
    }

    async fn all(&self) -> Result<Vec<(DeviceRecord, u64)>, AwsError> {
        let mut out = Vec::new();
        let devices: Vec<DeviceRecord> = self
            .devices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for r in devices {
            let v = self
                .versions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&r.device_id)
                .copied()
                .unwrap_or(1);
            out.push((r, v));
        }
        out.sort_by(|a, b| a.0.device_id.cmp(&b.0.device_id));
        Ok(out)
    }

    async fn erased(&self, subjects: &[String]) -> Result<Vec<String>, AwsError> {
        let tombstoned = self.tombstoned.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<String> = subjects
            .iter()
            .filter(|s| tombstoned.contains(*s))
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl<T: RegistryLookup> RegistryLookup for &T {
    fn fetch(
        &self,
        device_ids: &[&str],
    ) -> impl Future<Output = Result<Vec<DeviceRecord>, AwsError>> + Send {
        (**self).fetch(device_ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> DeviceRecord {
        DeviceRecord {
            device_id: id.into(),
            assignments: vec![Assignment {
                subject_id: format!("subj-{id}"),
                valid_from: 0,
                valid_to: Some(86_400_000),
                cohort: None,
            }],
        }
    }

    #[test]
    fn items_round_trip_through_the_storage_format() {
        let r = rec("dev-1");
        assert_eq!(device_from_item(&device_item(&r)), Some(r));
        let mut with_cohort = rec("dev-2");
        with_cohort.assignments[0].cohort = Some("cardiology".into());
        with_cohort.assignments[0].valid_to = None;
        assert_eq!(
            device_from_item(&device_item(&with_cohort)),
            Some(with_cohort)
        );
    }

    #[test]
    fn a_malformed_assignment_is_dropped_not_guessed() {
        let mut item = device_item(&rec("dev-1"));
        item.insert(
            "assignments".into(),
            AttributeValue::L(vec![AttributeValue::M(HashMap::from([(
                "subject_id".to_owned(),
                AttributeValue::S("s".into()),
            )]))]),
        );
        assert_eq!(device_from_item(&item).unwrap().assignments, vec![]);
    }

    #[tokio::test]
    async fn cache_calls_the_registry_once_per_device_including_unknown_ones() {
        let reg = MemoryRegistry::new([rec("a"), rec("b")]);
        let cache = CachedRegistry::new(&reg, Duration::from_secs(300), Duration::from_secs(60));
        let first = cache.resolve(["a", "b", "zz", "a"]).await.unwrap();
        assert_eq!(first.len(), 3);
        assert!(first["zz"].is_none());
        assert_eq!(
            first["a"].as_ref().unwrap().assignments[0].subject_id,
            "subj-a"
        );
        let again = cache.resolve(["b", "zz"]).await.unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(reg.calls(), 1, "second batch served from the cache");
    }

    #[tokio::test]
    async fn expired_entries_are_fetched_again() {
        let reg = MemoryRegistry::new([rec("a")]);
        let cache = CachedRegistry::new(&reg, Duration::ZERO, Duration::ZERO);
        cache.resolve(["a"]).await.unwrap();
        cache.resolve(["a"]).await.unwrap();
        assert_eq!(reg.calls(), 2);
    }
}
