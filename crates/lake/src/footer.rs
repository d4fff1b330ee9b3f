//! The footer's column orders, as every engine reads them. The parquet crate labels
//! every DOUBLE column's statistics with the IEEE 754 total order (a 2025 addition to
//! the format) and offers no way to choose; pyarrow, DuckDB and older Spark/Trino
//! readers ignore statistics under an order they do not know, so a query on a `value`
//! range could skip no row group. The lake's values are finite (validated; no NaN), so
//! their min and max are the same under the type-defined order every reader knows:
//! this writer relabels them. The column orders are the footer's last field (a list of
//! one-byte-tagged empty unions), so the relabel is a same-length change of bytes the
//! writer passes through last; a footer of any other shape is left as it is.

use std::io::{self, Write};

/// Bytes held back until the end: the footer's column orders, its length and the magic.
const TAIL: usize = 256;

/// Thrift compact: a struct field with id delta 1 or 2 (the union's `TYPE_ORDER` and
/// `IEEE_754_TOTAL_ORDER`), each holding an empty struct.
const TYPE_ORDER: u8 = 0x1C;
const IEEE_754_TOTAL_ORDER: u8 = 0x2C;

/// A sink that passes everything through but its last [`TAIL`] bytes, which
/// [`ColumnOrderSink::finish`] relabels and writes.
pub struct ColumnOrderSink<W> {
    pub inner: W,
    held: Vec<u8>,
    columns: usize,
}

impl<W: Write> ColumnOrderSink<W> {
    pub fn new(inner: W, columns: usize) -> Self {
        ColumnOrderSink {
            inner,
            held: Vec::with_capacity(2 * TAIL),
            columns,
        }
    }

    /// Writes the held tail, relabelled, and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        relabel(&mut self.held, self.columns);
        self.inner.write_all(&self.held)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ColumnOrderSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.held.extend_from_slice(buf);
        if self.held.len() > 2 * TAIL {
            let pass = self.held.len() - TAIL;
            self.inner.write_all(&self.held[..pass])?;
            self.held.drain(..pass);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Relabels IEEE 754 total order as type-defined order in a file's tail, when the tail
/// ends exactly as the parquet crate writes it: `... 0x?9 <list of n structs>
/// (tag 0 0)*n 0 <u32 length> PAR1`.
pub fn relabel(tail: &mut [u8], columns: usize) -> bool {
    let n = tail.len();
    if columns == 0 || columns >= 15 || n < 8 || &tail[n - 4..] != b"PAR1" {
        return false;
    }
    let meta_end = n - 8;
    let elements = 3 * columns;
    // field header, list header, the elements, the struct's stop byte
    if meta_end < elements + 3 || tail[meta_end - 1] != 0 {
        return false;
    }
    let start = meta_end - 1 - elements;
    let list_header = ((columns as u8) << 4) | 0x0C;
    if tail[start - 1] != list_header || tail[start - 2] & 0x0F != 0x09 {
        return false;
    }
    let orders = &mut tail[start..start + elements];
    if !orders
        .chunks(3)
        .all(|e| (e[0] == TYPE_ORDER || e[0] == IEEE_754_TOTAL_ORDER) && e[1] == 0 && e[2] == 0)
    {
        return false;
    }
    for e in orders.chunks_mut(3) {
        e[0] = TYPE_ORDER;
    }
    true
}
