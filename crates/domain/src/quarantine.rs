//! The quarantine report: what was rejected, where it came from, and why. One JSON
//! object per rejected record (a device message or a file), one line each.
//!
//! Nothing is dropped: the original payload is kept so a fixed mapping or registry
//! entry can replay it. The report never needs a patient identifier in its key.

use serde::{Deserialize, Serialize};

use crate::reason::{Reason, Rejection};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    /// `stream` or `file`.
    pub source: String,
    /// Stream: `<shard>:<sequence number>`. File: the staging object and content hash.
    pub reference: String,
    /// When pulselake received it (RFC 3339).
    pub received_at: String,
    /// Set when the record as a whole was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Readings the record carried, when it could be read that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readings_total: Option<usize>,
    /// Readings rejected one by one (the rest of the record went to the lake).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedReading>,
    /// The original payload, as text when it is UTF-8...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// ...or as base64 when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
}

/// One reading rejected inside an otherwise usable record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedReading {
    /// Position of the reading in its message (stream) or line number (file).
    pub index: usize,
    pub reason: Reason,
    pub detail: String,
}

impl QuarantineEntry {
    /// No subject stands behind it: the device is unknown, or no reading of the record
    /// fell in an assignment (every one was rejected as `device_unassigned`).
    pub fn is_unattributed(&self) -> bool {
        match self.reason {
            Some(r) => r == crate::Reason::UnknownDevice,
            None => {
                !self.rejected.is_empty()
                    && self.readings_total == Some(self.rejected.len())
                    && self
                        .rejected
                        .iter()
                        .all(|r| r.reason == crate::Reason::DeviceUnassigned)
            }
        }
    }
}

impl RejectedReading {
    pub fn new(index: usize, r: Rejection) -> RejectedReading {
        RejectedReading {
            index,
            reason: r.reason,
            detail: r.detail,
        }
    }
}

impl QuarantineEntry {
    /// Readings this entry accounts for. A record rejected before its readings could be
    /// counted (not JSON, say) accounts for none: it is counted as a record instead.
    pub fn readings_quarantined(&self) -> usize {
        match self.reason {
            Some(_) => self.readings_total.unwrap_or(0),
            None => self.rejected.len(),
        }
    }

    /// True when the record was rejected before its readings could be counted.
    pub fn is_unreadable(&self) -> bool {
        self.reason.is_some() && self.readings_total.is_none()
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Reason::from_code(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown reason {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_count_what_they_hold() {
        let e = QuarantineEntry {
            source: "stream".into(),
            reference: "shardId-000000000000:1".into(),
            received_at: "2026-11-22T10:15:30.000Z".into(),
            reason: None,
            detail: None,
            readings_total: Some(30),
            rejected: vec![RejectedReading::new(
                4,
                Rejection::new(Reason::OutOfRange, "heart_rate 420"),
            )],
            payload: Some("{}".into()),
            payload_base64: None,
        };
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.contains(r#""reason":"out_of_range""#));
        assert_eq!(serde_json::from_str::<QuarantineEntry>(&line).unwrap(), e);
        assert_eq!(e.readings_quarantined(), 1);
        let whole = QuarantineEntry {
            reason: Some(Reason::NotJson),
            readings_total: None,
            rejected: vec![],
            ..e
        };
        assert_eq!(whole.readings_quarantined(), 0);
        assert!(whole.is_unreadable());
    }
}
