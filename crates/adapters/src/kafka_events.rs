//! The Kafka batch as Lambda delivers it from Amazon MSK (`aws:kafka`) or a self-managed
//! cluster (`SelfManagedKafka`, e.g. Azure Event Hubs' Kafka endpoint): records grouped
//! by `<topic>-<partition>`, key and value in base64, headers as byte arrays.
//!
//! Read leniently, like the Kinesis batch: a record with a null, undecodable or oversized
//! value is quarantined on its own, and headers of any shape are skipped, so one odd
//! record never fails the deserialization of the whole batch.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pulselake_domain::{Reason, Rejection};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

pub use crate::kinesis_events::Payload;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBatch {
    /// `aws:kafka` (MSK) or `SelfManagedKafka`.
    #[serde(default)]
    pub event_source: String,
    /// MSK: the cluster's ARN (`arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>`).
    #[serde(default, rename = "eventSourceArn")]
    pub event_source_arn: Option<String>,
    /// Self-managed: the bootstrap servers, comma-separated.
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    /// Keyed by `<topic>-<partition>`; offsets ascend within each.
    #[serde(default)]
    pub records: BTreeMap<String, Vec<KafkaRecord>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Epoch ms (the producer's create time, or the broker's log-append time).
    #[serde(default)]
    pub timestamp: i64,
    #[serde(default, deserialize_with = "key")]
    pub key: Key,
    #[serde(default = "no_value", deserialize_with = "value")]
    pub value: Payload,
    /// Not read: legacy producers put anything here, and nothing depends on it.
    #[serde(default)]
    pub headers: IgnoredAny,
}

/// A record's key: by the legacy platforms' convention the device id, when set.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Key {
    #[default]
    Absent,
    Text(String),
    /// Not base64, or not UTF-8 once decoded.
    Unreadable,
}

fn key<'de, D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
    Ok(match Option::<String>::deserialize(d)? {
        None => Key::Absent,
        Some(b64) => match STANDARD.decode(b64.as_bytes()).map(String::from_utf8) {
            Ok(Ok(text)) => Key::Text(text),
            _ => Key::Unreadable,
        },
    })
}

fn no_value() -> Payload {
    Payload::Undecodable {
        raw: String::new(),
        rejection: Rejection::new(
            Reason::NotJson,
            "the Kafka record has no value (null): nothing to read",
        ),
    }
}

fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Payload, D::Error> {
    Ok(Option::<Payload>::deserialize(d)?.unwrap_or_else(no_value))
}

/// Where a batch came from: the MSK cluster's name, or the first bootstrap server's host.
/// Part of every record's reference, so two clusters' offsets never collide.
pub fn cluster_name(batch: &KafkaBatch) -> &str {
    if let Some(name) = batch
        .event_source_arn
        .as_deref()
        .and_then(|arn| arn.split(":cluster/").nth(1))
        .and_then(|rest| rest.split('/').next())
    {
        return name;
    }
    batch
        .bootstrap_servers
        .as_deref()
        .and_then(|s| s.split(',').next())
        .map(|s| s.split(':').next().unwrap_or(s).trim())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown-cluster")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_msk_event_lambda_sends() {
        let batch: KafkaBatch =
            serde_json::from_str(include_str!("../../../events/stream-ingest.msk.json")).unwrap();
        assert_eq!(batch.event_source, "aws:kafka");
        assert_eq!(cluster_name(&batch), "legacy-vitals");
        let (tp, records) = batch.records.iter().next().unwrap();
        assert_eq!(tp, "vitals-0");
        assert_eq!(records[0].topic, "vitals");
        assert!(matches!(&records[0].value, Payload::Decoded(b) if b.starts_with(b"{")));
        assert_eq!(records[0].key, Key::Text("dev-000123".into()));
    }

    #[test]
    fn reads_the_self_managed_event_with_headers_of_any_shape() {
        let batch: KafkaBatch =
            serde_json::from_str(include_str!("../../../events/stream-ingest.kafka.json")).unwrap();
        assert_eq!(batch.event_source, "SelfManagedKafka");
        assert_eq!(cluster_name(&batch), "legacy-hub.servicebus.windows.net");
        assert_eq!(batch.records.values().map(Vec::len).sum::<usize>(), 2);
    }

    #[test]
    fn null_keys_and_values_and_broken_base64_are_kept_per_record() {
        let json = r#"{"eventSource":"SelfManagedKafka","bootstrapServers":"b:9093","records":{"t-1":[
            {"topic":"t","partition":1,"offset":7,"timestamp":1795342530000,"key":null,"value":null,"headers":[{"h":[1,2]}]},
            {"topic":"t","partition":1,"offset":8,"timestamp":1795342530000,"key":"%%","value":"%%%","headers":"odd"},
            {"topic":"t","partition":1,"offset":9,"value":"e30=","headers":[{"x":"not bytes"}]}]}}"#;
        let batch: KafkaBatch = serde_json::from_str(json).unwrap();
        let r = &batch.records["t-1"];
        assert_eq!(r[0].key, Key::Absent);
        assert!(
            matches!(&r[0].value, Payload::Undecodable { rejection, .. } if rejection.reason == Reason::NotJson)
        );
        assert_eq!(r[1].key, Key::Unreadable);
        assert!(
            matches!(&r[1].value, Payload::Undecodable { rejection, .. } if rejection.reason == Reason::InvalidBase64)
        );
        assert!(matches!(&r[2].value, Payload::Decoded(b) if b == b"{}"));
        assert_eq!(r[2].timestamp, 0);
    }

    #[test]
    fn an_oversized_value_is_refused_unread() {
        let big = STANDARD.encode(vec![b'x'; pulselake_domain::MAX_PAYLOAD_BYTES + 1]);
        let json = format!(
            r#"{{"records":{{"t-0":[{{"topic":"t","partition":0,"offset":1,"value":"{big}"}}]}}}}"#
        );
        let batch: KafkaBatch = serde_json::from_str(&json).unwrap();
        assert!(
            matches!(&batch.records["t-0"][0].value, Payload::Undecodable { rejection, .. } if rejection.reason == Reason::Oversized)
        );
    }
}
