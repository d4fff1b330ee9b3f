//! One file, streamed: bytes -> (gunzip) -> rows -> validated readings -> sorted Parquet
//! chunks per lake partition; rejected rows -> the quarantine report. Synchronous and
//! free of AWS types; the handler runs it on a blocking thread and lends it [`FileIo`].
//!
//! Memory stays bounded whatever the file size: rows wait in compact form (interned
//! strings, 48 bytes a row) and at most `max_buffered_rows` of them across partitions;
//! then the largest partition is sorted and written as one Parquet chunk. Lines longer
//! than `max_line_bytes` reject the file instead of being buffered.
//!
//! The hot path is one pass over the read buffer: rows are split in place (see
//! [`crate::records`]), strings are interned once, and everything after that works on
//! integer ids: the registry table, subject ranks, the sort key.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use pulselake_adapters::{AwsError, Resolved};
use pulselake_domain::message::RawReading;
use pulselake_domain::message::check_id;
use pulselake_domain::quarantine::QuarantineEntry;
use pulselake_domain::time::{format_rfc3339_ms, parse_timestamp_utc_default_ms};
use pulselake_domain::{
    Assignment, DeviceMappings, DeviceRecord, Metric, Partition, Provenance, ReadingId, Reason,
    Rejection, Source, TimePolicy, normalize,
};
use pulselake_lake::{Columns, Strings};

use crate::formats::{Format, check_seed_header, csv_layout, parse_value, seed_time, short};
use crate::intake::{Bounded, ByteLimitExceeded, ByteLimits, GzMembers, Hashed};
use crate::records::{RecordError, Records};

/// What the pipeline needs from the outside world.
pub trait FileIo {
    fn resolve_devices(&mut self, ids: &[&str]) -> Result<Resolved, AwsError>;
    /// Stores one sorted Parquet chunk of a partition.
    fn write_chunk(
        &mut self,
        partition: Partition,
        chunk: u32,
        parquet: Vec<u8>,
    ) -> Result<(), AwsError>;
    /// Stores one part of the quarantine report (NDJSON).
    fn write_report_part(&mut self, part: u32, ndjson: Vec<u8>) -> Result<(), AwsError>;
}

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_buffered_rows: 1 << 20,
            row_group_rows: 128 * 1024,
            max_line_bytes: 1 << 20,
            report_part_bytes: 8 << 20,
            // Small enough that a block's rows and text stay in the CPU's cache.
            block_rows: 2048,
            report_rows_per_reason: 1000,
            bytes: ByteLimits::default(),
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

/// Why a file could not be ingested.
#[derive(Debug)]
pub enum FileFailure {
    /// The file as a whole is unusable: quarantine it whole with this reason.
    Rejected(Rejection, Box<FileReport>),
    /// Storage or network trouble: retry later.
    Transient(AwsError),
}

impl From<AwsError> for FileFailure {
    fn from(e: AwsError) -> Self {
        FileFailure::Transient(e)
    }
}

// ---------------------------------------------------------------- buffering

type Sym = u32;

const DAY_MS: i64 = 86_400_000;

/// A word-at-a-time multiplicative hash (as rustc's FxHash) for the interner: names
/// are short and hashed several times per row, where SipHash or a byte-wise FNV would
/// be a tenth of the ingest time. Seeded per file, so a crafted file cannot aim
/// collisions at it.
#[derive(Clone, Copy)]
struct WordHash(u64);

const WORD_HASH_K: u64 = 0x517c_c1b7_2722_0a95;

impl WordHash {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(WORD_HASH_K);
    }
}

impl std::hash::Hasher for WordHash {
    fn finish(&self) -> u64 {
        // A full avalanche (MurmurHash3's finalizer): the table uses both the low bits
        // (bucket) and the top seven (tag), and ids differ only in a few bytes.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            self.add(u64::from_le_bytes(word));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// Builds [`WordHash`]es from one random seed.
#[derive(Clone, Copy)]
struct Seeded(u64);

impl Default for Seeded {
    fn default() -> Self {
        use std::hash::BuildHasher;
        Seeded(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64))
    }
}

impl std::hash::BuildHasher for Seeded {
    type Hasher = WordHash;

    fn build_hasher(&self) -> WordHash {
        WordHash(self.0)
    }
}

type FastMap<K, V> = HashMap<K, V, Seeded>;

/// Strings seen in the file, stored once per kind of field. Names of up to 24 bytes
/// (all the ids of the fleet) have an inline key. A row's fields are found through a
/// compact table per field (a 64-bit digest of the key -> symbol, 16 bytes a slot, so
/// the busiest, device ids, stays in the CPU's cache), checked against the symbol's
/// key; the exact tables behind it settle digest collisions.
#[derive(Default)]
struct Interner {
    /// Per row field (device, sensor, metric, unit), then everything else.
    short: [FastMap<ShortKey, Sym>; FIELDS + 1],
    long: FastMap<Box<str>, Sym>,
    digests: [FastMap<u64, Sym>; FIELDS],
    names: Vec<Box<str>>,
    /// Each symbol's key (`ShortKey::LONG` for names too long for one).
    keys: Vec<ShortKey>,
    /// The last short string of each field and its symbol: files list many rows of
    /// one sensor, metric or unit in a row, and a match costs no hash lookup.
    last: [Option<(ShortKey, Sym)>; FIELDS],
}

/// Row fields interned through [`Interner::get_field`].
const FIELDS: usize = 4;

/// A string of up to 24 bytes as three words and its length. The words are read
/// straight from the string (overlapping loads: together they cover every byte), so
/// building a key stores nothing that a comparison must then reload.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ShortKey {
    words: [u64; 3],
    len: u8,
}

impl ShortKey {
    /// Stands for names longer than a key holds (no key has this length).
    const LONG: ShortKey = ShortKey {
        words: [0; 3],
        len: u8::MAX,
    };

    /// Not unique (collisions are checked), just cheap and well spread by the table's hash.
    fn digest(&self) -> u64 {
        self.words[0]
            ^ self.words[1].rotate_left(21)
            ^ self.words[2].rotate_left(42)
            ^ u64::from(self.len)
    }

    #[inline]
    fn new(s: &str) -> Option<ShortKey> {
        let b = s.as_bytes();
        let n = b.len();
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let half = |at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&b[at..at + 4]);
            u64::from(u32::from_le_bytes(w))
        };
        let words = match n {
            0 => [0; 3],
            1..=3 => [
                u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16,
                0,
                0,
            ],
            4..=7 => [half(0) | half(n - 4) << 32, 0, 0],
            8..=16 => [word(0), word(n - 8), 0],
            17..=24 => [word(0), word(8), word(n - 8)],
            _ => return None,
        };
        Some(ShortKey {
            words,
            len: n as u8,
        })
    }
}

impl std::hash::Hash for ShortKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.words[0] ^ u64::from(self.len).rotate_right(8));
        state.write_u64(self.words[1]);
        state.write_u64(self.words[2]);
    }
}

impl Interner {
    fn get(&mut self, s: &str) -> Sym {
        if let Some(key) = ShortKey::new(s) {
            return self.exact(FIELDS, key, s);
        }
        if let Some(&id) = self.long.get(s) {
            return id;
        }
        let id = self.names.len() as Sym;
        self.long.insert(s.into(), id);
        self.names.push(s.into());
        self.keys.push(ShortKey::LONG);
        id
    }

    /// As `get`, for field `field` (0..4) of a row.
    #[inline]
    fn get_field(&mut self, field: usize, s: &str) -> Sym {
        let Some(key) = ShortKey::new(s) else {
            return self.get(s);
        };
        if let Some((last, sym)) = self.last[field]
            && last == key
        {
            return sym;
        }
        let digest = key.digest();
        let sym = match self.digests[field].get(&digest) {
            Some(&sym) if self.keys[sym as usize] == key => sym,
            Some(_) => self.exact(field, key, s),
            None => {
                let sym = self.exact(field, key, s);
                self.digests[field].insert(digest, sym);
                sym
            }
        };
        self.last[field] = Some((key, sym));
        sym
    }

    /// The symbol of a short string from the exact table of `field` (`FIELDS`: others).
    fn exact(&mut self, field: usize, key: ShortKey, s: &str) -> Sym {
        let next = self.names.len() as Sym;
        let sym = *self.short[field].entry(key).or_insert(next);
        if sym == next {
            self.names.push(s.into());
            self.keys.push(key);
        }
        sym
    }

    fn name(&self, id: Sym) -> &str {
        &self.names[id as usize]
    }
}

/// A validated reading waiting for its chunk.
#[derive(Clone, Copy)]
struct Row {
    id: ReadingId,
    subject: Sym,
    device: Sym,
    sensor: Sym,
    /// Line numbers of files up to 2 GB fit (a line is at least two bytes).
    line: u32,
    value: f64,
    measured_at: i64,
}

/// What the registry said of a device id of this file.
enum Slot {
    Unresolved,
    Unknown,
    /// The record and, for each of its assignments, the interned subject.
    Known(Arc<DeviceRecord>, Vec<Sym>),
}

/// A reading parsed from a line, before registry resolution and validation.
struct Pending {
    line: u64,
    index: usize,
    /// The line's text in the block (for the quarantine report).
    text: (usize, usize),
    device: Sym,
    sensor: Sym,
    metric: Sym,
    unit: Sym,
    value: f64,
    measured_at: i64,
}

struct Pipeline<'s, 'io, IO: FileIo> {
    spec: &'s FileSpec<'s>,
    io: &'io mut IO,
    limits: Limits,
    strings: Interner,
    /// Indexed by the device id's symbol.
    devices: Vec<Slot>,
    /// Rows waiting per partition; `partition_index` finds a partition's entry.
    partitions: Vec<(Partition, Vec<Row>)>,
    partition_index: FastMap<Partition, usize>,
    /// Per metric, the partition that took its last row, and that day's bounds:
    /// consecutive rows of a metric almost always fall on the same day.
    recent: [Option<(i64, i64, usize)>; Metric::COUNT],
    chunk_numbers: BTreeMap<Partition, u32>,
    buffered: usize,
    block: Vec<Pending>,
    /// The block's lines as read (for quarantine entries of rows rejected later).
    block_text: Vec<u8>,
    report: Vec<u8>,
    /// Rows rejected per reason so far (the report lists the first few of each).
    rejected_rows: BTreeMap<Reason, u64>,
    out: FileReport,
    source_ref: String,
}

impl<'s, 'io, IO: FileIo> Pipeline<'s, 'io, IO> {
    fn reject(
        &mut self,
        line: u64,
        index: Option<usize>,
        rej: Rejection,
        payload: Option<&str>,
        readings: Option<usize>,
    ) -> Result<(), AwsError> {
        match readings {
            Some(n) => *self.out.quarantined.entry(rej.reason).or_default() += n as u64,
            None => self.out.unreadable_lines += 1,
        }
        let listed = self.rejected_rows.entry(rej.reason).or_default();
        *listed += 1;
        if *listed > self.limits.report_rows_per_reason {
            return Ok(());
        }
        let reference = match index {
            Some(i) => format!("{}#L{line}.{i}", self.spec.reference),
            None => format!("{}#L{line}", self.spec.reference),
        };
        let entry = QuarantineEntry {
            source: Source::File.as_str().into(),
            reference,
            received_at: format_rfc3339_ms(self.spec.received_at),
            reason: Some(rej.reason),
            detail: Some(rej.detail),
            readings_total: readings,
            rejected: Vec::new(),
            payload: payload.map(str::to_owned),
            payload_base64: None,
        };
        self.add_to_report(&entry)
    }

    fn add_to_report(&mut self, entry: &QuarantineEntry) -> Result<(), AwsError> {
        if serde_json::to_writer(&mut self.report, entry).is_ok() {
            self.report.push(b'\n');
        }
        if self.report.len() >= self.limits.report_part_bytes {
            self.flush_report()?;
        }
        Ok(())
    }

    /// One entry per reason whose rows were too many to list, with how many were left out.
    fn report_omitted(&mut self) -> Result<(), AwsError> {
        let per_reason = self.limits.report_rows_per_reason;
        let omitted: Vec<(Reason, u64)> = self
            .rejected_rows
            .iter()
            .filter(|(_, n)| **n > per_reason)
            .map(|(r, n)| (*r, n - per_reason))
            .collect();
        for (reason, n) in omitted {
            let readings = self.out.quarantined.contains_key(&reason);
            let entry = QuarantineEntry {
                source: Source::File.as_str().into(),
                reference: format!("{}#omitted-{reason}", self.spec.reference),
                received_at: format_rfc3339_ms(self.spec.received_at),
                reason: Some(reason),
                detail: Some(format!(
                    "{n} more rows were rejected for this reason; the first {per_reason} are listed \
                     (the raw file is archived whole)"
                )),
                readings_total: readings.then_some(n as usize),
                rejected: Vec::new(),
                payload: None,
                payload_base64: None,
            };
            self.add_to_report(&entry)?;
        }
        Ok(())
    }

    fn flush_report(&mut self) -> Result<(), AwsError> {
        if self.report.is_empty() {
            return Ok(());
        }
        let part = self.out.report_parts;
        self.io
            .write_report_part(part, std::mem::take(&mut self.report))?;
        self.out.report_parts += 1;
        Ok(())
    }

    /// Queues a parsed reading; processes the block when it is full.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        line: u64,
        index: usize,
        text: (usize, usize),
        device: &str,
        sensor: &str,
        metric: &str,
        unit: &str,
        value: f64,
        measured_at: i64,
    ) -> Result<(), AwsError> {
        let p = Pending {
            line,
            index,
            text,
            device: self.strings.get_field(0, device),
            sensor: self.strings.get_field(1, sensor),
            metric: self.strings.get_field(2, metric),
            unit: self.strings.get_field(3, unit),
            value,
            measured_at,
        };
        self.block.push(p);
        self.out.readings += 1;
        Ok(())
    }

    /// Stores a line's text in the block (for a possible quarantine entry) and returns its span.
    fn keep_text(&mut self, text: &[u8]) -> (usize, usize) {
        let start = self.block_text.len();
        self.block_text.extend_from_slice(text);
        (start, self.block_text.len())
    }

    fn block_full(&self) -> bool {
        self.block.len() >= self.limits.block_rows
    }

    /// Resolves the block's devices, validates its readings and buffers them by partition.
    fn process_block(&mut self) -> Result<(), AwsError> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.resolve_block_devices()?;
        let block = std::mem::take(&mut self.block);
        let text = std::mem::take(&mut self.block_text);
        let devices = std::mem::take(&mut self.devices);
        let result = self.validate_block(&block, &text, &devices);
        self.devices = devices;
        self.block = block;
        self.block.clear();
        self.block_text = text;
        self.block_text.clear();
        result
    }

    /// Looks up, in one registry call, the block's devices this file has not seen yet.
    fn resolve_block_devices(&mut self) -> Result<(), AwsError> {
        if self.devices.len() < self.strings.names.len() {
            self.devices
                .resize_with(self.strings.names.len(), || Slot::Unresolved);
        }
        let mut unknown: Vec<Sym> = self
            .block
            .iter()
            .map(|p| p.device)
            .filter(|d| matches!(self.devices[*d as usize], Slot::Unresolved))
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        if unknown.is_empty() {
            return Ok(());
        }
        let records: Vec<Option<Arc<DeviceRecord>>> = if let Some(subject) = &self.spec.subject {
            // A seed file's readings all belong to its patient's subject.
            unknown
                .iter()
                .map(|&d| {
                    Some(Arc::new(DeviceRecord {
                        device_id: self.strings.name(d).to_owned(),
                        assignments: vec![Assignment {
                            subject_id: subject.clone(),
                            valid_from: i64::MIN,
                            valid_to: None,
                            cohort: None,
                        }],
                    }))
                })
                .collect()
        } else {
            let names: Vec<&str> = unknown.iter().map(|&d| self.strings.name(d)).collect();
            let resolved = self.io.resolve_devices(&names)?;
            unknown
                .iter()
                .map(|&d| resolved.get(self.strings.name(d)).cloned().flatten())
                .collect()
        };
        for (d, record) in unknown.into_iter().zip(records) {
            self.devices[d as usize] = match record {
                None => Slot::Unknown,
                Some(r) => {
                    let subjects = r
                        .assignments
                        .iter()
                        .map(|a| self.strings.get(&a.subject_id))
                        .collect();
                    Slot::Known(r, subjects)
                }
            };
        }
        Ok(())
    }

    fn validate_block(
        &mut self,
        block: &[Pending],
        text: &[u8],
        devices: &[Slot],
    ) -> Result<(), AwsError> {
        for p in block {
            let result = match devices.get(p.device as usize) {
                Some(Slot::Known(record, subjects)) => self.validate(p, record, subjects),
                _ => Err(Rejection::new(
                    Reason::UnknownDevice,
                    "device is not in the registry",
                )),
            };
            match result {
                Ok((metric, row)) => self.buffer(metric, row)?,
                Err(rej) => {
                    let payload = String::from_utf8_lossy(&text[p.text.0..p.text.1]);
                    let index = (self.spec.format == Format::Ndjson).then_some(p.index);
                    self.reject(p.line, index, rej, Some(&payload), Some(1))?;
                }
            }
        }
        Ok(())
    }

    fn validate(
        &self,
        p: &Pending,
        device: &DeviceRecord,
        subjects: &[Sym],
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
        let subject = device
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
            device: p.device,
            sensor: p.sensor,
            line: u32::try_from(p.line).unwrap_or(u32::MAX),
            value: r.value,
            measured_at: r.measured_at,
        };
        Ok((r.metric, row))
    }

    fn buffer(&mut self, metric: Metric, row: Row) -> Result<(), AwsError> {
        let index = match self.recent[metric as usize] {
            Some((start, end, i)) if (start..end).contains(&row.measured_at) => i,
            _ => {
                let partition = Partition::of(metric, row.measured_at);
                let i = match self.partition_index.get(&partition) {
                    Some(&i) => i,
                    None => {
                        self.partitions.push((partition, Vec::new()));
                        self.partition_index
                            .insert(partition, self.partitions.len() - 1);
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
        self.out.peak_buffered_rows = self.out.peak_buffered_rows.max(self.buffered);
        if self.buffered >= self.limits.max_buffered_rows {
            let largest = self
                .partitions
                .iter()
                .enumerate()
                .max_by_key(|(_, (_, rows))| rows.len())
                .map(|(i, _)| i);
            if let Some(i) = largest {
                self.flush_partition(i)?;
            }
        }
        Ok(())
    }

    /// Sorts a partition's rows by subject then time, drops repeated readings (reported
    /// as duplicate rows), and writes them as the partition's next chunk.
    fn flush_partition(&mut self, index: usize) -> Result<(), AwsError> {
        let partition = self.partitions[index].0;
        let rows = std::mem::take(&mut self.partitions[index].1);
        if rows.is_empty() {
            return Ok(());
        }
        self.buffered -= rows.len();
        let mut rows = self.sorted(rows);
        // Repeats of a reading are adjacent, the first line's first: it is kept. A repeat
        // with the same value is a duplicate row; with another value, a conflict.
        let mut repeats = Vec::new();
        rows.dedup_by(|r, kept| {
            let repeat = r.id == kept.id;
            if repeat {
                repeats.push((r.line, kept.line, r.value == kept.value));
            }
            repeat
        });
        for (line, first, same_value) in repeats {
            let rej = if same_value {
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
            self.reject(u64::from(line), None, rej, None, Some(1))?;
        }
        let bytes = self
            .encode(partition, &rows)
            .map_err(|e| AwsError::permanent("parquet", e.to_string()))?;
        let written = rows.len() as u64;
        let number = {
            let n = self.chunk_numbers.entry(partition).or_default();
            *n += 1;
            *n - 1
        };
        self.io.write_chunk(partition, number, bytes)?;
        self.out.written += written;
        self.out.chunks.push(Chunk {
            partition,
            number,
            rows: written,
        });
        Ok(())
    }

    /// The rows in lake order: subject (by name), time, then device, sensor and line,
    /// so repeats of a reading are adjacent and the first line's comes first.
    ///
    /// A counting sort by subject (two sequential passes; each subject's rows are
    /// written as one stream), then a sort of each subject's rows, which fit in cache
    /// and mostly arrive in time order already. Sorting the whole buffer at once would
    /// touch it in random order.
    fn sorted(&self, rows: Vec<Row>) -> Vec<Row> {
        let Some(&first) = rows.first() else {
            return rows;
        };
        // Subject ranks by name in a dense table indexed by symbol.
        let mut rank = vec![u32::MAX; self.strings.names.len()];
        let mut subjects: Vec<Sym> = Vec::new();
        for r in &rows {
            let slot = &mut rank[r.subject as usize];
            if *slot == u32::MAX {
                *slot = 0;
                subjects.push(r.subject);
            }
        }
        subjects.sort_unstable_by(|a, b| self.strings.name(*a).cmp(self.strings.name(*b)));
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

    /// One Parquet file of `rows`, in that order.
    fn encode(
        &self,
        partition: Partition,
        rows: &[Row],
    ) -> Result<Vec<u8>, pulselake_lake::LakeError> {
        let n = rows.len();
        let mut ids = Vec::with_capacity(n);
        let mut subjects = Vec::with_capacity(n);
        let mut devices = Vec::with_capacity(n);
        let mut sensors = Vec::with_capacity(n);
        let mut values = Vec::with_capacity(n);
        let mut measured = Vec::with_capacity(n);
        let mut refs = Vec::with_capacity(n * (self.source_ref.len() + 7));
        let mut ref_ends = Vec::with_capacity(n);
        let mut line = itoa::Buffer::new();
        for r in rows {
            ids.push(r.id);
            subjects.push(r.subject);
            devices.push(r.device);
            sensors.push(r.sensor);
            values.push(r.value);
            measured.push(r.measured_at);
            refs.extend_from_slice(self.source_ref.as_bytes());
            refs.extend_from_slice(line.format(r.line).as_bytes());
            ref_ends.push(u32::try_from(refs.len()).unwrap_or(u32::MAX));
        }
        let received = vec![self.spec.received_at; n];
        let name = |sym: Sym| self.strings.name(sym);
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
        };
        let layout = pulselake_lake::FileLayout {
            row_group_rows: self.limits.row_group_rows,
            sorted_by_subject: true,
        };
        pulselake_lake::encode(&columns, layout)
    }

    fn finish(mut self) -> Result<FileReport, AwsError> {
        self.process_block()?;
        for i in 0..self.partitions.len() {
            self.flush_partition(i)?;
        }
        self.report_omitted()?;
        self.flush_report()?;
        Ok(self.out)
    }
}

// ---------------------------------------------------------------- formats

/// Ingests one file from `input`.
pub fn ingest(
    input: impl Read,
    spec: &FileSpec<'_>,
    io: &mut impl FileIo,
    limits: Limits,
) -> Result<FileReport, FileFailure> {
    let mut hashed = Hashed::new(input);
    let raw_bytes = hashed.counter();
    let result = {
        let mut buffered = BufReader::with_capacity(256 * 1024, &mut hashed);
        let gzip = match buffered.fill_buf() {
            Ok(head) => head.starts_with(&[0x1f, 0x8b]),
            Err(e) => return Err(read_failure(e, false, FileReport::default())),
        };
        let decoded: Box<dyn Read> = if gzip {
            Box::new(GzMembers::new(buffered))
        } else {
            Box::new(buffered)
        };
        let decoded = Bounded::new(decoded, raw_bytes, limits.bytes);
        let reader = Records::new(decoded, limits.max_line_bytes);
        let mut p = Pipeline {
            spec,
            io,
            limits,
            strings: Interner::default(),
            devices: Vec::new(),
            partitions: Vec::new(),
            partition_index: FastMap::default(),
            recent: [None; Metric::COUNT],
            chunk_numbers: BTreeMap::new(),
            buffered: 0,
            block: Vec::with_capacity(limits.block_rows),
            block_text: Vec::new(),
            report: Vec::new(),
            rejected_rows: BTreeMap::new(),
            out: FileReport::default(),
            source_ref: format!("file:{}:L", spec.source_hash),
        };
        let parsed = match &spec.format {
            Format::Ndjson => read_ndjson(reader, &mut p),
            Format::Seed { date, metric, .. } => {
                read_csv(reader, &mut p, CsvKind::Seed(*date, *metric))
            }
            Format::Csv => read_csv(reader, &mut p, CsvKind::Generic),
        };
        match parsed {
            Ok(()) => p.finish().map_err(FileFailure::Transient),
            Err(Stop::Io(e)) => Err(read_failure(e, gzip, p.out)),
            Err(Stop::Rejected(rej)) => Err(FileFailure::Rejected(rej, Box::new(p.out))),
            Err(Stop::Aws(e)) => Err(FileFailure::Transient(e)),
        }
    };
    let (bytes, sha) = hashed.finish();
    match result {
        Ok(mut report) => {
            report.bytes = bytes;
            report.sha256 = sha;
            if report.readings == 0 && report.unreadable_lines == 0 && report.lines == 0 {
                return Err(FileFailure::Rejected(
                    Rejection::new(Reason::EmptyFile, "the file has no data rows"),
                    Box::new(report),
                ));
            }
            if report.written == 0 {
                let why = format!(
                    "none of its {} readings is valid (see the quarantine report)",
                    report.readings
                );
                return Err(FileFailure::Rejected(
                    Rejection::new(Reason::NoValidRows, why),
                    Box::new(report),
                ));
            }
            Ok(report)
        }
        Err(FileFailure::Rejected(rej, mut report)) => {
            report.bytes = bytes;
            report.sha256 = sha;
            Err(FileFailure::Rejected(rej, report))
        }
        Err(e) => Err(e),
    }
}

enum Stop {
    Io(std::io::Error),
    Rejected(Rejection),
    Aws(AwsError),
}

impl From<AwsError> for Stop {
    fn from(e: AwsError) -> Self {
        Stop::Aws(e)
    }
}

/// A read error is the file's fault (corrupt compression, a limit the content broke)
/// or the transport's (retry). Told apart by type, never by message.
fn read_failure(e: std::io::Error, gzip: bool, report: FileReport) -> FileFailure {
    let report = Box::new(report);
    if let Some(limit) = ByteLimitExceeded::of(&e) {
        let reason = match limit {
            ByteLimitExceeded::TrailingGarbage => Reason::CorruptCompression,
            _ => Reason::Oversized,
        };
        return FileFailure::Rejected(Rejection::new(reason, limit.to_string()), report);
    }
    if let Some(bad) = RecordError::of(&e) {
        let reason = match bad {
            RecordError::LineTooLong { .. } => Reason::Oversized,
            RecordError::UnterminatedQuote { .. } => Reason::UnterminatedQuote,
        };
        return FileFailure::Rejected(Rejection::new(reason, bad.to_string()), report);
    }
    let corrupt = matches!(
        e.kind(),
        std::io::ErrorKind::InvalidData
            | std::io::ErrorKind::InvalidInput
            | std::io::ErrorKind::UnexpectedEof
    );
    if gzip && corrupt {
        return FileFailure::Rejected(
            Rejection::new(
                Reason::CorruptCompression,
                format!("the gzip data does not decompress: {e}"),
            ),
            report,
        );
    }
    FileFailure::Transient(AwsError::transient(
        "s3:GetObject",
        format!("reading the file failed: {e}"),
    ))
}

enum CsvKind {
    Seed(pulselake_domain::time::Date, Metric),
    Generic,
}

fn read_csv<IO: FileIo>(
    mut records: Records<impl Read>,
    p: &mut Pipeline<'_, '_, IO>,
    kind: CsvKind,
) -> Result<(), Stop> {
    let header: Vec<String> = loop {
        let Some(record) = records.next_record().map_err(Stop::Io)? else {
            return Err(Stop::Rejected(Rejection::new(
                Reason::EmptyFile,
                "the file is empty",
            )));
        };
        if record.is_blank() {
            continue;
        }
        break record
            .fields()
            .map(|f| std::str::from_utf8(f).map(|s| s.trim_start_matches('\u{feff}').to_owned()))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                Stop::Rejected(Rejection::new(
                    Reason::BadHeader,
                    "the header is not UTF-8 text",
                ))
            })?;
    };
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let layout = match kind {
        CsvKind::Seed(..) => {
            check_seed_header(&header).map_err(Stop::Rejected)?;
            None
        }
        CsvKind::Generic => Some(csv_layout(&header).map_err(Stop::Rejected)?),
    };
    let width = header.len();
    let seed_device = match (&kind, &p.spec.subject) {
        (CsvKind::Seed(_, metric), Some(subject)) => {
            Some((format!("seed:{subject}"), metric.name(), metric.unit()))
        }
        _ => None,
    };
    while let Some(record) = records.next_record().map_err(Stop::Io)? {
        if record.is_blank() {
            continue;
        }
        let line = record.line;
        p.out.lines += 1;
        let lossy = || String::from_utf8_lossy(record.text);
        if record.unterminated {
            p.out.readings += 1;
            let rej = Rejection::new(
                Reason::UnterminatedQuote,
                "a quoted field is not closed before the end of the file",
            );
            p.reject(line, None, rej, Some(&lossy()), Some(1))?;
            continue;
        }
        if record.len() != width {
            p.out.readings += 1;
            let rej = Rejection::new(
                Reason::RaggedRow,
                format!("{} fields where the header has {width}", record.len()),
            );
            p.reject(line, None, rej, Some(&lossy()), Some(1))?;
            continue;
        }
        let Ok(text) = std::str::from_utf8(record.text) else {
            p.out.readings += 1;
            let rej = Rejection::new(Reason::NotUtf8, "the row is not UTF-8 text");
            p.reject(line, None, rej, Some(&lossy()), Some(1))?;
            continue;
        };
        let field = |i: usize| trim(record.text_field(text, i));
        let parsed = match (&seed_device, &kind, &layout) {
            (Some((device, metric, unit)), CsvKind::Seed(date, _), _) => seed_time(*date, field(0))
                .and_then(|t| {
                    parse_value(field(1)).map(|v| (device.as_str(), *metric, *metric, *unit, v, t))
                }),
            (_, CsvKind::Generic, Some(l)) => {
                let at = field(l.index[5]);
                parse_timestamp_utc_default_ms(at)
                    .ok_or_else(|| {
                        Rejection::new(
                            Reason::InvalidTimestamp,
                            format!("measured_at {:?} is not a timestamp", short(at)),
                        )
                    })
                    .and_then(|t| {
                        parse_value(field(l.index[3])).map(|v| {
                            (
                                field(l.index[0]),
                                field(l.index[1]),
                                field(l.index[2]),
                                field(l.index[4]),
                                v,
                                t,
                            )
                        })
                    })
            }
            _ => Err(Rejection::new(
                Reason::UnknownSubject,
                "the file's subject is unknown",
            )),
        }
        .and_then(|parsed| {
            // The same identifier rules as the stream path (length, control characters).
            check_id("device_id", parsed.0)?;
            check_id("sensor_id", parsed.1)?;
            check_id("metric", parsed.2)?;
            check_id("unit", parsed.3)?;
            Ok(parsed)
        });
        match parsed {
            Ok((device, sensor, metric, unit, value, at)) => {
                let span = p.keep_text(record.text);
                p.push(line, 0, span, device, sensor, metric, unit, value, at)?;
            }
            Err(rej) => {
                p.out.readings += 1;
                p.reject(line, None, rej, Some(&lossy()), Some(1))?;
            }
        }
        if p.block_full() {
            p.process_block()?;
        }
    }
    Ok(())
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

fn read_ndjson<IO: FileIo>(
    mut records: Records<impl Read>,
    p: &mut Pipeline<'_, '_, IO>,
) -> Result<(), Stop> {
    while let Some(l) = records.next_line().map_err(Stop::Io)? {
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
        p.out.lines += 1;
        let text = || String::from_utf8_lossy(bytes);
        let message = match p.spec.mappings.map(bytes) {
            Ok(m) => m,
            Err(rej) => {
                p.reject(line, None, rej, Some(&text()), None)?;
                continue;
            }
        };
        let span = p.keep_text(bytes);
        for (index, reading) in message.readings.into_iter().enumerate() {
            match reading {
                Ok(r) => {
                    p.push(
                        line,
                        index,
                        span,
                        &message.device_id,
                        &r.sensor_id,
                        &r.metric,
                        &r.unit,
                        r.value,
                        r.measured_at,
                    )?;
                }
                Err(rej) => {
                    p.out.readings += 1;
                    p.reject(line, Some(index), rej, Some(&text()), Some(1))?;
                }
            }
        }
        if p.block_full() {
            p.process_block()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_tell_every_byte_of_every_length_apart() {
        let alphabet = "abcdefghijklmnopqrstuvwxyz";
        for n in 0..=24 {
            let base = &alphabet[..n];
            let key = ShortKey::new(base).unwrap();
            let copy: String = base.chars().collect();
            assert!(ShortKey::new(&copy) == Some(key));
            for i in 0..n {
                let mut changed = base.as_bytes().to_vec();
                changed[i] = b'Z';
                let other = String::from_utf8(changed).unwrap();
                assert!(ShortKey::new(&other) != Some(key), "{base:?} vs {other:?}");
            }
            if n > 0 {
                assert!(ShortKey::new(&alphabet[..n - 1]) != Some(key));
            }
        }
        assert!(ShortKey::new(&alphabet[..25]).is_none());
    }

    #[test]
    fn a_digest_collision_still_gives_each_string_its_own_symbol() {
        let mut i = Interner::default();
        // Two different keys with one digest: the second must not take the first's symbol.
        let a = ShortKey::new("ab").unwrap();
        let mut forged = a;
        forged.words[0] ^= 1 << 40;
        forged.words[1] ^= 1u64 << 19; // rotate_left(21) moves it onto bit 40
        assert_eq!(a.digest(), forged.digest());
        let sa = i.get_field(0, "ab");
        let planted = i.names.len() as Sym;
        i.names.push("forged".into());
        i.keys.push(forged);
        i.digests[0].insert(ShortKey::new("cd").unwrap().digest(), planted);
        // "cd" finds the planted symbol under its digest, sees the key differ, and
        // falls back to the exact table.
        let sc = i.get_field(0, "cd");
        assert_ne!(sc, planted);
        assert_eq!(i.name(sc), "cd");
        assert_eq!(i.get_field(0, "ab"), sa);
        assert_eq!(i.get_field(1, "cd"), i.get_field(1, "cd"));
    }

    #[test]
    fn the_interner_returns_one_symbol_per_string_and_field() {
        let mut i = Interner::default();
        let long = "a-device-id-longer-than-twenty-four-bytes";
        let a = i.get_field(0, "dev-1");
        let b = i.get_field(0, long);
        assert_ne!(a, b);
        assert_eq!(i.get_field(1, "hr-0"), i.get_field(1, "hr-0"));
        assert_eq!(i.get_field(0, "dev-1"), a, "through the last-value cache");
        assert_eq!(i.get_field(0, long), b);
        i.get_field(0, "dev-2");
        assert_eq!(i.get_field(0, "dev-1"), a, "through the table");
        assert_eq!(i.get(long), i.get(long));
        assert_eq!((i.name(a), i.name(b)), ("dev-1", long));
        let subject = i.get("subj-1");
        assert_eq!(i.get("subj-1"), subject);
        assert_eq!(i.name(subject), "subj-1");
    }
}
