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
use crate::read::{LakeFile, RawColumn};
use crate::write::{FileLayout, GroupWriter};

/// What the rewrite did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub rows_in: u64,
    pub rows_removed: u64,
    /// Row groups the footer statistics cleared without a look at their rows.
    pub groups_cleared_by_statistics: usize,
    /// SHA-256 over the rows kept, row group by row group: a rewritten group's values
    /// column by column, a copied group's stored bytes.
    pub kept_digest: [u8; 32],
    /// Row groups of the new file copied byte for byte from the old one (no subject
    /// row in them): verification hashes their stored bytes, not their values.
    pub copied_groups: Vec<usize>,
    /// The new file; `None` when no row was removed (the file stays as it is).
    pub file: Option<Vec<u8>>,
}

/// The length of a Parquet file's footer (metadata), from the file's last 8 bytes.
pub fn footer_len(tail: &[u8]) -> Result<u64, LakeError> {
    match tail {
        [a, b, c, d, b'P', b'A', b'R', b'1'] => Ok(u64::from(u32::from_le_bytes([*a, *b, *c, *d]))),
        _ => Err(LakeError::Column {
            column: "*",
            problem: "not a Parquet file (no PAR1 at its end)".into(),
        }),
    }
}

/// Whether a file's footer alone proves that it holds none of `subjects` (every row
/// group's `subject_id` statistics exclude them): the file need not be read.
pub fn footer_clears(metadata: &[u8], subjects: &BTreeSet<String>) -> Result<bool, LakeError> {
    use parquet::file::metadata::ParquetMetaDataReader;
    use parquet::file::statistics::Statistics;
    let meta = ParquetMetaDataReader::decode_metadata(metadata)?;
    let at = crate::COLUMNS
        .iter()
        .position(|c| c.name == "subject_id")
        .unwrap_or(1);
    Ok(meta.row_groups().iter().all(|g| {
        let range = match g.columns().get(at).and_then(|c| c.statistics()) {
            Some(Statistics::ByteArray(s)) => s.min_opt().zip(s.max_opt()),
            _ => None,
        };
        range.is_some_and(|(min, max)| {
            !subjects
                .iter()
                .any(|s| s.as_bytes() >= min.data() && s.as_bytes() <= max.data())
        })
    }))
}

/// Whether the footer proves that row group `g` holds none of `subjects`.
fn cleared(file: &LakeFile, g: usize, subjects: &BTreeSet<String>) -> bool {
    file.subject_range(g).is_some_and(|(min, max)| {
        !subjects
            .iter()
            .any(|s| s.as_bytes() >= min.as_slice() && s.as_bytes() <= max.as_slice())
    })
}

/// Per row of group `g`: whether it is one of `subjects`' (decodes one column).
fn matches(file: &LakeFile, g: usize, subjects: &BTreeSet<String>) -> Result<Vec<bool>, LakeError> {
    Ok(file
        .subjects(g)?
        .iter()
        .map(|v| {
            v.as_ref()
                .and_then(|b| std::str::from_utf8(b.data()).ok())
                .is_some_and(|s| subjects.contains(s))
        })
        .collect())
}

/// Rewrites `file` (of partition `metric`) without the rows of `subjects`: each row
/// group's columns are copied as stored, less the subjects' rows, into one row group of
/// the new file (a group left empty is dropped). A file recorded as sorted by subject
/// stays recorded so.
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
    let cleared_groups: Vec<bool> = (0..groups).map(|g| cleared(&lake, g, subjects)).collect();
    let mut hits: Vec<Option<Vec<bool>>> = vec![None; groups];
    let mut rows_removed = 0;
    for (g, c) in cleared_groups.iter().enumerate() {
        if !*c {
            let m = matches(&lake, g, subjects)?;
            rows_removed += m.iter().filter(|x| **x).count() as u64;
            hits[g] = Some(m);
        }
    }
    let mut rewrite = Rewrite {
        rows_in: lake.rows(),
        rows_removed,
        groups_cleared_by_statistics: cleared_groups.iter().filter(|c| **c).count(),
        kept_digest: [0; 32],
        copied_groups: Vec::new(),
        file: None,
    };
    if rows_removed == 0 {
        let all: Vec<usize> = (0..groups).collect();
        rewrite.kept_digest = digest_file(&lake, &all)?;
        rewrite.copied_groups = all;
        return Ok(rewrite);
    }
    let mut hasher = Sha256::new();
    let mut out = GroupWriter::new(Vec::with_capacity(64 << 20), layout)?;
    let mut written = 0;
    for (g, hit) in hits.iter().enumerate() {
        match hit {
            Some(m) if m.iter().any(|x| *x) => {
                let keep: Vec<bool> = m.iter().map(|x| !x).collect();
                let kept: Vec<RawColumn> = lake
                    .raw_group(g)?
                    .iter()
                    .map(|c| c.filtered(&keep))
                    .collect();
                if kept.first().is_some_and(|c| !c.is_empty()) {
                    hash_group(&mut hasher, &kept);
                    out.write_raw(&kept)?;
                    written += 1;
                }
            }
            _ => {
                hash_stored(&mut hasher, &lake.group_bytes(g));
                out.copy_group(&lake, g)?;
                rewrite.copied_groups.push(written);
                written += 1;
            }
        }
    }
    rewrite.kept_digest = hasher.finalize().into();
    rewrite.file = Some(out.finish()?);
    Ok(rewrite)
}

/// Rows and SHA-256 of a file as [`Rewrite::kept_digest`] defines it (`copied`: the
/// groups hashed by their stored bytes): what verification recomputes.
pub fn digest(file: Bytes, metric: Metric, copied: &[usize]) -> Result<(u64, [u8; 32]), LakeError> {
    let lake = LakeFile::open(file, metric)?;
    Ok((lake.rows(), digest_file(&lake, copied)?))
}

/// Rows of `subjects` in a file (zero after a rewrite).
pub fn rows_of(file: Bytes, metric: Metric, subjects: &BTreeSet<String>) -> Result<u64, LakeError> {
    let lake = LakeFile::open(file, metric)?;
    let mut n = 0;
    for g in 0..lake.row_groups() {
        if !cleared(&lake, g, subjects) {
            n += matches(&lake, g, subjects)?.iter().filter(|x| **x).count() as u64;
        }
    }
    Ok(n)
}

fn digest_file(lake: &LakeFile, copied: &[usize]) -> Result<[u8; 32], LakeError> {
    let mut hasher = Sha256::new();
    for g in 0..lake.row_groups() {
        if copied.contains(&g) {
            hash_stored(&mut hasher, &lake.group_bytes(g));
            continue;
        }
        let raw = lake.raw_group(g)?;
        if raw.first().is_some_and(|c| !c.is_empty()) {
            hash_group(&mut hasher, &raw);
        }
    }
    Ok(hasher.finalize().into())
}

/// A copied row group: its column chunks' stored bytes, each length-prefixed.
fn hash_stored(h: &mut Sha256, chunks: &[Bytes]) {
    h.update(b"stored");
    for c in chunks {
        h.update((c.len() as u64).to_le_bytes());
        h.update(c);
    }
}

/// A row group's values, column by column, each value length-prefixed or marked null.
fn hash_group(h: &mut Sha256, columns: &[RawColumn]) {
    h.update(b"values");
    for c in columns {
        match c {
            RawColumn::Text(v) => {
                for x in v {
                    match x {
                        Some(b) => {
                            h.update((b.len() as u32).to_le_bytes());
                            h.update(b.data());
                        }
                        None => h.update(u32::MAX.to_le_bytes()),
                    }
                }
            }
            RawColumn::Double(v) => {
                for x in v {
                    h.update(x.map_or(u64::MAX, f64::to_bits).to_le_bytes());
                    h.update([u8::from(x.is_some())]);
                }
            }
            RawColumn::Millis(v) => {
                for x in v {
                    h.update(x.unwrap_or(i64::MIN).to_le_bytes());
                    h.update([u8::from(x.is_some())]);
                }
            }
        }
    }
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
        let (n, d) = digest(new.clone(), Metric::Spo2, &r.copied_groups).unwrap();
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
        assert_eq!(
            digest(file, Metric::Spo2, &r.copied_groups).unwrap().1,
            r.kept_digest
        );
    }

    #[test]
    fn the_footer_alone_clears_a_sorted_file_without_the_subject() {
        let file = encode_readings(&rows(&["a", "b"], 250), small_groups(true)).unwrap();
        let len = footer_len(&file[file.len() - 8..]).unwrap() as usize;
        let footer = &file[file.len() - 8 - len..file.len() - 8];
        assert!(footer_clears(footer, &BTreeSet::from(["c".to_owned()])).unwrap());
        assert!(!footer_clears(footer, &BTreeSet::from(["b".to_owned()])).unwrap());
        assert!(footer_len(b"12345678").is_err());
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
