//! Erasure's rewrite of one lake file: every row of the given subjects removed, every
//! other row kept in order with the same schema and types, one row group at a time
//! (memory bounded by a row group, not the file: the caller fetches each group with a
//! ranged read and uploads the output as it grows). Row groups whose footer statistics
//! or subject column show none of the subjects are copied byte for byte; a file that
//! holds none of them is left alone. The digest of the rows kept is what verification
//! compares with the rewritten file's [`KeptDigest`].

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use parquet::data_type::ByteArray;
use pulselake_domain::{Metric, Reading};
use sha2::{Digest, Sha256};

use crate::LakeError;
use crate::batch;
use crate::read::LakeFile;
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
    /// The rows removed that came from files: per source file (its keyed reference, as
    /// in `source_ref`), their line numbers. The raw file's copies go by them.
    pub file_lines: BTreeMap<String, BTreeSet<u64>>,
}

/// A file row's source (see [`pulselake_domain::FileLine`]).
fn file_line(source_ref: &[u8]) -> Option<(&str, u64)> {
    let l = pulselake_domain::FileLine::parse(std::str::from_utf8(source_ref).ok()?)?;
    Some((l.file, l.line))
}

/// The length of a Parquet file's footer (metadata), from the file's last 8 bytes
/// (an encrypted footer is not a lake file's).
pub fn footer_len(tail: &[u8]) -> Result<u64, LakeError> {
    let tail = parquet::file::metadata::FooterTail::try_from(tail)?;
    if tail.is_encrypted_footer() {
        return Err(LakeError::Column {
            column: "*",
            problem: "an encrypted footer".into(),
        });
    }
    Ok(tail.metadata_length() as u64)
}

/// Whether a file's footer alone proves that it holds none of `subjects` (every row
/// group's `subject_id` statistics exclude them): the file need not be read.
pub fn footer_clears(file: &LakeFile, subjects: &BTreeSet<String>) -> bool {
    (0..file.row_groups()).all(|g| cleared(file, g, subjects))
}

/// Whether the footer proves that row group `g` holds none of `subjects`.
fn cleared(file: &LakeFile, g: usize, subjects: &BTreeSet<String>) -> bool {
    file.subject_range(g).is_some_and(|(min, max)| {
        !subjects
            .iter()
            .any(|s| s.as_bytes() >= min.as_slice() && s.as_bytes() <= max.as_slice())
    })
}

/// The row groups whose rows must be looked at: those the footer cannot clear.
pub fn groups_to_look_at(file: &LakeFile, subjects: &BTreeSet<String>) -> Vec<usize> {
    (0..file.row_groups())
        .filter(|g| !cleared(file, *g, subjects))
        .collect()
}

/// Rows of `subjects` in row group `g`; its `subject_id` chunk (at least) must be held.
pub fn rows_in_group(
    file: &LakeFile,
    g: usize,
    subjects: &BTreeSet<String>,
) -> Result<u64, LakeError> {
    let column = file.subjects(g)?;
    Ok(column.iter().filter(|v| is_subject(v, subjects)).count() as u64)
}

fn is_subject(v: &Option<ByteArray>, subjects: &BTreeSet<String>) -> bool {
    v.as_ref()
        .and_then(|b| std::str::from_utf8(b.data()).ok())
        .is_some_and(|s| subjects.contains(s))
}

/// A file rewritten without `subjects`, one row group at a time: the caller holds each
/// group's bytes in the [`LakeFile`] (a ranged read), pushes it, and takes the new
/// file's bytes as they grow (a multipart upload), so memory holds one row group and
/// the output not yet taken, whatever the file's size.
pub struct Eraser<'s> {
    subjects: &'s BTreeSet<String>,
    out: GroupWriter<'static, Vec<u8>>,
    hasher: Sha256,
    rewrite: Rewrite,
    written: usize,
}

impl<'s> Eraser<'s> {
    /// A rewrite of `file` (its footer; no data need be held yet). A file recorded as
    /// sorted by subject stays recorded so.
    pub fn new(
        file: &LakeFile,
        subjects: &'s BTreeSet<String>,
        layout: FileLayout,
    ) -> Result<Eraser<'s>, LakeError> {
        let layout = FileLayout {
            sorted_by_subject: layout.sorted_by_subject || file.sorted_by_subject(),
            ..layout
        };
        Ok(Eraser {
            subjects,
            out: GroupWriter::new(Vec::with_capacity(16 << 20), layout)?,
            hasher: Sha256::new(),
            rewrite: Rewrite {
                rows_in: 0,
                rows_removed: 0,
                groups_cleared_by_statistics: 0,
                kept_digest: [0; 32],
                copied_groups: Vec::new(),
                file_lines: BTreeMap::new(),
            },
            written: 0,
        })
    }

    /// Row group `g` of `file`, whose bytes are held: copied as stored when the footer
    /// or a first look (`looked_clean`) showed none of the subjects in it, otherwise
    /// its columns less the subjects' rows (a group left empty is dropped).
    pub fn push(&mut self, file: &LakeFile, g: usize, looked_clean: bool) -> Result<(), LakeError> {
        self.rewrite.rows_in += file.group_rows(g);
        let by_statistics = cleared(file, g, self.subjects);
        if by_statistics || looked_clean {
            self.rewrite.groups_cleared_by_statistics += usize::from(by_statistics);
            hash_stored(&mut self.hasher, &file.group_bytes(g)?);
            self.out.copy_group(file, g)?;
            self.rewrite.copied_groups.push(self.written);
            self.written += 1;
            return Ok(());
        }
        let batch = file.batch(g)?;
        let keep = batch::keep_mask(&batch, self.subjects)?;
        let removed = keep.false_count();
        if removed == 0 {
            hash_stored(&mut self.hasher, &file.group_bytes(g)?);
            self.out.copy_group(file, g)?;
            self.rewrite.copied_groups.push(self.written);
        } else {
            self.rewrite.rows_removed += removed as u64;
            for r in batch::dropped_refs(&batch, &keep) {
                if let Some((source, line)) = file_line(r.as_bytes()) {
                    let lines = self
                        .rewrite
                        .file_lines
                        .entry(source.to_owned())
                        .or_default();
                    lines.insert(line);
                }
            }
            let kept = batch::filter(&batch, &keep)?;
            if kept.num_rows() == 0 {
                return Ok(());
            }
            batch::hash_batch(&mut self.hasher, &kept)?;
            self.out.write_batch(&kept)?;
        }
        self.written += 1;
        Ok(())
    }

    /// The new file's bytes written since the last call (whole row groups).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(self.out.sink_mut())
    }

    /// Bytes written and not yet taken.
    pub fn buffered(&mut self) -> usize {
        self.out.sink_mut().len()
    }

    /// Writes the footer: what the rewrite did, and the file's last bytes.
    pub fn finish(mut self) -> Result<(Rewrite, Vec<u8>), LakeError> {
        self.rewrite.kept_digest = self.hasher.finalize().into();
        Ok((self.rewrite, self.out.finish()?))
    }
}

/// Rewrites a whole file held in memory without the rows of `subjects` (what the
/// streaming [`Eraser`] does, in one call): the rewrite, and the new file when any row
/// was removed (`None`: the file stays as it is).
pub fn erase_subjects(
    file: Bytes,
    metric: Metric,
    subjects: &BTreeSet<String>,
    layout: FileLayout,
) -> Result<(Rewrite, Option<Vec<u8>>), LakeError> {
    let lake = LakeFile::open(file, metric)?;
    let mut hits = vec![0; lake.row_groups()];
    for g in groups_to_look_at(&lake, subjects) {
        hits[g] = rows_in_group(&lake, g, subjects)?;
    }
    if hits.iter().all(|h| *h == 0) {
        let all: Vec<usize> = (0..lake.row_groups()).collect();
        let mut d = KeptDigest::default();
        for g in &all {
            d.push(&lake, *g, true)?;
        }
        let (rows_in, kept_digest) = d.finish();
        let rewrite = Rewrite {
            rows_in,
            rows_removed: 0,
            groups_cleared_by_statistics: (0..lake.row_groups())
                .filter(|g| cleared(&lake, *g, subjects))
                .count(),
            kept_digest,
            copied_groups: all,
            file_lines: BTreeMap::new(),
        };
        return Ok((rewrite, None));
    }
    let mut eraser = Eraser::new(&lake, subjects, layout)?;
    for (g, h) in hits.iter().enumerate() {
        eraser.push(&lake, g, *h == 0)?;
    }
    let mut out = eraser.take_output();
    let (rewrite, tail) = eraser.finish()?;
    out.extend_from_slice(&tail);
    Ok((rewrite, Some(out)))
}

/// Rows and SHA-256 of a file as [`Rewrite::kept_digest`] defines it, a row group at a
/// time (each group's bytes held when pushed): what verification recomputes.
#[derive(Default)]
pub struct KeptDigest {
    hasher: Sha256,
    rows: u64,
}

impl KeptDigest {
    /// Row group `g` of `file`; `copied`: hashed by its stored bytes, not its values.
    pub fn push(&mut self, file: &LakeFile, g: usize, copied: bool) -> Result<(), LakeError> {
        self.rows += file.group_rows(g);
        if copied {
            hash_stored(&mut self.hasher, &file.group_bytes(g)?);
            return Ok(());
        }
        let batch = file.batch(g)?;
        if batch.num_rows() > 0 {
            batch::hash_batch(&mut self.hasher, &batch)?;
        }
        Ok(())
    }

    pub fn finish(self) -> (u64, [u8; 32]) {
        (self.rows, self.hasher.finalize().into())
    }
}

/// Rows and digest of a whole file held in memory ([`KeptDigest`] in one call).
pub fn digest(file: Bytes, metric: Metric, copied: &[usize]) -> Result<(u64, [u8; 32]), LakeError> {
    let lake = LakeFile::open(file, metric)?;
    let mut d = KeptDigest::default();
    for g in 0..lake.row_groups() {
        d.push(&lake, g, copied.contains(&g))?;
    }
    Ok(d.finish())
}

/// Rows of `subjects` in a whole file held in memory (zero after a rewrite).
pub fn rows_of(file: Bytes, metric: Metric, subjects: &BTreeSet<String>) -> Result<u64, LakeError> {
    let lake = LakeFile::open(file, metric)?;
    let mut n = 0;
    for g in groups_to_look_at(&lake, subjects) {
        n += rows_in_group(&lake, g, subjects)?;
    }
    Ok(n)
}

/// A copied row group: its column chunks' stored bytes, each length-prefixed.
fn hash_stored(h: &mut Sha256, chunks: &[Bytes]) {
    h.update(b"stored");
    for c in chunks {
        h.update((c.len() as u64).to_le_bytes());
        h.update(c);
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
                    cohort: None,
                });
            }
        }
        out
    }

    /// The file as a ranged reader sees it: its footer alone, nothing held.
    fn from_footer(file: &[u8]) -> LakeFile {
        let len = footer_len(&file[file.len() - 8..]).unwrap() as usize;
        let footer = &file[file.len() - 8 - len..file.len() - 8];
        LakeFile::from_footer(footer, file.len() as u64, Metric::Spo2).unwrap()
    }

    #[test]
    fn a_file_streamed_group_by_group_erases_exactly_as_a_file_held_whole() {
        let mut mixed = rows(&["a", "b", "c", "d"], 300);
        mixed.sort_by_key(|r| r.measured_at);
        let file = encode_readings(&mixed, small_groups(false)).unwrap();
        let gone = BTreeSet::from(["c".to_owned()]);
        let (whole, whole_file) = erase_subjects(
            Bytes::from(file.clone()),
            Metric::Spo2,
            &gone,
            small_groups(false),
        )
        .unwrap();
        // Footer first, then each group's subject chunk, then each group: only what a
        // ranged read fetched is ever held, and the output is taken as it grows.
        let mut lake = from_footer(&file);
        let at = |r: (u64, u64)| Bytes::copy_from_slice(&file[r.0 as usize..r.1 as usize]);
        let mut hits = vec![0; lake.row_groups()];
        for g in groups_to_look_at(&lake, &gone) {
            let range = lake.subject_chunk_range(g);
            lake.hold(range.0, at(range));
            hits[g] = rows_in_group(&lake, g, &gone).unwrap();
        }
        assert_eq!(hits.iter().sum::<u64>(), 300);
        let mut eraser = Eraser::new(&lake, &gone, small_groups(false)).unwrap();
        let mut out = Vec::new();
        for (g, h) in hits.iter().enumerate() {
            let range = lake.group_range(g);
            lake.hold(range.0, at(range));
            eraser.push(&lake, g, *h == 0).unwrap();
            out.extend(eraser.take_output());
        }
        let (streamed, tail) = eraser.finish().unwrap();
        out.extend(tail);
        assert_eq!(streamed, whole);
        assert_eq!(Some(out), whole_file, "the same bytes");
    }

    #[test]
    fn the_lines_of_file_rows_removed_are_named_by_their_source() {
        let mut all = rows(&["a", "b"], 3);
        for (i, r) in all.iter_mut().enumerate() {
            r.source = Source::File;
            r.source_ref = Cow::Owned(format!("file:f{}:L{}", i % 2, 10 + i));
        }
        let file = Bytes::from(encode_readings(&all, small_groups(false)).unwrap());
        let gone = BTreeSet::from(["b".to_owned()]);
        let (r, _) = erase_subjects(file, Metric::Spo2, &gone, small_groups(false)).unwrap();
        // b's rows are rows 3, 4, 5: lines 13 (f1), 14 (f0), 15 (f1).
        let expected = BTreeMap::from([
            ("f0".to_owned(), BTreeSet::from([14])),
            ("f1".to_owned(), BTreeSet::from([13, 15])),
        ]);
        assert_eq!(r.file_lines, expected);
        assert_eq!(
            file_line(b"shardId-1:42"),
            None,
            "a stream row names no file"
        );
    }

    #[test]
    fn a_removed_subject_leaves_no_trace_in_dictionaries_or_statistics() {
        let gone_id = "patient-to-forget-000001";
        let mut mixed = rows(&["a", gone_id, "c"], 200);
        mixed.sort_by_key(|r| r.measured_at);
        let file = encode_readings(&mixed, small_groups(false)).unwrap();
        let found = |bytes: &[u8]| {
            bytes
                .windows(gone_id.len())
                .any(|w| w == gone_id.as_bytes())
        };
        assert!(
            found(&file),
            "the id is in the file before (dictionary, statistics)"
        );
        let gone = BTreeSet::from([gone_id.to_owned()]);
        let (_, new) =
            erase_subjects(Bytes::from(file), Metric::Spo2, &gone, small_groups(false)).unwrap();
        assert!(!found(&new.unwrap()), "no byte of it after");
    }

    #[test]
    fn reading_bytes_that_are_not_held_is_an_error_not_a_panic() {
        let file = encode_readings(&rows(&["a", "b"], 250), small_groups(false)).unwrap();
        let mut lake = from_footer(&file);
        assert!(lake.raw_group(0).is_err(), "nothing held");
        let range = lake.subject_chunk_range(1);
        lake.hold(
            range.0,
            Bytes::copy_from_slice(&file[range.0 as usize..range.1 as usize]),
        );
        assert!(lake.subjects(1).is_ok());
        assert!(lake.raw_group(1).is_err(), "one chunk held, not the group");
        assert!(lake.subjects(0).is_err(), "another group's chunk");
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
        let (r, new) =
            erase_subjects(file.clone(), Metric::Spo2, &gone, small_groups(false)).unwrap();
        assert_eq!((r.rows_in, r.rows_removed), (750, 250));
        let new = Bytes::from(new.unwrap());
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
        let (r, new) = erase_subjects(file, Metric::Spo2, &gone, small_groups(false)).unwrap();
        assert_eq!(r.rows_removed, 250);
        let new = LakeFile::open(Bytes::from(new.unwrap()), Metric::Spo2).unwrap();
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
        let (r, new) =
            erase_subjects(file.clone(), Metric::Spo2, &gone, small_groups(false)).unwrap();
        assert!(new.is_none());
        assert_eq!(r.rows_removed, 0);
        assert_eq!(
            digest(file, Metric::Spo2, &r.copied_groups).unwrap().1,
            r.kept_digest
        );
    }

    #[test]
    fn the_footer_alone_clears_a_sorted_file_without_the_subject() {
        let file = encode_readings(&rows(&["a", "b"], 250), small_groups(true)).unwrap();
        let footer = from_footer(&file);
        assert!(footer_clears(&footer, &BTreeSet::from(["c".to_owned()])));
        assert!(!footer_clears(&footer, &BTreeSet::from(["b".to_owned()])));
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
