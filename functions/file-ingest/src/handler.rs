//! The file-ingest logic, generic over its ports. For each object a notification names:
//!
//! 1. claim the object version (one conditional write): a redelivery is a no-op, a
//!    concurrent delivery waits its turn;
//! 2. read the key: format, and for seed files the patient's subject;
//! 3. stream the file through the pipeline, chunks staged under `_staging/` in the lake
//!    bucket (invisible to the table), rejected rows to the quarantine report;
//! 4. claim the content hash: identical content already ingested under another name is a
//!    duplicate, and its staged chunks are dropped;
//! 5. publish: staged chunks move to `readings/<partition>/file-<source hash>-<n>.parquet`,
//!    names fixed by the source key, so a retry or a corrected re-upload overwrites, and
//!    whatever an earlier version of the key wrote beyond that is removed;
//! 6. archive the raw file to the processed bucket (same key), mark COMPLETED, and only
//!    then delete it from staging.
//!
//! A file unusable as a whole is copied to the quarantine bucket with a report entry
//! and ops are notified, with the file's hash reference only (keys carry patient ids).

use std::collections::BTreeMap;
use std::time::Duration;

use pulselake_adapters::{
    AwsError, CachedRegistry, Claim, DedupStore, Notifier, ObjectReader, ObjectWriter,
    RegistryLookup, SourceManifest, SubjectAliases,
};
use pulselake_domain::quarantine::QuarantineEntry;
use pulselake_domain::time::{Date, format_rfc3339_ms};
use pulselake_domain::{
    DeviceMappings, NamingKey, Partition, Reason, Rejection, Source, TimePolicy,
};
use tokio::time::Instant;

use crate::event::{Notification, ObjectRef, older, parse_body};
use crate::formats::{Format, classify};
use crate::pipeline::{FileError, FileReport, FileSpec, Limits, Pipeline, Step};

/// Where things go.
#[derive(Debug, Clone)]
pub struct Buckets {
    pub lake: String,
    pub quarantine: String,
    pub processed: String,
}

/// Everything the handler needs, built once per cold start.
pub struct FileIngest<O, D, R, A, N> {
    pub objects: O,
    pub dedup: D,
    pub registry: CachedRegistry<R>,
    pub aliases: A,
    pub notifier: N,
    pub mappings: DeviceMappings,
    pub buckets: Buckets,
    pub limits: Limits,
    /// How long dedup records are kept (DynamoDB TTL).
    pub dedup_ttl: Duration,
    /// Keys the references that name a file's outputs and point at it in logs.
    pub naming: NamingKey,
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ingested(FileReport),
    /// Identical content was already ingested from another object.
    DuplicateContent {
        of: String,
        report: FileReport,
    },
    /// This version was ingested before (a redelivered event).
    AlreadyIngested,
    /// A newer version of the key was ingested already.
    Superseded,
    /// The file as a whole was quarantined.
    Quarantined {
        reason: Reason,
        report: FileReport,
    },
    /// Another invocation is ingesting it right now: retry the message later.
    Busy,
}

/// What a batch came to, for the report and the metrics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchStats {
    pub messages: usize,
    pub files_ingested: usize,
    pub duplicates: usize,
    pub already_ingested: usize,
    pub superseded: usize,
    pub files_quarantined: BTreeMap<Reason, usize>,
    pub readings_written: u64,
    pub readings_quarantined: u64,
    pub bytes: u64,
    pub failed_messages: usize,
}

/// The SQS batch result: message ids to retry, and stats.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub failed_message_ids: Vec<String>,
    pub stats: BatchStats,
}

pub use pulselake_adapters::lambda_batch::Message;

/// Time kept back at the end of an invocation: a file is not started without it.
const START_RESERVE: Duration = Duration::from_secs(20);

fn epoch_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl<
    O: ObjectReader + ObjectWriter,
    D: DedupStore,
    R: RegistryLookup,
    A: SubjectAliases,
    N: Notifier,
> FileIngest<O, D, R, A, N>
{
    /// Handles an SQS batch; messages that could not be finished are returned for retry.
    pub async fn handle_batch(
        &self,
        messages: &[Message<'_>],
        deadline: Instant,
    ) -> Result<BatchOutcome, AwsError> {
        let mut out = BatchOutcome {
            stats: BatchStats {
                messages: messages.len(),
                ..Default::default()
            },
            ..Default::default()
        };
        for m in messages {
            let Some(id) = m.id.filter(|id| !id.is_empty()) else {
                // Without an id the message cannot be reported alone: fail the batch.
                return Err(AwsError::permanent("sqs", "a message without a messageId"));
            };
            let ok = if deadline.saturating_duration_since(Instant::now()) < START_RESERVE {
                false
            } else {
                self.handle_message(m.body.unwrap_or_default(), deadline, &mut out.stats)
                    .await
            };
            if !ok {
                out.failed_message_ids.push(id.to_owned());
            }
        }
        out.stats.failed_messages = out.failed_message_ids.len();
        Ok(out)
    }

    /// True when the message is done with (ingested, or nothing to do).
    async fn handle_message(&self, body: &str, deadline: Instant, stats: &mut BatchStats) -> bool {
        let objects = match parse_body(body) {
            Notification::Test => return true,
            Notification::Invalid(why) => {
                tracing::error!(error = %why, "unreadable message; it will go to the DLQ");
                return false;
            }
            Notification::Objects(o) => o,
        };
        let mut ok = true;
        for obj in &objects {
            match self.ingest_object(obj, deadline).await {
                Ok(outcome) => {
                    tracing::info!(file = %obj.source_ref(&self.naming), outcome = outcome_name(&outcome), "file done");
                    match outcome {
                        Outcome::Ingested(r) => {
                            stats.files_ingested += 1;
                            stats.readings_written += r.written;
                            stats.readings_quarantined += r.quarantined_readings();
                            stats.bytes += r.bytes;
                        }
                        Outcome::DuplicateContent { .. } => stats.duplicates += 1,
                        Outcome::AlreadyIngested => stats.already_ingested += 1,
                        Outcome::Superseded => stats.superseded += 1,
                        Outcome::Quarantined { reason, report } => {
                            *stats.files_quarantined.entry(reason).or_default() += 1;
                            stats.readings_quarantined += report.quarantined_readings();
                            stats.bytes += report.bytes;
                        }
                        Outcome::Busy => ok = false,
                    }
                }
                Err(e) => {
                    tracing::error!(file = %obj.source_ref(&self.naming), error = %e, "file failed; the message will be retried");
                    ok = false;
                }
            }
        }
        ok
    }

    /// Ingests one object version, exactly once.
    pub async fn ingest_object(
        &self,
        obj: &ObjectRef,
        deadline: Instant,
    ) -> Result<Outcome, AwsError> {
        let now = epoch_s();
        let left = deadline.saturating_duration_since(Instant::now()).as_secs() as i64;
        let expires = now + self.dedup_ttl.as_secs() as i64;
        let object_id = obj.object_id();
        match self
            .dedup
            .claim(&object_id, now, now + left + 30, expires)
            .await?
        {
            Claim::Completed => return Ok(Outcome::AlreadyIngested),
            Claim::InProgress => return Ok(Outcome::Busy),
            Claim::Acquired => {}
        }
        let result = self.ingest_claimed(obj).await;
        match &result {
            Ok(outcome) => {
                self.dedup
                    .finish(&object_id, true, outcome_name(outcome), expires)
                    .await?
            }
            Err(e) => {
                // Best effort: the claim lapses on its own if this fails too.
                let _ = self
                    .dedup
                    .finish(&object_id, false, &e.to_string(), expires)
                    .await;
                let _ = self.discard_staged(obj).await;
            }
        }
        if result.is_ok() {
            // Only this version: a newer upload of the key stays for its own event.
            self.objects
                .delete(&obj.bucket, &obj.key, obj.version_id.as_deref())
                .await?;
        }
        result
    }

    async fn ingest_claimed(&self, obj: &ObjectRef) -> Result<Outcome, AwsError> {
        // First the key: an unsafe one is never archived under its own name.
        let format = match classify(&obj.key) {
            Ok(f) => f,
            Err(rej) => return self.quarantine_file(obj, rej, FileReport::default()).await,
        };
        let source = obj.source_id();
        let previous = self.dedup.manifest(&source).await?;
        if let (Some(prev), Some(seq)) = (
            previous.as_ref().and_then(|m| m.sequencer.as_deref()),
            obj.sequencer.as_deref(),
        ) && older(seq, prev)
        {
            self.archive(obj).await?;
            return Ok(Outcome::Superseded);
        }
        let subject = match &format {
            Format::Seed { alias, .. } => match self.aliases.resolve(alias).await? {
                Some(s) => Some(s),
                None => {
                    let rej = Rejection::new(
                        Reason::UnknownSubject,
                        "the file's patient has no subject alias (register it, then re-upload)",
                    );
                    return self.quarantine_file(obj, rej, FileReport::default()).await;
                }
            },
            _ => None,
        };
        let received_at = epoch_s() * 1000;
        let source_hash = obj.source_ref(&self.naming);
        let reference = format!("s3://{}/{}@{}", obj.bucket, obj.key, obj.version());
        let spec = FileSpec {
            format,
            subject,
            source_hash: &source_hash,
            reference: &reference,
            received_at,
            mappings: &self.mappings,
            policy: TimePolicy::history(self.limits.retention_years),
        };
        match self.run_pipeline(obj, &spec).await? {
            Err((rej, report)) => {
                self.discard_staged(obj).await?;
                self.quarantine_file(obj, rej, report).await
            }
            Ok(report) => {
                if let Some(of) = self
                    .dedup
                    .claim_content(
                        &report.sha256,
                        &obj.object_id(),
                        epoch_s() + self.dedup_ttl.as_secs() as i64,
                    )
                    .await?
                {
                    self.discard_staged(obj).await?;
                    self.discard_report(obj, received_at).await?;
                    self.archive(obj).await?;
                    return Ok(Outcome::DuplicateContent { of, report });
                }
                self.publish(obj, &report, previous).await?;
                self.archive(obj).await?;
                Ok(Outcome::Ingested(report))
            }
        }
    }

    /// Streams the object through the pipeline, doing the I/O it asks for: registry
    /// lookups, staged chunks, report parts. The pipeline is synchronous (parsing is CPU
    /// work, and it reads the S3 body through a blocking bridge), so each step runs with
    /// `block_in_place`; every AWS call is made here, in async code.
    /// `Ok(Err(..))`: the content was refused, with the reason and what was read.
    async fn run_pipeline(
        &self,
        obj: &ObjectRef,
        spec: &FileSpec<'_>,
    ) -> Result<Result<FileReport, (Rejection, FileReport)>, AwsError> {
        let body = self
            .objects
            .open(&obj.bucket, &obj.key, obj.version_id.as_deref())
            .await?;
        let input = tokio_util::io::SyncIoBridge::new(body.into_async_read());
        let mut pipeline = tokio::task::block_in_place(|| Pipeline::new(input, spec, self.limits));
        loop {
            match tokio::task::block_in_place(|| pipeline.advance()) {
                Ok(Step::Resolve(ids)) => {
                    let found = self
                        .registry
                        .resolve(ids.iter().map(String::as_str))
                        .await?;
                    pipeline.resolved(&found);
                }
                Ok(Step::Chunk(c)) => {
                    let key = self.staged_key(obj, &c.partition, c.number);
                    let lake = &self.buckets.lake;
                    self.objects
                        .put(lake, &key, c.parquet, "application/vnd.apache.parquet")
                        .await?;
                }
                Ok(Step::ReportPart { part, ndjson }) => {
                    let key = format!(
                        "{}rows-{part:04}.ndjson",
                        self.report_prefix(obj, spec.received_at)
                    );
                    self.objects
                        .put(
                            &self.buckets.quarantine,
                            &key,
                            ndjson,
                            "application/x-ndjson",
                        )
                        .await?;
                }
                Ok(Step::Done(report)) => return Ok(Ok(report)),
                Err(FileError::Content(rej)) => return Ok(Err((rej, pipeline.report()))),
                Err(FileError::Transport(e)) => {
                    return Err(AwsError::transient(
                        "s3:GetObject",
                        format!("reading the file failed: {e}"),
                    ));
                }
            }
        }
    }

    fn staging_prefix(&self, obj: &ObjectRef) -> String {
        format!("_staging/{}/", obj.version_ref(&self.naming))
    }

    fn staged_key(&self, obj: &ObjectRef, p: &Partition, n: u32) -> String {
        format!("{}{p}/{n:04}.parquet", self.staging_prefix(obj))
    }

    fn final_key(&self, obj: &ObjectRef, p: &Partition, n: u32) -> String {
        format!(
            "readings/{p}/file-{}-{n:04}.parquet",
            obj.source_ref(&self.naming)
        )
    }

    fn report_prefix(&self, obj: &ObjectRef, received_at: i64) -> String {
        let d = Date::from_epoch_ms(received_at);
        format!(
            "files/year={:04}/month={:02}/day={:02}/{}-{}/",
            d.year,
            d.month,
            d.day,
            obj.source_ref(&self.naming),
            obj.version_ref(&self.naming)
        )
    }

    /// Moves staged chunks to their final names and removes what an earlier version of
    /// the same key wrote and this one did not overwrite.
    async fn publish(
        &self,
        obj: &ObjectRef,
        report: &FileReport,
        previous: Option<SourceManifest>,
    ) -> Result<(), AwsError> {
        let lake = &self.buckets.lake;
        let mut outputs = Vec::with_capacity(report.chunks.len());
        for c in &report.chunks {
            let staged = self.staged_key(obj, &c.partition, c.number);
            let final_key = self.final_key(obj, &c.partition, c.number);
            self.objects
                .copy(lake, &staged, None, lake, &final_key)
                .await?;
            outputs.push(final_key);
        }
        if let Some(prev) = previous {
            for stale in prev.outputs.iter().filter(|k| !outputs.contains(k)) {
                self.objects.delete(lake, stale, None).await?;
            }
        }
        let manifest = SourceManifest {
            version: obj.version().to_owned(),
            sequencer: obj.sequencer.clone(),
            outputs,
        };
        self.dedup.put_manifest(&obj.source_id(), &manifest).await?;
        self.discard_staged(obj).await
    }

    async fn discard_staged(&self, obj: &ObjectRef) -> Result<(), AwsError> {
        for key in self
            .objects
            .list(&self.buckets.lake, &self.staging_prefix(obj))
            .await?
        {
            self.objects.delete(&self.buckets.lake, &key, None).await?;
        }
        Ok(())
    }

    async fn discard_report(&self, obj: &ObjectRef, received_at: i64) -> Result<(), AwsError> {
        let prefix = self.report_prefix(obj, received_at);
        for key in self.objects.list(&self.buckets.quarantine, &prefix).await? {
            self.objects
                .delete(&self.buckets.quarantine, &key, None)
                .await?;
        }
        Ok(())
    }

    async fn archive(&self, obj: &ObjectRef) -> Result<(), AwsError> {
        self.objects
            .copy(
                &obj.bucket,
                &obj.key,
                obj.version_id.as_deref(),
                &self.buckets.processed,
                &obj.key,
            )
            .await
    }

    /// Copies the raw file to quarantine with a report entry, and tells ops (by reference).
    async fn quarantine_file(
        &self,
        obj: &ObjectRef,
        rej: Rejection,
        report: FileReport,
    ) -> Result<Outcome, AwsError> {
        let received_at = epoch_s() * 1000;
        let prefix = self.report_prefix(obj, received_at);
        let q = &self.buckets.quarantine;
        self.objects
            .copy(
                &obj.bucket,
                &obj.key,
                obj.version_id.as_deref(),
                q,
                &format!("{prefix}raw"),
            )
            .await?;
        let entry = QuarantineEntry {
            source: Source::File.as_str().into(),
            reference: format!("s3://{}/{}@{}", obj.bucket, obj.key, obj.version()),
            received_at: format_rfc3339_ms(received_at),
            reason: Some(rej.reason),
            detail: Some(rej.detail.clone()),
            readings_total: None,
            rejected: Vec::new(),
            payload: None,
            payload_base64: None,
        };
        let mut body = serde_json::to_vec(&entry).unwrap_or_default();
        body.push(b'\n');
        self.objects
            .put(
                q,
                &format!("{prefix}file.ndjson"),
                body,
                "application/x-ndjson",
            )
            .await?;
        let message = format!(
            "A staged file was quarantined.\nfile: {} (version {})\nreason: {}: {}\nquarantine: s3://{q}/{prefix}\n\
             Look the file up in the dedup table by its object claim; fix the cause and upload it again.",
            obj.source_ref(&self.naming),
            obj.version_ref(&self.naming),
            rej.reason,
            rej.detail
        );
        if let Err(e) = self
            .notifier
            .notify("pulselake: file quarantined", &message)
            .await
        {
            tracing::warn!(error = %e, "ops notification failed");
        }
        Ok(Outcome::Quarantined {
            reason: rej.reason,
            report,
        })
    }
}

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Ingested(_) => "ingested",
        Outcome::DuplicateContent { .. } => "duplicate_content",
        Outcome::AlreadyIngested => "already_ingested",
        Outcome::Superseded => "superseded",
        Outcome::Quarantined { .. } => "quarantined",
        Outcome::Busy => "busy",
    }
}
