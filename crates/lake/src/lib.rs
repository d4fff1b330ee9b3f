//! The lake's readings table: its columns (with their Glue types), the Parquet
//! writer that produces it and a reader for checks.
//!
//! [`COLUMNS`] is the single source of truth. The Glue table in `template.yaml`
//! must list exactly these columns, in this order, with these types, and the
//! partition keys [`PARTITION_KEYS`]; a test enforces it.

mod encode;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{LogicalType, Repetition, TimeUnit, Type as PhysicalType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::RowAccessor;
use parquet::schema::types::Type;
use pulselake_domain::{Metric, Reading, ReadingId, Source};

pub use encode::{Columns, Strings, encode};

/// A column of the readings table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// The Glue / Athena (Hive DDL) type.
    pub glue_type: &'static str,
}

const fn col(name: &'static str, glue_type: &'static str) -> Column {
    Column { name, glue_type }
}

/// The data columns, in file and table order.
pub const COLUMNS: [Column; 11] = [
    col("reading_id", "string"),
    col("subject_id", "string"),
    col("device_id", "string"),
    col("sensor_id", "string"),
    col("value", "double"),
    col("unit", "string"),
    col("loinc", "string"),
    col("measured_at", "timestamp"),
    col("received_at", "timestamp"),
    col("source", "string"),
    col("source_ref", "string"),
];

/// Hive partition keys (all Glue `string`, zero-padded), in path order.
pub const PARTITION_KEYS: [&str; 4] = ["metric", "year", "month", "day"];

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("lake file column {column}: {problem}")]
    Column {
        column: &'static str,
        problem: String,
    },
}

/// The Parquet schema of a lake file (what [`encode`] writes; a test reads it back).
/// Columns are OPTIONAL, as in the files Firehose's
/// record format conversion writes, so both producers of the table agree.
pub fn parquet_schema() -> Arc<Type> {
    let fields = COLUMNS
        .iter()
        .map(|c| {
            let (physical, logical) = match c.glue_type {
                "double" => (PhysicalType::DOUBLE, None),
                "timestamp" => (
                    PhysicalType::INT64,
                    Some(LogicalType::timestamp(true, TimeUnit::MILLIS)),
                ),
                _ => (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
            };
            Arc::new(
                Type::primitive_type_builder(c.name, physical)
                    .with_repetition(Repetition::OPTIONAL)
                    .with_logical_type(logical)
                    .build()
                    .expect("static lake schema is valid"),
            )
        })
        .collect();
    Arc::new(
        Type::group_type_builder("readings")
            .with_fields(fields)
            .build()
            .expect("static lake schema is valid"),
    )
}

/// The Glue type a Parquet column maps to (what Athena would read it as).
pub fn glue_type_of(t: &Type) -> Option<&'static str> {
    let info = t.get_basic_info();
    match (t.get_physical_type(), info.logical_type_ref()) {
        (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)) => Some("string"),
        (PhysicalType::DOUBLE, None) => Some("double"),
        (PhysicalType::INT64, Some(LogicalType::Timestamp { .. }))
        | (PhysicalType::INT96, None) => Some("timestamp"),
        (PhysicalType::INT64, None) => Some("bigint"),
        _ => None,
    }
}

/// Rows per row group: large enough for efficient scans, small enough that a group's
/// pages stay a few megabytes.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 128 * 1024;

/// Writes readings of one partition into one Parquet file, row by row. The rows are
/// held until [`ParquetWriter::finish`] (this is for small files, such as the local
/// Firehose's); file-ingest hands whole columns to [`encode`] instead.
pub struct ParquetWriter<W: Write> {
    sink: W,
    row_group_rows: usize,
    names: Vec<String>,
    codes: HashMap<String, u32>,
    ids: Vec<ReadingId>,
    /// Codes into `names` for subject, device, sensor, unit, loinc and source.
    coded: [Vec<u32>; 6],
    value: Vec<f64>,
    measured_at: Vec<i64>,
    received_at: Vec<i64>,
    source_ref: Vec<u8>,
    source_ref_ends: Vec<u32>,
}

impl<W: Write> ParquetWriter<W> {
    pub fn new(sink: W) -> Result<ParquetWriter<W>, LakeError> {
        ParquetWriter::with_row_group_rows(sink, DEFAULT_ROW_GROUP_ROWS)
    }

    pub fn with_row_group_rows(
        sink: W,
        row_group_rows: usize,
    ) -> Result<ParquetWriter<W>, LakeError> {
        Ok(ParquetWriter {
            sink,
            row_group_rows: row_group_rows.max(1),
            names: Vec::new(),
            codes: HashMap::new(),
            ids: Vec::new(),
            coded: Default::default(),
            value: Vec::new(),
            measured_at: Vec::new(),
            received_at: Vec::new(),
            source_ref: Vec::new(),
            source_ref_ends: Vec::new(),
        })
    }

    fn code(&mut self, s: &str) -> u32 {
        if let Some(&c) = self.codes.get(s) {
            return c;
        }
        let c = self.names.len() as u32;
        self.names.push(s.to_owned());
        self.codes.insert(s.to_owned(), c);
        c
    }

    pub fn write(&mut self, r: &Reading<'_>) -> Result<(), LakeError> {
        let texts = [
            r.subject_id.as_ref(),
            r.device_id.as_ref(),
            r.sensor_id.as_ref(),
            r.unit(),
            r.loinc(),
            r.source.as_str(),
        ];
        for (i, text) in texts.into_iter().enumerate() {
            let c = self.code(text);
            self.coded[i].push(c);
        }
        self.ids.push(r.reading_id);
        self.value.push(r.value);
        self.measured_at.push(r.measured_at);
        self.received_at.push(r.received_at);
        self.source_ref.extend_from_slice(r.source_ref.as_bytes());
        let end = u32::try_from(self.source_ref.len()).map_err(|_| LakeError::Column {
            column: "source_ref",
            problem: "more than 4 GiB of text in one file".into(),
        })?;
        self.source_ref_ends.push(end);
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.ids.len() as u64
    }

    /// Encodes the file into the sink; returns the sink and the row count.
    pub fn finish(mut self) -> Result<(W, u64), LakeError> {
        let names = &self.names;
        let name = |c: u32| names[c as usize].as_str();
        let coded = |i: usize| Strings::Coded {
            codes: &self.coded[i],
            name: &name,
        };
        let columns = Columns {
            reading_id: &self.ids,
            subject_id: coded(0),
            device_id: coded(1),
            sensor_id: coded(2),
            value: &self.value,
            unit: coded(3),
            loinc: coded(4),
            measured_at: &self.measured_at,
            received_at: &self.received_at,
            source: coded(5),
            source_ref: Strings::Each {
                bytes: &self.source_ref,
                ends: &self.source_ref_ends,
            },
        };
        let bytes = encode(&columns, self.row_group_rows)?;
        self.sink.write_all(&bytes).map_err(|e| LakeError::Column {
            column: "*",
            problem: format!("writing the file failed: {e}"),
        })?;
        Ok((self.sink, self.ids.len() as u64))
    }
}

/// Reads a lake file back into readings. `metric` comes from the partition path
/// (it is a partition key, not a column).
pub fn read_readings(file: Bytes, metric: Metric) -> Result<Vec<Reading<'static>>, LakeError> {
    let reader = SerializedFileReader::new(file)?;
    let schema = reader.metadata().file_metadata().schema_descr();
    let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
    let expected: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
    if names != expected {
        return Err(LakeError::Column {
            column: "*",
            problem: format!("unexpected columns {names:?}"),
        });
    }
    let bad = |column: &'static str, problem: String| LakeError::Column { column, problem };
    let mut out = Vec::with_capacity(reader.metadata().file_metadata().num_rows().max(0) as usize);
    for row in reader.get_row_iter(None)? {
        let row = row?;
        let text = |i: usize| row.get_string(i).map(|s| s.clone().into());
        let id = row.get_string(0)?;
        let source = match row.get_string(9)?.as_str() {
            "stream" => Source::Stream,
            "file" => Source::File,
            other => return Err(bad("source", format!("unknown source {other:?}"))),
        };
        out.push(Reading {
            reading_id: ReadingId::parse_hex(id)
                .ok_or_else(|| bad("reading_id", format!("not an id: {id:?}")))?,
            subject_id: text(1)?,
            device_id: text(2)?,
            sensor_id: text(3)?,
            metric,
            value: row.get_double(4)?,
            measured_at: row.get_timestamp_millis(7)?,
            received_at: row.get_timestamp_millis(8)?,
            source,
            source_ref: text(10)?,
        });
    }
    Ok(out)
}

/// Number of rows in a lake file, from its footer alone.
pub fn row_count(file: Bytes) -> Result<u64, LakeError> {
    let reader = SerializedFileReader::new(file)?;
    Ok(reader.metadata().file_metadata().num_rows().max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(i: i64) -> Reading<'static> {
        Reading {
            reading_id: ReadingId::derive("dev-1", "hr-0", Metric::HeartRate, i),
            subject_id: "subj-1".into(),
            device_id: "dev-1".into(),
            sensor_id: "hr-0".into(),
            metric: Metric::HeartRate,
            value: 60.0 + i as f64,
            measured_at: 1_795_342_530_000 + i,
            received_at: 1_795_342_531_000,
            source: Source::File,
            source_ref: "sha256:abc".into(),
        }
    }

    #[test]
    fn schema_columns_follow_the_column_list_with_their_glue_types() {
        let schema = parquet_schema();
        let fields = schema.get_fields();
        assert_eq!(fields.len(), COLUMNS.len());
        for (f, c) in fields.iter().zip(COLUMNS) {
            assert_eq!((f.name(), glue_type_of(f)), (c.name, Some(c.glue_type)));
        }
    }

    /// `rows` written as one file of `group`-row row groups.
    fn file_of(rows: &[Reading<'_>], group: usize) -> Bytes {
        let mut w = ParquetWriter::with_row_group_rows(Vec::new(), group).unwrap();
        for r in rows {
            w.write(r).unwrap();
        }
        let (bytes, n) = w.finish().unwrap();
        assert_eq!(n, rows.len() as u64);
        Bytes::from(bytes)
    }

    #[test]
    fn writes_readable_files_across_row_groups() {
        let rows: Vec<_> = (0..2500).map(reading).collect();
        let bytes = file_of(&rows, 1000);
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 3);
        assert_eq!(row_count(bytes.clone()).unwrap(), 2500);
        assert_eq!(read_readings(bytes, Metric::HeartRate).unwrap(), rows);
    }

    #[test]
    fn an_empty_writer_produces_a_valid_empty_file() {
        let (bytes, n) = ParquetWriter::new(Vec::new()).unwrap().finish().unwrap();
        assert_eq!(n, 0);
        assert_eq!(row_count(Bytes::from(bytes)).unwrap(), 0);
    }

    /// A file wide enough to exercise every encoding: several row groups and pages,
    /// long runs (RLE) and alternating values (bit-packed), a dictionary of more than
    /// 256 entries, numbers that repeat (dictionary) and that don't (plain), texts
    /// per row with multi-byte characters.
    fn varied(n: usize) -> Vec<Reading<'static>> {
        (0..n)
            .map(|i| {
                let subject = i / 5000; // long runs
                Reading {
                    reading_id: ReadingId::derive("dev", "s", Metric::BodyTemp, i as i64),
                    subject_id: format!("subj-{subject:03}").into(),
                    device_id: format!("dev-{:04}", (i / 7) % 300).into(),
                    sensor_id: ["s-0", "s-1", "s-2"][i % 3].into(),
                    metric: Metric::BodyTemp,
                    value: 36.0 + (i % 40) as f64 / 10.0,
                    measured_at: 1_600_000_000_000 + (i as i64) * 1000,
                    received_at: 1_700_000_000_000,
                    source: Source::File,
                    source_ref: format!("file:é{i}").into(),
                }
            })
            .collect()
    }

    fn column_stats(
        file: &Bytes,
        group: usize,
        column: &str,
    ) -> parquet::file::statistics::Statistics {
        let reader = SerializedFileReader::new(file.clone()).unwrap();
        let rg = reader.metadata().row_group(group);
        let i = COLUMNS.iter().position(|c| c.name == column).unwrap();
        rg.column(i).statistics().cloned().unwrap()
    }

    #[test]
    fn encoded_files_read_back_whole_with_the_lake_schema() {
        let rows = varied(70_000);
        let file = file_of(&rows, 30_000);
        let reader = SerializedFileReader::new(file.clone()).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.num_row_groups(), 3);
        assert_eq!(meta.file_metadata().num_rows(), 70_000);
        // The footer's schema is the lake schema, column for column.
        let written = meta.file_metadata().schema_descr().root_schema().clone();
        assert_eq!(&written, parquet_schema().as_ref());
        assert_eq!(read_readings(file, Metric::BodyTemp).unwrap(), rows);
    }

    #[test]
    fn statistics_let_engines_skip_row_groups() {
        use parquet::file::statistics::Statistics as S;
        let file = file_of(&varied(40_000), 20_000);
        match column_stats(&file, 1, "measured_at") {
            S::Int64(v) => {
                assert_eq!(v.min_opt(), Some(&(1_600_000_000_000 + 20_000_000)));
                assert_eq!(v.max_opt(), Some(&(1_600_000_000_000 + 39_999_000)));
                assert_eq!(v.null_count_opt(), Some(0));
            }
            other => panic!("measured_at statistics: {other:?}"),
        }
        match column_stats(&file, 0, "subject_id") {
            S::ByteArray(v) => {
                assert_eq!(v.min_opt().unwrap().data(), b"subj-000");
                assert_eq!(v.max_opt().unwrap().data(), b"subj-003");
            }
            other => panic!("subject_id statistics: {other:?}"),
        }
        match column_stats(&file, 0, "value") {
            S::Double(v) => assert_eq!((v.min_opt(), v.max_opt()), (Some(&36.0), Some(&39.9))),
            other => panic!("value statistics: {other:?}"),
        }
        let reader = SerializedFileReader::new(file).unwrap();
        let rg = reader.metadata().row_group(0);
        // Unique per row: no statistics (they would prune nothing).
        assert!(rg.column(0).statistics().is_none());
        assert!(rg.column(10).statistics().is_none());
    }

    #[test]
    fn columns_of_different_lengths_are_refused() {
        let ids = [ReadingId::derive("d", "s", Metric::HeartRate, 1)];
        let columns = Columns {
            reading_id: &ids,
            subject_id: Strings::Same("s"),
            device_id: Strings::Same("d"),
            sensor_id: Strings::Same("s"),
            value: &[1.0, 2.0],
            unit: Strings::Same("u"),
            loinc: Strings::Same("l"),
            measured_at: &[1],
            received_at: &[1],
            source: Strings::Same("file"),
            source_ref: Strings::Each {
                bytes: b"x",
                ends: &[1],
            },
        };
        let err = encode(&columns, 10).unwrap_err().to_string();
        assert!(
            err.contains("value") && err.contains("2 values for 1 rows"),
            "{err}"
        );
        let past_the_text = Columns {
            value: &[1.0],
            source_ref: Strings::Each {
                bytes: b"x",
                ends: &[2],
            },
            ..columns
        };
        let err = encode(&past_the_text, 10).unwrap_err().to_string();
        assert!(
            err.contains("source_ref") && err.contains("past the text"),
            "{err}"
        );
    }
}
