//! S3 event notifications, as they arrive in SQS message bodies (staging files for
//! file-ingest, lake objects for catalog-sync), read leniently: only the fields used.

use pulselake_domain::NamingKey;
use serde::Deserialize;

/// One object version named by a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRef {
    pub bucket: String,
    /// The key, URL-decoded (S3 sends it encoded, `+` for spaces).
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub version_id: Option<String>,
    /// Orders events of one key (hex; compared after padding to equal length).
    pub sequencer: Option<String>,
}

impl ObjectRef {
    /// The version: S3 version id when the bucket is versioned, else the ETag.
    pub fn version(&self) -> &str {
        self.version_id.as_deref().unwrap_or(&self.etag)
    }

    /// The dedup claim for this object version.
    pub fn object_id(&self) -> String {
        format!("object#{}/{}#{}", self.bucket, self.key, self.version())
    }

    /// The source key, whatever its version.
    pub fn source_id(&self) -> String {
        format!("{}/{}", self.bucket, self.key)
    }

    /// A keyed reference to the source key: names lake outputs and quarantine objects,
    /// and points at the file in logs and ops messages, without the key itself (vendor
    /// keys carry patient identifiers) and without a hash anyone could reverse.
    pub fn source_ref(&self, key: &NamingKey) -> String {
        key.reference(&self.source_id())
    }

    /// A keyed reference to the object version: names this attempt's staging area.
    pub fn version_ref(&self, key: &NamingKey) -> String {
        key.reference(&self.object_id())
    }
}

/// Is sequencer `a` older than `b`? (S3: compare after left-padding with zeros.)
pub fn older(a: &str, b: &str) -> bool {
    let width = a.len().max(b.len());
    format!("{a:0>width$}") < format!("{b:0>width$}")
}

/// The parts of an S3 event notification file-ingest uses, read leniently: a sender
/// that omits fields it does not need to send (identity, request details) is accepted.
#[derive(Deserialize)]
struct S3Notification {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    #[serde(default)]
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Object {
    key: String,
    #[serde(default)]
    size: u64,
    #[serde(default, rename = "eTag")]
    e_tag: String,
    #[serde(default)]
    version_id: Option<String>,
    #[serde(default)]
    sequencer: Option<String>,
}

/// What a message body holds.
#[derive(Debug, PartialEq)]
pub enum Notification {
    /// `s3:TestEvent`, sent when the notification is configured: nothing to do.
    Test,
    /// Objects created (other event kinds are skipped).
    Objects(Vec<ObjectRef>),
    /// Not an S3 notification: a clear error, and the message goes to the DLQ.
    Invalid(String),
}

/// Parses an SQS message body into the objects it reports created.
pub fn parse_body(body: &str) -> Notification {
    match parse_changes(body) {
        Changes::Test => Notification::Test,
        Changes::Invalid(why) => Notification::Invalid(why),
        Changes::Objects(changes) => Notification::Objects(
            changes
                .into_iter()
                .filter(|c| c.kind == ChangeKind::Created)
                .map(|c| c.object)
                .collect(),
        ),
    }
}

/// Whether an object appeared or went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Removed,
}

/// One object created or removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: ChangeKind,
    pub object: ObjectRef,
}

/// What a message body holds, created and removed objects both.
#[derive(Debug, PartialEq)]
pub enum Changes {
    Test,
    /// Objects created or removed (other event kinds, e.g. restores, are skipped).
    Objects(Vec<Change>),
    Invalid(String),
}

/// Parses an SQS message body into the object changes it reports.
pub fn parse_changes(body: &str) -> Changes {
    let value: serde_json::Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return Changes::Invalid(format!("message body is not JSON: {e}")),
    };
    if value.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        return Changes::Test;
    }
    let event: S3Notification = match serde_json::from_value(value) {
        Ok(e) => e,
        Err(e) => return Changes::Invalid(format!("message body is not an S3 event: {e}")),
    };
    let mut changes = Vec::new();
    for r in event.records {
        let kind = if r.event_name.starts_with("ObjectCreated:") {
            ChangeKind::Created
        } else if r.event_name.starts_with("ObjectRemoved:")
            || r.event_name.starts_with("LifecycleExpiration:")
        {
            ChangeKind::Removed
        } else {
            continue;
        };
        let Some(key) = url_decode(&r.s3.object.key) else {
            return Changes::Invalid("an S3 key that is not valid URL encoding".into());
        };
        let o = r.s3.object;
        changes.push(Change {
            kind,
            object: ObjectRef {
                bucket: r.s3.bucket.name,
                key,
                size: o.size,
                etag: o.e_tag,
                version_id: o.version_id.filter(|v| !v.is_empty() && v != "null"),
                sequencer: o.sequencer.filter(|s| !s.is_empty()),
            },
        });
    }
    Changes::Objects(changes)
}

/// S3 event keys: `+` is a space, `%XX` a byte; the result must be UTF-8.
pub fn url_decode(s: &str) -> Option<String> {
    // A `%` not followed by two hex digits is malformed (percent-encoding would keep it).
    let b = s.as_bytes();
    let malformed = b.iter().enumerate().any(|(i, c)| {
        *c == b'%'
            && !b
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if malformed {
        return None;
    }
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_url_decoded() {
        assert_eq!(
            url_decode("seed/P1.20201012.heart_rate.csv").unwrap(),
            "seed/P1.20201012.heart_rate.csv"
        );
        assert_eq!(
            url_decode("csv/my+file%2Bv2%C3%A9.csv").unwrap(),
            "csv/my file+v2é.csv"
        );
        assert_eq!(url_decode("bad%2"), None);
        assert_eq!(url_decode("bad%ff"), None);
    }

    #[test]
    fn a_test_event_is_recognized_and_other_event_kinds_are_skipped() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-22T10:00:00.000Z","Bucket":"staging"}"#;
        assert_eq!(parse_body(test), Notification::Test);
        let body = include_str!("../../../events/file-ingest.sqs.json");
        let sqs: serde_json::Value = serde_json::from_str(body).unwrap();
        let first = sqs["Records"][0]["body"].as_str().unwrap();
        let Notification::Objects(objs) = parse_body(first) else {
            panic!("objects")
        };
        assert_eq!(objs[0].key, "seed/P1.20201012.heart_rate.csv");
        assert_eq!(objs.len(), 1, "the ObjectRemoved record is skipped");
        assert!(matches!(parse_body("not json"), Notification::Invalid(_)));
        // What moto sends: no userIdentity, and '/' encoded in the key.
        let moto = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"seed%2FP1.20201012.heart_rate.csv","size":10469,"eTag":"e"}}}]}"#;
        let Notification::Objects(objs) = parse_body(moto) else {
            panic!("objects")
        };
        assert_eq!(objs[0].key, "seed/P1.20201012.heart_rate.csv");
        assert!(matches!(
            parse_body(r#"{"Records":"x"}"#),
            Notification::Invalid(_)
        ));
    }

    #[test]
    fn sequencers_compare_after_padding() {
        assert!(older("0055AED6DCD90281E5", "0055AED6DCD90281E6"));
        assert!(older("FF", "0100"));
        assert!(!older("0100", "FF"));
    }

    #[test]
    fn names_never_carry_the_key() {
        let o = ObjectRef {
            bucket: "b".into(),
            key: "seed/P1.20201012.heart_rate.csv".into(),
            size: 1,
            etag: "e".into(),
            version_id: None,
            sequencer: None,
        };
        let key = NamingKey::new(b"k".to_vec());
        assert_eq!(o.source_ref(&key).len(), 16);
        assert!(!o.source_ref(&key).contains("P1"));
        assert_ne!(o.source_ref(&key), o.version_ref(&key));
    }
}
