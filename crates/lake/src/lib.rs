//! The lake's readings table: its columns (with their Glue types), the Parquet writer
//! that produces its files and the reader that reads them back, both on the `parquet`
//! crate (arrow-rs).
//!
//! [`COLUMNS`] is the single source of truth. The Parquet schema derives from it; the
//! Glue table in `template.yaml`, the JSON keys of the records sent to Firehose and the
//! local Firehose's writer are tested against it.

mod batch;
mod columns;
pub mod erase;
mod footer;
mod read;
mod write;

use std::sync::Arc;

use parquet::basic::{LogicalType, Repetition, TimeUnit, Type as PhysicalType};
use parquet::schema::types::Type;

pub use columns::{Columns, NULL_CODE, Strings, Values};
pub use read::{LakeFile, RawColumn, read_readings, row_count};
pub use write::{
    DEFAULT_ROW_GROUP_ROWS, FileLayout, GroupWriter, ParquetWriter, encode, encode_readings,
    with_columns,
};

/// A column of the readings table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// The Glue / Athena (Hive DDL) type.
    pub glue_type: &'static str,
    /// May hold no value (a column added later is nullable: older files lack it).
    pub nullable: bool,
}

const fn col(name: &'static str, glue_type: &'static str) -> Column {
    Column {
        name,
        glue_type,
        nullable: false,
    }
}

/// The data columns, in file and table order. A column added later goes at the end and
/// is nullable: files written before it hold the columns before it, and read it as null.
pub const COLUMNS: [Column; 12] = [
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
    Column {
        nullable: true,
        ..col("cohort", "string")
    },
];

/// Hive partition keys (all Glue `string`, zero-padded), in path order.
pub const PARTITION_KEYS: [&str; 4] = ["metric", "year", "month", "day"];

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Bytes that are not a lake Parquet file at all (too short, a footer that does not fit).
    #[error("not a lake Parquet file: {0}")]
    NotLakeFile(String),
    #[error("lake file column {column}: {problem}")]
    Column {
        column: &'static str,
        problem: String,
    },
}

/// The Parquet schema of a lake file. Columns are OPTIONAL, as in the files Firehose's
/// record format conversion writes, so both producers of the table agree; the writer
/// refuses a missing value in a column that is not [`Column::nullable`].
pub fn parquet_schema() -> Arc<Type> {
    parquet_schema_of(&COLUMNS)
}

pub(crate) fn parquet_schema_of(columns: &[Column]) -> Arc<Type> {
    let fields = columns
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use pulselake_domain::{Metric, Reading, ReadingId, Source};

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
            cohort: None,
        }
    }

    #[test]
    fn every_column_order_is_type_defined_so_every_engine_reads_the_statistics() {
        use parquet::basic::{ColumnOrder, SortOrder};
        let rows: Vec<Reading<'static>> = (0..10).map(reading).collect();
        let reader = SerializedFileReader::new(file_of(&rows, 4)).unwrap();
        let meta = reader.metadata();
        let value = COLUMNS.iter().position(|c| c.name == "value").unwrap();
        assert_eq!(
            meta.file_metadata().column_order(value),
            ColumnOrder::TYPE_DEFINED_ORDER(SortOrder::SIGNED)
        );
        let stats = meta.row_group(0).column(value).statistics().unwrap();
        assert_eq!(
            (stats.min_bytes_opt(), stats.max_bytes_opt()),
            (
                Some(&60.0f64.to_le_bytes()[..]),
                Some(&63.0f64.to_le_bytes()[..])
            )
        );
        assert_eq!(reader.get_row_iter(None).unwrap().count(), 10);
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
        let layout = FileLayout {
            row_group_rows: group,
            sorted_by_subject: false,
        };
        let mut w = ParquetWriter::with_layout(Vec::new(), layout);
        for r in rows {
            w.write(r);
        }
        let (bytes, n) = w.finish().unwrap();
        assert_eq!(n, rows.len() as u64);
        Bytes::from(bytes)
    }

    #[test]
    fn writes_readable_files_across_row_groups() {
        let rows: Vec<_> = (0..2500).map(reading).collect();
        let bytes = file_of(&rows, 1000);
        let file = LakeFile::open(bytes.clone(), Metric::HeartRate).unwrap();
        assert_eq!((file.row_groups(), file.rows()), (3, 2500));
        assert_eq!(row_count(bytes.clone()).unwrap(), 2500);
        assert_eq!(read_readings(bytes, Metric::HeartRate).unwrap(), rows);
        assert_eq!(file.row_group(2).unwrap(), rows[2000..]);
    }

    #[test]
    fn an_empty_writer_produces_a_valid_empty_file() {
        let (bytes, n) = ParquetWriter::new(Vec::new()).finish().unwrap();
        assert_eq!(n, 0);
        assert_eq!(row_count(Bytes::from(bytes)).unwrap(), 0);
    }

    /// A file wide enough to exercise the encoders: several row groups and pages, long
    /// runs and alternating values, a dictionary of more than 256 entries, numbers that
    /// repeat and that don't, texts per row with multi-byte characters.
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
                    cohort: None,
                }
            })
            .collect()
    }

    fn column_stats(
        file: &Bytes,
        group: usize,
        column: &str,
    ) -> Option<parquet::file::statistics::Statistics> {
        let reader = SerializedFileReader::new(file.clone()).unwrap();
        let rg = reader.metadata().row_group(group);
        let i = COLUMNS.iter().position(|c| c.name == column).unwrap();
        rg.column(i).statistics().cloned()
    }

    #[test]
    fn encoded_files_read_back_whole_with_the_lake_schema() {
        let rows = varied(70_000);
        let file = file_of(&rows, 30_000);
        let reader = SerializedFileReader::new(file.clone()).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.num_row_groups(), 3);
        assert_eq!(meta.file_metadata().num_rows(), 70_000);
        let written = meta.file_metadata().schema_descr().root_schema().clone();
        assert_eq!(&written, parquet_schema().as_ref());
        assert_eq!(read_readings(file, Metric::BodyTemp).unwrap(), rows);
    }

    #[test]
    fn statistics_let_engines_and_erasure_skip_row_groups() {
        use parquet::file::statistics::Statistics as S;
        let file = file_of(&varied(40_000), 20_000);
        match column_stats(&file, 1, "measured_at") {
            Some(S::Int64(v)) => {
                assert_eq!(v.min_opt(), Some(&(1_600_000_000_000 + 20_000_000)));
                assert_eq!(v.max_opt(), Some(&(1_600_000_000_000 + 39_999_000)));
                assert_eq!(v.null_count_opt(), Some(0));
            }
            other => panic!("measured_at statistics: {other:?}"),
        }
        let lake = LakeFile::open(file.clone(), Metric::BodyTemp).unwrap();
        assert_eq!(
            lake.subject_range(0),
            Some((b"subj-000".to_vec(), b"subj-003".to_vec()))
        );
        match column_stats(&file, 0, "value") {
            Some(S::Double(v)) => {
                assert_eq!((v.min_opt(), v.max_opt()), (Some(&36.0), Some(&39.9)))
            }
            other => panic!("value statistics: {other:?}"),
        }
        // Unique per row: no statistics (they would prune nothing).
        assert!(column_stats(&file, 0, "reading_id").is_none());
        assert!(column_stats(&file, 0, "source_ref").is_none());
    }

    #[test]
    fn files_sorted_by_subject_say_so_in_their_footer() {
        let rows = varied(100);
        let ids: Vec<ReadingId> = rows.iter().map(|r| r.reading_id).collect();
        let sorted = FileLayout {
            sorted_by_subject: true,
            ..FileLayout::default()
        };
        let bytes = Bytes::from(encode_readings(&rows, sorted).unwrap());
        let reader = SerializedFileReader::new(bytes).unwrap();
        let order: Vec<i32> = reader
            .metadata()
            .row_group(0)
            .sorting_columns()
            .unwrap()
            .iter()
            .map(|c| c.column_idx)
            .collect();
        assert_eq!(order, [1, 7], "subject_id, then measured_at");
        assert_eq!(ids.len(), 100);
    }

    fn one_row_columns<'a>(value: &'a [f64], ends: &'a [u32]) -> Columns<'a> {
        static IDS: std::sync::OnceLock<[ReadingId; 1]> = std::sync::OnceLock::new();
        Columns {
            reading_id: IDS.get_or_init(|| [ReadingId::derive("d", "s", Metric::HeartRate, 1)]),
            subject_id: Strings::Same("s"),
            device_id: Strings::Same("d"),
            sensor_id: Strings::Same("s"),
            value,
            unit: Strings::Same("u"),
            loinc: Strings::Same("l"),
            measured_at: &[1],
            received_at: &[1],
            source: Strings::Same("file"),
            source_ref: Strings::Each { bytes: b"x", ends },
            cohort: Strings::Null,
        }
    }

    #[test]
    fn columns_of_different_lengths_or_bad_text_ends_are_refused() {
        let err = encode(&one_row_columns(&[1.0, 2.0], &[1]), FileLayout::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("value") && err.contains("2 values for 1 rows"),
            "{err}"
        );
        let err = encode(&one_row_columns(&[1.0], &[2]), FileLayout::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("source_ref") && err.contains("past the text"),
            "{err}"
        );
        let no_subject = Columns {
            subject_id: Strings::Null,
            ..one_row_columns(&[1.0], &[1])
        };
        let err = encode(&no_subject, FileLayout::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("subject_id") && err.contains("requires"),
            "{err}"
        );
    }

    #[test]
    fn cohorts_round_trip_with_rows_that_have_none() {
        let rows: Vec<Reading<'static>> = (0..6)
            .map(|i| Reading {
                cohort: [Some("adult".into()), None, Some("neonatal".into())][i as usize % 3]
                    .clone(),
                ..reading(i)
            })
            .collect();
        let back = read_readings(file_of(&rows, 4), Metric::HeartRate).unwrap();
        assert_eq!(back, rows);
    }

    #[test]
    fn a_file_from_before_the_cohort_column_reads_it_as_null_and_is_rewritten_whole() {
        let rows: Vec<Reading<'static>> = (0..5).map(reading).collect();
        let older = &COLUMNS[..COLUMNS.len() - 1];
        let bytes = with_columns(&rows, |c| {
            write::encode_with(
                older,
                &c.values()[..older.len()],
                c.rows(),
                FileLayout::default(),
            )
        })
        .unwrap();
        let file = LakeFile::open(Bytes::from(bytes), Metric::HeartRate).unwrap();
        assert!(!file.has_every_column());
        assert_eq!(file.all_rows().unwrap(), rows, "cohort None in every row");
        // A rewrite (erasure, compaction) of its groups writes the lake's whole schema.
        let mut w = GroupWriter::new(Vec::new(), FileLayout::default()).unwrap();
        w.copy_group(&file, 0).unwrap();
        let rewritten =
            LakeFile::open(Bytes::from(w.finish().unwrap()), Metric::HeartRate).unwrap();
        assert!(rewritten.has_every_column());
        assert_eq!(rewritten.all_rows().unwrap(), rows);
        // A file missing a column that is not nullable is no lake file.
        let bytes = with_columns(&rows, |c| {
            write::encode_with(
                &COLUMNS[..10],
                &c.values()[..10],
                c.rows(),
                FileLayout::default(),
            )
        })
        .unwrap();
        assert!(LakeFile::open(Bytes::from(bytes), Metric::HeartRate).is_err());
    }

    #[test]
    fn a_nullable_column_may_be_absent_and_reads_back_as_null() {
        // A column added to the table later is nullable: files written before lack it.
        let schema = [
            col("name", "string"),
            Column {
                nullable: true,
                ..col("added", "string")
            },
        ];
        let names = Strings::Each {
            bytes: b"ab",
            ends: &[1, 2],
        };
        let values = [Values::Text(&names), Values::Text(&Strings::Null)];
        let bytes = write::encode_with(&schema, &values, 2, FileLayout::default()).unwrap();
        let reader = SerializedFileReader::new(Bytes::from(bytes)).unwrap();
        let rows: Vec<String> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().to_string())
            .collect();
        assert_eq!(
            rows,
            ["{name: \"a\", added: null}", "{name: \"b\", added: null}"]
        );
    }
}
