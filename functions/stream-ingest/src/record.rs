//! What the handler needs of one delivered record, whichever stream delivered it: a
//! Kinesis record (devices through IoT Core) or a Kafka record (a legacy platform's topic
//! during the migration). One decode, map, validate, normalize and deliver path serves both.

use pulselake_adapters::kafka_events::{KafkaBatch, KafkaRecord, Key, cluster_name};
use pulselake_adapters::lambda_batch::KafkaItemIdentifier;
use pulselake_domain::message::DeviceMessage;
use pulselake_domain::{DeviceMappings, Reason, Rejection, Source};

use crate::event::{Payload, StreamRecord};

pub trait Delivered {
    fn payload(&self) -> &Payload;
    /// When the stream accepted the record, in epoch ms: the reading's `received_at`.
    /// Taken from the record, not the clock, so a redelivered record yields identical rows.
    fn arrival_ms(&self) -> i64;
    fn source(&self) -> Source;
    /// The record's place in its stream, for `source_ref` and the quarantine.
    fn reference(&self) -> String;
    /// The quarantine folder of a batch that starts with this record (no device or
    /// patient identifier in it).
    fn folder(&self) -> String;
    /// The record's position in its folder (sequence number or offset).
    fn position(&self) -> String;
    /// Whether the record's publisher may speak for the device the message names.
    fn check_publisher(&self, message: &DeviceMessage<'_>) -> Result<(), Rejection>;

    /// The device message the record carries, through the device mappings; why not,
    /// when it carries none (undecodable, not JSON, an unknown shape).
    fn device_message<'a>(
        &'a self,
        mappings: &DeviceMappings,
    ) -> Result<DeviceMessage<'a>, Rejection> {
        match self.payload() {
            Payload::Decoded(bytes) => mappings.map(bytes),
            Payload::Undecodable { rejection, .. } => Err(rejection.clone()),
        }
    }
}

impl Delivered for StreamRecord {
    fn payload(&self) -> &Payload {
        &self.kinesis.data
    }
    fn arrival_ms(&self) -> i64 {
        StreamRecord::arrival_ms(self)
    }
    fn source(&self) -> Source {
        Source::Stream
    }
    fn reference(&self) -> String {
        format!("{}:{}", self.shard_id(), self.kinesis.sequence_number)
    }
    fn folder(&self) -> String {
        self.shard_id().to_owned()
    }
    fn position(&self) -> String {
        self.kinesis.sequence_number.clone()
    }
    /// The partition key is the MQTT topic's device, which the device's certificate is bound to.
    fn check_publisher(&self, message: &DeviceMessage<'_>) -> Result<(), Rejection> {
        message.check_publisher(self.publisher())
    }
}

/// One Kafka record with the cluster it came from.
#[derive(Debug, Clone, Copy)]
pub struct KafkaRef<'a> {
    pub cluster: &'a str,
    pub record: &'a KafkaRecord,
}

impl KafkaRef<'_> {
    /// `<topic>-<partition>`: the key of the event's `records`, and of the partial batch response.
    pub fn topic_partition(&self) -> String {
        format!("{}-{}", self.record.topic, self.record.partition)
    }

    pub fn item_identifier(&self) -> KafkaItemIdentifier {
        KafkaItemIdentifier {
            partition: self.topic_partition(),
            offset: self.record.offset,
        }
    }
}

/// The batch's records in a fixed order (topic-partition, then offset as delivered), so a
/// redelivered batch is processed, keyed and quarantined exactly as the first time.
pub fn kafka_records(batch: &KafkaBatch) -> Vec<KafkaRef<'_>> {
    let cluster = cluster_name(batch);
    batch
        .records
        .values()
        .flatten()
        .map(|record| KafkaRef { cluster, record })
        .collect()
}

impl Delivered for KafkaRef<'_> {
    fn payload(&self) -> &Payload {
        &self.record.value
    }
    fn arrival_ms(&self) -> i64 {
        self.record.timestamp.max(0)
    }
    fn source(&self) -> Source {
        Source::Kafka
    }
    /// `kafka:<cluster>/<topic>-<partition>:<offset>`: unique across clusters and topics.
    fn reference(&self) -> String {
        format!(
            "kafka:{}/{}-{}:{}",
            self.cluster, self.record.topic, self.record.partition, self.record.offset
        )
    }
    fn folder(&self) -> String {
        format!(
            "kafka-{}-{}-{}",
            self.cluster, self.record.topic, self.record.partition
        )
    }
    fn position(&self) -> String {
        self.record.offset.to_string()
    }
    /// A legacy producer is trusted as a platform (the event source mapping authenticates
    /// it), not as a device; a record key, when set, is the device id by the legacy
    /// platforms' convention and must match the message.
    fn check_publisher(&self, message: &DeviceMessage<'_>) -> Result<(), Rejection> {
        match &self.record.key {
            Key::Absent => Ok(()),
            Key::Text(device) => message.check_publisher(device),
            Key::Unreadable => Err(Rejection::new(
                Reason::DeviceMismatch,
                "the record key is not base64 UTF-8 text, so it cannot name the device",
            )),
        }
    }
}
