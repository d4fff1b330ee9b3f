//! Declarative device mappings: vendor payloads become canonical device messages
//! by data, not code (the idea of Azure MedTech's device-mapping templates).
//!
//! A mapping document lists mappings in priority order. The native contract is the
//! built-in parser `pulselake-v1`, chosen when `v` is 1; every other shape is
//! described by JSON-pointer expressions, e.g. the flat ACME format:
//!
//! ```json
//! {"name": "acme-flat",
//!  "when": [{"path": "/serial", "exists": true}],
//!  "device_id": {"path": "/serial"},
//!  "reading": {
//!    "sensor_id":   {"path": "/type"},
//!    "metric":      {"path": "/type", "map": {"HR": "heart_rate"}},
//!    "value":       {"path": "/val"},
//!    "unit":        {"path": "/uom", "map": {"bpm": "/min"}},
//!    "measured_at": {"path": "/ts", "format": "epoch_millis"}}}
//! ```
//!
//! `readings` (a pointer to an array) maps vendor messages that carry many readings;
//! reading paths are then relative to each element.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use crate::message::{
    DeviceMessage, Scalar, TimeFormat, build_reading, json_rejection, parse_v1_envelope,
    parse_v1_strict, payload_text, require_text,
};
use crate::reason::{Reason, Rejection};

/// The mappings shipped with pulselake: the v1 contract and the ACME flat vendor format.
pub const BUILTIN_MAPPINGS: &str = include_str!("../mappings/default.json");

/// Name of the native v1 parser in mapping documents.
pub const NATIVE_V1: &str = "pulselake-v1";

/// A validated, ready-to-evaluate mapping document.
#[derive(Debug, Clone)]
pub struct DeviceMappings {
    native_v1: bool,
    declarative: Vec<Mapping>,
}

#[derive(Debug, Clone)]
struct Mapping {
    name: String,
    when: Vec<Condition>,
    device_id: Expr,
    message_id: Option<Expr>,
    readings: Option<String>,
    reading: ReadingExprs,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Condition {
    path: String,
    #[serde(default)]
    equals: Option<Value>,
    #[serde(default)]
    exists: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expr {
    #[serde(default)]
    path: Option<String>,
    #[serde(default, rename = "const")]
    constant: Option<Value>,
    #[serde(default)]
    map: Option<HashMap<String, String>>,
    #[serde(default)]
    format: Option<TimeFormat>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadingExprs {
    sensor_id: Expr,
    metric: Expr,
    value: Expr,
    unit: Expr,
    measured_at: Expr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    version: u32,
    mappings: Vec<MappingSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingSpec {
    name: String,
    #[serde(default)]
    parser: Option<String>,
    #[serde(default)]
    when: Vec<Condition>,
    #[serde(default)]
    device_id: Option<Expr>,
    #[serde(default)]
    message_id: Option<Expr>,
    #[serde(default)]
    readings: Option<String>,
    #[serde(default)]
    reading: Option<ReadingExprs>,
}

/// A mapping document that cannot be used. Raised at load (cold start), never per
/// message; it names the mapping and the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MappingError {
    #[error("device mappings: not a valid document: {0}")]
    NotADocument(String),
    #[error("device mappings: document version {0} is not supported (expected 1)")]
    Version(u32),
    #[error("device mappings: the document holds no mapping")]
    Empty,
    #[error("device mappings: mapping {0:?} is defined twice")]
    Duplicate(String),
    #[error("device mappings: mapping {mapping:?}: {problem}")]
    Mapping { mapping: String, problem: String },
}

fn invalid(mapping: &str, problem: impl Into<String>) -> MappingError {
    MappingError::Mapping {
        mapping: mapping.to_owned(),
        problem: problem.into(),
    }
}

fn check_pointer(mapping: &str, what: &str, p: &str) -> Result<(), MappingError> {
    if p.is_empty() || p.starts_with('/') {
        Ok(())
    } else {
        Err(invalid(
            mapping,
            format!("{what} path {p:?} must be a JSON pointer starting with '/'"),
        ))
    }
}

fn check_expr(mapping: &str, what: &str, e: &Expr, timestamp: bool) -> Result<(), MappingError> {
    match (&e.path, &e.constant) {
        (Some(p), None) => check_pointer(mapping, what, p)?,
        (None, Some(_)) => {}
        _ => {
            return Err(invalid(
                mapping,
                format!("{what} needs exactly one of \"path\" or \"const\""),
            ));
        }
    }
    if timestamp && e.format.is_none() {
        return Err(invalid(
            mapping,
            format!("{what} needs a \"format\" (rfc3339, epoch_millis or epoch_seconds)"),
        ));
    }
    if !timestamp && e.format.is_some() {
        return Err(invalid(mapping, format!("{what} takes no \"format\"")));
    }
    Ok(())
}

impl DeviceMappings {
    /// The mappings shipped with pulselake.
    pub fn builtin() -> DeviceMappings {
        // The builtin document is checked by a unit test; failing here is a build defect.
        DeviceMappings::from_json(BUILTIN_MAPPINGS).expect("builtin device mappings are valid")
    }

    /// Loads and validates a mapping document, with an error that names the mapping and field.
    pub fn from_json(doc: &str) -> Result<DeviceMappings, MappingError> {
        let doc: Document =
            serde_json::from_str(doc).map_err(|e| MappingError::NotADocument(e.to_string()))?;
        if doc.version != 1 {
            return Err(MappingError::Version(doc.version));
        }
        let mut native_v1 = false;
        let mut declarative = Vec::new();
        let mut names = std::collections::HashSet::new();
        for m in doc.mappings {
            if !names.insert(m.name.clone()) {
                return Err(MappingError::Duplicate(m.name));
            }
            if let Some(parser) = &m.parser {
                if parser != NATIVE_V1 {
                    return Err(invalid(
                        &m.name,
                        format!("unknown parser {parser:?} (known: {NATIVE_V1})"),
                    ));
                }
                if !m.when.is_empty()
                    || m.device_id.is_some()
                    || m.reading.is_some()
                    || m.readings.is_some()
                {
                    return Err(invalid(
                        &m.name,
                        "a native parser takes no expressions (it selects on v = 1)",
                    ));
                }
                native_v1 = true;
                continue;
            }
            let name = m.name;
            if m.when.is_empty() {
                return Err(invalid(&name, "\"when\" must hold at least one condition"));
            }
            for c in &m.when {
                check_pointer(&name, "when", &c.path)?;
                if c.equals.is_none() == c.exists.is_none() {
                    return Err(invalid(
                        &name,
                        "a condition needs exactly one of \"equals\" or \"exists\"",
                    ));
                }
            }
            let device_id = m
                .device_id
                .ok_or_else(|| invalid(&name, "\"device_id\" is required"))?;
            check_expr(&name, "device_id", &device_id, false)?;
            if let Some(e) = &m.message_id {
                check_expr(&name, "message_id", e, false)?;
            }
            if let Some(p) = &m.readings {
                check_pointer(&name, "readings", p)?;
            }
            let reading = m
                .reading
                .ok_or_else(|| invalid(&name, "\"reading\" is required"))?;
            check_expr(&name, "reading.sensor_id", &reading.sensor_id, false)?;
            check_expr(&name, "reading.metric", &reading.metric, false)?;
            check_expr(&name, "reading.value", &reading.value, false)?;
            check_expr(&name, "reading.unit", &reading.unit, false)?;
            check_expr(&name, "reading.measured_at", &reading.measured_at, true)?;
            declarative.push(Mapping {
                name,
                when: m.when,
                device_id,
                message_id: m.message_id,
                readings: m.readings,
                reading,
            });
        }
        if !native_v1 && declarative.is_empty() {
            return Err(MappingError::Empty);
        }
        Ok(DeviceMappings {
            native_v1,
            declarative,
        })
    }

    /// Names of the declarative mappings, in priority order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.declarative.iter().map(|m| m.name.as_str())
    }

    /// Maps one payload to a device message, or rejects it with a reason.
    pub fn map<'a>(&self, payload: &'a [u8]) -> Result<DeviceMessage<'a>, Rejection> {
        let payload = payload_text(payload)?;
        let mut version = None;
        if self.native_v1 {
            // The hot path: one typed, borrowing pass for a well-formed v1 message...
            if let Some(message) = parse_v1_strict(payload) {
                return Ok(message);
            }
            // ...and, for anything unusual, the lenient pass that names each fault.
            let env = parse_v1_envelope(payload)?;
            if env.is_v1() {
                return env.into_message();
            }
            version = env.v.map(Scalar::into_owned);
        }
        let value: Value = serde_json::from_str(payload).map_err(json_rejection)?;
        if !value.is_object() {
            return Err(Rejection::new(
                Reason::WrongShape,
                "payload is not a JSON object",
            ));
        }
        for m in &self.declarative {
            if m.matches(&value) {
                return m.apply(&value);
            }
        }
        let version = version.or_else(|| value.get("v").map(|v| Scalar::from_json(v).into_owned()));
        match version {
            Some(Scalar::Num(v)) => Err(Rejection::new(
                Reason::UnsupportedVersion,
                format!("message version {v} has no parser or mapping"),
            )),
            Some(_) => Err(Rejection::new(
                Reason::UnsupportedVersion,
                "message version is not a number",
            )),
            None => Err(Rejection::new(
                Reason::NoMapping,
                "no device mapping matches the payload",
            )),
        }
    }
}

impl Mapping {
    fn matches(&self, v: &Value) -> bool {
        self.when.iter().all(|c| {
            let found = v.pointer(&c.path);
            match (&c.equals, c.exists) {
                (Some(expected), _) => found == Some(expected),
                (None, Some(exists)) => found.is_some_and(|f| !f.is_null()) == exists,
                (None, None) => false,
            }
        })
    }

    fn apply(&self, root: &Value) -> Result<DeviceMessage<'static>, Rejection> {
        let device_id = require_text("device_id", eval(&self.device_id, root))?.into_owned();
        let message_id = match &self.message_id {
            None => None,
            Some(e) => match eval(e, root) {
                None | Some(Scalar::Null) => None,
                some => Some(Cow::Owned(require_text("message_id", some)?.into_owned())),
            },
        };
        let one = |item: &Value| {
            let r = &self.reading;
            build_reading(
                eval(&r.sensor_id, item),
                eval(&r.metric, item),
                eval(&r.value, item),
                eval(&r.unit, item),
                eval(&r.measured_at, item),
                r.measured_at.format.unwrap_or(TimeFormat::Rfc3339),
            )
            .map(|r| crate::message::RawReading {
                sensor_id: Cow::Owned(r.sensor_id.into_owned()),
                metric: Cow::Owned(r.metric.into_owned()),
                value: r.value,
                unit: Cow::Owned(r.unit.into_owned()),
                measured_at: r.measured_at,
            })
        };
        let readings = match &self.readings {
            None => vec![one(root)],
            Some(p) => match root.pointer(p) {
                Some(Value::Array(items)) if items.is_empty() => {
                    return Err(Rejection::new(Reason::NoReadings, format!("{p} is empty")));
                }
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| {
                        if item.is_object() {
                            one(item)
                        } else {
                            Err(Rejection::new(
                                Reason::WrongShape,
                                "reading is not an object",
                            ))
                        }
                    })
                    .collect(),
                _ => {
                    return Err(Rejection::new(
                        Reason::WrongShape,
                        format!("{p} must be a list of readings"),
                    ));
                }
            },
        };
        Ok(DeviceMessage {
            device_id: Cow::Owned(device_id),
            message_id,
            readings,
        })
    }
}

fn eval<'v>(e: &'v Expr, item: &'v Value) -> Option<Scalar<'v>> {
    let raw = match (&e.path, &e.constant) {
        (Some(p), _) => item.pointer(p)?,
        (None, Some(c)) => c,
        (None, None) => return None,
    };
    let scalar = Scalar::from_json(raw);
    match (&e.map, scalar) {
        (Some(map), Scalar::Str(s)) => Some(Scalar::Str(
            map.get(s.as_ref()).map_or(s, |m| Cow::Borrowed(m.as_str())),
        )),
        (_, scalar) => Some(scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACME: &str =
        r#"{"serial": "ACME-7781", "type": "HR", "val": 72.0, "uom": "bpm", "ts": 1763806530123}"#;

    #[test]
    fn builtin_document_loads_with_both_vendor_shapes() {
        let m = DeviceMappings::builtin();
        assert!(m.native_v1);
        assert!(m.names().any(|n| n == "acme-flat"));
    }

    #[test]
    fn flat_vendor_payload_becomes_a_canonical_reading() {
        let msg = DeviceMappings::builtin().map(ACME.as_bytes()).unwrap();
        assert_eq!(msg.device_id, "ACME-7781");
        let r = msg.readings[0].as_ref().unwrap();
        assert_eq!(r.metric, "heart_rate");
        assert_eq!(r.unit, "/min");
        assert_eq!(r.value, 72.0);
        assert_eq!(r.measured_at, 1_763_806_530_123);
    }

    #[test]
    fn a_new_vendor_shape_is_added_as_data() {
        let doc = r#"{"version":1,"mappings":[
          {"name":"globex-batch","when":[{"path":"/vendor","equals":"globex"}],
           "device_id":{"path":"/dev"},"message_id":{"path":"/seq"},"readings":"/samples",
           "reading":{"sensor_id":{"const":"spo2-a"},"metric":{"const":"spo2"},"value":{"path":"/o2"},
                      "unit":{"const":"%"},"measured_at":{"path":"/t","format":"epoch_seconds"}}}]}"#;
        let m = DeviceMappings::from_json(doc).unwrap();
        let msg = m
            .map(br#"{"vendor":"globex","dev":77,"seq":"9","samples":[{"o2":97,"t":1763806530},{"o2":"x","t":1763806531}]}"#)
            .unwrap();
        assert_eq!(msg.device_id, "77");
        assert_eq!(msg.message_id.as_deref(), Some("9"));
        assert_eq!(
            msg.readings[0].as_ref().unwrap().measured_at,
            1_763_806_530_000
        );
        assert_eq!(
            msg.readings[1].as_ref().unwrap_err().reason,
            Reason::ValueNotNumber
        );
    }

    #[test]
    fn unknown_version_and_unknown_shape_are_told_apart() {
        let m = DeviceMappings::builtin();
        assert_eq!(
            m.map(br#"{"v":2,"device_id":"d","readings":[]}"#)
                .unwrap_err()
                .reason,
            Reason::UnsupportedVersion
        );
        assert_eq!(
            m.map(br#"{"v":"1","device_id":"d"}"#).unwrap_err().reason,
            Reason::UnsupportedVersion
        );
        assert_eq!(
            m.map(br#"{"hello":"world"}"#).unwrap_err().reason,
            Reason::NoMapping
        );
        assert_eq!(m.map(b"[]").unwrap_err().reason, Reason::WrongShape);
        assert_eq!(m.map(b"\xff\xfe").unwrap_err().reason, Reason::NotJson);
    }

    #[test]
    fn vendor_numbers_as_strings_are_rejected_per_reading() {
        let m = DeviceMappings::builtin();
        let msg = m
            .map(br#"{"serial":"ACME-1","type":"HR","val":"72","uom":"bpm","ts":1763806530123}"#)
            .unwrap();
        assert_eq!(
            msg.readings[0].as_ref().unwrap_err().reason,
            Reason::ValueNotNumber
        );
    }

    #[test]
    fn invalid_documents_fail_with_the_mapping_and_field_named() {
        let cases = [
            (r#"{"version":2,"mappings":[]}"#, "version 2"),
            (r#"{"version":1,"mappings":[]}"#, "no mapping"),
            (
                r#"{"version":1,"mappings":[{"name":"a","parser":"v9"}]}"#,
                "unknown parser",
            ),
            (
                r#"{"version":1,"mappings":[{"name":"a","when":[{"path":"x","exists":true}],"device_id":{"path":"/d"}}]}"#,
                "JSON pointer",
            ),
            (
                r#"{"version":1,"mappings":[{"name":"a","when":[{"path":"/x","exists":true}],"device_id":{"path":"/d"},
                   "reading":{"sensor_id":{"const":"s"},"metric":{"const":"spo2"},"value":{"path":"/v"},"unit":{"const":"%"},"measured_at":{"path":"/t"}}}]}"#,
                "reading.measured_at needs a \"format\"",
            ),
            (
                r#"{"version":1,"mappings":[{"name":"a","parser":"pulselake-v1"},{"name":"a","parser":"pulselake-v1"}]}"#,
                "twice",
            ),
            (
                r#"{"version":1,"mappings":[{"name":"a","parser":"pulselake-v1","extra":1}]}"#,
                "unknown field",
            ),
        ];
        for (doc, expect) in cases {
            let err = DeviceMappings::from_json(doc).unwrap_err().to_string();
            assert!(err.contains(expect), "{err:?} should mention {expect:?}");
        }
    }
}
