//! The streaming pipeline on its own: memory stays bounded whatever the file size, and
//! every chunk is sorted by subject, then time.

use std::io::Read;

use std::collections::HashMap;
use std::sync::Arc;

use file_ingest::formats::Format;
use file_ingest::pipeline::{FileSpec, Limits, Pipeline, run_in_memory};
use pulselake_domain::time::parse_rfc3339_ms;
use pulselake_domain::{Assignment, DeviceMappings, DeviceRecord, Partition, TimePolicy};

/// A CSV of `rows` rows generated on the fly: the file never exists in memory whole.
struct GeneratedCsv {
    next: u64,
    rows: u64,
    devices: u64,
    pending: Vec<u8>,
    at: usize,
}

impl Read for GeneratedCsv {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.pending.len() {
            self.pending.clear();
            self.at = 0;
            if self.next == 0 {
                self.pending
                    .extend_from_slice(b"device_id,sensor_id,metric,value,unit,measured_at\n");
            }
            while self.pending.len() < 64 * 1024 && self.next < self.rows {
                let i = self.next;
                // Devices interleave, so a partition's rows arrive out of subject order.
                let (device, minute) = (i % self.devices, i / self.devices);
                let line = format!(
                    "dev-{device},hr,heart_rate,{},/min,2026-11-{:02}T{:02}:{:02}:00Z\n",
                    60 + i % 40,
                    1 + minute / 1440 % 28,
                    minute / 60 % 24,
                    minute % 60
                );
                self.pending.extend_from_slice(line.as_bytes());
                self.next += 1;
            }
            if self.pending.is_empty() {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Every device of the generated file, assigned to a subject whose name sorts
/// differently from the device number.
fn registry(devices: u64) -> HashMap<String, Arc<DeviceRecord>> {
    let since = parse_rfc3339_ms("2026-01-01T00:00:00Z").unwrap();
    (0..devices)
        .map(|n| {
            let id = format!("dev-{n}");
            let rec = DeviceRecord {
                device_id: id.clone(),
                assignments: vec![Assignment {
                    subject_id: format!("s-{}", id.chars().rev().collect::<String>()),
                    valid_from: since,
                    valid_to: None,
                    cohort: None,
                }],
            };
            (id, Arc::new(rec))
        })
        .collect()
}

#[test]
fn a_file_far_larger_than_the_buffer_streams_through_in_sorted_chunks() {
    let rows = 120_000;
    let limits = Limits {
        max_buffered_rows: 8_000,
        block_rows: 2048,
        ..Limits::default()
    };
    let mappings = DeviceMappings::builtin();
    let spec = FileSpec {
        format: Format::Csv,
        subject: None,
        source_hash: "0123456789abcdef",
        reference: "test",
        received_at: parse_rfc3339_ms("2026-11-22T00:00:00Z").unwrap(),
        mappings: &mappings,
        policy: TimePolicy::history(pulselake_domain::retention::MIN_RETENTION_YEARS),
    };
    let input = GeneratedCsv {
        next: 0,
        rows,
        devices: 50,
        pending: Vec::new(),
        at: 0,
    };
    let pipeline = Pipeline::new(input, &spec, limits);
    let out = run_in_memory(pipeline, &registry(50)).unwrap();
    let report = out.report;
    assert_eq!(report.written, rows);
    assert!(
        report.peak_buffered_rows <= limits.max_buffered_rows,
        "{}",
        report.peak_buffered_rows
    );
    assert!(
        out.chunks.len() >= (rows as usize) / limits.max_buffered_rows,
        "{} chunks",
        out.chunks.len()
    );
    let mut total = 0;
    for c in &out.chunks {
        let partition = &c.partition;
        let readings =
            pulselake_lake::read_readings(c.parquet.clone().into(), partition.metric).unwrap();
        total += readings.len();
        let keys: Vec<(&str, i64)> = readings
            .iter()
            .map(|r| (r.subject_id.as_ref(), r.measured_at))
            .collect();
        assert!(
            keys.windows(2).all(|w| w[0] <= w[1]),
            "chunk of {partition} sorted by subject, then time"
        );
        assert!(
            readings
                .iter()
                .all(|r| Partition::of(r.metric, r.measured_at) == *partition)
        );
    }
    assert_eq!(total as u64, rows);
    assert!(report.bytes > 5_000_000, "{} bytes streamed", report.bytes);
}
