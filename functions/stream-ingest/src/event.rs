//! The Kinesis batch stream-ingest receives (shared with vitals-alert, which reads the
//! same stream).

pub use pulselake_adapters::kinesis_events::{KinesisData, Payload, StreamBatch, StreamRecord};
