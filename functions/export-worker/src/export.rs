//! One unit of an export job (a lake partition, or a day's blood pressure pair): the
//! partition's files read a row group at a time, the partner's scope and pseudonyms
//! applied, FHIR Observations written as NDJSON files of at most `FILE_RESOURCES`
//! resources under the partner's prefix. File names follow from the unit and the
//! order of the lake's files, so a retried unit overwrites its own files and a
//! resource is never exported twice; the unit counts once in the job's progress.

use std::collections::HashSet;

use bytes::Bytes;
use pulselake_adapters::{
    AuditLog, AwsError, CachedRegistry, DELETED_FILE, ErasureRequests, ExportJobs, Job, JobStatus,
    ObjectReader, ObjectWriter, OutputFile, Partner, Partners, RegistryLookup, Secrets,
    VersionedObjects, WorkUnit, job_prefix, remove_files,
};
use pulselake_domain::keyed::KeyedIds;
use pulselake_domain::partner::{Mode, PartnerStatus};
use pulselake_domain::time::format_rfc3339_ms;
use pulselake_domain::{Metric, NamingKey, Partition, Reading};
use pulselake_lake::LakeFile;
use sha2::{Digest, Sha256};

use crate::convert::Converter;

/// Resources per NDJSON file (the spec allows any; 100,000 keeps a file ~50 MB, which
/// the worker holds in memory once).
pub const FILE_RESOURCES: u64 = 100_000;

/// The ports the worker works with, named once: AWS's in the function, in-memory ones
/// in tests.
pub trait WorkerPorts {
    type Jobs: ExportJobs;
    type Partners: Partners;
    type Secrets: Secrets;
    type Objects: ObjectReader + ObjectWriter + VersionedObjects;
    type Registry: RegistryLookup;
    type Audit: AuditLog;
    type Erasures: ErasureRequests;
}

/// Everything the worker needs, built once per cold start.
pub struct ExportWorker<X: WorkerPorts> {
    pub jobs: X::Jobs,
    pub partners: X::Partners,
    pub secrets: X::Secrets,
    pub objects: X::Objects,
    pub registry: CachedRegistry<X::Registry>,
    /// Job transitions (completed, cleaned up after a cancel) go to the audit trail.
    pub audit: X::Audit,
    /// Erasure requests: a tombstoned subject's rows never leave, even before the
    /// erasure pass has rewritten the lake.
    pub erasures: X::Erasures,
    pub lake_bucket: String,
    pub exports_bucket: String,
}

/// What a unit came to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UnitReport {
    pub rows_read: u64,
    pub resources: u64,
    pub files: usize,
    /// The job was not (or no longer) in progress: nothing was kept.
    pub skipped: bool,
    /// This unit finished the job.
    pub completed_job: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("a lake file cannot be read: {0}")]
    Lake(#[from] pulselake_lake::LakeError),
}

impl<X: WorkerPorts> ExportWorker<X> {
    pub async fn run(&self, unit: &WorkUnit, now_ms: i64) -> Result<UnitReport, UnitError> {
        let mut report = UnitReport::default();
        let Some(job) = self
            .jobs
            .get(&unit.job)
            .await?
            .filter(|j| j.status == JobStatus::InProgress)
        else {
            report.skipped = true;
            return Ok(report);
        };
        let Some(partner) = self.partners.get(&job.client_id).await? else {
            report.skipped = true;
            return Ok(report);
        };
        if partner.status != PartnerStatus::Active {
            // A suspended partner's export stops: nothing more is written for it.
            let why = "the partner was suspended while the export ran".to_owned();
            if self
                .jobs
                .end(&job, &[JobStatus::InProgress], JobStatus::Failed, Some(why))
                .await?
            {
                remove_files(&self.objects, &self.exports_bucket, &job).await?;
                let record = serde_json::json!({
                    "at": format_rfc3339_ms(now_ms),
                    "event": "export_stopped_partner_suspended",
                    "partner": job.client_id,
                    "job": job.id,
                });
                self.audit.append("export-worker", now_ms, &record).await?;
            }
            report.skipped = true;
            return Ok(report);
        }
        let key = NamingKey::new(
            self.secrets
                .version(&partner.key_secret, &job.key_version)
                .await?
                .into_bytes(),
        );
        let tombstoned: HashSet<String> = self
            .erasures
            .all()
            .await?
            .into_iter()
            .map(|r| r.subject_id)
            .collect();
        let mut conv = Converter::new(&job.scope, &key);
        let mut rows: Vec<Reading<'static>> = Vec::new();
        let mut writer = Parts::new(&self.objects, &self.exports_bucket, &job, unit, &key);
        let bp = unit.partitions.len() > 1;
        for partition in &unit.partitions {
            let Ok(p) = partition.parse::<Partition>() else {
                continue;
            };
            let mut keys = self.objects.list(&self.lake_bucket, &p.prefix()).await?;
            keys.sort();
            for k in keys.iter().filter(|k| k.ends_with(".parquet")) {
                let body: Bytes = self
                    .objects
                    .open(&self.lake_bucket, k, None)
                    .await?
                    .bytes()
                    .await?;
                let file = LakeFile::open(body, p.metric)?;
                for g in 0..file.row_groups() {
                    let group = file.row_group(g)?;
                    report.rows_read += group.len() as u64;
                    let mut admitted = self.admitted(&conv, group).await?;
                    admitted.retain(|r| !tombstoned.contains(r.subject_id.as_ref()));
                    if bp {
                        rows.extend(admitted);
                    } else {
                        for r in &admitted {
                            conv.single(r, &mut writer.buf);
                            writer.count += 1;
                            if writer.count == FILE_RESOURCES {
                                writer.flush().await?;
                            }
                        }
                    }
                }
            }
        }
        if bp {
            // A day's pairs need both partitions' rows (one day of the fleet's blood
            // pressure: a few MB); the NDJSON is then cut into files.
            let refs: Vec<&Reading<'_>> = rows.iter().collect();
            writer.count += conv.blood_pressure(&refs, &mut writer.buf);
        }
        writer.flush().await?;
        report.resources = writer.files.iter().map(|f| f.count).sum();
        report.files = writer.files.len();
        let files = writer.files;
        let Some(after) = self
            .jobs
            .finish_partition(&job.id, &unit.unit, &files, now_ms)
            .await?
        else {
            return Ok(report);
        };
        let event = match after.status {
            JobStatus::InProgress if after.done >= after.total => {
                // Deletions first: the manifest a partner reads lists every one.
                self.write_deletions(&job, &partner, &tombstoned).await?;
                report.completed_job = self
                    .jobs
                    .end(&after, &[JobStatus::InProgress], JobStatus::Completed, None)
                    .await?;
                report.completed_job.then_some("export_completed")
            }
            // Cancelled while this unit ran: what it wrote goes too.
            JobStatus::Cancelled => {
                remove_files(&self.objects, &self.exports_bucket, &after).await?;
                Some("export_cancelled_files_removed")
            }
            _ => None,
        };
        if let Some(event) = event {
            let record = serde_json::json!({
                "at": format_rfc3339_ms(now_ms),
                "event": event,
                "partner": after.client_id,
                "job": after.id,
                "units": after.total,
            });
            self.audit.append("export-worker", now_ms, &record).await?;
        }
        Ok(report)
    }

    /// Fails the unit's job: one of its units failed for good.
    pub async fn fail_job(
        &self,
        unit: &WorkUnit,
        cause: &UnitError,
        now_ms: i64,
    ) -> Result<(), AwsError> {
        let Some(job) = self.jobs.get(&unit.job).await? else {
            return Ok(());
        };
        let why = "a part of the export failed repeatedly; start it again".to_owned();
        if self
            .jobs
            .end(&job, &[JobStatus::InProgress], JobStatus::Failed, Some(why))
            .await?
        {
            let record = serde_json::json!({
                "at": format_rfc3339_ms(now_ms),
                "event": "export_failed",
                "partner": job.client_id,
                "job": job.id,
                "unit": unit.unit,
                "cause": cause.to_string().chars().take(200).collect::<String>(),
            });
            self.audit.append("export-worker", now_ms, &record).await?;
        }
        Ok(())
    }

    /// GDPR Art. 19: erased subjects' Observations, to be deleted by the partner, as one
    /// transaction Bundle of conditional deletes by the partner's pseudonym, under every
    /// key version the partner may have received them with (a rotation changes them).
    async fn write_deletions(
        &self,
        job: &Job,
        partner: &Partner,
        tombstoned: &HashSet<String>,
    ) -> Result<(), AwsError> {
        if tombstoned.is_empty() {
            return Ok(());
        }
        let mut keys = Vec::new();
        for version in self.secrets.versions(&partner.key_secret).await? {
            let value = self.secrets.version(&partner.key_secret, &version).await?;
            keys.push(NamingKey::new(value.into_bytes()));
        }
        let mut pseudonyms: Vec<String> = tombstoned
            .iter()
            .flat_map(|s| keys.iter().map(move |k| k.pseudonym(s)))
            .collect();
        // Sorted: the order says nothing of which subject or version a line is.
        pseudonyms.sort();
        pseudonyms.dedup();
        let entries: Vec<serde_json::Value> = pseudonyms
            .into_iter()
            .map(|p| {
                let url = format!("Observation?subject=Patient/{p}");
                serde_json::json!({"request": {"method": "DELETE", "url": url}})
            })
            .collect();
        let bundle =
            serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let mut body = serde_json::to_vec(&bundle)
            .map_err(|e| AwsError::permanent("deleted", e.to_string()))?;
        body.push(b'\n');
        let key = format!("{}{DELETED_FILE}", job_prefix(&job.client_id, &job.id));
        self.objects
            .put(&self.exports_bucket, &key, body, "application/fhir+ndjson")
            .await
    }

    /// The rows of a row group that the scope admits (cohorts from the registry).
    async fn admitted(
        &self,
        conv: &Converter<'_>,
        group: Vec<Reading<'static>>,
    ) -> Result<Vec<Reading<'static>>, AwsError> {
        let needs_cohort =
            conv.scope.group.is_some() || !conv.scope.cohorts.iter().any(|c| c == "*");
        if !needs_cohort {
            return Ok(group.into_iter().filter(|r| conv.admits(r, None)).collect());
        }
        let devices = self
            .registry
            .resolve(group.iter().map(|r| r.device_id.as_ref()))
            .await?;
        Ok(group
            .into_iter()
            .filter(|r| {
                let cohort = devices
                    .get(r.device_id.as_ref())
                    .and_then(|d| d.as_ref())
                    .and_then(|d| d.assignment_at(r.measured_at))
                    .filter(|a| a.subject_id == r.subject_id)
                    .and_then(|a| a.cohort.as_deref());
                conv.admits(r, cohort)
            })
            .collect())
    }
}

/// The unit's NDJSON files, written as they fill.
struct Parts<'w, O> {
    objects: &'w O,
    bucket: &'w str,
    prefix: String,
    /// The unit's name in file names: its day (a limited data set), or a keyed name
    /// that dates nothing (Safe Harbor).
    name: String,
    /// Safe Harbor: file names keyed per file, lines in keyed-id order (not in time).
    undated: Option<KeyedIds>,
    buf: Vec<u8>,
    count: u64,
    files: Vec<OutputFile>,
}

impl<'w, O: ObjectWriter> Parts<'w, O> {
    fn new(objects: &'w O, bucket: &'w str, job: &Job, unit: &WorkUnit, key: &NamingKey) -> Self {
        // `metric=spo2/year=2026/month=11/day=20` -> `spo2-2026-11-20`
        let dated = unit
            .unit
            .split('/')
            .map(|s| s.split_once('=').map_or(s, |(_, v)| v))
            .collect::<Vec<_>>()
            .join("-");
        let (name, undated) = match job.scope.mode {
            Mode::Limited => (dated, None),
            Mode::SafeHarbor => {
                // `heart_rate`, or `blood_pressure` for a day's pair of partitions.
                let metric = dated.split('-').next().unwrap_or_default();
                let metric = if metric == "bp" {
                    "blood_pressure"
                } else {
                    metric
                };
                let ids = key.ids(&format!("pulselake.export-file.v1#{}", job.id));
                (
                    format!("{metric}-{}", ids.id(unit.unit.as_bytes())),
                    Some(ids),
                )
            }
        };
        Parts {
            objects,
            bucket,
            prefix: job_prefix(&job.client_id, &job.id),
            name,
            undated,
            buf: Vec::new(),
            count: 0,
            files: Vec::new(),
        }
    }

    fn file_key(&self) -> String {
        match &self.undated {
            None => format!(
                "{}{}-{:04}.ndjson",
                self.prefix,
                self.name,
                self.files.len()
            ),
            Some(ids) => {
                let n = format!("{}#{}", self.name, self.files.len());
                let metric = self.name.split('-').next().unwrap_or_default();
                format!(
                    "{}{metric}-{}.ndjson",
                    self.prefix,
                    &ids.id(n.as_bytes())[..20]
                )
            }
        }
    }

    /// Writes what is buffered as files of at most `FILE_RESOURCES` lines.
    async fn flush(&mut self) -> Result<(), AwsError> {
        let buf = std::mem::take(&mut self.buf);
        let mut rest = &buf[..];
        while self.count > 0 {
            let lines = self.count.min(FILE_RESOURCES);
            let end = memchr::memchr_iter(b'\n', rest)
                .nth(lines as usize - 1)
                .map_or(rest.len(), |i| i + 1);
            let (body, tail) = rest.split_at(end);
            rest = tail;
            let key = self.file_key();
            let body = match self.undated {
                None => body.to_vec(),
                // Every line starts `{"resourceType":"Observation","id":"<keyed id>"`: in
                // byte order, the lines are in keyed-id order, which dates nothing.
                Some(_) => {
                    let mut lines: Vec<&[u8]> = body.split_inclusive(|b| *b == b'\n').collect();
                    lines.sort_unstable();
                    lines.concat()
                }
            };
            let sha256 = hex::encode(Sha256::digest(&body));
            self.objects
                .put(self.bucket, &key, body, "application/fhir+ndjson")
                .await?;
            self.files.push(OutputFile {
                key,
                count: lines,
                sha256,
            });
            self.count -= lines;
        }
        self.buf = buf;
        self.buf.clear();
        Ok(())
    }
}

/// Metrics a unit exports (for the log line).
pub fn unit_metrics(unit: &WorkUnit) -> Vec<Metric> {
    unit.partitions
        .iter()
        .filter_map(|p| p.parse::<Partition>().ok().map(|p| p.metric))
        .collect()
}
