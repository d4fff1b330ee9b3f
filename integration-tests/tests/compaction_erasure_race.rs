//! Compaction and erasure at once on the local stack's versioned lake (as deployed):
//! one job is paused at a chosen call, the other runs whole, then the first goes on.
//! Whatever the order, the lake ends with zero rows of the erased patient in any
//! version and every other row exactly once; and a pass that says "erased" is right
//! once compaction has settled. (Every order of the two jobs' steps is walked in
//! `lifecycle_interleavings.rs`; these are the named orders, on the real S3 API.)

use std::borrow::Cow;
use std::sync::Mutex;

use compaction::compact::{Compaction, Outcome};
use erasure::{Erasure, ErasureEvidence, ErasurePorts, FailureKind};
use pulselake_adapters::{
    AwsError, BucketAuditLog, DynamoErasures, ErasureRequest, ErasureRequests, MemoryErasurePasses,
    MemoryQueue, ObjectBody, ObjectReader, ObjectUploads, ObjectVersion, ObjectWriter, S3Objects,
    VersionedObjects,
};
use pulselake_domain::{Metric, Partition, Reading, ReadingId, Source};
use pulselake_lake::{FileLayout, encode_readings, read_readings};
use pulselake_local::{LocalPlatform, moto};
use tokio::sync::oneshot;

const AT: i64 = 1_795_305_600_000;
const GONE: &str = "subj-gone";

fn rows(subject: &str, n: i64, from: i64) -> Vec<Reading<'static>> {
    (from..from + n)
        .map(|i| Reading {
            reading_id: ReadingId::derive("dev-c", subject, Metric::HeartRate, AT + i),
            subject_id: Cow::Owned(subject.into()),
            device_id: Cow::Borrowed("dev-c"),
            sensor_id: Cow::Borrowed("s"),
            metric: Metric::HeartRate,
            value: 70.0,
            measured_at: AT + i,
            received_at: AT + i,
            source: Source::Stream,
            source_ref: Cow::Borrowed("shard:1"),
            cohort: None,
        })
        .collect()
}

/// S3, with one call held back: the first call `at` names stops, tells the test, and
/// goes on when the test says so.
struct Paused {
    inner: S3Objects,
    at: fn(&str, &str) -> bool,
    paused: Mutex<Option<oneshot::Sender<()>>>,
    resume: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

impl Paused {
    fn new(
        inner: S3Objects,
        at: fn(&str, &str) -> bool,
    ) -> (Paused, oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (paused_tx, paused_rx) = oneshot::channel();
        let (resume_tx, resume_rx) = oneshot::channel();
        let p = Paused {
            inner,
            at,
            paused: Mutex::new(Some(paused_tx)),
            resume: tokio::sync::Mutex::new(Some(resume_rx)),
        };
        (p, paused_rx, resume_tx)
    }

    async fn maybe_pause(&self, op: &str, key: &str) {
        if !(self.at)(op, key) {
            return;
        }
        let Some(tell) = self.paused.lock().unwrap().take() else {
            return;
        };
        let _ = tell.send(());
        if let Some(wait) = self.resume.lock().await.take() {
            let _ = wait.await;
        }
    }
}

impl ObjectReader for Paused {
    async fn open(&self, b: &str, k: &str, v: Option<&str>) -> Result<ObjectBody, AwsError> {
        self.inner.open(b, k, v).await
    }
    async fn list(&self, b: &str, p: &str) -> Result<Vec<String>, AwsError> {
        self.inner.list(b, p).await
    }
    async fn any_under(&self, b: &str, p: &str) -> Result<bool, AwsError> {
        self.inner.any_under(b, p).await
    }
    async fn list_dirs(&self, b: &str, p: &str) -> Result<Vec<String>, AwsError> {
        self.inner.list_dirs(b, p).await
    }
}

impl ObjectWriter for Paused {
    async fn put(&self, b: &str, k: &str, body: Vec<u8>, ct: &str) -> Result<(), AwsError> {
        self.maybe_pause("put", k).await;
        self.inner.put(b, k, body, ct).await
    }
    async fn copy(
        &self,
        fb: &str,
        fk: &str,
        fv: Option<&str>,
        tb: &str,
        tk: &str,
    ) -> Result<(), AwsError> {
        self.inner.copy(fb, fk, fv, tb, tk).await
    }
    async fn delete(&self, b: &str, k: &str, v: Option<&str>) -> Result<(), AwsError> {
        self.inner.delete(b, k, v).await
    }
}

impl VersionedObjects for Paused {
    async fn list_versions(&self, b: &str, p: &str) -> Result<Vec<ObjectVersion>, AwsError> {
        self.inner.list_versions(b, p).await
    }
    async fn delete_versions(
        &self,
        b: &str,
        v: &[ObjectVersion],
    ) -> Result<Vec<(String, String)>, AwsError> {
        self.inner.delete_versions(b, v).await
    }
    async fn read_range(
        &self,
        b: &str,
        k: &str,
        v: Option<&str>,
        start: u64,
        end: u64,
    ) -> Result<bytes::Bytes, AwsError> {
        self.inner.read_range(b, k, v, start, end).await
    }
    async fn delete_if_current(
        &self,
        b: &str,
        k: &str,
        etag: &str,
    ) -> Result<Option<String>, AwsError> {
        self.maybe_pause("delete_if_current", k).await;
        self.inner.delete_if_current(b, k, etag).await
    }
}

impl ObjectUploads for Paused {
    async fn start_upload(&self, b: &str, k: &str, ct: &str) -> Result<String, AwsError> {
        self.inner.start_upload(b, k, ct).await
    }
    async fn upload_part(
        &self,
        b: &str,
        k: &str,
        id: &str,
        n: i32,
        body: Vec<u8>,
    ) -> Result<String, AwsError> {
        self.inner.upload_part(b, k, id, n, body).await
    }
    async fn complete_upload(
        &self,
        b: &str,
        k: &str,
        id: &str,
        parts: &[(i32, String)],
        if_match: &str,
    ) -> Result<bool, AwsError> {
        self.maybe_pause("put_if_match", k).await;
        self.inner.complete_upload(b, k, id, parts, if_match).await
    }
    async fn abort_upload(&self, b: &str, k: &str, id: &str) -> Result<(), AwsError> {
        self.inner.abort_upload(b, k, id).await
    }
    async fn put_if_match(
        &self,
        b: &str,
        k: &str,
        body: Vec<u8>,
        ct: &str,
        if_match: &str,
    ) -> Result<bool, AwsError> {
        self.maybe_pause("put_if_match", k).await;
        self.inner.put_if_match(b, k, body, ct, if_match).await
    }
}

/// The erasure job on the local stack, its pass bookkeeping in memory.
struct LocalPorts<O>(std::marker::PhantomData<O>);

impl<O> ErasurePorts for LocalPorts<O>
where
    O: ObjectReader + ObjectWriter + VersionedObjects + ObjectUploads,
{
    type Objects = O;
    type Requests = DynamoErasures;
    type Audit = BucketAuditLog<S3Objects>;
    type Passes = MemoryErasurePasses;
    type Queue = MemoryQueue;
    type Jobs = pulselake_adapters::MemoryExportJobs;
    type Partners = pulselake_adapters::MemoryPartners;
    type Secrets = pulselake_adapters::MemorySecrets;
    type Alerts = pulselake_adapters::MemoryAlertStates;
    type Heartbeats = pulselake_adapters::MemoryHeartbeats;
}

struct World {
    platform: LocalPlatform,
    sdk: aws_config::SdkConfig,
    lake: String,
    others: Vec<ReadingId>,
}

fn part() -> Partition {
    Partition::of(Metric::HeartRate, AT)
}

/// A versioned lake with a day of two Firehose files, the patient in the first.
async fn world() -> World {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    let platform = LocalPlatform::start(None).await.unwrap();
    let s = &platform.stack;
    let lake = s.names.lake_bucket.clone();
    s.s3.put_bucket_versioning()
        .bucket(&lake)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mixed = [rows(GONE, 6, 0), rows("subj-ann", 6, 10)].concat();
    let plain = rows("subj-bea", 5, 100);
    let mut others: Vec<ReadingId> = mixed
        .iter()
        .chain(&plain)
        .filter(|r| r.subject_id != GONE)
        .map(|r| r.reading_id)
        .collect();
    others.sort();
    for (name, rows) in [("firehose-a", mixed), ("firehose-b", plain)] {
        let body = encode_readings(&rows, FileLayout::default()).unwrap();
        s.s3.put_object()
            .bucket(&lake)
            .key(format!("{}{name}.parquet", part().prefix()))
            .body(body.into())
            .send()
            .await
            .unwrap();
    }
    let sdk = moto::sdk_config_for(platform.function_endpoint()).await;
    DynamoErasures::from_config(&sdk, &s.names.erasure_table)
        .record(&ErasureRequest {
            subject_id: GONE.into(),
            aliases: Vec::new(),
            devices: Vec::new(),
            periods: Vec::new(),
            request_id: "erasure-race".into(),
            requested_by: "dpo@example.org".into(),
            reason: "GDPR Art. 17".into(),
            requested_at: AT,
            completed_at: None,
            evidence: None,
        })
        .await
        .unwrap();
    World {
        platform,
        sdk,
        lake,
        others,
    }
}

impl World {
    fn compaction<O>(&self, objects: O) -> Compaction<O> {
        Compaction {
            objects,
            lake_bucket: self.lake.clone(),
            max_rows: 1_000_000,
            file_rows: 1_000_000,
            cache_bytes: compaction::compact::CACHE_BYTES,
            spill_dir: std::env::temp_dir(),
        }
    }

    fn erasure<O>(&self, objects: O) -> Erasure<LocalPorts<O>>
    where
        O: ObjectReader + ObjectWriter + VersionedObjects + ObjectUploads,
    {
        let names = &self.platform.stack.names;
        Erasure {
            objects,
            requests: DynamoErasures::from_config(&self.sdk, &names.erasure_table),
            audit: BucketAuditLog {
                writer: S3Objects::from_config(&self.sdk),
                bucket: names.audit_bucket.clone(),
            },
            passes: MemoryErasurePasses::default(),
            queue: MemoryQueue::default(),
            lake_bucket: self.lake.clone(),
            copies: None,
            jobs: Default::default(),
            partners: Default::default(),
            secrets: Default::default(),
            exports_bucket: None,
            alerts: Default::default(),
            heartbeats: Default::default(),
            part_bytes: erasure::lake_file::PART_BYTES,
        }
    }

    fn s3(&self) -> S3Objects {
        S3Objects::from_config(&self.sdk)
    }

    /// Rows of the patient in any version, and the other rows of the current versions.
    async fn lake(&self) -> (usize, Vec<ReadingId>) {
        let s3 = self.s3();
        let mut gone = 0;
        let mut current = Vec::new();
        for v in self
            .s3()
            .list_versions(&self.lake, &part().prefix())
            .await
            .unwrap()
            .into_iter()
            .filter(|v| !v.delete_marker)
        {
            let body = s3
                .open(&self.lake, &v.key, v.version_id.as_deref())
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let rows = read_readings(body, Metric::HeartRate).unwrap();
            gone += rows.iter().filter(|r| r.subject_id == GONE).count();
            if v.latest {
                current.extend(rows.iter().map(|r| r.reading_id));
            }
        }
        current.sort();
        (gone, current)
    }

    /// Compaction alone until the day is compact; then, if a pass said erased, nothing
    /// of the patient may be left in any version.
    async fn settle(&self, said_erased: bool) {
        let c = self.compaction(self.s3());
        for run in 0..4 {
            let o = c
                .compact(part(), &format!("settle-{run}"), || true)
                .await
                .unwrap();
            if matches!(o, Outcome::AlreadyCompact | Outcome::Compacted { .. }) {
                break;
            }
        }
        if said_erased {
            assert_eq!(
                self.lake().await.0,
                0,
                "a pass said erased: nothing of the patient may be left"
            );
        }
    }

    /// One more erasure pass alone, compaction settled, then the lake as a whole: no
    /// version holds the patient and every other row is there exactly once.
    async fn finish(&self) {
        let ev = self
            .erasure(self.s3())
            .run(AT + erasure::pass::DELIVERY_HORIZON_MS + 10_000)
            .await
            .unwrap();
        assert!(ev.is_none_or(|e| e.completed), "a pass alone completes");
        self.settle(true).await;
        let (gone, current) = self.lake().await;
        assert_eq!(gone, 0, "no version holds the patient");
        assert_eq!(current, self.others, "every other row, exactly once");
    }
}

fn compacted(o: &Outcome) -> bool {
    matches!(o, Outcome::Compacted { .. } | Outcome::Resumed { .. })
}

fn said_erased(ev: &Option<ErasureEvidence>) -> bool {
    ev.as_ref().is_some_and(|e| e.completed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_while_compaction_holds_what_it_read_waits_and_nothing_is_undone() {
    let w = world().await;
    // Paused after reading every input, at the first output it writes.
    let (objects, paused, resume) =
        Paused::new(w.s3(), |op, key| op == "put" && key.contains("/compacted-"));
    let c = w.compaction(objects);
    let compacting = c.compact(part(), "race", || true);
    let meanwhile = async {
        paused.await.unwrap();
        let ev = w
            .erasure(w.s3())
            .run(AT + erasure::pass::DELIVERY_HORIZON_MS + 1)
            .await
            .unwrap();
        resume.send(()).unwrap();
        ev
    };
    let (outcome, ev) = tokio::join!(compacting, meanwhile);
    let outcome = outcome.unwrap();
    assert!(compacted(&outcome), "{outcome:?}");
    let ev = ev.unwrap();
    assert!(
        !ev.completed,
        "the compacted partition is left to the next pass: {ev:?}"
    );
    assert!(ev.failures.iter().any(|f| f.kind == FailureKind::Changed));
    w.settle(said_erased(&Some(ev))).await;
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_that_read_before_an_erasure_finishes_undoes_nothing_and_plans_again() {
    let w = world().await;
    // Paused after its first look at every input, before its plan exists.
    let (objects, paused, resume) =
        Paused::new(w.s3(), |op, key| op == "put" && key.ends_with("/plan.json"));
    let c = w.compaction(objects);
    let compacting = c.compact(part(), "race", || true);
    let meanwhile = async {
        paused.await.unwrap();
        let ev = w
            .erasure(w.s3())
            .run(AT + erasure::pass::DELIVERY_HORIZON_MS + 1)
            .await
            .unwrap();
        resume.send(()).unwrap();
        ev
    };
    let (outcome, ev) = tokio::join!(compacting, meanwhile);
    let outcome = outcome.unwrap();
    assert!(
        matches!(&outcome, Outcome::Skipped { why } if why.contains("changed since the plan")),
        "the input the erasure rewrote is not swapped out: {outcome:?}"
    );
    let ev = Some(ev.unwrap());
    assert!(said_erased(&ev), "{ev:?}");
    w.settle(true).await;
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_while_erasure_holds_its_rewrite_is_caught_by_the_pass() {
    let w = world().await;
    // Erasure paused after reading the patient's file, before it puts the rewrite.
    let (objects, paused, resume) = Paused::new(w.s3(), |op, key| {
        op == "put_if_match" && key.ends_with("firehose-a.parquet")
    });
    let e = w.erasure(objects);
    let erasing = e.run(AT + erasure::pass::DELIVERY_HORIZON_MS + 1);
    let meanwhile = async {
        paused.await.unwrap();
        let o = w
            .compaction(w.s3())
            .compact(part(), "race", || true)
            .await
            .unwrap();
        resume.send(()).unwrap();
        o
    };
    let (ev, outcome) = tokio::join!(erasing, meanwhile);
    assert!(compacted(&outcome), "{outcome:?}");
    let ev = ev.unwrap();
    // The rewrite over a file compaction swapped out is refused; the pass then finds the
    // compacted file in its next listing and erases the patient from it.
    let ev = ev.unwrap();
    assert!(
        ev.failures.iter().any(|f| f.kind == FailureKind::Changed),
        "{ev:?}"
    );
    assert!(ev.rows_removed >= 6, "{ev:?}");
    w.settle(ev.completed).await;
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_interrupted_between_its_puts_and_its_deletes_while_erasure_runs() {
    let w = world().await;
    let c = w.compaction(w.s3());
    // Out of time after the output, before the swap.
    let mut budget = 1;
    let first = c
        .compact(part(), "cut", || {
            budget -= 1;
            budget >= 0
        })
        .await
        .unwrap();
    assert_eq!(first, Outcome::Interrupted);
    let ev = w
        .erasure(w.s3())
        .run(AT + erasure::pass::DELIVERY_HORIZON_MS + 1)
        .await
        .unwrap()
        .unwrap();
    assert!(!ev.completed, "a partition with a plan waits: {ev:?}");
    let second = c.compact(part(), "cut-2", || true).await.unwrap();
    assert!(compacted(&second), "{second:?}");
    w.finish().await;
}
