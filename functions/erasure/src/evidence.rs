//! What a pass proves, as the audit store keeps it: per partition (a unit's share),
//! per copy outside the lake, and summed for the pass. Every figure is a count or a
//! reference; no subject id is ever in it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{ErasureError, FailureKind};
use crate::raw::Lines;

/// Something the pass could not do (nothing of it was deleted), named by its object key
/// or keyed reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub object: String,
    pub kind: FailureKind,
    pub detail: String,
}

impl Failure {
    pub fn of(object: impl Into<String>, e: &ErasureError) -> Failure {
        Failure {
            object: object.into(),
            kind: e.kind(),
            detail: e.to_string(),
        }
    }
}

/// What verification compares a rewritten file with.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub rows: u64,
    /// SHA-256 of the rows kept, hex.
    pub sha256: String,
    /// Row groups copied byte for byte (hashed by their stored bytes).
    pub copied_groups: Vec<usize>,
}

/// One rewritten file (a new version of the same key), or one removed whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewrittenFile {
    pub key: String,
    /// It held only the subjects' rows: deleted, not rewritten.
    pub removed_whole: bool,
    pub rows_in: u64,
    pub rows_removed: u64,
    pub kept_sha256: String,
}

/// The re-read after the rewrite.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub partitions: usize,
    pub object_versions_read: usize,
    /// Rows of the subjects found in any version of any file of those partitions.
    pub subject_rows_left: u64,
    /// Raw files and quarantine reports of the subjects still there.
    pub copies_left: usize,
    /// Rewritten files whose rows are not exactly the rows kept.
    pub files_changed_otherwise: usize,
    pub passed: bool,
}

impl Verification {
    /// Nothing to re-read: nothing of the subjects was there.
    pub fn nothing_to_check() -> Verification {
        Verification {
            passed: true,
            ..Verification::default()
        }
    }
}

/// One partition's share of a pass's evidence.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitEvidence {
    pub partition: String,
    pub files_read: usize,
    pub versions_cleared_by_footer: usize,
    pub rows_removed: u64,
    pub files_rewritten: Vec<RewrittenFile>,
    pub old_versions_deleted: usize,
    pub failures: Vec<Failure>,
    pub verification: Verification,
    /// Lines of raw files (by source reference) whose rows were removed: the finishing
    /// unit clears the raw copies by them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw_lines: BTreeMap<String, Lines>,
    /// A day of the stream's quarantine: the subjects' records removed from it.
    #[serde(default)]
    pub quarantine_records_removed: usize,
}

/// Copies of the subjects' data outside the lake, and what became of them.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopiesEvidence {
    /// Archived raw files of the subjects (named by their legacy keys) and the
    /// quarantine reports of those files, deleted with every version.
    pub raw_files_deleted: usize,
    pub quarantine_objects_deleted: usize,
    /// Archived raw files that hold other patients' rows too (found by the source of the
    /// lake rows removed), rewritten without the subjects' lines, and those lines.
    pub raw_files_rewritten: usize,
    pub raw_lines_removed: u64,
    /// Entries of those files' quarantine reports that were the subjects'.
    pub quarantine_entries_removed: usize,
    /// Copies of files quarantined whole (never in the lake) that named a subject's
    /// device, rewritten without those lines.
    pub quarantined_files_rewritten: usize,
    /// Copies still holding a subject's data after the pass (verification).
    #[serde(skip)]
    pub left: usize,
    #[serde(skip)]
    pub failures: Vec<Failure>,
}

impl CopiesEvidence {
    pub fn add(&mut self, other: CopiesEvidence) {
        self.raw_files_deleted += other.raw_files_deleted;
        self.quarantine_objects_deleted += other.quarantine_objects_deleted;
        self.raw_files_rewritten += other.raw_files_rewritten;
        self.raw_lines_removed += other.raw_lines_removed;
        self.quarantine_entries_removed += other.quarantine_entries_removed;
        self.quarantined_files_rewritten += other.quarantined_files_rewritten;
        self.left += other.left;
        self.failures.extend(other.failures);
    }

    pub fn failed(object: impl Into<String>, e: &ErasureError) -> CopiesEvidence {
        CopiesEvidence {
            failures: vec![Failure::of(object, e)],
            ..CopiesEvidence::default()
        }
    }
}

/// The evidence of a pass, as the audit store keeps it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErasureEvidence {
    pub evidence_id: String,
    pub started_at: String,
    /// The requests processed (their references).
    pub requests: Vec<String>,
    /// Lake partitions, each one unit of the pass.
    pub partitions: usize,
    /// Days of the stream's quarantine, each one unit of the pass, and the subjects'
    /// records removed from them.
    #[serde(default)]
    pub quarantine_days: usize,
    #[serde(default)]
    pub stream_quarantine_records_removed: usize,
    pub files_read: usize,
    /// File versions whose footer alone showed none of the subjects (not downloaded).
    pub versions_cleared_by_footer: usize,
    pub rows_removed: u64,
    pub files_rewritten: Vec<RewrittenFile>,
    pub old_versions_deleted: usize,
    #[serde(flatten)]
    pub copies: CopiesEvidence,
    /// Alert state of the subjects and heartbeats of their devices, removed.
    #[serde(default)]
    pub alert_states_removed: usize,
    #[serde(default)]
    pub heartbeats_removed: usize,
    /// Exports not yet downloaded, cleared of the subjects.
    #[serde(flatten)]
    pub exports: ExportsEvidence,
    /// The final check after every unit: partitions of the days a late row could land
    /// on, read again, and the rows of the subjects found there (and removed).
    #[serde(default)]
    pub late_partitions_checked: usize,
    #[serde(default)]
    pub late_rows_removed: u64,
    /// What could not be done (nothing of it was deleted).
    pub failures: Vec<Failure>,
    pub verification: Verification,
    /// Requests marked done (only when verification passed and nothing failed).
    pub completed: bool,
    /// From the pass's start to its evidence (units run in parallel).
    pub seconds: f64,
}

impl ErasureEvidence {
    /// A unit's share added to the pass's (its raw lines are taken by the caller).
    pub fn add_unit(&mut self, u: UnitEvidence) {
        self.files_read += u.files_read;
        self.versions_cleared_by_footer += u.versions_cleared_by_footer;
        self.rows_removed += u.rows_removed;
        self.files_rewritten.extend(u.files_rewritten);
        self.old_versions_deleted += u.old_versions_deleted;
        self.failures.extend(u.failures);
        let v = &mut self.verification;
        v.partitions += u.verification.partitions;
        v.object_versions_read += u.verification.object_versions_read;
        v.subject_rows_left += u.verification.subject_rows_left;
        v.files_changed_otherwise += u.verification.files_changed_otherwise;
        v.passed &= u.verification.passed;
    }

    /// The final check's share: what it removed and whether it verified. Its files were
    /// each read by their own unit already (not counted again); a failure a unit
    /// recorded is not recorded twice.
    pub fn add_final_check(&mut self, late: UnitEvidence) {
        self.late_partitions_checked = late.verification.partitions;
        self.late_rows_removed = late.rows_removed;
        self.rows_removed += late.rows_removed;
        self.files_rewritten.extend(late.files_rewritten);
        self.old_versions_deleted += late.old_versions_deleted;
        for f in late.failures {
            if !self
                .failures
                .iter()
                .any(|x| x.object == f.object && x.kind == f.kind)
            {
                self.failures.push(f);
            }
        }
        let v = &mut self.verification;
        v.object_versions_read += late.verification.object_versions_read;
        v.subject_rows_left += late.verification.subject_rows_left;
        v.files_changed_otherwise += late.verification.files_changed_otherwise;
        v.passed &= late.verification.passed;
    }

    /// The copies outside the lake, and their verification.
    pub fn add_copies(&mut self, mut c: CopiesEvidence) {
        self.failures.append(&mut c.failures);
        self.verification.copies_left += c.left;
        self.verification.passed &= c.left == 0;
        self.copies.add(c);
    }
}

/// What the pass did to the exports.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportsEvidence {
    pub export_jobs_read: usize,
    pub export_files_rewritten: usize,
    pub export_resources_removed: u64,
    /// Files of jobs that could not be checked (no partner, no key): removed whole.
    pub export_files_removed: usize,
    #[serde(skip)]
    pub failures: Vec<Failure>,
}
