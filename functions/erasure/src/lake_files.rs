//! A unit's lake files: every version read by ranged reads (footer, subject chunks, one
//! row group at a time), the current one rewritten without the subjects as a stream of
//! parts put only over the version read, earlier versions deleted, the partition read
//! again to verify.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use pulselake_adapters::{
    AuditLog, AwsError, ErasurePasses, ErasureRequests, ObjectReader, ObjectUploads, ObjectVersion,
    ObjectWriter, VersionedObjects, WorkQueue,
};
use pulselake_domain::partition::READINGS_PREFIX;
use pulselake_domain::{Metric, Partition};
use pulselake_lake::erase::{
    Eraser, KeptDigest, footer_clears, footer_len, groups_to_look_at, rows_in_group,
};
use pulselake_lake::{FileLayout, LakeFile};

use crate::pass::{Erasure, RewrittenFile, UnitEvidence, Verification};

/// The new file is uploaded in parts of this size as it grows: memory holds one row
/// group of the old file and at most a part of the new one, whatever their sizes.
pub const PART_BYTES: usize = 8 << 20;

/// What verification compares a rewritten file with: its rows, the SHA-256 of the rows
/// kept, and its row groups copied byte for byte.
pub(crate) type Kept = (u64, String, Vec<usize>);

impl<O, E, A, P, Q> Erasure<O, E, A, P, Q>
where
    O: ObjectReader + ObjectWriter + VersionedObjects + ObjectUploads,
    E: ErasureRequests,
    A: AuditLog,
    P: ErasurePasses,
    Q: WorkQueue,
{
    /// Erases the subjects from every version of one file: whether any version held
    /// them, and for a rewritten file its key and what verification compares it with.
    /// Every version is read by ranged reads: its footer, then the subject column of
    /// the row groups the footer cannot clear, then (to rewrite the current version)
    /// one row group at a time.
    pub(crate) async fn erase_file(
        &self,
        key: &str,
        p: Partition,
        subjects: &BTreeSet<String>,
        ev: &mut UnitEvidence,
    ) -> Result<(bool, Option<(String, Kept)>), String> {
        let bucket = &self.lake_bucket;
        let versions: Vec<ObjectVersion> = self.versions_of(bucket, key).await?;
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
                ev.raw_lines
                    .entry(source)
                    .or_default()
                    .merge(crate::raw::Lines::of(l));
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
            ev.old_versions_deleted += self.delete_old(bucket, versions, result.is_some()).await?;
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
    pub(crate) async fn rewrite(
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
        let mut upload = NewVersion::new(
            &self.objects,
            &self.lake_bucket,
            &v.key,
            PARQUET,
            self.part_bytes,
        );
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

    /// Deletes the versions listed before a rewrite, markers too (the new version, and
    /// any written since, stays). In a bucket never versioned the put replaced the
    /// object, so nothing is deleted when something was put. How many went.
    pub(crate) async fn delete_old(
        &self,
        bucket: &str,
        versions: Vec<ObjectVersion>,
        replaced: bool,
    ) -> Result<usize, String> {
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
        }
        Ok(old.len())
    }

    /// Every version of exactly `key` (a listing by prefix also names longer keys).
    pub(crate) async fn versions_of(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<ObjectVersion>, String> {
        Ok(self
            .objects
            .list_versions(bucket, key)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|v| v.key == key)
            .collect())
    }

    /// Whether `v` is still the current version of its key.
    pub(crate) async fn unchanged_since_read(&self, v: &ObjectVersion) -> Result<(), String> {
        self.unchanged_in(&self.lake_bucket, v).await
    }

    pub(crate) async fn unchanged_in(&self, bucket: &str, v: &ObjectVersion) -> Result<(), String> {
        let current = self
            .versions_of(bucket, &v.key)
            .await?
            .into_iter()
            .find(|x| x.latest);
        if current.map(|x| x.version_id) != Some(v.version_id.clone()) {
            return Err(CHANGED.into());
        }
        Ok(())
    }

    /// Every version of every file of a partition a subject appeared in, read again by
    /// ranged reads: rows of the subjects left, and each rewritten file's rows against
    /// the rows kept.
    pub(crate) async fn verify(
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

pub(crate) const CHANGED: &str = "changed while it was rewritten; the next pass takes it again";

/// One version of a lake file, read by ranged reads.
pub(crate) struct Ranged<'a, O> {
    objects: &'a O,
    bucket: &'a str,
    version: &'a ObjectVersion,
}

impl<O: VersionedObjects> Ranged<'_, O> {
    /// The file's footer (two ranged reads: the last 8 bytes, then the metadata).
    pub(crate) async fn footer(&self, metric: Metric) -> Result<LakeFile, String> {
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
    pub(crate) async fn read(&self, start: u64, end: u64) -> Result<Bytes, String> {
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
    pub(crate) async fn hold(
        &self,
        file: &mut LakeFile,
        (start, end): (u64, u64),
    ) -> Result<(), String> {
        let bytes = self.read(start, end).await?;
        if bytes.len() as u64 != end.saturating_sub(start) {
            return Err(format!("a short read of bytes {start}..{end}"));
        }
        file.hold(start, bytes);
        Ok(())
    }

    /// Rows of `subjects` in this version, and whether it holds exactly the rows
    /// `kept` says (when it is a rewritten file).
    pub(crate) async fn check(
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
pub(crate) struct NewVersion<'a, O> {
    objects: &'a O,
    bucket: &'a str,
    key: &'a str,
    content_type: &'static str,
    part_bytes: usize,
    upload: Option<(String, Vec<(i32, String)>)>,
    pending: Vec<u8>,
}

impl<'a, O: ObjectUploads> NewVersion<'a, O> {
    pub(crate) fn new(
        objects: &'a O,
        bucket: &'a str,
        key: &'a str,
        content_type: &'static str,
        part_bytes: usize,
    ) -> Self {
        NewVersion {
            objects,
            bucket,
            key,
            content_type,
            part_bytes,
            upload: None,
            pending: Vec::new(),
        }
    }

    pub(crate) async fn write(&mut self, bytes: Vec<u8>) -> Result<(), AwsError> {
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
    pub(crate) async fn commit(mut self, tail: Vec<u8>, if_match: &str) -> Result<bool, AwsError> {
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
    pub(crate) async fn abandon(mut self) {
        if let Some((id, _)) = self.upload.take() {
            let _ = self.objects.abort_upload(self.bucket, self.key, &id).await;
        }
    }
}

const PARQUET: &str = "application/vnd.apache.parquet";
