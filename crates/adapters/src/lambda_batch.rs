//! The Lambda batch contracts the functions share: SQS messages in, and partial batch
//! responses out (SQS items by message id, Kinesis items by sequence number, Kafka
//! items by topic-partition and offset).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};

/// One SQS message, as a handler needs it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub id: Option<&'a str>,
    pub body: Option<&'a str>,
    /// How many times SQS has handed this message out (1 the first time).
    pub receive_count: u32,
}

/// The messages of an SQS event, borrowed.
pub fn sqs_messages(event: &SqsEvent) -> Vec<Message<'_>> {
    event
        .records
        .iter()
        .map(|r| Message {
            id: r.message_id.as_deref(),
            body: r.body.as_deref(),
            receive_count: r
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1),
        })
        .collect()
}

/// The SQS partial batch response: the messages to be retried.
pub fn sqs_response(failed_message_ids: Vec<String>) -> SqsBatchResponse {
    let mut resp = SqsBatchResponse::default();
    resp.batch_item_failures = failed_message_ids
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    resp
}

/// The Kinesis partial batch response: one item per failed record, never an empty
/// identifier (Lambda would take that as the whole batch failing).
pub fn kinesis_response(failed_sequence_numbers: Vec<String>) -> KinesisEventResponse {
    let mut resp = KinesisEventResponse::default();
    resp.batch_item_failures = failed_sequence_numbers
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut f = KinesisBatchItemFailure::default();
            f.item_identifier = Some(s);
            f
        })
        .collect();
    resp
}

/// The Kafka partial batch response (MSK and self-managed event source mappings with
/// `ReportBatchItemFailures`): `aws_lambda_events` has no type for it. Each failed record
/// is named by its `<topic>-<partition>` and offset; Lambda resumes each partition from
/// the lowest offset named for it.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBatchResponse {
    pub batch_item_failures: Vec<KafkaBatchItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBatchItemFailure {
    pub item_identifier: KafkaItemIdentifier,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct KafkaItemIdentifier {
    /// `<topic>-<partition>`, as the event's `records` are keyed.
    pub partition: String,
    pub offset: i64,
}

/// The Kafka partial batch response for the failed records.
pub fn kafka_response(failed: Vec<KafkaItemIdentifier>) -> KafkaBatchResponse {
    KafkaBatchResponse {
        batch_item_failures: failed
            .into_iter()
            .map(|item_identifier| KafkaBatchItemFailure { item_identifier })
            .collect(),
    }
}
