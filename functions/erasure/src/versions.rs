//! The object versions erasure works on, in any bucket: the versions of exactly one key,
//! whether the one read is still current, the earlier ones deleted after a rewrite, and
//! the new version written as it is produced, only over the version read.

use pulselake_adapters::{AwsError, DELETE_BATCH, ObjectUploads, ObjectVersion, VersionedObjects};

use crate::error::ErasureError;

/// One bucket, as erasure reads and rewrites it.
pub struct Bucket<'a, O> {
    pub objects: &'a O,
    pub name: &'a str,
}

impl<O: VersionedObjects> Bucket<'_, O> {
    /// Every version of exactly `key` (a listing by prefix also names longer keys).
    pub async fn versions_of(&self, key: &str) -> Result<Vec<ObjectVersion>, ErasureError> {
        Ok(self
            .objects
            .list_versions(self.name, key)
            .await?
            .into_iter()
            .filter(|v| v.key == key)
            .collect())
    }

    /// `Err(Changed)` unless `v` is still the current version of its key.
    pub async fn unchanged(&self, v: &ObjectVersion) -> Result<(), ErasureError> {
        let current = self
            .versions_of(&v.key)
            .await?
            .into_iter()
            .find(|x| x.latest);
        if current.map(|x| x.version_id) != Some(v.version_id.clone()) {
            return Err(ErasureError::Changed);
        }
        Ok(())
    }

    /// Deletes the versions listed before a rewrite, markers too (the new version, and
    /// any written since, stays). In a bucket never versioned the put replaced the
    /// object, so nothing is deleted when something was put. How many went.
    pub async fn delete_old(
        &self,
        versions: Vec<ObjectVersion>,
        replaced: bool,
    ) -> Result<usize, ErasureError> {
        let old: Vec<ObjectVersion> = versions
            .into_iter()
            .filter(|v| v.version_id.is_some() || !replaced)
            .collect();
        for batch in old.chunks(DELETE_BATCH) {
            let failed = self.objects.delete_versions(self.name, batch).await?;
            if let Some((_, code)) = failed.first() {
                let why = format!("old versions not deleted ({code})");
                return Err(AwsError::transient("s3:DeleteObjects", why).into());
            }
        }
        Ok(old.len())
    }
}

/// A new version of a key, written as it is produced: one put when it stays under a
/// part, else a multipart upload; either way only over the version read (If-Match).
pub struct NewVersion<'a, O> {
    objects: &'a O,
    bucket: &'a str,
    key: &'a str,
    content_type: &'static str,
    part_bytes: usize,
    upload: Option<(String, Vec<(i32, String)>)>,
    pending: Vec<u8>,
}

impl<'a, O: ObjectUploads> NewVersion<'a, O> {
    pub fn new(
        objects: &'a O,
        bucket: &'a str,
        key: &'a str,
        content_type: &'static str,
        part_bytes: usize,
    ) -> Self {
        NewVersion {
            objects,
            bucket,
            key,
            content_type,
            part_bytes,
            upload: None,
            pending: Vec::new(),
        }
    }

    pub async fn write(&mut self, bytes: Vec<u8>) -> Result<(), AwsError> {
        if self.pending.is_empty() {
            self.pending = bytes;
        } else {
            self.pending.extend_from_slice(&bytes);
        }
        if self.pending.len() < self.part_bytes {
            return Ok(());
        }
        if self.upload.is_none() {
            let id = self
                .objects
                .start_upload(self.bucket, self.key, self.content_type)
                .await?;
            self.upload = Some((id, Vec::new()));
        }
        if let Some((id, parts)) = &mut self.upload {
            let n = parts.len() as i32 + 1;
            let body = std::mem::take(&mut self.pending);
            let etag = self
                .objects
                .upload_part(self.bucket, self.key, id, n, body)
                .await?;
            parts.push((n, etag));
        }
        Ok(())
    }

    /// Writes the rest; `Err(Changed)` when the key changed since it was read (nothing
    /// written, the upload abandoned).
    pub async fn commit(mut self, tail: Vec<u8>, if_match: &str) -> Result<(), ErasureError> {
        self.pending.extend_from_slice(&tail);
        let Some((id, mut parts)) = self.upload.take() else {
            let body = std::mem::take(&mut self.pending);
            let put = self
                .objects
                .put_if_match(self.bucket, self.key, body, self.content_type, if_match)
                .await?;
            return if put {
                Ok(())
            } else {
                Err(ErasureError::Changed)
            };
        };
        let n = parts.len() as i32 + 1;
        let body = std::mem::take(&mut self.pending);
        let last = self
            .objects
            .upload_part(self.bucket, self.key, &id, n, body);
        match last.await {
            Ok(etag) => parts.push((n, etag)),
            Err(e) => {
                let _ = self.objects.abort_upload(self.bucket, self.key, &id).await;
                return Err(e.into());
            }
        }
        let done = self
            .objects
            .complete_upload(self.bucket, self.key, &id, &parts, if_match)
            .await;
        if !matches!(done, Ok(true)) {
            let _ = self.objects.abort_upload(self.bucket, self.key, &id).await;
        }
        match done {
            Ok(true) => Ok(()),
            Ok(false) => Err(ErasureError::Changed),
            Err(e) => Err(e.into()),
        }
    }

    /// Abandons the upload (the bucket's lifecycle rule is the backstop if this fails).
    pub async fn abandon(mut self) {
        if let Some((id, _)) = self.upload.take() {
            let _ = self.objects.abort_upload(self.bucket, self.key, &id).await;
        }
    }
}
