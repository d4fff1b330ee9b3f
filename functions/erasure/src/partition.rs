//! A unit of a pass: one lake partition, every version of every file erased of the
//! subjects, then (if any file held them) every version read again to verify: zero rows
//! of the subjects, and each rewritten file holding exactly the rows kept.

use std::collections::{BTreeMap, BTreeSet};

use pulselake_adapters::{ObjectUploads, VersionedObjects};
use pulselake_domain::Partition;

use crate::error::ErasureError;
use crate::evidence::{Failure, Kept, UnitEvidence, Verification};
use crate::lake_file::{FileErasure, Ranged};
use crate::versions::Bucket;

/// Every file of partition `p` erased of the subjects, and the partition verified. A
/// file that fails is recorded (nothing of it was deleted); the others go on.
pub async fn erase_partition<O: VersionedObjects + ObjectUploads>(
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
    let keys: BTreeSet<String> = files
        .lake
        .objects
        .list_versions(files.lake.name, &p.prefix())
        .await?
        .into_iter()
        .map(|v| v.key)
        .collect();
    let mut touched = false;
    let mut kept: BTreeMap<String, Kept> = BTreeMap::new();
    for key in keys {
        ev.files_read += 1;
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
