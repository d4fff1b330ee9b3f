//! The canonical reading: the lake's row, and its idempotency key.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::metric::Metric;

/// The idempotency key of a reading everywhere in pulselake: the first 128 bits of
/// SHA-256 over (device, sensor, metric, measured-at). The same measurement delivered
/// twice, by any path, has the same id; one sensor reporting two metrics at one instant
/// (a pulse oximeter's heart rate and SpO2) gives two ids.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReadingId(pub [u8; 16]);

/// Prefixed to what a reading id hashes, so ids cannot collide with other SHA-256 uses.
/// `v2`: the metric joined the key (v1 ids hashed device, sensor and time only).
const ID_DOMAIN: &[u8] = b"pulselake.reading.v2";

impl ReadingId {
    pub fn derive(
        device_id: &str,
        sensor_id: &str,
        metric: Metric,
        measured_at_ms: i64,
    ) -> ReadingId {
        let mut h = Sha256::new();
        h.update(ID_DOMAIN);
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        for part in [device_id, sensor_id, metric.name()] {
            h.update((part.len() as u32).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.update(measured_at_ms.to_be_bytes());
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        ReadingId(id)
    }

    /// Lowercase hex, on the stack.
    pub fn hex(&self) -> HexId {
        let mut out = [0u8; 32];
        // 16 bytes always fit 32 hex digits.
        let _ = hex::encode_to_slice(self.0, &mut out);
        HexId(out)
    }

    /// Parses the 32 lowercase hex digits of an id (as stored in the lake).
    pub fn parse_hex(s: &str) -> Option<ReadingId> {
        if s.len() != 32 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut id = [0u8; 16];
        hex::decode_to_slice(s, &mut id).ok()?;
        Some(ReadingId(id))
    }
}

/// A reading id as 32 hex characters, without allocation.
pub struct HexId([u8; 32]);

impl HexId {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for ReadingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

impl fmt::Debug for ReadingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReadingId({self})")
    }
}

impl Serialize for ReadingId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.hex().as_str())
    }
}

impl<'de> Deserialize<'de> for ReadingId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        ReadingId::parse_hex(&s)
            .ok_or_else(|| de::Error::custom("reading_id must be 32 lowercase hex digits"))
    }
}

impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        Metric::from_name(&s).ok_or_else(|| de::Error::custom(format!("unknown metric {s:?}")))
    }
}

/// Which ingestion path produced a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Stream,
    File,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Stream => "stream",
            Source::File => "file",
        }
    }
}

/// Where a file row came from, as the lake's `source_ref` column says:
/// `file:<file>:L<line>`, with the staged file's keyed reference and the line its
/// record starts on. file-ingest writes it; erasure reads it to find the lines of the
/// raw copies to clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLine<'a> {
    pub file: &'a str,
    pub line: u64,
}

impl<'a> FileLine<'a> {
    /// What every row of `file` starts with: the line number follows.
    pub fn prefix(file: &str) -> String {
        format!("file:{file}:L")
    }

    /// A `source_ref` of a file row (`None` for a stream row's, or another text).
    pub fn parse(source_ref: &'a str) -> Option<FileLine<'a>> {
        let (file, line) = source_ref.strip_prefix("file:")?.rsplit_once(":L")?;
        Some(FileLine {
            file,
            line: line.parse().ok()?,
        })
    }
}

impl std::fmt::Display for FileLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "file:{}:L{}", self.file, self.line)
    }
}

/// One canonical reading: the lake row. Strings borrow from the payload and the
/// registry where they can, so the hot path does not copy them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Reading<'a> {
    pub reading_id: ReadingId,
    #[serde(borrow)]
    pub subject_id: Cow<'a, str>,
    #[serde(borrow)]
    pub device_id: Cow<'a, str>,
    #[serde(borrow)]
    pub sensor_id: Cow<'a, str>,
    pub metric: Metric,
    /// In the metric's canonical unit.
    pub value: f64,
    /// UTC epoch milliseconds.
    pub measured_at: i64,
    /// UTC epoch milliseconds at which pulselake received it.
    pub received_at: i64,
    pub source: Source,
    /// Where it came from: `<shard>:<sequence>` for the stream, `sha256:<content>` for files.
    #[serde(borrow)]
    pub source_ref: Cow<'a, str>,
}

impl Reading<'_> {
    pub fn unit(&self) -> &'static str {
        self.metric.unit()
    }

    pub fn loinc(&self) -> &'static str {
        self.metric.loinc()
    }

    pub fn into_owned(self) -> Reading<'static> {
        Reading {
            reading_id: self.reading_id,
            subject_id: Cow::Owned(self.subject_id.into_owned()),
            device_id: Cow::Owned(self.device_id.into_owned()),
            sensor_id: Cow::Owned(self.sensor_id.into_owned()),
            metric: self.metric,
            value: self.value,
            measured_at: self.measured_at,
            received_at: self.received_at,
            source: self.source,
            source_ref: Cow::Owned(self.source_ref.into_owned()),
        }
    }

    /// Appends this reading as one JSON line: the record format delivered to Firehose,
    /// whose Parquet conversion reads it with the lake table's schema, by field name.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        // Serializing to a Vec cannot fail (no I/O; every field is serializable).
        let _ = serde_json::to_writer(&mut *out, self);
        out.push(b'\n');
    }
}

/// The lake row as JSON: every column, plus `metric`, which Firehose partitions on (it
/// is a partition key, not a column, in Parquet). The order is `write_json_line`'s.
impl Serialize for Reading<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Reading", 12)?;
        st.serialize_field("reading_id", &self.reading_id)?;
        st.serialize_field("sensor_id", &self.sensor_id)?;
        st.serialize_field("value", &self.value)?;
        st.serialize_field("measured_at", &self.measured_at)?;
        st.serialize_field("unit", self.unit())?;
        st.serialize_field("loinc", self.loinc())?;
        st.serialize_field("metric", &self.metric)?;
        st.serialize_field("subject_id", &self.subject_id)?;
        st.serialize_field("device_id", &self.device_id)?;
        st.serialize_field("received_at", &self.received_at)?;
        st.serialize_field("source", &self.source)?;
        st.serialize_field("source_ref", &self.source_ref)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_id_is_deterministic_and_field_separated() {
        let hr = Metric::HeartRate;
        let a = ReadingId::derive("dev-1", "hr-0", hr, 1_795_342_530_000);
        assert_eq!(a, ReadingId::derive("dev-1", "hr-0", hr, 1_795_342_530_000));
        assert_ne!(a, ReadingId::derive("dev-1", "hr-0", hr, 1_795_342_530_001));
        assert_ne!(a, ReadingId::derive("dev-1", "hr-1", hr, 1_795_342_530_000));
        assert_ne!(a, ReadingId::derive("dev-2", "hr-0", hr, 1_795_342_530_000));
        assert_ne!(
            ReadingId::derive("ab", "c", hr, 0),
            ReadingId::derive("a", "bc", hr, 0)
        );
        // Pinned: the id is a contract with the lake; changing the derivation would
        // break idempotency against data already stored. (Checked independently with
        // Python hashlib: sha256(b"pulselake.reading.v2" + for each of device, sensor,
        // metric: u32 BE length + bytes, then i64 BE ms)[:16].)
        assert_eq!(a.to_string(), "c64c968658c493e487f1934b4dafb9b2");
        assert_eq!(ReadingId::parse_hex(&a.to_string()), Some(a));
        assert_eq!(
            ReadingId::parse_hex("C64C968658C493E487F1934B4DAFB9B2"),
            None
        );
    }

    #[test]
    fn two_metrics_from_one_sensor_at_one_instant_have_two_ids() {
        let at = 1_795_341_600_000;
        let hr = ReadingId::derive("dev-000001", "ox-0", Metric::HeartRate, at);
        let spo2 = ReadingId::derive("dev-000001", "ox-0", Metric::Spo2, at);
        assert_ne!(hr, spo2);
        assert_eq!(hr.to_string(), "ac1c565f5c16ca564c3eb786945da555");
        assert_eq!(spo2.to_string(), "f6cbdd86efd7480286348d523b81e45a");
    }

    #[test]
    fn json_line_round_trips_with_derived_unit_and_loinc() {
        let r = Reading {
            reading_id: ReadingId::derive("d", "s", Metric::BodyTemp, 5),
            subject_id: "subj-1".into(),
            device_id: "d".into(),
            sensor_id: "s".into(),
            metric: Metric::BodyTemp,
            value: 37.25,
            measured_at: 5,
            received_at: 9,
            source: Source::Stream,
            source_ref: "shardId-000000000000:1".into(),
        };
        let mut line = Vec::new();
        r.write_json_line(&mut line);
        assert_eq!(*line.last().unwrap(), b'\n');
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["unit"], "Cel");
        assert_eq!(v["loinc"], "8310-5");
        assert_eq!(v["metric"], "body_temp");
        let back: Reading = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_file_line_reads_back_what_file_ingest_writes() {
        let written = format!("{}{}", FileLine::prefix("ab:12"), 40);
        let parsed = FileLine::parse(&written).unwrap();
        assert_eq!((parsed.file, parsed.line), ("ab:12", 40));
        assert_eq!(parsed.to_string(), written);
        assert_eq!(FileLine::parse("shard-0:49590"), None);
        assert_eq!(FileLine::parse("file:ab:Lx"), None);
    }
}
