//! The stream-ingest logic, generic over its ports: a Kinesis or Kafka batch in; readings to
//! Firehose, rejects to quarantine, and the records that could not be finished back
//! to Lambda as batch item failures. Nothing is lost and nothing panics on input.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pulselake_adapters::kafka_events::KafkaBatch;
use pulselake_adapters::lambda_batch::KafkaItemIdentifier;
use pulselake_adapters::{
    AwsError, CachedRegistry, ObjectWriter, RecordSink, RegistryLookup, RetryPolicy, with_retries,
};
use pulselake_domain::message::DeviceMessage;
use pulselake_domain::time::{Date, format_rfc3339_ms};
use pulselake_domain::{
    DeviceMappings, LineTail, Provenance, QuarantineEntry, ReadingId, Reason, RejectedReading,
    Rejection, TimePolicy, normalize,
};
use tokio::time::Instant;

use crate::delivery::{DeliveryReport, Packer, deliver};
use crate::event::{Payload, StreamBatch};
use crate::record::{Delivered, kafka_records};

/// Everything the handler needs, built once per cold start.
pub struct Ingest<S, Q, R> {
    pub sink: S,
    pub quarantine: Q,
    pub quarantine_bucket: String,
    pub registry: CachedRegistry<R>,
    pub mappings: DeviceMappings,
    pub policy: TimePolicy,
    pub retry: RetryPolicy,
    /// Buffers kept between invocations of a warm container.
    pub scratch: ScratchPool,
}

/// Per-batch working memory, reused so a warm container does not allocate (and fault in)
/// megabytes afresh for every batch.
#[derive(Default)]
pub struct Scratch {
    buf: Vec<u8>,
    /// The batch's readings so far, with the value kept for each.
    seen: HashMap<ReadingId, f64, foldhash::fast::RandomState>,
    /// The end of the last JSON line written: the next reading of a message shares it.
    tail: LineTail,
}

/// Holds the scratch between invocations (one invocation at a time uses it).
#[derive(Default)]
pub struct ScratchPool(std::sync::Mutex<Scratch>);

/// Past this, a batch's buffers are dropped rather than kept.
const SCRATCH_KEEP_BYTES: usize = 64 << 20;

impl ScratchPool {
    fn take(&self) -> Scratch {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn put(&self, mut s: Scratch) {
        if s.buf.capacity() > SCRATCH_KEEP_BYTES {
            return;
        }
        s.buf.clear();
        s.seen.clear();
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }
}

/// What one batch came to. Every reading and record is in exactly one bucket.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stats {
    pub records: usize,
    /// Readings handed to Firehose and accepted.
    pub readings_delivered: usize,
    /// Readings whose Firehose record failed after all retries (their Kinesis records are reported as failures).
    pub readings_failed: usize,
    /// The same reading twice in one batch with the same value: delivered once, the
    /// copy absorbed. (The same reading with another value is quarantined as
    /// `conflicting_duplicate`.)
    pub duplicates: usize,
    /// Quarantined readings by reason (record-level rejections count the readings they carried).
    pub quarantined_readings: BTreeMap<Reason, usize>,
    /// Records rejected before their readings could be counted, by reason.
    pub unreadable_records: BTreeMap<Reason, usize>,
    pub firehose_records: usize,
    pub firehose_calls: u32,
    pub firehose_resent: usize,
    /// Kinesis records reported back for retry.
    pub failed_records: usize,
    /// Largest (receipt -> processing) lag in the batch, ms.
    pub max_lag_ms: i64,
}

impl Stats {
    pub fn readings_quarantined(&self) -> usize {
        self.quarantined_readings.values().sum()
    }
}

/// The batch's result: the sequence numbers to report as failures, and the stats.
#[derive(Debug)]
pub struct Outcome {
    pub failed_sequence_numbers: Vec<String>,
    pub stats: Stats,
}

/// Why a whole batch must be retried by Lambda (and bisected, if configured).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("device registry unavailable, the batch will be retried: {0}")]
    Registry(AwsError),
    #[error(
        "no record of the batch could be finished ({failed} records), the batch will be retried: {cause}"
    )]
    AllFailed { failed: usize, cause: String },
}

impl From<IngestError> for lambda_runtime::Diagnostic {
    fn from(e: IngestError) -> Self {
        let error_type = match e {
            IngestError::Registry(_) => "Transient.RegistryUnavailable",
            IngestError::AllFailed { .. } => "Transient.AllRecordsFailed",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// A Kafka batch's result: the records to report as failures, and the stats.
#[derive(Debug)]
pub struct KafkaOutcome {
    pub failed: Vec<KafkaItemIdentifier>,
    pub stats: Stats,
}

impl<S: RecordSink, Q: ObjectWriter, R: RegistryLookup> Ingest<S, Q, R> {
    /// A Kinesis batch (devices through IoT Core).
    pub async fn handle(
        &self,
        batch: &StreamBatch,
        deadline: Instant,
        now_ms: i64,
    ) -> Result<Outcome, IngestError> {
        let records = &batch.records;
        let (failed, stats) = self.handle_records(records, deadline, now_ms).await?;
        let failed_sequence_numbers = failed
            .iter()
            .map(|&i| records[i as usize].kinesis.sequence_number.clone())
            .filter(|s| !s.is_empty())
            .collect();
        Ok(Outcome {
            failed_sequence_numbers,
            stats,
        })
    }

    /// A Kafka batch (a legacy platform's topic, from MSK or a self-managed cluster).
    pub async fn handle_kafka(
        &self,
        batch: &KafkaBatch,
        deadline: Instant,
        now_ms: i64,
    ) -> Result<KafkaOutcome, IngestError> {
        let records = kafka_records(batch);
        let (failed, stats) = self.handle_records(&records, deadline, now_ms).await?;
        Ok(KafkaOutcome {
            failed: failed
                .iter()
                .map(|&i| records[i as usize].item_identifier())
                .collect(),
            stats,
        })
    }

    /// The one path for every stream: the indices of the records that could not be
    /// finished, and the stats.
    async fn handle_records<T: Delivered>(
        &self,
        records: &[T],
        deadline: Instant,
        now_ms: i64,
    ) -> Result<(BTreeSet<u32>, Stats), IngestError> {
        let mut stats = Stats {
            records: records.len(),
            ..Stats::default()
        };
        if records.is_empty() {
            return Ok((BTreeSet::new(), stats));
        }

        // 1. Map payloads (decoded from base64 as the event was read) to device messages.
        let messages: Vec<Result<DeviceMessage<'_>, Rejection>> = records
            .iter()
            .map(|r| r.device_message(&self.mappings))
            .collect();

        // 2. One registry resolution for the batch (served from the cache once warm).
        let devices = self
            .registry
            .resolve(
                messages
                    .iter()
                    .filter_map(|m| m.as_ref().ok())
                    .map(|m| m.device_id.as_ref()),
            )
            .await
            .map_err(IngestError::Registry)?;

        // 3. Validate and normalize; readings to the packer, rejects to quarantine entries.
        let mut scratch = self.scratch.take();
        let mut packer = Packer::with_buffer(std::mem::take(&mut scratch.buf));
        let seen = &mut scratch.seen;
        let mut quarantined: Vec<(u32, QuarantineEntry)> = Vec::new();
        for (i, (record, message)) in records.iter().zip(messages).enumerate() {
            let index = i as u32;
            let received_at = record.arrival_ms();
            stats.max_lag_ms = stats.max_lag_ms.max(now_ms - received_at);
            let message = match message {
                Ok(m) => m,
                Err(rej) => {
                    *stats.unreadable_records.entry(rej.reason).or_default() += 1;
                    quarantined.push((index, entry_for(record, Some(rej), None, Vec::new())));
                    continue;
                }
            };
            let total = message.readings.len();
            if let Err(rej) = record.check_publisher(&message) {
                *stats.quarantined_readings.entry(rej.reason).or_default() += total;
                quarantined.push((index, entry_for(record, Some(rej), Some(total), Vec::new())));
                continue;
            }
            let Some(Some(device)) = devices.get(message.device_id.as_ref()) else {
                *stats
                    .quarantined_readings
                    .entry(Reason::UnknownDevice)
                    .or_default() += total;
                let rej = Rejection::new(Reason::UnknownDevice, "device is not in the registry");
                quarantined.push((index, entry_for(record, Some(rej), Some(total), Vec::new())));
                continue;
            };
            let source_ref = record.reference();
            let prov = Provenance {
                source: record.source(),
                source_ref: &source_ref,
                received_at,
            };
            let mut rejected = Vec::new();
            for (n, raw) in message.readings.into_iter().enumerate() {
                let first = raw
                    .and_then(|raw| normalize(raw, device, prov, &self.policy))
                    .and_then(|reading| match seen.entry(reading.reading_id) {
                        Entry::Vacant(slot) => {
                            slot.insert(reading.value);
                            Ok(Some(reading))
                        }
                        Entry::Occupied(kept) if *kept.get() == reading.value => Ok(None),
                        Entry::Occupied(_) => Err(Rejection::new(
                            Reason::ConflictingDuplicate,
                            "the same sensor, metric and time came earlier in the batch with \
                             another value; the first value is kept",
                        )),
                    });
                match first {
                    Ok(Some(reading)) => {
                        let tail = &mut scratch.tail;
                        packer.push_with(index, |buf| reading.write_json_line_with(buf, tail));
                    }
                    Ok(None) => stats.duplicates += 1,
                    Err(rej) => {
                        *stats.quarantined_readings.entry(rej.reason).or_default() += 1;
                        rejected.push(RejectedReading::new(n, rej));
                    }
                }
            }
            if !rejected.is_empty() {
                quarantined.push((index, entry_for(record, None, Some(total), rejected)));
            }
        }

        // 4. Deliver and quarantine concurrently. What no subject stands behind (an
        // unknown or unassigned device) is kept days, not years, under its own prefix.
        let (unattributed, attributed): (Vec<_>, Vec<_>) =
            quarantined.iter().partition(|(_, e)| e.is_unattributed());
        let firehose_records = packer.records();
        let (key, unattributed_key) = (
            quarantine_key(QUARANTINE_PREFIX, records),
            quarantine_key(UNATTRIBUTED_PREFIX, records),
        );
        let (report, quarantine_result, unattributed_result) = tokio::join!(
            deliver(&self.sink, &firehose_records, deadline, self.retry),
            self.write_quarantine(&key, quarantine_report(&attributed), deadline),
            self.write_quarantine(
                &unattributed_key,
                quarantine_report(&unattributed),
                deadline
            ),
        );
        let quarantine_result = quarantine_result.and(unattributed_result);

        // 5. Whatever could not be finished goes back to Lambda (by sequence number or offset).
        let mut failed: BTreeSet<u32> = BTreeSet::new();
        self.account_delivery(&packer, &report, &mut stats, &mut failed);
        scratch.buf = packer.into_buffer();
        self.scratch.put(scratch);
        let mut causes = report.last_error.clone().into_iter().collect::<Vec<_>>();
        if let Err(e) = quarantine_result {
            tracing::error!(error = %e, records = quarantined.len(), "quarantine write failed; those records will be retried");
            failed.extend(quarantined.iter().map(|(i, _)| *i));
            causes.push(e.to_string());
        }
        stats.failed_records = failed.len();
        if !failed.is_empty() && failed.len() == records.len() {
            return Err(IngestError::AllFailed {
                failed: failed.len(),
                cause: causes.join("; "),
            });
        }
        Ok((failed, stats))
    }

    fn account_delivery(
        &self,
        packer: &Packer,
        report: &DeliveryReport,
        stats: &mut Stats,
        failed: &mut BTreeSet<u32>,
    ) {
        stats.firehose_records = packer.len();
        stats.firehose_calls = report.calls;
        stats.firehose_resent = report.resent;
        let total_lines: usize = packer.lines.iter().sum();
        let failed_lines: usize = report.failed.iter().map(|&r| packer.lines[r]).sum();
        for &r in &report.failed {
            failed.extend(packer.sources(r).iter().copied());
        }
        stats.readings_delivered = total_lines - failed_lines;
        stats.readings_failed = failed_lines;
    }

    /// Writes the report, retrying transient errors within the invocation's time.
    async fn write_quarantine(
        &self,
        key: &str,
        body: Vec<u8>,
        deadline: Instant,
    ) -> Result<(), AwsError> {
        if body.is_empty() {
            return Ok(());
        }
        let until = deadline
            .checked_sub(crate::delivery::RESERVE)
            .unwrap_or(deadline);
        with_retries(self.retry, Some(until), || {
            self.quarantine.put(
                &self.quarantine_bucket,
                key,
                body.clone(),
                "application/x-ndjson",
            )
        })
        .await
    }
}

fn entry_for(
    record: &impl Delivered,
    whole: Option<Rejection>,
    readings_total: Option<usize>,
    rejected: Vec<RejectedReading>,
) -> QuarantineEntry {
    let (payload, payload_base64) = match record.payload() {
        Payload::Decoded(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(STANDARD.encode(bytes))),
        },
        // Undecodable or oversized: keep what Kinesis delivered, as delivered.
        Payload::Undecodable { raw, .. } => (None, Some(raw.clone())),
    };
    let (reason, detail) = match whole {
        Some(r) => (Some(r.reason), Some(r.detail)),
        None => (None, None),
    };
    QuarantineEntry {
        source: record.source().as_str().into(),
        reference: record.reference(),
        received_at: format_rfc3339_ms(record.arrival_ms()),
        reason,
        detail,
        readings_total,
        rejected,
        payload,
        payload_base64,
    }
}

fn quarantine_report(entries: &[&(u32, QuarantineEntry)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (_, e) in entries {
        if serde_json::to_writer(&mut body, e).is_ok() {
            body.push(b'\n');
        }
    }
    body
}

/// Where records a subject stands behind are quarantined (kept as long as the lake).
pub const QUARANTINE_PREFIX: &str = "stream/";
/// Where records no subject stands behind are quarantined (an unknown device, one
/// assigned to nobody then): kept days, so a retired device's chatter is not kept for
/// years (the bucket's lifecycle rule for this prefix).
pub const UNATTRIBUTED_PREFIX: &str = "stream-unattributed/";

/// `<prefix>year=YYYY/month=MM/day=DD/<folder>/<first>-<last>.ndjson`, the folder a
/// Kinesis shard or `kafka-<cluster>-<topic>-<partition>`: deterministic for a batch, so
/// Lambda retrying the same batch overwrites rather than duplicates; stream positions
/// only, no identifier of a device or patient.
pub fn quarantine_key<T: Delivered>(prefix: &str, records: &[T]) -> String {
    let first = records.first();
    let date = Date::from_epoch_ms(first.map_or(0, Delivered::arrival_ms));
    let folder = first.map_or_else(|| "unknown-shard".to_owned(), Delivered::folder);
    let position = |r: Option<&T>| r.map_or_else(|| "0".to_owned(), Delivered::position);
    format!(
        "{prefix}year={:04}/month={:02}/day={:02}/{folder}/{}-{}.ndjson",
        date.year,
        date.month,
        date.day,
        position(first),
        position(records.last())
    )
}
