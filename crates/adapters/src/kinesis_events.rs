//! The Kinesis batch as Lambda delivers it, read leniently: one record with undecodable
//! data must be quarantined on its own, not fail the deserialization of the whole
//! batch (which is what a strict `Base64Data` field would do).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pulselake_domain::message::DeviceMessage;
use pulselake_domain::{DeviceMappings, MAX_PAYLOAD_BYTES, Reason, Rejection};
use serde::Deserialize;
use serde::de::{Deserializer, Visitor};

#[derive(Debug, Default, Deserialize)]
pub struct StreamBatch {
    #[serde(rename = "Records", default)]
    pub records: Vec<StreamRecord>,
}

#[derive(Debug, Deserialize)]
pub struct StreamRecord {
    /// `shardId-000000000000:4959...`: the shard is the part before the colon.
    #[serde(rename = "eventID", default)]
    pub event_id: String,
    pub kinesis: KinesisData,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KinesisData {
    #[serde(default)]
    pub data: Payload,
    pub sequence_number: String,
    #[serde(default)]
    pub partition_key: String,
    /// Seconds since the epoch, with a fraction (a JSON number from Lambda; a string is accepted too).
    #[serde(default, deserialize_with = "seconds")]
    pub approximate_arrival_timestamp: f64,
}

fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrText {
        Num(f64),
        Text(String),
    }
    match NumOrText::deserialize(d)? {
        NumOrText::Num(n) => Ok(n),
        NumOrText::Text(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// A record's data, base64-decoded while the event is read: straight from the event's
/// bytes, without first copying and UTF-8-checking the base64 text.
#[derive(Debug)]
pub enum Payload {
    Decoded(Vec<u8>),
    /// Kept as delivered, for the quarantine.
    Undecodable {
        raw: String,
        rejection: Rejection,
    },
}

impl Default for Payload {
    fn default() -> Self {
        Payload::Decoded(Vec::new())
    }
}

/// Base64 of a 128 KB payload is about 171 KB; anything much longer is oversized unseen.
const MAX_ENCODED_BYTES: usize = MAX_PAYLOAD_BYTES / 3 * 4 + 8;

impl Payload {
    /// Decodes a transport's base64, refusing what exceeds the device contract.
    pub fn decode(b64: &[u8]) -> Payload {
        let undecodable = |reason, detail: String| Payload::Undecodable {
            raw: String::from_utf8_lossy(b64).into_owned(),
            rejection: Rejection::new(reason, detail),
        };
        let oversized = || format!("payload exceeds {MAX_PAYLOAD_BYTES} bytes");
        if b64.len() > MAX_ENCODED_BYTES {
            return undecodable(Reason::Oversized, oversized());
        }
        match STANDARD.decode(b64) {
            Ok(bytes) if bytes.len() > MAX_PAYLOAD_BYTES => {
                undecodable(Reason::Oversized, oversized())
            }
            Ok(bytes) => Payload::Decoded(bytes),
            Err(e) => undecodable(
                Reason::InvalidBase64,
                format!("record data is not base64: {e}"),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Payload;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("base64 text")
            }
            fn visit_bytes<E>(self, b: &[u8]) -> Result<Payload, E> {
                Ok(Payload::decode(b))
            }
            fn visit_str<E>(self, s: &str) -> Result<Payload, E> {
                Ok(Payload::decode(s.as_bytes()))
            }
        }
        // serde_json hands a string's raw bytes to `deserialize_bytes`, unvalidated and uncopied.
        d.deserialize_bytes(V)
    }
}

impl StreamRecord {
    pub fn shard_id(&self) -> &str {
        self.event_id
            .split_once(':')
            .map_or("unknown-shard", |(shard, _)| shard)
    }

    /// The device that published the record: the partition key, which the IoT rule sets
    /// from the MQTT topic (`pulselake/devices/<device>/vitals`).
    pub fn publisher(&self) -> &str {
        &self.kinesis.partition_key
    }

    /// When Kinesis accepted the record, in epoch ms: the reading's `received_at`.
    /// Taken from the record, not the clock, so a redelivered record yields identical rows.
    pub fn arrival_ms(&self) -> i64 {
        (self.kinesis.approximate_arrival_timestamp * 1000.0).round() as i64
    }

    /// The device message the record carries, through the device mappings; why not,
    /// when it carries none (undecodable, not JSON, an unknown shape).
    pub fn device_message<'a>(
        &'a self,
        mappings: &DeviceMappings,
    ) -> Result<DeviceMessage<'a>, Rejection> {
        match &self.kinesis.data {
            Payload::Decoded(bytes) => mappings.map(bytes),
            Payload::Undecodable { rejection, .. } => Err(rejection.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_event_lambda_sends() {
        let batch: StreamBatch =
            serde_json::from_str(include_str!("../../../events/stream-ingest.kinesis.json"))
                .unwrap();
        assert!(!batch.records.is_empty());
        let r = &batch.records[0];
        assert_eq!(r.shard_id(), "shardId-000000000000");
        assert!(r.arrival_ms() > 1_700_000_000_000);
    }

    #[test]
    fn a_record_with_broken_base64_still_parses_as_an_event() {
        let json = r#"{"Records":[{"eventID":"shardId-000000000001:1","kinesis":{"data":"%%%not base64","sequenceNumber":"1","partitionKey":"k","approximateArrivalTimestamp":1795342530.25}}]}"#;
        let batch: StreamBatch = serde_json::from_str(json).unwrap();
        match &batch.records[0].kinesis.data {
            Payload::Undecodable { raw, rejection } => {
                assert_eq!(raw, "%%%not base64");
                assert_eq!(rejection.reason, Reason::InvalidBase64);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(batch.records[0].arrival_ms(), 1_795_342_530_250);
    }

    #[test]
    fn an_arrival_time_written_as_text_is_read_too() {
        let json = r#"{"Records":[{"eventID":"s:1","kinesis":{"data":"e30=","sequenceNumber":"1","approximateArrivalTimestamp":"1795342530.25"}}]}"#;
        let batch: StreamBatch = serde_json::from_str(json).unwrap();
        assert_eq!(batch.records[0].arrival_ms(), 1_795_342_530_250);
        assert!(matches!(&batch.records[0].kinesis.data, Payload::Decoded(b) if b == b"{}"));
    }

    #[test]
    fn data_is_decoded_the_same_from_bytes_and_from_a_json_value() {
        let json =
            r#"{"Records":[{"eventID":"s:1","kinesis":{"data":"aGVsbG8=","sequenceNumber":"1"}}]}"#;
        let from_bytes: StreamBatch = serde_json::from_slice(json.as_bytes()).unwrap();
        let from_value: StreamBatch =
            serde_json::from_value(serde_json::from_str(json).unwrap()).unwrap();
        for b in [from_bytes, from_value] {
            assert!(matches!(&b.records[0].kinesis.data, Payload::Decoded(d) if d == b"hello"));
        }
    }
}
