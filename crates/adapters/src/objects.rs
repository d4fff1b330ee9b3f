//! Objects in S3 buckets (quarantine reports, archives, lake files).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_s3::primitives::ByteStream;

use crate::error::AwsError;

/// Port: reading objects (an upload, lake files) and what is in a bucket.
pub trait ObjectReader: Send + Sync {
    /// Opens an object (a version of it, when given) for streaming.
    fn open(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> impl Future<Output = Result<ObjectBody, AwsError>> + Send;
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
    /// Whether any object's key starts with `prefix` (one cheap call, whatever the count).
    fn any_under(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    /// The "folders" right under `prefix` (common prefixes up to the next `/`).
    fn list_dirs(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
}

/// Port: writing objects (lake files, reports, archives) and removing them.
/// Encryption is the buckets' default (SSE-KMS with a bucket key), so writers need
/// not, and cannot forget to, ask for it.
pub trait ObjectWriter: Send + Sync {
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Server-side copy (the data never passes through the function).
    fn copy(
        &self,
        from_bucket: &str,
        from_key: &str,
        from_version: Option<&str>,
        to_bucket: &str,
        to_key: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Deletes an object (one version of it, when given).
    fn delete(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Port: short-lived download links (an export's files: the API audits the request and
/// redirects to one).
pub trait Presigner: Send + Sync {
    fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        valid_for: std::time::Duration,
    ) -> impl Future<Output = Result<String, AwsError>> + Send;
}

impl Presigner for S3Objects {
    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        valid_for: std::time::Duration,
    ) -> Result<String, AwsError> {
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(valid_for)
            .map_err(|e| AwsError::permanent("s3:GetObject", e.to_string()))?;
        let req = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| AwsError::from_sdk("s3:GetObject", e))?;
        Ok(req.uri().to_owned())
    }
}

impl Presigner for MemoryObjects {
    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        _valid_for: std::time::Duration,
    ) -> Result<String, AwsError> {
        Ok(format!("memory://{bucket}/{key}"))
    }
}

/// An object's content, streamed.
pub enum ObjectBody {
    S3(ByteStream),
    Memory(bytes::Bytes),
}

impl ObjectBody {
    /// The whole body in memory (a lake file to read with its footer).
    pub async fn bytes(self) -> Result<bytes::Bytes, AwsError> {
        match self {
            ObjectBody::Memory(b) => Ok(b),
            ObjectBody::S3(stream) => stream
                .collect()
                .await
                .map(|a| a.into_bytes())
                .map_err(|e| AwsError::transient("s3:GetObject", e.to_string())),
        }
    }

    /// The body as an `AsyncRead` (S3's stream, or the bytes in memory). Synchronous
    /// parsers read it through `tokio_util::io::SyncIoBridge` on a blocking thread.
    pub fn into_async_read(self) -> Box<dyn tokio::io::AsyncRead + Send + Unpin> {
        match self {
            ObjectBody::S3(stream) => Box::new(stream.into_async_read()),
            ObjectBody::Memory(b) => Box::new(std::io::Cursor::new(b)),
        }
    }
}

/// S3 object keys in a copy source are URL-encoded (`/` kept).
fn encode_key(key: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    utf8_percent_encode(key, KEEP).to_string()
}

/// The S3 adapter for [`ObjectReader`] and [`ObjectWriter`].
pub struct S3Objects {
    client: aws_sdk_s3::Client,
}

impl S3Objects {
    pub fn from_config(sdk: &aws_config::SdkConfig) -> S3Objects {
        S3Objects {
            client: crate::aws::s3_client(sdk),
        }
    }

    pub(crate) fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }
}

impl ObjectReader for S3Objects {
    async fn list_dirs(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, AwsError> {
        let mut dirs = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("s3:ListObjectsV2", e))?;
            dirs.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_owned)),
            );
        }
        Ok(dirs)
    }

    async fn open(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<ObjectBody, AwsError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("s3:GetObject", e))?;
        Ok(ObjectBody::S3(out.body))
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, AwsError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("s3:ListObjectsV2", e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        Ok(keys)
    }

    async fn any_under(&self, bucket: &str, prefix: &str) -> Result<bool, AwsError> {
        let page = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("s3:ListObjectsV2", e))?;
        Ok(!page.contents().is_empty())
    }
}

impl ObjectWriter for S3Objects {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), AwsError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("s3:PutObject", e))?;
        Ok(())
    }

    async fn copy(
        &self,
        from_bucket: &str,
        from_key: &str,
        from_version: Option<&str>,
        to_bucket: &str,
        to_key: &str,
    ) -> Result<(), AwsError> {
        let mut source = format!("{from_bucket}/{}", encode_key(from_key));
        if let Some(v) = from_version {
            source.push_str("?versionId=");
            source.push_str(&encode_key(v));
        }
        self.client
            .copy_object()
            .copy_source(source)
            .bucket(to_bucket)
            .key(to_key)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("s3:CopyObject", e))?;
        Ok(())
    }

    async fn delete(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<(), AwsError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("s3:DeleteObject", e))?;
        Ok(())
    }
}

/// In-memory buckets for [`ObjectReader`] and [`ObjectWriter`]: for unit tests and benchmarks.
#[derive(Default)]
pub struct MemoryObjects {
    buckets: Mutex<BTreeMap<(String, String), bytes::Bytes>>,
    /// Multipart uploads in progress: their parts by number.
    uploads: Mutex<BTreeMap<String, BTreeMap<i32, Vec<u8>>>>,
}

impl MemoryObjects {
    /// An object's ETag: a digest of its bytes, as S3's is for a single-part upload.
    pub fn etag(&self, bucket: &str, key: &str) -> Option<String> {
        use sha2::Digest;
        self.get(bucket, key)
            .map(|b| hex::encode(&sha2::Sha256::digest(&b)[..16]))
    }

    pub(crate) fn new_upload(&self) -> String {
        let mut u = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let id = format!("upload-{}", u.len() + 1 + fastrand::usize(..1_000_000));
        u.insert(id.clone(), BTreeMap::new());
        id
    }

    pub(crate) fn add_part(&self, upload: &str, number: i32, body: Vec<u8>) -> Option<String> {
        use sha2::Digest;
        let etag = hex::encode(&sha2::Sha256::digest(&body)[..16]);
        let mut u = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        u.get_mut(upload)?.insert(number, body);
        Some(etag)
    }

    /// Ends an upload: its parts joined in the order named (`None` when unknown).
    pub(crate) fn take_upload(&self, upload: &str, parts: &[(i32, String)]) -> Option<Vec<u8>> {
        let mut u = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let mut held = u.remove(upload)?;
        let mut body = Vec::new();
        for (n, _) in parts {
            body.extend(held.remove(n)?);
        }
        Some(body)
    }

    /// Uploads started and neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn insert(&self, bucket: &str, key: &str, body: impl Into<bytes::Bytes>) {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((bucket.into(), key.into()), body.into());
    }

    pub fn get(&self, bucket: &str, key: &str) -> Option<bytes::Bytes> {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(bucket.into(), key.into()))
            .cloned()
    }

    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        b.keys()
            .filter(|(bk, _)| bk == bucket)
            .map(|(_, k)| k.clone())
            .collect()
    }
}

impl ObjectReader for MemoryObjects {
    async fn list_dirs(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, AwsError> {
        let mut dirs: Vec<String> = self
            .keys(bucket)
            .into_iter()
            .filter_map(|k| {
                let rest = k.strip_prefix(prefix)?;
                let (dir, _) = rest.split_once('/')?;
                Some(format!("{prefix}{dir}/"))
            })
            .collect();
        dirs.dedup();
        Ok(dirs)
    }

    async fn open(
        &self,
        bucket: &str,
        key: &str,
        _version: Option<&str>,
    ) -> Result<ObjectBody, AwsError> {
        self.get(bucket, key)
            .map(ObjectBody::Memory)
            .ok_or_else(|| AwsError {
                operation: "s3:GetObject",
                retryable: false,
                code: Some("NoSuchKey".into()),
                message: key.into(),
            })
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, AwsError> {
        Ok(self
            .keys(bucket)
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect())
    }

    async fn any_under(&self, bucket: &str, prefix: &str) -> Result<bool, AwsError> {
        Ok(self.keys(bucket).iter().any(|k| k.starts_with(prefix)))
    }
}

impl ObjectWriter for MemoryObjects {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        _content_type: &str,
    ) -> Result<(), AwsError> {
        self.insert(bucket, key, body);
        Ok(())
    }

    async fn copy(
        &self,
        from_bucket: &str,
        from_key: &str,
        _v: Option<&str>,
        to_bucket: &str,
        to_key: &str,
    ) -> Result<(), AwsError> {
        let body = self
            .get(from_bucket, from_key)
            .ok_or_else(|| AwsError::permanent("s3:CopyObject", "NoSuchKey"))?;
        self.insert(to_bucket, to_key, body);
        Ok(())
    }

    async fn delete(
        &self,
        bucket: &str,
        key: &str,
        _version: Option<&str>,
    ) -> Result<(), AwsError> {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(bucket.into(), key.into()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_are_url_encoded_but_keep_slashes() {
        assert_eq!(encode_key("seed/P 1+x.csv"), "seed/P%201%2Bx.csv");
    }

    #[tokio::test]
    async fn a_memory_body_reads_back_whole() {
        use tokio::io::AsyncReadExt;
        let mut text = String::new();
        ObjectBody::Memory(bytes::Bytes::from_static(b"a,b\n1,2\n"))
            .into_async_read()
            .read_to_string(&mut text)
            .await
            .unwrap();
        assert_eq!(text, "a,b\n1,2\n");
    }
}
