//! Raw files as they were uploaded: the bytes counted and hashed (a file's content
//! identity), gzip decoded member by member inside size and ratio limits, and lines or
//! CSV records read straight from the stream. file-ingest reads its input with these;
//! erasure reads an archived file the same way, so line numbers agree between the lake
//! rows (`file:<reference>:L<line>`) and the raw copy it rewrites.

pub mod intake;
pub mod records;

pub use intake::{Bounded, ByteLimitExceeded, ByteLimits, GzMembers, Hashed, Tally};
pub use records::{Line, Record, RecordError, Records};
