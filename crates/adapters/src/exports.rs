//! Export jobs in DynamoDB (`job`, `part`): the job's own item (`part` = `#`), one
//! item per finished lake partition holding its files, and a partner's running job
//! (`job` = `active#<client>`), so a second kick-off finds it. Every change is
//! conditional: a partition counts once however often a worker retries it, and a job
//! leaves "in progress" exactly once.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;
use pulselake_domain::partner::Scope;
use serde::{Deserialize, Serialize};

use crate::aws::is_conditional_failure;
use crate::error::AwsError;
use crate::versions::VersionedObjects;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

/// An export job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub client_id: String,
    pub status: JobStatus,
    /// The kick-off URL, as the manifest's `request` repeats it.
    pub request: String,
    /// When the job started (epoch ms): the manifest's `transactionTime`.
    pub transaction_time: i64,
    pub scope: Scope,
    /// What the policy withheld, for the manifest's `error` list.
    pub withheld: Vec<String>,
    /// The pseudonym key version the export used.
    pub key_version: String,
    /// Lake partitions to export, and those done.
    pub total: u32,
    pub done: u32,
    /// Last progress (epoch ms): a job that stops making progress is failed.
    pub updated_at: i64,
    #[serde(default)]
    pub error: Option<String>,
}

/// One file an export wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputFile {
    pub key: String,
    pub count: u64,
    pub sha256: String,
}

/// The file listing what the policy withheld, as OperationOutcomes.
pub const ERRORS_FILE: &str = "errors.ndjson";
/// The file of deletions (GDPR Art. 19): one transaction Bundle that deletes the
/// Observations of every erased subject, by the partner's pseudonym. Written by the
/// worker that completes the job, when there is any.
pub const DELETED_FILE: &str = "deleted.ndjson";

/// One unit of export work, as the API queues it and the worker takes it: a lake
/// partition, or a day's two blood pressure partitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkUnit {
    pub job: String,
    /// Names the unit in the job's progress (`metric=spo2/year=2026/month=11/day=20`,
    /// or `bp/year=...` for the pair).
    pub unit: String,
    /// The partitions' paths under `readings/`.
    pub partitions: Vec<String>,
}

/// Where a job's files live in the exports bucket: under the partner's own prefix.
pub fn job_prefix(client_id: &str, job_id: &str) -> String {
    format!("exports/{client_id}/{job_id}/")
}

/// Removes every file a job wrote, every version of it (a cancelled or stopped export
/// leaves nothing behind, not even a noncurrent version).
pub async fn remove_files<O: VersionedObjects>(
    objects: &O,
    bucket: &str,
    job: &Job,
) -> Result<(), AwsError> {
    let versions = objects
        .list_versions(bucket, &job_prefix(&job.client_id, &job.id))
        .await?;
    for batch in versions.chunks(crate::versions::DELETE_BATCH) {
        let failed = objects.delete_versions(bucket, batch).await?;
        if let Some((key, code)) = failed.first() {
            return Err(AwsError::transient(
                "s3:DeleteObjects",
                format!(
                    "{} export file version(s) were not deleted ({code}; first: {key})",
                    failed.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Port: export jobs.
pub trait ExportJobs: Send + Sync {
    /// Records a new job, unless the partner has one running: `Ok(Some(id))` names it.
    fn start(
        &self,
        job: &Job,
        expires_at: i64,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<Job>, AwsError>> + Send;
    /// Records a finished partition's files and counts it (once); the job afterwards.
    fn finish_partition(
        &self,
        id: &str,
        partition: &str,
        files: &[OutputFile],
        now: i64,
    ) -> impl Future<Output = Result<Option<Job>, AwsError>> + Send;
    /// Moves a job from one of `from` to `to` (`Ok(false)`: it was in none of them) and
    /// frees the partner for another kick-off.
    fn end(
        &self,
        job: &Job,
        from: &[JobStatus],
        to: JobStatus,
        error: Option<String>,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    /// When a unit of any export last finished: the worker is working (a job that
    /// waits behind others' units is not stalled).
    fn worker_progress(&self) -> impl Future<Output = Result<Option<i64>, AwsError>> + Send;
    /// Counts one use of `client`'s quota `bucket` (a day's kick-offs, a minute's
    /// tokens); `Ok(false)` past `limit` in that bucket.
    fn count_quota(
        &self,
        client: &str,
        day: &str,
        limit: u32,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    /// Every finished partition's files.
    fn outputs(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, Vec<OutputFile>>, AwsError>> + Send;
    /// Replaces a finished partition's files (erasure rewrote them); `Ok(false)` when the
    /// partition is not recorded as finished.
    fn replace_outputs(
        &self,
        id: &str,
        partition: &str,
        files: &[OutputFile],
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
}

pub struct DynamoExportJobs {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoExportJobs {
    pub fn from_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> DynamoExportJobs {
        DynamoExportJobs {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
        }
    }
}

const MAIN: &str = "#";
/// The item that says when a unit of any export last finished.
const WORKER: &str = "#worker";

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn job_item(job: &Job, expires_at: i64) -> Result<HashMap<String, AttributeValue>, AwsError> {
    let body = serde_json::to_string(job)
        .map_err(|e| AwsError::permanent("dynamodb:PutItem", e.to_string()))?;
    Ok(HashMap::from([
        ("job".to_owned(), s(job.id.clone())),
        ("part".to_owned(), s(MAIN)),
        ("body".to_owned(), s(body)),
        ("status".to_owned(), s(status_name(job.status))),
        ("done".to_owned(), n(job.done)),
        ("total".to_owned(), n(job.total)),
        ("updated_at".to_owned(), n(job.updated_at)),
        ("expiration".to_owned(), n(expires_at)),
    ]))
}

fn status_name(s: JobStatus) -> &'static str {
    match s {
        JobStatus::InProgress => "in_progress",
        JobStatus::Completed => "completed",
        JobStatus::Failed => "failed",
        JobStatus::Cancelled => "cancelled",
    }
}

fn parse_status(s: &str) -> JobStatus {
    match s {
        "completed" => JobStatus::Completed,
        "failed" => JobStatus::Failed,
        "cancelled" => JobStatus::Cancelled,
        _ => JobStatus::InProgress,
    }
}

fn decode_job(item: &HashMap<String, AttributeValue>) -> Option<Job> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok());
    let num = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    let mut job: Job = serde_json::from_str(text("body")?).ok()?;
    // The live fields are kept beside the body, where conditional updates change them.
    job.status = parse_status(text("status")?);
    job.done = num("done")? as u32;
    job.updated_at = num("updated_at")?;
    job.error = text("error").cloned();
    Some(job)
}

impl ExportJobs for DynamoExportJobs {
    async fn start(&self, job: &Job, expires_at: i64) -> Result<Option<String>, AwsError> {
        let active = format!("active#{}", job.client_id);
        let claimed = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("job", s(active.clone()))
            .item("part", s(MAIN))
            .item("job_id", s(job.id.clone()))
            .item("expiration", n(expires_at))
            .condition_expression("attribute_not_exists(job) OR expiration < :now")
            .expression_attribute_values(":now", n(crate::epoch_s()))
            .send()
            .await;
        match claimed {
            Ok(_) => {}
            Err(e) if is_conditional_failure(&e) => {
                let out = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("job", s(active))
                    .key("part", s(MAIN))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
                let running = out
                    .item()
                    .and_then(|i| i.get("job_id"))
                    .and_then(|v| v.as_s().ok())
                    .cloned();
                return Ok(Some(running.unwrap_or_default()));
            }
            Err(e) => return Err(AwsError::from_sdk("dynamodb:PutItem", e)),
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(job_item(job, expires_at)?))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:PutItem", e))?;
        Ok(None)
    }

    async fn get(&self, id: &str) -> Result<Option<Job>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("job", s(id))
            .key("part", s(MAIN))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        Ok(out.item().and_then(decode_job))
    }

    async fn finish_partition(
        &self,
        id: &str,
        partition: &str,
        files: &[OutputFile],
        now: i64,
    ) -> Result<Option<Job>, AwsError> {
        let body = serde_json::to_string(files)
            .map_err(|e| AwsError::permanent("dynamodb:PutItem", e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("job", s(id))
            .item("part", s(partition))
            .item("files", s(body))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:PutItem", e))?;
        let counted = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("job", s(id))
            .key("part", s(MAIN))
            .update_expression("ADD done :one, done_parts :p SET updated_at = :now")
            .condition_expression("#s = :running AND NOT contains(done_parts, :pname)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":p", AttributeValue::Ss(vec![partition.to_owned()]))
            .expression_attribute_values(":pname", s(partition))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":running", s(status_name(JobStatus::InProgress)))
            .send()
            .await;
        match counted {
            Ok(_) => {}
            // Counted before (a retry), or the job ended meanwhile: the job says which.
            Err(e) if is_conditional_failure(&e) => {}
            Err(e) => return Err(AwsError::from_sdk("dynamodb:UpdateItem", e)),
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .key("job", s(WORKER))
            .key("part", s(MAIN))
            .update_expression("SET updated_at = :now")
            .condition_expression("attribute_not_exists(updated_at) OR updated_at < :now")
            .expression_attribute_values(":now", n(now))
            .send()
            .await
            .map(|_| ())
            .or_else(|e| {
                if is_conditional_failure(&e) {
                    Ok(())
                } else {
                    Err(AwsError::from_sdk("dynamodb:UpdateItem", e))
                }
            })?;
        self.get(id).await
    }

    async fn worker_progress(&self) -> Result<Option<i64>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("job", s(WORKER))
            .key("part", s(MAIN))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        Ok(out
            .item()
            .and_then(|i| i.get("updated_at"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok()))
    }

    async fn end(
        &self,
        job: &Job,
        from: &[JobStatus],
        to: JobStatus,
        error: Option<String>,
    ) -> Result<bool, AwsError> {
        let names: Vec<String> = (0..from.len()).map(|i| format!(":from{i}")).collect();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("job", s(job.id.clone()))
            .key("part", s(MAIN))
            .condition_expression(format!("#s IN ({})", names.join(", ")))
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":to", s(status_name(to)))
            .expression_attribute_values(":now", n(crate::epoch_s() * 1000));
        for (name, status) in names.iter().zip(from) {
            update = update.expression_attribute_values(name.as_str(), s(status_name(*status)));
        }
        update = match error {
            Some(e) => update
                .update_expression("SET #s = :to, updated_at = :now, #e = :error")
                .expression_attribute_names("#e", "error")
                .expression_attribute_values(":error", s(e)),
            None => update.update_expression("SET #s = :to, updated_at = :now"),
        };
        match update.send().await {
            Ok(_) => {}
            Err(e) if is_conditional_failure(&e) => return Ok(false),
            Err(e) => return Err(AwsError::from_sdk("dynamodb:UpdateItem", e)),
        }
        let freed = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("job", s(format!("active#{}", job.client_id)))
            .key("part", s(MAIN))
            .condition_expression("job_id = :id")
            .expression_attribute_values(":id", s(job.id.clone()))
            .send()
            .await;
        match freed {
            // Freed, or another job holds the pointer already.
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(true),
            Err(e) => Err(AwsError::from_sdk("dynamodb:DeleteItem", e)),
        }
    }

    async fn count_quota(&self, client: &str, day: &str, limit: u32) -> Result<bool, AwsError> {
        let counted = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("job", s(format!("quota#{client}#{day}")))
            .key("part", s(MAIN))
            .update_expression("ADD kickoffs :one SET expiration = :exp")
            .condition_expression("attribute_not_exists(kickoffs) OR kickoffs < :limit")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(limit))
            .expression_attribute_values(":exp", n(crate::epoch_s() + 2 * 86_400))
            .send()
            .await;
        match counted {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(AwsError::from_sdk("dynamodb:UpdateItem", e)),
        }
    }

    async fn outputs(&self, id: &str) -> Result<BTreeMap<String, Vec<OutputFile>>, AwsError> {
        let mut out = BTreeMap::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("job = :id")
            .expression_attribute_values(":id", s(id))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("dynamodb:Query", e))?;
            for item in page.items() {
                let part = item.get("part").and_then(|v| v.as_s().ok());
                let files = item.get("files").and_then(|v| v.as_s().ok());
                if let (Some(part), Some(files)) = (part, files)
                    && part != MAIN
                {
                    let files: Vec<OutputFile> = serde_json::from_str(files)
                        .map_err(|e| AwsError::permanent("dynamodb:Query", e.to_string()))?;
                    out.insert(part.clone(), files);
                }
            }
        }
        Ok(out)
    }

    async fn replace_outputs(
        &self,
        id: &str,
        partition: &str,
        files: &[OutputFile],
    ) -> Result<bool, AwsError> {
        let body = serde_json::to_string(files)
            .map_err(|e| AwsError::permanent("dynamodb:PutItem", e.to_string()))?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("job", s(id))
            .item("part", s(partition))
            .item("files", s(body))
            .condition_expression("attribute_exists(part)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(AwsError::from_sdk("dynamodb:PutItem", e)),
        }
    }
}

/// In-memory jobs with the same conditions: for unit tests.
#[derive(Default)]
pub struct MemoryExportJobs {
    state: Mutex<MemoryJobsState>,
}

#[derive(Default)]
struct MemoryJobsState {
    jobs: BTreeMap<String, Job>,
    done_parts: BTreeMap<String, std::collections::BTreeSet<String>>,
    outputs: BTreeMap<String, BTreeMap<String, Vec<OutputFile>>>,
    active: BTreeMap<String, String>,
    kickoffs: BTreeMap<String, u32>,
    worker_progress: Option<i64>,
}

impl ExportJobs for MemoryExportJobs {
    async fn start(&self, job: &Job, _expires_at: i64) -> Result<Option<String>, AwsError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = st.active.get(&job.client_id) {
            return Ok(Some(running.clone()));
        }
        st.active.insert(job.client_id.clone(), job.id.clone());
        st.jobs.insert(job.id.clone(), job.clone());
        Ok(None)
    }

    async fn get(&self, id: &str) -> Result<Option<Job>, AwsError> {
        Ok(self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .jobs
            .get(id)
            .cloned())
    }

    async fn finish_partition(
        &self,
        id: &str,
        partition: &str,
        files: &[OutputFile],
        now: i64,
    ) -> Result<Option<Job>, AwsError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.worker_progress = Some(st.worker_progress.map_or(now, |t| t.max(now)));
        st.outputs
            .entry(id.to_owned())
            .or_default()
            .insert(partition.to_owned(), files.to_vec());
        let fresh = st
            .done_parts
            .entry(id.to_owned())
            .or_default()
            .insert(partition.to_owned());
        if let Some(job) = st.jobs.get_mut(id)
            && fresh
            && job.status == JobStatus::InProgress
        {
            job.done += 1;
            job.updated_at = now;
        }
        Ok(st.jobs.get(id).cloned())
    }

    async fn end(
        &self,
        job: &Job,
        from: &[JobStatus],
        to: JobStatus,
        error: Option<String>,
    ) -> Result<bool, AwsError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(j) = st.jobs.get_mut(&job.id) else {
            return Ok(false);
        };
        if !from.contains(&j.status) {
            return Ok(false);
        }
        j.status = to;
        j.error = error;
        if st.active.get(&job.client_id) == Some(&job.id) {
            st.active.remove(&job.client_id);
        }
        Ok(true)
    }

    async fn worker_progress(&self) -> Result<Option<i64>, AwsError> {
        Ok(self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .worker_progress)
    }

    async fn count_quota(&self, client: &str, day: &str, limit: u32) -> Result<bool, AwsError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let n = st.kickoffs.entry(format!("{client}#{day}")).or_default();
        if *n >= limit {
            return Ok(false);
        }
        *n += 1;
        Ok(true)
    }

    async fn outputs(&self, id: &str) -> Result<BTreeMap<String, Vec<OutputFile>>, AwsError> {
        Ok(self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .outputs
            .get(id)
            .cloned()
            .unwrap_or_default())
    }

    async fn replace_outputs(
        &self,
        id: &str,
        partition: &str,
        files: &[OutputFile],
    ) -> Result<bool, AwsError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match st.outputs.get_mut(id).and_then(|o| o.get_mut(partition)) {
            Some(f) => {
                *f = files.to_vec();
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
