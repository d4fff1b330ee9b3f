//! Failures of one file, typed by what can be done about them: the content's fault
//! (quarantine the file; the same bytes would fail again) or the transport's (retry).
//! Told apart by type, never by message text.

use pulselake_domain::{Reason, Rejection};

use pulselake_rawfile::ByteLimitExceeded;
use pulselake_rawfile::RecordError;

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file's content cannot be ingested: quarantine it whole with this reason.
    /// The same bytes would fail again, so it is never retried.
    #[error("{0}")]
    Content(Rejection),
    /// Reading the object failed in transit: worth a retry.
    #[error("reading the file failed: {0}")]
    Transport(std::io::Error),
}

/// Why a reader stopped before the end of the file.
#[derive(Debug)]
pub enum ReadFault {
    /// Reading the bytes failed (the content's fault, or the transport's: see
    /// [`crate::pipeline`]).
    Io(std::io::Error),
    /// The file as a whole is unusable.
    Content(Rejection),
}

impl From<std::io::Error> for ReadFault {
    fn from(e: std::io::Error) -> Self {
        ReadFault::Io(e)
    }
}

impl ReadFault {
    /// A read fault is the file's (corrupt compression, a limit the content broke) or the
    /// transport's (retry). Told apart by type, never by message.
    pub fn classify(self, gzip: bool) -> FileError {
        let e = match self {
            ReadFault::Content(rej) => return FileError::Content(rej),
            ReadFault::Io(e) => e,
        };
        if let Some(limit) = ByteLimitExceeded::of(&e) {
            let reason = match limit {
                ByteLimitExceeded::TrailingGarbage => Reason::CorruptCompression,
                _ => Reason::Oversized,
            };
            return FileError::Content(Rejection::new(reason, limit.to_string()));
        }
        if let Some(bad) = RecordError::of(&e) {
            let reason = match bad {
                RecordError::LineTooLong { .. } => Reason::Oversized,
                RecordError::UnterminatedQuote { .. } => Reason::UnterminatedQuote,
            };
            return FileError::Content(Rejection::new(reason, bad.to_string()));
        }
        let corrupt = matches!(
            e.kind(),
            std::io::ErrorKind::InvalidData
                | std::io::ErrorKind::InvalidInput
                | std::io::ErrorKind::UnexpectedEof
        );
        if gzip && corrupt {
            return FileError::Content(Rejection::new(
                Reason::CorruptCompression,
                format!("the gzip data does not decompress: {e}"),
            ));
        }
        FileError::Transport(e)
    }
}
