//! Ports implemented for references, so one adapter serves two components: the
//! partner API and the export worker over the same in-memory jobs and objects in a
//! test, or the same clients in the local harness.

use std::future::Future;

use crate::{
    AuditLog, AwsError, ErasureRequest, ErasureRequests, ExportJobs, Job, JobStatus, ObjectBody,
    ObjectReader, ObjectUploads, ObjectVersion, ObjectWriter, OnceClaims, OutputFile, Partner,
    Partners, Presigner, Secrets, VersionedObjects, WorkQueue,
};

impl<T: ExportJobs> ExportJobs for &T {
    fn start(
        &self,
        job: &Job,
        expires_at: i64,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send {
        (**self).start(job, expires_at)
    }
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<Job>, AwsError>> + Send {
        (**self).get(id)
    }
    fn finish_partition(
        &self,
        id: &str,
        partition: &str,
        files: &[OutputFile],
        now: i64,
    ) -> impl Future<Output = Result<Option<Job>, AwsError>> + Send {
        (**self).finish_partition(id, partition, files, now)
    }
    fn end(
        &self,
        job: &Job,
        from: &[JobStatus],
        to: JobStatus,
        error: Option<String>,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send {
        (**self).end(job, from, to, error)
    }
    fn count_quota(
        &self,
        client: &str,
        day: &str,
        limit: u32,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send {
        (**self).count_quota(client, day, limit)
    }
    fn worker_progress(&self) -> impl Future<Output = Result<Option<i64>, AwsError>> + Send {
        (**self).worker_progress()
    }
    fn outputs(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<String, Vec<OutputFile>>, AwsError>> + Send
    {
        (**self).outputs(id)
    }
    fn replace_outputs(
        &self,
        id: &str,
        partition: &str,
        files: &[OutputFile],
    ) -> impl Future<Output = Result<bool, AwsError>> + Send {
        (**self).replace_outputs(id, partition, files)
    }
}

impl<T: Partners> Partners for &T {
    fn get(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<Partner>, AwsError>> + Send {
        (**self).get(client_id)
    }
    fn put(&self, partner: &Partner) -> impl Future<Output = Result<bool, AwsError>> + Send {
        (**self).put(partner)
    }
    fn all(&self) -> impl Future<Output = Result<Vec<Partner>, AwsError>> + Send {
        (**self).all()
    }
}

impl<T: Secrets> Secrets for &T {
    fn current(
        &self,
        secret_id: &str,
    ) -> impl Future<Output = Result<(String, String), AwsError>> + Send {
        (**self).current(secret_id)
    }
    fn version(
        &self,
        secret_id: &str,
        version_id: &str,
    ) -> impl Future<Output = Result<String, AwsError>> + Send {
        (**self).version(secret_id, version_id)
    }
    fn current_version(
        &self,
        secret_id: &str,
    ) -> impl Future<Output = Result<String, AwsError>> + Send {
        (**self).current_version(secret_id)
    }
    fn versions(
        &self,
        secret_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send {
        (**self).versions(secret_id)
    }
}

impl<T: ObjectReader> ObjectReader for &T {
    fn open(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> impl Future<Output = Result<ObjectBody, AwsError>> + Send {
        (**self).open(bucket, key, version)
    }
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send {
        (**self).list(bucket, prefix)
    }
    fn any_under(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send {
        (**self).any_under(bucket, prefix)
    }
    fn list_dirs(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send {
        (**self).list_dirs(bucket, prefix)
    }
}

impl<T: ObjectWriter> ObjectWriter for &T {
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        (**self).put(bucket, key, body, content_type)
    }
    fn copy(
        &self,
        from_bucket: &str,
        from_key: &str,
        from_version: Option<&str>,
        to_bucket: &str,
        to_key: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        (**self).copy(from_bucket, from_key, from_version, to_bucket, to_key)
    }
    fn delete(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        (**self).delete(bucket, key, version)
    }
}

impl<T: AuditLog> AuditLog for &T {
    fn append(
        &self,
        kind: &str,
        at: i64,
        record: &serde_json::Value,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        (**self).append(kind, at, record)
    }
}

impl<T: ErasureRequests> ErasureRequests for &T {
    fn record(&self, r: &ErasureRequest) -> impl Future<Output = Result<bool, AwsError>> + Send {
        (**self).record(r)
    }
    fn all(&self) -> impl Future<Output = Result<Vec<ErasureRequest>, AwsError>> + Send {
        (**self).all()
    }
    fn complete(
        &self,
        subject_id: &str,
        at: i64,
        evidence: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        (**self).complete(subject_id, at, evidence)
    }
}

impl<T: Presigner> Presigner for &T {
    fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        valid_for: std::time::Duration,
    ) -> impl Future<Output = Result<String, AwsError>> + Send {
        (**self).presign_get(bucket, key, valid_for)
    }
}

impl<T: WorkQueue> WorkQueue for &T {
    fn send_for(
        &self,
        tenant: &str,
        bodies: &[String],
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        (**self).send_for(tenant, bodies)
    }
    fn send(&self, bodies: &[String]) -> impl Future<Output = Result<(), AwsError>> + Send {
        (**self).send(bodies)
    }
}

impl<T: OnceClaims> OnceClaims for &T {
    fn claim(
        &self,
        key: &str,
        expires_at: i64,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send {
        (**self).claim(key, expires_at)
    }
    fn held(&self, key: &str) -> impl Future<Output = Result<bool, AwsError>> + Send {
        (**self).held(key)
    }
}

impl<T: VersionedObjects> VersionedObjects for &T {
    fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<ObjectVersion>, AwsError>> + Send {
        (**self).list_versions(bucket, prefix)
    }
    fn delete_versions(
        &self,
        bucket: &str,
        versions: &[ObjectVersion],
    ) -> impl Future<Output = Result<Vec<(String, String)>, AwsError>> + Send {
        (**self).delete_versions(bucket, versions)
    }
    fn read_range(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<bytes::Bytes, AwsError>> + Send {
        (**self).read_range(bucket, key, version, start, end)
    }
    fn delete_if_current(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send {
        (**self).delete_if_current(bucket, key, etag)
    }
}

impl<T: ObjectUploads> ObjectUploads for &T {
    fn start_upload(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
    ) -> impl Future<Output = Result<String, AwsError>> + Send {
        (**self).start_upload(bucket, key, content_type)
    }
    fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<String, AwsError>> + Send {
        (**self).upload_part(bucket, key, upload_id, number, body)
    }
    fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
        if_match: &str,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send {
        (**self).complete_upload(bucket, key, upload_id, parts, if_match)
    }
    fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        (**self).abort_upload(bucket, key, upload_id)
    }
    fn put_if_match(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        if_match: &str,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send {
        (**self).put_if_match(bucket, key, body, content_type, if_match)
    }
}
