//! NDJSON rows: one device message per line, mapped by the same device mappings as the
//! stream, each reading into the [`Sink`], a block at a time.

use std::io::Read;

use pulselake_domain::DeviceMappings;

use crate::error::ReadFault;
use crate::report::RowRef;
use crate::rows::{ParsedRow, Sink};
use pulselake_rawfile::Records;

/// Reads lines until the block is full (`Ok(true)`) or the file ends (`Ok(false)`).
pub fn fill<R: Read>(
    records: &mut Records<R>,
    mappings: &DeviceMappings,
    sink: &mut Sink<'_>,
) -> Result<bool, ReadFault> {
    while let Some(l) = records.next_line()? {
        let line = l.number;
        // A byte order mark may open the file (some exporters write one).
        let bytes = match l.bytes.strip_prefix(b"\xef\xbb\xbf") {
            Some(rest) if line == 1 => rest,
            _ => l.bytes,
        }
        .trim_ascii();
        if bytes.is_empty() {
            continue;
        }
        sink.line();
        let text = || String::from_utf8_lossy(bytes);
        let message = match mappings.map(bytes) {
            Ok(m) => m,
            Err(rej) => {
                sink.reject_line(RowRef { line, index: None }, rej, &text());
                continue;
            }
        };
        let span = sink.keep_text(bytes);
        for (index, reading) in message.readings.into_iter().enumerate() {
            match reading {
                Ok(r) => sink.push(ParsedRow {
                    line,
                    index,
                    text: span,
                    device: &message.device_id,
                    sensor: &r.sensor_id,
                    metric: &r.metric,
                    unit: &r.unit,
                    value: r.value,
                    measured_at: r.measured_at,
                }),
                Err(rej) => {
                    let at = RowRef {
                        line,
                        index: Some(index),
                    };
                    sink.reject_reading(at, rej, &text());
                }
            }
        }
        if sink.full() {
            return Ok(true);
        }
    }
    Ok(false)
}
