//! Objects in S3 buckets (quarantine reports, archives, lake files).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_s3::primitives::ByteStream;

use crate::error::AwsError;

/// Port: writes one object into a bucket chosen at construction.
pub trait ObjectStore: Send + Sync {
    fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// S3 adapter. Encryption is the bucket's default (SSE-KMS with a bucket key), so
/// writers need not, and cannot forget to, ask for it.
pub struct S3Bucket {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Bucket {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> S3Bucket {
        S3Bucket {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn from_config(sdk: &aws_config::SdkConfig, bucket: impl Into<String>) -> S3Bucket {
        S3Bucket::new(crate::aws::s3_client(sdk), bucket)
    }

    pub fn name(&self) -> &str {
        &self.bucket
    }
}

impl ObjectStore for S3Bucket {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), AwsError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("s3:PutObject", e))?;
        Ok(())
    }
}

/// An in-memory bucket: for unit tests and benchmarks.
#[derive(Default)]
pub struct MemoryBucket {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryBucket {
    pub fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ObjectStore for MemoryBucket {
    async fn put(&self, key: &str, body: Vec<u8>, _content_type: &str) -> Result<(), AwsError> {
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), body);
        Ok(())
    }
}
