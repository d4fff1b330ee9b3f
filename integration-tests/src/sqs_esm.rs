//! The SQS event source mapping, as Lambda runs it, for the local stack: batches of up
//! to 10 messages, the partial batch response (succeeded messages deleted, failed ones
//! left to reappear after the visibility timeout), a function error leaving all of them.

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use serde_json::json;

use crate::Result;
use crate::invoke::Invoker;
use crate::moto::{ACCOUNT, REGION};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct SqsStats {
    pub invocations: usize,
    pub messages_done: usize,
    /// Messages reported as failures (they come back after the visibility timeout).
    pub messages_retried: usize,
    pub function_errors: usize,
    pub last_error: Option<String>,
}

/// A mapping from a queue to a function.
pub struct SqsMapping<I> {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue_name: String,
    function: I,
    pub stats: SqsStats,
}

impl<I: Invoker> SqsMapping<I> {
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: &str, function: I) -> Self {
        let queue_name = queue_url.rsplit('/').next().unwrap_or_default().to_owned();
        SqsMapping {
            sqs,
            queue_url: queue_url.into(),
            queue_name,
            function,
            stats: SqsStats::default(),
        }
    }

    pub fn function(&self) -> &I {
        &self.function
    }

    /// Polls until the queue has been empty (nothing visible, nothing in flight) for a
    /// moment, or `timeout` passes.
    pub async fn drain(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await?;
            let messages = out.messages();
            if messages.is_empty() {
                if self.queue_is_idle().await? {
                    return Ok(());
                }
                continue;
            }
            let event = sqs_event(&self.queue_name, messages)?;
            self.stats.invocations += 1;
            let failed: Vec<String> = match self.function.invoke(event).await {
                Ok(resp) => {
                    let resp: SqsBatchResponse = serde_json::from_value(resp)?;
                    resp.batch_item_failures
                        .into_iter()
                        .map(|f| f.item_identifier)
                        .collect()
                }
                Err(e) => {
                    self.stats.function_errors += 1;
                    self.stats.last_error = Some(e.to_string());
                    messages
                        .iter()
                        .filter_map(|m| m.message_id().map(str::to_owned))
                        .collect()
                }
            };
            let done: Vec<_> = messages
                .iter()
                .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
                .collect();
            self.stats.messages_done += done.len();
            self.stats.messages_retried += messages.len() - done.len();
            if !done.is_empty() {
                let entries = done
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(m.receipt_handle().unwrap_or_default())
                            .build()
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                self.sqs
                    .delete_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await?;
            }
        }
        Err(format!(
            "queue {} did not drain within {timeout:?}: {:?}",
            self.queue_name, self.stats
        )
        .into())
    }

    async fn queue_is_idle(&self) -> Result<bool> {
        use aws_sdk_sqs::types::QueueAttributeName as Q;
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(Q::ApproximateNumberOfMessages)
            .attribute_names(Q::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?;
        let count = |q: Q| {
            attrs
                .attributes()
                .and_then(|a| a.get(&q))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(count(Q::ApproximateNumberOfMessages) == 0
            && count(Q::ApproximateNumberOfMessagesNotVisible) == 0)
    }
}

/// The event Lambda sends for a batch of SQS messages, checked against `aws_lambda_events`.
pub fn sqs_event(
    queue_name: &str,
    messages: &[aws_sdk_sqs::types::Message],
) -> Result<serde_json::Value> {
    let records: Vec<_> = messages
        .iter()
        .map(|m| {
            let attrs: serde_json::Map<String, serde_json::Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attrs,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_name}"),
                "awsRegion": REGION,
            })
        })
        .collect();
    let event = json!({ "Records": records });
    let _: SqsEvent = serde_json::from_value(event.clone())?;
    Ok(event)
}
