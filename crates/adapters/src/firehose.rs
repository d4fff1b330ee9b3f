//! Delivery to the lake through Kinesis Data Firehose.

use std::future::Future;
use std::sync::Mutex;

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;

use crate::error::AwsError;

/// PutRecordBatch limits: records per call and bytes per call.
pub const MAX_BATCH_RECORDS: usize = 500;
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Largest single Firehose record.
pub const MAX_RECORD_BYTES: usize = 1000 * 1024;

/// One record Firehose did not take (PutRecordBatch answers HTTP 200 with per-record errors).
#[derive(Debug, Clone, PartialEq)]
pub struct FailedEntry {
    /// Index into the slice passed to `put_batch`.
    pub index: usize,
    pub code: String,
}

/// Port: puts one batch (within the limits above) and reports the entries that failed.
pub trait RecordSink: Send + Sync {
    fn put_batch(
        &self,
        records: &[&[u8]],
    ) -> impl Future<Output = Result<Vec<FailedEntry>, AwsError>> + Send;
}

/// The Firehose adapter.
pub struct FirehoseSink {
    client: aws_sdk_firehose::Client,
    stream_name: String,
}

impl FirehoseSink {
    pub fn new(client: aws_sdk_firehose::Client, stream_name: impl Into<String>) -> FirehoseSink {
        FirehoseSink {
            client,
            stream_name: stream_name.into(),
        }
    }

    pub fn from_config(
        sdk: &aws_config::SdkConfig,
        stream_name: impl Into<String>,
    ) -> FirehoseSink {
        FirehoseSink::new(aws_sdk_firehose::Client::new(sdk), stream_name)
    }
}

impl RecordSink for FirehoseSink {
    async fn put_batch(&self, records: &[&[u8]]) -> Result<Vec<FailedEntry>, AwsError> {
        const OP: &str = "firehose:PutRecordBatch";
        let mut batch = Vec::with_capacity(records.len());
        for r in records {
            let record = Record::builder()
                .data(Blob::new(r.to_vec()))
                .build()
                .map_err(|e| AwsError::permanent(OP, e.to_string()))?;
            batch.push(record);
        }
        let out = self
            .client
            .put_record_batch()
            .delivery_stream_name(&self.stream_name)
            .set_records(Some(batch))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        let responses = out.request_responses();
        if responses.len() != records.len() {
            // Never guess which entries landed: treat the whole call as failed and retry it.
            return Err(AwsError::transient(
                OP,
                format!(
                    "{} responses for {} records",
                    responses.len(),
                    records.len()
                ),
            ));
        }
        Ok(responses
            .iter()
            .enumerate()
            .filter_map(|(index, r)| {
                r.error_code().map(|code| FailedEntry {
                    index,
                    code: code.to_owned(),
                })
            })
            .collect())
    }
}

/// An in-memory sink that accepts everything: for benchmarks and unit tests.
#[derive(Default)]
pub struct MemorySink {
    records: Mutex<Vec<Vec<u8>>>,
}

impl MemorySink {
    pub fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl RecordSink for MemorySink {
    async fn put_batch(&self, records: &[&[u8]]) -> Result<Vec<FailedEntry>, AwsError> {
        let mut stored = self.records.lock().unwrap_or_else(|p| p.into_inner());
        stored.extend(records.iter().map(|r| r.to_vec()));
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_firehose::Client;
    use aws_sdk_firehose::operation::put_record_batch::PutRecordBatchOutput;
    use aws_sdk_firehose::types::PutRecordBatchResponseEntry;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_runtime_api::http::{Response as HttpResponse, StatusCode};
    use aws_smithy_types::body::SdkBody;

    fn entry(ok: bool) -> PutRecordBatchResponseEntry {
        if ok {
            PutRecordBatchResponseEntry::builder()
                .record_id("r")
                .build()
        } else {
            PutRecordBatchResponseEntry::builder()
                .error_code("ServiceUnavailableException")
                .error_message("Slow down.")
                .build()
        }
    }

    #[tokio::test]
    async fn per_record_failures_in_a_200_response_are_reported_by_index() {
        let rule = mock!(Client::put_record_batch).then_output(|| {
            PutRecordBatchOutput::builder()
                .failed_put_count(2)
                .set_request_responses(Some(vec![
                    entry(true),
                    entry(false),
                    entry(true),
                    entry(false),
                ]))
                .build()
                .unwrap()
        });
        let client = mock_client!(aws_sdk_firehose, RuleMode::Sequential, &[&rule]);
        let sink = FirehoseSink::new(client, "lake");
        let failed = sink.put_batch(&[b"a", b"b", b"c", b"d"]).await.unwrap();
        assert_eq!(failed.iter().map(|f| f.index).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(failed[0].code, "ServiceUnavailableException");
    }

    #[tokio::test]
    async fn throttling_of_the_whole_call_is_a_retryable_error() {
        // What Firehose sends when a stream is over its throughput: HTTP 500 with a JSON error.
        let rule = mock!(Client::put_record_batch).then_http_response(|| {
            let body = r#"{"__type":"ServiceUnavailableException","message":"Slow down."}"#;
            let mut resp =
                HttpResponse::new(StatusCode::try_from(500).unwrap(), SdkBody::from(body));
            resp.headers_mut()
                .insert("content-type", "application/x-amz-json-1.1");
            resp
        });
        let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, &[&rule], |c| c
            .retry_config(aws_sdk_firehose::config::retry::RetryConfig::disabled()));
        let err = FirehoseSink::new(client, "lake")
            .put_batch(&[b"a"])
            .await
            .unwrap_err();
        assert!(err.retryable, "{err}");
        assert_eq!(err.code.as_deref(), Some("ServiceUnavailableException"));
    }

    #[tokio::test]
    async fn a_missing_stream_is_a_permanent_error() {
        let rule = mock!(Client::put_record_batch).then_http_response(|| {
            let body =
                r#"{"__type":"ResourceNotFoundException","message":"Stream lake not found."}"#;
            let mut resp =
                HttpResponse::new(StatusCode::try_from(400).unwrap(), SdkBody::from(body));
            resp.headers_mut()
                .insert("content-type", "application/x-amz-json-1.1");
            resp
        });
        let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, &[&rule]);
        let err = FirehoseSink::new(client, "lake")
            .put_batch(&[b"a"])
            .await
            .unwrap_err();
        assert!(!err.retryable, "{err}");
        assert_eq!(err.code.as_deref(), Some("ResourceNotFoundException"));
    }

    #[tokio::test]
    async fn a_response_that_does_not_account_for_every_record_fails_the_call() {
        let rule = mock!(Client::put_record_batch).then_output(|| {
            PutRecordBatchOutput::builder()
                .failed_put_count(0)
                .set_request_responses(Some(vec![entry(true)]))
                .build()
                .unwrap()
        });
        let client = mock_client!(aws_sdk_firehose, RuleMode::Sequential, &[&rule]);
        let err = FirehoseSink::new(client, "lake")
            .put_batch(&[b"a", b"b"])
            .await
            .unwrap_err();
        assert!(err.retryable);
    }
}
