//! Reading the local lake and quarantine back, to report and to check.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use bytes::Bytes;
use pulselake_domain::{Partition, QuarantineEntry, Reading, ReadingId, Reason};

use crate::Result;
use crate::provision::Stack;

/// Every key under `prefix`, through the same adapter the functions list with.
pub async fn list_keys(stack: &Stack, bucket: &str, prefix: &str) -> Result<Vec<String>> {
    use pulselake_adapters::{ObjectReader, S3Objects};
    Ok(S3Objects::from_config(&stack.sdk)
        .list(bucket, prefix)
        .await?)
}

pub async fn get_bytes(stack: &Stack, bucket: &str, key: &str) -> Result<Bytes> {
    let obj = stack.s3.get_object().bucket(bucket).key(key).send().await?;
    Ok(obj.body.collect().await?.into_bytes())
}

/// The readings table as it stands in the local lake.
#[derive(Debug, Default)]
pub struct LakeContents {
    pub rows: Vec<Reading<'static>>,
    pub files: usize,
    /// Rows per partition.
    pub partitions: BTreeMap<Partition, usize>,
}

impl LakeContents {
    pub fn distinct_ids(&self) -> usize {
        self.rows
            .iter()
            .map(|r| r.reading_id)
            .collect::<HashSet<ReadingId>>()
            .len()
    }
}

pub async fn lake(stack: &Stack) -> Result<LakeContents> {
    let mut out = LakeContents::default();
    for key in list_keys(stack, &stack.names.lake_bucket, "readings/").await? {
        let Some(partition) = Partition::from_object_key(&key) else {
            continue;
        };
        let rows = pulselake_lake::read_readings(
            get_bytes(stack, &stack.names.lake_bucket, &key).await?,
            partition.metric,
        )?;
        *out.partitions.entry(partition).or_default() += rows.len();
        out.rows.extend(rows);
        out.files += 1;
    }
    Ok(out)
}

/// The quarantine as it stands, one entry per rejected record (an entry written twice,
/// by a retried batch, is counted once).
#[derive(Debug, Default)]
pub struct QuarantineContents {
    pub entries: Vec<QuarantineEntry>,
}

impl QuarantineContents {
    pub fn readings(&self) -> usize {
        self.entries
            .iter()
            .map(QuarantineEntry::readings_quarantined)
            .sum()
    }

    pub fn readings_by_reason(&self) -> BTreeMap<Reason, usize> {
        let mut m = BTreeMap::new();
        for e in &self.entries {
            match e.reason {
                Some(r) if !e.is_unreadable() => {
                    *m.entry(r).or_default() += e.readings_quarantined()
                }
                Some(_) => {}
                None => {
                    for r in &e.rejected {
                        *m.entry(r.reason).or_default() += 1;
                    }
                }
            }
        }
        m
    }

    pub fn unreadable_by_reason(&self) -> BTreeMap<Reason, usize> {
        let mut m = BTreeMap::new();
        for e in self.entries.iter().filter(|e| e.is_unreadable()) {
            if let Some(r) = e.reason {
                *m.entry(r).or_default() += 1;
            }
        }
        m
    }
}

pub async fn quarantine(stack: &Stack, prefix: &str) -> Result<QuarantineContents> {
    let mut seen = BTreeSet::new();
    let mut out = QuarantineContents::default();
    // Reports are NDJSON; whole quarantined files (`.../raw`) sit beside them.
    let reports = list_keys(stack, &stack.names.quarantine_bucket, prefix)
        .await?
        .into_iter()
        .filter(|k| k.ends_with(".ndjson"));
    for key in reports {
        let body = get_bytes(stack, &stack.names.quarantine_bucket, &key).await?;
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let e: QuarantineEntry = serde_json::from_slice(line)?;
            if seen.insert(e.reference.clone()) {
                out.entries.push(e);
            }
        }
    }
    Ok(out)
}

/// What stream-ingest quarantined, under both of its prefixes (records a subject stands
/// behind, and the short-lived ones no subject does).
pub async fn stream_quarantine(stack: &Stack) -> Result<QuarantineContents> {
    let mut q = quarantine(stack, stream_ingest::handler::QUARANTINE_PREFIX).await?;
    let other = quarantine(stack, stream_ingest::handler::UNATTRIBUTED_PREFIX).await?;
    q.entries.extend(other.entries);
    Ok(q)
}

/// Partitions of the readings table in the Glue catalog.
pub async fn glue_partitions(stack: &Stack) -> Result<BTreeSet<Partition>> {
    let mut out = BTreeSet::new();
    let mut pages = stack
        .glue
        .get_partitions()
        .database_name(&stack.names.glue_database)
        .table_name(&stack.names.glue_table)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for p in page?.partitions() {
            let v = p.values();
            let key = format!(
                "readings/metric={}/year={}/month={}/day={}/_",
                v.first().map_or("", String::as_str),
                v.get(1).map_or("", String::as_str),
                v.get(2).map_or("", String::as_str),
                v.get(3).map_or("", String::as_str)
            );
            let location = p
                .storage_descriptor()
                .and_then(|sd| sd.location())
                .unwrap_or_default();
            let parsed = Partition::from_object_key(&key)
                .filter(|part| location.ends_with(&format!("/readings/{part}/")));
            match parsed {
                Some(part) => {
                    out.insert(part);
                }
                None => {
                    return Err(format!(
                        "a Glue partition that is not a lake partition: {v:?} at {location}"
                    )
                    .into());
                }
            }
        }
    }
    Ok(out)
}

/// Partitions that hold at least one data file in the local lake.
pub async fn lake_partitions(stack: &Stack) -> Result<BTreeSet<Partition>> {
    Ok(list_keys(stack, &stack.names.lake_bucket, "readings/")
        .await?
        .iter()
        .filter_map(|k| Partition::from_object_key(k))
        .collect())
}

/// Copies the lake's data files into `dir`, keeping their keys (the Hive layout), for
/// engines that read a directory.
pub async fn export_lake(stack: &Stack, dir: &std::path::Path) -> Result<usize> {
    let keys = list_keys(stack, &stack.names.lake_bucket, "readings/").await?;
    let mut n = 0;
    for key in keys
        .iter()
        .filter(|k| Partition::from_object_key(k).is_some())
    {
        let path = dir.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(
            &path,
            get_bytes(stack, &stack.names.lake_bucket, key).await?,
        )?;
        n += 1;
    }
    Ok(n)
}
