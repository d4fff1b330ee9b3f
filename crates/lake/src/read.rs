//! Reading lake files back, a row group at a time, with the `parquet` crate's column
//! readers: bounded memory for any file size (a rewrite holds one row group), and the
//! footer's statistics without reading any data.

use bytes::Bytes;
use parquet::column::reader::ColumnReader;
use parquet::data_type::ByteArray;
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;
use pulselake_domain::{Metric, Reading, ReadingId, Source};

use crate::{COLUMNS, LakeError};

/// One column of a row group as stored: one optional value per row.
#[derive(Debug, Clone)]
pub enum RawColumn {
    Text(Vec<Option<ByteArray>>),
    Double(Vec<Option<f64>>),
    Millis(Vec<Option<i64>>),
}

impl RawColumn {
    /// The rows where `keep` is true, in order.
    pub fn filtered(&self, keep: &[bool]) -> RawColumn {
        fn pick<T: Clone>(v: &[Option<T>], keep: &[bool]) -> Vec<Option<T>> {
            v.iter()
                .zip(keep)
                .filter(|(_, k)| **k)
                .map(|(x, _)| x.clone())
                .collect()
        }
        match self {
            RawColumn::Text(v) => RawColumn::Text(pick(v, keep)),
            RawColumn::Double(v) => RawColumn::Double(pick(v, keep)),
            RawColumn::Millis(v) => RawColumn::Millis(pick(v, keep)),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            RawColumn::Text(v) => v.len(),
            RawColumn::Double(v) => v.len(),
            RawColumn::Millis(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An open lake file: footer read, data read on demand.
pub struct LakeFile {
    reader: SerializedFileReader<Bytes>,
    /// The file's bytes (row groups are copied from them verbatim by a rewrite).
    bytes: Bytes,
    metric: Metric,
}

fn bad(column: &'static str, problem: String) -> LakeError {
    LakeError::Column { column, problem }
}

impl LakeFile {
    /// Opens a file of partition `metric` (a partition key, not a column) and checks
    /// that its columns are the lake's.
    pub fn open(file: Bytes, metric: Metric) -> Result<LakeFile, LakeError> {
        let reader = SerializedFileReader::new(file.clone())?;
        let schema = reader.metadata().file_metadata().schema_descr();
        let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
        let expected: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        if names != expected {
            return Err(bad("*", format!("unexpected columns {names:?}")));
        }
        Ok(LakeFile {
            reader,
            bytes: file,
            metric,
        })
    }

    /// The file's bytes and row group `i`'s metadata: what a verbatim copy needs.
    pub(crate) fn group_source(&self, i: usize) -> (&Bytes, &RowGroupMetaData) {
        (&self.bytes, self.reader.metadata().row_group(i))
    }

    /// The stored (compressed) bytes of row group `i`'s column chunks, in order.
    pub fn group_bytes(&self, i: usize) -> Vec<Bytes> {
        self.reader
            .metadata()
            .row_group(i)
            .columns()
            .iter()
            .map(|c| {
                let (start, len) = c.byte_range();
                self.bytes.slice(start as usize..(start + len) as usize)
            })
            .collect()
    }

    pub fn rows(&self) -> u64 {
        self.reader.metadata().file_metadata().num_rows().max(0) as u64
    }

    /// Whether the writer recorded the rows as sorted by subject (compacted files).
    pub fn sorted_by_subject(&self) -> bool {
        let at = COLUMNS.iter().position(|c| c.name == "subject_id");
        let meta = self.reader.metadata();
        meta.num_row_groups() > 0
            && meta
                .row_group(0)
                .sorting_columns()
                .is_some_and(|cols| cols.first().map(|c| c.column_idx as usize) == at)
    }

    pub fn row_groups(&self) -> usize {
        self.reader.metadata().num_row_groups()
    }

    /// The smallest and largest `subject_id` of row group `i`, from the footer (`None`
    /// when the writer kept no statistics for it).
    pub fn subject_range(&self, i: usize) -> Option<(Vec<u8>, Vec<u8>)> {
        let at = COLUMNS.iter().position(|c| c.name == "subject_id")?;
        match self
            .reader
            .metadata()
            .row_group(i)
            .column(at)
            .statistics()?
        {
            Statistics::ByteArray(s) => {
                Some((s.min_opt()?.data().to_vec(), s.max_opt()?.data().to_vec()))
            }
            _ => None,
        }
    }

    /// The `subject_id` column of row group `i` alone (one column chunk decoded).
    pub fn subjects(&self, i: usize) -> Result<Vec<Option<ByteArray>>, LakeError> {
        let at = COLUMNS
            .iter()
            .position(|c| c.name == "subject_id")
            .ok_or_else(|| bad("subject_id", "not a lake column".into()))?;
        let group = self.reader.get_row_group(i)?;
        let n = group.metadata().num_rows().max(0) as usize;
        match group.get_column_reader(at)? {
            ColumnReader::ByteArrayColumnReader(mut r) => {
                read_all(n, |defs, vals| r.read_records(n, Some(defs), None, vals))
            }
            _ => Err(bad("subject_id", "unexpected physical type".into())),
        }
    }

    /// Row group `i` as stored: its columns in [`COLUMNS`] order, no row built (what
    /// a rewrite that keeps most rows as they are needs).
    pub fn raw_group(&self, i: usize) -> Result<Vec<RawColumn>, LakeError> {
        let group = self.reader.get_row_group(i)?;
        let n = group.metadata().num_rows().max(0) as usize;
        let mut out = Vec::with_capacity(COLUMNS.len());
        for (c, column) in COLUMNS.iter().enumerate() {
            let reader = group.get_column_reader(c)?;
            out.push(match (column.glue_type, reader) {
                ("string", ColumnReader::ByteArrayColumnReader(mut r)) => {
                    RawColumn::Text(read_all(n, |defs, vals| {
                        r.read_records(n, Some(defs), None, vals)
                    })?)
                }
                ("double", ColumnReader::DoubleColumnReader(mut r)) => {
                    RawColumn::Double(read_all(n, |defs, vals| {
                        r.read_records(n, Some(defs), None, vals)
                    })?)
                }
                ("timestamp", ColumnReader::Int64ColumnReader(mut r)) => {
                    RawColumn::Millis(read_all(n, |defs, vals| {
                        r.read_records(n, Some(defs), None, vals)
                    })?)
                }
                _ => return Err(bad(column.name, "unexpected physical type".into())),
            });
        }
        Ok(out)
    }

    /// The rows of row group `i`, in file order.
    pub fn row_group(&self, i: usize) -> Result<Vec<Reading<'static>>, LakeError> {
        let raw = self.raw_group(i)?;
        let n = raw.first().map_or(0, RawColumn::len);
        let mut texts: Vec<Vec<Option<ByteArray>>> = Vec::new();
        let mut doubles = Vec::new();
        let mut millis: Vec<Vec<Option<i64>>> = Vec::new();
        for column in raw {
            match column {
                RawColumn::Text(v) => texts.push(v),
                RawColumn::Double(v) => doubles.push(v),
                RawColumn::Millis(v) => millis.push(v),
            }
        }
        // Text columns in COLUMNS order: reading_id, subject_id, device_id, sensor_id,
        // unit, loinc, source, source_ref.
        let [
            ids,
            subjects,
            devices,
            sensors,
            _unit,
            _loinc,
            sources,
            refs,
        ] = <[_; 8]>::try_from(texts).map_err(|_| bad("*", "unexpected column kinds".into()))?;
        let (values, measured, received) = (&doubles[0], &millis[0], &millis[1]);
        let text = |col: &'static str, v: &Option<ByteArray>| -> Result<String, LakeError> {
            let v = v.as_ref().ok_or_else(|| bad(col, "null".into()))?;
            std::str::from_utf8(v.data())
                .map(str::to_owned)
                .map_err(|_| bad(col, "not UTF-8".into()))
        };
        let mut out = Vec::with_capacity(n);
        for r in 0..n {
            let id = text("reading_id", &ids[r])?;
            let source = match text("source", &sources[r])?.as_str() {
                "stream" => Source::Stream,
                "file" => Source::File,
                other => return Err(bad("source", format!("unknown source {other:?}"))),
            };
            out.push(Reading {
                reading_id: ReadingId::parse_hex(&id)
                    .ok_or_else(|| bad("reading_id", format!("not an id: {id:?}")))?,
                subject_id: text("subject_id", &subjects[r])?.into(),
                device_id: text("device_id", &devices[r])?.into(),
                sensor_id: text("sensor_id", &sensors[r])?.into(),
                metric: self.metric,
                value: values[r].ok_or_else(|| bad("value", "null".into()))?,
                measured_at: measured[r].ok_or_else(|| bad("measured_at", "null".into()))?,
                received_at: received[r].ok_or_else(|| bad("received_at", "null".into()))?,
                source,
                source_ref: text("source_ref", &refs[r])?.into(),
            });
        }
        Ok(out)
    }

    /// Every row, in file order.
    pub fn all_rows(&self) -> Result<Vec<Reading<'static>>, LakeError> {
        let mut out = Vec::with_capacity(self.rows() as usize);
        for i in 0..self.row_groups() {
            out.extend(self.row_group(i)?);
        }
        Ok(out)
    }
}

/// Reads a column chunk of `n` rows into one optional value per row.
fn read_all<T: Clone>(
    n: usize,
    mut read: impl FnMut(&mut Vec<i16>, &mut Vec<T>) -> parquet::errors::Result<(usize, usize, usize)>,
) -> Result<Vec<Option<T>>, LakeError> {
    let (mut defs, mut vals) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut rows = 0;
    while rows < n {
        let (records, _, _) = read(&mut defs, &mut vals)?;
        if records == 0 {
            break;
        }
        rows += records;
    }
    if defs.len() != n {
        return Err(bad("*", format!("{} values for {n} rows", defs.len())));
    }
    let mut values = vals.into_iter();
    defs.iter()
        .map(|&d| Ok(if d > 0 { values.next() } else { None }))
        .collect()
}

/// Reads a lake file back into readings. `metric` comes from the partition path.
pub fn read_readings(file: Bytes, metric: Metric) -> Result<Vec<Reading<'static>>, LakeError> {
    LakeFile::open(file, metric)?.all_rows()
}

/// Number of rows in a lake file, from its footer alone.
pub fn row_count(file: Bytes) -> Result<u64, LakeError> {
    let reader = SerializedFileReader::new(file)?;
    Ok(reader.metadata().file_metadata().num_rows().max(0) as u64)
}
