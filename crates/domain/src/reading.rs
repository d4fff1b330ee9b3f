//! The canonical reading: the lake's row, and its idempotency key.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::ser::{CompactFormatter, Formatter};
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
    /// A legacy platform's Kafka topic (Amazon MSK or Event Hubs), during the migration.
    Kafka,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Stream => "stream",
            Source::File => "file",
            Source::Kafka => "kafka",
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
    /// The cohort of the device's assignment at `measured_at` (none when it has none, and
    /// in rows written before the column existed): what team filters select on, since
    /// Lake Formation can filter only on the row's own columns.
    #[serde(default, borrow)]
    pub cohort: Option<Cow<'a, str>>,
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
            cohort: self.cohort.map(|c| Cow::Owned(c.into_owned())),
        }
    }

    /// Appends this reading as one JSON line: the record format delivered to Firehose,
    /// whose Parquet conversion reads it with the lake table's schema, by field name.
    /// The same bytes as the `Serialize` impl below (a property test holds them equal),
    /// written directly: through serde every key and every static value was scanned for
    /// escapes, 37% of the stream path's time in the profile (issue 25).
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        self.write_json_line_with(out, &mut LineTail::default());
    }

    /// As [`Reading::write_json_line`], with the line's end taken from `tail` when this
    /// reading shares its fields (the readings of one device message do).
    pub fn write_json_line_with(&self, out: &mut Vec<u8>, tail: &mut LineTail) {
        let mut f = CompactFormatter;
        out.extend_from_slice(b"{\"reading_id\":\"");
        out.extend_from_slice(self.reading_id.hex().as_bytes());
        out.extend_from_slice(b"\",\"sensor_id\":");
        write_json_str(out, &self.sensor_id);
        out.extend_from_slice(b",\"value\":");
        if self.value.is_finite() {
            // Writing to a Vec cannot fail.
            let _ = f.write_f64(out, self.value);
        } else {
            out.extend_from_slice(b"null");
        }
        out.extend_from_slice(b",\"measured_at\":");
        let _ = f.write_i64(out, self.measured_at);
        out.extend_from_slice(b",\"unit\":");
        write_json_str(out, self.unit());
        out.extend_from_slice(b",\"loinc\":");
        write_json_str(out, self.loinc());
        out.extend_from_slice(b",\"metric\":");
        write_json_str(out, self.metric.name());
        out.extend_from_slice(tail.of(self));
    }
}

/// The end of a reading's JSON line, from `subject_id` on: the fields the readings of one
/// message share (subject, device, receipt, provenance, cohort). Kept from one reading to the
/// next and written again only when one of those fields differs (it compares them all,
/// so any reading may use any tail).
#[derive(Debug, Default)]
pub struct LineTail {
    subject_id: String,
    device_id: String,
    received_at: i64,
    source: Option<Source>,
    source_ref: String,
    cohort: Option<String>,
    json: Vec<u8>,
}

impl LineTail {
    fn of(&mut self, r: &Reading<'_>) -> &[u8] {
        let same = self.source == Some(r.source)
            && self.received_at == r.received_at
            && self.subject_id == *r.subject_id
            && self.device_id == *r.device_id
            && self.source_ref == *r.source_ref
            && self.cohort.as_deref() == r.cohort.as_deref();
        if !same {
            for (kept, now) in [
                (&mut self.subject_id, &r.subject_id),
                (&mut self.device_id, &r.device_id),
                (&mut self.source_ref, &r.source_ref),
            ] {
                kept.clear();
                kept.push_str(now);
            }
            (self.received_at, self.source) = (r.received_at, Some(r.source));
            self.cohort = r.cohort.as_deref().map(str::to_owned);
            let out = &mut self.json;
            out.clear();
            out.extend_from_slice(b",\"subject_id\":");
            write_json_str(out, &r.subject_id);
            out.extend_from_slice(b",\"device_id\":");
            write_json_str(out, &r.device_id);
            out.extend_from_slice(b",\"received_at\":");
            let _ = CompactFormatter.write_i64(out, r.received_at);
            out.extend_from_slice(b",\"source\":");
            write_json_str(out, r.source.as_str());
            out.extend_from_slice(b",\"source_ref\":");
            write_json_str(out, &r.source_ref);
            out.extend_from_slice(b",\"cohort\":");
            match &r.cohort {
                Some(c) => write_json_str(out, c),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b"}\n");
        }
        &self.json
    }
}

/// A JSON string: copied as is when nothing in it needs an escape (the common case; ids
/// are checked free of control characters), else through serde_json's escaper.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // No early exit, so the check compiles to a vector loop.
    let needs_escape = s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if needs_escape {
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// The lake row as JSON: every column, plus `metric`, which Firehose partitions on (it
/// is a partition key, not a column, in Parquet). The order is `write_json_line`'s.
impl Serialize for Reading<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Reading", 13)?;
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
        st.serialize_field("cohort", &self.cohort)?;
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
            cohort: Some("adult".into()),
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

    proptest::proptest! {
        /// The hand-written line is byte for byte what serde_json makes of the reading,
        /// for any text in any field (quotes, backslashes, control and non-ASCII
        /// characters) and any value, infinities and NaN included.
        #[test]
        fn the_json_line_is_what_serde_json_writes(
            subject in ".{0,20}", device in "[a-z\"\\\\\u{0}-\u{1f}é✓]{0,12}", sensor in "\\PC{0,12}",
            source_ref in ".{0,40}", value in proptest::num::f64::ANY,
            measured_at in proptest::num::i64::ANY, received_at in proptest::num::i64::ANY,
            metric in 0usize..9, file in proptest::bool::ANY,
            cohort in proptest::option::of("\\PC{0,10}"),
        ) {
            let metric = Metric::all().nth(metric % Metric::all().count()).unwrap();
            let r = Reading {
                reading_id: ReadingId::derive(&device, &sensor, metric, measured_at),
                subject_id: subject.as_str().into(),
                device_id: device.as_str().into(),
                sensor_id: sensor.as_str().into(),
                metric,
                value,
                measured_at,
                received_at,
                source: if file { Source::File } else { Source::Stream },
                source_ref: source_ref.as_str().into(),
                cohort: cohort.as_deref().map(Into::into),
            };
            let mut line = Vec::new();
            r.write_json_line(&mut line);
            let mut expected = serde_json::to_vec(&r).unwrap();
            expected.push(b'\n');
            proptest::prop_assert_eq!(String::from_utf8(line).unwrap(), String::from_utf8(expected.clone()).unwrap());
            // A tail kept from another reading (the same but for one shared field, or the
            // same in all) gives the same line.
            let others = [
                Reading { subject_id: format!("{subject}x").into(), ..r.clone() },
                Reading { device_id: format!("{device}x").into(), ..r.clone() },
                Reading { source_ref: format!("x{source_ref}").into(), ..r.clone() },
                Reading { received_at: received_at.wrapping_add(1), ..r.clone() },
                Reading { source: if file { Source::Stream } else { Source::File }, ..r.clone() },
                Reading { cohort: match &r.cohort { Some(_) => None, None => Some("x".into()) }, ..r.clone() },
                r.clone(),
            ];
            for other in others {
                let mut tail = LineTail::default();
                other.write_json_line_with(&mut Vec::new(), &mut tail);
                let mut line = Vec::new();
                r.write_json_line_with(&mut line, &mut tail);
                proptest::prop_assert_eq!(&line, &expected);
            }
        }
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
