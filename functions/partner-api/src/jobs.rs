//! Export jobs from the API's side: the kick-off fans the job out over the export
//! queue (one message per lake partition inside the grant; a day's two blood pressure
//! partitions together, so pairs become panels); status reports progress or the
//! manifest, and fails a job that stopped making progress; cancel removes every file;
//! downloads are audited and redirected to a one-minute link.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::future::try_join_all;

use pulselake_adapters::{
    AwsError, DELETED_FILE, ERRORS_FILE, ExportJobs, Job, JobStatus, ObjectReader, ObjectWriter,
    OutputFile, Partner, Presigner, Secrets, VersionedObjects, WorkQueue, WorkUnit, job_prefix,
    remove_files,
};
use pulselake_domain::Metric;
use pulselake_domain::partition::READINGS_PREFIX;
use pulselake_domain::partner::{Grant, Mode};
use pulselake_domain::time::{Date, format_http_date, format_rfc3339_ms};

use crate::config::Settings;
use crate::http::{Response, operation_outcome};

/// A job that has not progressed for this long is failed (a partition worker runs at
/// most 15 minutes, and the queue redelivers after its visibility timeout).
pub const STALL_MS: i64 = 20 * 60_000;
/// Exported files are kept this long (the exports bucket's lifecycle), as `Expires` says.
pub const KEEP_MS: i64 = 7 * 86_400_000;
/// Download links live this long: the API hands out a fresh one per request.
const LINK: Duration = Duration::from_secs(60);
/// The days with data of `metric` inside `[from, to)` (either open).
async fn partitions<O: ObjectReader>(
    objects: &O,
    bucket: &str,
    metric: Metric,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Vec<Date>, AwsError> {
    let (lo, hi) = (
        from.map(Date::from_epoch_ms),
        to.map(|t| Date::from_epoch_ms(t - 1)),
    );
    let num = |dir: &str, key: &str| -> Option<i32> {
        dir.trim_end_matches('/')
            .rsplit('/')
            .next()?
            .strip_prefix(key)?
            .strip_prefix('=')?
            .parse()
            .ok()
    };
    // Three round trips per metric, whatever the lake's age: the years, then every
    // year's months at once, then every month's days at once.
    let root = format!("{READINGS_PREFIX}metric={}/", metric.name());
    let years: Vec<(i32, String)> = objects
        .list_dirs(bucket, &root)
        .await?
        .into_iter()
        .filter_map(|y| num(&y, "year").map(|n| (n, y)))
        .filter(|(year, _)| {
            !(lo.is_some_and(|d| *year < d.year) || hi.is_some_and(|d| *year > d.year))
        })
        .collect();
    let month_lists = try_join_all(years.iter().map(|(_, y)| objects.list_dirs(bucket, y))).await?;
    let months: Vec<(i32, i32, String)> = years
        .iter()
        .zip(month_lists)
        .flat_map(|((year, _), list)| {
            list.into_iter()
                .filter_map(|m| num(&m, "month").map(|n| (*year, n, m)))
                .collect::<Vec<_>>()
        })
        .collect();
    let day_lists =
        try_join_all(months.iter().map(|(_, _, m)| objects.list_dirs(bucket, m))).await?;
    let mut days = Vec::new();
    for ((year, month, _), list) in months.iter().zip(day_lists) {
        for d in list {
            let Some(day) = num(&d, "day") else { continue };
            let Some(date) = Date::new(*year, *month as u8, day as u8) else {
                continue;
            };
            if lo.is_some_and(|x| date < x) || hi.is_some_and(|x| date > x) {
                continue;
            }
            days.push(date);
        }
    }
    Ok(days)
}

fn partition_path(metric: Metric, d: Date) -> String {
    format!(
        "metric={}/year={:04}/month={:02}/day={:02}",
        metric.name(),
        d.year,
        d.month,
        d.day
    )
}

/// The job routes' view of the API: the jobs table and the exports bucket.
pub struct Exports<'a, J, O> {
    pub jobs: &'a J,
    pub objects: &'a O,
    pub settings: &'a Settings,
}

/// Whether a job is the partner's and still stands (a cancelled job is nobody's).
pub fn job_belongs(job: &Job, partner: &Partner) -> bool {
    job.client_id == partner.client_id && job.status != JobStatus::Cancelled
}

impl<J, O> Exports<'_, J, O>
where
    J: ExportJobs,
    O: ObjectReader + ObjectWriter + VersionedObjects + Presigner,
{
    /// Starts export `id`: `Ok(Err(response))` when the partner may not start one now.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        &self,
        queue: &impl WorkQueue,
        secrets: &impl Secrets,
        partner: &Partner,
        grant: Grant,
        id: &str,
        request: String,
        now_ms: i64,
    ) -> Result<Result<Job, Response>, AwsError> {
        let day = format_rfc3339_ms(now_ms)[..10].to_owned();
        if !self
            .jobs
            .count_quota(&partner.client_id, &day, partner.policy.daily_exports)
            .await?
        {
            return Ok(Err(Response::outcome(
                429,
                "throttled",
                "the partner's daily export quota is used up",
            )
            .with_header("retry-after", "3600")));
        }
        let scope = grant.scope;
        let settings = self.settings;
        let mut units: Vec<WorkUnit> = Vec::new();
        let id = id.to_owned();
        let mut bp: BTreeMap<Date, Vec<String>> = BTreeMap::new();
        let pair = scope.metrics.contains(&Metric::BpSystolic)
            && scope.metrics.contains(&Metric::BpDiastolic);
        for &m in &scope.metrics {
            for d in partitions(
                self.objects,
                &settings.lake_bucket,
                m,
                scope.measured_from,
                scope.measured_to,
            )
            .await?
            {
                if pair && matches!(m, Metric::BpSystolic | Metric::BpDiastolic) {
                    bp.entry(d).or_default().push(partition_path(m, d));
                } else {
                    let path = partition_path(m, d);
                    units.push(WorkUnit {
                        job: id.clone(),
                        unit: path.clone(),
                        partitions: vec![path],
                    });
                }
            }
        }
        for (d, partitions) in bp {
            let unit = format!(
                "bp/year={:04}/month={:02}/day={:02}",
                d.year, d.month, d.day
            );
            units.push(WorkUnit {
                job: id.clone(),
                unit,
                partitions,
            });
        }
        let key_version = secrets.current_version(&partner.key_secret).await?;
        let job = Job {
            id: id.clone(),
            client_id: partner.client_id.clone(),
            status: JobStatus::InProgress,
            request,
            transaction_time: now_ms,
            scope,
            withheld: grant.withheld,
            key_version,
            total: units.len() as u32,
            done: 0,
            updated_at: now_ms,
            error: None,
        };
        if let Some(running) = self.jobs.start(&job, (now_ms + KEEP_MS) / 1000).await? {
            let _ = running;
            return Ok(Err(Response::outcome(
                429,
                "throttled",
                "an export of this partner is running; poll it or cancel it first",
            )
            .with_header("retry-after", "60")));
        }
        // What the policy withheld is part of the result: written now, listed at the end.
        let errors: String = job
            .withheld
            .iter()
            .map(|w| format!("{}\n", operation_outcome("informational", w)))
            .collect();
        let prefix = job_prefix(&job.client_id, &job.id);
        self.objects
            .put(
                &settings.exports_bucket,
                &format!("{prefix}{ERRORS_FILE}"),
                errors.into_bytes(),
                "application/fhir+ndjson",
            )
            .await?;
        if units.is_empty() {
            self.jobs
                .end(&job, &[JobStatus::InProgress], JobStatus::Completed, None)
                .await?;
        } else {
            let bodies: Vec<String> = units
                .iter()
                .filter_map(|u| serde_json::to_string(u).ok())
                .collect();
            if let Err(e) = queue.send_for(&partner.client_id, &bodies).await {
                self.jobs
                    .end(
                        &job,
                        &[JobStatus::InProgress],
                        JobStatus::Failed,
                        Some("the export could not be queued".into()),
                    )
                    .await?;
                return Err(e);
            }
        }
        tracing::info!(job = %job.id, partitions = job.total, "export started");
        Ok(Ok(job))
    }

    /// `GET /fhir/export-status/{id}`.
    pub async fn status(&self, partner: &Partner, id: &str, now_ms: i64) -> Response {
        let mut job = match self.owned_job(partner, id).await {
            Ok(j) => j,
            Err(r) => return r,
        };
        let waited = now_ms - job.updated_at > STALL_MS;
        let worker_busy = match self.jobs.worker_progress().await {
            Ok(t) => t.is_some_and(|t| now_ms - t <= STALL_MS),
            Err(e) => return Response::server_error(&e),
        };
        if job.status == JobStatus::InProgress && waited && !worker_busy {
            // The watchdog: never left at 202 forever. It measures work that stopped (no
            // unit of any export finished for STALL_MS), not work that waits behind
            // other exports; a unit that fails for good fails its job in the worker.
            let why =
                "the export stopped making progress and was stopped; start it again".to_owned();
            match self
                .jobs
                .end(
                    &job,
                    &[JobStatus::InProgress],
                    JobStatus::Failed,
                    Some(why.clone()),
                )
                .await
            {
                Ok(_) => {
                    tracing::warn!(job = %job.id, "a stalled export was failed");
                    job.status = JobStatus::Failed;
                    job.error = Some(why);
                }
                Err(e) => return Response::server_error(&e),
            }
        }
        match job.status {
            JobStatus::InProgress => Response::empty(202)
                .with_header(
                    "x-progress",
                    format!("{} of {} lake partitions exported", job.done, job.total),
                )
                .with_header("retry-after", "5"),
            JobStatus::Failed => Response::outcome(
                500,
                "incomplete",
                job.error.as_deref().unwrap_or("the export failed"),
            ),
            JobStatus::Cancelled => Response::outcome(404, "not-found", "no such export"),
            JobStatus::Completed => match self.manifest(&job).await {
                Ok(m) => Response::json(200, &m)
                    .with_header("expires", format_http_date(job.transaction_time + KEEP_MS)),
                Err(e) => Response::server_error(&e),
            },
        }
    }

    async fn manifest(&self, job: &Job) -> Result<serde_json::Value, AwsError> {
        let files_url = format!("{}/export-files/{}", self.settings.fhir_base(), job.id);
        let mut files: Vec<OutputFile> = self
            .jobs
            .outputs(&job.id)
            .await?
            .into_values()
            .flatten()
            .collect();
        if job.scope.mode == Mode::SafeHarbor {
            // By keyed name, not by day: the list's order dates nothing either.
            files.sort_by(|a, b| a.key.cmp(&b.key));
        }
        let output: Vec<serde_json::Value> = files
            .iter()
            .map(|f| {
                let name = f.key.rsplit('/').next().unwrap_or_default();
                serde_json::json!({"type": "Observation", "url": format!("{files_url}/{name}"), "count": f.count,
                                   "extension": {"sha256": f.sha256}})
            })
            .collect();
        let error: Vec<serde_json::Value> = if job.withheld.is_empty() {
            Vec::new()
        } else {
            vec![
                serde_json::json!({"type": "OperationOutcome", "url": format!("{files_url}/{ERRORS_FILE}"), "count": job.withheld.len()}),
            ]
        };
        let deleted_key = format!("{}{DELETED_FILE}", job_prefix(&job.client_id, &job.id));
        let deleted: Vec<serde_json::Value> = self
        .objects
        .list(&self.settings.exports_bucket, &deleted_key)
        .await?
        .iter()
        .filter(|k| **k == deleted_key)
        .map(
            |_| serde_json::json!({"type": "Bundle", "url": format!("{files_url}/{DELETED_FILE}")}),
        )
        .collect();
        Ok(serde_json::json!({
            "transactionTime": format_rfc3339_ms(job.transaction_time),
            "request": job.request,
            "requiresAccessToken": true,
            "output": output,
            "error": error,
            "deleted": deleted,
            "extension": {"pseudonymKeyVersion": job.key_version, "deIdentification": job.scope.mode}
        }))
    }

    /// `DELETE /fhir/export-status/{id}`: stops the job and removes every file it wrote.
    pub async fn cancel(&self, partner: &Partner, id: &str) -> Response {
        let job = match self.owned_job(partner, id).await {
            Ok(j) => j,
            Err(r) => return r,
        };
        match self
            .jobs
            .end(
                &job,
                &[JobStatus::InProgress, JobStatus::Completed],
                JobStatus::Cancelled,
                None,
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => return Response::outcome(404, "not-found", "no such export"),
            Err(e) => return Response::server_error(&e),
        }
        if let Err(e) = remove_files(self.objects, &self.settings.exports_bucket, &job).await {
            return Response::server_error(&e);
        }
        Response::empty(202)
    }

    /// `GET /fhir/export-files/{id}/{file}`: audited, then a one-minute link to the file.
    pub async fn download(&self, partner: &Partner, id: &str, file: &str) -> Response {
        let job = match self.owned_job(partner, id).await {
            Ok(j) if j.status == JobStatus::Completed => j,
            Ok(_) => return Response::outcome(404, "not-found", "no such file"),
            Err(r) => return r,
        };
        // The partner's status was checked with its token; its policy is checked here,
        // at every download: what it no longer grants is no longer handed out.
        if !partner.policy.covers(&job.scope) {
            return Response::outcome(
                403,
                "forbidden",
                "the partner's policy no longer grants this export; start a new one",
            );
        }
        let known: BTreeSet<String> = match self.jobs.outputs(&job.id).await {
            Ok(o) => o
                .values()
                .flatten()
                .filter_map(|f| f.key.rsplit('/').next().map(str::to_owned))
                .chain([ERRORS_FILE.to_owned(), DELETED_FILE.to_owned()])
                .collect(),
            Err(e) => return Response::server_error(&e),
        };
        if !known.contains(file) {
            return Response::outcome(404, "not-found", "no such file");
        }
        let key = format!("{}{file}", job_prefix(&job.client_id, &job.id));
        match self
            .objects
            .presign_get(&self.settings.exports_bucket, &key, LINK)
            .await
        {
            Ok(url) => Response::empty(307).with_header("location", url),
            Err(e) => Response::server_error(&e),
        }
    }

    /// The job, if it exists and is this partner's: every other case is `404`, so one
    /// partner learns nothing of another's jobs.
    async fn owned_job(&self, partner: &Partner, id: &str) -> Result<Job, Response> {
        let well_formed = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
        if !well_formed {
            return Err(Response::outcome(404, "not-found", "no such export"));
        }
        match self.jobs.get(id).await {
            Ok(Some(job)) if job_belongs(&job, partner) => Ok(job),
            Ok(_) => Err(Response::outcome(404, "not-found", "no such export")),
            Err(e) => Err(Response::server_error(&e)),
        }
    }
}
