//! Erasure's rewrite of one lake file: every row of the given subjects removed, every
//! other row kept in order with the same schema and types, one row group at a time
//! (memory bounded by a row group, not the file). Row groups whose footer statistics
//! show none of the subjects are decoded only to be copied; a file that holds none of
//! them is left alone. The digest of the rows kept is what verification compares with
//! the rewritten file's [`digest`].

use std::collections::BTreeSet;

use bytes::Bytes;
use pulselake_domain::{Metric, Reading};
use sha2::{Digest, Sha256};

use crate::LakeError;
use crate::read::LakeFile;
use crate::write::{FileLayout, GroupWriter, with_columns};

/// What the rewrite did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub rows_in: u64,
    pub rows_removed: u64,
    /// Row groups the footer statistics cleared without a look at their rows.
    pub groups_cleared_by_statistics: usize,
    /// SHA-256 over the rows kept, in order.
    pub kept_digest: [u8; 32],
    /// The new file; `None` when no row was removed (the file stays as it is).
    pub file: Option<Vec<u8>>,
}

/// Whether the footer proves that row group `g` holds none of `subjects`.
fn cleared(file: &LakeFile, g: usize, subjects: &BTreeSet<String>) -> bool {
    file.subject_range(g).is_some_and(|(min, max)| {
        !subjects
            .iter()
            .any(|s| s.as_bytes() >= min.as_slice() && s.as_bytes() <= max.as_slice())
    })
}

/// Rewrites `file` (of partition `metric`) without the rows of `subjects`, in row
/// groups of `layout`'s size; a file recorded as sorted by subject stays recorded so.
pub fn erase_subjects(
    file: Bytes,
    metric: Metric,
    subjects: &BTreeSet<String>,
    layout: FileLayout,
) -> Result<Rewrite, LakeError> {
    let lake = LakeFile::open(file, metric)?;
    let layout = FileLayout {
        sorted_by_subject: layout.sorted_by_subject || lake.sorted_by_subject(),
        ..layout
    };
    let groups = lake.row_groups();
    let mut cleared_groups = vec![false; groups];
    let mut holds_any = false;
    for (g, c) in cleared_groups.iter_mut().enumerate() {
        *c = cleared(&lake, g, subjects);
        if !*c && !holds_any {
            holds_any = lake
                .row_group(g)?
                .iter()
                .any(|r| subjects.contains(r.subject_id.as_ref()));
        }
    }
    let mut rewrite = Rewrite {
        rows_in: lake.rows(),
        rows_removed: 0,
        groups_cleared_by_statistics: cleared_groups.iter().filter(|c| **c).count(),
        kept_digest: [0; 32],
        file: None,
    };
    if !holds_any {
        rewrite.kept_digest = digest_file(&lake)?;
        return Ok(rewrite);
    }
    let mut hasher = Sha256::new();
    let mut out = GroupWriter::new(Vec::with_capacity(64 << 20), layout)?;
    for (g, cleared) in cleared_groups.iter().enumerate() {
        let mut rows = lake.row_group(g)?;
        if !cleared {
            let before = rows.len();
            rows.retain(|r| !subjects.contains(r.subject_id.as_ref()));
            rewrite.rows_removed += (before - rows.len()) as u64;
        }
        for r in &rows {
            hash_row(&mut hasher, r);
        }
        with_columns(&rows, |columns| out.write(columns))?;
    }
    rewrite.kept_digest = hasher.finalize().into();
    rewrite.file = Some(out.finish()?);
    Ok(rewrite)
}

/// Rows and SHA-256 over every row of a file, in order: what verification recomputes.
pub fn digest(file: Bytes, metric: Metric) -> Result<(u64, [u8; 32]), LakeError> {
    let lake = LakeFile::open(file, metric)?;
    Ok((lake.rows(), digest_file(&lake)?))
}

/// Rows of `subjects` in a file (zero after a rewrite).
pub fn rows_of(file: Bytes, metric: Metric, subjects: &BTreeSet<String>) -> Result<u64, LakeError> {
    let lake = LakeFile::open(file, metric)?;
    let mut n = 0;
    for g in 0..lake.row_groups() {
        if !cleared(&lake, g, subjects) {
            n += lake
                .row_group(g)?
                .iter()
                .filter(|r| subjects.contains(r.subject_id.as_ref()))
                .count() as u64;
        }
    }
    Ok(n)
}

fn digest_file(lake: &LakeFile) -> Result<[u8; 32], LakeError> {
    let mut hasher = Sha256::new();
    for g in 0..lake.row_groups() {
        for r in &lake.row_group(g)? {
            hash_row(&mut hasher, r);
        }
    }
    Ok(hasher.finalize().into())
}

/// SHA-256 of one row (every column). Summed over rows, it checks that a rewrite that
/// reorders rows (compaction) kept exactly the same rows.
pub fn row_hash(r: &Reading<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    hash_row(&mut h, r);
    h.finalize().into()
}

/// Every column of a row, each length-prefixed (no two rows hash alike by accident).
fn hash_row(h: &mut Sha256, r: &Reading<'_>) {
    let reading_id = r.reading_id.to_string();
    let texts = [
        reading_id.as_str(),
        r.subject_id.as_ref(),
        r.device_id.as_ref(),
        r.sensor_id.as_ref(),
        r.unit(),
        r.loinc(),
        r.source.as_str(),
        r.source_ref.as_ref(),
    ];
    for t in texts {
        h.update((t.len() as u32).to_le_bytes());
        h.update(t.as_bytes());
    }
    h.update(r.value.to_bits().to_le_bytes());
    h.update(r.measured_at.to_le_bytes());
    h.update(r.received_at.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use pulselake_domain::{ReadingId, Source};

    use super::*;
    use crate::encode_readings;

    fn rows(subjects: &[&str], per: usize) -> Vec<Reading<'static>> {
        let mut out = Vec::new();
        for (s, subject) in subjects.iter().enumerate() {
            for i in 0..per {
                let at = 1_795_305_600_000 + (i * 1000 + s) as i64;
                out.push(Reading {
                    reading_id: ReadingId::derive("dev", "s", Metric::Spo2, at),
                    subject_id: Cow::Owned((*subject).to_owned()),
                    device_id: Cow::Owned(format!("dev-{s}")),
                    sensor_id: Cow::Borrowed("s"),
                    metric: Metric::Spo2,
                    value: 90.0 + i as f64 % 9.0,
                    measured_at: at,
                    received_at: at + 1,
                    source: Source::Stream,
                    source_ref: Cow::Borrowed("shard:1"),
                });
            }
        }
        out
    }

    fn small_groups(sorted: bool) -> FileLayout {
        FileLayout {
            row_group_rows: 100,
            sorted_by_subject: sorted,
        }
    }

    #[test]
    fn the_subjects_rows_go_and_every_other_row_stays_in_order() {
        let all = rows(&["a", "b", "c"], 250);
        // Interleaved, as Firehose leaves them: every group holds every subject.
        let mut mixed = all.clone();
        mixed.sort_by_key(|r| r.measured_at);
        let file = Bytes::from(encode_readings(&mixed, small_groups(false)).unwrap());
        let gone = BTreeSet::from(["b".to_owned()]);
        let r = erase_subjects(file.clone(), Metric::Spo2, &gone, small_groups(false)).unwrap();
        assert_eq!((r.rows_in, r.rows_removed), (750, 250));
        let new = Bytes::from(r.file.unwrap());
        assert_eq!(rows_of(new.clone(), Metric::Spo2, &gone).unwrap(), 0);
        let (n, d) = digest(new.clone(), Metric::Spo2).unwrap();
        assert_eq!(
            (n, d),
            (500, r.kept_digest),
            "the other rows, unchanged and in order"
        );
        let expected: Vec<_> = mixed
            .iter()
            .filter(|r| r.subject_id != "b")
            .cloned()
            .collect();
        assert_eq!(crate::read_readings(new, Metric::Spo2).unwrap(), expected);
    }

    #[test]
    fn sorted_files_are_cleared_group_by_group_from_the_footer() {
        let file =
            Bytes::from(encode_readings(&rows(&["a", "b", "c"], 250), small_groups(true)).unwrap());
        let gone = BTreeSet::from(["a".to_owned()]);
        let r = erase_subjects(file, Metric::Spo2, &gone, small_groups(false)).unwrap();
        assert_eq!(r.rows_removed, 250);
        let new = LakeFile::open(Bytes::from(r.file.clone().unwrap()), Metric::Spo2).unwrap();
        assert!(
            new.sorted_by_subject(),
            "a sorted file stays recorded as sorted"
        );
        assert!(r.groups_cleared_by_statistics >= 4, "{r:?}");
    }

    #[test]
    fn a_file_without_the_subject_is_left_alone() {
        let file =
            Bytes::from(encode_readings(&rows(&["a", "c"], 50), small_groups(false)).unwrap());
        let gone = BTreeSet::from(["b".to_owned()]);
        let r = erase_subjects(file.clone(), Metric::Spo2, &gone, small_groups(false)).unwrap();
        assert!(r.file.is_none());
        assert_eq!(r.rows_removed, 0);
        assert_eq!(digest(file, Metric::Spo2).unwrap().1, r.kept_digest);
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_panic() {
        let gone = BTreeSet::from(["b".to_owned()]);
        assert!(
            erase_subjects(
                Bytes::from_static(b"PAR1 nonsense"),
                Metric::Spo2,
                &gone,
                small_groups(false)
            )
            .is_err()
        );
    }
}
