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

use bytes::Bytes;
use pulselake_adapters::{
    AuditLog, AwsError, ErasurePass, ErasurePasses, ErasureRequest, ErasureRequests, MemoryQueue,
    ObjectReader, ObjectUploads, ObjectVersion, ObjectWriter, VersionedObjects, WorkQueue,
};
use pulselake_domain::partition::READINGS_PREFIX;
use pulselake_domain::time::format_rfc3339_ms;
use pulselake_domain::{Metric, Partition};
use pulselake_lake::erase::{
    Eraser, KeptDigest, footer_clears, footer_len, groups_to_look_at, rows_in_group,
};
use pulselake_lake::{FileLayout, LakeFile};

use crate::raw;
use serde::{Deserialize, Serialize};

/// The new file is uploaded in parts of this size as it grows: memory holds one row
/// group of the old file and at most a part of the new one, whatever their sizes.
pub const PART_BYTES: usize = 8 << 20;

/// What verification compares a rewritten file with: its rows, the SHA-256 of the rows
/// kept, and its row groups copied byte for byte.
type Kept = (u64, String, Vec<usize>);

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
    pub raw_lines: BTreeMap<String, BTreeSet<u64>>,
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
        let mut raw_lines: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
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
                raw_lines.entry(source).or_default().extend(lines);
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
                    let versions = self.objects.list_versions(&bucket, key).await?;
                    let mine: Vec<ObjectVersion> =
                        versions.into_iter().filter(|v| &v.key == key).collect();
                    for batch in mine.chunks(pulselake_adapters::DELETE_BATCH) {
                        self.objects.delete_versions(&bucket, batch).await?;
                    }
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

    /// Erases the subjects from every version of one file: whether any version held
    /// them, and for a rewritten file its key and what verification compares it with.
    /// Every version is read by ranged reads: its footer, then the subject column of
    /// the row groups the footer cannot clear, then (to rewrite the current version)
    /// one row group at a time.
    async fn erase_file(
        &self,
        key: &str,
        p: Partition,
        subjects: &BTreeSet<String>,
        ev: &mut UnitEvidence,
    ) -> Result<(bool, Option<(String, Kept)>), String> {
        let bucket = &self.lake_bucket;
        let versions: Vec<ObjectVersion> = self
            .objects
            .list_versions(bucket, key)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|v| v.key == key)
            .collect();
        let mut result = None;
        let mut holds_subject = false;
        for v in versions.iter().filter(|v| !v.delete_marker) {
            let ranged = Ranged {
                objects: &self.objects,
                bucket,
                version: v,
            };
            let mut file = ranged.footer(p.metric).await?;
            if footer_clears(&file, subjects) {
                ev.versions_cleared_by_footer += 1;
                continue;
            }
            let mut hits = vec![0; file.row_groups()];
            for g in groups_to_look_at(&file, subjects) {
                let range = file.subject_chunk_range(g);
                ranged.hold(&mut file, range).await?;
                hits[g] = rows_in_group(&file, g, subjects).map_err(|e| e.to_string())?;
            }
            let rows_removed: u64 = hits.iter().sum();
            if rows_removed == 0 {
                continue;
            }
            holds_subject = true;
            if !v.latest {
                continue;
            }
            let rows_in = file.rows();
            // In place: a new version of the same key, so whatever names this file
            // (file-ingest's record of a source's outputs, which a corrected re-upload
            // deletes) still names it. A file of the subjects' rows only just goes.
            // A file of the subjects' rows only is read through too (nothing put): the
            // lines of its file rows name the raw copies to clear.
            let whole = rows_removed == rows_in;
            let (digest, copied, lines) = self
                .rewrite(&ranged, &mut file, &hits, subjects, !whole)
                .await?;
            for (source, l) in lines {
                ev.raw_lines.entry(source).or_default().extend(l);
            }
            let rewritten = if whole {
                self.unchanged_since_read(v).await?;
                hex::encode(pulselake_lake::erase::KeptDigest::default().finish().1)
            } else {
                result = Some((
                    key.to_owned(),
                    (rows_in - rows_removed, digest.clone(), copied),
                ));
                digest
            };
            ev.rows_removed += rows_removed;
            ev.files_rewritten.push(RewrittenFile {
                key: key.to_owned(),
                removed_whole: rows_removed == rows_in,
                rows_in,
                rows_removed,
                kept_sha256: rewritten,
            });
        }
        if holds_subject {
            // Every version listed before the rewrite goes, markers too; the new
            // version (and any written since, e.g. by file-ingest) stays. In a bucket
            // without versioning the put has replaced the object already.
            let replaced = result.is_some();
            let old: Vec<ObjectVersion> = versions
                .into_iter()
                .filter(|v| v.version_id.is_some() || !replaced)
                .collect();
            for batch in old.chunks(pulselake_adapters::DELETE_BATCH) {
                let failed = self
                    .objects
                    .delete_versions(bucket, batch)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some((_, code)) = failed.first() {
                    return Err(format!("old versions not deleted ({code})"));
                }
                ev.old_versions_deleted += batch.len();
            }
        }
        Ok((holds_subject, result))
    }

    /// Writes the current version `ranged` names again without the subjects, a row
    /// group at a time, as a new version of its key: put (or its multipart upload
    /// completed) only if the key's current version is still the one read (S3's
    /// If-Match on its ETag). A version written meanwhile (a corrected re-upload) is
    /// left for the next pass, and the request stays pending. The SHA-256 of the rows
    /// kept and the groups copied as stored.
    /// `put`: false to read it through without writing (what it removes, nothing more).
    async fn rewrite(
        &self,
        ranged: &Ranged<'_, O>,
        file: &mut LakeFile,
        hits: &[u64],
        subjects: &BTreeSet<String>,
        put: bool,
    ) -> Result<(String, Vec<usize>, BTreeMap<String, BTreeSet<u64>>), String> {
        let v = ranged.version;
        let mut eraser =
            Eraser::new(file, subjects, FileLayout::default()).map_err(|e| e.to_string())?;
        let mut upload = NewVersion {
            objects: &self.objects,
            bucket: &self.lake_bucket,
            key: &v.key,
            content_type: PARQUET,
            part_bytes: self.part_bytes,
            upload: None,
            pending: Vec::new(),
        };
        let written: Result<_, String> = async {
            for (g, h) in hits.iter().enumerate() {
                let range = file.group_range(g);
                ranged.hold(file, range).await?;
                eraser.push(file, g, *h == 0).map_err(|e| e.to_string())?;
                if !put {
                    eraser.take_output();
                } else if eraser.buffered() >= self.part_bytes {
                    upload
                        .write(eraser.take_output())
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            let head = eraser.take_output();
            let (rewrite, tail) = eraser.finish().map_err(|e| e.to_string())?;
            if put {
                upload.write(head).await.map_err(|e| e.to_string())?;
            }
            Ok((rewrite, tail))
        }
        .await;
        let (rewrite, tail) = match written {
            Ok(w) => w,
            Err(e) => {
                upload.abandon().await;
                return Err(e);
            }
        };
        let digest = hex::encode(rewrite.kept_digest);
        if !put {
            upload.abandon().await;
            return Ok((digest, rewrite.copied_groups, rewrite.file_lines));
        }
        // S3 checks If-Match; the local stack checks it on a put only, so the version
        // is compared here too (a cheap list) before the upload completes.
        if let Err(e) = self.unchanged_since_read(v).await {
            upload.abandon().await;
            return Err(e);
        }
        let etag = v.etag.as_deref().unwrap_or_default();
        if !upload.commit(tail, etag).await.map_err(|e| e.to_string())? {
            return Err(CHANGED.into());
        }
        Ok((digest, rewrite.copied_groups, rewrite.file_lines))
    }

    /// Whether `v` is still the current version of its key.
    async fn unchanged_since_read(&self, v: &ObjectVersion) -> Result<(), String> {
        self.unchanged_in(&self.lake_bucket, v).await
    }

    async fn unchanged_in(&self, bucket: &str, v: &ObjectVersion) -> Result<(), String> {
        let current = self
            .objects
            .list_versions(bucket, &v.key)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|x| x.key == v.key && x.latest);
        if current.map(|x| x.version_id) != Some(v.version_id.clone()) {
            return Err(CHANGED.into());
        }
        Ok(())
    }

    /// The archived raw files the removed lake rows came from (seed files, one patient
    /// each, go whole by their alias instead) rewritten without the subjects' lines, and
    /// their quarantine reports without the subjects' entries. Returns the copies still
    /// holding a subject's device afterwards (verification). A file that fails is
    /// reported by its reference (keys may carry patient ids), nothing of it deleted.
    async fn clear_raw_copies(
        &self,
        c: &Copies,
        lines: &BTreeMap<String, BTreeSet<u64>>,
        devices: &[String],
        ev: &mut ErasureEvidence,
    ) -> Result<usize, AwsError> {
        let mut left = 0;
        let reports = self.objects.list(&c.quarantine_bucket, "files/").await?;
        let mut archived = self
            .objects
            .list_versions(&c.processed_bucket, "csv/")
            .await?;
        archived.extend(
            self.objects
                .list_versions(&c.processed_bucket, "ndjson/")
                .await?,
        );
        archived.retain(|v| v.latest && !v.delete_marker);
        // (size, SHA-256, marks) of each file rewritten: a copy of one under another
        // name (ingested once, archived twice) has the same lines.
        let mut originals: Vec<(u64, String, raw::Marks)> = Vec::new();
        let mut done = BTreeSet::new();
        for v in &archived {
            let reference = c
                .naming
                .reference(&format!("{}/{}", c.staging_bucket, v.key));
            let Some(l) = lines.get(&reference) else {
                continue;
            };
            let marks = raw::Marks {
                lines: l.clone(),
                devices: devices.to_vec(),
            };
            done.insert(v.key.clone());
            if let Some(f) = self
                .clear_raw_file(c, &v.key, &reference, &marks, &reports, ev, &mut left)
                .await
            {
                originals.push((v.size, f.input_sha256, marks));
            }
        }
        for v in archived.iter().filter(|v| !done.contains(&v.key)) {
            if !originals.iter().any(|o| o.0 == v.size) {
                continue;
            }
            let reference = c
                .naming
                .reference(&format!("{}/{}", c.staging_bucket, v.key));
            let sha = match self
                .filter_stream(
                    &c.processed_bucket,
                    &v.key,
                    None,
                    &raw::Marks::default(),
                    None,
                )
                .await
            {
                Ok(f) => f.input_sha256,
                Err(e) => {
                    ev.failures.push(format!("raw file {reference}: {e}"));
                    continue;
                }
            };
            if let Some((_, _, marks)) = originals.iter().find(|o| o.0 == v.size && o.1 == sha) {
                let marks = marks.clone();
                self.clear_raw_file(c, &v.key, &reference, &marks, &reports, ev, &mut left)
                    .await;
            }
        }
        // Files quarantined whole never reached the lake: their copies in quarantine
        // lose the lines that name a subject's device.
        if !devices.is_empty() {
            let marks = raw::Marks {
                lines: BTreeSet::new(),
                devices: devices.to_vec(),
            };
            for key in reports.iter().filter(|k| k.ends_with("/raw")) {
                match self
                    .rewrite_raw(&c.quarantine_bucket, key, &marks, None, false)
                    .await
                {
                    Ok(f) if f.removed > 0 => {
                        ev.quarantined_files_rewritten += 1;
                        ev.raw_lines_removed += f.removed;
                    }
                    Ok(_) => {}
                    Err(e) => ev.failures.push(format!("a file quarantined whole: {e}")),
                }
            }
        }
        Ok(left)
    }

    /// One archived raw file without the subjects' lines, checked afterwards, and its
    /// quarantine report parts without their entries. `None` when it failed (reported).
    #[allow(clippy::too_many_arguments)]
    async fn clear_raw_file(
        &self,
        c: &Copies,
        key: &str,
        reference: &str,
        marks: &raw::Marks,
        reports: &[String],
        ev: &mut ErasureEvidence,
        left: &mut usize,
    ) -> Option<raw::Filtered> {
        let (gz, csv) = (key.ends_with(".gz"), key.starts_with("csv/"));
        let filtered = match self
            .rewrite_raw(&c.processed_bucket, key, marks, Some(gz), csv)
            .await
        {
            Ok(f) => f,
            Err(e) => {
                ev.failures.push(format!("raw file {reference}: {e}"));
                return None;
            }
        };
        if filtered.removed == 0 {
            return Some(filtered);
        }
        ev.raw_files_rewritten += 1;
        ev.raw_lines_removed += filtered.removed;
        if !marks.devices.is_empty() && filtered.kept_data > 0 {
            let after = raw::Marks {
                lines: BTreeSet::new(),
                devices: marks.devices.clone(),
            };
            match self
                .filter_stream(&c.processed_bucket, key, None, &after, None)
                .await
            {
                Ok(f) if f.removed > 0 => *left += 1,
                Ok(_) => {}
                Err(e) => ev.failures.push(format!("raw file {reference}: {e}")),
            }
        }
        let ours = format!("/{reference}-");
        for report in reports.iter().filter(|k| {
            k.contains(&ours)
                && k.rsplit('/')
                    .next()
                    .is_some_and(|n| n.starts_with("rows-") && n.ends_with(".ndjson"))
        }) {
            match self
                .clear_report(&c.quarantine_bucket, report, marks, &filtered.removed_lines)
                .await
            {
                Ok(n) => ev.quarantine_entries_removed += n,
                Err(e) => ev.failures.push(format!("report of {reference}: {e}")),
            }
        }
        Some(filtered)
    }

    /// One raw file without the lines `marks` names, as a new version put only over the
    /// version read; every earlier version deleted. A file left with no data goes.
    /// `gz`: whether it is gzip (`None`: as its first bytes say); `csv`: CSV records
    /// (else lines).
    async fn rewrite_raw(
        &self,
        bucket: &str,
        key: &str,
        marks: &raw::Marks,
        gz: Option<bool>,
        csv: bool,
    ) -> Result<raw::Filtered, String> {
        let versions: Vec<ObjectVersion> = self
            .objects
            .list_versions(bucket, key)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|v| v.key == key)
            .collect();
        let Some(current) = versions.iter().find(|v| v.latest && !v.delete_marker) else {
            return Err("no current version".into());
        };
        let mut upload = NewVersion {
            objects: &self.objects,
            bucket,
            key,
            content_type: RAW,
            part_bytes: self.part_bytes,
            upload: None,
            pending: Vec::new(),
        };
        let version = current.version_id.as_deref();
        let filtered = match self
            .filter_stream_as(bucket, key, version, marks, Some(&mut upload), gz, csv)
            .await
        {
            Ok(f) => f,
            Err(e) => {
                upload.abandon().await;
                return Err(e);
            }
        };
        let replaced = filtered.kept_data > 0;
        if filtered.removed == 0 || !replaced {
            upload.abandon().await;
            if filtered.removed == 0 {
                return Ok(filtered);
            }
        } else {
            if let Err(e) = self.unchanged_in(bucket, current).await {
                upload.abandon().await;
                return Err(e);
            }
            let etag = current.etag.as_deref().unwrap_or_default();
            if !upload
                .commit(Vec::new(), etag)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(CHANGED.into());
            }
        }
        let old: Vec<ObjectVersion> = versions
            .into_iter()
            .filter(|v| v.version_id.is_some() || !replaced)
            .collect();
        for batch in old.chunks(pulselake_adapters::DELETE_BATCH) {
            self.objects
                .delete_versions(bucket, batch)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(filtered)
    }

    /// Streams a version of a raw file through the filter (on a blocking thread, as
    /// file-ingest reads files); with `upload`, the output goes to it as produced.
    async fn filter_stream(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        marks: &raw::Marks,
        upload: Option<&mut NewVersion<'_, O>>,
    ) -> Result<raw::Filtered, String> {
        let (gz, csv) = (key.ends_with(".gz"), key.starts_with("csv/"));
        self.filter_stream_as(bucket, key, version, marks, upload, Some(gz), csv)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn filter_stream_as(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        marks: &raw::Marks,
        mut upload: Option<&mut NewVersion<'_, O>>,
        gz: Option<bool>,
        csv: bool,
    ) -> Result<raw::Filtered, String> {
        let body = self
            .objects
            .open(bucket, key, version)
            .await
            .map_err(|e| e.to_string())?
            .into_async_read();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
        let (marks, part) = (marks.clone(), self.part_bytes);
        let task = tokio::task::spawn_blocking(move || {
            let input = tokio_util::io::SyncIoBridge::new(body);
            raw::filter_raw(input, raw::Parts::new(tx, part), gz, csv, &marks)
        });
        let mut sent = Ok(());
        while let Some(bytes) = rx.recv().await {
            if let (Some(u), Ok(())) = (upload.as_mut(), &sent) {
                sent = u.write(bytes).await;
            }
        }
        let filtered = task
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("not readable as it was ingested: {e}"))?;
        sent.map_err(|e| e.to_string())?;
        Ok(filtered)
    }

    /// The subjects' rows in a quarantine report part removed (the part put again, or
    /// deleted when nothing is left, every earlier version too); how many entries.
    async fn clear_report(
        &self,
        bucket: &str,
        key: &str,
        marks: &raw::Marks,
        removed_lines: &BTreeSet<u64>,
    ) -> Result<usize, String> {
        let versions: Vec<ObjectVersion> = self
            .objects
            .list_versions(bucket, key)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|v| v.key == key)
            .collect();
        let body = self
            .objects
            .open(bucket, key, None)
            .await
            .map_err(|e| e.to_string())?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        let (kept, removed) = raw::filter_report(&body, marks, removed_lines);
        if removed == 0 {
            return Ok(0);
        }
        let replaced = !kept.is_empty();
        if replaced {
            self.objects
                .put(bucket, key, kept, "application/x-ndjson")
                .await
                .map_err(|e| e.to_string())?;
        }
        let old: Vec<ObjectVersion> = versions
            .into_iter()
            .filter(|v| v.version_id.is_some() || !replaced)
            .collect();
        for batch in old.chunks(pulselake_adapters::DELETE_BATCH) {
            self.objects
                .delete_versions(bucket, batch)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(removed)
    }

    /// The subjects' raw files in the archive (a seed file's name starts with the
    /// patient key of its `seed:` alias) and the quarantine reports file-ingest wrote
    /// for them (named by the keyed reference of the staged file's key).
    async fn copies_of(
        &self,
        c: &Copies,
        pending: &[ErasureRequest],
    ) -> Result<Vec<(String, Vec<String>)>, AwsError> {
        let patients: BTreeSet<&str> = pending
            .iter()
            .flat_map(|r| &r.aliases)
            .filter_map(|a| a.strip_prefix("seed:"))
            .collect();
        if patients.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<String> = self
            .objects
            .list(&c.processed_bucket, "seed/")
            .await?
            .into_iter()
            .filter(|k| {
                let name = k.rsplit('/').next().unwrap_or_default();
                name.split('.').next().is_some_and(|p| patients.contains(p))
            })
            .collect();
        let refs: Vec<String> = raw
            .iter()
            .map(|k| {
                format!(
                    "/{}-",
                    c.naming.reference(&format!("{}/{k}", c.staging_bucket))
                )
            })
            .collect();
        let reports: Vec<String> = self
            .objects
            .list(&c.quarantine_bucket, "files/")
            .await?
            .into_iter()
            .filter(|k| refs.iter().any(|r| k.contains(r.as_str())))
            .collect();
        Ok(vec![
            (c.processed_bucket.clone(), raw),
            (c.quarantine_bucket.clone(), reports),
        ])
    }

    /// Every version of every file of a partition a subject appeared in, read again by
    /// ranged reads: rows of the subjects left, and each rewritten file's rows against
    /// the rows kept.
    async fn verify(
        &self,
        p: Partition,
        subjects: &BTreeSet<String>,
        kept: &BTreeMap<String, Kept>,
    ) -> Result<Verification, AwsError> {
        let mut v = Verification {
            partitions: 1,
            ..Verification::default()
        };
        let mut unreadable = 0;
        {
            let prefix = format!("{READINGS_PREFIX}{p}/");
            let versions = self
                .objects
                .list_versions(&self.lake_bucket, &prefix)
                .await?;
            for ver in versions.iter().filter(|x| !x.delete_marker) {
                v.object_versions_read += 1;
                let ranged = Ranged {
                    objects: &self.objects,
                    bucket: &self.lake_bucket,
                    version: ver,
                };
                match ranged.check(p.metric, subjects, kept.get(&ver.key)).await {
                    Ok((left, same)) => {
                        v.subject_rows_left += left;
                        v.files_changed_otherwise += u64::from(!same) as usize;
                    }
                    Err(_) => unreadable += 1,
                }
            }
        }
        v.passed = v.subject_rows_left == 0 && v.files_changed_otherwise == 0 && unreadable == 0;
        Ok(v)
    }
}

const CHANGED: &str = "changed while it was rewritten; the next pass takes it again";

/// One version of a lake file, read by ranged reads.
struct Ranged<'a, O> {
    objects: &'a O,
    bucket: &'a str,
    version: &'a ObjectVersion,
}

impl<O: VersionedObjects> Ranged<'_, O> {
    /// The file's footer (two ranged reads: the last 8 bytes, then the metadata).
    async fn footer(&self, metric: Metric) -> Result<LakeFile, String> {
        let size = self.version.size;
        let not_lake = |why: String| format!("not a lake Parquet file: {why}");
        if size < 12 {
            return Err(not_lake(format!("{size} bytes")));
        }
        let tail = self.read(size - 8, size).await?;
        let len = footer_len(&tail).map_err(|e| not_lake(e.to_string()))?;
        if len == 0 || len + 12 > size {
            return Err(not_lake(format!("a footer of {len} bytes in {size}")));
        }
        let footer = self.read(size - 8 - len, size - 8).await?;
        LakeFile::from_footer(&footer, size, metric).map_err(|e| not_lake(e.to_string()))
    }

    /// Bytes `start..end` of the file.
    async fn read(&self, start: u64, end: u64) -> Result<Bytes, String> {
        if end <= start {
            return Ok(Bytes::new());
        }
        let v = self.version;
        self.objects
            .read_range(self.bucket, &v.key, v.version_id.as_deref(), start, end - 1)
            .await
            .map_err(|e| e.to_string())
    }

    /// Fetches a range of the file into `file` (what it holds from now on).
    async fn hold(&self, file: &mut LakeFile, (start, end): (u64, u64)) -> Result<(), String> {
        let bytes = self.read(start, end).await?;
        if bytes.len() as u64 != end.saturating_sub(start) {
            return Err(format!("a short read of bytes {start}..{end}"));
        }
        file.hold(start, bytes);
        Ok(())
    }

    /// Rows of `subjects` in this version, and whether it holds exactly the rows
    /// `kept` says (when it is a rewritten file).
    async fn check(
        &self,
        metric: Metric,
        subjects: &BTreeSet<String>,
        kept: Option<&Kept>,
    ) -> Result<(u64, bool), String> {
        let mut file = self.footer(metric).await?;
        let mut left = 0;
        let Some((rows, sha, copied)) = kept else {
            for g in groups_to_look_at(&file, subjects) {
                let range = file.subject_chunk_range(g);
                self.hold(&mut file, range).await?;
                left += rows_in_group(&file, g, subjects).map_err(|e| e.to_string())?;
            }
            return Ok((left, true));
        };
        let mut digest = KeptDigest::default();
        for g in 0..file.row_groups() {
            let range = file.group_range(g);
            self.hold(&mut file, range).await?;
            left += rows_in_group(&file, g, subjects).map_err(|e| e.to_string())?;
            digest
                .push(&file, g, copied.contains(&g))
                .map_err(|e| e.to_string())?;
        }
        let (n, d) = digest.finish();
        Ok((left, n == *rows && hex::encode(d) == *sha))
    }
}

/// A new version of a key, written as it is produced: one put when it stays under a
/// part, else a multipart upload; either way only over the version read (If-Match).
struct NewVersion<'a, O> {
    objects: &'a O,
    bucket: &'a str,
    key: &'a str,
    content_type: &'static str,
    part_bytes: usize,
    upload: Option<(String, Vec<(i32, String)>)>,
    pending: Vec<u8>,
}

impl<O: ObjectUploads> NewVersion<'_, O> {
    async fn write(&mut self, bytes: Vec<u8>) -> Result<(), AwsError> {
        if self.pending.is_empty() {
            self.pending = bytes;
        } else {
            self.pending.extend_from_slice(&bytes);
        }
        if self.pending.len() < self.part_bytes {
            return Ok(());
        }
        if self.upload.is_none() {
            let id = self
                .objects
                .start_upload(self.bucket, self.key, self.content_type)
                .await?;
            self.upload = Some((id, Vec::new()));
        }
        if let Some((id, parts)) = &mut self.upload {
            let n = parts.len() as i32 + 1;
            let body = std::mem::take(&mut self.pending);
            let etag = self
                .objects
                .upload_part(self.bucket, self.key, id, n, body)
                .await?;
            parts.push((n, etag));
        }
        Ok(())
    }

    /// Writes the rest; `Ok(false)` when the key changed since it was read (nothing
    /// written, the upload abandoned).
    async fn commit(mut self, tail: Vec<u8>, if_match: &str) -> Result<bool, AwsError> {
        self.pending.extend_from_slice(&tail);
        let Some((id, mut parts)) = self.upload.take() else {
            let body = std::mem::take(&mut self.pending);
            return self
                .objects
                .put_if_match(self.bucket, self.key, body, self.content_type, if_match)
                .await;
        };
        let n = parts.len() as i32 + 1;
        let body = std::mem::take(&mut self.pending);
        let last = self
            .objects
            .upload_part(self.bucket, self.key, &id, n, body);
        match last.await {
            Ok(etag) => parts.push((n, etag)),
            Err(e) => {
                let _ = self.objects.abort_upload(self.bucket, self.key, &id).await;
                return Err(e);
            }
        }
        let done = self
            .objects
            .complete_upload(self.bucket, self.key, &id, &parts, if_match)
            .await;
        if !matches!(done, Ok(true)) {
            let _ = self.objects.abort_upload(self.bucket, self.key, &id).await;
        }
        done
    }

    /// Abandons the upload (the bucket's lifecycle rule is the backstop if this fails).
    async fn abandon(mut self) {
        if let Some((id, _)) = self.upload.take() {
            let _ = self.objects.abort_upload(self.bucket, self.key, &id).await;
        }
    }
}

const PARQUET: &str = "application/vnd.apache.parquet";
/// Raw files are archived as uploaded; their rewrite is stored as bytes.
const RAW: &str = "application/octet-stream";

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
