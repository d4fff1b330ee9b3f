//! CSV rows: the seed vendor export (`minute_in_day,<value>`, one patient, metric and
//! day per file) and generic CSV (`device_id,sensor_id,metric,value,unit,measured_at`
//! in any order). Header first, then rows into the [`Sink`], a block at a time.

use std::io::Read;

use pulselake_domain::message::check_id;
use pulselake_domain::time::{Date, parse_timestamp_utc_default_ms};
use pulselake_domain::{Metric, Reason, Rejection};

use crate::error::ReadFault;
use crate::formats::{
    CsvLayout, Format, check_seed_header, csv_layout, parse_value, seed_time, short,
};
use crate::report::RowRef;
use crate::rows::{ParsedRow, Sink};
use pulselake_rawfile::{Record, Records};

/// Which CSV, and what its header said.
enum Kind {
    /// The seed export: its day, and the device, metric and unit every row shares.
    Seed {
        date: Date,
        device: String,
        metric: &'static str,
        unit: &'static str,
    },
    Generic(CsvLayout),
}

pub struct CsvRows {
    kind: Kind,
    width: usize,
}

/// The seed export's device id for a subject (its readings carry no device of their own).
pub fn seed_device(subject: &str) -> String {
    format!("seed:{subject}")
}

impl CsvRows {
    /// Reads and checks the header (blank lines before it are skipped).
    pub fn open<R: Read>(
        records: &mut Records<R>,
        format: &Format,
        subject: Option<&str>,
    ) -> Result<CsvRows, ReadFault> {
        let header: Vec<String> = loop {
            let Some(record) = records.next_record()? else {
                return Err(ReadFault::Content(Rejection::new(
                    Reason::EmptyFile,
                    "the file is empty",
                )));
            };
            if record.is_blank() {
                continue;
            }
            break record
                .fields()
                .map(|f| {
                    std::str::from_utf8(f).map(|s| s.trim_start_matches('\u{feff}').to_owned())
                })
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    ReadFault::Content(Rejection::new(
                        Reason::BadHeader,
                        "the header is not UTF-8 text",
                    ))
                })?;
        };
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        let kind = match (format, subject) {
            (Format::Seed { date, metric, .. }, Some(subject)) => {
                check_seed_header(&header).map_err(ReadFault::Content)?;
                Kind::Seed {
                    date: *date,
                    device: seed_device(subject),
                    metric: metric.name(),
                    unit: Metric::unit(*metric),
                }
            }
            (Format::Csv, _) => Kind::Generic(csv_layout(&header).map_err(ReadFault::Content)?),
            _ => {
                return Err(ReadFault::Content(Rejection::new(
                    Reason::UnknownSubject,
                    "the file's subject is unknown",
                )));
            }
        };
        Ok(CsvRows {
            kind,
            width: header.len(),
        })
    }

    /// Reads rows until the block is full (`Ok(true)`) or the file ends (`Ok(false)`).
    pub fn fill<R: Read>(
        &mut self,
        records: &mut Records<R>,
        sink: &mut Sink<'_>,
    ) -> Result<bool, ReadFault> {
        while let Some(record) = records.next_record()? {
            if record.is_blank() {
                continue;
            }
            sink.line();
            let at = RowRef {
                line: record.line,
                index: None,
            };
            match self.row(&record) {
                Ok(row) => {
                    let text = sink.keep_text(record.text);
                    sink.push(ParsedRow { text, ..row });
                }
                Err(rej) => sink.reject_reading(at, rej, &String::from_utf8_lossy(record.text)),
            }
            if sink.full() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One row's reading (its `text` is set by the caller), or why it has none.
    fn row<'a>(&'a self, record: &Record<'a>) -> Result<ParsedRow<'a>, Rejection> {
        if record.unterminated {
            return Err(Rejection::new(
                Reason::UnterminatedQuote,
                "a quoted field is not closed before the end of the file",
            ));
        }
        if record.len() != self.width {
            return Err(Rejection::new(
                Reason::RaggedRow,
                format!(
                    "{} fields where the header has {}",
                    record.len(),
                    self.width
                ),
            ));
        }
        let Ok(text) = std::str::from_utf8(record.text) else {
            return Err(Rejection::new(Reason::NotUtf8, "the row is not UTF-8 text"));
        };
        let field = |i: usize| trim(record.text_field(text, i));
        let row = match &self.kind {
            Kind::Seed {
                date,
                device,
                metric,
                unit,
            } => {
                let measured_at = seed_time(*date, field(0))?;
                ParsedRow {
                    line: record.line,
                    index: 0,
                    text: (0, 0),
                    // The file's device; the metric names its sensor.
                    device,
                    sensor: metric,
                    metric,
                    unit,
                    value: parse_value(field(1))?,
                    measured_at,
                }
            }
            Kind::Generic(l) => {
                let at = field(l.index[5]);
                let measured_at = parse_timestamp_utc_default_ms(at).ok_or_else(|| {
                    Rejection::new(
                        Reason::InvalidTimestamp,
                        format!("measured_at {:?} is not a timestamp", short(at)),
                    )
                })?;
                ParsedRow {
                    line: record.line,
                    index: 0,
                    text: (0, 0),
                    device: field(l.index[0]),
                    sensor: field(l.index[1]),
                    metric: field(l.index[2]),
                    unit: field(l.index[4]),
                    value: parse_value(field(l.index[3]))?,
                    measured_at,
                }
            }
        };
        // The same identifier rules as the stream path (length, control characters).
        check_id("device_id", row.device)?;
        check_id("sensor_id", row.sensor)?;
        check_id("metric", row.metric)?;
        check_id("unit", row.unit)?;
        Ok(row)
    }
}

/// White space around a field, ASCII first (the common case, and cheap).
fn trim(field: &str) -> &str {
    let t = field.trim_ascii();
    let edge_not_ascii = |b: Option<&u8>| b.is_some_and(|b| !b.is_ascii());
    if edge_not_ascii(t.as_bytes().first()) || edge_not_ascii(t.as_bytes().last()) {
        t.trim()
    } else {
        t
    }
}
