//! What a staging object is, from its key, and how each format's rows are read.
//!
//! The staging prefix declares the format (each source drops into its own prefix):
//!
//! | prefix | format |
//! |---|---|
//! | `seed/` | the seed vendor export: `<patient>.<yyyymmdd>.<metric>.csv`, columns `minute_in_day,<value>` |
//! | `csv/` | generic CSV with a header: `device_id,sensor_id,metric,value,unit,measured_at` (any order, extra columns ignored) |
//! | `ndjson/` | one device message per line, mapped by the device mappings (as the stream path) |
//!
//! Any of them may be gzip-compressed (detected from the bytes, not the name).

use pulselake_domain::time::Date;
use pulselake_domain::{Metric, Reason, Rejection};

/// The format of a staging object.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// A seed vendor export: one patient, one metric, one UTC day.
    Seed {
        alias: String,
        date: Date,
        metric: Metric,
    },
    Csv,
    Ndjson,
}

/// The legacy system name under which seed patients are aliased (`seed:<patient>`).
pub const SEED_SYSTEM: &str = "seed";

/// Reads a staging key. A key outside the known prefixes, or a seed file whose name
/// does not follow the vendor pattern, is rejected with the reason.
pub fn classify(key: &str) -> Result<Format, Rejection> {
    check_key(key)?;
    let (prefix, rest) = key.split_once('/').unwrap_or(("", key));
    let name = rest.rsplit('/').next().unwrap_or(rest);
    let name = name.strip_suffix(".gz").unwrap_or(name);
    match prefix {
        "seed" => parse_seed_name(name),
        "csv" => Ok(Format::Csv),
        "ndjson" => Ok(Format::Ndjson),
        _ => Err(Rejection::new(
            Reason::UnknownFormat,
            "staging objects must be under seed/, csv/ or ndjson/",
        )),
    }
}

/// Keys are archived under the same name and read by people and tools: no `.` or `..`
/// segment, no empty segment, no backslash, no control character.
fn check_key(key: &str) -> Result<(), Rejection> {
    let bad = |why: &str| Rejection::new(Reason::BadFileName, format!("unsafe object key: {why}"));
    if key.chars().any(char::is_control) {
        return Err(bad("it contains a control character"));
    }
    if key.contains('\\') {
        return Err(bad("it contains a backslash"));
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(bad("it has an empty, '.' or '..' path segment"));
    }
    Ok(())
}

fn parse_seed_name(name: &str) -> Result<Format, Rejection> {
    let bad = |why: &str| {
        Rejection::new(
            Reason::BadFileName,
            format!("seed files are named <patient>.<yyyymmdd>.<metric>.csv: {why}"),
        )
    };
    let parts: Vec<&str> = name.split('.').collect();
    let [patient, date, metric, "csv"] = parts.as_slice() else {
        return Err(bad("the name has the wrong number of parts"));
    };
    let patient_ok = !patient.is_empty()
        && patient.len() <= 64
        && patient
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !patient_ok {
        return Err(bad(
            "the patient part must be 1-64 letters, digits, '-' or '_'",
        ));
    }
    let date = Date::parse_compact(date).ok_or_else(|| bad("the date is not a valid yyyymmdd"))?;
    let metric =
        Metric::from_name(metric).ok_or_else(|| bad("the metric is not in the catalog"))?;
    Ok(Format::Seed {
        alias: format!("{SEED_SYSTEM}:{patient}"),
        date,
        metric,
    })
}

/// Columns a generic CSV must have.
pub const CSV_COLUMNS: [&str; 6] = [
    "device_id",
    "sensor_id",
    "metric",
    "value",
    "unit",
    "measured_at",
];

/// Where each required column is in a generic CSV's header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CsvLayout {
    pub index: [usize; 6],
    pub width: usize,
}

/// Checks a generic CSV header; the error explains what is missing, and names the
/// likely delimiter when the header looks like one field of `;`/tab/`|`-separated names.
pub fn csv_layout(header: &[&str]) -> Result<CsvLayout, Rejection> {
    // A column named twice would be read from one of them silently: refuse the header.
    for (i, h) in header.iter().enumerate() {
        let name = h.trim();
        if !name.is_empty()
            && header[..i]
                .iter()
                .any(|other| other.trim().eq_ignore_ascii_case(name))
        {
            return Err(Rejection::new(
                Reason::BadHeader,
                format!("column {:?} appears twice in the header", short(name)),
            ));
        }
    }
    let mut index = [0usize; 6];
    let mut missing = Vec::new();
    for (i, col) in CSV_COLUMNS.iter().enumerate() {
        match header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(col))
        {
            Some(p) => index[i] = p,
            None => missing.push(*col),
        }
    }
    if missing.is_empty() {
        return Ok(CsvLayout {
            index,
            width: header.len(),
        });
    }
    let hint = match header {
        [only] => [';', '\t', '|']
            .into_iter()
            .find(|d| only.contains(*d))
            .map(|d| format!(" (the header is one field containing {d:?}: is the file {d:?}-delimited? It must be comma-separated)"))
            .unwrap_or_default(),
        _ => String::new(),
    };
    Err(Rejection::new(
        Reason::BadHeader,
        format!("missing columns {}{hint}", missing.join(", ")),
    ))
}

/// Checks a seed file's header: `minute_in_day,<value column>`.
pub fn check_seed_header(header: &[&str]) -> Result<(), Rejection> {
    match header {
        [first, _] if first.trim() == "minute_in_day" => Ok(()),
        [only] if only.contains(';') || only.contains('\t') => Err(Rejection::new(
            Reason::BadHeader,
            "expected the comma-separated header minute_in_day,<value> (the file uses another delimiter)",
        )),
        _ => Err(Rejection::new(
            Reason::BadHeader,
            "expected the header minute_in_day,<value>",
        )),
    }
}

/// A seed row's time: the file's UTC day plus the minute.
pub fn seed_time(date: Date, minute: &str) -> Result<i64, Rejection> {
    let m: i64 = minute.trim().parse().map_err(|_| {
        Rejection::new(
            Reason::InvalidTimestamp,
            format!("minute_in_day {:?} is not a whole number", short(minute)),
        )
    })?;
    if !(0..1440).contains(&m) {
        return Err(Rejection::new(
            Reason::InvalidTimestamp,
            format!("minute_in_day {m} is outside 0..=1439"),
        ));
    }
    Ok(date.start_epoch_ms() + m * 60_000)
}

/// A CSV value: text that must read as a finite number.
pub fn parse_value(text: &str) -> Result<f64, Rejection> {
    let t = text.trim();
    if t.is_empty() {
        return Err(Rejection::new(Reason::MissingField, "value is empty"));
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(Rejection::new(
            Reason::NonFiniteValue,
            "value is not finite",
        )),
        Err(_) => Err(Rejection::new(
            Reason::ValueNotNumber,
            format!("value {:?} is not a number", short(t)),
        )),
    }
}

/// Echoed input is cut short: a reason, not a copy of the data.
pub fn short(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_keys_are_bad_file_names() {
        for key in [
            "seed/../../x.20201012.heart_rate.csv",
            "csv/./a.csv",
            "csv//a.csv",
            "csv/a\\b.csv",
            "ndjson/a\nb.ndjson",
            "csv/..",
        ] {
            assert_eq!(
                classify(key).unwrap_err().reason,
                Reason::BadFileName,
                "{key:?}"
            );
        }
        assert_eq!(classify("csv/2026/11/a..b.csv").unwrap(), Format::Csv);
    }

    #[test]
    fn a_header_with_a_column_twice_is_a_bad_header() {
        let h = [
            "device_id",
            "sensor_id",
            "metric",
            "value",
            "unit",
            "measured_at",
            "Value",
        ];
        let rej = csv_layout(&h).unwrap_err();
        assert_eq!(rej.reason, Reason::BadHeader);
        assert!(rej.detail.contains("twice"), "{}", rej.detail);
    }

    #[test]
    fn the_prefix_selects_the_format_and_seed_names_are_parsed() {
        assert_eq!(
            classify("seed/P1.20201012.heart_rate.csv").unwrap(),
            Format::Seed {
                alias: "seed:P1".into(),
                date: Date::new(2020, 10, 12).unwrap(),
                metric: Metric::HeartRate
            }
        );
        assert!(matches!(
            classify("seed/2020/10/P1.20201012.spo2.csv.gz").unwrap(),
            Format::Seed { .. }
        ));
        assert_eq!(classify("csv/partner-a/export.csv").unwrap(), Format::Csv);
        assert_eq!(classify("ndjson/x.jsonl.gz").unwrap(), Format::Ndjson);
        assert_eq!(
            classify("other/x.csv").unwrap_err().reason,
            Reason::UnknownFormat
        );
    }

    #[test]
    fn seed_names_off_the_vendor_pattern_are_rejected_with_the_reason() {
        for bad in [
            "seed/P1.heart_rate.csv",
            "seed/P1.20201332.heart_rate.csv",
            "seed/P1.20201012.mood.csv",
            "seed/P 1.20201012.heart_rate.csv",
            "seed/P1.20201012.heart_rate.txt",
        ] {
            assert_eq!(
                classify(bad).unwrap_err().reason,
                Reason::BadFileName,
                "{bad}"
            );
        }
    }

    #[test]
    fn a_header_with_another_delimiter_names_it() {
        let err = csv_layout(&["device_id;sensor_id;metric;value;unit;measured_at"]).unwrap_err();
        assert_eq!(err.reason, Reason::BadHeader);
        assert!(err.detail.contains("';'"), "{}", err.detail);
        let l = csv_layout(&[
            "measured_at",
            "extra",
            "value",
            "unit",
            "metric",
            "sensor_id",
            "device_id",
        ])
        .unwrap();
        assert_eq!(l.index, [6, 5, 4, 2, 3, 0]);
        assert!(
            csv_layout(&["device_id", "value"])
                .unwrap_err()
                .detail
                .contains("sensor_id, metric, unit, measured_at")
        );
    }

    #[test]
    fn seed_rows_are_minutes_of_the_files_utc_day() {
        let d = Date::new(2020, 10, 12).unwrap();
        assert_eq!(seed_time(d, "0").unwrap(), d.start_epoch_ms());
        assert_eq!(
            seed_time(d, "1439").unwrap(),
            d.start_epoch_ms() + 1439 * 60_000
        );
        assert_eq!(
            seed_time(d, "1440").unwrap_err().reason,
            Reason::InvalidTimestamp
        );
        assert_eq!(
            seed_time(d, "x").unwrap_err().reason,
            Reason::InvalidTimestamp
        );
        assert_eq!(parse_value(" 72 ").unwrap(), 72.0);
        assert_eq!(
            parse_value("NaN").unwrap_err().reason,
            Reason::NonFiniteValue
        );
        assert_eq!(
            parse_value("seventy").unwrap_err().reason,
            Reason::ValueNotNumber
        );
        assert_eq!(parse_value("").unwrap_err().reason, Reason::MissingField);
        assert!(check_seed_header(&["minute_in_day", "heartrate"]).is_ok());
        assert_eq!(
            check_seed_header(&["minute_in_day;heartrate"])
                .unwrap_err()
                .reason,
            Reason::BadHeader
        );
    }
}
