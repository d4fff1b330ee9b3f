//! Objects written in parts (a file too large to hold in memory: a multipart upload),
//! and conditional writes: an object replaced only if it is still the version that was
//! read (S3's `If-Match` on PutObject and CompleteMultipartUpload).

use std::future::Future;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::error::AwsError;
use crate::objects::{MemoryObjects, S3Objects};

/// S3's smallest part (all but the last).
pub const MIN_PART: usize = 5 << 20;

/// Port: multipart uploads and conditional puts.
pub trait ObjectUploads: Send + Sync {
    /// Starts a multipart upload; its id.
    fn start_upload(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
    ) -> impl Future<Output = Result<String, AwsError>> + Send;
    /// Uploads part `number` (1-based; every part but the last at least [`MIN_PART`]);
    /// its ETag.
    fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<String, AwsError>> + Send;
    /// Completes the upload, only if the object's current ETag is `if_match`:
    /// `Ok(false)` (nothing written) when it changed meanwhile.
    fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
        if_match: &str,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    /// Abandons an upload (its parts are deleted).
    fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Puts an object only if its current ETag is `if_match`: `Ok(false)` (nothing
    /// written) when it changed meanwhile.
    fn put_if_match(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        if_match: &str,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
}

/// A precondition that did not hold (412), a concurrent conditional write (409), or
/// no current object to match (404: deleted since it was read).
pub(crate) fn changed(e: &AwsError) -> bool {
    matches!(
        e.code.as_deref(),
        Some("PreconditionFailed" | "ConditionalRequestConflict" | "NoSuchKey")
    )
}

impl ObjectUploads for S3Objects {
    async fn start_upload(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
    ) -> Result<String, AwsError> {
        const OP: &str = "s3:CreateMultipartUpload";
        let out = self
            .client()
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| AwsError::permanent(OP, "no upload id"))
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
    ) -> Result<String, AwsError> {
        const OP: &str = "s3:UploadPart";
        let out = self
            .client()
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        out.e_tag()
            .map(str::to_owned)
            .ok_or_else(|| AwsError::permanent(OP, "no ETag"))
    }

    async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
        if_match: &str,
    ) -> Result<bool, AwsError> {
        const OP: &str = "s3:CompleteMultipartUpload";
        let parts = parts
            .iter()
            .map(|(n, etag)| CompletedPart::builder().part_number(*n).e_tag(etag).build())
            .collect();
        let out = self
            .client()
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .if_match(if_match)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e));
        match out {
            Ok(_) => Ok(true),
            Err(e) if changed(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(), AwsError> {
        self.client()
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("s3:AbortMultipartUpload", e))?;
        Ok(())
    }

    async fn put_if_match(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        if_match: &str,
    ) -> Result<bool, AwsError> {
        let out = self
            .client()
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .if_match(if_match)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("s3:PutObject", e));
        match out {
            Ok(_) => Ok(true),
            Err(e) if changed(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// In memory: parts kept until completed; ETags are [`MemoryObjects::etag`]s.
impl ObjectUploads for MemoryObjects {
    async fn start_upload(&self, _b: &str, _k: &str, _ct: &str) -> Result<String, AwsError> {
        Ok(self.new_upload())
    }

    async fn upload_part(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
    ) -> Result<String, AwsError> {
        self.add_part(upload_id, number, body)
            .ok_or_else(|| AwsError::permanent("s3:UploadPart", "NoSuchUpload"))
    }

    async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
        if_match: &str,
    ) -> Result<bool, AwsError> {
        let body = self
            .take_upload(upload_id, parts)
            .ok_or_else(|| AwsError::permanent("s3:CompleteMultipartUpload", "InvalidPart"))?;
        if self.etag(bucket, key).as_deref() != Some(if_match) {
            return Ok(false);
        }
        self.insert(bucket, key, body);
        Ok(true)
    }

    async fn abort_upload(&self, _b: &str, _k: &str, upload_id: &str) -> Result<(), AwsError> {
        self.take_upload(upload_id, &[]);
        Ok(())
    }

    async fn put_if_match(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        _content_type: &str,
        if_match: &str,
    ) -> Result<bool, AwsError> {
        if self.etag(bucket, key).as_deref() != Some(if_match) {
            return Ok(false);
        }
        self.insert(bucket, key, body);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ObjectWriter, VersionedObjects};

    #[tokio::test]
    async fn a_memory_upload_completes_only_over_the_version_read() {
        let m = MemoryObjects::default();
        m.put("b", "k", b"old".to_vec(), "x").await.unwrap();
        let read = m.list_versions("b", "k").await.unwrap()[0]
            .etag
            .clone()
            .unwrap();
        let id = m.start_upload("b", "k", "x").await.unwrap();
        let p1 = m
            .upload_part("b", "k", &id, 1, b"ne".to_vec())
            .await
            .unwrap();
        let p2 = m
            .upload_part("b", "k", &id, 2, b"w".to_vec())
            .await
            .unwrap();
        let parts = [(1, p1), (2, p2)];
        assert!(
            m.complete_upload("b", "k", &id, &parts, &read)
                .await
                .unwrap()
        );
        assert_eq!(m.get("b", "k").unwrap().as_ref(), b"new");
        assert!(
            !m.put_if_match("b", "k", b"late".to_vec(), "x", &read)
                .await
                .unwrap(),
            "the object changed since it was read"
        );
        assert_eq!(m.get("b", "k").unwrap().as_ref(), b"new");
    }
}
