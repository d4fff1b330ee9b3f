//! Work fanned out over SQS (an export's partitions): messages sent in batches of 10,
//! the failed entries of a batch sent again.

use std::future::Future;
use std::sync::Mutex;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::error::AwsError;
use crate::retry::RetryPolicy;

/// Port: a queue of work items.
pub trait WorkQueue: Send + Sync {
    fn send(&self, bodies: &[String]) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Sends on behalf of `tenant` (SQS fair queues: its messages are one message group
    /// of a standard queue, so one tenant's backlog does not hold the others' back).
    fn send_for(
        &self,
        tenant: &str,
        bodies: &[String],
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn from_config(sdk: &aws_config::SdkConfig, url: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client: aws_sdk_sqs::Client::new(sdk),
            url: url.into(),
        }
    }
}

impl WorkQueue for SqsQueue {
    async fn send(&self, bodies: &[String]) -> Result<(), AwsError> {
        self.send_batches(None, bodies).await
    }

    async fn send_for(&self, tenant: &str, bodies: &[String]) -> Result<(), AwsError> {
        self.send_batches(Some(tenant), bodies).await
    }
}

impl SqsQueue {
    async fn send_batches(&self, group: Option<&str>, bodies: &[String]) -> Result<(), AwsError> {
        // A 3-year export is ~1,000 batches: sent 16 at a time, the kick-off stays well
        // inside API Gateway's 29 s.
        for wave in bodies.chunks(10 * 16) {
            let batches: Vec<_> = wave.chunks(10).map(|c| self.send_batch(group, c)).collect();
            futures_util::future::try_join_all(batches).await?;
        }
        Ok(())
    }

    async fn send_batch(&self, group: Option<&str>, chunk: &[String]) -> Result<(), AwsError> {
        const OP: &str = "sqs:SendMessageBatch";
        let mut pending: Vec<(String, &String)> = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| (i.to_string(), b))
            .collect();
        let mut backoff = RetryPolicy::default().backoff(None);
        while !pending.is_empty() {
            let entries = pending
                .iter()
                .map(|(id, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(*body)
                        .set_message_group_id(group.map(str::to_owned))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| AwsError::permanent(OP, e.to_string()))?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(OP, e))?;
            let failed: Vec<&str> = out.failed().iter().map(|f| f.id()).collect();
            pending.retain(|(id, _)| failed.contains(&id.as_str()));
            if !pending.is_empty() && !backoff.wait().await {
                return Err(AwsError::transient(OP, "entries kept failing"));
            }
        }
        Ok(())
    }
}

/// An in-memory queue: for unit tests.
#[derive(Default)]
pub struct MemoryQueue(pub Mutex<Vec<String>>);

impl WorkQueue for MemoryQueue {
    async fn send(&self, bodies: &[String]) -> Result<(), AwsError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(bodies.iter().cloned());
        Ok(())
    }

    async fn send_for(&self, _tenant: &str, bodies: &[String]) -> Result<(), AwsError> {
        self.send(bodies).await
    }
}
