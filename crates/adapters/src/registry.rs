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
}

impl DynamoRegistry {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> DynamoRegistry {
        DynamoRegistry {
            client,
            table: table.into(),
        }
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
    calls: std::sync::atomic::AtomicUsize,
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
            calls: Default::default(),
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

/// Port: changing the registry (the admin CLI), and reading it whole.
pub trait RegistryAdmin: RegistryLookup {
    /// Writes a device's record (its whole assignment history).
    fn put(&self, record: &DeviceRecord) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn all(&self) -> impl Future<Output = Result<Vec<DeviceRecord>, AwsError>> + Send;
}

impl RegistryAdmin for DynamoRegistry {
    async fn put(&self, record: &DeviceRecord) -> Result<(), AwsError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(device_item(record)))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:PutItem", e))?;
        Ok(())
    }

    async fn all(&self) -> Result<Vec<DeviceRecord>, AwsError> {
        let items = crate::aws::scan_items(self.client.scan().table_name(&self.table)).await?;
        let mut out: Vec<DeviceRecord> = items.iter().filter_map(device_from_item).collect();
        out.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        Ok(out)
    }
}

impl RegistryAdmin for MemoryRegistry {
    async fn put(&self, record: &DeviceRecord) -> Result<(), AwsError> {
        self.devices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(record.device_id.clone(), record.clone());
        Ok(())
    }

    async fn all(&self) -> Result<Vec<DeviceRecord>, AwsError> {
        let mut out: Vec<DeviceRecord> = self
            .devices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        out.sort_by(|a, b| a.device_id.cmp(&b.device_id));
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
