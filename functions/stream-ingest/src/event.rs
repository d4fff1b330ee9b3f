//! The Kinesis batch as Lambda delivers it, read leniently: one record with undecodable
//! data must be quarantined on its own, not fail the deserialization of the whole
//! batch (which is what a strict `Base64Data` field would do).

use serde::Deserialize;

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
    pub data: String,
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

impl StreamRecord {
    pub fn shard_id(&self) -> &str {
        self.event_id
            .split_once(':')
            .map_or("unknown-shard", |(shard, _)| shard)
    }

    /// When Kinesis accepted the record, in epoch ms: the reading's `received_at`.
    /// Taken from the record, not the clock, so a redelivered record yields identical rows.
    pub fn arrival_ms(&self) -> i64 {
        (self.kinesis.approximate_arrival_timestamp * 1000.0).round() as i64
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
        assert_eq!(batch.records[0].kinesis.data, "%%%not base64");
        assert_eq!(batch.records[0].arrival_ms(), 1_795_342_530_250);
    }

    #[test]
    fn an_arrival_time_written_as_text_is_read_too() {
        let json = r#"{"Records":[{"eventID":"s:1","kinesis":{"data":"","sequenceNumber":"1","approximateArrivalTimestamp":"1795342530.25"}}]}"#;
        let batch: StreamBatch = serde_json::from_str(json).unwrap();
        assert_eq!(batch.records[0].arrival_ms(), 1_795_342_530_250);
    }
}
