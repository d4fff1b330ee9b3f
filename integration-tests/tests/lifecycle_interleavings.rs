//! Compaction and erasure on one partition of a versioned lake, in every order their
//! steps can take. The real jobs run over one in-memory versioned bucket; each of them
//! stops before every write or delete it makes (and erasure before every listing it
//! decides by), and a scheduler picks which one goes on. A depth-first walk over those
//! choices runs every interleaving, each from a fresh lake. After each, the jobs are
//! left to settle (compaction's plan carried out or undone, one more erasure pass) and
//! the lake must hold every other patient's row exactly once and none of the erased
//! patient's, in any version; and whenever a pass said "erased", nothing of the patient
//! may be found once compaction has settled, before any further pass.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Mutex;

use bytes::Bytes;
use compaction::compact::{Compaction, Outcome};
use erasure::{Erasure, ErasureEvidence, ErasurePorts};
use pulselake_adapters::{
    AwsError, ErasureRequest, ErasureRequests, MemoryAuditLog, MemoryErasurePasses, MemoryErasures,
    MemoryQueue, MemoryVersioned, ObjectBody, ObjectReader, ObjectUploads, ObjectVersion,
    ObjectWriter, VersionedObjects,
};
use pulselake_domain::{Metric, Partition, Reading, ReadingId, Source};
use pulselake_lake::{FileLayout, encode_readings, read_readings};
use tokio::sync::Notify;

const LAKE: &str = "lake";
const AT: i64 = 1_795_305_600_000;
const COMPACTION: usize = 0;
const ERASURE: usize = 1;
const GONE: &str = "subj-bob";

// ---------------------------------------------------------------- the scheduler

#[derive(Default)]
struct State {
    /// The choices to make at the branching points of this run, in order.
    prefix: Vec<usize>,
    /// (choice made, options) at each branching point so far.
    taken: Vec<(usize, usize)>,
    waiting: [bool; 2],
    done: [bool; 2],
    granted: Option<usize>,
    /// What each job did at its stops, in order (shown when an interleaving fails).
    log: Vec<String>,
}

/// Lets one job run at a time, from one stop to the next, in the order the choices say.
#[derive(Default)]
struct Scheduler {
    state: Mutex<State>,
    wake: [Notify; 2],
}

impl Scheduler {
    fn with_prefix(prefix: Vec<usize>) -> Scheduler {
        let s = Scheduler::default();
        s.lock().prefix = prefix;
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Picks who goes on once every job still running is stopped.
    fn decide(&self, st: &mut State) {
        if st.granted.is_some() {
            return;
        }
        let active: Vec<usize> = (0..2).filter(|r| !st.done[*r]).collect();
        if active.is_empty() || active.iter().any(|r| !st.waiting[*r]) {
            return;
        }
        let pick = if active.len() == 1 {
            active[0]
        } else {
            let i = st.taken.len();
            let choice = st.prefix.get(i).copied().unwrap_or(0);
            st.taken.push((choice, active.len()));
            active[choice]
        };
        st.granted = Some(pick);
        self.wake[pick].notify_one();
    }

    async fn stop_at(&self, role: usize, what: String) {
        self.stop(role).await;
        let who = ["compaction", "erasure"][role];
        self.lock().log.push(format!("{who}: {what}"));
    }

    fn log(&self) -> String {
        self.lock().log.join("\n  ")
    }

    async fn stop(&self, role: usize) {
        {
            let mut st = self.lock();
            st.waiting[role] = true;
            self.decide(&mut st);
        }
        loop {
            let woken = self.wake[role].notified();
            {
                let mut st = self.lock();
                if st.granted == Some(role) {
                    st.granted = None;
                    st.waiting[role] = false;
                    return;
                }
            }
            woken.await;
        }
    }

    fn finish(&self, role: usize) {
        let mut st = self.lock();
        st.done[role] = true;
        st.waiting[role] = false;
        self.decide(&mut st);
    }

    /// The choices of the next interleaving after this one (`None`: all were run).
    fn next_prefix(&self) -> Option<Vec<usize>> {
        let taken = &self.lock().taken;
        let i = taken.iter().rposition(|(c, n)| c + 1 < *n)?;
        let mut next: Vec<usize> = taken[..i].iter().map(|(c, _)| *c).collect();
        next.push(taken[i].0 + 1);
        Some(next)
    }
}

/// One job's view of the shared bucket: it stops before each write or delete (and, for
/// erasure, before each listing).
struct Stepped<'a> {
    inner: &'a MemoryVersioned,
    scheduler: &'a Scheduler,
    role: usize,
}

impl Stepped<'_> {
    async fn write_point(&self, what: String) {
        self.scheduler.stop_at(self.role, what).await;
    }

    async fn read_point(&self, what: String) {
        if self.role == ERASURE {
            self.scheduler.stop_at(self.role, what).await;
        }
    }
}

impl ObjectReader for Stepped<'_> {
    async fn open(&self, b: &str, k: &str, v: Option<&str>) -> Result<ObjectBody, AwsError> {
        self.inner.open(b, k, v).await
    }
    async fn list(&self, b: &str, p: &str) -> Result<Vec<String>, AwsError> {
        self.inner.list(b, p).await
    }
    async fn any_under(&self, b: &str, p: &str) -> Result<bool, AwsError> {
        // The look for a compaction plan decides; the final check's looks for
        // partitions of recent days do not (they only find where to read).
        if p.starts_with(pulselake_domain::partition::COMPACTION_PLANS_PREFIX) {
            self.read_point(format!("any under {p}")).await;
        }
        self.inner.any_under(b, p).await
    }
    async fn list_dirs(&self, b: &str, p: &str) -> Result<Vec<String>, AwsError> {
        self.inner.list_dirs(b, p).await
    }
}

impl ObjectWriter for Stepped<'_> {
    async fn put(&self, b: &str, k: &str, body: Vec<u8>, ct: &str) -> Result<(), AwsError> {
        self.write_point(format!("put {k}")).await;
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
        self.write_point(format!("copy to {tk}")).await;
        self.inner.copy(fb, fk, fv, tb, tk).await
    }
    async fn delete(&self, b: &str, k: &str, v: Option<&str>) -> Result<(), AwsError> {
        self.write_point(format!("delete {k} {v:?}")).await;
        self.inner.delete(b, k, v).await
    }
}

impl VersionedObjects for Stepped<'_> {
    async fn list_versions(&self, b: &str, p: &str) -> Result<Vec<ObjectVersion>, AwsError> {
        self.read_point(format!("list versions {p}")).await;
        self.inner.list_versions(b, p).await
    }
    async fn delete_versions(
        &self,
        b: &str,
        v: &[ObjectVersion],
    ) -> Result<Vec<(String, String)>, AwsError> {
        let names: Vec<String> = v
            .iter()
            .map(|x| format!("{}@{:?}", x.key, x.version_id))
            .collect();
        self.write_point(format!("delete versions {names:?}")).await;
        self.inner.delete_versions(b, v).await
    }
    async fn read_range(
        &self,
        b: &str,
        k: &str,
        v: Option<&str>,
        start: u64,
        end: u64,
    ) -> Result<Bytes, AwsError> {
        self.inner.read_range(b, k, v, start, end).await
    }
    async fn delete_if_current(
        &self,
        b: &str,
        k: &str,
        etag: &str,
    ) -> Result<Option<String>, AwsError> {
        self.write_point(format!("delete if current {k}")).await;
        self.inner.delete_if_current(b, k, etag).await
    }
}

impl ObjectUploads for Stepped<'_> {
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
        self.write_point(format!("complete upload {k}")).await;
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
        self.write_point(format!("put if match {k}")).await;
        self.inner.put_if_match(b, k, body, ct, if_match).await
    }
}

// ---------------------------------------------------------------- the lake and the jobs

struct On<O>(std::marker::PhantomData<O>);

impl<O> ErasurePorts for On<O>
where
    O: ObjectReader + ObjectWriter + VersionedObjects + ObjectUploads,
{
    type Objects = O;
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

fn partition() -> Partition {
    Partition::of(Metric::HeartRate, AT)
}

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

/// The day as Firehose left it: two files in arrival order, the patient in one of them.
fn lake_files() -> Vec<(String, Vec<u8>)> {
    let p = partition();
    let mixed: Vec<_> = (0..6)
        .map(|i| row(["subj-ann", GONE, "subj-cy"][i as usize % 3], i))
        .collect();
    let others: Vec<_> = (0..4).map(|i| row("subj-dee", 100 + i)).collect();
    [("firehose-a", mixed), ("firehose-b", others)]
        .into_iter()
        .map(|(n, rows)| {
            let body = encode_readings(&rows, FileLayout::default()).unwrap();
            (format!("{}{n}.parquet", p.prefix()), body)
        })
        .collect()
}

fn the_others() -> Vec<ReadingId> {
    let mut ids: Vec<ReadingId> = lake_files()
        .iter()
        .flat_map(|(_, b)| read_readings(Bytes::from(b.clone()), Metric::HeartRate).unwrap())
        .filter(|r| r.subject_id != GONE)
        .map(|r| r.reading_id)
        .collect();
    ids.sort();
    ids
}

fn compaction<O>(objects: O) -> Compaction<O> {
    Compaction {
        objects,
        lake_bucket: LAKE.into(),
        max_rows: 1_000_000,
        file_rows: 1_000_000,
        cache_bytes: compaction::compact::CACHE_BYTES,
        spill_dir: std::env::temp_dir(),
    }
}

fn erasure<O>(objects: O, requests: MemoryErasures) -> Erasure<On<O>>
where
    O: ObjectReader + ObjectWriter + VersionedObjects + ObjectUploads,
{
    Erasure {
        objects,
        requests,
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
        part_bytes: 16 << 20,
    }
}

async fn requested() -> MemoryErasures {
    let requests = MemoryErasures::default();
    requests
        .record(&ErasureRequest {
            subject_id: GONE.into(),
            aliases: Vec::new(),
            devices: Vec::new(),
            periods: Vec::new(),
            request_id: "req-bob".into(),
            requested_by: "dpo@example.org".into(),
            reason: "GDPR Art. 17".into(),
            requested_at: AT,
            completed_at: None,
            evidence: None,
        })
        .await
        .unwrap();
    requests
}

/// Rows of every version in the lake (`current`: the current versions only).
fn rows_in(lake: &MemoryVersioned, current: bool) -> Vec<Reading<'static>> {
    let p = partition();
    let bodies: Vec<Bytes> = if current {
        lake.keys(LAKE, &p.prefix())
            .iter()
            .filter_map(|k| lake.get(LAKE, k))
            .collect()
    } else {
        lake.all_versions(LAKE, &p.prefix())
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    };
    bodies
        .into_iter()
        .flat_map(|b| read_readings(b, Metric::HeartRate).unwrap_or_default())
        .collect()
}

/// Compaction left to finish (a plan carried out or undone), alone.
async fn settle_compaction(lake: &MemoryVersioned) {
    let c = compaction(lake);
    for run in 0..4 {
        let outcome = c
            .compact(partition(), &format!("settle{run}"), || true)
            .await
            .unwrap();
        if matches!(outcome, Outcome::AlreadyCompact | Outcome::Compacted { .. }) {
            let plan = partition().compaction_plan_key();
            assert!(!lake.keys(LAKE, &plan).contains(&plan));
            return;
        }
    }
    panic!("compaction did not settle");
}

/// One interleaving: what the concurrent pass said, and whether the lake held up.
struct Run {
    evidence: Option<ErasureEvidence>,
    compaction: Result<Outcome, AwsError>,
}

async fn interleaving(prefix: Vec<usize>) -> (Run, Scheduler, MemoryVersioned) {
    let lake = MemoryVersioned::default();
    for (k, b) in lake_files() {
        lake.insert(LAKE, &k, b);
    }
    let scheduler = Scheduler::with_prefix(prefix);
    let requests = requested().await;
    let (c, e) = {
        let c = compaction(Stepped {
            inner: &lake,
            scheduler: &scheduler,
            role: COMPACTION,
        });
        let e = erasure(
            Stepped {
                inner: &lake,
                scheduler: &scheduler,
                role: ERASURE,
            },
            requests,
        );
        let compact = async {
            let out = c.compact(partition(), "race", || true).await;
            scheduler.finish(COMPACTION);
            out
        };
        let erase = async {
            let out = e.run(AT + erasure::pass::DELIVERY_HORIZON_MS + 1_000).await;
            scheduler.finish(ERASURE);
            out
        };
        tokio::join!(compact, erase)
    };
    let evidence = e.map_err(|x| x.to_string()).unwrap_or(None);
    (
        Run {
            evidence,
            compaction: c,
        },
        scheduler,
        lake,
    )
}

#[tokio::test(flavor = "current_thread")]
async fn compaction_and_erasure_in_every_order_lose_nothing_and_leave_nothing_of_the_patient() {
    let others = the_others();
    let mut prefix = Vec::new();
    let (mut runs, mut erased_at_once, mut deferred) = (0, 0, 0);
    let mut outcomes = BTreeSet::new();
    loop {
        let (run, scheduler, lake) = interleaving(prefix.clone()).await;
        runs += 1;
        outcomes.insert(match &run.compaction {
            Ok(o) => format!("{o:?}")
                .split([' ', '{', '('])
                .next()
                .unwrap()
                .to_owned(),
            Err(_) => "Err".into(),
        });
        settle_compaction(&lake).await;
        let said_erased = run.evidence.as_ref().is_some_and(|ev| ev.completed);
        if said_erased {
            erased_at_once += 1;
            let left = rows_in(&lake, false)
                .iter()
                .filter(|r| r.subject_id == GONE)
                .count();
            assert_eq!(
                left,
                0,
                "the pass said erased, yet the lake holds the patient (choices {prefix:?}; compaction {:?})\n  {}",
                run.compaction,
                scheduler.log()
            );
        } else {
            deferred += 1;
        }
        // The next pass finishes what this one could not.
        let requests = MemoryErasures::default();
        if !said_erased {
            let r = requested().await;
            requests.record(&r.all().await.unwrap()[0]).await.unwrap();
        }
        let again = erasure(&lake, requests)
            .run(AT + erasure::pass::DELIVERY_HORIZON_MS + 2_000)
            .await
            .unwrap();
        assert!(
            again.as_ref().is_none_or(|ev| ev.completed),
            "a pass alone completes (choices {prefix:?}): {again:?}"
        );
        settle_compaction(&lake).await;
        let everything = rows_in(&lake, false);
        assert!(
            everything.iter().all(|r| r.subject_id != GONE),
            "choices {prefix:?}: a version still holds the patient"
        );
        let mut current: Vec<ReadingId> =
            rows_in(&lake, true).iter().map(|r| r.reading_id).collect();
        current.sort();
        assert_eq!(
            current, others,
            "choices {prefix:?}: every other row, exactly once"
        );
        match scheduler.next_prefix() {
            Some(next) => prefix = next,
            None => break,
        }
    }
    assert!(runs > 100, "only {runs} interleavings");
    assert!(
        erased_at_once > 0 && deferred > 0,
        "both outcomes happen: {erased_at_once} erased at once, {deferred} left to the next pass"
    );
    eprintln!(
        "{runs} interleavings: {erased_at_once} erased at once, {deferred} left to the next pass; compaction ended {outcomes:?}"
    );
}
