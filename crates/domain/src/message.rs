//! Device messages: the canonical parsed form, and the native v1 contract parser.
//!
//! The v1 parser reads a payload in one pass, borrowing strings from it, and is
//! lenient on purpose: a reading of the wrong shape becomes a rejection for that
//! reading alone, with a precise reason, instead of failing its whole message.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::reason::{Reason, Rejection};
use crate::time::parse_rfc3339_ms;

/// The device contract's payload limit (IoT Core's 128 KB message limit).
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;
/// Identifiers longer than this are rejected: they would bloat every lake row.
pub const MAX_ID_BYTES: usize = 128;

/// A message after mapping: the device and its readings, each parsed or rejected.
#[derive(Debug)]
pub struct DeviceMessage<'a> {
    pub device_id: Cow<'a, str>,
    pub message_id: Option<Cow<'a, str>>,
    pub readings: Vec<Result<RawReading<'a>, Rejection>>,
}

impl DeviceMessage<'_> {
    /// The device a message claims must be the device that published it: the IoT rule
    /// takes the publisher from the MQTT topic, which the device's policy pins to its own
    /// thing name. Compared after mapping, so it holds for every vendor format.
    pub fn check_publisher(&self, publisher: &str) -> Result<(), Rejection> {
        if self.device_id == publisher {
            Ok(())
        } else {
            Err(Rejection::new(
                Reason::DeviceMismatch,
                "the message claims another device than the one that published it",
            ))
        }
    }
}

/// One reading as the device stated it: structurally sound, not yet validated
/// against the catalog, the registry or the clock.
#[derive(Debug, Clone, PartialEq)]
pub struct RawReading<'a> {
    pub sensor_id: Cow<'a, str>,
    pub metric: Cow<'a, str>,
    pub value: f64,
    pub unit: Cow<'a, str>,
    pub measured_at: i64,
}

/// How a timestamp field is written in a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    Rfc3339,
    EpochMillis,
    EpochSeconds,
}

/// A JSON field value before interpretation.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, str>),
    /// An object or array where a scalar was expected.
    Compound,
}

impl Scalar<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::Num(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Compound => "an object or array",
        }
    }

    pub fn from_json(v: &serde_json::Value) -> Scalar<'_> {
        use serde_json::Value;
        match v {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => n.as_f64().map_or(Scalar::Compound, Scalar::Num),
            Value::String(s) => Scalar::Str(Cow::Borrowed(s)),
            Value::Array(_) | Value::Object(_) => Scalar::Compound,
        }
    }

    pub fn into_owned(self) -> Scalar<'static> {
        match self {
            Scalar::Null => Scalar::Null,
            Scalar::Bool(b) => Scalar::Bool(b),
            Scalar::Num(n) => Scalar::Num(n),
            Scalar::Str(s) => Scalar::Str(Cow::Owned(s.into_owned())),
            Scalar::Compound => Scalar::Compound,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(n as f64))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(n as f64))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(n))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Compound)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Compound)
            }
        }
        d.deserialize_any(V)
    }
}

/// Checks an identifier-like field (device, sensor, metric, unit, message id) the same
/// way on every path, stream and file: not empty, at most [`MAX_ID_BYTES`], and for the
/// ids that land in the lake, no control characters (a NUL or a line break in a
/// sensor id would corrupt every consumer that prints or splits it).
pub fn check_id(field: &str, s: &str) -> Result<(), Rejection> {
    if s.is_empty() {
        return Err(Rejection::new(
            Reason::MissingField,
            format!("{field} is empty"),
        ));
    }
    if s.len() > MAX_ID_BYTES {
        return Err(Rejection::new(
            Reason::InvalidId,
            format!("{field} is longer than {MAX_ID_BYTES} bytes"),
        ));
    }
    if has_control(s) {
        return Err(Rejection::new(
            Reason::InvalidId,
            format!("{field} contains a control character"),
        ));
    }
    Ok(())
}

/// A control character (Unicode Cc): ASCII checked byte-wise first, the common case.
fn has_control(s: &str) -> bool {
    if s.is_ascii() {
        s.bytes().any(|b| b < 0x20 || b == 0x7f)
    } else {
        s.chars().any(char::is_control)
    }
}

/// Field accessors shared by the v1 parser and the declarative mappings.
pub(crate) fn require_text<'a>(
    field: &str,
    v: Option<Scalar<'a>>,
) -> Result<Cow<'a, str>, Rejection> {
    let text = match v {
        Some(Scalar::Str(s)) => s,
        // Integer identifiers are common in vendor payloads; they are text to us.
        Some(Scalar::Num(n)) if n.fract() == 0.0 && n.abs() < 1e15 => {
            Cow::Owned(format!("{}", n as i64))
        }
        None | Some(Scalar::Null) => {
            return Err(Rejection::new(
                Reason::MissingField,
                format!("{field} is missing"),
            ));
        }
        Some(other) => {
            return Err(Rejection::new(
                Reason::WrongShape,
                format!("{field} must be a string, found {}", other.kind()),
            ));
        }
    };
    check_id(field, &text)?;
    Ok(text)
}

pub(crate) fn require_value(v: Option<Scalar<'_>>) -> Result<f64, Rejection> {
    match v {
        Some(Scalar::Num(n)) if n.is_finite() => Ok(n),
        Some(Scalar::Num(_)) => Err(Rejection::new(
            Reason::NonFiniteValue,
            "value is not finite",
        )),
        None | Some(Scalar::Null) => Err(Rejection::new(Reason::MissingField, "value is missing")),
        Some(other) => Err(Rejection::new(
            Reason::ValueNotNumber,
            format!("value must be a JSON number, found {}", other.kind()),
        )),
    }
}

pub(crate) fn require_time(
    field: &str,
    v: Option<Scalar<'_>>,
    format: TimeFormat,
) -> Result<i64, Rejection> {
    let invalid =
        |what: String| Rejection::new(Reason::InvalidTimestamp, format!("{field} {what}"));
    match (v, format) {
        (None | Some(Scalar::Null), _) => Err(Rejection::new(
            Reason::MissingField,
            format!("{field} is missing"),
        )),
        (Some(Scalar::Str(s)), TimeFormat::Rfc3339) => parse_rfc3339_ms(&s)
            .ok_or_else(|| invalid("is not an RFC 3339 timestamp with a time zone".into())),
        (Some(Scalar::Num(n)), TimeFormat::EpochMillis | TimeFormat::EpochSeconds) => {
            let ms = if format == TimeFormat::EpochSeconds {
                n * 1000.0
            } else {
                n
            };
            // About +-31,000 years: anything beyond is garbage, and the cast must not saturate silently.
            if ms.is_finite() && ms.abs() < 1e15 {
                Ok(ms as i64)
            } else {
                Err(invalid("is out of range".into()))
            }
        }
        (Some(other), f) => Err(invalid(format!("must be {f:?}, found {}", other.kind()))),
    }
}

pub(crate) fn build_reading<'a>(
    sensor_id: Option<Scalar<'a>>,
    metric: Option<Scalar<'a>>,
    value: Option<Scalar<'a>>,
    unit: Option<Scalar<'a>>,
    measured_at: Option<Scalar<'a>>,
    time_format: TimeFormat,
) -> Result<RawReading<'a>, Rejection> {
    Ok(RawReading {
        sensor_id: require_text("sensor_id", sensor_id)?,
        metric: require_text("metric", metric)?,
        value: require_value(value)?,
        unit: require_text("unit", unit)?,
        measured_at: require_time("measured_at", measured_at, time_format)?,
    })
}

// ---- native v1 ----

/// The v1 message as devices normally send it, typed: parsed in one pass straight into
/// borrowed strings and numbers. Anything unusual (a missing field, a string where a
/// number belongs, an empty id) fails this parse, and the lenient parser below then
/// finds the precise reason for each reading.
#[derive(Deserialize)]
struct V1Strict<'a> {
    v: u32,
    device_id: &'a str,
    #[serde(default)]
    message_id: Option<&'a str>,
    readings: Vec<ObjectOnly<V1StrictReading<'a>>>,
}

/// Plain `&str`: a string with escapes cannot borrow and fails this parse, which is
/// fine: the lenient parser handles it.
#[derive(Deserialize)]
struct V1StrictReading<'a> {
    sensor_id: &'a str,
    metric: &'a str,
    value: f64,
    unit: &'a str,
    measured_at: &'a str,
}

fn plain_id(s: &str) -> bool {
    check_id("", s).is_ok()
}

/// The fast path: `Some` only for a well-formed v1 message whose every reading is
/// structurally sound (validation against the catalog and registry comes later).
pub(crate) fn parse_v1_strict(payload: &str) -> Option<DeviceMessage<'_>> {
    let ObjectOnly(m): ObjectOnly<V1Strict> = serde_json::from_str(payload).ok()?;
    if m.v != 1 || !plain_id(m.device_id) || m.readings.is_empty() {
        return None;
    }
    if m.message_id.is_some_and(|id| !plain_id(id)) {
        return None;
    }
    let mut readings = Vec::with_capacity(m.readings.len());
    for ObjectOnly(r) in m.readings {
        let ok = plain_id(r.sensor_id) && plain_id(r.metric) && plain_id(r.unit);
        let measured_at = parse_rfc3339_ms(r.measured_at)?;
        if !ok {
            return None;
        }
        readings.push(Ok(RawReading {
            sensor_id: Cow::Borrowed(r.sensor_id),
            metric: Cow::Borrowed(r.metric),
            value: r.value,
            unit: Cow::Borrowed(r.unit),
            measured_at,
        }));
    }
    Some(DeviceMessage {
        device_id: Cow::Borrowed(m.device_id),
        message_id: m.message_id.map(Cow::Borrowed),
        readings,
    })
}

/// The v1 envelope, every field optional so that absence is reported, not fatal.
#[derive(Deserialize)]
pub(crate) struct V1Envelope<'a> {
    #[serde(borrow, default)]
    pub v: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    device_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    message_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    readings: Option<LenientList<'a>>,
}

enum LenientList<'a> {
    List(Vec<LenientReading<'a>>),
    NotAList(&'static str),
}

enum LenientReading<'a> {
    Fields(V1ReadingFields<'a>),
    NotAnObject,
}

#[derive(Deserialize)]
struct V1ReadingFields<'a> {
    #[serde(borrow, default)]
    sensor_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    metric: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    value: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    unit: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    measured_at: Option<Scalar<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for LenientList<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientList<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of readings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(32).min(1024));
                while let Some(r) = seq.next_element::<LenientReading<'de>>()? {
                    out.push(r);
                }
                Ok(LenientList::List(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientList::NotAList("an object"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(LenientList::NotAList("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(LenientList::NotAList("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(LenientList::NotAList("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(LenientList::NotAList("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(LenientList::NotAList("a string"))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(LenientList::NotAList("null"))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LenientReading<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientReading<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a reading object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                V1ReadingFields::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(LenientReading::Fields)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LenientReading::NotAnObject)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(LenientReading::NotAnObject)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(LenientReading::NotAnObject)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(LenientReading::NotAnObject)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(LenientReading::NotAnObject)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(LenientReading::NotAnObject)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(LenientReading::NotAnObject)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses the payload as a v1 envelope. `Err` is the rejection for a payload that
/// is not a JSON object at all; a parsed envelope may still be of another version.
pub(crate) fn parse_v1_envelope(payload: &str) -> Result<V1Envelope<'_>, Rejection> {
    serde_json::from_str::<ObjectOnly<V1Envelope>>(payload)
        .map(|ObjectOnly(e)| e)
        .map_err(json_rejection)
}

/// A struct read from a JSON object only. serde's derived structs also accept an array
/// of their fields in order, which would take positional JSON such as
/// `[1,"dev-1","m",[...]]` for a v1 message: the contract is objects.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = ObjectOnly<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(ObjectOnly)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// The payload as text. Validated once here, so the JSON parser need not check every
/// string again (`from_str` rather than `from_slice`).
pub(crate) fn payload_text(payload: &[u8]) -> Result<&str, Rejection> {
    simdutf8::compat::from_utf8(payload).map_err(|e| {
        Rejection::new(
            Reason::NotJson,
            format!(
                "payload is not UTF-8 JSON: invalid byte at offset {}",
                e.valid_up_to()
            ),
        )
    })
}

/// Turns a serde_json error into NotJson (syntax) or WrongShape (valid JSON, wrong type).
pub(crate) fn json_rejection(e: serde_json::Error) -> Rejection {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => Rejection::new(
            Reason::WrongShape,
            format!("payload is not a device message: {e}"),
        ),
        Category::Syntax | Category::Eof | Category::Io => {
            Rejection::new(Reason::NotJson, format!("payload is not valid JSON: {e}"))
        }
    }
}

impl<'a> V1Envelope<'a> {
    pub(crate) fn is_v1(&self) -> bool {
        matches!(self.v, Some(Scalar::Num(n)) if n == 1.0)
    }

    pub(crate) fn into_message(self) -> Result<DeviceMessage<'a>, Rejection> {
        let device_id = require_text("device_id", self.device_id)?;
        let message_id = match self.message_id {
            None | Some(Scalar::Null) => None,
            some => Some(require_text("message_id", some)?),
        };
        let list = match self.readings {
            None => return Err(Rejection::new(Reason::WrongShape, "readings is missing")),
            Some(LenientList::NotAList(found)) => {
                return Err(Rejection::new(
                    Reason::WrongShape,
                    format!("readings must be a list, found {found}"),
                ));
            }
            Some(LenientList::List(list)) => list,
        };
        if list.is_empty() {
            return Err(Rejection::new(Reason::NoReadings, "readings is empty"));
        }
        let readings = list
            .into_iter()
            .map(|r| match r {
                LenientReading::NotAnObject => Err(Rejection::new(
                    Reason::WrongShape,
                    "reading is not an object",
                )),
                LenientReading::Fields(f) => build_reading(
                    f.sensor_id,
                    f.metric,
                    f.value,
                    f.unit,
                    f.measured_at,
                    TimeFormat::Rfc3339,
                ),
            })
            .collect();
        Ok(DeviceMessage {
            device_id,
            message_id,
            readings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(payload: &str) -> Result<DeviceMessage<'_>, Rejection> {
        let env = parse_v1_envelope(payload)?;
        assert!(env.is_v1(), "test payloads are v1");
        env.into_message()
    }

    #[test]
    fn parses_the_contract_example_borrowing_strings() {
        let payload = r#"{"v":1,"device_id":"dev-000123","message_id":"m-1","sent_at":"2026-11-22T10:15:30.250Z",
          "readings":[{"sensor_id":"hr-0","metric":"heart_rate","value":72,"unit":"/min","measured_at":"2026-11-22T10:15:30Z"},
                      {"sensor_id":"temp-0","metric":"body_temp","value":98.9,"unit":"[degF]","measured_at":"2026-11-22T10:15:29Z","extra":{"x":[1]}}]}"#;
        let msg = v1(payload).unwrap();
        assert_eq!(msg.device_id, "dev-000123");
        assert!(matches!(msg.device_id, Cow::Borrowed(_)));
        assert_eq!(msg.message_id.as_deref(), Some("m-1"));
        let r = msg.readings[1].as_ref().unwrap();
        assert_eq!(
            (r.metric.as_ref(), r.value, r.unit.as_ref()),
            ("body_temp", 98.9, "[degF]")
        );
        assert_eq!(r.measured_at, 1_795_342_529_000);
    }

    #[test]
    fn a_bad_reading_is_rejected_alone_with_its_reason() {
        let payload = r#"{"v":1,"device_id":"d","readings":[
            {"sensor_id":"a","metric":"heart_rate","value":"72","unit":"/min","measured_at":"2026-11-22T10:15:30Z"},
            {"sensor_id":"b","metric":"heart_rate","unit":"/min","measured_at":"2026-11-22T10:15:30Z"},
            {"sensor_id":"c","metric":"heart_rate","value":70,"unit":"/min","measured_at":"yesterday"},
            [1,2],
            {"sensor_id":"e","metric":"heart_rate","value":71,"unit":"/min","measured_at":"2026-11-22T10:15:30Z"}]}"#;
        let msg = v1(payload).unwrap();
        let reasons: Vec<_> = msg
            .readings
            .iter()
            .map(|r| r.as_ref().err().map(|e| e.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                Some(Reason::ValueNotNumber),
                Some(Reason::MissingField),
                Some(Reason::InvalidTimestamp),
                Some(Reason::WrongShape),
                None
            ]
        );
    }

    #[test]
    fn whole_message_faults_are_classified() {
        let reason = |p: &str| {
            parse_v1_envelope(p)
                .and_then(|e| e.into_message())
                .map(|_| ())
                .unwrap_err()
                .reason
        };
        assert_eq!(reason("{not json"), Reason::NotJson);
        assert_eq!(reason(r#"{"v":1,"value":NaN}"#), Reason::NotJson);
        assert_eq!(reason(r#"{"v":1,"value":Infinity}"#), Reason::NotJson);
        assert_eq!(reason("[1,2,3]"), Reason::WrongShape);
        assert_eq!(reason("42"), Reason::WrongShape);
        assert_eq!(reason(r#"{"v":1,"readings":[]}"#), Reason::MissingField);
        assert_eq!(reason(r#"{"v":1,"device_id":"d"}"#), Reason::WrongShape);
        assert_eq!(
            reason(r#"{"v":1,"device_id":"d","readings":{"a":1}}"#),
            Reason::WrongShape
        );
        assert_eq!(
            reason(r#"{"v":1,"device_id":"d","readings":[]}"#),
            Reason::NoReadings
        );
        assert_eq!(
            reason(r#"{"v":1,"device_id":{"id":1},"readings":[]}"#),
            Reason::WrongShape
        );
        let long = format!(
            r#"{{"v":1,"device_id":"{}","readings":[]}}"#,
            "x".repeat(200)
        );
        assert_eq!(reason(&long), Reason::InvalidId);
        assert_eq!(
            reason(r#"[1,"dev-000001","m",[{"sensor_id":"a"}]]"#),
            Reason::WrongShape,
            "positional JSON is not a message"
        );
    }

    #[test]
    fn positional_json_is_not_a_v1_message_on_either_path() {
        let mappings = crate::DeviceMappings::builtin();
        let p = r#"[1,"dev-000001","m",[["hr-0","heart_rate",72,"/min","2026-11-22T10:15:30Z"]]]"#;
        assert!(parse_v1_strict(p).is_none());
        assert_eq!(
            mappings.map(p.as_bytes()).unwrap_err().reason,
            Reason::WrongShape
        );
        // A positional reading inside an object message is rejected alone.
        let p = r#"{"v":1,"device_id":"d","readings":[["hr-0","heart_rate",72,"/min","2026-11-22T10:15:30Z"],
            {"sensor_id":"a","metric":"heart_rate","value":70,"unit":"/min","measured_at":"2026-11-22T10:15:30Z"}]}"#;
        assert!(parse_v1_strict(p).is_none());
        let msg = mappings.map(p.as_bytes()).unwrap();
        assert_eq!(
            msg.readings[0].as_ref().unwrap_err().reason,
            Reason::WrongShape
        );
        assert!(msg.readings[1].is_ok());
    }

    #[test]
    fn control_characters_and_long_ids_are_invalid_ids_on_every_path() {
        let mappings = crate::DeviceMappings::builtin();
        for sensor in [r"ox\u00000", r"ox\n0", "ox\u{7f}0", r"ox\u0085"] {
            let p = format!(
                r#"{{"v":1,"device_id":"d","readings":[{{"sensor_id":"{sensor}","metric":"heart_rate","value":70,"unit":"/min","measured_at":"2026-11-22T10:15:30Z"}}]}}"#
            );
            let msg = mappings.map(p.as_bytes()).unwrap();
            assert_eq!(
                msg.readings[0].as_ref().unwrap_err().reason,
                Reason::InvalidId,
                "{sensor}"
            );
        }
        assert_eq!(
            check_id("sensor_id", &"s".repeat(129)).unwrap_err().reason,
            Reason::InvalidId
        );
        assert!(check_id("sensor_id", &"s".repeat(128)).is_ok());
        assert!(check_id("sensor_id", "température-ü").is_ok());
        assert_eq!(
            check_id("sensor_id", "").unwrap_err().reason,
            Reason::MissingField
        );
    }

    #[test]
    fn huge_numbers_are_not_json_rather_than_infinite() {
        let p = r#"{"v":1,"device_id":"d","readings":[{"sensor_id":"a","metric":"heart_rate","value":1e999,"unit":"/min","measured_at":"2026-11-22T10:15:30Z"}]}"#;
        assert_eq!(
            parse_v1_envelope(p).err().map(|r| r.reason),
            Some(Reason::NotJson)
        );
    }

    #[test]
    fn the_fast_path_and_the_lenient_parser_agree_on_well_formed_messages() {
        let p = r#"{"v":1,"device_id":"dev-1","message_id":"m","readings":[
            {"sensor_id":"a","metric":"heart_rate","value":72,"unit":"/min","measured_at":"2026-11-22T10:15:30Z"},
            {"sensor_id":"b","metric":"spo2","value":97.5,"unit":"%","measured_at":"2026-11-22T10:15:30.5+01:00","x":[1]}]}"#;
        let fast = parse_v1_strict(p).expect("well formed");
        let lenient = v1(p).unwrap();
        assert_eq!(fast.device_id, lenient.device_id);
        assert_eq!(fast.message_id, lenient.message_id);
        assert_eq!(fast.readings, lenient.readings);
    }

    #[test]
    fn the_fast_path_declines_anything_unusual() {
        for p in [
            r#"{"v":2,"device_id":"d","readings":[{"sensor_id":"a","metric":"m","value":1,"unit":"u","measured_at":"2026-11-22T10:15:30Z"}]}"#,
            r#"{"v":1,"device_id":"","readings":[{"sensor_id":"a","metric":"m","value":1,"unit":"u","measured_at":"2026-11-22T10:15:30Z"}]}"#,
            r#"{"v":1,"device_id":"d","readings":[]}"#,
            r#"{"v":1,"device_id":"d","readings":[{"sensor_id":"a","metric":"m","value":"1","unit":"u","measured_at":"2026-11-22T10:15:30Z"}]}"#,
            r#"{"v":1,"device_id":"d","readings":[{"sensor_id":"a","metric":"m","value":1,"unit":"","measured_at":"2026-11-22T10:15:30Z"}]}"#,
            r#"{"v":1,"device_id":"d","readings":[{"sensor_id":"a","metric":"m","value":1,"unit":"u","measured_at":"2026-11-22 10:15:30"}]}"#,
            r#"{"v":1,"device_id":"d","readings":[{"sensor_id":"a","metric":"m","value":null,"unit":"u","measured_at":"2026-11-22T10:15:30Z"}]}"#,
        ] {
            assert!(parse_v1_strict(p).is_none(), "{p}");
        }
    }

    #[test]
    fn escaped_strings_leave_the_fast_path_for_the_lenient_one() {
        let p = r#"{"v":1,"device_id":"dev\u002d1","readings":[{"sensor_id":"s","metric":"heart_rate","value":60,"unit":"/min","measured_at":"2026-11-22T10:15:30Z"}]}"#;
        assert!(parse_v1_strict(p).is_none());
        let msg = crate::DeviceMappings::builtin().map(p.as_bytes()).unwrap();
        assert_eq!(msg.device_id, "dev-1");
    }

    #[test]
    fn escaped_strings_are_owned_and_decoded() {
        let p = r#"{"v":1,"device_id":"dev\u002d1","readings":[{"sensor_id":"s","metric":"heart_rate","value":60,"unit":"/min","measured_at":"2026-11-22T10:15:30Z"}]}"#;
        let msg = v1(p).unwrap();
        assert_eq!(msg.device_id, "dev-1");
    }
}
