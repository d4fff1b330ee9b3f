//! One erasure pass over the lake for every pending request at once: each lake file
//! (each version of it) is read; the current version of a file that holds a subject is
//! rewritten without the subjects' rows as a new version of the same key, then every
//! earlier version is deleted (so is an older version that holds a subject). Then every
//! partition a subject appeared in is read again, every version of every file: zero
//! rows of the subjects, and each rewritten file's rows are exactly the rows kept (count
//! and SHA-256). Only then are the requests marked done, with the evidence in the audit
//! store (request references, never the subjects).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use pulselake_adapters::{
    AuditLog, AwsError, ErasureRequests, ObjectReader, ObjectVersion, ObjectWriter,
    VersionedObjects,
};
use pulselake_domain::Partition;
use pulselake_domain::partition::READINGS_PREFIX;
use pulselake_domain::time::format_rfc3339_ms;
use pulselake_lake::FileLayout;
use pulselake_lake::erase::{digest, erase_subjects, footer_clears, footer_len, rows_of};
use serde::Serialize;

/// The erasure job over its ports.
pub struct Erasure<O, E, A> {
    pub objects: O,
    pub requests: E,
    pub audit: A,
    pub lake_bucket: String,
    /// Where copies outside the lake live (raw files, their quarantine reports).
    pub copies: Option<Copies>,
}

/// The buckets that hold copies of a subject's data outside the lake, and the key
/// file-ingest names its quarantine reports with.
pub struct Copies {
    pub staging_bucket: String,
    pub processed_bucket: String,
    pub quarantine_bucket: String,
    pub naming: pulselake_domain::NamingKey,
}

/// One rewritten file (a new version of the same key), or one removed whole.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RewrittenFile {
    pub key: String,
    /// It held only the subjects' rows: deleted, not rewritten.
    pub removed_whole: bool,
    pub rows_in: u64,
    pub rows_removed: u64,
    pub kept_sha256: String,
}

/// The re-read after the rewrite.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct ErasureEvidence {
    pub evidence_id: String,
    pub started_at: String,
    /// The requests processed (their references).
    pub requests: Vec<String>,
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
    /// Files that could not be read or rewritten (nothing of them was deleted).
    pub failures: Vec<String>,
    pub verification: Verification,
    /// Requests marked done (only when verification passed and nothing failed).
    pub completed: bool,
    pub seconds: f64,
}

impl<O, E, A> Erasure<O, E, A>
where
    O: ObjectReader + ObjectWriter + VersionedObjects,
    E: ErasureRequests,
    A: AuditLog,
{
    /// Processes every pending request. `None` when there was none.
    pub async fn run(&self, now_ms: i64) -> Result<Option<ErasureEvidence>, AwsError> {
        let started = Instant::now();
        let pending: Vec<_> = self
            .requests
            .all()
            .await?
            .into_iter()
            .filter(|r| r.completed_at.is_none())
            .collect();
        if pending.is_empty() {
            return Ok(None);
        }
        let subjects: BTreeSet<String> = pending.iter().map(|r| r.subject_id.clone()).collect();
        let mut ev = ErasureEvidence {
            evidence_id: format!("erasure-{now_ms}"),
            started_at: format_rfc3339_ms(now_ms),
            requests: pending.iter().map(|r| r.request_id.clone()).collect(),
            ..ErasureEvidence::default()
        };
        let mut touched: BTreeSet<Partition> = BTreeSet::new();
        let mut kept: BTreeMap<String, (u64, String, Vec<usize>)> = BTreeMap::new();
        // Every key that has any version, including files deleted since (a replaced
        // upload's old outputs live on as older versions until they expire).
        let keys: BTreeSet<String> = self
            .objects
            .list_versions(&self.lake_bucket, READINGS_PREFIX)
            .await?
            .into_iter()
            .map(|v| v.key)
            .collect();
        for key in keys {
            let Some(p) = Partition::from_object_key(&key) else {
                continue;
            };
            ev.files_read += 1;
            match self.erase_file(&key, p, &subjects, &mut ev).await {
                Ok((held, rewritten)) => {
                    if held {
                        touched.insert(p);
                    }
                    if let Some((new_key, rows, sha, copied)) = rewritten {
                        kept.insert(new_key, (rows, sha, copied));
                    }
                }
                Err(e) => ev.failures.push(format!("{key}: {e}")),
            }
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
        }
        ev.verification = self.verify(&touched, &subjects, &kept).await?;
        if let Some(c) = &self.copies {
            ev.verification.copies_left = self
                .copies_of(c, &pending)
                .await?
                .iter()
                .map(|(_, keys)| keys.len())
                .sum();
            ev.verification.passed &= ev.verification.copies_left == 0;
        }
        ev.completed = ev.verification.passed && ev.failures.is_empty();
        ev.seconds = started.elapsed().as_secs_f64();
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
        Ok(Some(ev))
    }

    /// Erases the subjects from every version of one file: whether any version held
    /// them, and for a rewritten file its new key, rows and the SHA-256 of the rows kept.
    async fn erase_file(
        &self,
        key: &str,
        p: Partition,
        subjects: &BTreeSet<String>,
        ev: &mut ErasureEvidence,
    ) -> Result<(bool, Option<(String, u64, String, Vec<usize>)>), String> {
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
            if self
                .footer_clears(key, v, subjects)
                .await
                .map_err(|e| e.to_string())?
            {
                ev.versions_cleared_by_footer += 1;
                continue;
            }
            let body = self
                .objects
                .open(bucket, key, v.version_id.as_deref())
                .await
                .map_err(|e| e.to_string())?
                .bytes()
                .await
                .map_err(|e| e.to_string())?;
            if !v.latest {
                if rows_of(body, p.metric, subjects).map_err(|e| e.to_string())? > 0 {
                    holds_subject = true;
                }
                continue;
            }
            let rewrite = erase_subjects(body, p.metric, subjects, FileLayout::default())
                .map_err(|e| e.to_string())?;
            let Some(file) = rewrite.file else { continue };
            holds_subject = true;
            let kept_rows = rewrite.rows_in - rewrite.rows_removed;
            // Swapped in only if the file did not change since it was read: a version
            // written meanwhile (a corrected re-upload) is left for the next pass, and
            // the request stays pending (the version read still holds the subject).
            let current = self
                .objects
                .list_versions(bucket, key)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|x| x.key == key && x.latest);
            if current.map(|x| x.version_id) != Some(v.version_id.clone()) {
                return Err("changed while it was rewritten; the next pass takes it again".into());
            }
            // In place: a new version of the same key, so whatever names this file
            // (file-ingest's record of a source's outputs, which a corrected re-upload
            // deletes) still names it. A file of the subjects' rows only just goes.
            if kept_rows > 0 {
                self.objects
                    .put(bucket, key, file, "application/vnd.apache.parquet")
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let sha = hex::encode(rewrite.kept_digest);
            ev.rows_removed += rewrite.rows_removed;
            ev.files_rewritten.push(RewrittenFile {
                key: key.to_owned(),
                removed_whole: kept_rows == 0,
                rows_in: rewrite.rows_in,
                rows_removed: rewrite.rows_removed,
                kept_sha256: sha.clone(),
            });
            if kept_rows > 0 {
                result = Some((key.to_owned(), kept_rows, sha, rewrite.copied_groups));
            }
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

    /// The subjects' raw files in the archive (a seed file's name starts with the
    /// patient key of its `seed:` alias) and the quarantine reports file-ingest wrote
    /// for them (named by the keyed reference of the staged file's key).
    async fn copies_of(
        &self,
        c: &Copies,
        pending: &[pulselake_adapters::ErasureRequest],
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

    /// Two ranged reads (the last 8 bytes, then the footer): whether the footer's
    /// statistics exclude every subject from the whole file. A file too small or not
    /// Parquet is read in full instead (its error, if any, is reported there).
    async fn footer_clears(
        &self,
        key: &str,
        v: &ObjectVersion,
        subjects: &BTreeSet<String>,
    ) -> Result<bool, AwsError> {
        if v.size < 12 {
            return Ok(false);
        }
        let version = v.version_id.as_deref();
        let tail = self
            .objects
            .read_range(&self.lake_bucket, key, version, v.size - 8, v.size - 1)
            .await?;
        let Ok(len) = footer_len(&tail) else {
            return Ok(false);
        };
        if len == 0 || len + 8 > v.size {
            return Ok(false);
        }
        let footer = self
            .objects
            .read_range(
                &self.lake_bucket,
                key,
                version,
                v.size - 8 - len,
                v.size - 9,
            )
            .await?;
        Ok(footer_clears(&footer, subjects).unwrap_or(false))
    }

    async fn verify(
        &self,
        partitions: &BTreeSet<Partition>,
        subjects: &BTreeSet<String>,
        kept: &BTreeMap<String, (u64, String, Vec<usize>)>,
    ) -> Result<Verification, AwsError> {
        let mut v = Verification {
            partitions: partitions.len(),
            ..Verification::default()
        };
        let mut unreadable = 0;
        for p in partitions {
            let prefix = format!("{READINGS_PREFIX}{p}/");
            let versions = self
                .objects
                .list_versions(&self.lake_bucket, &prefix)
                .await?;
            for ver in versions.iter().filter(|x| !x.delete_marker) {
                let body = self
                    .objects
                    .open(&self.lake_bucket, &ver.key, ver.version_id.as_deref())
                    .await?
                    .bytes()
                    .await?;
                v.object_versions_read += 1;
                match rows_of(body.clone(), p.metric, subjects) {
                    Ok(n) => v.subject_rows_left += n,
                    Err(_) => unreadable += 1,
                }
                if let Some((rows, sha, copied)) = kept.get(&ver.key) {
                    let same = digest(body, p.metric, copied)
                        .is_ok_and(|(n, d)| n == *rows && hex::encode(d) == *sha);
                    if !same {
                        v.files_changed_otherwise += 1;
                    }
                }
            }
        }
        v.passed = v.subject_rows_left == 0 && v.files_changed_otherwise == 0 && unreadable == 0;
        Ok(v)
    }
}
