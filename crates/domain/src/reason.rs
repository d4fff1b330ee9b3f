//! Why input was rejected. Every rejected record or reading lands in quarantine with
//! one of these reasons; the code is also the `reason` dimension of the metrics.

use std::fmt;

/// A typed quarantine reason. `code()` is stable: dashboards and replay tools key on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    // The whole record (one device message) is unusable.
    /// The transport's base64 did not decode.
    InvalidBase64,
    /// Larger than the device contract allows (IoT Core's 128 KB).
    Oversized,
    /// Not valid UTF-8 JSON (this includes `NaN`/`Infinity`, which JSON does not have).
    NotJson,
    /// Valid JSON, but not an object of the expected shape.
    WrongShape,
    /// A `v` no parser or mapping handles.
    UnsupportedVersion,
    /// No device mapping matches the payload.
    NoMapping,
    /// The device is not in the registry.
    UnknownDevice,
    /// The message claims another device than the one that published it (the IoT topic,
    /// which the device's certificate is bound to): one device never speaks for another.
    DeviceMismatch,
    /// A message that carries no readings.
    NoReadings,

    // One reading is unusable; the rest of its message is kept.
    /// A required field is absent or null.
    MissingField,
    /// The value is not a JSON number (a string such as "72" is not accepted).
    ValueNotNumber,
    /// The value is not finite.
    NonFiniteValue,
    /// The metric is not in the catalog.
    UnknownMetric,
    /// The unit is not accepted for the metric and cannot be converted.
    UnknownUnit,
    /// The converted value is outside the metric's plausible range.
    OutOfRange,
    /// The timestamp is not RFC 3339 with a zone (or not a valid epoch number).
    InvalidTimestamp,
    /// Measured later than the allowed clock skew ahead of receipt.
    TimestampInFuture,
    /// Measured earlier than the accepted age.
    TimestampTooOld,
    /// Measured before the lake's retention cut-off: it would be deleted by the next
    /// retention run, so it never lands.
    PastRetention,
    /// The device had no subject assigned at the measurement time.
    DeviceUnassigned,
    /// An identifier (device, sensor, metric, unit) that is too long or holds control
    /// characters: the same limits on every path.
    InvalidId,
    /// The same reading (device, sensor, metric, time) again in one batch or file with
    /// a different value: the first value is kept, this one is held here.
    ConflictingDuplicate,

    // Files: the whole file, or one row of it.
    /// The staging prefix names no known format.
    UnknownFormat,
    /// A file name that does not follow its format's naming pattern.
    BadFileName,
    /// No data at all, or a header and nothing else.
    EmptyFile,
    /// The header lacks required columns (often: the wrong delimiter).
    BadHeader,
    /// Compressed data that does not decompress (e.g. a truncated gzip).
    CorruptCompression,
    /// The legacy patient key of a vendor file maps to no subject.
    UnknownSubject,
    /// Every row of the file was rejected.
    NoValidRows,
    /// A row with more or fewer fields than the header.
    RaggedRow,
    /// A row that is not UTF-8 text.
    NotUtf8,
    /// The same reading (device, sensor, metric, time) twice in one file.
    DuplicateRow,
    /// A quoted CSV field whose closing quote never comes.
    UnterminatedQuote,
    /// Valid rows that could not be written as Parquet: a defect to report, never retried.
    Unwritable,
}

impl Reason {
    pub const ALL: [Reason; 34] = [
        Reason::InvalidBase64,
        Reason::Oversized,
        Reason::NotJson,
        Reason::WrongShape,
        Reason::UnsupportedVersion,
        Reason::NoMapping,
        Reason::UnknownDevice,
        Reason::DeviceMismatch,
        Reason::NoReadings,
        Reason::MissingField,
        Reason::ValueNotNumber,
        Reason::NonFiniteValue,
        Reason::UnknownMetric,
        Reason::UnknownUnit,
        Reason::OutOfRange,
        Reason::InvalidTimestamp,
        Reason::TimestampInFuture,
        Reason::TimestampTooOld,
        Reason::PastRetention,
        Reason::DeviceUnassigned,
        Reason::InvalidId,
        Reason::ConflictingDuplicate,
        Reason::UnknownFormat,
        Reason::BadFileName,
        Reason::EmptyFile,
        Reason::BadHeader,
        Reason::CorruptCompression,
        Reason::UnknownSubject,
        Reason::NoValidRows,
        Reason::RaggedRow,
        Reason::NotUtf8,
        Reason::DuplicateRow,
        Reason::UnterminatedQuote,
        Reason::Unwritable,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::InvalidBase64 => "invalid_base64",
            Reason::Oversized => "oversized",
            Reason::NotJson => "not_json",
            Reason::WrongShape => "wrong_shape",
            Reason::UnsupportedVersion => "unsupported_version",
            Reason::NoMapping => "no_mapping",
            Reason::UnknownDevice => "unknown_device",
            Reason::DeviceMismatch => "device_mismatch",
            Reason::NoReadings => "no_readings",
            Reason::MissingField => "missing_field",
            Reason::ValueNotNumber => "value_not_number",
            Reason::NonFiniteValue => "non_finite_value",
            Reason::UnknownMetric => "unknown_metric",
            Reason::UnknownUnit => "unknown_unit",
            Reason::OutOfRange => "out_of_range",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::TimestampInFuture => "timestamp_in_future",
            Reason::TimestampTooOld => "timestamp_too_old",
            Reason::PastRetention => "past_retention",
            Reason::DeviceUnassigned => "device_unassigned",
            Reason::InvalidId => "invalid_id",
            Reason::ConflictingDuplicate => "conflicting_duplicate",
            Reason::UnknownFormat => "unknown_format",
            Reason::BadFileName => "bad_file_name",
            Reason::EmptyFile => "empty_file",
            Reason::BadHeader => "bad_header",
            Reason::CorruptCompression => "corrupt_compression",
            Reason::UnknownSubject => "unknown_subject",
            Reason::NoValidRows => "no_valid_rows",
            Reason::RaggedRow => "ragged_row",
            Reason::NotUtf8 => "not_utf8",
            Reason::DuplicateRow => "duplicate_row",
            Reason::UnterminatedQuote => "unterminated_quote",
            Reason::Unwritable => "unwritable",
        }
    }

    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A reason with a short human explanation. The detail never carries patient data:
/// it names fields, units and limits, not identifiers.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut codes: Vec<_> = Reason::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Reason::ALL.len());
        for r in Reason::ALL {
            assert_eq!(Reason::from_code(r.code()), Some(r));
        }
    }
}
