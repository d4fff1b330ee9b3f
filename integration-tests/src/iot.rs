//! The IoT Core topic rule, for the local stack: messages published on
//! `pulselake/devices/<device>/vitals` go to the Kinesis stream, partitioned by device.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use crate::Result;
use crate::provision::Stack;

/// IoT Core's message size limit: larger publishes are refused by the broker.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// The rule's topic filter (`template.yaml`: `SELECT * FROM 'pulselake/devices/+/vitals'`).
pub fn topic_for(device_id: &str) -> String {
    format!("pulselake/devices/{device_id}/vitals")
}

/// The partition key the rule uses: `${topic(3)}`, the device id.
fn partition_key(topic: &str) -> Option<&str> {
    let mut parts = topic.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("pulselake"), Some("devices"), Some(device), Some("vitals"), None)
            if !device.is_empty() =>
        {
            Some(device)
        }
        _ => None,
    }
}

/// What publishing achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Published {
    pub routed: usize,
    /// Not matched by the rule, or refused by the broker for size.
    pub refused: usize,
}

/// Publishes messages as devices would; the rule routes them to Kinesis.
/// (The rule's Kinesis action puts one record per message; putting them in batches
/// here is only faster, with the same records in the same per-device order.)
pub async fn publish(stack: &Stack, messages: &[(String, Vec<u8>)]) -> Result<Published> {
    let mut out = Published::default();
    let mut entries = Vec::new();
    for (topic, payload) in messages {
        match partition_key(topic) {
            Some(key) if payload.len() <= MAX_MESSAGE_BYTES => {
                entries.push(
                    PutRecordsRequestEntry::builder()
                        .partition_key(key)
                        .data(Blob::new(payload.clone()))
                        .build()?,
                );
            }
            _ => out.refused += 1,
        }
    }
    for chunk in entries.chunks(500) {
        let mut pending = chunk.to_vec();
        for _ in 0..10 {
            let resp = stack
                .kinesis
                .put_records()
                .stream_name(&stack.names.stream)
                .set_records(Some(pending.clone()))
                .send()
                .await?;
            let failed: Vec<_> = resp
                .records()
                .iter()
                .zip(&pending)
                .filter(|(r, _)| r.error_code().is_some())
                .map(|(_, e)| e.clone())
                .collect();
            out.routed += pending.len() - failed.len();
            if failed.is_empty() {
                break;
            }
            pending = failed;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_matches_device_vitals_topics_only() {
        assert_eq!(partition_key(&topic_for("dev-1")), Some("dev-1"));
        assert_eq!(partition_key("pulselake/devices//vitals"), None);
        assert_eq!(partition_key("pulselake/devices/dev-1/vitals/extra"), None);
        assert_eq!(partition_key("other/devices/dev-1/vitals"), None);
    }
}
