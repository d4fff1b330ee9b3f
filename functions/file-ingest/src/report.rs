//! The file's quarantine report: one JSON line per rejected row (reference, reason,
//! detail, the row's text), cut into parts of a few megabytes. Bounded whatever the
//! file: the first rows of each reason are listed, and one entry per reason counts the
//! rest (the raw file is archived whole), so the report always adds up.

use std::collections::{BTreeMap, VecDeque};

use pulselake_domain::quarantine::QuarantineEntry;
use pulselake_domain::time::format_rfc3339_ms;
use pulselake_domain::{Reason, Rejection, Source};

/// Where a rejected row is in the file.
#[derive(Debug, Clone, Copy)]
pub struct RowRef {
    pub line: u64,
    /// The reading's position in its NDJSON message.
    pub index: Option<usize>,
}

pub struct Report {
    /// How entries refer to the file (kept inside the report, never in a key).
    reference: String,
    received_at: String,
    rows_per_reason: u64,
    part_bytes: usize,
    buf: Vec<u8>,
    /// Rows rejected per reason so far, and whether they counted readings.
    rejected: BTreeMap<Reason, (u64, bool)>,
    parts: u32,
    /// Parts complete and not yet taken.
    ready: VecDeque<(u32, Vec<u8>)>,
}

impl Report {
    pub fn new(
        reference: &str,
        received_at: i64,
        rows_per_reason: u64,
        part_bytes: usize,
    ) -> Report {
        Report {
            reference: reference.to_owned(),
            received_at: format_rfc3339_ms(received_at),
            rows_per_reason,
            part_bytes,
            buf: Vec::new(),
            rejected: BTreeMap::new(),
            parts: 0,
            ready: VecDeque::new(),
        }
    }

    /// Records a rejected row. `readings`: how many readings it held (`None` when it
    /// could not be read that far, e.g. an NDJSON line that is not JSON).
    pub fn reject(
        &mut self,
        at: RowRef,
        rej: Rejection,
        payload: Option<&str>,
        readings: Option<usize>,
    ) {
        let seen = self.rejected.entry(rej.reason).or_default();
        seen.0 += 1;
        seen.1 |= readings.is_some();
        if seen.0 > self.rows_per_reason {
            return;
        }
        let reference = match at.index {
            Some(i) => format!("{}#L{}.{i}", self.reference, at.line),
            None => format!("{}#L{}", self.reference, at.line),
        };
        let entry = QuarantineEntry {
            source: Source::File.as_str().into(),
            reference,
            received_at: self.received_at.clone(),
            reason: Some(rej.reason),
            detail: Some(rej.detail),
            readings_total: readings,
            rejected: Vec::new(),
            payload: payload.map(str::to_owned),
            payload_base64: None,
        };
        self.add(&entry);
    }

    fn add(&mut self, entry: &QuarantineEntry) {
        if serde_json::to_writer(&mut self.buf, entry).is_ok() {
            self.buf.push(b'\n');
        }
        if self.buf.len() >= self.part_bytes {
            self.cut();
        }
    }

    fn cut(&mut self) {
        if !self.buf.is_empty() {
            self.ready
                .push_back((self.parts, std::mem::take(&mut self.buf)));
            self.parts += 1;
        }
    }

    /// A complete part, if one is ready: `(part number, NDJSON)`.
    pub fn take_part(&mut self) -> Option<(u32, Vec<u8>)> {
        self.ready.pop_front()
    }

    /// Ends the report: one entry per reason whose rows were too many to list, and the
    /// last part made ready. Returns the number of parts.
    pub fn finish(&mut self) -> u32 {
        let per_reason = self.rows_per_reason;
        let omitted: Vec<(Reason, u64, bool)> = self
            .rejected
            .iter()
            .filter(|(_, (n, _))| *n > per_reason)
            .map(|(r, (n, readings))| (*r, n - per_reason, *readings))
            .collect();
        for (reason, n, readings) in omitted {
            let entry = QuarantineEntry {
                source: Source::File.as_str().into(),
                reference: format!("{}#omitted-{reason}", self.reference),
                received_at: self.received_at.clone(),
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
            self.add(&entry);
        }
        self.cut();
        self.parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(r: &mut Report) -> Vec<QuarantineEntry> {
        let mut out = Vec::new();
        while let Some((_, part)) = r.take_part() {
            for l in part.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                out.push(serde_json::from_slice(l).unwrap());
            }
        }
        out
    }

    #[test]
    fn past_the_listed_rows_one_entry_per_reason_counts_the_rest() {
        let mut r = Report::new("s3://b/k@v", 0, 2, 1 << 20);
        for line in 1..=5 {
            let at = RowRef { line, index: None };
            r.reject(
                at,
                Rejection::new(Reason::OutOfRange, "x"),
                Some("row"),
                Some(1),
            );
        }
        r.reject(
            RowRef {
                line: 9,
                index: None,
            },
            Rejection::new(Reason::NotJson, "y"),
            None,
            None,
        );
        assert_eq!(r.finish(), 1);
        let e = lines(&mut r);
        let refs: Vec<&str> = e.iter().map(|e| e.reference.as_str()).collect();
        assert_eq!(
            refs,
            [
                "s3://b/k@v#L1",
                "s3://b/k@v#L2",
                "s3://b/k@v#L9",
                "s3://b/k@v#omitted-out_of_range"
            ]
        );
        let readings: usize = e.iter().map(QuarantineEntry::readings_quarantined).sum();
        assert_eq!(readings, 5, "the report adds up to the rows rejected");
    }

    #[test]
    fn parts_are_cut_at_the_size_limit() {
        let mut r = Report::new("ref", 0, 1000, 300);
        for line in 1..=20 {
            r.reject(
                RowRef {
                    line,
                    index: Some(0),
                },
                Rejection::new(Reason::UnknownUnit, "u"),
                Some("x"),
                Some(1),
            );
        }
        let parts = r.finish();
        assert!(parts > 1, "{parts}");
        assert_eq!(lines(&mut r).len(), 20);
    }
}
