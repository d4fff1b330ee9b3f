//! Why a step of an erasure pass failed, typed by what can be done about it: the object
//! changed under the pass (the next pass takes it again), an AWS call failed (retryable
//! or not, as AWS said), a lake file or raw copy is not what it should be (a person
//! must look). Matched by type, never by message text.

use pulselake_adapters::AwsError;
use pulselake_lake::LakeError;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    /// The object's current version is no longer the one read (a corrected upload, a
    /// compaction's swap): nothing was put over it, and the request stays pending.
    #[error("changed while it was rewritten; the next pass takes it again")]
    Changed,
    /// The partition is being compacted (its plan is there): the next pass takes it.
    #[error("a compaction of this partition is under way; the next pass takes it again")]
    Compacting,
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// A lake object that cannot be read as lake Parquet.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A raw file or quarantine report that does not read as file-ingest read it.
    #[error("not readable as it was ingested: {0}")]
    Content(std::io::Error),
    /// The pass's own records could not be encoded or decoded.
    #[error("an erasure record: {0}")]
    Record(#[from] serde_json::Error),
    /// A unit that does not name a lake partition.
    #[error("an erasure unit: {0}")]
    BadUnit(#[from] pulselake_domain::partition::NotAPartition),
}

impl ErasureError {
    /// Whether the same step could succeed if run again as it is.
    pub fn retryable(&self) -> bool {
        match self {
            ErasureError::Changed | ErasureError::Compacting => true,
            ErasureError::Aws(e) => e.retryable,
            ErasureError::Lake(_)
            | ErasureError::Content(_)
            | ErasureError::Record(_)
            | ErasureError::BadUnit(_) => false,
        }
    }

    pub fn kind(&self) -> FailureKind {
        match self {
            ErasureError::Changed | ErasureError::Compacting => FailureKind::Changed,
            ErasureError::Aws(e) if e.retryable => FailureKind::Transient,
            ErasureError::Aws(_) | ErasureError::Record(_) | ErasureError::BadUnit(_) => {
                FailureKind::Permanent
            }
            ErasureError::Lake(_) | ErasureError::Content(_) => FailureKind::Content,
        }
    }
}

/// A failure as the evidence records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Changed since it was read: taken again by the next pass.
    Changed,
    /// An AWS call that may succeed later.
    Transient,
    /// An AWS call that will not succeed as it is (permissions, a missing resource).
    Permanent,
    /// A file that is not what it should be: a person must look.
    Content,
    /// Units of the pass that never finished (dead-lettered, or out of time).
    Unfinished,
}
