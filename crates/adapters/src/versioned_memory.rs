//! A versioned bucket in memory, as S3 keeps one with versioning on: every put adds a
//! version, a plain delete adds a delete marker, a delete by version id removes that
//! version, and conditional writes and deletes are judged against the current version's
//! ETag (the content's hash, as S3's is for a single-part put). Tests that race the
//! lifecycle jobs run on it (the unversioned [`crate::MemoryObjects`] cannot show what a
//! lost version means).

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;

use crate::error::AwsError;
use crate::objects::{ObjectBody, ObjectReader, ObjectWriter};
use crate::uploads::ObjectUploads;
use crate::versions::{ObjectVersion, VersionedObjects};

#[derive(Debug, Clone)]
struct Version {
    id: String,
    /// `None`: a delete marker.
    body: Option<Bytes>,
}

impl Version {
    fn etag(&self) -> Option<String> {
        use sha2::Digest;
        self.body
            .as_ref()
            .map(|b| hex::encode(&sha2::Sha256::digest(b)[..16]))
    }
}

#[derive(Default)]
struct State {
    /// Per (bucket, key): versions, oldest first.
    objects: BTreeMap<(String, String), Vec<Version>>,
    next_id: u64,
    uploads: BTreeMap<String, BTreeMap<i32, Vec<u8>>>,
}

impl State {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("v{:06}", self.next_id)
    }

    fn current(&self, bucket: &str, key: &str) -> Option<&Version> {
        self.objects
            .get(&(bucket.to_owned(), key.to_owned()))
            .and_then(|v| v.last())
    }

    fn current_body(&self, bucket: &str, key: &str) -> Option<Bytes> {
        self.current(bucket, key).and_then(|v| v.body.clone())
    }

    fn push(&mut self, bucket: &str, key: &str, body: Option<Bytes>) -> String {
        let id = self.new_id();
        self.objects
            .entry((bucket.to_owned(), key.to_owned()))
            .or_default()
            .push(Version {
                id: id.clone(),
                body,
            });
        id
    }

    /// Whether the current version is an object whose ETag is `etag`.
    fn current_is(&self, bucket: &str, key: &str, etag: &str) -> bool {
        self.current(bucket, key)
            .and_then(Version::etag)
            .is_some_and(|e| e == etag.trim_matches('"'))
    }
}

/// A versioned bucket (or several) in memory.
#[derive(Default)]
pub struct MemoryVersioned(Mutex<State>);

impl MemoryVersioned {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts an object (a new version), outside any port (test setup).
    pub fn insert(&self, bucket: &str, key: &str, body: impl Into<Bytes>) {
        self.state().push(bucket, key, Some(body.into()));
    }

    /// The current version's content, if the key has a current object.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Bytes> {
        self.state().current_body(bucket, key)
    }

    /// Every version's content under `prefix` (delete markers left out): what a reader
    /// of old versions could still find.
    pub fn all_versions(&self, bucket: &str, prefix: &str) -> Vec<(String, Bytes)> {
        self.state()
            .objects
            .iter()
            .filter(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .flat_map(|((_, k), versions)| {
                versions
                    .iter()
                    .filter_map(|v| v.body.clone().map(|b| (k.clone(), b)))
            })
            .collect()
    }

    /// Keys with a current object under `prefix`.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.state()
            .objects
            .iter()
            .filter(|((b, k), v)| {
                b == bucket && k.starts_with(prefix) && v.last().is_some_and(|x| x.body.is_some())
            })
            .map(|((_, k), _)| k.clone())
            .collect()
    }

    /// Uploads started and neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.state().uploads.len()
    }
}

fn no_such_key(key: &str) -> AwsError {
    AwsError {
        operation: "s3:GetObject",
        retryable: false,
        code: Some("NoSuchKey".into()),
        message: key.into(),
    }
}

impl ObjectReader for MemoryVersioned {
    async fn open(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<ObjectBody, AwsError> {
        let st = self.state();
        let body = match version {
            None => st.current_body(bucket, key),
            Some(id) => st
                .objects
                .get(&(bucket.to_owned(), key.to_owned()))
                .and_then(|vs| vs.iter().find(|v| v.id == id))
                .and_then(|v| v.body.clone()),
        };
        body.map(ObjectBody::Memory).ok_or_else(|| no_such_key(key))
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, AwsError> {
        Ok(self.keys(bucket, prefix))
    }

    async fn any_under(&self, bucket: &str, prefix: &str) -> Result<bool, AwsError> {
        Ok(!self.keys(bucket, prefix).is_empty())
    }

    async fn list_dirs(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, AwsError> {
        let mut dirs: Vec<String> = self
            .keys(bucket, prefix)
            .into_iter()
            .filter_map(|k| {
                let (dir, _) = k.strip_prefix(prefix)?.split_once('/')?;
                Some(format!("{prefix}{dir}/"))
            })
            .collect();
        dirs.dedup();
        Ok(dirs)
    }
}

impl ObjectWriter for MemoryVersioned {
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
        from_version: Option<&str>,
        to_bucket: &str,
        to_key: &str,
    ) -> Result<(), AwsError> {
        let body = self
            .open(from_bucket, from_key, from_version)
            .await?
            .bytes()
            .await?;
        self.insert(to_bucket, to_key, body);
        Ok(())
    }

    async fn delete(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<(), AwsError> {
        let mut st = self.state();
        match version {
            None => {
                st.push(bucket, key, None);
            }
            Some(id) => {
                if let Some(vs) = st.objects.get_mut(&(bucket.to_owned(), key.to_owned())) {
                    vs.retain(|v| v.id != id);
                }
            }
        }
        Ok(())
    }
}

impl VersionedObjects for MemoryVersioned {
    async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectVersion>, AwsError> {
        let st = self.state();
        let mut out = Vec::new();
        for ((b, k), versions) in &st.objects {
            if b != bucket || !k.starts_with(prefix) {
                continue;
            }
            let n = versions.len();
            // Newest first, as S3 lists a key's versions.
            for (i, v) in versions.iter().enumerate().rev() {
                out.push(ObjectVersion {
                    key: k.clone(),
                    version_id: Some(v.id.clone()),
                    size: v.body.as_ref().map_or(0, |b| b.len() as u64),
                    latest: i + 1 == n,
                    delete_marker: v.body.is_none(),
                    etag: v.etag(),
                });
            }
        }
        Ok(out)
    }

    async fn delete_versions(
        &self,
        bucket: &str,
        versions: &[ObjectVersion],
    ) -> Result<Vec<(String, String)>, AwsError> {
        for v in versions {
            self.delete(
                bucket,
                &v.key,
                Some(v.version_id.as_deref().unwrap_or("null")),
            )
            .await?;
        }
        Ok(Vec::new())
    }

    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        start: u64,
        end: u64,
    ) -> Result<Bytes, AwsError> {
        let body = self.open(bucket, key, version).await?.bytes().await?;
        let end = (end as usize + 1).min(body.len());
        Ok(body.slice((start as usize).min(end)..end))
    }

    async fn delete_if_current(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> Result<Option<String>, AwsError> {
        let mut st = self.state();
        if !st.current_is(bucket, key, etag) {
            return Ok(None);
        }
        Ok(Some(st.push(bucket, key, None)))
    }
}

impl ObjectUploads for MemoryVersioned {
    async fn start_upload(
        &self,
        _bucket: &str,
        _key: &str,
        _content_type: &str,
    ) -> Result<String, AwsError> {
        let mut st = self.state();
        let id = format!("upload-{}", st.new_id());
        st.uploads.insert(id.clone(), BTreeMap::new());
        Ok(id)
    }

    async fn upload_part(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
    ) -> Result<String, AwsError> {
        let mut st = self.state();
        let parts = st
            .uploads
            .get_mut(upload_id)
            .ok_or_else(|| AwsError::permanent("s3:UploadPart", "NoSuchUpload"))?;
        parts.insert(number, body);
        Ok(format!("part-{number}"))
    }

    async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
        if_match: &str,
    ) -> Result<bool, AwsError> {
        let mut st = self.state();
        let Some(mut held) = st.uploads.remove(upload_id) else {
            return Err(AwsError::permanent(
                "s3:CompleteMultipartUpload",
                "NoSuchUpload",
            ));
        };
        if !st.current_is(bucket, key, if_match) {
            return Ok(false);
        }
        let mut body = Vec::new();
        for (n, _) in parts {
            body.extend(held.remove(n).unwrap_or_default());
        }
        st.push(bucket, key, Some(body.into()));
        Ok(true)
    }

    async fn abort_upload(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
    ) -> Result<(), AwsError> {
        self.state().uploads.remove(upload_id);
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
        let mut st = self.state();
        if !st.current_is(bucket, key, if_match) {
            return Ok(false);
        }
        st.push(bucket, key, Some(body.into()));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn versions_markers_and_conditions_behave_as_in_a_versioned_bucket() {
        let s = MemoryVersioned::default();
        s.insert("b", "k", &b"one"[..]);
        let v1 = s.list_versions("b", "k").await.unwrap().remove(0);
        assert!(v1.latest && !v1.delete_marker);
        let etag = v1.etag.clone().unwrap();
        assert!(
            s.put_if_match("b", "k", b"two".to_vec(), "x", &etag)
                .await
                .unwrap()
        );
        assert!(
            !s.put_if_match("b", "k", b"three".to_vec(), "x", &etag)
                .await
                .unwrap(),
            "the version read is no longer current"
        );
        assert_eq!(s.delete_if_current("b", "k", &etag).await.unwrap(), None);
        let v2 = s.list_versions("b", "k").await.unwrap().remove(0);
        let marker = s
            .delete_if_current("b", "k", v2.etag.as_deref().unwrap())
            .await
            .unwrap()
            .expect("deleted while current");
        assert!(
            s.get("b", "k").is_none(),
            "a delete marker hides the object"
        );
        assert_eq!(s.all_versions("b", "k").len(), 2, "both versions are kept");
        s.delete("b", "k", Some(&marker)).await.unwrap();
        assert_eq!(
            s.get("b", "k").as_deref(),
            Some(&b"two"[..]),
            "the marker undone"
        );
        let old = s
            .open("b", "k", v1.version_id.as_deref())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&old[..], b"one");
    }
}
