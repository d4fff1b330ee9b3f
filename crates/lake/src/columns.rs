//! The rows of one lake file, column by column: what the writer takes. Callers hand
//! over prepared buffers (interned strings as codes, texts as one buffer with ends), so
//! no row is ever built as an object on the write path.

use pulselake_domain::ReadingId;

use crate::{COLUMNS, Column, LakeError};

/// A string column.
pub enum Strings<'a> {
    /// The same text in every row.
    Same(&'a str),
    /// Few distinct texts: row `i` holds `name(codes[i])`, or no value when its code is
    /// [`NULL_CODE`] (only in a nullable column).
    Coded {
        codes: &'a [u32],
        name: &'a dyn Fn(u32) -> &'a str,
    },
    /// A text per row: row `i` holds `bytes[ends[i - 1]..ends[i]]` (from 0 for row 0).
    Each { bytes: &'a [u8], ends: &'a [u32] },
    /// No value in any row (only for a nullable column).
    Null,
}

/// The code of a row that holds no value in a [`Strings::Coded`] column.
pub const NULL_CODE: u32 = u32::MAX;

/// One column's values, as the writer sees them (`'v` borrows the [`Columns`], `'a`
/// what they borrow).
pub enum Values<'v, 'a> {
    /// Reading ids, written as their 32-character hex.
    Ids(&'a [ReadingId]),
    Text(&'v Strings<'a>),
    Double(&'a [f64]),
    /// Epoch milliseconds (a timestamp column).
    Millis(&'a [i64]),
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
    pub cohort: Strings<'a>,
}

impl<'a> Columns<'a> {
    pub fn rows(&self) -> usize {
        self.reading_id.len()
    }

    /// The values in [`COLUMNS`] order: the one place where a field meets its column.
    pub fn values(&self) -> [Values<'_, 'a>; COLUMNS.len()] {
        [
            Values::Ids(self.reading_id),
            Values::Text(&self.subject_id),
            Values::Text(&self.device_id),
            Values::Text(&self.sensor_id),
            Values::Double(self.value),
            Values::Text(&self.unit),
            Values::Text(&self.loinc),
            Values::Millis(self.measured_at),
            Values::Millis(self.received_at),
            Values::Text(&self.source),
            Values::Text(&self.source_ref),
            Values::Text(&self.cohort),
        ]
    }
}

impl Values<'_, '_> {
    /// Values given (`None`: one per row, whatever the row count).
    fn len(&self) -> Option<usize> {
        match self {
            Values::Ids(v) => Some(v.len()),
            Values::Double(v) => Some(v.len()),
            Values::Millis(v) => Some(v.len()),
            Values::Text(Strings::Same(_) | Strings::Null) => None,
            Values::Text(Strings::Coded { codes, .. }) => Some(codes.len()),
            Values::Text(Strings::Each { ends, .. }) => Some(ends.len()),
        }
    }
}

/// Checks values against their columns before anything is written: lengths, text ends,
/// value kinds and nulls only where a column allows them. An error, never a panic.
pub(crate) fn check(
    schema: &[Column],
    values: &[Values<'_, '_>],
    rows: usize,
) -> Result<(), LakeError> {
    let bad = |column: &'static str, problem: String| LakeError::Column { column, problem };
    if schema.len() != values.len() {
        return Err(bad(
            "*",
            format!("{} columns for a schema of {}", values.len(), schema.len()),
        ));
    }
    for (c, v) in schema.iter().zip(values) {
        if let Some(len) = v.len().filter(|&len| len != rows) {
            return Err(bad(c.name, format!("{len} values for {rows} rows")));
        }
        let kind_ok = matches!(
            (c.glue_type, v),
            ("string", Values::Ids(_) | Values::Text(_))
                | ("double", Values::Double(_))
                | ("timestamp", Values::Millis(_))
        );
        if !kind_ok {
            return Err(bad(
                c.name,
                format!("values of the wrong kind for a {}", c.glue_type),
            ));
        }
        match v {
            Values::Text(Strings::Null) if !c.nullable => {
                return Err(bad(
                    c.name,
                    "no values for a column that requires them".into(),
                ));
            }
            Values::Text(Strings::Coded { codes, .. })
                if !c.nullable && codes.contains(&NULL_CODE) =>
            {
                return Err(bad(
                    c.name,
                    "a row without a value in a column that requires one".into(),
                ));
            }
            Values::Text(Strings::Each { bytes, ends }) => {
                let ordered = ends.windows(2).all(|w| w[0] <= w[1]);
                if !ordered || ends.last().is_some_and(|&e| e as usize > bytes.len()) {
                    return Err(bad(
                        c.name,
                        "text ends out of order or past the text".into(),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}
