//! One file, streamed: bytes -> (gunzip) -> rows -> validated readings -> sorted Parquet
//! chunks per lake partition; rejected rows -> the quarantine report.
//!
//! Synchronous and free of I/O but its input: the pipeline reads the file's bytes and
//! hands back, one [`Step`] at a time, what the outside world must do (resolve these
//! devices, store this chunk, store this report part). The handler does it and calls
//! [`Pipeline::advance`] again, so data flows one way and every AWS call stays in the
//! handler. The jobs live beside it: `pulselake_rawfile` (bytes, records), [`crate::csv`] and
//! [`crate::ndjson`] (rows), [`crate::intern`] (names), [`crate::chunks`] (buffering,
//! sorting, Parquet), [`crate::report`] (the quarantine report).

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use pulselake_adapters::Resolved;
use pulselake_domain::message::RawReading;
use pulselake_domain::{
    Assignment, DeviceMappings, DeviceRecord, Metric, Partition, Provenance, Reason, Rejection,
    Source, TimePolicy, normalize,
};

use crate::chunks::{ChunkFile, Chunks, Repeat, Row};
use crate::csv::CsvRows;
pub use crate::error::FileError;
use crate::formats::Format;
use crate::intern::{Interner, Sym};
use crate::report::{Report, RowRef};
use crate::rows::{Block, Counts, Pending, Sink, reject};
use pulselake_lake::NULL_CODE;
use pulselake_rawfile::Records;
use pulselake_rawfile::{Bounded, ByteLimits, GzMembers, Hashed, Tally};

/// The file being ingested.
pub struct FileSpec<'a> {
    pub format: Format,
    /// For seed files: the subject their patient maps to.
    pub subject: Option<String>,
    /// Short hash of the source key: names outputs and provenance without the key itself.
    pub source_hash: &'a str,
    /// How quarantine entries refer to the file (kept inside the report, never in a key).
    pub reference: &'a str,
    pub received_at: i64,
    pub mappings: &'a DeviceMappings,
    pub policy: TimePolicy,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_buffered_rows: usize,
    pub row_group_rows: usize,
    pub max_line_bytes: usize,
    pub report_part_bytes: usize,
    pub block_rows: usize,
    /// Rows listed in the quarantine report per reason; past that, one entry per reason
    /// says how many more there were (the raw file is archived whole).
    pub report_rows_per_reason: u64,
    pub bytes: ByteLimits,
    /// The lake's retention in calendar years: older readings are `past_retention`.
    pub retention_years: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_buffered_rows: 1 << 20,
            row_group_rows: pulselake_lake::DEFAULT_ROW_GROUP_ROWS,
            max_line_bytes: 1 << 20,
            report_part_bytes: 8 << 20,
            // Small enough that a block's rows and text stay in the CPU's cache.
            block_rows: 2048,
            report_rows_per_reason: 1000,
            bytes: ByteLimits::default(),
            retention_years: pulselake_domain::retention::MIN_RETENTION_YEARS,
        }
    }
}

/// A written chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub partition: Partition,
    pub number: u32,
    pub rows: u64,
}

/// What the file came to. `readings = written + quarantined readings`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileReport {
    pub bytes: u64,
    pub sha256: String,
    /// Data lines (CSV rows, NDJSON lines) after the header.
    pub lines: u64,
    /// Readings found in them (one per CSV row; possibly many per NDJSON line).
    pub readings: u64,
    pub written: u64,
    /// Rejected readings by reason.
    pub quarantined: BTreeMap<Reason, u64>,
    /// NDJSON lines rejected before their readings could be counted.
    pub unreadable_lines: u64,
    pub chunks: Vec<Chunk>,
    pub report_parts: u32,
    /// High-water mark of rows held in memory.
    pub peak_buffered_rows: usize,
}

impl FileReport {
    pub fn quarantined_readings(&self) -> u64 {
        self.quarantined.values().sum()
    }
}

/// What the outside world must do next.
pub enum Step {
    /// Look these device ids up in the registry and hand the answer to
    /// [`Pipeline::resolved`].
    Resolve(Vec<String>),
    /// Store a sorted Parquet chunk of a partition.
    Chunk(ChunkFile),
    /// Store part `part` of the quarantine report (NDJSON).
    ReportPart { part: u32, ndjson: Vec<u8> },
    /// The file is read; nothing more will come.
    Done(FileReport),
}

/// What the registry said of a device id of this file.
enum Slot {
    Unresolved,
    Unknown,
    /// The record and, for each of its assignments, the interned subject and cohort
    /// ([`NULL_CODE`] for none).
    Known(Arc<DeviceRecord>, Vec<(Sym, Sym)>),
}

enum Rows {
    /// A CSV file whose header is still to be read.
    CsvUnopened,
    Csv(CsvRows),
    Ndjson,
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    /// Reading rows into the block.
    Reading,
    /// The block's devices were asked for ([`Step::Resolve`]).
    Resolving,
    /// The block can be validated.
    Validating,
    /// Everything was read and validated: partitions from this index on are still
    /// to be written (one per step, so one chunk is in memory at a time), then finish.
    Ending(usize),
    Done,
}

type Input<'s> = Records<Bounded<Box<dyn Read + Send + 's>>>;

pub struct Pipeline<'s> {
    spec: &'s FileSpec<'s>,
    limits: Limits,
    input: Input<'s>,
    tally: Tally,
    gzip: bool,
    rows: Rows,
    state: State,
    at_end: bool,
    strings: Interner,
    /// Indexed by the device id's symbol.
    devices: Vec<Slot>,
    block: Block,
    chunks: Chunks,
    report: Report,
    counts: Counts,
    out: FileReport,
    ready: VecDeque<Step>,
    /// Why the file is refused as a whole, found at its end (after its report parts).
    refusal: Option<Rejection>,
    /// Time spent sorting and encoding chunks (a few clock reads per file), for the bench's
    /// breakdown by phase.
    encoding: std::time::Duration,
}

impl<'s> Pipeline<'s> {
    /// A pipeline over the raw object bytes `input` (gzip is detected from them).
    pub fn new(
        input: impl Read + Send + 's,
        spec: &'s FileSpec<'s>,
        limits: Limits,
    ) -> Pipeline<'s> {
        let hashed = Hashed::new(input);
        let tally = hashed.tally();
        let mut buffered = BufReader::with_capacity(256 * 1024, hashed);
        // A failed first read surfaces at the first `advance`, as any read error does.
        let gzip = buffered
            .fill_buf()
            .map(|head| head.starts_with(&[0x1f, 0x8b]))
            .unwrap_or(false);
        let decoded: Box<dyn Read + Send + 's> = if gzip {
            Box::new(GzMembers::new(buffered))
        } else {
            Box::new(buffered)
        };
        let bounded = Bounded::new(decoded, tally.clone(), limits.bytes);
        Pipeline {
            spec,
            limits,
            input: Records::new(bounded, limits.max_line_bytes),
            tally,
            gzip,
            rows: match spec.format {
                Format::Ndjson => Rows::Ndjson,
                Format::Csv | Format::Seed { .. } => Rows::CsvUnopened,
            },
            state: State::Reading,
            at_end: false,
            encoding: std::time::Duration::ZERO,
            strings: Interner::default(),
            devices: Vec::new(),
            block: Block::default(),
            chunks: Chunks::new(
                limits.max_buffered_rows,
                limits.row_group_rows,
                spec.source_hash,
                spec.received_at,
            ),
            report: Report::new(
                spec.reference,
                spec.received_at,
                limits.report_rows_per_reason,
                limits.report_part_bytes,
            ),
            counts: Counts::default(),
            out: FileReport::default(),
            ready: VecDeque::new(),
            refusal: None,
        }
    }

    /// Does the next piece of work and returns what the outside world must do.
    pub fn advance(&mut self) -> Result<Step, FileError> {
        loop {
            if let Some(step) = self.ready.pop_front() {
                return Ok(step);
            }
            match self.state {
                State::Reading => {
                    self.at_end = !self.read_block()?;
                    let wanted = self.unresolved_devices();
                    if wanted.is_empty() {
                        self.state = State::Validating;
                    } else {
                        self.state = State::Resolving;
                        return Ok(Step::Resolve(wanted));
                    }
                }
                // The caller did not answer: ask again.
                State::Resolving => return Ok(Step::Resolve(self.unresolved_devices())),
                State::Validating => {
                    self.validate_block()?;
                    self.state = if self.at_end {
                        State::Ending(0)
                    } else {
                        State::Reading
                    };
                }
                State::Ending(i) if i < self.chunks.partitions() => {
                    self.flush(i)?;
                    self.state = State::Ending(i + 1);
                }
                State::Ending(_) => {
                    self.end();
                    self.state = State::Done;
                }
                State::Done => {
                    return match &self.refusal {
                        Some(rej) => Err(FileError::Content(rej.clone())),
                        None => Ok(Step::Done(self.report())),
                    };
                }
            }
        }
    }

    /// The registry's answer to [`Step::Resolve`].
    pub fn resolved(&mut self, found: &Resolved) {
        for (sym, slot) in self.devices.iter_mut().enumerate() {
            if !matches!(slot, Slot::Unresolved) {
                continue;
            }
            let name = self.strings.name(sym as Sym);
            if let Some(answer) = found.get(name) {
                *slot = match answer {
                    None => Slot::Unknown,
                    Some(r) => {
                        let subjects = r
                            .assignments
                            .iter()
                            .map(|a| {
                                let cohort = a.cohort.as_deref();
                                (
                                    self.strings.get(&a.subject_id),
                                    cohort.map_or(NULL_CODE, |c| self.strings.get(c)),
                                )
                            })
                            .collect();
                        Slot::Known(r.clone(), subjects)
                    }
                };
            }
        }
        if self.state == State::Resolving {
            self.state = State::Validating;
        }
    }

    /// The file's report so far (bytes and hash of what was read): for a file refused
    /// midway, what its quarantine entry says.
    pub fn report(&self) -> FileReport {
        let (bytes, sha256) = self.tally.finish();
        FileReport {
            bytes,
            sha256,
            lines: self.counts.lines,
            readings: self.counts.readings,
            quarantined: self.counts.quarantined.clone(),
            unreadable_lines: self.counts.unreadable_lines,
            peak_buffered_rows: self.chunks.peak_buffered,
            ..self.out.clone()
        }
    }

    /// Reads rows into the block; false at the end of the file.
    fn read_block(&mut self) -> Result<bool, FileError> {
        self.block.clear();
        if let Rows::CsvUnopened = self.rows {
            let subject = self.spec.subject.as_deref();
            let opened = CsvRows::open(&mut self.input, &self.spec.format, subject);
            self.rows = Rows::Csv(opened.map_err(|f| f.classify(self.gzip))?);
        }
        let mut sink = Sink {
            block: &mut self.block,
            strings: &mut self.strings,
            report: &mut self.report,
            counts: &mut self.counts,
            block_rows: self.limits.block_rows,
        };
        let more = match &mut self.rows {
            Rows::Csv(csv) => csv.fill(&mut self.input, &mut sink),
            Rows::Ndjson => crate::ndjson::fill(&mut self.input, self.spec.mappings, &mut sink),
            Rows::CsvUnopened => Ok(false),
        };
        self.take_report_parts();
        more.map_err(|f| f.classify(self.gzip))
    }

    /// The block's devices this file has not looked up yet. A seed file's devices are
    /// its patient's: they are resolved here, without the registry.
    fn unresolved_devices(&mut self) -> Vec<String> {
        if self.devices.len() < self.strings.len() {
            self.devices
                .resize_with(self.strings.len(), || Slot::Unresolved);
        }
        let mut wanted: Vec<Sym> = self
            .block
            .pending
            .iter()
            .map(|p| p.device)
            .filter(|d| matches!(self.devices[*d as usize], Slot::Unresolved))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if let Some(subject) = &self.spec.subject {
            let found: Resolved = wanted
                .iter()
                .map(|&d| {
                    let id = self.strings.name(d).to_owned();
                    let record = DeviceRecord {
                        device_id: id.clone(),
                        assignments: vec![Assignment {
                            subject_id: subject.clone(),
                            valid_from: i64::MIN,
                            valid_to: None,
                            cohort: None,
                        }],
                    };
                    (id, Some(Arc::new(record)))
                })
                .collect();
            self.resolved(&found);
            return Vec::new();
        }
        wanted
            .iter()
            .map(|&d| self.strings.name(d).to_owned())
            .collect()
    }

    /// Validates the block's readings and buffers the valid ones by partition.
    fn validate_block(&mut self) -> Result<(), FileError> {
        let block = std::mem::take(&mut self.block);
        for p in &block.pending {
            let result = match self.devices.get(p.device as usize) {
                Some(Slot::Known(record, subjects)) => self.validate(p, record, subjects),
                _ => Err(Rejection::new(
                    Reason::UnknownDevice,
                    "device is not in the registry",
                )),
            };
            match result {
                Ok((metric, row)) => {
                    if let Some(full) = self.chunks.add(metric, row) {
                        self.flush(full)?;
                    }
                }
                Err(rej) => {
                    let payload = String::from_utf8_lossy(&block.text[p.text.0..p.text.1]);
                    let index = (self.spec.format == Format::Ndjson).then_some(p.index);
                    let at = RowRef {
                        line: p.line,
                        index,
                    };
                    reject(
                        &mut self.report,
                        &mut self.counts,
                        at,
                        rej,
                        Some(&payload),
                        Some(1),
                    );
                }
            }
        }
        self.block = block;
        self.take_report_parts();
        Ok(())
    }

    fn validate(
        &self,
        p: &Pending,
        device: &DeviceRecord,
        subjects: &[(Sym, Sym)],
    ) -> Result<(Metric, Row), Rejection> {
        let raw = RawReading {
            sensor_id: Cow::Borrowed(self.strings.name(p.sensor)),
            metric: Cow::Borrowed(self.strings.name(p.metric)),
            value: p.value,
            unit: Cow::Borrowed(self.strings.name(p.unit)),
            measured_at: p.measured_at,
        };
        let prov = Provenance {
            source: Source::File,
            source_ref: "",
            received_at: self.spec.received_at,
        };
        let r = normalize(raw, device, prov, &self.spec.policy)?;
        // The assignment normalize found: its subject was interned when the device resolved.
        let (subject, cohort) = device
            .assignment_index_at(r.measured_at)
            .and_then(|i| subjects.get(i).copied())
            .ok_or_else(|| {
                Rejection::new(
                    Reason::DeviceUnassigned,
                    "the device's subject is not known to this file",
                )
            })?;
        let row = Row {
            id: r.reading_id,
            subject,
            cohort,
            device: p.device,
            sensor: p.sensor,
            line: u32::try_from(p.line).unwrap_or(u32::MAX),
            value: r.value,
            measured_at: r.measured_at,
        };
        Ok((r.metric, row))
    }

    /// Sorts and encodes one partition's rows; the chunk is queued for storing.
    /// Time spent so far sorting and encoding chunks as Parquet.
    pub fn encoding_time(&self) -> std::time::Duration {
        self.encoding
    }

    fn flush(&mut self, partition: usize) -> Result<(), FileError> {
        let mut repeats: Vec<Repeat> = Vec::new();
        let started = std::time::Instant::now();
        let chunk = self.chunks.flush(partition, &self.strings, &mut repeats);
        self.encoding += started.elapsed();
        let chunk = chunk.map_err(|e| {
            // Deterministic for these rows: a retry would fail the same way.
            FileError::Content(Rejection::new(
                Reason::Unwritable,
                format!("the rows could not be written as Parquet: {e}"),
            ))
        })?;
        for r in repeats {
            reject(
                &mut self.report,
                &mut self.counts,
                r.at,
                r.rejection,
                None,
                Some(1),
            );
        }
        if let Some(c) = chunk {
            self.out.written += c.rows;
            self.out.chunks.push(Chunk {
                partition: c.partition,
                number: c.number,
                rows: c.rows,
            });
            self.ready.push_back(Step::Chunk(c));
        }
        Ok(())
    }

    /// After the last chunk: the report's last part, and whether the file as a whole
    /// is refused.
    fn end(&mut self) {
        self.out.report_parts = self.report.finish();
        self.take_report_parts();
        let report = self.report();
        if report.readings == 0 && report.unreadable_lines == 0 && report.lines == 0 {
            self.refusal = Some(Rejection::new(
                Reason::EmptyFile,
                "the file has no data rows",
            ));
        } else if report.written == 0 {
            let why = format!(
                "none of its {} readings is valid (see the quarantine report)",
                report.readings
            );
            self.refusal = Some(Rejection::new(Reason::NoValidRows, why));
        }
    }

    fn take_report_parts(&mut self) {
        while let Some((part, ndjson)) = self.report.take_part() {
            self.ready.push_back(Step::ReportPart { part, ndjson });
        }
    }
}

/// What [`run_in_memory`] kept: the report, the chunks and the report parts.
pub struct InMemory {
    pub report: FileReport,
    pub chunks: Vec<ChunkFile>,
    pub report_parts: Vec<Vec<u8>>,
}

/// Runs a pipeline to the end against an in-memory registry, keeping its outputs:
/// for benchmarks and tests, which measure and check the pipeline without any I/O.
pub fn run_in_memory(
    mut pipeline: Pipeline<'_>,
    registry: &std::collections::HashMap<String, Arc<DeviceRecord>>,
) -> Result<InMemory, FileError> {
    let (mut chunks, mut report_parts) = (Vec::new(), Vec::new());
    loop {
        match pipeline.advance()? {
            Step::Resolve(ids) => {
                let found: Resolved = ids
                    .into_iter()
                    .map(|id| {
                        let record = registry.get(&id).cloned();
                        (id, record)
                    })
                    .collect();
                pipeline.resolved(&found);
            }
            Step::Chunk(c) => chunks.push(c),
            Step::ReportPart { ndjson, .. } => report_parts.push(ndjson),
            Step::Done(report) => {
                return Ok(InMemory {
                    report,
                    chunks,
                    report_parts,
                });
            }
        }
    }
}
