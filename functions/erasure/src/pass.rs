//! One erasure pass over the lake for every pending request at once, fanned out per
//! lake partition: the scheduled run plans a pass (its requests, one unit per partition
//! on the erasure queue); each unit reads every version of every file of its partition;
//! the current version of a file that holds a subject is rewritten without the
//! subjects' rows as a new version of the same key, then every earlier version is
//! deleted (so is an older version that holds a subject). Then the partition, if a
//! subject appeared in it, is read again, every version of every file: zero rows of the
//! subjects, and each rewritten file's rows are exactly the rows kept (count and
//! SHA-256). The unit that finishes the pass removes the copies outside the lake, writes
//! the evidence to the audit store (request references, never the subjects) and only
//! then marks the requests done, if every unit verified.

use std::collections::{BTreeMap, BTreeSet};

use pulselake_adapters::{
    AuditLog, AwsError, ErasurePass, ErasurePasses, ErasureRequest, ErasureRequests, MemoryQueue,
    ObjectReader, ObjectUploads, ObjectWriter, VersionedObjects, WorkQueue,
};
use pulselake_domain::Partition;
use pulselake_domain::partition::READINGS_PREFIX;
use pulselake_domain::time::format_rfc3339_ms;
use serde::{Deserialize, Serialize};

use crate::lake_files::Kept;
pub use crate::lake_files::PART_BYTES;

/// A pass that has not finished a day after it started is replaced by the next
/// scheduled run (its units were dead-lettered, or its last unit never finished).
pub const STALE_AFTER_MS: i64 = 23 * 3_600_000;

/// Pass and unit records expire after GDPR's month and some (the evidence itself is in
/// the audit store for years).
const RECORD_DAYS: i64 = 45;

/// The erasure job over its ports.
pub struct Erasure<O, E, A, P, Q> {
    pub objects: O,
    pub requests: E,
    pub audit: A,
    pub passes: P,
    /// The erasure queue: one message per unit (lake partition) of a pass.
    pub queue: Q,
    pub lake_bucket: String,
    /// Where copies outside the lake live (raw files, their quarantine reports).
    pub copies: Option<Copies>,
    /// The size of the new file's parts ([`PART_BYTES`]; at least 5 MiB on S3).
    pub part_bytes: usize,
}

/// The buckets that hold copies of a subject's data outside the lake, and the key
/// file-ingest names its quarantine reports with.
pub struct Copies {
    pub staging_bucket: String,
    pub processed_bucket: String,
    pub quarantine_bucket: String,
    pub naming: pulselake_domain::NamingKey,
}

/// One unit of a pass: a lake partition (`metric=…/year=…/month=…/day=…`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    pub pass: String,
    pub partition: String,
}

/// What a scheduled run did.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    NothingPending,
    /// A pass runs already (started less than a day ago).
    Running,
    /// A pass started: its units are on the queue.
    Started {
        pass: String,
        units: usize,
    },
    /// A pass over a lake without partitions, finished at once.
    Finished(Box<ErasureEvidence>),
}

/// One partition's share of a pass's evidence.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitEvidence {
    pub partition: String,
    pub files_read: usize,
    pub versions_cleared_by_footer: usize,
    pub rows_removed: u64,
    pub files_rewritten: Vec<RewrittenFile>,
    pub old_versions_deleted: usize,
    pub failures: Vec<String>,
    pub verification: Verification,
    /// Lines of raw files (by source reference) whose rows were removed: the finishing
    /// unit clears the raw copies by them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw_lines: BTreeMap<String, crate::raw::Lines>,
}

/// One rewritten file (a new version of the same key), or one removed whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewrittenFile {
    pub key: String,
    /// It held only the subjects' rows: deleted, not rewritten.
    pub removed_whole: bool,
    pub rows_in: u64,
    pub rows_removed: u64,
    pub kept_sha256: String,
}

/// The re-read after the rewrite.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub partitions: usize,
    pub object_versions_read: usize,
    /// Rows of the subjects found in any version of any file of those partitions.
    pub subject_rows_left: u64,
    /// Raw files and quarantine reports of the subjects still there.
    pub copies_left: usize,
    /// Rewritten files whose rows are not exactly the rows kept.
    pub files_changed_otherwise: usize,
    pub passed: bool,
}

/// The evidence of a pass, as the audit store keeps it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErasureEvidence {
    pub evidence_id: String,
    pub started_at: String,
    /// The requests processed (their references).
    pub requests: Vec<String>,
    /// Lake partitions, each one unit of the pass.
    pub partitions: usize,
    pub files_read: usize,
    /// File versions whose footer alone showed none of the subjects (not downloaded).
    pub versions_cleared_by_footer: usize,
    pub rows_removed: u64,
    pub files_rewritten: Vec<RewrittenFile>,
    pub old_versions_deleted: usize,
    /// Archived raw files of the subjects (named by their legacy keys) and the
    /// quarantine reports of those files, deleted with every version.
    pub raw_files_deleted: usize,
    pub quarantine_objects_deleted: usize,
    /// Archived raw files that hold other patients' rows too (found by the source of the
    /// lake rows removed), rewritten without the subjects' lines, and those lines.
    pub raw_files_rewritten: usize,
    pub raw_lines_removed: u64,
    /// Entries of those files' quarantine reports that were the subjects'.
    pub quarantine_entries_removed: usize,
    /// Copies of files quarantined whole (never in the lake) that named a subject's
    /// device, rewritten without those lines.
    pub quarantined_files_rewritten: usize,
    /// Files that could not be read or rewritten (nothing of them was deleted).
    pub failures: Vec<String>,
    pub verification: Verification,
    /// Requests marked done (only when verification passed and nothing failed).
    pub completed: bool,
    /// From the pass's start to its evidence (units run in parallel).
    pub seconds: f64,
}

impl<O, E, A, P, Q> Erasure<O, E, A, P, Q>
where
    O: ObjectReader + ObjectWriter + VersionedObjects + ObjectUploads,
    E: ErasureRequests,
    A: AuditLog,
    P: ErasurePasses,
    Q: WorkQueue,
{
    /// The scheduled run: a pass for every pending request, one unit per lake partition
    /// (every key that has any version, including files deleted since: a replaced
    /// upload's old outputs live on as older versions until they expire).
    pub async fn plan(&self, now_ms: i64) -> Result<Planned, AwsError> {
        let pending = self.pending().await?;
        if pending.is_empty() {
            return Ok(Planned::NothingPending);
        }
        let partitions: BTreeSet<Partition> = self
            .objects
            .list_versions(&self.lake_bucket, READINGS_PREFIX)
            .await?
            .iter()
            .filter_map(|v| Partition::from_object_key(&v.key))
            .collect();
        let pass = ErasurePass {
            id: format!("erasure-{now_ms}"),
            requests: pending.iter().map(|r| r.request_id.clone()).collect(),
            total: partitions.len() as u32,
            done: 0,
            started_at: now_ms,
            evidence: None,
        };
        if !self
            .passes
            .start(&pass, now_ms - STALE_AFTER_MS, expiry(now_ms))
            .await?
        {
            return Ok(Planned::Running);
        }
        if partitions.is_empty() {
            let ev = self.finalize(&pass, now_ms).await?;
            return Ok(Planned::Finished(Box::new(ev)));
        }
        let units: Vec<String> = partitions
            .iter()
            .map(|p| {
                serde_json::to_string(&Unit {
                    pass: pass.id.clone(),
                    partition: p.to_string(),
                })
                .map_err(|e| AwsError::permanent("erasure:plan", e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        self.queue.send(&units).await?;
        Ok(Planned::Started {
            pass: pass.id,
            units: units.len(),
        })
    }

    /// One unit: the subjects erased from one partition, verified there; the unit that
    /// finishes the pass finalizes it (its evidence returned). A unit of a pass that has
    /// finished (a redelivery) does nothing.
    pub async fn unit(
        &self,
        unit: &Unit,
        now_ms: i64,
    ) -> Result<Option<ErasureEvidence>, AwsError> {
        let Some(pass) = self.passes.get(&unit.pass).await? else {
            return Ok(None);
        };
        if pass.evidence.is_some() {
            return Ok(None);
        }
        let p = Partition::from_object_key(&format!("{READINGS_PREFIX}{}/x", unit.partition))
            .ok_or_else(|| {
                AwsError::permanent(
                    "erasure:unit",
                    format!("not a partition: {}", unit.partition),
                )
            })?;
        let subjects: BTreeSet<String> = self
            .requests_of(&pass)
            .await?
            .into_iter()
            .map(|r| r.subject_id)
            .collect();
        // Boxed: the rewrite's future is large (kept off the caller's stack).
        let ev = Box::pin(self.erase_partition(p, &subjects)).await?;
        let record = serde_json::to_string(&ev)
            .map_err(|e| AwsError::permanent("erasure:unit", e.to_string()))?;
        let pass = self
            .passes
            .finish_unit(&pass.id, &unit.partition, &record, expiry(now_ms))
            .await?;
        match pass {
            Some(pass) if pass.done >= pass.total && pass.evidence.is_none() => {
                Ok(Some(Box::pin(self.finalize(&pass, now_ms)).await?))
            }
            _ => Ok(None),
        }
    }

    async fn pending(&self) -> Result<Vec<ErasureRequest>, AwsError> {
        Ok(self
            .requests
            .all()
            .await?
            .into_iter()
            .filter(|r| r.completed_at.is_none())
            .collect())
    }

    /// The pass's requests still pending (one done meanwhile stays done).
    async fn requests_of(&self, pass: &ErasurePass) -> Result<Vec<ErasureRequest>, AwsError> {
        Ok(self
            .pending()
            .await?
            .into_iter()
            .filter(|r| pass.requests.contains(&r.request_id))
            .collect())
    }

    /// Every version of every file of one partition: the subjects erased, then (if any
    /// file held them) the partition verified.
    async fn erase_partition(
        &self,
        p: Partition,
        subjects: &BTreeSet<String>,
    ) -> Result<UnitEvidence, AwsError> {
        let mut ev = UnitEvidence {
            partition: p.to_string(),
            ..UnitEvidence::default()
        };
        if subjects.is_empty() {
            return Ok(ev);
        }
        let prefix = format!("{READINGS_PREFIX}{p}/");
        let keys: BTreeSet<String> = self
            .objects
            .list_versions(&self.lake_bucket, &prefix)
            .await?
            .into_iter()
            .map(|v| v.key)
            .collect();
        let mut touched = false;
        let mut kept: BTreeMap<String, Kept> = BTreeMap::new();
        for key in keys {
            ev.files_read += 1;
            match Box::pin(self.erase_file(&key, p, subjects, &mut ev)).await {
                Ok((held, rewritten)) => {
                    touched |= held;
                    if let Some((new_key, k)) = rewritten {
                        kept.insert(new_key, k);
                    }
                }
                Err(e) => ev.failures.push(format!("{key}: {e}")),
            }
        }
        ev.verification = if touched {
            self.verify(p, subjects, &kept).await?
        } else {
            Verification {
                passed: true,
                ..Verification::default()
            }
        };
        Ok(ev)
    }

    /// The last unit done: copies outside the lake removed, the units' evidence summed,
    /// written to the audit store, and the requests marked done if everything verified.
    async fn finalize(&self, pass: &ErasurePass, now_ms: i64) -> Result<ErasureEvidence, AwsError> {
        let pending = self.requests_of(pass).await?;
        let mut ev = ErasureEvidence {
            evidence_id: pass.id.clone(),
            started_at: format_rfc3339_ms(pass.started_at),
            requests: pass.requests.clone(),
            partitions: pass.total as usize,
            ..ErasureEvidence::default()
        };
        ev.verification.passed = true;
        let mut units = 0;
        let mut raw_lines: BTreeMap<String, crate::raw::Lines> = BTreeMap::new();
        for record in self.passes.units(&pass.id).await? {
            let u: UnitEvidence = serde_json::from_str(&record)
                .map_err(|e| AwsError::permanent("erasure:finalize", e.to_string()))?;
            units += 1;
            ev.files_read += u.files_read;
            ev.versions_cleared_by_footer += u.versions_cleared_by_footer;
            ev.rows_removed += u.rows_removed;
            ev.files_rewritten.extend(u.files_rewritten);
            ev.old_versions_deleted += u.old_versions_deleted;
            ev.failures.extend(u.failures);
            let v = &mut ev.verification;
            v.partitions += u.verification.partitions;
            v.object_versions_read += u.verification.object_versions_read;
            v.subject_rows_left += u.verification.subject_rows_left;
            v.files_changed_otherwise += u.verification.files_changed_otherwise;
            v.passed &= u.verification.passed;
            for (source, lines) in u.raw_lines {
                raw_lines.entry(source).or_default().merge(lines);
            }
        }
        if units < pass.total as usize {
            ev.failures.push(format!(
                "{} of {} partitions unfinished",
                pass.total as usize - units,
                pass.total
            ));
        }
        if let Some(c) = &self.copies {
            for (bucket, keys) in self.copies_of(c, &pending).await? {
                for key in &keys {
                    let failed = |e: String| AwsError::permanent("erasure:copies", e);
                    let versions = self.versions_of(&bucket, key).await.map_err(failed)?;
                    self.delete_old(&bucket, versions, false)
                        .await
                        .map_err(failed)?;
                }
                if bucket == c.processed_bucket {
                    ev.raw_files_deleted += keys.len();
                } else {
                    ev.quarantine_objects_deleted += keys.len();
                }
            }
            let devices: Vec<String> = pending.iter().flat_map(|r| r.devices.clone()).collect();
            let left = self
                .clear_raw_copies(c, &raw_lines, &devices, &mut ev)
                .await?;
            ev.verification.copies_left = left
                + self
                    .copies_of(c, &pending)
                    .await?
                    .iter()
                    .map(|(_, keys)| keys.len())
                    .sum::<usize>();
            ev.verification.passed &= ev.verification.copies_left == 0;
        }
        ev.completed = ev.verification.passed && ev.failures.is_empty();
        ev.seconds = (now_ms - pass.started_at).max(0) as f64 / 1000.0;
        let record =
            serde_json::to_value(&ev).map_err(|e| AwsError::permanent("audit", e.to_string()))?;
        self.audit.append("erasure", now_ms, &record).await?;
        if ev.completed {
            for r in &pending {
                self.requests
                    .complete(&r.subject_id, now_ms, &ev.evidence_id)
                    .await?;
            }
        }
        // The pass keeps its evidence (the audit store has it whole; a long list of
        // files is left out here, as a table item holds at most 400 KB).
        let mut summary = ev.clone();
        if serde_json::to_string(&summary).map_or(0, |t| t.len()) > 300_000 {
            summary.files_rewritten.clear();
        }
        let summary = serde_json::to_string(&summary)
            .map_err(|e| AwsError::permanent("erasure:finalize", e.to_string()))?;
        self.passes.finish(&pass.id, &summary).await?;
        Ok(ev)
    }
}

fn expiry(now_ms: i64) -> i64 {
    now_ms / 1000 + RECORD_DAYS * 86_400
}

impl<O, E, A, P> Erasure<O, E, A, P, MemoryQueue>
where
    O: ObjectReader + ObjectWriter + VersionedObjects + ObjectUploads,
    E: ErasureRequests,
    A: AuditLog,
    P: ErasurePasses,
{
    /// A whole pass in this process (tests, benchmarks): planned, then every unit the
    /// in-memory queue holds, in turn. The evidence, or `None` when nothing was pending.
    pub async fn run(&self, now_ms: i64) -> Result<Option<ErasureEvidence>, AwsError> {
        match self.plan(now_ms).await? {
            Planned::NothingPending | Planned::Running => return Ok(None),
            Planned::Finished(ev) => return Ok(Some(*ev)),
            Planned::Started { .. } => {}
        }
        let units: Vec<String> =
            std::mem::take(&mut *self.queue.0.lock().unwrap_or_else(|p| p.into_inner()));
        let mut last = None;
        for body in units {
            let unit: Unit = serde_json::from_str(&body)
                .map_err(|e| AwsError::permanent("erasure:unit", e.to_string()))?;
            if let Some(ev) = self.unit(&unit, now_ms).await? {
                last = Some(ev);
            }
        }
        Ok(last)
    }
}
