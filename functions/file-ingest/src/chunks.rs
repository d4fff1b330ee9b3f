//! Valid readings wait here, per lake partition, in compact form (interned strings, 56
//! bytes a row), at most `max_buffered_rows` of them across partitions; then a
//! partition is sorted by subject then time, cleared of repeated readings, and encoded
//! as one Parquet chunk. So memory stays bounded whatever the file size.

use std::collections::{BTreeMap, HashMap};

use pulselake_domain::{Metric, Partition, ReadingId, Reason, Rejection, Source};
use pulselake_lake::{Columns, FileLayout, LakeError, Strings};

use crate::intern::{Interner, Sym};
use crate::report::RowRef;

const DAY_MS: i64 = 86_400_000;

/// A validated reading waiting for its chunk.
#[derive(Clone, Copy)]
pub struct Row {
    pub id: ReadingId,
    pub subject: Sym,
    pub device: Sym,
    pub sensor: Sym,
    /// [`pulselake_lake::NULL_CODE`] when the assignment names no cohort.
    pub cohort: Sym,
    /// Line numbers of files up to 2 GB fit (a line is at least two bytes).
    pub line: u32,
    pub value: f64,
    pub measured_at: i64,
}

/// One partition's rows, sorted and encoded.
pub struct ChunkFile {
    pub partition: Partition,
    /// The partition's chunk number within the file (0, 1, ...).
    pub number: u32,
    pub rows: u64,
    pub parquet: Vec<u8>,
}

/// A repeated reading found while sorting: its row, and why it is not written.
pub struct Repeat {
    pub at: RowRef,
    pub rejection: Rejection,
}

pub struct Chunks {
    /// Rows waiting per partition; `index` finds a partition's entry.
    partitions: Vec<(Partition, Vec<Row>)>,
    index: HashMap<Partition, usize, foldhash::fast::RandomState>,
    /// Per metric, the partition that took its last row, and that day's bounds:
    /// consecutive rows of a metric almost always fall on the same day.
    recent: [Option<(i64, i64, usize)>; Metric::COUNT],
    numbers: BTreeMap<Partition, u32>,
    buffered: usize,
    pub peak_buffered: usize,
    max_buffered: usize,
    layout: FileLayout,
    /// `file:<source hash>:L`: each row's `source_ref` is this and its line number.
    source_ref: String,
    received_at: i64,
}

impl Chunks {
    pub fn new(
        max_buffered: usize,
        row_group_rows: usize,
        source_hash: &str,
        received_at: i64,
    ) -> Chunks {
        Chunks {
            partitions: Vec::new(),
            index: HashMap::default(),
            recent: [None; Metric::COUNT],
            numbers: BTreeMap::new(),
            buffered: 0,
            peak_buffered: 0,
            max_buffered,
            layout: FileLayout {
                row_group_rows,
                sorted_by_subject: true,
            },
            source_ref: pulselake_domain::FileLine::prefix(source_hash),
            received_at,
        }
    }

    /// Buffers a row; when the buffer is full, returns the partition to flush (the largest).
    pub fn add(&mut self, metric: Metric, row: Row) -> Option<usize> {
        let index = match self.recent[metric as usize] {
            Some((start, end, i)) if (start..end).contains(&row.measured_at) => i,
            _ => {
                let partition = Partition::of(metric, row.measured_at);
                let i = match self.index.get(&partition) {
                    Some(&i) => i,
                    None => {
                        self.partitions.push((partition, Vec::new()));
                        self.index.insert(partition, self.partitions.len() - 1);
                        self.partitions.len() - 1
                    }
                };
                let start = partition.date.start_epoch_ms();
                self.recent[metric as usize] = Some((start, start + DAY_MS, i));
                i
            }
        };
        self.partitions[index].1.push(row);
        self.buffered += 1;
        self.peak_buffered = self.peak_buffered.max(self.buffered);
        if self.buffered < self.max_buffered {
            return None;
        }
        self.partitions
            .iter()
            .enumerate()
            .max_by_key(|(_, (_, rows))| rows.len())
            .map(|(i, _)| i)
    }

    /// Partitions with rows waiting.
    pub fn partitions(&self) -> usize {
        self.partitions.len()
    }

    /// Sorts partition `index`'s rows, takes out repeated readings (returned, for the
    /// report) and encodes the rest as the partition's next chunk.
    pub fn flush(
        &mut self,
        index: usize,
        names: &Interner,
        repeats: &mut Vec<Repeat>,
    ) -> Result<Option<ChunkFile>, LakeError> {
        let partition = self.partitions[index].0;
        let rows = std::mem::take(&mut self.partitions[index].1);
        if rows.is_empty() {
            return Ok(None);
        }
        self.buffered -= rows.len();
        let mut rows = sorted(rows, names);
        // Repeats of a reading are adjacent, the first line's first: it is kept. A repeat
        // with the same value is a duplicate row; with another value, a conflict.
        rows.dedup_by(|r, kept| {
            let repeat = r.id == kept.id;
            if repeat {
                repeats.push(repeat_of(r, kept));
            }
            repeat
        });
        let count = rows.len() as u64;
        let parquet = self.encode(partition, rows, names)?;
        let number = {
            let n = self.numbers.entry(partition).or_default();
            *n += 1;
            *n - 1
        };
        Ok(Some(ChunkFile {
            partition,
            number,
            rows: count,
            parquet,
        }))
    }

    /// One Parquet file of `rows`, in that order. The rows are dropped once their
    /// columns are made, so the file is written with less memory in use.
    fn encode(
        &self,
        partition: Partition,
        rows: Vec<Row>,
        names: &Interner,
    ) -> Result<Vec<u8>, LakeError> {
        let n = rows.len();
        let mut ids = Vec::with_capacity(n);
        let mut subjects = Vec::with_capacity(n);
        let mut devices = Vec::with_capacity(n);
        let mut sensors = Vec::with_capacity(n);
        let mut cohorts = Vec::with_capacity(n);
        let mut values = Vec::with_capacity(n);
        let mut measured = Vec::with_capacity(n);
        let mut refs = Vec::with_capacity(n * (self.source_ref.len() + 7));
        let mut ref_ends = Vec::with_capacity(n);
        let mut line = itoa::Buffer::new();
        for r in &rows {
            ids.push(r.id);
            subjects.push(r.subject);
            devices.push(r.device);
            sensors.push(r.sensor);
            cohorts.push(r.cohort);
            values.push(r.value);
            measured.push(r.measured_at);
            refs.extend_from_slice(self.source_ref.as_bytes());
            refs.extend_from_slice(line.format(r.line).as_bytes());
            ref_ends.push(u32::try_from(refs.len()).unwrap_or(u32::MAX));
        }
        drop(rows);
        let received = vec![self.received_at; n];
        let name = |sym: Sym| names.name(sym);
        let coded = |codes| Strings::Coded { codes, name: &name };
        let columns = Columns {
            reading_id: &ids,
            subject_id: coded(&subjects),
            device_id: coded(&devices),
            sensor_id: coded(&sensors),
            value: &values,
            unit: Strings::Same(partition.metric.unit()),
            loinc: Strings::Same(partition.metric.loinc()),
            measured_at: &measured,
            received_at: &received,
            source: Strings::Same(Source::File.as_str()),
            source_ref: Strings::Each {
                bytes: &refs,
                ends: &ref_ends,
            },
            cohort: coded(&cohorts),
        };
        pulselake_lake::encode(&columns, self.layout)
    }
}

fn repeat_of(r: &Row, kept: &Row) -> Repeat {
    let first = kept.line;
    let rejection = if r.value == kept.value {
        Rejection::new(
            Reason::DuplicateRow,
            format!("the same reading as line {first}"),
        )
    } else {
        Rejection::new(
            Reason::ConflictingDuplicate,
            format!(
                "the same sensor, metric and time as line {first} with another value; \
                 line {first}'s value is kept"
            ),
        )
    };
    Repeat {
        at: RowRef {
            line: u64::from(r.line),
            index: None,
        },
        rejection,
    }
}

/// The rows in lake order: subject (by name), time, then device, sensor and line,
/// so repeats of a reading are adjacent and the first line's comes first.
///
/// A counting sort by subject (two sequential passes; each subject's rows are
/// written as one stream), then a sort of each subject's rows, which fit in cache
/// and mostly arrive in time order already. Sorting the whole buffer at once would
/// touch it in random order.
fn sorted(rows: Vec<Row>, names: &Interner) -> Vec<Row> {
    let Some(&first) = rows.first() else {
        return rows;
    };
    // Subject ranks by name in a dense table indexed by symbol.
    let mut rank = vec![u32::MAX; names.len()];
    let mut subjects: Vec<Sym> = Vec::new();
    for r in &rows {
        let slot = &mut rank[r.subject as usize];
        if *slot == u32::MAX {
            *slot = 0;
            subjects.push(r.subject);
        }
    }
    subjects.sort_unstable_by(|a, b| names.name(*a).cmp(names.name(*b)));
    for (i, s) in subjects.iter().enumerate() {
        rank[*s as usize] = i as u32;
    }
    let mut starts = vec![0usize; subjects.len() + 1];
    for r in &rows {
        starts[rank[r.subject as usize] as usize + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut next = starts.clone();
    let mut out = vec![first; rows.len()];
    for r in &rows {
        let at = &mut next[rank[r.subject as usize] as usize];
        out[*at] = *r;
        *at += 1;
    }
    drop(rows);
    for w in starts.windows(2) {
        out[w[0]..w[1]].sort_unstable_by_key(|r| (r.measured_at, r.device, r.sensor, r.line));
    }
    out
}
