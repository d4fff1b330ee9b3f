//! Copies of the subjects' data outside the lake: raw files archived under their
//! legacy keys and their quarantine reports (deleted whole), and raw files and reports
//! they share with other patients (rewritten without their lines, see [`crate::raw`]).
//! Removed by the unit that finishes a pass, once every partition has named the lines
//! whose rows it removed.

use std::collections::{BTreeMap, BTreeSet};

use pulselake_adapters::{
    ErasureRequest, ObjectReader, ObjectUploads, ObjectVersion, ObjectWriter, VersionedObjects,
};
use pulselake_domain::NamingKey;

use crate::error::ErasureError;
use crate::evidence::CopiesEvidence;
use crate::raw;
use crate::versions::{Bucket, NewVersion};

/// Raw files are archived as uploaded; their rewrite is stored as bytes.
const RAW: &str = "application/octet-stream";

/// The buckets that hold copies of a subject's data outside the lake, and the key
/// file-ingest names its quarantine reports with.
pub struct Copies {
    pub staging_bucket: String,
    pub processed_bucket: String,
    pub quarantine_bucket: String,
    pub naming: NamingKey,
}

/// The copies' erasure for one pass.
pub struct CopiesErasure<'a, O> {
    pub objects: &'a O,
    pub copies: &'a Copies,
    pub part_bytes: usize,
}

/// A raw file as erasure reads it.
#[derive(Clone, Copy)]
struct RawFile<'a> {
    bucket: &'a str,
    key: &'a str,
    version: Option<&'a str>,
    /// Gzip (`None`: as its first bytes say).
    gz: Option<bool>,
    /// CSV records (else lines).
    csv: bool,
}

impl<'a> RawFile<'a> {
    /// An archived upload: its format from its staging prefix and name.
    fn archived(bucket: &'a str, key: &'a str) -> RawFile<'a> {
        RawFile {
            bucket,
            key,
            version: None,
            gz: Some(key.ends_with(".gz")),
            csv: key.starts_with("csv/"),
        }
    }
}

impl<O> CopiesErasure<'_, O>
where
    O: ObjectReader + ObjectWriter + VersionedObjects + ObjectUploads,
{
    fn bucket<'b>(&'b self, name: &'b str) -> Bucket<'b, O> {
        Bucket {
            objects: self.objects,
            name,
        }
    }

    fn reference(&self, key: &str) -> String {
        let c = self.copies;
        c.naming.reference(&format!("{}/{key}", c.staging_bucket))
    }

    /// Every copy of the pending requests' subjects: their own raw files deleted, the
    /// files they share rewritten by `lines` (the lines whose rows left the lake) and
    /// their devices, then what is left counted (verification).
    pub async fn clear(
        &self,
        pending: &[ErasureRequest],
        lines: &BTreeMap<String, raw::Lines>,
    ) -> Result<CopiesEvidence, ErasureError> {
        let mut ev = CopiesEvidence::default();
        let c = self.copies;
        for (bucket, keys) in self.copies_of(pending).await? {
            for key in &keys {
                let b = self.bucket(&bucket);
                let versions = b.versions_of(key).await?;
                b.delete_old(versions, false).await?;
            }
            if bucket == c.processed_bucket {
                ev.raw_files_deleted += keys.len();
            } else {
                ev.quarantine_objects_deleted += keys.len();
            }
        }
        let devices: Vec<String> = pending.iter().flat_map(|r| r.devices.clone()).collect();
        ev.add(self.clear_shared(lines, &devices).await?);
        ev.left += self
            .copies_of(pending)
            .await?
            .iter()
            .map(|(_, keys)| keys.len())
            .sum::<usize>();
        Ok(ev)
    }

    /// The archived raw files the removed lake rows came from (seed files, one patient
    /// each, go whole by their alias instead) rewritten without the subjects' lines, and
    /// their quarantine reports without the subjects' entries; the copies still holding a
    /// subject's device afterwards are counted in `left`. A file that fails is reported
    /// by its reference (keys may carry patient ids), nothing of it deleted.
    async fn clear_shared(
        &self,
        lines: &BTreeMap<String, raw::Lines>,
        devices: &[String],
    ) -> Result<CopiesEvidence, ErasureError> {
        let c = self.copies;
        let mut ev = CopiesEvidence::default();
        let reports = self.objects.list(&c.quarantine_bucket, "files/").await?;
        // The archive is listed only when lake rows led to it.
        let mut archived = Vec::new();
        if !lines.is_empty() {
            for prefix in ["csv/", "ndjson/"] {
                archived.extend(
                    self.objects
                        .list_versions(&c.processed_bucket, prefix)
                        .await?,
                );
            }
        }
        archived.retain(|v| v.latest && !v.delete_marker);
        // (size, SHA-256, marks) of each file rewritten: a copy of one under another
        // name (ingested once, archived twice) has the same lines.
        let mut originals: Vec<(u64, String, raw::Marks)> = Vec::new();
        let mut done = BTreeSet::new();
        for v in &archived {
            let reference = self.reference(&v.key);
            let Some(l) = lines.get(&reference) else {
                continue;
            };
            let marks = raw::Marks {
                lines: l.clone(),
                devices: devices.to_vec(),
            };
            done.insert(v.key.clone());
            let (filtered, file_ev) = self
                .clear_raw_file(&v.key, &reference, &marks, &reports)
                .await;
            ev.add(file_ev);
            if let Some(f) = filtered {
                originals.push((v.size, f.input_sha256, marks));
            }
        }
        for v in archived.iter().filter(|v| !done.contains(&v.key)) {
            if !originals.iter().any(|o| o.0 == v.size) {
                continue;
            }
            let reference = self.reference(&v.key);
            let file = RawFile::archived(&c.processed_bucket, &v.key);
            let sha = match self.filter(file, &raw::Marks::default(), None).await {
                Ok(f) => f.input_sha256,
                Err(e) => {
                    ev.add(CopiesEvidence::failed(format!("raw file {reference}"), &e));
                    continue;
                }
            };
            if let Some((_, _, marks)) = originals.iter().find(|o| o.0 == v.size && o.1 == sha) {
                let marks = marks.clone();
                let (_, file_ev) = self
                    .clear_raw_file(&v.key, &reference, &marks, &reports)
                    .await;
                ev.add(file_ev);
            }
        }
        // Files quarantined whole never reached the lake: their copies in quarantine
        // lose the lines that name a subject's device.
        if !devices.is_empty() {
            let marks = raw::Marks {
                lines: raw::Lines::default(),
                devices: devices.to_vec(),
            };
            for key in reports.iter().filter(|k| k.ends_with("/raw")) {
                let file = RawFile {
                    bucket: &c.quarantine_bucket,
                    key,
                    version: None,
                    gz: None,
                    csv: false,
                };
                match self.rewrite_raw(file, &marks).await {
                    Ok(f) if f.removed > 0 => {
                        ev.quarantined_files_rewritten += 1;
                        ev.raw_lines_removed += f.removed;
                    }
                    Ok(_) => {}
                    Err(e) => ev.add(CopiesEvidence::failed("a file quarantined whole", &e)),
                }
            }
        }
        Ok(ev)
    }

    /// One archived raw file without the subjects' lines, checked afterwards, and its
    /// quarantine report parts without their entries. The filter's result is `None`
    /// when it failed (the failure is in the evidence).
    async fn clear_raw_file(
        &self,
        key: &str,
        reference: &str,
        marks: &raw::Marks,
        reports: &[String],
    ) -> (Option<raw::Filtered>, CopiesEvidence) {
        let c = self.copies;
        let mut ev = CopiesEvidence::default();
        let file = RawFile::archived(&c.processed_bucket, key);
        let filtered = match self.rewrite_raw(file, marks).await {
            Ok(f) => f,
            Err(e) => {
                let failed = CopiesEvidence::failed(format!("raw file {reference}"), &e);
                return (None, failed);
            }
        };
        if filtered.removed == 0 {
            return (Some(filtered), ev);
        }
        ev.raw_files_rewritten += 1;
        ev.raw_lines_removed += filtered.removed;
        if !marks.devices.is_empty() && filtered.kept_data > 0 {
            let after = raw::Marks {
                lines: raw::Lines::default(),
                devices: marks.devices.clone(),
            };
            match self.filter(file, &after, None).await {
                Ok(f) if f.removed > 0 => ev.left += 1,
                Ok(_) => {}
                Err(e) => ev.add(CopiesEvidence::failed(format!("raw file {reference}"), &e)),
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
                .clear_report(report, marks, &filtered.removed_lines)
                .await
            {
                Ok(n) => ev.quarantine_entries_removed += n,
                Err(e) => ev.add(CopiesEvidence::failed(format!("report of {reference}"), &e)),
            }
        }
        (Some(filtered), ev)
    }

    /// One raw file without the lines `marks` names, as a new version put only over the
    /// version read; every earlier version deleted. A file left with no data goes.
    async fn rewrite_raw(
        &self,
        file: RawFile<'_>,
        marks: &raw::Marks,
    ) -> Result<raw::Filtered, ErasureError> {
        let b = self.bucket(file.bucket);
        let versions: Vec<ObjectVersion> = b.versions_of(file.key).await?;
        let Some(current) = versions.iter().find(|v| v.latest && !v.delete_marker) else {
            return Err(ErasureError::Changed);
        };
        let mut upload = NewVersion::new(self.objects, file.bucket, file.key, RAW, self.part_bytes);
        let read = RawFile {
            version: current.version_id.as_deref(),
            ..file
        };
        let filtered = match self.filter(read, marks, Some(&mut upload)).await {
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
            if let Err(e) = b.unchanged(current).await {
                upload.abandon().await;
                return Err(e);
            }
            upload
                .commit(Vec::new(), current.etag.as_deref().unwrap_or_default())
                .await?;
        }
        b.delete_old(versions, replaced).await?;
        Ok(filtered)
    }

    /// Streams a version of a raw file through the filter (on a blocking thread, as
    /// file-ingest reads files); with `upload`, the output goes to it as produced.
    async fn filter(
        &self,
        file: RawFile<'_>,
        marks: &raw::Marks,
        mut upload: Option<&mut NewVersion<'_, O>>,
    ) -> Result<raw::Filtered, ErasureError> {
        let body = self
            .objects
            .open(file.bucket, file.key, file.version)
            .await?
            .into_async_read();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
        let (marks, part, gz, csv) = (marks.clone(), self.part_bytes, file.gz, file.csv);
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
            .map_err(|e| ErasureError::Content(std::io::Error::other(e.to_string())))?
            .map_err(ErasureError::Content)?;
        sent?;
        Ok(filtered)
    }

    /// The subjects' rows in a quarantine report part removed (the part put again, or
    /// deleted when nothing is left, every earlier version too); how many entries.
    async fn clear_report(
        &self,
        key: &str,
        marks: &raw::Marks,
        removed_lines: &BTreeSet<u64>,
    ) -> Result<usize, ErasureError> {
        let bucket = &self.copies.quarantine_bucket;
        let b = self.bucket(bucket);
        let versions: Vec<ObjectVersion> = b.versions_of(key).await?;
        let body = self.objects.open(bucket, key, None).await?.bytes().await?;
        let (kept, removed) = raw::filter_report(&body, marks, removed_lines);
        if removed == 0 {
            return Ok(0);
        }
        let replaced = !kept.is_empty();
        if replaced {
            self.objects
                .put(bucket, key, kept, "application/x-ndjson")
                .await?;
        }
        b.delete_old(versions, replaced).await?;
        Ok(removed)
    }

    /// The subjects' raw files in the archive (a seed file's name starts with the
    /// patient key of its `seed:` alias) and the quarantine reports file-ingest wrote
    /// for them (named by the keyed reference of the staged file's key).
    async fn copies_of(
        &self,
        pending: &[ErasureRequest],
    ) -> Result<Vec<(String, Vec<String>)>, ErasureError> {
        let c = self.copies;
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
            .map(|k| format!("/{}-", self.reference(k)))
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
}
