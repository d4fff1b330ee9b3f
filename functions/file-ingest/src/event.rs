//! The SQS messages file-ingest receives: S3 event notifications of the staging bucket.

pub use pulselake_adapters::s3_events::{Notification, ObjectRef, older, parse_body, url_decode};
