//! Reading lake files back, a row group at a time, with the `parquet` crate's column
//! readers: bounded memory for any file size (a rewrite holds one row group), and the
//! footer's statistics without reading any data.
//!
//! A [`LakeFile`] is its footer plus the bytes held of it: the whole file, or one row
//! group (or one column chunk) fetched by a ranged read, so a file of any size can be
//! read in the memory of its largest row group.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use parquet::column::reader::ColumnReader;
use parquet::data_type::ByteArray;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader, RowGroupMetaData};
use parquet::file::properties::{ReaderProperties, ReaderPropertiesPtr};
use parquet::file::reader::{ChunkReader, Length, RowGroupReader};
use parquet::file::serialized_reader::SerializedRowGroupReader;
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

/// The bytes held of a file: one contiguous range of it (the whole file, a row group,
/// a column chunk), at its offset in the file. Reads outside it are errors, not panics.
#[derive(Clone)]
pub(crate) struct Window {
    file_len: u64,
    start: u64,
    bytes: Bytes,
}

impl Window {
    fn slice(&self, start: u64, len: usize) -> parquet::errors::Result<Bytes> {
        let from = start.checked_sub(self.start);
        let to = from.and_then(|f| f.checked_add(len as u64));
        match (from, to) {
            (Some(f), Some(t)) if t <= self.bytes.len() as u64 => {
                Ok(self.bytes.slice(f as usize..t as usize))
            }
            _ => Err(ParquetError::General(format!(
                "bytes {start}..+{len} of the file are not held (held: {}..+{})",
                self.start,
                self.bytes.len()
            ))),
        }
    }
}

impl Length for Window {
    fn len(&self) -> u64 {
        self.file_len
    }
}

impl ChunkReader for Window {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let held_to = self.start + self.bytes.len() as u64;
        Ok(self
            .slice(start, held_to.saturating_sub(start) as usize)?
            .reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, length)
    }
}

/// An open lake file: its footer, and the bytes held of it.
pub struct LakeFile {
    meta: Arc<ParquetMetaData>,
    /// How many of [`COLUMNS`] the file holds: all, or those before the nullable ones
    /// added after it was written (read as null).
    present: usize,
    data: Arc<Window>,
    props: ReaderPropertiesPtr,
    metric: Metric,
}

fn bad(column: &'static str, problem: String) -> LakeError {
    LakeError::Column { column, problem }
}

fn subject_column() -> usize {
    COLUMNS
        .iter()
        .position(|c| c.name == "subject_id")
        .unwrap_or(1)
}

impl LakeFile {
    /// Opens a whole file of partition `metric` (a partition key, not a column) and
    /// checks that its columns are the lake's.
    pub fn open(file: Bytes, metric: Metric) -> Result<LakeFile, LakeError> {
        let meta = ParquetMetaDataReader::new().parse_and_finish(&file)?;
        let len = file.len() as u64;
        LakeFile::with_metadata(meta, len, metric, file)
    }

    /// Opens a file from its footer alone (the metadata between the data and the last 8
    /// bytes) and its length: no data is held until [`LakeFile::hold`].
    pub fn from_footer(
        footer: &[u8],
        file_len: u64,
        metric: Metric,
    ) -> Result<LakeFile, LakeError> {
        let meta = ParquetMetaDataReader::decode_metadata(footer)?;
        LakeFile::with_metadata(meta, file_len, metric, Bytes::new())
    }

    fn with_metadata(
        meta: ParquetMetaData,
        file_len: u64,
        metric: Metric,
        bytes: Bytes,
    ) -> Result<LakeFile, LakeError> {
        let schema = meta.file_metadata().schema_descr();
        let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
        let expected: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        let present = names.len();
        let older = present < COLUMNS.len() && COLUMNS[present..].iter().all(|c| c.nullable);
        if names[..] != expected[..present.min(expected.len())]
            || !(present == COLUMNS.len() || older)
        {
            return Err(bad("*", format!("unexpected columns {names:?}")));
        }
        for g in meta.row_groups() {
            for c in g.columns() {
                let (start, len) = c.byte_range();
                if start.checked_add(len).is_none_or(|end| end > file_len) {
                    return Err(bad("*", "a column chunk lies outside the file".into()));
                }
            }
        }
        Ok(LakeFile {
            meta: Arc::new(meta),
            present,
            data: Arc::new(Window {
                file_len,
                start: 0,
                bytes,
            }),
            props: Arc::new(ReaderProperties::builder().build()),
            metric,
        })
    }

    /// Whether the file holds every column of [`COLUMNS`] (else it predates some).
    pub fn has_every_column(&self) -> bool {
        self.present == COLUMNS.len()
    }

    pub(crate) fn metadata(&self) -> &ParquetMetaData {
        &self.meta
    }

    pub(crate) fn metadata_arc(&self) -> Arc<ParquetMetaData> {
        Arc::clone(&self.meta)
    }

    /// The bytes held (a cheap copy: the bytes are shared).
    pub(crate) fn window(&self) -> Window {
        (*self.data).clone()
    }

    /// The byte range (start, end exclusive) of row group `i`'s column chunks: what a
    /// ranged read fetches to read or copy the group.
    pub fn group_range(&self, i: usize) -> (u64, u64) {
        span(
            self.meta
                .row_group(i)
                .columns()
                .iter()
                .map(|c| c.byte_range()),
        )
    }

    /// The byte range of row group `i`'s `subject_id` column chunk alone.
    pub fn subject_chunk_range(&self, i: usize) -> (u64, u64) {
        span(std::iter::once(
            self.meta.row_group(i).column(subject_column()).byte_range(),
        ))
    }

    /// Holds `bytes`, the file's bytes from offset `start` (a range fetched for a row
    /// group or a column chunk), in place of what was held.
    pub fn hold(&mut self, start: u64, bytes: Bytes) {
        self.data = Arc::new(Window {
            file_len: self.data.file_len,
            start,
            bytes,
        });
    }

    fn group_reader(&self, i: usize) -> Result<SerializedRowGroupReader<'_, Window>, LakeError> {
        Ok(SerializedRowGroupReader::new(
            Arc::clone(&self.data),
            self.meta.row_group(i),
            self.meta.page_index_for_row_group(i),
            Arc::clone(&self.props),
        )?)
    }

    /// What a verbatim copy of row group `i` needs: the bytes held and its metadata.
    pub(crate) fn group_source(&self, i: usize) -> (&Window, &RowGroupMetaData) {
        (&self.data, self.meta.row_group(i))
    }

    /// The stored (compressed) bytes of row group `i`'s column chunks, in order.
    pub fn group_bytes(&self, i: usize) -> Result<Vec<Bytes>, LakeError> {
        self.meta
            .row_group(i)
            .columns()
            .iter()
            .map(|c| {
                let (start, len) = c.byte_range();
                Ok(self.data.slice(start, len as usize)?)
            })
            .collect()
    }

    pub fn rows(&self) -> u64 {
        self.meta.file_metadata().num_rows().max(0) as u64
    }

    /// Rows of row group `i`.
    pub fn group_rows(&self, i: usize) -> u64 {
        self.meta.row_group(i).num_rows().max(0) as u64
    }

    /// Whether the writer recorded the rows as sorted by subject (compacted files).
    pub fn sorted_by_subject(&self) -> bool {
        let meta = &self.meta;
        meta.num_row_groups() > 0
            && meta.row_group(0).sorting_columns().is_some_and(|cols| {
                cols.first().map(|c| c.column_idx as usize) == Some(subject_column())
            })
    }

    pub fn row_groups(&self) -> usize {
        self.meta.num_row_groups()
    }

    /// The smallest and largest `subject_id` of row group `i`, from the footer (`None`
    /// when the writer kept no statistics for it).
    pub fn subject_range(&self, i: usize) -> Option<(Vec<u8>, Vec<u8>)> {
        match self
            .meta
            .row_group(i)
            .column(subject_column())
            .statistics()?
        {
            Statistics::ByteArray(s) => {
                Some((s.min_opt()?.data().to_vec(), s.max_opt()?.data().to_vec()))
            }
            _ => None,
        }
    }

    /// The `subject_id` column of row group `i` alone (one column chunk decoded; only
    /// its bytes need be held).
    pub fn subjects(&self, i: usize) -> Result<Vec<Option<ByteArray>>, LakeError> {
        let at = subject_column();
        let group = self.group_reader(i)?;
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
        let group = self.group_reader(i)?;
        let n = group.metadata().num_rows().max(0) as usize;
        let mut out = Vec::with_capacity(COLUMNS.len());
        for (c, column) in COLUMNS.iter().enumerate() {
            if c >= self.present {
                out.push(RawColumn::Text(vec![None; n]));
                continue;
            }
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
        // unit, loinc, source, source_ref, cohort.
        let [
            ids,
            subjects,
            devices,
            sensors,
            _unit,
            _loinc,
            sources,
            refs,
            cohorts,
        ] = <[_; 9]>::try_from(texts).map_err(|_| bad("*", "unexpected column kinds".into()))?;
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
                "kafka" => Source::Kafka,
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
                cohort: match &cohorts[r] {
                    None => None,
                    c => Some(text("cohort", c)?.into()),
                },
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
    let meta = ParquetMetaDataReader::new().parse_and_finish(&file)?;
    Ok(meta.file_metadata().num_rows().max(0) as u64)
}

/// The smallest start and largest end of `(start, len)` ranges.
fn span(ranges: impl Iterator<Item = (u64, u64)>) -> (u64, u64) {
    let (lo, hi) = ranges.fold((u64::MAX, 0), |(lo, hi), (start, len)| {
        (lo.min(start), hi.max(start.saturating_add(len)))
    });
    (lo.min(hi), hi)
}
