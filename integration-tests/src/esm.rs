//! The Kinesis event source mapping, as Lambda runs it, for the local stack:
//! batches per shard in order, partial batch responses (resume from the lowest
//! failed sequence number), retries, bisection on function error, and an on-failure
//! destination once retries are exhausted.

use std::collections::HashMap;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use aws_sdk_kinesis::types::{Record, ShardIteratorType};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::Result;
use crate::invoke::Invoker;
use crate::moto::REGION;
use crate::provision::Stack;

/// The mapping's settings, as in `template.yaml`.
#[derive(Debug, Clone)]
pub struct MappingConfig {
    pub batch_size: usize,
    pub max_retries: u32,
    pub bisect_on_error: bool,
    pub function_name: String,
}

impl Default for MappingConfig {
    fn default() -> Self {
        MappingConfig {
            batch_size: 500,
            max_retries: 5,
            bisect_on_error: true,
            function_name: "stream-ingest".into(),
        }
    }
}

/// What the mapping did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EsmStats {
    pub invocations: usize,
    pub records_delivered: usize,
    /// Records handed to the function again after a partial failure or error.
    pub records_retried: usize,
    pub function_errors: usize,
    pub bisections: usize,
    /// Records sent to the on-failure destination after retries ran out.
    pub records_discarded: usize,
    /// The last function error, for the report.
    pub last_error: Option<String>,
}

/// An event source mapping from the stack's stream to one function.
pub struct KinesisMapping<'s, I> {
    stack: &'s Stack,
    function: I,
    config: MappingConfig,
    /// Per shard, the last sequence number fully processed.
    checkpoints: HashMap<String, String>,
    pub stats: EsmStats,
}

impl<'s, I: Invoker> KinesisMapping<'s, I> {
    pub fn new(stack: &'s Stack, function: I, config: MappingConfig) -> Self {
        KinesisMapping {
            stack,
            function,
            config,
            checkpoints: HashMap::new(),
            stats: EsmStats::default(),
        }
    }

    pub fn function(&self) -> &I {
        &self.function
    }

    /// Starts at the end of the stream, as a mapping created with `StartingPosition:
    /// LATEST` does: records already in the stream are never delivered.
    pub async fn at_latest(mut self) -> Result<Self> {
        for shard in self.shard_ids().await? {
            if let Some(last) = self.read_shard(&shard).await?.last() {
                self.checkpoints
                    .insert(shard, last.sequence_number().to_owned());
            }
        }
        Ok(self)
    }

    /// Where the mapping stands, per shard (the last sequence number it finished).
    pub fn checkpoints(&self) -> HashMap<String, String> {
        self.checkpoints.clone()
    }

    /// Resumes after the given checkpoints: what Lambda does when it delivers again.
    pub fn resume_after(mut self, checkpoints: HashMap<String, String>) -> Self {
        self.checkpoints = checkpoints;
        self
    }

    async fn shard_ids(&self) -> Result<Vec<String>> {
        let shards = self
            .stack
            .kinesis
            .list_shards()
            .stream_name(&self.stack.names.stream)
            .send()
            .await?;
        Ok(shards
            .shards()
            .iter()
            .map(|s| s.shard_id().to_owned())
            .collect())
    }

    /// Processes everything currently in the stream, shard by shard.
    pub async fn drain(&mut self) -> Result<()> {
        for shard in self.shard_ids().await? {
            let records = self.read_shard(&shard).await?;
            for batch in records.chunks(self.config.batch_size) {
                self.process(&shard, batch.to_vec(), 0).await?;
                if let Some(last) = batch.last() {
                    self.checkpoints
                        .insert(shard.clone(), last.sequence_number().to_owned());
                }
            }
        }
        Ok(())
    }

    async fn read_shard(&self, shard_id: &str) -> Result<Vec<Record>> {
        let k = &self.stack.kinesis;
        let mut req = k
            .get_shard_iterator()
            .stream_name(&self.stack.names.stream)
            .shard_id(shard_id);
        req = match self.checkpoints.get(shard_id) {
            Some(seq) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            None => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let mut iterator = req.send().await?.shard_iterator().map(str::to_owned);
        let mut out = Vec::new();
        while let Some(it) = iterator {
            let page = k
                .get_records()
                .shard_iterator(it)
                .limit(10_000)
                .send()
                .await?;
            let got = page.records().len();
            out.extend(page.records().iter().cloned());
            iterator = page.next_shard_iterator().map(str::to_owned);
            if got == 0 || page.millis_behind_latest() == Some(0) && got < 10_000 {
                break;
            }
        }
        Ok(out)
    }

    /// Invokes the function with a batch until it is done, as Lambda would.
    async fn process(
        &mut self,
        shard_id: &str,
        mut batch: Vec<Record>,
        mut attempt: u32,
    ) -> Result<()> {
        loop {
            if batch.is_empty() {
                return Ok(());
            }
            self.stats.invocations += 1;
            if attempt > 0 {
                self.stats.records_retried += batch.len();
            }
            match self
                .function
                .invoke(kinesis_event(shard_id, &self.stack.stream_arn, &batch)?)
                .await
            {
                Ok(resp) => {
                    let resp: KinesisEventResponse = serde_json::from_value(resp)?;
                    let failed: Vec<String> = resp
                        .batch_item_failures
                        .iter()
                        .filter_map(|f| f.item_identifier.clone())
                        .collect();
                    if failed.is_empty() && resp.batch_item_failures.is_empty() {
                        self.stats.records_delivered += batch.len();
                        return Ok(());
                    }
                    // Checkpoint before the lowest failed record; retry from there. An identifier
                    // that is empty or not in the batch fails the whole batch, as in AWS.
                    let lowest = batch
                        .iter()
                        .position(|r| failed.iter().any(|f| f == r.sequence_number()));
                    let valid = failed.len() == resp.batch_item_failures.len() && lowest.is_some();
                    let from = if valid { lowest.unwrap_or(0) } else { 0 };
                    self.stats.records_delivered += from;
                    batch.drain(..from);
                }
                Err(e) => {
                    self.stats.function_errors += 1;
                    self.stats.last_error = Some(e.to_string());
                    tracing::warn!(error = %e, records = batch.len(), "function error");
                    if self.config.bisect_on_error
                        && batch.len() > 1
                        && attempt < self.config.max_retries
                    {
                        self.stats.bisections += 1;
                        let second = batch.split_off(batch.len() / 2);
                        Box::pin(self.process(shard_id, batch, attempt + 1)).await?;
                        return Box::pin(self.process(shard_id, second, attempt + 1)).await;
                    }
                }
            }
            attempt += 1;
            if attempt > self.config.max_retries {
                self.discard(shard_id, &batch).await?;
                return Ok(());
            }
        }
    }

    /// The on-failure destination: a record of what was skipped (not the data), as Lambda sends it.
    async fn discard(&mut self, shard_id: &str, batch: &[Record]) -> Result<()> {
        self.stats.records_discarded += batch.len();
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(());
        };
        let body = json!({
            "requestContext": {"condition": "RetryAttemptsExhausted", "functionArn": self.config.function_name},
            "KinesisBatchInfo": {"shardId": shard_id, "startSequenceNumber": first.sequence_number(),
                                 "endSequenceNumber": last.sequence_number(), "batchSize": batch.len(),
                                 "streamArn": self.stack.stream_arn}
        });
        self.stack
            .sqs
            .send_message()
            .queue_url(&self.stack.stream_failures_queue_url)
            .message_body(body.to_string())
            .send()
            .await?;
        Ok(())
    }
}

/// The event Lambda sends for a batch of Kinesis records, checked against `aws_lambda_events`.
pub fn kinesis_event(
    shard_id: &str,
    stream_arn: &str,
    batch: &[Record],
) -> Result<serde_json::Value> {
    let records: Vec<_> = batch
        .iter()
        .map(|r| {
            let arrival = r
                .approximate_arrival_timestamp()
                .map_or(0.0, |t| t.as_secs_f64());
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key(),
                    "sequenceNumber": r.sequence_number(),
                    "data": STANDARD.encode(r.data().as_ref()),
                    "approximateArrivalTimestamp": arrival,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard_id}:{}", r.sequence_number()),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/pulselake-stream-ingest",
                "awsRegion": REGION,
                "eventSourceARN": stream_arn,
            })
        })
        .collect();
    let event = json!({ "Records": records });
    // The event must read as the crate's `KinesisEvent`: the shape AWS sends. (It is not
    // re-serialized from that type, which writes the arrival time as a string, not a number.)
    let _: KinesisEvent = serde_json::from_value(event.clone())?;
    Ok(event)
}
