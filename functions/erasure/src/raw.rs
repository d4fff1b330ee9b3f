//! The subjects' rows in raw files that hold other patients' rows too (generic CSV and
//! NDJSON uploads, keyed by device), and in those files' quarantine reports.
//!
//! Which lines are the subjects': the lake rows the pass removed name their source file
//! and line (`file:<source reference>:L<line>`), and a rejected row never reached the
//! lake, so a line that names one of the subjects' devices (recorded with the request)
//! as a whole token goes too. The file is read as file-ingest read it (its record
//! reader, so line numbers agree, quoted CSV fields spanning lines included) and
//! written back without those records, streamed in both directions.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};

use memchr::memmem;
use pulselake_rawfile::{GzMembers, Hashed, Records};
use serde::{Deserialize, Serialize};

/// Line numbers as sorted, disjoint runs (first, last): a subject's rows sit together in
/// most files, so years of them are a few runs per file, not millions of numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lines(Vec<(u64, u64)>);

impl Lines {
    pub fn of(lines: impl IntoIterator<Item = u64>) -> Lines {
        let mut runs = Lines(lines.into_iter().map(|l| (l, l)).collect());
        runs.coalesce();
        runs
    }

    pub fn merge(&mut self, other: Lines) {
        self.0.extend(other.0);
        self.coalesce();
    }

    fn coalesce(&mut self) {
        self.0.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
        for (a, b) in self.0.drain(..) {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        self.0 = out;
    }

    pub fn contains(&self, line: u64) -> bool {
        let i = self.0.partition_point(|(_, last)| *last < line);
        self.0.get(i).is_some_and(|(first, _)| *first <= line)
    }
}

/// What marks a raw line as the subjects'.
#[derive(Debug, Clone, Default)]
pub struct Marks {
    /// Lines whose rows the pass removed from the lake.
    pub lines: Lines,
    /// The subjects' devices.
    pub devices: Vec<String>,
}

impl Marks {
    fn hit(&self, line: u64, text: &[u8]) -> bool {
        self.lines.contains(line) || self.devices.iter().any(|d| names(text, d.as_bytes()))
    }
}

/// Whether `text` holds `id` as a whole token (not inside a longer id).
pub(crate) fn names(text: &[u8], id: &[u8]) -> bool {
    let id_byte = |b: u8| b.is_ascii_alphanumeric() || b"-_.:".contains(&b);
    !id.is_empty()
        && memmem::find_iter(text, id).any(|at| {
            let before = at.checked_sub(1).map(|i| text[i]);
            let after = text.get(at + id.len()).copied();
            !before.is_some_and(id_byte) && !after.is_some_and(id_byte)
        })
}

/// What a raw file's rewrite did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filtered {
    /// Records (CSV) or lines (NDJSON) written back, the header and blank lines included.
    pub kept: u64,
    /// Of those, records that carry data (not the header, not blank).
    pub kept_data: u64,
    pub removed: u64,
    /// The lines of the records removed (their report entries go too).
    pub removed_lines: BTreeSet<u64>,
    /// SHA-256 of the file as read (hex): a copy of it elsewhere has the same lines.
    pub input_sha256: String,
}

/// The rewritten file's bytes, handed over in parts as they are produced (to the task
/// that uploads them).
pub struct Parts {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
    size: usize,
}

impl Parts {
    pub fn new(tx: tokio::sync::mpsc::Sender<Vec<u8>>, size: usize) -> Parts {
        Parts {
            tx,
            buf: Vec::new(),
            size,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let part = std::mem::take(&mut self.buf);
        self.tx
            .blocking_send(part)
            .map_err(|_| std::io::Error::other("the upload stopped"))
    }
}

impl Write for Parts {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= self.size {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Longest record read (as file-ingest's limit).
const MAX_LINE: usize = 16 << 20;

/// Copies `input` (a raw file as archived: `gzip` when `gz`) to `out` without the
/// records `marks` names; `csv`: records as CSV reads them (else lines).
pub fn filter_raw<R: Read, W: Write>(
    input: R,
    out: W,
    gz: Option<bool>,
    csv: bool,
    marks: &Marks,
) -> std::io::Result<Filtered> {
    let hashed = Hashed::new(input);
    let tally = hashed.tally();
    let mut input = BufReader::new(hashed);
    // `None`: gzip if it starts as gzip does (a copy kept without its name).
    let gz = match gz {
        Some(gz) => gz,
        None => input.fill_buf()?.starts_with(&[0x1f, 0x8b]),
    };
    let decoded: Box<dyn Read> = if gz {
        Box::new(GzMembers::new(input))
    } else {
        Box::new(input)
    };
    let mut out: Box<dyn Finish<W>> = if gz {
        Box::new(flate2::write::GzEncoder::new(
            out,
            flate2::Compression::default(),
        ))
    } else {
        Box::new(Plain(out))
    };
    let mut records = Records::new(decoded, MAX_LINE);
    let mut f = Filtered::default();
    let mut header = csv;
    loop {
        let (line, text) = if csv {
            match records.next_record()? {
                Some(r) => (r.line, r.text),
                None => break,
            }
        } else {
            match records.next_line()? {
                Some(l) => (l.number, l.bytes),
                None => break,
            }
        };
        let blank = text.trim_ascii().is_empty();
        if !header && !blank && marks.hit(line, text) {
            f.removed += 1;
            f.removed_lines.insert(line);
            continue;
        }
        out.write_all(text)?;
        out.write_all(b"\n")?;
        f.kept += 1;
        if !header && !blank {
            f.kept_data += 1;
        }
        header &= blank;
    }
    drop(records);
    out.finish()?;
    f.input_sha256 = tally.finish().1;
    Ok(f)
}

/// A writer that is finished explicitly (a gzip trailer), handing back nothing.
trait Finish<W>: Write {
    fn finish(self: Box<Self>) -> std::io::Result<()>;
}

struct Plain<W>(W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> Finish<W> for Plain<W> {
    fn finish(mut self: Box<Self>) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> Finish<W> for flate2::write::GzEncoder<W> {
    fn finish(self: Box<Self>) -> std::io::Result<()> {
        let mut w = flate2::write::GzEncoder::finish(*self)?;
        w.flush()
    }
}

/// A quarantine report part (NDJSON quarantine entries) without the entries of the subjects'
/// lines (`#L<line>` in the reference) or naming their devices; how many went.
pub fn filter_report(
    part: &[u8],
    marks: &Marks,
    removed_lines: &BTreeSet<u64>,
) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(part.len());
    let mut removed = 0;
    for line in part.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        // Read leniently (the two fields used), so an entry of any version is judged.
        let entry: Option<serde_json::Value> = serde_json::from_slice(line).ok();
        let theirs = entry.as_ref().is_some_and(|e| {
            let at = e["reference"]
                .as_str()
                .and_then(|r| r.rsplit_once("#L"))
                .and_then(|(_, l)| l.split('.').next()?.parse::<u64>().ok());
            at.is_some_and(|l| removed_lines.contains(&l))
                || e["payload"].as_str().is_some_and(|p| {
                    marks
                        .devices
                        .iter()
                        .any(|d| names(p.as_bytes(), d.as_bytes()))
                })
        });
        if theirs {
            removed += 1;
        } else {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    (out, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(lines: &[u64], devices: &[&str]) -> Marks {
        Marks {
            lines: Lines::of(lines.iter().copied()),
            devices: devices.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    #[test]
    fn csv_records_of_the_subject_go_and_line_numbers_count_as_file_ingest_counts() {
        let csv = "device_id,sensor_id,metric,value,unit,measured_at\r\n\
                   dev-1,s,heart_rate,70,bpm,2026-01-01T00:00:00Z\r\n\
                   dev-2,\"a\nnote\",heart_rate,71,bpm,2026-01-01T00:00:00Z\r\n\
                   dev-10,s,heart_rate,72,bpm,2026-01-01T00:00:00Z\r\n\
                   \r\n\
                   dev-1,s,heart_rate,73,bpm,2026-01-01T00:01:00Z\r\n";
        let mut out = Vec::new();
        // Line 5 (dev-10) is a lake row of the subject; dev-1 is their device.
        let f = filter_raw(
            csv.as_bytes(),
            &mut out,
            Some(false),
            true,
            &marks(&[5], &["dev-1"]),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "device_id,sensor_id,metric,value,unit,measured_at\n\
             dev-2,\"a\nnote\",heart_rate,71,bpm,2026-01-01T00:00:00Z\n\n"
        );
        assert_eq!((f.removed, f.kept_data), (3, 1));
    }

    #[test]
    fn gzip_ndjson_round_trips_without_the_subject_s_lines() {
        use std::io::Read;
        let text = "{\"device\":\"dev-7\",\"hr\":70}\n{\"device\":\"dev-70\",\"hr\":71}\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let mut out = Vec::new();
        let f = filter_raw(&gz[..], &mut out, None, false, &marks(&[], &["dev-7"])).unwrap();
        let mut back = String::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, "{\"device\":\"dev-70\",\"hr\":71}\n");
        assert_eq!((f.removed, f.kept_data), (1, 1));
    }

    #[test]
    fn lines_are_kept_as_runs() {
        let mut l = Lines::of([3, 4, 5, 9, 10]);
        l.merge(Lines::of([6, 20]));
        assert_eq!(l, Lines(vec![(3, 6), (9, 10), (20, 20)]));
        assert!(
            l.contains(3) && l.contains(6) && l.contains(20) && !l.contains(7) && !l.contains(2)
        );
        assert_eq!(serde_json::to_string(&l).unwrap(), "[[3,6],[9,10],[20,20]]");
    }

    #[test]
    fn report_entries_of_the_subject_go() {
        let entry = |reference: &str, payload: &str| {
            serde_json::json!({"source": "file", "reference": reference, "received_at": "x",
                "reason": "implausible", "payload": payload})
            .to_string()
        };
        let part = format!(
            "{}\n{}\n{}\n",
            entry("ab12#L4", "dev-9,s,heart_rate,500"),
            entry("ab12#L6.2", "{\"device\":\"dev-1\"}"),
            entry("ab12#L8", "dev-11,s,heart_rate,0"),
        );
        let (kept, removed) = filter_report(
            part.as_bytes(),
            &marks(&[], &["dev-1"]),
            &BTreeSet::from([4]),
        );
        assert_eq!(removed, 2);
        assert!(String::from_utf8(kept).unwrap().contains("dev-11"));
    }
}
