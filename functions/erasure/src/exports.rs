//! Exports partners have not downloaded yet (kept 7 days): the subjects' Observations
//! leave them too. An export names a subject only by the partner's pseudonym, under the
//! key version the export used, so each job's pseudonyms of the subjects are computed
//! with that key; every file of the job is read and written again without the lines
//! that reference them (only over the version read), earlier versions deleted, and the
//! job's record of the file (count, SHA-256) replaced so the manifest stays true. A job
//! whose partner or key is gone cannot be checked: its files go whole.

use std::collections::{BTreeMap, BTreeSet};

use pulselake_adapters::{
    DELETED_FILE, ERRORS_FILE, ExportJobs, ObjectReader, ObjectUploads, ObjectWriter, Partners,
    Secrets, VersionedObjects,
};
use pulselake_domain::NamingKey;
use sha2::{Digest, Sha256};

use crate::error::ErasureError;
use crate::evidence::{ExportsEvidence, Failure};
use crate::versions::{Bucket, NewVersion};

/// The exports bucket and what names a subject there.
pub struct ExportsErasure<'a, O, J, P, K> {
    pub objects: &'a O,
    pub bucket: &'a str,
    pub jobs: &'a J,
    pub partners: &'a P,
    pub secrets: &'a K,
}

impl<O, J, P, K> ExportsErasure<'_, O, J, P, K>
where
    O: ObjectReader + ObjectWriter + VersionedObjects + ObjectUploads,
    J: ExportJobs,
    P: Partners,
    K: Secrets,
{
    /// Every export in the bucket, cleared of the subjects.
    pub async fn clear(
        &self,
        subjects: &BTreeSet<String>,
    ) -> Result<ExportsEvidence, ErasureError> {
        let mut ev = ExportsEvidence::default();
        if subjects.is_empty() {
            return Ok(ev);
        }
        // exports/<client>/<job>/<file>
        let mut by_job: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in self.objects.list(self.bucket, "exports/").await? {
            let mut parts = key.split('/');
            if let (Some(_), Some(_), Some(job), Some(_)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            {
                by_job.entry(job.to_owned()).or_default().push(key.clone());
            }
        }
        for (job, keys) in by_job {
            ev.export_jobs_read += 1;
            match self.clear_job(&job, &keys, subjects).await {
                Ok(j) => {
                    ev.export_files_rewritten += j.export_files_rewritten;
                    ev.export_resources_removed += j.export_resources_removed;
                    ev.export_files_removed += j.export_files_removed;
                }
                Err(e) => ev.failures.push(Failure::of(format!("export {job}"), &e)),
            }
        }
        Ok(ev)
    }

    async fn clear_job(
        &self,
        job_id: &str,
        keys: &[String],
        subjects: &BTreeSet<String>,
    ) -> Result<ExportsEvidence, ErasureError> {
        let mut ev = ExportsEvidence::default();
        let key = match self.jobs.get(job_id).await? {
            Some(job) => match self.partners.get(&job.client_id).await? {
                Some(p) => Some(NamingKey::new(
                    self.secrets
                        .version(&p.key_secret, &job.key_version)
                        .await?
                        .into_bytes(),
                )),
                None => None,
            },
            None => None,
        };
        let b = Bucket {
            objects: self.objects,
            name: self.bucket,
        };
        let Some(key) = key else {
            // Nothing tells whose rows these are: the files go.
            for k in keys {
                let versions = b.versions_of(k).await?;
                b.delete_old(versions, false).await?;
                ev.export_files_removed += 1;
            }
            return Ok(ev);
        };
        let needles: Vec<String> = subjects
            .iter()
            .map(|s| format!("\"Patient/{}\"", key.pseudonym(s)))
            .collect();
        let mut outputs = self.jobs.outputs(job_id).await?;
        let mut changed_parts = BTreeSet::new();
        for k in keys {
            let name = k.rsplit('/').next().unwrap_or_default();
            if name == ERRORS_FILE || name == DELETED_FILE {
                // Notices and the Art. 19 deletions name no Observation of anyone.
                continue;
            }
            let Some(rewritten) = self.clear_file(&b, k, &needles).await? else {
                continue;
            };
            ev.export_files_rewritten += 1;
            ev.export_resources_removed += rewritten.removed;
            for (part, files) in outputs.iter_mut() {
                for f in files.iter_mut().filter(|f| f.key == *k) {
                    f.count = rewritten.count;
                    f.sha256 = rewritten.sha256.clone();
                    changed_parts.insert(part.clone());
                }
            }
        }
        for part in changed_parts {
            self.jobs
                .replace_outputs(job_id, &part, &outputs[&part])
                .await?;
        }
        Ok(ev)
    }

    /// One NDJSON file without the lines that reference a subject, put over the version
    /// read; `None` when it held none of them.
    async fn clear_file(
        &self,
        b: &Bucket<'_, O>,
        key: &str,
        needles: &[String],
    ) -> Result<Option<Rewritten>, ErasureError> {
        let versions = b.versions_of(key).await?;
        let Some(current) = versions.iter().find(|v| v.latest && !v.delete_marker) else {
            return Ok(None);
        };
        let body = self
            .objects
            .open(self.bucket, key, current.version_id.as_deref())
            .await?
            .bytes()
            .await?;
        let finder: Vec<memchr::memmem::Finder<'_>> = needles
            .iter()
            .map(|n| memchr::memmem::Finder::new(n.as_bytes()))
            .collect();
        let mut kept = Vec::with_capacity(body.len());
        let (mut count, mut removed) = (0u64, 0u64);
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if finder.iter().any(|f| f.find(line).is_some()) {
                removed += 1;
            } else {
                kept.extend_from_slice(line);
                kept.push(b'\n');
                count += 1;
            }
        }
        if removed == 0 {
            return Ok(None);
        }
        let sha256 = hex::encode(Sha256::digest(&kept));
        let upload = NewVersion::new(
            self.objects,
            self.bucket,
            key,
            "application/fhir+ndjson",
            usize::MAX,
        );
        upload
            .commit(kept, current.etag.as_deref().unwrap_or_default())
            .await?;
        b.delete_old(versions, true).await?;
        Ok(Some(Rewritten {
            count,
            removed,
            sha256,
        }))
    }
}

struct Rewritten {
    count: u64,
    removed: u64,
    sha256: String,
}
