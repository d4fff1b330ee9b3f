//! compaction: daily (EventBridge Scheduler), each metric's partition of the day
//! before (and the day before that, for files Firehose delivered late) is rewritten as
//! a few files sorted by subject, then time; see [`compact`]. The run's report (per
//! partition: what happened, rows) goes to the audit store; the log line has counts.

pub mod compact;
pub mod config;

use lambda_runtime::LambdaEvent;
use pulselake_adapters::{
    AuditLog, AwsError, BucketAuditLog, Metrics, ObjectReader, ObjectWriter, S3Objects, SdkConfig,
    VersionedObjects,
};
use pulselake_domain::time::{DAY_MS, format_rfc3339_ms};
use pulselake_domain::{Metric, Partition};
use serde::Serialize;

pub use compact::{Compaction, Outcome, Plan};
pub use config::Config;

/// The job: compaction, and where its reports go.
pub struct Job<O, A> {
    pub compaction: Compaction<O>,
    pub audit: A,
}

pub type AwsJob = Job<S3Objects, BucketAuditLog<S3Objects>>;

pub fn build(config: &Config, sdk: &SdkConfig) -> AwsJob {
    Job {
        compaction: Compaction {
            objects: S3Objects::from_config(sdk),
            lake_bucket: config.lake_bucket.clone(),
            max_rows: config.max_rows,
            file_rows: compact::FILE_ROWS as u64,
            cache_bytes: compact::CACHE_BYTES,
            spill_dir: std::env::temp_dir(),
        },
        audit: BucketAuditLog {
            writer: S3Objects::from_config(sdk),
            bucket: config.audit_bucket.clone(),
        },
    }
}

/// A run's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub run: String,
    pub partitions: Vec<(String, Outcome)>,
    pub complete: bool,
}

/// Days compacted by a run at `now_ms`: yesterday and the day before.
pub const DAYS_BACK: [i64; 2] = [1, 2];

impl<O, A> Job<O, A>
where
    O: ObjectReader + ObjectWriter + VersionedObjects,
    A: AuditLog,
{
    pub async fn run(
        &self,
        now_ms: i64,
        mut keep_going: impl FnMut() -> bool,
    ) -> Result<RunReport, AwsError> {
        let run = format!("{now_ms}");
        let mut report = RunReport {
            run: run.clone(),
            partitions: Vec::new(),
            complete: true,
        };
        // Plans a run left unfinished come first (a busy day can take several runs),
        // then the days before today.
        let mut partitions: Vec<Partition> = Vec::new();
        for key in self
            .compaction
            .objects
            .list(&self.compaction.lake_bucket, compact::PLANS_PREFIX)
            .await?
        {
            let readings_key = key.replacen(compact::PLANS_PREFIX, "readings/", 1);
            if let Some(p) = Partition::from_object_key(&readings_key) {
                partitions.push(p);
            }
        }
        for back in DAYS_BACK {
            for metric in Metric::all() {
                let p = Partition::of(metric, now_ms - back * DAY_MS);
                if !partitions.contains(&p) {
                    partitions.push(p);
                }
            }
        }
        for p in partitions {
            if !keep_going() {
                report.complete = false;
                break;
            }
            let outcome = self.compaction.compact(p, &run, &mut keep_going).await?;
            if outcome == Outcome::Interrupted {
                report.complete = false;
            }
            report.partitions.push((p.to_string(), outcome));
        }
        let record = serde_json::json!({
            "at": format_rfc3339_ms(now_ms),
            "report": report,
        });
        self.audit.append("compaction", now_ms, &record).await?;
        Ok(report)
    }
}

/// A run that could not list, read or write; the schedule runs it again.
#[derive(Debug, thiserror::Error)]
#[error("compaction run failed: {0}")]
pub struct RunError(#[from] pub AwsError);

impl From<RunError> for lambda_runtime::Diagnostic {
    fn from(e: RunError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "Compaction.RunFailed".into(),
            error_message: e.to_string(),
        }
    }
}

const MARGIN_MS: i64 = 120_000;

pub async fn function_handler<O, A>(
    event: LambdaEvent<serde_json::Value>,
    job: &Job<O, A>,
) -> Result<RunReport, RunError>
where
    O: ObjectReader + ObjectWriter + VersionedObjects,
    A: AuditLog,
{
    let stop_at = event.context.deadline as i64 - MARGIN_MS;
    let result = job.run(now_ms(), || now_ms() < stop_at).await;
    match &result {
        Ok(r) => {
            let count = |f: fn(&Outcome) -> bool| r.partitions.iter().filter(|(_, o)| f(o)).count();
            let compacted =
                count(|o| matches!(o, Outcome::Compacted { .. } | Outcome::Resumed { .. }));
            let skipped = count(|o| matches!(o, Outcome::Skipped { .. }));
            Metrics::new("compaction")
                .count("PartitionsCompacted", compacted as u64)
                .count("PartitionsSkipped", skipped as u64)
                .flush();
            tracing::info!(
                compacted,
                skipped,
                complete = r.complete,
                "compaction run done"
            );
        }
        Err(e) => tracing::error!(error = %e, "compaction run failed"),
    }
    Ok(result?)
}

pub use pulselake_adapters::now_ms;

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use pulselake_adapters::{MemoryAuditLog, MemoryObjects};
    use pulselake_domain::{Reading, ReadingId, Source};
    use pulselake_lake::{FileLayout, encode_readings, read_readings};

    use super::*;

    const LAKE: &str = "lake";
    const NOW: i64 = 1_795_392_000_000 + 3_600_000;

    fn row(subject: u32, i: i64) -> Reading<'static> {
        let at = NOW - DAY_MS + i * 1000;
        Reading {
            reading_id: ReadingId::derive("d", &subject.to_string(), Metric::Spo2, at),
            subject_id: Cow::Owned(format!("subj-{subject:03}")),
            device_id: Cow::Owned(format!("dev-{subject:03}")),
            sensor_id: Cow::Borrowed("s"),
            metric: Metric::Spo2,
            value: 95.0,
            measured_at: at,
            received_at: at + 5,
            source: Source::Stream,
            source_ref: Cow::Borrowed("shard:1"),
            cohort: None,
        }
    }

    /// Five Firehose-like files, each with every subject, in arrival order.
    fn job() -> (Job<MemoryObjects, MemoryAuditLog>, Partition) {
        let objects = MemoryObjects::default();
        let p = Partition::of(Metric::Spo2, NOW - DAY_MS);
        for f in 0..5 {
            let rows: Vec<_> = (0..40).map(|i| row(i % 8, f * 100 + i as i64)).collect();
            let body = encode_readings(&rows, FileLayout::default()).unwrap();
            objects.insert(LAKE, &format!("readings/{p}/firehose-{f}.parquet"), body);
        }
        let job = Job {
            compaction: Compaction {
                objects,
                lake_bucket: LAKE.into(),
                max_rows: 1_000_000,
                file_rows: 1_000_000,
                cache_bytes: compact::CACHE_BYTES,
                spill_dir: std::env::temp_dir(),
            },
            audit: MemoryAuditLog::default(),
        };
        (job, p)
    }

    fn lake_rows(j: &Job<MemoryObjects, MemoryAuditLog>) -> Vec<Reading<'static>> {
        let o = &j.compaction.objects;
        let mut rows = Vec::new();
        for k in o.keys(LAKE).iter().filter(|k| k.ends_with(".parquet")) {
            rows.extend(read_readings(o.get(LAKE, k).unwrap(), Metric::Spo2).unwrap());
        }
        rows.sort_by_key(|r| r.reading_id);
        rows
    }

    #[tokio::test]
    async fn a_day_becomes_one_sorted_file_with_the_same_rows_and_a_second_run_is_a_no_op() {
        let (j, p) = job();
        let before = lake_rows(&j);
        let r = j.run(NOW, || true).await.unwrap();
        let outcome = r
            .partitions
            .iter()
            .find(|(k, _)| *k == p.to_string())
            .unwrap();
        assert_eq!(
            outcome.1,
            Outcome::Compacted {
                files_in: 5,
                files_out: 1,
                rows: 200
            }
        );
        assert_eq!(lake_rows(&j), before, "every reading exactly once");
        let keys = j.compaction.objects.keys(LAKE);
        assert_eq!(keys.len(), 1, "{keys:?}");
        let file = read_readings(
            j.compaction.objects.get(LAKE, &keys[0]).unwrap(),
            Metric::Spo2,
        )
        .unwrap();
        assert!(
            file.windows(2)
                .all(|w| (w[0].subject_id.as_ref(), w[0].measured_at)
                    <= (w[1].subject_id.as_ref(), w[1].measured_at))
        );
        let again = j.run(NOW + 1, || true).await.unwrap();
        assert!(
            again
                .partitions
                .iter()
                .all(|(_, o)| *o == Outcome::AlreadyCompact)
        );
        assert_eq!(lake_rows(&j), before);
    }

    #[tokio::test]
    async fn an_interrupted_swap_is_finished_by_the_next_run_with_every_reading_once() {
        let (j, p) = job();
        let before = lake_rows(&j);
        let mut budget = 1; // the output file, not the deletion of the inputs
        let first = j
            .compaction
            .compact(p, "1", || {
                budget -= 1;
                budget >= 0
            })
            .await
            .unwrap();
        assert_eq!(first, Outcome::Interrupted);
        assert_eq!(
            lake_rows(&j).len(),
            2 * before.len(),
            "outputs written, inputs still there"
        );
        let second = j.compaction.compact(p, "2", || true).await.unwrap();
        assert_eq!(second, Outcome::Resumed { rows: 200 });
        assert_eq!(lake_rows(&j), before);
        assert!(
            j.compaction
                .objects
                .keys(LAKE)
                .iter()
                .all(|k| !k.starts_with(compact::PLANS_PREFIX))
        );
    }

    #[tokio::test]
    async fn an_output_left_incomplete_is_written_again_from_the_plan() {
        let (j, p) = job();
        let before = lake_rows(&j);
        let mut budget = 1;
        j.compaction
            .compact(p, "1", || {
                budget -= 1;
                budget >= 0
            })
            .await
            .unwrap();
        let o = &j.compaction.objects;
        let out = o
            .keys(LAKE)
            .into_iter()
            .find(|k| k.contains("compacted-1-"))
            .unwrap();
        o.insert(LAKE, &out, b"truncated".to_vec());
        let r = j.compaction.compact(p, "2", || true).await.unwrap();
        assert_eq!(r, Outcome::Resumed { rows: 200 });
        assert_eq!(lake_rows(&j), before);
    }

    #[tokio::test]
    async fn a_scheduled_run_carries_on_a_plan_left_by_an_earlier_day() {
        let (j, p) = job();
        let before = lake_rows(&j);
        let mut budget = 1;
        j.compaction
            .compact(p, "old", || {
                budget -= 1;
                budget >= 0
            })
            .await
            .unwrap();
        // Ten days later the partition is out of the daily window, but its plan is not.
        let r = j.run(NOW + 10 * DAY_MS, || true).await.unwrap();
        assert!(
            r.partitions
                .contains(&(p.to_string(), Outcome::Resumed { rows: 200 })),
            "{r:?}"
        );
        assert_eq!(lake_rows(&j), before);
    }

    #[tokio::test]
    async fn a_large_partition_is_carried_over_runs_file_by_file() {
        let (mut j, p) = job();
        let before = lake_rows(&j);
        j.compaction.file_rows = 60; // four output files
        let mut budget = 2;
        let first = j
            .compaction
            .compact(p, "1", || {
                budget -= 1;
                budget >= 0
            })
            .await
            .unwrap();
        assert_eq!(first, Outcome::Interrupted);
        let o = &j.compaction.objects;
        let outputs = |o: &MemoryObjects| {
            o.keys(LAKE)
                .iter()
                .filter(|k| k.contains("compacted-"))
                .count()
        };
        assert_eq!(outputs(o), 2, "two of four files written");
        let second = j.compaction.compact(p, "2", || true).await.unwrap();
        assert_eq!(second, Outcome::Resumed { rows: 200 });
        assert_eq!(outputs(&j.compaction.objects), 4);
        assert_eq!(lake_rows(&j), before, "every reading exactly once");
    }

    #[tokio::test]
    async fn a_large_partition_becomes_files_of_disjoint_subject_ranges() {
        let (mut j, p) = job();
        let before = lake_rows(&j);
        // 8 subjects of 25 rows and files of at most 60 rows: ranges of 2 subjects.
        j.compaction.file_rows = 60;
        let r = j.compaction.compact(p, "1", || true).await.unwrap();
        assert_eq!(
            r,
            Outcome::Compacted {
                files_in: 5,
                files_out: 4,
                rows: 200
            }
        );
        assert_eq!(lake_rows(&j), before, "every reading exactly once");
        let o = &j.compaction.objects;
        let mut ranges = Vec::new();
        for k in o.keys(LAKE) {
            let rows = read_readings(o.get(LAKE, &k).unwrap(), Metric::Spo2).unwrap();
            let subjects: Vec<String> = rows.iter().map(|r| r.subject_id.to_string()).collect();
            assert!(
                subjects.windows(2).all(|w| w[0] <= w[1]),
                "sorted within a file"
            );
            ranges.push((subjects[0].clone(), subjects[subjects.len() - 1].clone()));
        }
        ranges.sort();
        assert!(
            ranges.windows(2).all(|w| w[0].1 < w[1].0),
            "files hold disjoint subject ranges: {ranges:?}"
        );
    }

    #[tokio::test]
    async fn a_day_larger_than_the_cache_is_read_once_into_spill_files_with_the_same_result() {
        let compacted = |cache_bytes: u64| async move {
            let (mut j, p) = job();
            j.compaction.file_rows = 60;
            j.compaction.cache_bytes = cache_bytes;
            let spill_dir = std::env::temp_dir().join(format!("spill-test-{cache_bytes}"));
            j.compaction.spill_dir = spill_dir.clone();
            let r = j.compaction.compact(p, "1", || true).await.unwrap();
            let o = &j.compaction.objects;
            let files: Vec<(String, bytes::Bytes)> = o
                .keys(LAKE)
                .into_iter()
                .map(|k| (k.clone(), o.get(LAKE, &k).unwrap()))
                .collect();
            let left = std::fs::read_dir(&spill_dir).map_or(0, |d| d.count());
            (r, files, left)
        };
        let (held, held_files, _) = compacted(compact::CACHE_BYTES).await;
        let (spilled, spilled_files, left) = compacted(0).await;
        assert_eq!(held, spilled);
        assert_eq!(spilled_files.len(), 4);
        assert_eq!(held_files, spilled_files, "the same files, byte for byte");
        assert_eq!(left, 0, "the spill files are removed");
    }

    #[tokio::test]
    async fn a_corrupt_file_or_a_subject_too_large_is_skipped_with_the_reason() {
        let (mut j, p) = job();
        j.compaction.max_rows = 20;
        let r = j.compaction.compact(p, "1", || true).await.unwrap();
        assert!(
            matches!(&r, Outcome::Skipped { why } if why.contains("one subject has 25 rows")),
            "{r:?}"
        );
        j.compaction.max_rows = 1_000_000;
        j.compaction.objects.insert(
            LAKE,
            &format!("readings/{p}/bad.parquet"),
            b"PAR1 junk".to_vec(),
        );
        let r = j.compaction.compact(p, "2", || true).await.unwrap();
        assert!(
            matches!(&r, Outcome::Skipped { why } if why.contains("bad.parquet")),
            "{r:?}"
        );
        assert_eq!(j.compaction.objects.keys(LAKE).len(), 6, "nothing deleted");
    }
}
