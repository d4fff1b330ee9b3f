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

    /// Lowercase hex, written to a stack buffer (a table of byte pairs: this runs per reading).
    pub fn hex(&self) -> HexId {
        static PAIRS: [[u8; 2]; 256] = {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            let mut t = [[0u8; 2]; 256];
            let mut i = 0;
            while i < 256 {
                t[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
                i += 1;
            }
            t
        };
        let mut out = [0u8; 32];
        for (i, b) in self.0.iter().enumerate() {
            let [hi, lo] = PAIRS[usize::from(*b)];
            out[2 * i] = hi;
            out[2 * i + 1] = lo;
        }
        HexId(out)
    }

    pub fn parse_hex(s: &str) -> Option<ReadingId> {
        let b = s.as_bytes();
        if b.len() != 32 {
            return None;
        }
        let nib = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut id = [0u8; 16];
        for i in 0..16 {
            id[i] = nib(b[2 * i])? << 4 | nib(b[2 * i + 1])?;
        }
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
    /// whose Parquet conversion reads it with the lake table's schema (by field name;
    /// the order here is for speed). Equal byte for byte to the `Serialize` impl.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        self.write_json_line_with(out, &LineTail::of(self));
    }

    /// As `write_json_line`, with the fields shared by a message's readings rendered
    /// once (`tail` must have been made from a reading with the same shared fields).
    pub fn write_json_line_with(&self, out: &mut Vec<u8>, tail: &LineTail) {
        out.extend_from_slice(b"{\"reading_id\":\"");
        out.extend_from_slice(self.reading_id.hex().as_bytes());
        out.extend_from_slice(b"\",\"sensor_id\":");
        write_json_str(out, &self.sensor_id);
        out.extend_from_slice(b",\"value\":");
        write_json_f64(out, self.value);
        out.extend_from_slice(b",\"measured_at\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.measured_at).as_bytes());
        out.extend_from_slice(metric_fields(self.metric).as_bytes());
        out.extend_from_slice(&tail.0);
    }
}

/// The JSON of the fields a message's readings share (subject, device, receipt and
/// provenance), with the closing brace and newline: rendered once per message.
#[derive(Debug, Clone, PartialEq)]
pub struct LineTail(Vec<u8>);

impl LineTail {
    pub fn of(r: &Reading<'_>) -> LineTail {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(b",\"subject_id\":");
        write_json_str(&mut out, &r.subject_id);
        out.extend_from_slice(b",\"device_id\":");
        write_json_str(&mut out, &r.device_id);
        out.extend_from_slice(b",\"received_at\":");
        out.extend_from_slice(itoa::Buffer::new().format(r.received_at).as_bytes());
        out.extend_from_slice(b",\"source\":\"");
        out.extend_from_slice(r.source.as_str().as_bytes());
        out.extend_from_slice(b"\",\"source_ref\":");
        write_json_str(&mut out, &r.source_ref);
        out.extend_from_slice(b"}\n");
        LineTail(out)
    }
}

/// `,"unit":…,"loinc":…,"metric":…` for a metric: static, rendered once per process.
fn metric_fields(m: Metric) -> &'static str {
    static FIELDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = FIELDS.get_or_init(|| {
        Metric::all()
            .map(|m| {
                format!(
                    ",\"unit\":{},\"loinc\":\"{}\",\"metric\":\"{}\"",
                    json_text(m.unit()),
                    m.loinc(),
                    m.name()
                )
            })
            .collect()
    });
    Metric::all()
        .position(|x| x == m)
        .and_then(|i| all.get(i))
        .map_or("", String::as_str)
}

fn json_text(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// A number as serde_json writes it. Most vitals are whole numbers: those skip the float
/// formatter (`72.0`, as serde_json prints it); zero is left to it for its sign.
fn write_json_f64(out: &mut Vec<u8>, v: f64) {
    if v.fract() == 0.0 && v != 0.0 && v.abs() < 1e15 {
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
        out.extend_from_slice(b".0");
    } else {
        // Serializing a number into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &v);
    }
}

/// A JSON string: copied as is when nothing needs escaping (the common case), else
/// escaped by serde_json. The check has no early exit, so it vectorizes.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    let needs_escape = s.bytes().fold(false, |acc, b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escape {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
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
    fn the_hand_written_line_equals_serde_output_even_for_strings_that_need_escaping() {
        for (subject, sensor, value) in [
            ("subj-1", "hr-0", 72.0),
            ("quote\"back\\slash", "tab\tnewline\n", -0.000123),
            ("ünïcødé ✓", "\u{1}ctl", 1e21),
            ("s", "whole", 120.0),
            ("s", "negative", -40.0),
            ("s", "zero", 0.0),
            ("s", "negative zero", -0.0),
            ("s", "big", 1e15),
            ("s", "fraction", 36.6),
        ] {
            let r = Reading {
                reading_id: ReadingId::derive("d", sensor, Metric::Glucose, 7),
                subject_id: subject.into(),
                device_id: "dev-\"x\"".into(),
                sensor_id: sensor.into(),
                metric: Metric::Glucose,
                value,
                measured_at: -5,
                received_at: i64::MAX,
                source: Source::File,
                source_ref: "sha256:abc".into(),
            };
            let mut fast = Vec::new();
            r.write_json_line(&mut fast);
            let mut expected = serde_json::to_vec(&r).unwrap();
            expected.push(b'\n');
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
