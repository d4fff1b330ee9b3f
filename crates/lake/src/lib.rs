//! The lake's readings table: its columns (with their Glue types), the Parquet
//! writer that produces it and a reader for checks.
//!
//! [`COLUMNS`] is the single source of truth. The Glue table in `template.yaml`
//! must list exactly these columns, in this order, with these types, and the
//! partition keys [`PARTITION_KEYS`]; a test enforces it.

use std::io::Write;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as PhysicalType};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::RowAccessor;
use parquet::schema::types::Type;
use pulselake_domain::{Metric, Reading, ReadingId, Source};

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

/// The Parquet schema of a lake file. Columns are OPTIONAL, as in the files Firehose's
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

/// Rows per row group: large enough for efficient scans, small enough that the
/// buffered group stays well under the file-ingest memory budget (~40 MB).
pub const DEFAULT_ROW_GROUP_ROWS: usize = 256 * 1024;

/// A string column buffered without a heap allocation per value: bytes appended to
/// one buffer, each value a range, frozen into cheap `Bytes` slices at flush.
#[derive(Default)]
struct StrColumn {
    data: BytesMut,
    ends: Vec<u32>,
}

impl StrColumn {
    fn push(&mut self, s: &[u8]) {
        self.data.extend_from_slice(s);
        self.ends.push(self.data.len() as u32);
    }

    fn take(&mut self) -> Vec<ByteArray> {
        let data: Bytes = std::mem::take(&mut self.data).freeze();
        let mut start = 0usize;
        let out = self
            .ends
            .iter()
            .map(|&end| {
                let v = ByteArray::from(data.slice(start..end as usize));
                start = end as usize;
                v
            })
            .collect();
        self.ends.clear();
        out
    }
}

#[derive(Default)]
struct RowGroupBuffer {
    strings: [StrColumn; 8],
    value: Vec<f64>,
    measured_at: Vec<i64>,
    received_at: Vec<i64>,
}

impl RowGroupBuffer {
    fn len(&self) -> usize {
        self.value.len()
    }
}

/// Index of each string column in the buffer, in column order.
const STR_COLUMNS: [&str; 8] = [
    "reading_id",
    "subject_id",
    "device_id",
    "sensor_id",
    "unit",
    "loinc",
    "source",
    "source_ref",
];

/// Writes readings of one partition into one Parquet file.
pub struct ParquetWriter<W: Write + Send> {
    inner: SerializedFileWriter<W>,
    buf: RowGroupBuffer,
    row_group_rows: usize,
    rows: u64,
}

impl<W: Write + Send> ParquetWriter<W> {
    pub fn new(sink: W) -> Result<ParquetWriter<W>, LakeError> {
        ParquetWriter::with_row_group_rows(sink, DEFAULT_ROW_GROUP_ROWS)
    }

    pub fn with_row_group_rows(
        sink: W,
        row_group_rows: usize,
    ) -> Result<ParquetWriter<W>, LakeError> {
        let props = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_compression(Compression::SNAPPY)
            .set_created_by("pulselake".into())
            .set_max_row_group_row_count(Some(row_group_rows.max(1)))
            .build();
        let inner = SerializedFileWriter::new(sink, parquet_schema(), Arc::new(props))?;
        Ok(ParquetWriter {
            inner,
            buf: RowGroupBuffer::default(),
            row_group_rows: row_group_rows.max(1),
            rows: 0,
        })
    }

    pub fn write(&mut self, r: &Reading<'_>) -> Result<(), LakeError> {
        let b = &mut self.buf;
        let id = r.reading_id.hex();
        let strings: [&[u8]; 8] = [
            id.as_bytes(),
            r.subject_id.as_bytes(),
            r.device_id.as_bytes(),
            r.sensor_id.as_bytes(),
            r.unit().as_bytes(),
            r.loinc().as_bytes(),
            r.source.as_str().as_bytes(),
            r.source_ref.as_bytes(),
        ];
        for (col, s) in b.strings.iter_mut().zip(strings) {
            col.push(s);
        }
        b.value.push(r.value);
        b.measured_at.push(r.measured_at);
        b.received_at.push(r.received_at);
        if b.len() >= self.row_group_rows {
            self.flush_row_group()?;
        }
        Ok(())
    }

    /// Rows written so far (including buffered ones).
    pub fn rows(&self) -> u64 {
        self.rows + self.buf.len() as u64
    }

    fn flush_row_group(&mut self) -> Result<(), LakeError> {
        let n = self.buf.len();
        if n == 0 {
            return Ok(());
        }
        let defs = vec![1i16; n];
        let mut strings = STR_COLUMNS
            .into_iter()
            .zip(self.buf.strings.each_mut().map(StrColumn::take));
        let value = std::mem::take(&mut self.buf.value);
        let measured_at = std::mem::take(&mut self.buf.measured_at);
        let received_at = std::mem::take(&mut self.buf.received_at);
        let mut rg = self.inner.next_row_group()?;
        for c in COLUMNS {
            let mut w = rg.next_column()?.ok_or(LakeError::Column {
                column: c.name,
                problem: "missing".into(),
            })?;
            match c.name {
                "value" => {
                    w.typed::<DoubleType>()
                        .write_batch(&value, Some(&defs), None)?;
                }
                "measured_at" => {
                    w.typed::<Int64Type>()
                        .write_batch(&measured_at, Some(&defs), None)?;
                }
                "received_at" => {
                    w.typed::<Int64Type>()
                        .write_batch(&received_at, Some(&defs), None)?;
                }
                _ => {
                    let values = match strings.next() {
                        Some((name, values)) if name == c.name => values,
                        _ => {
                            return Err(LakeError::Column {
                                column: c.name,
                                problem: "buffer order differs".into(),
                            });
                        }
                    };
                    w.typed::<ByteArrayType>()
                        .write_batch(&values, Some(&defs), None)?;
                }
            }
            w.close()?;
        }
        rg.close()?;
        self.rows += n as u64;
        Ok(())
    }

    /// Writes the last row group and the footer; returns the sink and the row count.
    pub fn finish(mut self) -> Result<(W, u64), LakeError> {
        self.flush_row_group()?;
        let rows = self.rows;
        Ok((self.inner.into_inner()?, rows))
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
            reading_id: ReadingId::derive("dev-1", "hr-0", i),
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

    #[test]
    fn writes_readable_files_across_row_groups() {
        let rows: Vec<_> = (0..2500).map(reading).collect();
        let mut w = ParquetWriter::with_row_group_rows(Vec::new(), 1000).unwrap();
        for r in &rows {
            w.write(r).unwrap();
        }
        let (bytes, n) = w.finish().unwrap();
        assert_eq!(n, 2500);
        let bytes = Bytes::from(bytes);
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
}
