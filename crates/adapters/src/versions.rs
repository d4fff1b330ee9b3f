//! Every version of the objects under a prefix, and their permanent removal: what the
//! retention job needs of a versioned bucket (a plain delete would only add a delete
//! marker and keep the data).

use std::future::Future;

use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use crate::error::AwsError;
use crate::objects::{MemoryObjects, ObjectReader, ObjectWriter, S3Objects};

/// One version of an object, or a delete marker (`size` 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: String,
    /// `None` in a bucket that was never versioned.
    pub version_id: Option<String>,
    pub size: u64,
    /// The current version of its key (a delete marker may be current too).
    pub latest: bool,
    pub delete_marker: bool,
    /// The version's ETag (a conditional write names it); `None` for a delete marker.
    pub etag: Option<String>,
}

/// S3 deletes at most this many versions per call.
pub const DELETE_BATCH: usize = 1000;

/// Port: listing and permanently deleting object versions.
pub trait VersionedObjects: Send + Sync {
    /// Every version and delete marker under `prefix`.
    fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<ObjectVersion>, AwsError>> + Send;

    /// Deletes the given versions (at most [`DELETE_BATCH`]); returns the keys S3 could
    /// not delete, with its error code.
    fn delete_versions(
        &self,
        bucket: &str,
        versions: &[ObjectVersion],
    ) -> impl Future<Output = Result<Vec<(String, String)>, AwsError>> + Send;

    /// Bytes `start..=end` of one version of an object (a Parquet footer, without the
    /// file).
    fn read_range(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<bytes::Bytes, AwsError>> + Send;

    /// Deletes `key` only while its current version's ETag is `etag` (S3's conditional
    /// delete, `If-Match`): in a versioned bucket a delete marker goes on top of that
    /// version, whose id is returned (`Some("")` where the bucket is unversioned).
    /// `Ok(None)` when the key changed or is gone: nothing was deleted.
    fn delete_if_current(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
}

impl VersionedObjects for S3Objects {
    async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectVersion>, AwsError> {
        const OP: &str = "s3:ListObjectVersions";
        let mut out = Vec::new();
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client()
                .list_object_versions()
                .bucket(bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(OP, e))?;
            let version =
                |key: Option<&str>, id: Option<&str>, latest: Option<bool>| ObjectVersion {
                    key: key.unwrap_or_default().to_owned(),
                    version_id: id.filter(|v| *v != "null").map(str::to_owned),
                    size: 0,
                    latest: latest == Some(true),
                    delete_marker: false,
                    etag: None,
                };
            out.extend(page.versions().iter().map(|v| ObjectVersion {
                size: v.size().unwrap_or(0).max(0) as u64,
                etag: v.e_tag().map(str::to_owned),
                ..version(v.key(), v.version_id(), v.is_latest())
            }));
            out.extend(page.delete_markers().iter().map(|m| ObjectVersion {
                delete_marker: true,
                ..version(m.key(), m.version_id(), m.is_latest())
            }));
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
        }
    }

    async fn delete_versions(
        &self,
        bucket: &str,
        versions: &[ObjectVersion],
    ) -> Result<Vec<(String, String)>, AwsError> {
        const OP: &str = "s3:DeleteObjects";
        if versions.is_empty() {
            return Ok(Vec::new());
        }
        if versions.len() > DELETE_BATCH {
            return Err(AwsError::permanent(
                OP,
                "more than 1,000 versions in one call",
            ));
        }
        let objects = versions
            .iter()
            .map(|v| {
                ObjectIdentifier::builder()
                    .key(&v.key)
                    .set_version_id(v.version_id.clone())
                    .build()
                    .map_err(|e| AwsError::permanent(OP, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| AwsError::permanent(OP, e.to_string()))?;
        let out = self
            .client()
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        Ok(out
            .errors()
            .iter()
            .map(|e| {
                (
                    e.key().unwrap_or_default().to_owned(),
                    e.code().unwrap_or("Unknown").to_owned(),
                )
            })
            .collect())
    }

    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        start: u64,
        end: u64,
    ) -> Result<bytes::Bytes, AwsError> {
        self.range_of(bucket, key, version, start, end).await
    }

    async fn delete_if_current(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> Result<Option<String>, AwsError> {
        const OP: &str = "s3:DeleteObject";
        let out = self
            .client()
            .delete_object()
            .bucket(bucket)
            .key(key)
            .if_match(etag)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e));
        match out {
            Ok(o) => Ok(Some(o.version_id().unwrap_or_default().to_owned())),
            Err(e) if crate::uploads::changed(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl S3Objects {
    async fn range_of(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        start: u64,
        end: u64,
    ) -> Result<bytes::Bytes, AwsError> {
        const OP: &str = "s3:GetObject";
        let out = self
            .client()
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .range(format!("bytes={start}-{end}"))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        Ok(out
            .body
            .collect()
            .await
            .map_err(|e| AwsError::transient(OP, e.to_string()))?
            .into_bytes())
    }
}

/// The in-memory bucket is unversioned: one version per key.
impl VersionedObjects for MemoryObjects {
    async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectVersion>, AwsError> {
        Ok(self
            .list(bucket, prefix)
            .await?
            .into_iter()
            .map(|key| ObjectVersion {
                size: self.get(bucket, &key).map_or(0, |b| b.len() as u64),
                etag: self.etag(bucket, &key),
                key,
                version_id: None,
                latest: true,
                delete_marker: false,
            })
            .collect())
    }

    async fn delete_versions(
        &self,
        bucket: &str,
        versions: &[ObjectVersion],
    ) -> Result<Vec<(String, String)>, AwsError> {
        for v in versions {
            self.delete(bucket, &v.key, None).await?;
        }
        Ok(Vec::new())
    }

    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        _version: Option<&str>,
        start: u64,
        end: u64,
    ) -> Result<bytes::Bytes, AwsError> {
        let body = self
            .get(bucket, key)
            .ok_or_else(|| AwsError::permanent("s3:GetObject", "NoSuchKey"))?;
        let end = (end as usize + 1).min(body.len());
        Ok(body.slice((start as usize).min(end)..end))
    }

    async fn delete_if_current(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> Result<Option<String>, AwsError> {
        if self.etag(bucket, key).as_deref() != Some(etag.trim_matches('"')) {
            return Ok(None);
        }
        self.delete(bucket, key, None).await?;
        Ok(Some(String::new()))
    }
}
