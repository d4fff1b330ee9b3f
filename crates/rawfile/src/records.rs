//! Lines and CSV records read straight from the (decoded) byte stream without copying
//! a row: a line is found with `memchr` and its fields are spans of the read buffer.
//! Most rows of the files we ingest have no quote; a record that has one is handed to
//! `csv-core`, which knows the quoting rules, so quoted fields (commas, doubled quotes,
//! line breaks inside) read as in any CSV tool.
//!
//! Memory is bounded: a line (or quoted record) longer than `max_line` bytes fails the
//! read with a [`RecordError`] instead of being buffered.

use std::io::{Error, ErrorKind, Read};

use memchr::{memchr, memchr_iter, memchr2};

/// Why the rest of a file cannot be read as records: the content's fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("a line is longer than {max} bytes")]
    LineTooLong { max: usize },
    #[error("a quoted field opened on line {line} is not closed within {max} bytes")]
    UnterminatedQuote { line: u64, max: usize },
}

impl RecordError {
    /// The record error behind an I/O error, if it was one.
    pub fn of(e: &Error) -> Option<&RecordError> {
        e.get_ref().and_then(|inner| inner.downcast_ref())
    }

    fn into_io(self) -> Error {
        Error::new(ErrorKind::InvalidData, self)
    }
}

/// Inside a quoted field after these bytes (an odd number of quotes: every closed
/// field, and every doubled quote, has an even number).
fn open_quote(bytes: &[u8]) -> bool {
    memchr_iter(b'"', bytes).count() % 2 == 1
}

const READ_BYTES: usize = 1 << 20;

/// One line of text as read.
pub struct Line<'a> {
    /// 1-based number of the line in the file.
    pub number: u64,
    /// The line without its terminator (`\n` or `\r\n`).
    pub bytes: &'a [u8],
}

/// One CSV record.
pub struct Record<'a> {
    /// 1-based number of the line the record starts on.
    pub line: u64,
    /// The record as written (all its lines for a quoted one, without the terminator).
    pub text: &'a [u8],
    fields: &'a [u8],
    spans: &'a [(usize, usize)],
    /// Fields were unquoted into a buffer of their own (else they are spans of `text`).
    quoted: bool,
    /// A quoted field still open at the end of the file.
    pub unterminated: bool,
}

impl<'a> Record<'a> {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Field `i`, unquoted; empty past the last field.
    pub fn field(&self, i: usize) -> &'a [u8] {
        self.spans
            .get(i)
            .map_or(&[][..], |&(start, end)| &self.fields[start..end])
    }

    /// Field `i` as text, given `text` (this record's text, checked as UTF-8): no
    /// second check for the usual unquoted row.
    pub fn text_field(&self, text: &'a str, i: usize) -> &'a str {
        let Some(&(start, end)) = self.spans.get(i) else {
            return "";
        };
        if self.quoted {
            std::str::from_utf8(&self.fields[start..end]).unwrap_or("")
        } else {
            text.get(start..end).unwrap_or("")
        }
    }

    pub fn fields(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.spans.iter().map(|&(s, e)| &self.fields[s..e])
    }

    /// A line with nothing but white space.
    pub fn is_blank(&self) -> bool {
        self.text.trim_ascii().is_empty()
    }
}

/// Where the next line or record lies in the buffer.
struct Extent {
    start: usize,
    /// End of the content (before `\r\n` / `\n`).
    stop: usize,
    /// Where the following one starts.
    next: usize,
    /// A `"` comes before the line break: the record is `csv-core`'s to read.
    quoted: bool,
}

pub struct Records<R> {
    inner: R,
    buf: Vec<u8>,
    /// Unread data is `buf[pos..end]`.
    pos: usize,
    end: usize,
    eof: bool,
    /// Line number of the line starting at `pos`.
    line: u64,
    max_line: usize,
    spans: Vec<(usize, usize)>,
    /// The current quoted record's fields after unquoting, and their ends.
    unquoted: Vec<u8>,
    ends: Vec<usize>,
    csv: csv_core::Reader,
}

impl<R: Read> Records<R> {
    pub fn new(inner: R, max_line: usize) -> Records<R> {
        Records {
            inner,
            buf: vec![0; READ_BYTES + max_line],
            pos: 0,
            end: 0,
            eof: false,
            line: 1,
            max_line,
            spans: Vec::with_capacity(16),
            unquoted: Vec::new(),
            ends: Vec::new(),
            csv: csv_core::Reader::new(),
        }
    }

    /// The next line (NDJSON: quotes mean nothing to the line structure).
    pub fn next_line(&mut self) -> std::io::Result<Option<Line<'_>>> {
        let Some(x) = self.extent(false)? else {
            return Ok(None);
        };
        let number = self.line;
        self.line += 1;
        self.pos = x.next;
        Ok(Some(Line {
            number,
            bytes: &self.buf[x.start..x.stop],
        }))
    }

    /// The next CSV record (blank lines included: callers decide what they mean).
    pub fn next_record(&mut self) -> std::io::Result<Option<Record<'_>>> {
        let Some(x) = self.extent(true)? else {
            return Ok(None);
        };
        if x.quoted {
            return self.quoted_record().map(Some);
        }
        let line = self.line;
        self.line += 1;
        self.pos = x.next;
        let text = &self.buf[x.start..x.stop];
        self.spans.clear();
        let mut start = 0;
        for comma in memchr_iter(b',', text) {
            self.spans.push((start, comma));
            start = comma + 1;
        }
        self.spans.push((start, text.len()));
        Ok(Some(Record {
            line,
            text,
            fields: text,
            spans: &self.spans,
            quoted: false,
            unterminated: false,
        }))
    }

    /// A record with a quote before its first line break: `csv-core` decides where it
    /// ends (a quoted field may span lines) and unquotes its fields.
    fn quoted_record(&mut self) -> std::io::Result<Record<'_>> {
        use csv_core::ReadRecordResult as R;
        self.csv.reset();
        if self.unquoted.len() < 256 {
            self.unquoted.resize(256, 0);
        }
        if self.ends.len() < 16 {
            self.ends.resize(16, 0);
        }
        let (mut consumed, mut nout, mut nends) = (0, 0, 0);
        loop {
            if self.pos + consumed == self.end && !self.eof {
                if consumed > self.max_line {
                    return Err(self.too_long(consumed));
                }
                self.refill()?;
                continue;
            }
            // At the end of the file the input is empty, which tells csv-core so.
            let input = &self.buf[self.pos + consumed..self.end];
            let (res, nin, o, e) =
                self.csv
                    .read_record(input, &mut self.unquoted[nout..], &mut self.ends[nends..]);
            consumed += nin;
            nout += o;
            nends += e;
            match res {
                R::InputEmpty => {}
                R::OutputFull => self.unquoted.resize(self.unquoted.len() * 2, 0),
                R::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                R::Record | R::End => break,
            }
        }
        if consumed > self.max_line {
            return Err(self.too_long(consumed));
        }
        let at_end = self.eof && self.pos + consumed == self.end;
        let unterminated = at_end && open_quote(&self.buf[self.pos..self.pos + consumed]);
        // A CR LF terminator is one line break, even if the LF is still to be read.
        if self.buf[self.pos..self.pos + consumed].ends_with(b"\r") {
            if self.pos + consumed == self.end && !self.eof {
                self.refill()?;
            }
            if self.buf.get(self.pos + consumed) == Some(&b'\n') && self.pos + consumed < self.end {
                consumed += 1;
            }
        }
        let start = self.pos;
        self.pos += consumed;
        let mut text = &self.buf[start..self.pos];
        text = text.strip_suffix(b"\n").unwrap_or(text);
        text = text.strip_suffix(b"\r").unwrap_or(text);
        let line = self.line;
        self.line += 1 + memchr_iter(b'\n', text).count() as u64;
        self.spans.clear();
        let mut from = 0;
        for &end in &self.ends[..nends] {
            self.spans.push((from, end));
            from = end;
        }
        Ok(Record {
            line,
            text,
            fields: &self.unquoted[..nout],
            spans: &self.spans,
            quoted: true,
            unterminated,
        })
    }

    /// A quoted record past the limit: a quote never closed, or simply too long.
    fn too_long(&self, consumed: usize) -> Error {
        let end = (self.pos + consumed).min(self.end);
        if open_quote(&self.buf[self.pos..end]) {
            RecordError::UnterminatedQuote {
                line: self.line,
                max: self.max_line,
            }
            .into_io()
        } else {
            RecordError::LineTooLong { max: self.max_line }.into_io()
        }
    }

    /// Finds the end of the next line, reading more input as needed. For CSV, a quote
    /// before the line break marks the record as quoted (its end is then `csv-core`'s
    /// call, see [`Records::quoted_record`]).
    fn extent(&mut self, csv: bool) -> std::io::Result<Option<Extent>> {
        let mut scan = self.pos;
        loop {
            let hay = &self.buf[scan..self.end];
            let hit = if csv {
                memchr2(b'\n', b'"', hay)
            } else {
                memchr(b'\n', hay)
            };
            let stop = match hit {
                Some(i) if hay[i] == b'"' => {
                    return Ok(Some(Extent {
                        start: self.pos,
                        stop: self.pos,
                        next: self.pos,
                        quoted: true,
                    }));
                }
                Some(i) => Some(scan + i),
                None if self.eof => None,
                None => {
                    if self.end - self.pos > self.max_line {
                        return Err(RecordError::LineTooLong { max: self.max_line }.into_io());
                    }
                    // Everything up to `end` is scanned; the refill moves it to the front.
                    let scanned = self.end - self.pos;
                    self.refill()?;
                    scan = self.pos + scanned;
                    continue;
                }
            };
            let (content_end, next) = match stop {
                Some(nl) => (nl, nl + 1),
                None if self.pos == self.end => return Ok(None),
                None => (self.end, self.end),
            };
            if content_end - self.pos > self.max_line {
                return Err(RecordError::LineTooLong { max: self.max_line }.into_io());
            }
            let stop = if content_end > self.pos && self.buf[content_end - 1] == b'\r' {
                content_end - 1
            } else {
                content_end
            };
            return Ok(Some(Extent {
                start: self.pos,
                stop,
                next,
                quoted: false,
            }));
        }
    }

    /// Moves the unread data to the front and reads more after it.
    fn refill(&mut self) -> std::io::Result<()> {
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        if self.end == self.buf.len() {
            // Callers refill only below the line limit, so this cannot happen; if it
            // did, an empty read would look like the end of the file.
            return Err(RecordError::LineTooLong { max: self.max_line }.into_io());
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes a few at a time, as a slow network read would.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(self.0.len()).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn records(
        text: &[u8],
        step: usize,
        max_line: usize,
    ) -> std::io::Result<Vec<(u64, Vec<String>)>> {
        let mut r = Records::new(Trickle(text, step), max_line);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            let fields = rec
                .fields()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            out.push((rec.line, fields));
        }
        Ok(out)
    }

    #[test]
    fn quoted_fields_follow_the_csv_rules_and_line_numbers_stay_true() {
        let text = b"a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",3\n\"two\nlines\",z,\n\nlast,row,\"q\"";
        for step in [1, 3, 7, 4096] {
            let got = records(text, step, 1024).unwrap();
            let want = vec![
                (1, vec!["a", "b", "c"]),
                (2, vec!["x, y", "say \"hi\"", "3"]),
                (3, vec!["two\nlines", "z", ""]),
                (5, vec![""]),
                (6, vec!["last", "row", "q"]),
            ];
            let want: Vec<(u64, Vec<String>)> = want
                .into_iter()
                .map(|(l, f)| (l, f.into_iter().map(String::from).collect()))
                .collect();
            assert_eq!(got, want, "reading {step} bytes at a time");
        }
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_is_a_character_and_ends_nothing() {
        let text = b"a,b\"c,d\nnext,row,x\r\n\"q\",\"r\r\nr\"\r\nlast,1,2\n";
        for step in [1, 5, 4096] {
            let got = records(text, step, 1024).unwrap();
            let want: Vec<(u64, Vec<String>)> = vec![
                (1, vec!["a", "b\"c", "d"]),
                (2, vec!["next", "row", "x"]),
                (3, vec!["q", "r\r\nr"]),
                (5, vec!["last", "1", "2"]),
            ]
            .into_iter()
            .map(|(l, f)| (l, f.into_iter().map(String::from).collect()))
            .collect();
            assert_eq!(got, want, "reading {step} bytes at a time");
        }
    }

    #[test]
    fn a_line_past_the_limit_fails_the_read_instead_of_growing_the_buffer() {
        let mut long = b"h\n".to_vec();
        long.extend(std::iter::repeat_n(b'x', 5000));
        long.push(b'\n');
        let err = records(&long, 512, 1000).unwrap_err();
        assert_eq!(
            RecordError::of(&err),
            Some(&RecordError::LineTooLong { max: 1000 })
        );
        // An unterminated quote cannot swallow the rest of the file either, and it is
        // reported as what it is.
        let mut open = b"h\na,\"never closed\n".to_vec();
        open.extend(std::iter::repeat_n(b"1,2\n".as_slice(), 2000).flatten());
        let err = records(&open, 4096, 1000).unwrap_err();
        assert_eq!(
            RecordError::of(&err),
            Some(&RecordError::UnterminatedQuote { line: 2, max: 1000 })
        );
    }

    #[test]
    fn a_quote_left_open_at_the_end_of_the_file_marks_its_record() {
        for step in [1, 3, 4096] {
            let mut r = Records::new(Trickle(b"a,b\n1,\"2\n3,4", step), 1000);
            let mut flags = Vec::new();
            while let Some(rec) = r.next_record().unwrap() {
                flags.push((rec.line, rec.unterminated));
            }
            assert_eq!(flags, [(1, false), (2, true)], "step {step}");
        }
    }

    #[test]
    fn ndjson_lines_ignore_quotes_and_keep_their_numbers() {
        let text = b"{\"a\":\"x\"}\r\n\n{\"b\":1}";
        let mut r = Records::new(Trickle(text, 2), 100);
        let mut got = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            got.push((l.number, String::from_utf8_lossy(l.bytes).into_owned()));
        }
        assert_eq!(
            got,
            vec![
                (1, "{\"a\":\"x\"}".to_owned()),
                (2, String::new()),
                (3, "{\"b\":1}".to_owned())
            ]
        );
    }
}
