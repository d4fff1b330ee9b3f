//! erasure: GDPR erasure, fanned out per lake partition. On a schedule (daily, well
//! inside GDPR's month) it plans a pass over every pending request (many subjects cost
//! one pass): one unit per lake partition on the erasure queue. From the queue, each
//! unit rewrites its partition's files without the subjects' rows, deletes the old
//! versions and re-reads the partition to verify; the unit that finishes the pass
//! removes the copies outside the lake, writes the evidence to the audit store and
//! marks the requests done only if everything verified. Log lines carry counts only.
//!
//! The job's parts, each in its own file: [`pass`] (plan, unit, finish),
//! [`partition`] (a unit's partition), [`lake_file`] (one file's versions),
//! [`copies`] and [`raw`] (copies outside the lake), [`versions`] (object versions in
//! any bucket), [`evidence`] and [`error`].

pub mod config;
pub mod copies;
pub mod error;
pub mod evidence;
pub mod exports;
pub mod lake_file;
pub mod partition;
pub mod pass;
pub mod quarantine;
pub mod raw;
pub mod versions;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use pulselake_adapters::lambda_batch::{sqs_messages, sqs_response};
use pulselake_adapters::{
    AwsError, BucketAuditLog, DynamoAlertStates, DynamoErasurePasses, DynamoErasures,
    DynamoExportJobs, DynamoHeartbeats, DynamoPartners, Metrics, S3Objects, SdkConfig,
    SecretsManager, SqsQueue,
};
use serde::{Deserialize, Serialize};

pub use config::Config;
pub use copies::Copies;
pub use error::{ErasureError, FailureKind};
pub use evidence::{
    CopiesEvidence, ErasureEvidence, Failure, RewrittenFile, UnitEvidence, Verification,
};
pub use pass::{Erasure, ErasurePorts, Planned, Unit};

/// The job over AWS.
pub struct AwsPorts;

impl ErasurePorts for AwsPorts {
    type Objects = S3Objects;
    type Requests = DynamoErasures;
    type Audit = BucketAuditLog<S3Objects>;
    type Passes = DynamoErasurePasses;
    type Queue = SqsQueue;
    type Jobs = DynamoExportJobs;
    type Partners = DynamoPartners;
    type Secrets = SecretsManager;
    type Alerts = DynamoAlertStates;
    type Heartbeats = DynamoHeartbeats;
}

pub type AwsErasure = Erasure<AwsPorts>;

/// Builds the job once per cold start (the naming key is read now).
pub async fn build(config: &Config, sdk: &SdkConfig) -> Result<AwsErasure, AwsError> {
    let naming = pulselake_adapters::secrets::read_secret(sdk, &config.naming_key_secret, None)
        .await?
        .into_bytes();
    Ok(Erasure {
        objects: S3Objects::from_config(sdk),
        requests: DynamoErasures::from_config(sdk, &config.erasure_table),
        audit: BucketAuditLog {
            writer: S3Objects::from_config(sdk),
            bucket: config.audit_bucket.clone(),
        },
        passes: DynamoErasurePasses::from_config(sdk, &config.passes_table),
        queue: SqsQueue::from_config(sdk, &config.queue_url),
        lake_bucket: config.lake_bucket.clone(),
        copies: Some(Copies {
            staging_bucket: config.staging_bucket.clone(),
            processed_bucket: config.processed_bucket.clone(),
            quarantine_bucket: config.quarantine_bucket.clone(),
            naming: pulselake_domain::NamingKey::new(naming),
        }),
        jobs: DynamoExportJobs::from_config(sdk, &config.jobs_table),
        partners: DynamoPartners::from_config(sdk, &config.partners_table),
        secrets: SecretsManager::from_config(sdk),
        exports_bucket: Some(config.exports_bucket.clone()),
        alerts: DynamoAlertStates::from_config(sdk, &config.alert_state_table),
        heartbeats: DynamoHeartbeats::from_config(sdk, &config.heartbeats_table),
        part_bytes: lake_file::PART_BYTES,
    })
}

/// What invokes the function: units from the erasure queue, or the daily schedule
/// (EventBridge Scheduler's input: any object that is not an SQS batch).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Invocation {
    Units(SqsEvent),
    Scheduled(ScheduledRun),
}

/// The schedule's event: its content is not read.
#[derive(Debug, Default, Deserialize)]
pub struct ScheduledRun {}

/// What an invocation answers: the partial batch response for units, or what the
/// scheduled run planned.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Units(SqsBatchResponse),
    Planned(PlanSummary),
}

/// The scheduled run's answer (counts only).
#[derive(Debug, Default, Serialize)]
pub struct PlanSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_units: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed: Option<bool>,
}

/// A run that failed as a whole: a scheduled run that could not plan (the schedule runs
/// it again; nothing is marked done without evidence), or a batch that cannot be
/// answered unit by unit.
#[derive(Debug, thiserror::Error)]
#[error("erasure failed: {0}")]
pub struct RunError(#[from] pub ErasureError);

impl From<RunError> for lambda_runtime::Diagnostic {
    fn from(e: RunError) -> Self {
        let kind = if e.0.retryable() {
            "Transient"
        } else {
            "Permanent"
        };
        lambda_runtime::Diagnostic {
            error_type: format!("Erasure.{kind}"),
            error_message: e.to_string(),
        }
    }
}

/// One invocation: units from the erasure queue (a partial batch response: a failed
/// unit is retried, then dead-lettered), or the schedule's event (a pass planned).
pub async fn function_handler<X: ErasurePorts>(
    event: LambdaEvent<Invocation>,
    job: &Erasure<X>,
) -> Result<Answer, RunError> {
    match event.payload {
        Invocation::Units(sqs) => Ok(Answer::Units(Box::pin(units(&sqs, job)).await?)),
        Invocation::Scheduled(_) => {
            let planned = Box::pin(job.plan(now_ms())).await;
            let summary = match planned {
                Ok(Planned::Started { units, .. }) => {
                    tracing::info!(units, "erasure pass planned: one unit per lake partition");
                    PlanSummary {
                        planned_units: Some(units),
                        ..PlanSummary::default()
                    }
                }
                Ok(Planned::Running) => {
                    tracing::info!("an erasure pass is running; none planned");
                    PlanSummary {
                        running: Some(true),
                        ..PlanSummary::default()
                    }
                }
                Ok(Planned::NothingPending) => {
                    tracing::info!("no pending erasure request");
                    PlanSummary {
                        pending: Some(0),
                        ..PlanSummary::default()
                    }
                }
                Ok(Planned::Finished(ev)) => {
                    report(&ev);
                    PlanSummary {
                        completed: Some(ev.completed),
                        ..PlanSummary::default()
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, retryable = e.retryable(), "erasure pass not planned");
                    return Err(e.into());
                }
            };
            Ok(Answer::Planned(summary))
        }
    }
}

async fn units<X: ErasurePorts>(
    event: &SqsEvent,
    job: &Erasure<X>,
) -> Result<SqsBatchResponse, ErasureError> {
    let mut failed = Vec::new();
    for m in sqs_messages(event) {
        let Some(id) = m.id.filter(|id| !id.is_empty()).map(str::to_owned) else {
            // Without an id the message cannot be reported alone: fail the batch.
            return Err(AwsError::permanent("sqs", "a message without a messageId").into());
        };
        let Some(unit) = m.body.and_then(|b| serde_json::from_str::<Unit>(b).ok()) else {
            // Not a unit: retried, then kept in the DLQ for a person to look at.
            tracing::error!("a message on the erasure queue is not a unit");
            failed.push(id);
            continue;
        };
        match Box::pin(job.unit(&unit, now_ms())).await {
            Ok(Some(ev)) => report(&ev),
            Ok(None) => {}
            Err(e) => {
                // Retried either way (a permanent failure ends in the DLQ, alarmed, and
                // the pass is replaced the next day); the log says which it is.
                tracing::error!(error = %e, retryable = e.retryable(), "erasure unit failed");
                failed.push(id);
            }
        }
    }
    Ok(sqs_response(failed))
}

/// The pass's metrics and its one log line (counts only).
fn report(ev: &ErasureEvidence) {
    Metrics::new("erasure")
        .count("RequestsProcessed", ev.requests.len() as u64)
        .count("RowsRemoved", ev.rows_removed)
        .count("FilesRewritten", ev.files_rewritten.len() as u64)
        .count("VerificationFailures", u64::from(!ev.verification.passed))
        .flush();
    tracing::info!(
        requests = ev.requests.len(),
        partitions = ev.partitions,
        files_read = ev.files_read,
        files_rewritten = ev.files_rewritten.len(),
        rows_removed = ev.rows_removed,
        old_versions_deleted = ev.old_versions_deleted,
        failures = ev.failures.len(),
        verified = ev.verification.passed,
        "erasure pass done"
    );
}

pub use pulselake_adapters::now_ms;

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use pulselake_adapters::{
        ErasureRequest, ErasureRequests, MemoryAuditLog, MemoryErasurePasses, MemoryErasures,
        MemoryObjects, MemoryQueue,
    };
    use pulselake_domain::{Metric, Partition, Reading, ReadingId, Source};
    use pulselake_lake::{FileLayout, encode_readings, read_readings};

    use super::*;

    const LAKE: &str = "lake";
    const AT: i64 = 1_795_305_600_000;
    /// A pass's clock: the requests (made at `AT`) are past their delivery horizon.
    const LATER: i64 = AT + pass::DELIVERY_HORIZON_MS;

    fn row(subject: &str, i: i64) -> Reading<'static> {
        Reading {
            reading_id: ReadingId::derive("d", subject, Metric::HeartRate, AT + i),
            subject_id: Cow::Owned(subject.into()),
            device_id: Cow::Borrowed("d"),
            sensor_id: Cow::Borrowed("s"),
            metric: Metric::HeartRate,
            value: 70.0,
            measured_at: AT + i,
            received_at: AT + i,
            source: Source::Stream,
            source_ref: Cow::Borrowed("x"),
            cohort: None,
        }
    }

    struct MemoryPorts;

    impl ErasurePorts for MemoryPorts {
        type Objects = MemoryObjects;
        type Requests = MemoryErasures;
        type Audit = MemoryAuditLog;
        type Passes = MemoryErasurePasses;
        type Queue = MemoryQueue;
        type Jobs = pulselake_adapters::MemoryExportJobs;
        type Partners = pulselake_adapters::MemoryPartners;
        type Secrets = pulselake_adapters::MemorySecrets;
        type Alerts = pulselake_adapters::MemoryAlertStates;
        type Heartbeats = pulselake_adapters::MemoryHeartbeats;
    }

    type MemoryJob = Erasure<MemoryPorts>;

    fn job() -> MemoryJob {
        let objects = MemoryObjects::default();
        let p = Partition::of(Metric::HeartRate, AT);
        let mixed: Vec<_> = (0..30)
            .map(|i| row(["ann", "bob", "cy"][i as usize % 3], i))
            .collect();
        let only_bob: Vec<_> = (0..5).map(|i| row("bob", 100 + i)).collect();
        let no_bob: Vec<_> = (0..5).map(|i| row("cy", 200 + i)).collect();
        for (name, rows) in [("mixed", mixed), ("bob", only_bob), ("cy", no_bob)] {
            let body = encode_readings(&rows, FileLayout::default()).unwrap();
            objects.insert(LAKE, &format!("readings/{p}/{name}.parquet"), body);
        }
        Erasure {
            objects,
            requests: MemoryErasures::default(),
            audit: MemoryAuditLog::default(),
            passes: MemoryErasurePasses::default(),
            queue: MemoryQueue::default(),
            lake_bucket: LAKE.into(),
            copies: None,
            jobs: Default::default(),
            partners: Default::default(),
            secrets: Default::default(),
            exports_bucket: None,
            alerts: Default::default(),
            heartbeats: Default::default(),
            part_bytes: lake_file::PART_BYTES,
        }
    }

    fn request(subject: &str) -> ErasureRequest {
        ErasureRequest {
            subject_id: subject.into(),
            aliases: Vec::new(),
            devices: Vec::new(),
            periods: Vec::new(),
            request_id: format!("req-{subject}"),
            requested_by: "dpo@example.org".into(),
            reason: "GDPR Art. 17".into(),
            requested_at: AT,
            completed_at: None,
            evidence: None,
        }
    }

    #[tokio::test]
    async fn a_subject_leaves_every_file_the_rest_stays_and_the_request_is_done_after_verification()
    {
        let j = job();
        assert!(j.requests.record(&request("bob")).await.unwrap());
        assert!(
            !j.requests.record(&request("bob")).await.unwrap(),
            "one request per subject"
        );
        let ev = j.run(LATER + 1000).await.unwrap().unwrap();
        assert_eq!((ev.files_read, ev.rows_removed), (3, 15));
        assert_eq!(
            ev.files_rewritten.len(),
            2,
            "mixed rewritten, bob's own file removed"
        );
        assert!(ev.verification.passed && ev.completed, "{ev:?}");
        let keys = j.objects.keys(LAKE);
        assert_eq!(keys.len(), 2, "{keys:?}");
        let mut left = Vec::new();
        for k in &keys {
            left.extend(read_readings(j.objects.get(LAKE, k).unwrap(), Metric::HeartRate).unwrap());
        }
        assert_eq!(left.len(), 25);
        assert!(left.iter().all(|r| r.subject_id != "bob"));
        let audit = j.audit.0.lock().unwrap().clone();
        assert_eq!(audit.len(), 1);
        assert!(
            !audit[0].1.to_string().contains("\"bob\""),
            "evidence names requests, not subjects"
        );
        let done = j.requests.all().await.unwrap();
        assert_eq!(done[0].evidence.as_deref(), Some(ev.evidence_id.as_str()));
        assert!(
            j.run(LATER + 2000).await.unwrap().is_none(),
            "nothing pending: no pass"
        );
    }

    #[tokio::test]
    async fn a_pass_fans_out_per_partition_and_the_last_unit_finishes_it_once() {
        let j = job();
        // Two more days of bob's readings: three partitions, three units.
        for day in 1..3 {
            let p = Partition::of(Metric::HeartRate, AT + day * 86_400_000);
            let rows: Vec<_> = (0..4)
                .map(|i| row(["bob", "cy"][i as usize % 2], day * 86_400_000 + i))
                .collect();
            let body = encode_readings(&rows, FileLayout::default()).unwrap();
            j.objects
                .insert(LAKE, &format!("readings/{p}/d{day}.parquet"), body);
        }
        j.requests.record(&request("bob")).await.unwrap();
        let Planned::Started { pass, units } = j.plan(LATER + 1000).await.unwrap() else {
            panic!("a pass should start");
        };
        assert_eq!(units, 3);
        assert_eq!(
            j.plan(LATER + 2000).await.unwrap(),
            Planned::Running,
            "one pass at a time"
        );
        let queued: Vec<Unit> = j
            .queue
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect();
        assert!(queued.iter().all(|u| u.pass == pass));
        // In any order; a unit delivered twice counts once; only the last one finishes.
        assert!(j.unit(&queued[2], LATER + 3000).await.unwrap().is_none());
        assert!(
            j.unit(&queued[2], LATER + 3000).await.unwrap().is_none(),
            "redelivered"
        );
        assert!(j.unit(&queued[0], LATER + 3000).await.unwrap().is_none());
        let ev = j
            .unit(&queued[1], LATER + 4000)
            .await
            .unwrap()
            .expect("the last unit");
        assert!(ev.completed, "{ev:?}");
        assert_eq!((ev.partitions, ev.rows_removed), (3, 19));
        assert_eq!(
            ev.verification.partitions, 3,
            "each partition bob was in, verified"
        );
        assert!(
            j.unit(&queued[1], LATER + 5000).await.unwrap().is_none(),
            "after the end: nothing"
        );
        assert_eq!(j.audit.0.lock().unwrap().len(), 1, "one evidence record");
        assert_eq!(j.plan(LATER + 6000).await.unwrap(), Planned::NothingPending);
    }

    #[tokio::test]
    async fn a_request_waits_for_the_delivery_horizon_before_a_pass_takes_it() {
        let j = job();
        j.requests.record(&request("bob")).await.unwrap();
        assert_eq!(
            j.plan(AT + 60_000).await.unwrap(),
            Planned::NothingPending,
            "rows of the subject may still be on their way"
        );
        assert!(matches!(
            j.plan(LATER).await.unwrap(),
            Planned::Started { .. }
        ));
    }

    #[tokio::test]
    async fn a_row_that_lands_after_its_partition_s_unit_ran_is_gone_when_the_request_is_done() {
        let j = job();
        let yesterday = Partition::of(Metric::HeartRate, AT - 86_400_000);
        let rows: Vec<_> = (0..4)
            .map(|i| row(["bob", "cy"][i as usize % 2], i - 86_400_000))
            .collect();
        let body = encode_readings(&rows, FileLayout::default()).unwrap();
        j.objects
            .insert(LAKE, &format!("readings/{yesterday}/y.parquet"), body);
        j.requests.record(&request("bob")).await.unwrap();
        let Planned::Started { units, .. } = j.plan(LATER).await.unwrap() else {
            panic!("a pass should start");
        };
        assert_eq!(units, 2);
        let queued: Vec<Unit> = j
            .queue
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect();
        let today = Partition::of(Metric::HeartRate, AT).to_string();
        let (first, last): (Vec<&Unit>, Vec<&Unit>) =
            queued.iter().partition(|u| u.partition == today);
        assert!(j.unit(first[0], LATER).await.unwrap().is_none());
        // Firehose delivers a buffer late, into the partition whose unit has run.
        let late = encode_readings(&[row("bob", 999)], FileLayout::default()).unwrap();
        j.objects
            .insert(LAKE, &format!("readings/{today}/late.parquet"), late);
        let ev = j
            .unit(last[0], LATER + 1)
            .await
            .unwrap()
            .expect("the last unit");
        assert!(ev.completed, "{ev:?}");
        assert_eq!(ev.late_rows_removed, 1, "{ev:?}");
        for k in j.objects.keys(LAKE) {
            let left = read_readings(j.objects.get(LAKE, &k).unwrap(), Metric::HeartRate).unwrap();
            assert!(left.iter().all(|r| r.subject_id != "bob"), "{k}");
        }
    }

    #[tokio::test]
    async fn a_file_larger_than_a_part_is_rewritten_in_parts_and_reads_back_exactly() {
        let mut j = job();
        j.part_bytes = 16 << 10;
        let p = Partition::of(Metric::HeartRate, AT);
        let big: Vec<_> = (0..40_000)
            .map(|i| row(["ann", "bob", "cy", "dee"][i as usize % 4], 1000 + i))
            .collect();
        let layout = FileLayout {
            row_group_rows: 1000,
            sorted_by_subject: false,
        };
        let key = format!("readings/{p}/big.parquet");
        j.objects
            .insert(LAKE, &key, encode_readings(&big, layout).unwrap());
        j.requests.record(&request("dee")).await.unwrap();
        let ev = j.run(LATER + 1000).await.unwrap().unwrap();
        assert!(ev.completed && ev.verification.passed, "{ev:?}");
        assert_eq!(ev.rows_removed, 10_000);
        let left = read_readings(j.objects.get(LAKE, &key).unwrap(), Metric::HeartRate).unwrap();
        let expected: Vec<_> = big.into_iter().filter(|r| r.subject_id != "dee").collect();
        assert_eq!(left, expected, "every other row, in order");
        assert_eq!(j.objects.open_uploads(), 0, "the upload was completed");
    }

    #[tokio::test]
    async fn a_current_file_without_the_subject_stays_when_only_an_older_version_held_them() {
        struct Versioned;
        impl ErasurePorts for Versioned {
            type Objects = pulselake_adapters::MemoryVersioned;
            type Requests = MemoryErasures;
            type Audit = MemoryAuditLog;
            type Passes = MemoryErasurePasses;
            type Queue = MemoryQueue;
            type Jobs = pulselake_adapters::MemoryExportJobs;
            type Partners = pulselake_adapters::MemoryPartners;
            type Secrets = pulselake_adapters::MemorySecrets;
            type Alerts = pulselake_adapters::MemoryAlertStates;
            type Heartbeats = pulselake_adapters::MemoryHeartbeats;
        }
        let objects = pulselake_adapters::MemoryVersioned::default();
        let p = Partition::of(Metric::HeartRate, AT);
        let key = format!("readings/{p}/upload.parquet");
        let first: Vec<_> = (0..6)
            .map(|i| row(["bob", "cy"][i as usize % 2], i))
            .collect();
        let corrected: Vec<_> = (0..3).map(|i| row("cy", 50 + i)).collect();
        for rows in [&first, &corrected] {
            objects.insert(
                LAKE,
                &key,
                encode_readings(rows, FileLayout::default()).unwrap(),
            );
        }
        let j: Erasure<Versioned> = Erasure {
            objects,
            requests: MemoryErasures::default(),
            audit: MemoryAuditLog::default(),
            passes: MemoryErasurePasses::default(),
            queue: MemoryQueue::default(),
            lake_bucket: LAKE.into(),
            copies: None,
            jobs: Default::default(),
            partners: Default::default(),
            secrets: Default::default(),
            exports_bucket: None,
            alerts: Default::default(),
            heartbeats: Default::default(),
            part_bytes: lake_file::PART_BYTES,
        };
        j.requests.record(&request("bob")).await.unwrap();
        let ev = j.run(LATER + 1000).await.unwrap().unwrap();
        assert!(ev.completed, "{ev:?}");
        assert_eq!(
            ev.old_versions_deleted, 1,
            "the old version, not the current one"
        );
        let current = read_readings(j.objects.get(LAKE, &key).unwrap(), Metric::HeartRate).unwrap();
        assert_eq!(current, corrected, "the correction stays as it is");
        assert_eq!(j.objects.all_versions(LAKE, &key).len(), 1);
    }

    #[tokio::test]
    async fn an_unknown_subject_is_verified_absent_and_nothing_changes() {
        let j = job();
        j.requests.record(&request("zed")).await.unwrap();
        let before = j.objects.keys(LAKE);
        let ev = j.run(LATER + 1000).await.unwrap().unwrap();
        assert_eq!((ev.rows_removed, ev.files_rewritten.len()), (0, 0));
        assert_eq!(
            ev.versions_cleared_by_footer, 3,
            "no file downloaded: the footers exclude zed"
        );
        assert!(ev.completed);
        assert_eq!(j.objects.keys(LAKE), before);
    }

    #[tokio::test]
    async fn a_corrupt_lake_file_is_reported_and_the_request_stays_pending() {
        let j = job();
        let p = Partition::of(Metric::HeartRate, AT);
        j.objects.insert(
            LAKE,
            &format!("readings/{p}/broken.parquet"),
            b"PAR1 junk".to_vec(),
        );
        j.requests.record(&request("bob")).await.unwrap();
        let ev = j.run(LATER + 1000).await.unwrap().unwrap();
        assert_eq!(ev.failures.len(), 1, "{ev:?}");
        assert!(!ev.completed);
        assert!(
            j.objects
                .keys(LAKE)
                .iter()
                .any(|k| k.ends_with("broken.parquet")),
            "nothing of it deleted"
        );
        assert!(j.requests.all().await.unwrap()[0].completed_at.is_none());
    }
}
