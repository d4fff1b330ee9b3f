//! The lake's Parquet encoder: column-oriented input in, one Parquet file out.
//!
//! The readings table is fixed and narrow, so the file is written directly (pages,
//! Thrift compact metadata) rather than through a general row writer: strings the
//! caller has already interned become dictionary indices without being hashed again,
//! columns unique per row are written plain and skip statistics, constant columns are
//! one dictionary entry and one run. What comes out is ordinary Parquet 1.0 (the
//! encodings `parquet-rs` and Firehose use: PLAIN, RLE, RLE_DICTIONARY; snappy), read
//! back in tests by the `parquet` crate and DuckDB.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use pulselake_domain::ReadingId;

use crate::{COLUMNS, LakeError};

/// A string column.
pub enum Strings<'a> {
    /// The same text in every row.
    Same(&'a str),
    /// Few distinct texts: row `i` holds `name(codes[i])`.
    Coded {
        codes: &'a [u32],
        name: &'a dyn Fn(u32) -> &'a str,
    },
    /// A text per row: row `i` holds `bytes[ends[i - 1]..ends[i]]` (from 0 for row 0).
    Each { bytes: &'a [u8], ends: &'a [u32] },
}

/// The rows of one lake file, column by column, in file order.
pub struct Columns<'a> {
    pub reading_id: &'a [ReadingId],
    pub subject_id: Strings<'a>,
    pub device_id: Strings<'a>,
    pub sensor_id: Strings<'a>,
    pub value: &'a [f64],
    pub unit: Strings<'a>,
    pub loinc: Strings<'a>,
    pub measured_at: &'a [i64],
    pub received_at: &'a [i64],
    pub source: Strings<'a>,
    pub source_ref: Strings<'a>,
}

impl Columns<'_> {
    pub fn rows(&self) -> usize {
        self.reading_id.len()
    }

    fn check(&self) -> Result<(), LakeError> {
        let n = self.rows();
        let strings = [
            ("subject_id", &self.subject_id),
            ("device_id", &self.device_id),
            ("sensor_id", &self.sensor_id),
            ("unit", &self.unit),
            ("loinc", &self.loinc),
            ("source", &self.source),
            ("source_ref", &self.source_ref),
        ];
        let numbers = [
            ("value", self.value.len()),
            ("measured_at", self.measured_at.len()),
            ("received_at", self.received_at.len()),
        ];
        let lengths = strings.iter().map(|(column, s)| match s {
            Strings::Same(_) => (*column, n),
            Strings::Coded { codes, .. } => (*column, codes.len()),
            Strings::Each { ends, .. } => (*column, ends.len()),
        });
        if let Some((column, len)) = lengths.chain(numbers).find(|&(_, len)| len != n) {
            return Err(LakeError::Column {
                column,
                problem: format!("{len} values for {n} rows"),
            });
        }
        for (column, s) in strings {
            if let Strings::Each { bytes, ends } = s {
                let ordered = ends.windows(2).all(|w| w[0] <= w[1]);
                if !ordered || ends.last().is_some_and(|&e| e as usize > bytes.len()) {
                    return Err(LakeError::Column {
                        column,
                        problem: "text ends out of order or past the text".into(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Rows per data page: pages stay around a megabyte for the widest column.
const PAGE_ROWS: usize = 16 * 1024;

// Parquet's Thrift enums (parquet.thrift).
const TYPE_DOUBLE: i32 = 5;
const TYPE_INT64: i32 = 2;
const TYPE_BYTE_ARRAY: i32 = 6;
const ENC_PLAIN: i32 = 0;
const ENC_RLE: i32 = 3;
const ENC_RLE_DICTIONARY: i32 = 8;
const CODEC_UNCOMPRESSED: i32 = 0;
const CODEC_SNAPPY: i32 = 1;
const PAGE_DATA: i32 = 0;
const PAGE_DICTIONARY: i32 = 2;
const CONVERTED_UTF8: i32 = 0;
const CONVERTED_TIMESTAMP_MILLIS: i32 = 9;
const OPTIONAL: i32 = 1;

/// Encodes `columns` as one Parquet file with row groups of at most `row_group_rows`.
pub fn encode(columns: &Columns<'_>, row_group_rows: usize) -> Result<Vec<u8>, LakeError> {
    columns.check()?;
    let n = columns.rows();
    let group = row_group_rows.max(1);
    let mut w = FileWriter {
        out: Vec::with_capacity(n * 40 + 4096),
        scratch: Vec::new(),
        compressed: Vec::new(),
        snappy: snap::raw::Encoder::new(),
    };
    w.out.extend_from_slice(b"PAR1");
    let mut groups = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + group).min(n);
        groups.push(w.row_group(columns, start, end));
        start = end;
    }
    let meta = file_metadata(&groups, n);
    w.out.extend_from_slice(&meta);
    w.out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    w.out.extend_from_slice(b"PAR1");
    Ok(w.out)
}

// ---------------------------------------------------------------- pages

struct FileWriter {
    out: Vec<u8>,
    /// A page body before compression.
    scratch: Vec<u8>,
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
}

/// What the footer says of a column chunk.
struct ChunkMeta {
    physical: i32,
    encodings: &'static [i32],
    codec: i32,
    values: i64,
    uncompressed: i64,
    compressed: i64,
    dictionary_offset: Option<i64>,
    data_offset: i64,
    /// min, max in Parquet's plain byte form.
    stats: Option<(Vec<u8>, Vec<u8>)>,
    /// Numeric columns also fill the deprecated min/max fields (older readers).
    legacy_stats: bool,
}

struct GroupMeta {
    rows: usize,
    offset: i64,
    chunks: Vec<ChunkMeta>,
}

/// How a column's values are laid out in its pages.
enum Values<'a> {
    /// Dictionary indices (the dictionary already written).
    Indices {
        indices: &'a [u32],
        bit_width: u8,
    },
    Plain(PlainValues<'a>),
}

#[derive(Clone, Copy)]
enum PlainValues<'a> {
    Ids(&'a [ReadingId]),
    /// Texts ending at `ends` (absolute offsets); the first starts at `base`.
    Texts {
        bytes: &'a [u8],
        ends: &'a [u32],
        base: usize,
    },
    F64(&'a [f64]),
    I64(&'a [i64]),
}

impl FileWriter {
    fn row_group(&mut self, c: &Columns<'_>, start: usize, end: usize) -> GroupMeta {
        let offset = self.out.len() as i64;
        let mut chunks = Vec::with_capacity(COLUMNS.len());
        chunks.push(self.id_chunk(&c.reading_id[start..end]));
        chunks.push(self.string_chunk(&c.subject_id, start, end));
        chunks.push(self.string_chunk(&c.device_id, start, end));
        chunks.push(self.string_chunk(&c.sensor_id, start, end));
        chunks.push(self.f64_chunk(&c.value[start..end]));
        chunks.push(self.string_chunk(&c.unit, start, end));
        chunks.push(self.string_chunk(&c.loinc, start, end));
        chunks.push(self.i64_chunk(&c.measured_at[start..end]));
        chunks.push(self.i64_chunk(&c.received_at[start..end]));
        chunks.push(self.string_chunk(&c.source, start, end));
        chunks.push(self.string_chunk(&c.source_ref, start, end));
        GroupMeta {
            rows: end - start,
            offset,
            chunks,
        }
    }

    /// Reading ids: random hex, unique per row: plain, uncompressed (snappy cannot
    /// shrink hex), no statistics (they prune nothing).
    fn id_chunk(&mut self, ids: &[ReadingId]) -> ChunkMeta {
        let mut meta = ChunkMeta::new(TYPE_BYTE_ARRAY, &[ENC_PLAIN, ENC_RLE], CODEC_UNCOMPRESSED);
        meta.data_offset = self.out.len() as i64;
        self.data_pages(&mut meta, Values::Plain(PlainValues::Ids(ids)), ids.len());
        meta
    }

    fn string_chunk(&mut self, s: &Strings<'_>, start: usize, end: usize) -> ChunkMeta {
        let rows = end - start;
        match s {
            Strings::Each { bytes, ends } => {
                let base = if start == 0 {
                    0
                } else {
                    ends[start - 1] as usize
                };
                let mut meta = ChunkMeta::new(TYPE_BYTE_ARRAY, &[ENC_PLAIN, ENC_RLE], CODEC_SNAPPY);
                meta.data_offset = self.out.len() as i64;
                let texts = PlainValues::Texts {
                    bytes,
                    ends: &ends[start..end],
                    base,
                };
                self.data_pages(&mut meta, Values::Plain(texts), rows);
                meta
            }
            Strings::Same(text) => {
                let indices = vec![0u32; rows];
                self.dictionary_chunk(TYPE_BYTE_ARRAY, &[text.as_bytes()], &indices, true)
            }
            Strings::Coded { codes, name } => {
                let codes = &codes[start..end];
                // Local dictionary indices in order of first appearance.
                let mut entries: Vec<&[u8]> = Vec::new();
                let mut add = |code: u32| {
                    entries.push(name(code).as_bytes());
                    entries.len() as u32 - 1
                };
                let max = codes.iter().copied().max().unwrap_or(0) as usize;
                let indices: Vec<u32> = if max < 4 * rows + 65_536 {
                    // Codes are dense (interned symbols): a table, no hashing.
                    let mut local = vec![u32::MAX; max + 1];
                    codes
                        .iter()
                        .map(|&code| {
                            let slot = &mut local[code as usize];
                            if *slot == u32::MAX {
                                *slot = add(code);
                            }
                            *slot
                        })
                        .collect()
                } else {
                    let mut local: HashMap<u32, u32, BuildHasherDefault<IdHash>> =
                        HashMap::default();
                    codes
                        .iter()
                        .map(|&code| *local.entry(code).or_insert_with(|| add(code)))
                        .collect()
                };
                self.dictionary_chunk(TYPE_BYTE_ARRAY, &entries, &indices, true)
            }
        }
    }

    fn f64_chunk(&mut self, values: &[f64]) -> ChunkMeta {
        let bits: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
        let stats = values
            .iter()
            .fold(None, |acc: Option<(f64, f64)>, &v| match acc {
                None => Some((v, v)),
                Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
            })
            .map(|(lo, hi)| {
                // Parquet's rule for signed zeros in statistics.
                let lo = if lo == 0.0 { -0.0 } else { lo };
                let hi = if hi == 0.0 { 0.0 } else { hi };
                (lo.to_le_bytes().to_vec(), hi.to_le_bytes().to_vec())
            });
        self.number_chunk(TYPE_DOUBLE, &bits, stats, PlainValues::F64(values))
    }

    fn i64_chunk(&mut self, values: &[i64]) -> ChunkMeta {
        let bits: Vec<u64> = values.iter().map(|&v| v as u64).collect();
        let stats = match (values.iter().min(), values.iter().max()) {
            (Some(lo), Some(hi)) => Some((lo.to_le_bytes().to_vec(), hi.to_le_bytes().to_vec())),
            _ => None,
        };
        self.number_chunk(TYPE_INT64, &bits, stats, PlainValues::I64(values))
    }

    /// Numbers: a dictionary when values repeat (vitals and timestamps mostly do),
    /// plain otherwise.
    fn number_chunk(
        &mut self,
        physical: i32,
        bits: &[u64],
        stats: Option<(Vec<u8>, Vec<u8>)>,
        plain: PlainValues<'_>,
    ) -> ChunkMeta {
        let limit = (bits.len() / 2).max(1);
        let mut local: HashMap<u64, u32, BuildHasherDefault<IdHash>> = HashMap::default();
        let mut entries: Vec<[u8; 8]> = Vec::new();
        let mut indices = Vec::with_capacity(bits.len());
        let mut last = None;
        for &b in bits {
            if let Some((v, i)) = last
                && v == b
            {
                indices.push(i);
                continue;
            }
            let next = entries.len() as u32;
            let i = *local.entry(b).or_insert_with(|| {
                entries.push(b.to_le_bytes());
                next
            });
            last = Some((b, i));
            indices.push(i);
            if entries.len() > limit {
                break;
            }
        }
        let mut meta = if entries.len() > limit {
            let mut meta = ChunkMeta::new(physical, &[ENC_PLAIN, ENC_RLE], CODEC_SNAPPY);
            meta.data_offset = self.out.len() as i64;
            self.data_pages(&mut meta, Values::Plain(plain), bits.len());
            meta
        } else {
            let entries: Vec<&[u8]> = entries.iter().map(|e| &e[..]).collect();
            self.dictionary_chunk(physical, &entries, &indices, false)
        };
        meta.stats = stats;
        meta.legacy_stats = true;
        meta
    }

    /// A dictionary page of `entries` and data pages of `indices` into it.
    fn dictionary_chunk(
        &mut self,
        physical: i32,
        entries: &[&[u8]],
        indices: &[u32],
        strings: bool,
    ) -> ChunkMeta {
        let mut meta = ChunkMeta::new(
            physical,
            &[ENC_PLAIN, ENC_RLE, ENC_RLE_DICTIONARY],
            CODEC_SNAPPY,
        );
        if strings {
            let used = |i: usize| entries[i];
            let lo = (0..entries.len()).map(used).min();
            let hi = (0..entries.len()).map(used).max();
            meta.stats = lo.zip(hi).map(|(lo, hi)| (lo.to_vec(), hi.to_vec()));
        }
        meta.dictionary_offset = Some(self.out.len() as i64);
        self.scratch.clear();
        for e in entries {
            if strings {
                self.scratch
                    .extend_from_slice(&(e.len() as u32).to_le_bytes());
            }
            self.scratch.extend_from_slice(e);
        }
        let mut header = Compact::default();
        header.i32(1, PAGE_DICTIONARY);
        let (raw, packed) = self.compress(meta.codec);
        header.i32(2, raw as i32);
        header.i32(3, packed as i32);
        header.begin(7);
        header.i32(1, entries.len() as i32);
        header.i32(2, ENC_PLAIN);
        header.end();
        header.stop();
        self.emit(&mut meta, &header.out, raw);
        meta.data_offset = self.out.len() as i64;
        let bit_width = bits_for(entries.len().saturating_sub(1) as u32);
        self.data_pages(
            &mut meta,
            Values::Indices { indices, bit_width },
            indices.len(),
        );
        meta
    }

    fn data_pages(&mut self, meta: &mut ChunkMeta, values: Values<'_>, rows: usize) {
        let mut start = 0;
        while start < rows {
            let end = (start + PAGE_ROWS).min(rows);
            self.scratch.clear();
            // Definition levels (every value present): one RLE run of 1s, length-prefixed.
            let mut levels = Vec::with_capacity(8);
            varint(&mut levels, ((end - start) as u64) << 1);
            levels.push(1);
            self.scratch
                .extend_from_slice(&(levels.len() as u32).to_le_bytes());
            self.scratch.extend_from_slice(&levels);
            let encoding = match &values {
                Values::Indices { indices, bit_width } => {
                    self.scratch.push(*bit_width);
                    hybrid(&indices[start..end], *bit_width, &mut self.scratch);
                    ENC_RLE_DICTIONARY
                }
                Values::Plain(p) => {
                    plain(*p, start, end, &mut self.scratch);
                    ENC_PLAIN
                }
            };
            let (raw, packed) = self.compress(meta.codec);
            let mut header = Compact::default();
            header.i32(1, PAGE_DATA);
            header.i32(2, raw as i32);
            header.i32(3, packed as i32);
            header.begin(5);
            header.i32(1, (end - start) as i32);
            header.i32(2, encoding);
            header.i32(3, ENC_RLE);
            header.i32(4, ENC_RLE);
            header.end();
            header.stop();
            self.emit(meta, &header.out, raw);
            meta.values += (end - start) as i64;
            start = end;
        }
    }

    /// Compresses `scratch` into `compressed` when the codec asks for it; returns the
    /// sizes before and after.
    fn compress(&mut self, codec: i32) -> (usize, usize) {
        let raw = self.scratch.len();
        if codec == CODEC_UNCOMPRESSED {
            return (raw, raw);
        }
        self.compressed.resize(snap::raw::max_compress_len(raw), 0);
        // Snappy cannot fail on an output of max_compress_len bytes.
        let packed = self
            .snappy
            .compress(&self.scratch, &mut self.compressed)
            .unwrap_or(0);
        self.compressed.truncate(packed);
        (raw, packed)
    }

    /// Appends a page (header, then the body `compress` left) and counts its sizes.
    fn emit(&mut self, meta: &mut ChunkMeta, header: &[u8], raw: usize) {
        self.out.extend_from_slice(header);
        let body = if meta.codec == CODEC_UNCOMPRESSED {
            &self.scratch
        } else {
            &self.compressed
        };
        self.out.extend_from_slice(body);
        meta.uncompressed += (header.len() + raw) as i64;
        meta.compressed += (header.len() + body.len()) as i64;
    }
}

impl ChunkMeta {
    fn new(physical: i32, encodings: &'static [i32], codec: i32) -> ChunkMeta {
        ChunkMeta {
            physical,
            encodings,
            codec,
            values: 0,
            uncompressed: 0,
            compressed: 0,
            dictionary_offset: None,
            data_offset: 0,
            stats: None,
            legacy_stats: false,
        }
    }

    fn start(&self) -> i64 {
        self.dictionary_offset.unwrap_or(self.data_offset)
    }
}

fn plain(values: PlainValues<'_>, start: usize, end: usize, out: &mut Vec<u8>) {
    match values {
        PlainValues::Ids(ids) => {
            out.reserve((end - start) * 36);
            for id in &ids[start..end] {
                out.extend_from_slice(&32u32.to_le_bytes());
                out.extend_from_slice(id.hex().as_bytes());
            }
        }
        PlainValues::Texts { bytes, ends, base } => {
            let mut from = if start == 0 {
                base
            } else {
                ends[start - 1] as usize
            };
            for &e in &ends[start..end] {
                let e = e as usize;
                out.extend_from_slice(&((e - from) as u32).to_le_bytes());
                out.extend_from_slice(&bytes[from..e]);
                from = e;
            }
        }
        PlainValues::F64(v) => {
            for x in &v[start..end] {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        PlainValues::I64(v) => {
            for x in &v[start..end] {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
}

/// Bits needed for values up to `max` (at least one: some readers refuse width 0).
fn bits_for(max: u32) -> u8 {
    (32 - max.leading_zeros()).max(1) as u8
}

/// Parquet's RLE / bit-packing hybrid: runs of 8 or more equal values as RLE runs,
/// the rest bit-packed in groups of 8 (at most 63 groups a run, as other writers).
fn hybrid(values: &[u32], bit_width: u8, out: &mut Vec<u8>) {
    let value_bytes = usize::from(bit_width).div_ceil(8);
    let run_at = |i: usize| {
        let v = values[i];
        values[i..].iter().take_while(|&&x| x == v).count()
    };
    let mut i = 0;
    while i < values.len() {
        let run = run_at(i);
        if run >= 8 {
            varint(out, (run as u64) << 1);
            out.extend_from_slice(&values[i].to_le_bytes()[..value_bytes]);
            i += run;
            continue;
        }
        // Bit-packed groups until a long run starts at a group boundary.
        let mut groups = 0usize;
        let mut j = i;
        while j < values.len() && groups < 63 {
            groups += 1;
            j += 8;
            if j < values.len() && run_at(j) >= 8 {
                break;
            }
        }
        varint(out, ((groups as u64) << 1) | 1);
        let mut acc = 0u64;
        let mut filled = 0u32;
        for k in i..i + groups * 8 {
            let v = values.get(k).copied().unwrap_or(0);
            acc |= u64::from(v) << filled;
            filled += u32::from(bit_width);
            while filled >= 8 {
                out.push(acc as u8);
                acc >>= 8;
                filled -= 8;
            }
        }
        i = (i + groups * 8).min(values.len());
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A multiplicative hash for integer keys (codes, value bits) of one file.
#[derive(Default, Clone, Copy)]
struct IdHash(u64);

impl std::hash::Hasher for IdHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}

// ---------------------------------------------------------------- footer

/// Thrift compact protocol, just what the footer and page headers need.
#[derive(Default)]
struct Compact {
    out: Vec<u8>,
    last: i16,
    stack: Vec<i16>,
}

impl Compact {
    fn header(&mut self, id: i16, kind: u8) {
        let delta = id - self.last;
        if (1..=15).contains(&delta) {
            self.out.push(((delta as u8) << 4) | kind);
        } else {
            self.out.push(kind);
            varint(&mut self.out, zigzag(i64::from(id)));
        }
        self.last = id;
    }

    fn i32(&mut self, id: i16, v: i32) {
        self.header(id, 5);
        varint(&mut self.out, zigzag(i64::from(v)));
    }

    fn i64(&mut self, id: i16, v: i64) {
        self.header(id, 6);
        varint(&mut self.out, zigzag(v));
    }

    fn binary(&mut self, id: i16, b: &[u8]) {
        self.header(id, 8);
        varint(&mut self.out, b.len() as u64);
        self.out.extend_from_slice(b);
    }

    fn bool(&mut self, id: i16, b: bool) {
        self.header(id, if b { 1 } else { 2 });
    }

    /// A struct-valued field.
    fn begin(&mut self, id: i16) {
        self.header(id, 12);
        self.enter();
    }

    /// A struct as a list element.
    fn enter(&mut self) {
        self.stack.push(self.last);
        self.last = 0;
    }

    fn end(&mut self) {
        self.out.push(0);
        self.last = self.stack.pop().unwrap_or(0);
    }

    /// The stop byte of the outermost struct.
    fn stop(&mut self) {
        self.out.push(0);
    }

    fn list(&mut self, id: i16, kind: u8, len: usize) {
        self.header(id, 9);
        if len < 15 {
            self.out.push(((len as u8) << 4) | kind);
        } else {
            self.out.push(0xf0 | kind);
            varint(&mut self.out, len as u64);
        }
    }
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

const T_I32: u8 = 5;
const T_BINARY: u8 = 8;
const T_STRUCT: u8 = 12;

fn file_metadata(groups: &[GroupMeta], rows: usize) -> Vec<u8> {
    let mut t = Compact::default();
    t.i32(1, 1);
    // Schema: the root, then the columns.
    t.list(2, T_STRUCT, COLUMNS.len() + 1);
    t.enter();
    t.binary(4, b"readings");
    t.i32(5, COLUMNS.len() as i32);
    t.end();
    for c in COLUMNS {
        t.enter();
        let physical = physical_type(c.glue_type);
        t.i32(1, physical);
        t.i32(3, OPTIONAL);
        t.binary(4, c.name.as_bytes());
        match c.glue_type {
            "string" => {
                t.i32(6, CONVERTED_UTF8);
                t.begin(10);
                t.begin(1); // STRING
                t.end();
                t.end();
            }
            "timestamp" => {
                t.i32(6, CONVERTED_TIMESTAMP_MILLIS);
                t.begin(10);
                t.begin(8); // TIMESTAMP
                t.bool(1, true); // adjusted to UTC
                t.begin(2); // unit
                t.begin(1); // MILLIS
                t.end();
                t.end();
                t.end();
                t.end();
            }
            _ => {}
        }
        t.end();
    }
    t.i64(3, rows as i64);
    t.list(4, T_STRUCT, groups.len());
    for g in groups {
        t.enter();
        t.list(1, T_STRUCT, g.chunks.len());
        for (chunk, c) in g.chunks.iter().zip(COLUMNS) {
            t.enter();
            t.i64(2, chunk.start());
            t.begin(3);
            t.i32(1, chunk.physical);
            t.list(2, T_I32, chunk.encodings.len());
            for &e in chunk.encodings {
                varint(&mut t.out, zigzag(i64::from(e)));
            }
            t.list(3, T_BINARY, 1);
            varint(&mut t.out, c.name.len() as u64);
            t.out.extend_from_slice(c.name.as_bytes());
            t.i32(4, chunk.codec);
            t.i64(5, chunk.values);
            t.i64(6, chunk.uncompressed);
            t.i64(7, chunk.compressed);
            t.i64(9, chunk.data_offset);
            if let Some(d) = chunk.dictionary_offset {
                t.i64(11, d);
            }
            if let Some((lo, hi)) = &chunk.stats {
                t.begin(12);
                if chunk.legacy_stats {
                    t.binary(1, hi);
                    t.binary(2, lo);
                }
                t.i64(3, 0);
                t.binary(5, hi);
                t.binary(6, lo);
                t.end();
            }
            t.end();
            t.end();
        }
        let uncompressed: i64 = g.chunks.iter().map(|c| c.uncompressed).sum();
        let compressed: i64 = g.chunks.iter().map(|c| c.compressed).sum();
        t.i64(2, uncompressed);
        t.i64(3, g.rows as i64);
        t.i64(5, g.offset);
        t.i64(6, compressed);
        t.end();
    }
    t.binary(6, b"pulselake");
    // Column orders: byte-wise for strings, signed for numbers, so readers trust min/max.
    t.list(7, T_STRUCT, COLUMNS.len());
    for _ in COLUMNS {
        t.enter();
        t.begin(1); // TYPE_ORDER
        t.end();
        t.end();
    }
    t.stop();
    t.out
}

fn physical_type(glue_type: &str) -> i32 {
    match glue_type {
        "double" => TYPE_DOUBLE,
        "timestamp" => TYPE_INT64,
        _ => TYPE_BYTE_ARRAY,
    }
}
