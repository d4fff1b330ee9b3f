//! Delivery to Firehose: readings packed into records, records into PutRecordBatch
//! calls within the service limits, and only the failed entries retried, with
//! exponential backoff and full jitter, for as long as the invocation has time.

use std::time::Duration;

use pulselake_adapters::firehose::{MAX_BATCH_BYTES, MAX_BATCH_RECORDS};
use pulselake_adapters::{RecordSink, RetryPolicy};
use tokio::time::Instant;

/// Firehose bills ingestion in 5 KiB steps per record: packing whole JSON lines into
/// records of up to this size makes a 30-reading device message cost one step, not 30.
/// Firehose splits them again (record de-aggregation, JSON) before partitioning.
pub const TARGET_RECORD_BYTES: usize = 5 * 1024;

/// Firehose records being built: JSON lines written into one buffer (reused across
/// invocations), each record a slice of it, remembering which Kinesis records contributed.
#[derive(Debug, Default)]
pub struct Packer {
    buf: Vec<u8>,
    /// Offset in `buf` where each record starts (it ends where the next starts).
    starts: Vec<usize>,
    /// Kinesis record indices contributing to each record: `sources[source_starts[r]..]`.
    sources: Vec<u32>,
    source_starts: Vec<usize>,
    /// Lines (readings) in each record.
    pub lines: Vec<usize>,
}

impl Packer {
    /// A packer writing into `buf` (cleared; its capacity is what is reused).
    pub fn with_buffer(mut buf: Vec<u8>) -> Packer {
        buf.clear();
        Packer {
            buf,
            ..Packer::default()
        }
    }

    /// Gives the buffer back for the next invocation.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The records, in order.
    pub fn records(&self) -> Vec<&[u8]> {
        (0..self.starts.len())
            .map(|r| &self.buf[self.starts[r]..self.end(r)])
            .collect()
    }

    fn end(&self, r: usize) -> usize {
        self.starts.get(r + 1).copied().unwrap_or(self.buf.len())
    }

    /// The Kinesis records with lines in record `r`.
    pub fn sources(&self, r: usize) -> &[u32] {
        let end = self
            .source_starts
            .get(r + 1)
            .copied()
            .unwrap_or(self.sources.len());
        &self.sources[self.source_starts[r]..end]
    }

    /// Adds one JSON line contributed by Kinesis record `source`.
    pub fn push_line(&mut self, line: &[u8], source: u32) {
        self.push_with(source, |buf| buf.extend_from_slice(line));
    }

    /// Adds the line `write` appends. A line that would take the current record past
    /// the target size starts the next record instead; lines are never split or copied.
    pub fn push_with(&mut self, source: u32, write: impl FnOnce(&mut Vec<u8>)) {
        let line_start = self.buf.len();
        write(&mut self.buf);
        let record_start = self.starts.last().copied();
        let overflows = record_start
            .is_some_and(|s| s < line_start && self.buf.len() - s > TARGET_RECORD_BYTES);
        if record_start.is_none() || overflows {
            self.starts.push(line_start);
            self.source_starts.push(self.sources.len());
            self.lines.push(0);
        }
        let current = self.source_starts.last().copied().unwrap_or(0);
        if self.sources[current..].last() != Some(&source) {
            self.sources.push(source);
        }
        if let Some(n) = self.lines.last_mut() {
            *n += 1;
        }
    }
}

/// Time kept back for the work after delivery (quarantine, response).
pub const RESERVE: Duration = Duration::from_millis(1500);

/// What delivery achieved.
#[derive(Debug, Default, PartialEq)]
pub struct DeliveryReport {
    /// Indices of records still not delivered when delivery stopped.
    pub failed: Vec<usize>,
    /// PutRecordBatch calls made.
    pub calls: u32,
    /// Entries sent again after a failure.
    pub resent: usize,
    /// The last error seen, for the log.
    pub last_error: Option<String>,
}

/// Splits `indices` into PutRecordBatch-sized groups.
fn batches(records: &[&[u8]], indices: &[usize]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for &i in indices {
        let len = records[i].len();
        let full = out
            .last()
            .is_none_or(|b| b.len() == MAX_BATCH_RECORDS || bytes + len > MAX_BATCH_BYTES);
        if full {
            out.push(Vec::with_capacity(MAX_BATCH_RECORDS.min(indices.len())));
            bytes = 0;
        }
        if let Some(b) = out.last_mut() {
            b.push(i);
        }
        bytes += len;
    }
    out
}

/// Delivers every record, retrying only failed entries until `deadline - RESERVE`.
pub async fn deliver<S: RecordSink>(
    sink: &S,
    records: &[&[u8]],
    deadline: Instant,
    policy: RetryPolicy,
) -> DeliveryReport {
    let mut report = DeliveryReport::default();
    let mut pending: Vec<usize> = (0..records.len()).collect();
    let mut given_up: Vec<usize> = Vec::new();
    let mut backoff = policy.backoff(Some(deadline.checked_sub(RESERVE).unwrap_or(deadline)));
    while !pending.is_empty() {
        let mut retry = Vec::new();
        for batch in batches(records, &pending) {
            let slices: Vec<&[u8]> = batch.iter().map(|&i| records[i]).collect();
            report.calls += 1;
            match sink.put_batch(&slices).await {
                Ok(failed) => {
                    if let Some(f) = failed.first() {
                        report.last_error =
                            Some(format!("{} entries failed, e.g. {}", failed.len(), f.code));
                    }
                    retry.extend(failed.iter().filter_map(|f| batch.get(f.index).copied()));
                }
                Err(e) if e.retryable => {
                    report.last_error = Some(e.to_string());
                    retry.extend_from_slice(&batch);
                }
                Err(e) => {
                    report.last_error = Some(e.to_string());
                    given_up.extend_from_slice(&batch);
                }
            }
        }
        if retry.is_empty() {
            break;
        }
        if !backoff.wait().await {
            given_up.extend_from_slice(&retry);
            break;
        }
        report.resent += retry.len();
        pending = retry;
    }
    given_up.sort_unstable();
    report.failed = given_up;
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulselake_adapters::{AwsError, FailedEntry};
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A sink that fails chosen records a number of times, and can throttle whole calls.
    #[derive(Default)]
    struct FlakySink {
        fail_times: Mutex<HashMap<Vec<u8>, u32>>,
        throttle_calls: Mutex<u32>,
        delivered: Mutex<Vec<Vec<u8>>>,
        calls_sizes: Mutex<Vec<(usize, usize)>>,
    }

    impl RecordSink for FlakySink {
        async fn put_batch(&self, records: &[&[u8]]) -> Result<Vec<FailedEntry>, AwsError> {
            let bytes = records.iter().map(|r| r.len()).sum();
            self.calls_sizes
                .lock()
                .unwrap()
                .push((records.len(), bytes));
            {
                let mut t = self.throttle_calls.lock().unwrap();
                if *t > 0 {
                    *t -= 1;
                    return Err(AwsError::transient(
                        "firehose:PutRecordBatch",
                        "ServiceUnavailableException",
                    ));
                }
            }
            let mut failed = Vec::new();
            let mut fails = self.fail_times.lock().unwrap();
            for (i, r) in records.iter().enumerate() {
                match fails.get_mut(*r) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        failed.push(FailedEntry {
                            index: i,
                            code: "ServiceUnavailableException".into(),
                        });
                    }
                    _ => self.delivered.lock().unwrap().push(r.to_vec()),
                }
            }
            Ok(failed)
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
        v.iter().map(Vec::as_slice).collect()
    }

    fn recs(n: usize, size: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut r = vec![b'0'; size];
                r[..8.min(size)].copy_from_slice(&format!("{i:08}").as_bytes()[..8.min(size)]);
                r
            })
            .collect()
    }

    #[test]
    fn packer_keeps_records_under_the_billing_step_and_tracks_sources() {
        let mut p = Packer::default();
        let line = [b'x'; 1000];
        for src in 0..12u32 {
            p.push_line(&line, src / 2);
        }
        assert_eq!(p.len(), 3);
        assert!(p.records().iter().all(|r| r.len() <= TARGET_RECORD_BYTES));
        assert_eq!(p.records().concat(), [b'x'; 12_000]);
        assert_eq!(p.sources(0), [0, 1, 2]);
        assert_eq!(p.sources(1), [2, 3, 4]);
        assert_eq!(p.sources(2), [5]);
        assert_eq!(p.lines, [5, 5, 2]);
    }

    #[test]
    fn batches_respect_500_records_and_4_mib() {
        let small = recs(1200, 10);
        let sizes: Vec<_> = batches(&refs(&small), &(0..1200).collect::<Vec<_>>())
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [500, 500, 200]);
        let big = recs(10, 1024 * 1024);
        let b = batches(&refs(&big), &(0..10).collect::<Vec<_>>());
        assert!(b.iter().all(|b| b.len() <= 4), "{b:?}");
        assert_eq!(b.iter().map(Vec::len).sum::<usize>(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn only_failed_entries_are_resent_and_all_arrive_once() {
        let records = recs(1200, 8);
        let sink = FlakySink::default();
        sink.fail_times
            .lock()
            .unwrap()
            .extend([(records[3].clone(), 2), (records[700].clone(), 1)]);
        let report = deliver(&sink, &refs(&records), far(), RetryPolicy::default()).await;
        assert_eq!(report.failed, Vec::<usize>::new());
        assert_eq!(
            report.resent, 3,
            "two retries of one record, one of another"
        );
        let mut delivered = sink.delivered.lock().unwrap().clone();
        delivered.sort();
        let mut expected = records.clone();
        expected.sort();
        assert_eq!(delivered, expected, "every record exactly once");
        let calls = sink.calls_sizes.lock().unwrap().clone();
        assert_eq!(
            calls[3..],
            [(2, 16), (1, 8)],
            "retries carry only the failed entries"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_call_is_retried_whole() {
        let records = recs(10, 8);
        let sink = FlakySink::default();
        *sink.throttle_calls.lock().unwrap() = 2;
        let report = deliver(&sink, &refs(&records), far(), RetryPolicy::default()).await;
        assert!(report.failed.is_empty());
        assert_eq!(report.calls, 3);
        assert_eq!(sink.delivered.lock().unwrap().len(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_when_the_invocation_runs_out_of_time() {
        let records = recs(5, 8);
        let sink = FlakySink::default();
        sink.fail_times
            .lock()
            .unwrap()
            .insert(records[1].clone(), u32::MAX);
        let deadline = Instant::now() + Duration::from_millis(1600);
        let start = Instant::now();
        let report = deliver(&sink, &refs(&records), deadline, RetryPolicy::default()).await;
        assert_eq!(report.failed, [1]);
        assert!(Instant::now() <= deadline - RESERVE + Duration::from_millis(1));
        assert!(Instant::now() >= start);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_is_not_retried() {
        struct Missing;
        impl RecordSink for Missing {
            async fn put_batch(&self, _: &[&[u8]]) -> Result<Vec<FailedEntry>, AwsError> {
                Err(AwsError::permanent(
                    "firehose:PutRecordBatch",
                    "ResourceNotFoundException",
                ))
            }
        }
        let report = deliver(&Missing, &refs(&recs(3, 4)), far(), RetryPolicy::default()).await;
        assert_eq!((report.failed, report.calls), (vec![0, 1, 2], 1));
    }
}
