//! Rows as the format readers hand them over: parsed, interned, waiting in a block for
//! their devices to be resolved and their values validated. Readers put rows and
//! rejections into a [`Sink`] and never see the registry, the lake or the report's parts.

use pulselake_domain::{Reason, Rejection};

use crate::intern::{Interner, Sym};
use crate::report::{Report, RowRef};

/// A reading as a reader found it in one row (strings borrow the read buffer).
#[derive(Debug, Clone, Copy)]
pub struct ParsedRow<'t> {
    pub line: u64,
    /// The reading's position in its NDJSON message (0 for CSV).
    pub index: usize,
    /// The row as written, kept in the block by [`Sink::keep_text`] (for the report,
    /// should the reading be rejected later).
    pub text: (usize, usize),
    pub device: &'t str,
    pub sensor: &'t str,
    pub metric: &'t str,
    pub unit: &'t str,
    pub value: f64,
    pub measured_at: i64,
}

/// A parsed reading, interned, before registry resolution and validation.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    pub line: u64,
    pub index: usize,
    /// The row's text in the block's text buffer.
    pub text: (usize, usize),
    pub device: Sym,
    pub sensor: Sym,
    pub metric: Sym,
    pub unit: Sym,
    pub value: f64,
    pub measured_at: i64,
}

/// Readings waiting for validation, and the text of their rows.
#[derive(Default)]
pub struct Block {
    pub pending: Vec<Pending>,
    pub text: Vec<u8>,
}

impl Block {
    pub fn clear(&mut self) {
        self.pending.clear();
        self.text.clear();
    }
}

/// Counts kept while reading: `readings = written + quarantined readings`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    /// Data lines (CSV rows, NDJSON lines) after the header.
    pub lines: u64,
    /// Readings found in them (one per CSV row; possibly many per NDJSON line).
    pub readings: u64,
    /// NDJSON lines rejected before their readings could be counted.
    pub unreadable_lines: u64,
    /// Rejected readings by reason.
    pub quarantined: std::collections::BTreeMap<Reason, u64>,
}

/// Where a reader puts what it reads.
pub struct Sink<'p> {
    pub block: &'p mut Block,
    pub strings: &'p mut Interner,
    pub report: &'p mut Report,
    pub counts: &'p mut Counts,
    pub block_rows: usize,
}

impl Sink<'_> {
    /// A data line was read (blank lines are not counted).
    pub fn line(&mut self) {
        self.counts.lines += 1;
    }

    /// Keeps a row's text in the block; returns its span for [`ParsedRow::text`] (an
    /// NDJSON line's readings share one).
    pub fn keep_text(&mut self, text: &[u8]) -> (usize, usize) {
        let start = self.block.text.len();
        self.block.text.extend_from_slice(text);
        (start, self.block.text.len())
    }

    /// A reading parsed from a row.
    pub fn push(&mut self, row: ParsedRow<'_>) {
        let p = Pending {
            line: row.line,
            index: row.index,
            text: row.text,
            device: self.strings.get_field(0, row.device),
            sensor: self.strings.get_field(1, row.sensor),
            metric: self.strings.get_field(2, row.metric),
            unit: self.strings.get_field(3, row.unit),
            value: row.value,
            measured_at: row.measured_at,
        };
        self.block.pending.push(p);
        self.counts.readings += 1;
    }

    /// A reading rejected while parsing its row (it counts as a reading).
    pub fn reject_reading(&mut self, at: RowRef, rej: Rejection, payload: &str) {
        self.counts.readings += 1;
        reject(self.report, self.counts, at, rej, Some(payload), Some(1));
    }

    /// A row rejected before its readings could be counted.
    pub fn reject_line(&mut self, at: RowRef, rej: Rejection, payload: &str) {
        reject(self.report, self.counts, at, rej, Some(payload), None);
    }

    /// The block holds as many rows as it should: time to validate them.
    pub fn full(&self) -> bool {
        self.block.pending.len() >= self.block_rows
    }
}

/// Records a rejection in the counts and the report.
pub fn reject(
    report: &mut Report,
    counts: &mut Counts,
    at: RowRef,
    rej: Rejection,
    payload: Option<&str>,
    readings: Option<usize>,
) {
    match readings {
        Some(n) => *counts.quarantined.entry(rej.reason).or_default() += n as u64,
        None => counts.unreadable_lines += 1,
    }
    report.reject(at, rej, payload, readings);
}
