//! A unit of a pass: one lake partition, every version of every file erased of the
//! subjects, then (if any file held them) every version read again to verify: zero rows
//! of the subjects, and each rewritten file holding exactly the rows kept.

use std::collections::{BTreeMap, BTreeSet};

use pulselake_adapters::{ObjectReader, ObjectUploads, VersionedObjects};
use pulselake_domain::Partition;

use crate::error::ErasureError;
use crate::evidence::{Failure, Kept, UnitEvidence, Verification};
use crate::lake_file::{FileErasure, Ranged};
use crate::versions::Bucket;

/// Listings of a partition a unit makes before it gives up on one that keeps changing.
const MAX_ROUNDS: usize = 6;

/// Every file of partition `p` erased of the subjects, and the partition verified. A
/// file that fails is recorded (nothing of it was deleted); the others go on.
pub async fn erase_partition<O: ObjectReader + VersionedObjects + ObjectUploads>(
    files: &FileErasure<'_, O>,
    p: Partition,
) -> Result<UnitEvidence, ErasureError> {
    let mut ev = UnitEvidence {
        partition: p.to_string(),
        ..UnitEvidence::default()
    };
    if files.subjects.is_empty() {
        return Ok(ev);
    }
    // Rounds until a listing shows nothing new: a file written while the unit ran (a
    // compaction's output, a late upload) is erased too before the partition counts
    // as done. Each listing is followed by the look for a compaction plan: a plan seen
    // then may have swapped inputs out (delete markers over versions it has not yet
    // removed), so the partition is left to the next pass; a compaction that starts
    // later cannot swap out what this unit changed without its own swap failing.
    let mut seen: BTreeSet<(String, Option<String>)> = BTreeSet::new();
    let mut files_read: BTreeSet<String> = BTreeSet::new();
    let mut touched = false;
    let mut kept: BTreeMap<String, Kept> = BTreeMap::new();
    for round in 0.. {
        let listed = files
            .lake
            .objects
            .list_versions(files.lake.name, &p.prefix())
            .await?;
        let plan = p.compaction_plan_key();
        if files.lake.objects.any_under(files.lake.name, &plan).await? {
            ev.failures
                .push(Failure::of(plan, &ErasureError::Compacting));
            return Ok(ev);
        }
        let keys: BTreeSet<String> = listed
            .iter()
            .filter(|v| !seen.contains(&(v.key.clone(), v.version_id.clone())))
            .map(|v| v.key.clone())
            .collect();
        if keys.is_empty() {
            break;
        }
        if round == MAX_ROUNDS {
            ev.failures
                .push(Failure::of(p.prefix(), &ErasureError::Changed));
            return Ok(ev);
        }
        seen.extend(listed.into_iter().map(|v| (v.key, v.version_id)));
        for key in keys {
            files_read.insert(key.clone());
            // Boxed: the rewrite's future is large (kept off the caller's stack).
            let file = match Box::pin(files.erase(&key, p.metric)).await {
                Ok(f) => f,
                Err(e) => {
                    ev.failures.push(Failure::of(&key, &e));
                    continue;
                }
            };
            touched |= file.held;
            ev.versions_cleared_by_footer += file.versions_cleared_by_footer;
            ev.rows_removed += file.rows_removed;
            ev.old_versions_deleted += file.old_versions_deleted;
            ev.files_rewritten.extend(file.rewritten);
            if let Some(k) = file.kept {
                kept.insert(key, k);
            }
            for (source, lines) in file.raw_lines {
                ev.raw_lines.entry(source).or_default().merge(lines);
            }
        }
    }
    ev.files_read = files_read.len();
    ev.verification = if touched {
        verify_partition(&files.lake, files.subjects, p, &kept).await?
    } else {
        Verification::nothing_to_check()
    };
    Ok(ev)
}

/// Every version of every file of `p`, read again by ranged reads: rows of the subjects
/// left, and each rewritten file's rows against the rows kept. A version that cannot be
/// read fails the verification.
pub async fn verify_partition<O: VersionedObjects>(
    lake: &Bucket<'_, O>,
    subjects: &BTreeSet<String>,
    p: Partition,
    kept: &BTreeMap<String, Kept>,
) -> Result<Verification, ErasureError> {
    let mut v = Verification {
        partitions: 1,
        ..Verification::default()
    };
    let mut unreadable = 0;
    let versions = lake.objects.list_versions(lake.name, &p.prefix()).await?;
    for ver in versions.iter().filter(|x| !x.delete_marker) {
        v.object_versions_read += 1;
        let ranged = Ranged {
            objects: lake.objects,
            bucket: lake.name,
            version: ver,
        };
        match ranged.check(p.metric, subjects, kept.get(&ver.key)).await {
            Ok((left, same)) => {
                v.subject_rows_left += left;
                v.files_changed_otherwise += usize::from(!same);
            }
            Err(_) => unreadable += 1,
        }
    }
    v.passed = v.subject_rows_left == 0 && v.files_changed_otherwise == 0 && unreadable == 0;
    Ok(v)
}
