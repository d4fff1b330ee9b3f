//! Erasure and a corrected re-upload at once, on a versioned lake bucket (as deployed):
//! after the pass has read and rewritten a file, and checked that it did not change,
//! file-ingest writes a new version of it, just before the pass puts its rewrite. The
//! put is conditional (If-Match on the ETag read) and S3 refuses it: the rewrite never
//! hides the correction; the pass leaves the file for the next pass and keeps the
//! request pending; the next pass erases the subject from the new version. Neither
//! change is lost, and no version of the file holds the subject in the end.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use erasure::{Erasure, ErasurePorts};
use pulselake_adapters::{
    AwsError, BucketAuditLog, DynamoErasures, ErasureRequest, ErasureRequests, MemoryErasurePasses,
    MemoryQueue, ObjectBody, ObjectReader, ObjectUploads, ObjectVersion, ObjectWriter, S3Objects,
    VersionedObjects,
};
use pulselake_domain::{Metric, Partition, Reading, ReadingId, Source};
use pulselake_lake::{FileLayout, encode_readings, read_readings};
use pulselake_local::{LocalPlatform, inspect, moto};

const AT: i64 = 1_795_305_600_000;

fn rows(subject: &str, n: i64, from: i64) -> Vec<Reading<'static>> {
    (from..from + n)
        .map(|i| Reading {
            reading_id: ReadingId::derive("dev-r", subject, Metric::HeartRate, AT + i),
            subject_id: Cow::Owned(subject.into()),
            device_id: Cow::Borrowed("dev-r"),
            sensor_id: Cow::Borrowed("s"),
            metric: Metric::HeartRate,
            value: 70.0,
            measured_at: AT + i,
            received_at: AT + i,
            source: Source::File,
            source_ref: Cow::Borrowed("csv"),
            cohort: None,
        })
        .collect()
}

/// The S3 adapter, with file-ingest writing `replacement` to `key` the first time the
/// pass puts a rewrite of it (after every check the pass makes itself).
/// The job on the local stack, its pass bookkeeping in memory (S3 is what races here);
/// `O` the lake's objects.
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

struct Racing {
    inner: S3Objects,
    bucket: String,
    key: String,
    replacement: Vec<u8>,
    fired: AtomicBool,
}

impl ObjectReader for Racing {
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

impl ObjectWriter for Racing {
    async fn put(&self, b: &str, k: &str, body: Vec<u8>, ct: &str) -> Result<(), AwsError> {
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

impl ObjectUploads for Racing {
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
        if k == self.key && !self.fired.swap(true, Ordering::SeqCst) {
            let correction = self.replacement.clone();
            self.inner
                .put(
                    &self.bucket,
                    k,
                    correction,
                    "application/vnd.apache.parquet",
                )
                .await?;
        }
        self.inner.put_if_match(b, k, body, ct, if_match).await
    }
}

impl VersionedObjects for Racing {
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
        self.inner.delete_if_current(b, k, etag).await
    }
}

/// The local stack with its lake bucket versioned, as deployed.
async fn versioned_lake() -> LocalPlatform {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    let p = LocalPlatform::start(None).await.unwrap();
    p.stack
        .s3
        .put_bucket_versioning()
        .bucket(&p.stack.names.lake_bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    p
}

/// A pending request to erase `subj-gone`.
async fn request_erasure(sdk: &aws_config::SdkConfig, table: &str, id: &str) -> DynamoErasures {
    let requests = DynamoErasures::from_config(sdk, table);
    requests
        .record(&ErasureRequest {
            subject_id: "subj-gone".into(),
            aliases: Vec::new(),
            devices: Vec::new(),
            periods: Vec::new(),
            request_id: id.into(),
            requested_by: "dpo".into(),
            reason: "Art. 17".into(),
            requested_at: AT,
            completed_at: None,
            evidence: None,
        })
        .await
        .unwrap();
    requests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replaced_during_the_rewrite_loses_neither_change() {
    let p = versioned_lake().await;
    let s = &p.stack;
    let lake = s.names.lake_bucket.clone();
    let part = Partition::of(Metric::HeartRate, AT);
    let key = format!("readings/{part}/upload-7.parquet");
    let first: Vec<_> = [rows("subj-gone", 5, 0), rows("subj-kept", 5, 100)].concat();
    let corrected: Vec<_> = [rows("subj-gone", 3, 200), rows("subj-new", 4, 300)].concat();
    let original = encode_readings(&first, FileLayout::default()).unwrap();
    s.s3.put_object()
        .bucket(&lake)
        .key(&key)
        .body(original.into())
        .send()
        .await
        .unwrap();

    // A file a corrected upload replaced earlier: deleted, its old version still there.
    let replaced = format!("readings/{part}/upload-3.parquet");
    let old = encode_readings(&rows("subj-gone", 2, 500), FileLayout::default()).unwrap();
    s.s3.put_object()
        .bucket(&lake)
        .key(&replaced)
        .body(old.into())
        .send()
        .await
        .unwrap();
    s.s3.delete_object()
        .bucket(&lake)
        .key(&replaced)
        .send()
        .await
        .unwrap();

    let sdk = moto::sdk_config_for(p.function_endpoint()).await;
    let requests = request_erasure(&sdk, &s.names.erasure_table, "erasure-race").await;
    let job: Erasure<LocalPorts<Racing>> = Erasure {
        objects: Racing {
            inner: S3Objects::from_config(&sdk),
            bucket: lake.clone(),
            key: key.clone(),
            replacement: encode_readings(&corrected, FileLayout::default()).unwrap(),
            fired: AtomicBool::new(false),
        },
        requests,
        audit: BucketAuditLog {
            writer: S3Objects::from_config(&sdk),
            bucket: s.names.audit_bucket.clone(),
        },
        // The pass's bookkeeping in memory: S3 is what races here.
        passes: MemoryErasurePasses::default(),
        queue: MemoryQueue::default(),
        lake_bucket: lake.clone(),
        copies: None,
        jobs: Default::default(),
        partners: Default::default(),
        secrets: Default::default(),
        exports_bucket: None,
        alerts: Default::default(),
        heartbeats: Default::default(),
        part_bytes: erasure::lake_file::PART_BYTES,
    };

    let raced = job
        .run(AT + erasure::pass::DELIVERY_HORIZON_MS + 1)
        .await
        .unwrap()
        .unwrap();
    assert!(
        job.objects.fired.load(Ordering::SeqCst),
        "the race happened"
    );
    assert!(!raced.completed, "{raced:?}");
    assert!(
        raced
            .failures
            .iter()
            .any(|f| f.kind == erasure::FailureKind::Changed),
        "{raced:?}"
    );
    let settled = job
        .run(AT + erasure::pass::DELIVERY_HORIZON_MS + 2)
        .await
        .unwrap()
        .unwrap();
    assert!(
        settled.completed && settled.verification.passed,
        "{settled:?}"
    );

    // The correction is the current file, without the subject.
    let current = read_readings(
        inspect::get_bytes(s, &lake, &key).await.unwrap(),
        Metric::HeartRate,
    )
    .unwrap();
    let subjects: BTreeSet<&str> = current.iter().map(|r| r.subject_id.as_ref()).collect();
    assert_eq!(
        subjects,
        BTreeSet::from(["subj-new"]),
        "file-ingest's change kept"
    );
    assert_eq!(current.len(), 4);
    // No version of the file holds the subject.
    let versions =
        s.s3.list_object_versions()
            .bucket(&lake)
            .prefix(&key)
            .send()
            .await
            .unwrap();
    for v in versions.versions() {
        let body =
            s.s3.get_object()
                .bucket(&lake)
                .key(&key)
                .version_id(v.version_id().unwrap())
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes();
        let rows = read_readings(body, Metric::HeartRate).unwrap();
        assert!(
            rows.iter().all(|r| r.subject_id != "subj-gone"),
            "{:?}",
            v.version_id()
        );
    }
}

/// A file larger than a part leaves as a multipart upload, completed over the version
/// read; on the local S3 the new version reads back as every other row, in order, and
/// no upload is left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_larger_than_a_part_is_rewritten_by_a_multipart_upload() {
    let p = versioned_lake().await;
    let s = &p.stack;
    let lake = s.names.lake_bucket.clone();
    let part = Partition::of(Metric::HeartRate, AT);
    let key = format!("readings/{part}/firehose-1.parquet");
    // Arrival order: every row group holds both subjects, so every group is rewritten.
    let mut all: Vec<_> = [rows("subj-gone", 200_000, 0), rows("subj-kept", 200_000, 0)].concat();
    all.sort_by_key(|r| r.measured_at);
    let file = encode_readings(&all, FileLayout::default()).unwrap();
    assert!(
        file.len() > 2 * pulselake_adapters::MIN_PART,
        "{} bytes",
        file.len()
    );
    s.s3.put_object()
        .bucket(&lake)
        .key(&key)
        .body(file.into())
        .send()
        .await
        .unwrap();
    let sdk = moto::sdk_config_for(p.function_endpoint()).await;
    let requests = request_erasure(&sdk, &s.names.erasure_table, "erasure-big").await;
    let job: Erasure<LocalPorts<S3Objects>> = Erasure {
        objects: S3Objects::from_config(&sdk),
        requests,
        audit: BucketAuditLog {
            writer: S3Objects::from_config(&sdk),
            bucket: s.names.audit_bucket.clone(),
        },
        // The pass's bookkeeping in memory: S3 is what races here.
        passes: MemoryErasurePasses::default(),
        queue: MemoryQueue::default(),
        lake_bucket: lake.clone(),
        copies: None,
        jobs: Default::default(),
        partners: Default::default(),
        secrets: Default::default(),
        exports_bucket: None,
        alerts: Default::default(),
        heartbeats: Default::default(),
        part_bytes: pulselake_adapters::MIN_PART,
    };
    let ev = job
        .run(AT + erasure::pass::DELIVERY_HORIZON_MS + 1)
        .await
        .unwrap()
        .unwrap();
    assert!(ev.completed && ev.verification.passed, "{ev:?}");
    assert_eq!(ev.rows_removed, 200_000);
    let current = read_readings(
        inspect::get_bytes(s, &lake, &key).await.unwrap(),
        Metric::HeartRate,
    )
    .unwrap();
    let expected: Vec<_> = all
        .into_iter()
        .filter(|r| r.subject_id != "subj-gone")
        .collect();
    assert!(current == expected, "every other row, in order");
    let versions =
        s.s3.list_object_versions()
            .bucket(&lake)
            .prefix(&key)
            .send()
            .await
            .unwrap();
    assert_eq!(versions.versions().len(), 1, "the old version is gone");
    let open =
        s.s3.list_multipart_uploads()
            .bucket(&lake)
            .send()
            .await
            .unwrap();
    assert!(open.uploads().is_empty(), "no upload left open");
}
