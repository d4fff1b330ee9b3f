//! Copies of the subjects' data outside the lake: raw files archived under their
//! legacy keys and their quarantine reports (deleted whole), and raw files and reports
//! they share with other patients (rewritten without their lines, see [`crate::raw`]).

use std::collections::{BTreeMap, BTreeSet};

use pulselake_adapters::{
    AuditLog, AwsError, ErasurePasses, ErasureRequest, ErasureRequests, ObjectReader,
    ObjectUploads, ObjectVersion, ObjectWriter, VersionedObjects, WorkQueue,
};

use crate::lake_files::{CHANGED, NewVersion};
use crate::pass::{Copies, Erasure, ErasureEvidence};
use crate::raw;

/// Raw files are archived as uploaded; their rewrite is stored as bytes.
const RAW: &str = "application/octet-stream";

impl<O, E, A, P, Q> Erasure<O, E, A, P, Q>
where
    O: ObjectReader + ObjectWriter + VersionedObjects + ObjectUploads,
    E: ErasureRequests,
    A: AuditLog,
    P: ErasurePasses,
    Q: WorkQueue,
{
    /// The archived raw files the removed lake rows came from (seed files, one patient
    /// each, go whole by their alias instead) rewritten without the subjects' lines, and
    /// their quarantine reports without the subjects' entries. Returns the copies still
    /// holding a subject's device afterwards (verification). A file that fails is
    /// reported by its reference (keys may carry patient ids), nothing of it deleted.
    pub(crate) async fn clear_raw_copies(
        &self,
        c: &Copies,
        lines: &BTreeMap<String, raw::Lines>,
        devices: &[String],
        ev: &mut ErasureEvidence,
    ) -> Result<usize, AwsError> {
        let mut left = 0;
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
                lines: raw::Lines::default(),
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
    pub(crate) async fn clear_raw_file(
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
                lines: raw::Lines::default(),
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
    pub(crate) async fn rewrite_raw(
        &self,
        bucket: &str,
        key: &str,
        marks: &raw::Marks,
        gz: Option<bool>,
        csv: bool,
    ) -> Result<raw::Filtered, String> {
        let versions: Vec<ObjectVersion> = self.versions_of(bucket, key).await?;
        let Some(current) = versions.iter().find(|v| v.latest && !v.delete_marker) else {
            return Err("no current version".into());
        };
        let mut upload = NewVersion::new(&self.objects, bucket, key, RAW, self.part_bytes);
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
        self.delete_old(bucket, versions, replaced).await?;
        Ok(filtered)
    }

    /// Streams a version of a raw file through the filter (on a blocking thread, as
    /// file-ingest reads files); with `upload`, the output goes to it as produced.
    pub(crate) async fn filter_stream(
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
    pub(crate) async fn filter_stream_as(
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
    pub(crate) async fn clear_report(
        &self,
        bucket: &str,
        key: &str,
        marks: &raw::Marks,
        removed_lines: &BTreeSet<u64>,
    ) -> Result<usize, String> {
        let versions: Vec<ObjectVersion> = self.versions_of(bucket, key).await?;
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
        self.delete_old(bucket, versions, replaced).await?;
        Ok(removed)
    }

    /// The subjects' raw files in the archive (a seed file's name starts with the
    /// patient key of its `seed:` alias) and the quarantine reports file-ingest wrote
    /// for them (named by the keyed reference of the staged file's key).
    pub(crate) async fn copies_of(
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
}
