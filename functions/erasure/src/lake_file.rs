//! One lake file (every version of one key) erased of a unit's subjects. Every version
//! is read by ranged reads: its footer, then the subject column of the row groups the
//! statistics cannot clear, then (to rewrite the current version) one row group at a
//! time. The new file leaves as a stream of parts, put only over the version read;
//! the earlier versions are deleted.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use pulselake_adapters::{ObjectUploads, ObjectVersion, VersionedObjects};
use pulselake_domain::Metric;
use pulselake_lake::erase::{
    Eraser, KeptDigest, footer_clears, footer_len, groups_to_look_at, rows_in_group,
};
use pulselake_lake::{FileLayout, LakeError, LakeFile};

use crate::error::ErasureError;
use crate::evidence::{Kept, RewrittenFile};
use crate::raw::Lines;
use crate::versions::{Bucket, NewVersion};

/// The new file is uploaded in parts of this size as it grows: memory holds one row
/// group of the old file and at most a part of the new one, whatever their sizes.
pub const PART_BYTES: usize = 8 << 20;

const PARQUET: &str = "application/vnd.apache.parquet";

/// The erasure of a unit's subjects from the lake's files, one key at a time.
pub struct FileErasure<'a, O> {
    pub lake: Bucket<'a, O>,
    pub subjects: &'a BTreeSet<String>,
    /// The size of the new file's parts ([`PART_BYTES`]; at least 5 MiB on S3).
    pub part_bytes: usize,
}

/// What erasing one file did.
#[derive(Debug, Default)]
pub struct FileOutcome {
    /// Some version of it held a subject (its partition is verified).
    pub held: bool,
    pub versions_cleared_by_footer: usize,
    pub rows_removed: u64,
    /// The current version, rewritten or removed whole.
    pub rewritten: Option<RewrittenFile>,
    /// What the new current version must hold (a file rewritten, not removed).
    pub kept: Option<Kept>,
    pub old_versions_deleted: usize,
    /// Lines of raw files whose rows were removed.
    pub raw_lines: BTreeMap<String, Lines>,
}

impl<O: VersionedObjects + ObjectUploads> FileErasure<'_, O> {
    /// Erases the subjects from every version of `key`.
    pub async fn erase(&self, key: &str, metric: Metric) -> Result<FileOutcome, ErasureError> {
        let versions = self.lake.versions_of(key).await?;
        let mut out = FileOutcome::default();
        // Whether the current version went (rewritten, or removed whole).
        let mut current_replaced = false;
        for v in versions.iter().filter(|v| !v.delete_marker) {
            let ranged = Ranged {
                objects: self.lake.objects,
                bucket: self.lake.name,
                version: v,
            };
            let mut file = ranged.footer(metric).await?;
            if footer_clears(&file, self.subjects) {
                out.versions_cleared_by_footer += 1;
                continue;
            }
            let mut hits = vec![0; file.row_groups()];
            for g in groups_to_look_at(&file, self.subjects) {
                let range = file.subject_chunk_range(g);
                ranged.hold(&mut file, range).await?;
                hits[g] = rows_in_group(&file, g, self.subjects)?;
            }
            let rows_removed: u64 = hits.iter().sum();
            if rows_removed == 0 {
                continue;
            }
            out.held = true;
            if !v.latest {
                continue;
            }
            current_replaced = true;
            // In place: a new version of the same key, so whatever names this file
            // (file-ingest's record of a source's outputs, which a corrected re-upload
            // deletes) still names it. A file of the subjects' rows only just goes, but
            // is read through too (nothing put): the lines of its file rows name the
            // raw copies to clear.
            let rows_in = file.rows();
            let whole = rows_removed == rows_in;
            let rewrite = self.rewrite(&ranged, &mut file, &hits, !whole).await?;
            for (source, lines) in rewrite.file_lines {
                out.raw_lines
                    .entry(source)
                    .or_default()
                    .merge(Lines::of(lines));
            }
            let kept_sha256 = if whole {
                self.lake.unchanged(v).await?;
                hex::encode(KeptDigest::default().finish().1)
            } else {
                out.kept = Some(Kept {
                    rows: rows_in - rows_removed,
                    sha256: rewrite.kept_sha256.clone(),
                    copied_groups: rewrite.copied_groups,
                });
                rewrite.kept_sha256
            };
            out.rows_removed += rows_removed;
            out.rewritten = Some(RewrittenFile {
                key: key.to_owned(),
                removed_whole: whole,
                rows_in,
                rows_removed,
                kept_sha256,
            });
        }
        if out.held {
            // Every version listed before the rewrite goes, markers too; the new
            // version (and any written since, e.g. by file-ingest) stays. In a bucket
            // without versioning the put has replaced the object already. A current
            // version without the subjects (only an older one held them) stays too.
            let old: Vec<_> = versions
                .into_iter()
                .filter(|v| current_replaced || !v.latest || v.delete_marker)
                .collect();
            out.old_versions_deleted = self.lake.delete_old(old, out.kept.is_some()).await?;
        }
        Ok(out)
    }

    /// Writes the current version `ranged` names again without the subjects, a row
    /// group at a time, as a new version of its key: put (or its multipart upload
    /// completed) only if the key's current version is still the one read (S3's
    /// If-Match on its ETag). A version written meanwhile (a corrected re-upload) is
    /// left for the next pass (`Changed`), and the request stays pending.
    /// `put`: false to read it through without writing (what it removes, nothing more).
    async fn rewrite(
        &self,
        ranged: &Ranged<'_, O>,
        file: &mut LakeFile,
        hits: &[u64],
        put: bool,
    ) -> Result<Rewritten, ErasureError> {
        let v = ranged.version;
        let mut eraser = Eraser::new(file, self.subjects, FileLayout::default())?;
        let mut upload = NewVersion::new(
            self.lake.objects,
            self.lake.name,
            &v.key,
            PARQUET,
            self.part_bytes,
        );
        let written: Result<_, ErasureError> = async {
            for (g, h) in hits.iter().enumerate() {
                let range = file.group_range(g);
                ranged.hold(file, range).await?;
                eraser.push(file, g, *h == 0)?;
                if !put {
                    eraser.take_output();
                } else if eraser.buffered() >= self.part_bytes {
                    upload.write(eraser.take_output()).await?;
                }
            }
            let head = eraser.take_output();
            let (rewrite, tail) = eraser.finish()?;
            if put {
                upload.write(head).await?;
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
        let out = Rewritten {
            kept_sha256: hex::encode(rewrite.kept_digest),
            copied_groups: rewrite.copied_groups,
            file_lines: rewrite.file_lines,
        };
        if !put {
            upload.abandon().await;
            return Ok(out);
        }
        // S3 checks If-Match; the local stack checks it on a put only, so the version
        // is compared here too (a cheap list) before the upload completes.
        if let Err(e) = self.lake.unchanged(v).await {
            upload.abandon().await;
            return Err(e);
        }
        upload
            .commit(tail, v.etag.as_deref().unwrap_or_default())
            .await?;
        Ok(out)
    }
}

/// What a rewrite kept and removed.
struct Rewritten {
    kept_sha256: String,
    copied_groups: Vec<usize>,
    file_lines: BTreeMap<String, BTreeSet<u64>>,
}

/// One version of a lake file, read by ranged reads.
pub struct Ranged<'a, O> {
    pub objects: &'a O,
    pub bucket: &'a str,
    pub version: &'a ObjectVersion,
}

impl<O: VersionedObjects> Ranged<'_, O> {
    /// The file's footer (two ranged reads: the last 8 bytes, then the metadata).
    pub async fn footer(&self, metric: Metric) -> Result<LakeFile, ErasureError> {
        let size = self.version.size;
        if size < 12 {
            return Err(LakeError::NotLakeFile(format!("{size} bytes")).into());
        }
        let tail = self.read(size - 8, size).await?;
        let len = footer_len(&tail)?;
        if len == 0 || len + 12 > size {
            let why = format!("a footer of {len} bytes in {size}");
            return Err(LakeError::NotLakeFile(why).into());
        }
        let footer = self.read(size - 8 - len, size - 8).await?;
        Ok(LakeFile::from_footer(&footer, size, metric)?)
    }

    /// Bytes `start..end` of the file (a short read is the transport's fault).
    async fn read(&self, start: u64, end: u64) -> Result<Bytes, ErasureError> {
        if end <= start {
            return Ok(Bytes::new());
        }
        let v = self.version;
        let bytes = self
            .objects
            .read_range(self.bucket, &v.key, v.version_id.as_deref(), start, end - 1)
            .await?;
        if bytes.len() as u64 != end - start {
            let why = format!("a short read of bytes {start}..{end}");
            return Err(pulselake_adapters::AwsError::transient("s3:GetObject", why).into());
        }
        Ok(bytes)
    }

    /// Fetches a range of the file into `file` (what it holds from now on).
    async fn hold(
        &self,
        file: &mut LakeFile,
        (start, end): (u64, u64),
    ) -> Result<(), ErasureError> {
        let bytes = self.read(start, end).await?;
        file.hold(start, bytes);
        Ok(())
    }

    /// Rows of `subjects` in this version, and whether it holds exactly the rows
    /// `kept` says (when it is a rewritten file).
    pub async fn check(
        &self,
        metric: Metric,
        subjects: &BTreeSet<String>,
        kept: Option<&Kept>,
    ) -> Result<(u64, bool), ErasureError> {
        let mut file = self.footer(metric).await?;
        let mut left = 0;
        let Some(kept) = kept else {
            for g in groups_to_look_at(&file, subjects) {
                let range = file.subject_chunk_range(g);
                self.hold(&mut file, range).await?;
                left += rows_in_group(&file, g, subjects)?;
            }
            return Ok((left, true));
        };
        let mut digest = KeptDigest::default();
        for g in 0..file.row_groups() {
            let range = file.group_range(g);
            self.hold(&mut file, range).await?;
            left += rows_in_group(&file, g, subjects)?;
            digest.push(&file, g, kept.copied_groups.contains(&g))?;
        }
        let (n, d) = digest.finish();
        Ok((left, n == kept.rows && hex::encode(d) == kept.sha256))
    }
}
