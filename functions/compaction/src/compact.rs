//! Compaction of one finished lake partition: its files (Firehose's, in arrival order,
//! every file holding readings of every patient) rewritten as a few files sorted by
//! subject, then time, whose row groups' statistics bound the subjects they hold.
//!
//! A first look at the subject column of every file cuts the partition into ranges of
//! subjects of at most `file_rows` rows; each range becomes one output file, sorted in
//! memory alone, so memory is bounded by a range, not by the day. The swap is planned:
//! a plan object (inputs, outputs with their subject ranges and rows) is written before
//! any output; each output is written and read back (its rows, by count and an
//! order-independent checksum, must be the inputs' rows of its range); only when every
//! output is complete are the inputs deleted, every version, and the plan last. A run
//! out of time stops between files; the next run carries the plan on, keeping the
//! outputs that are complete. Every reading is in the lake exactly once before and
//! after; for the seconds between the outputs' writing and the inputs' deletion a query
//! can see a row twice (docs/lifecycle.md).
//!
//! The swap is conditional, so compaction never undoes another writer's work (an
//! erasure's rewrite, a corrected upload): the plan records the version and ETag of
//! each input it read, the outputs are written from exactly those versions, and each
//! input goes by a conditional delete (S3 `If-Match` on its ETag: a delete marker on
//! that version only while it is still current). An input that changed since the plan
//! aborts the swap: markers already placed are removed (the inputs are current again),
//! the outputs go, and the next run plans the day again from what it finds then.

use std::collections::BTreeMap;

use bytes::Bytes;
use pulselake_adapters::{AwsError, ObjectReader, ObjectVersion, ObjectWriter, VersionedObjects};
use pulselake_domain::partition::COMPACTION_PLANS_PREFIX;
use pulselake_domain::{Partition, Reading};
use pulselake_lake::erase::row_hash;
use pulselake_lake::{FileLayout, GroupWriter, LakeFile, encode_readings, row_count, with_columns};
use serde::{Deserialize, Serialize};

/// Prefix of compaction plans (outside `readings/`: no catalog notification).
pub const PLANS_PREFIX: &str = COMPACTION_PLANS_PREFIX;
/// Output files' names start so.
pub const OUTPUT_PREFIX: &str = "compacted-";
/// Rows per output file at most (~150 MB at the lake's ~39 bytes per row), unless one
/// subject has more.
pub const FILE_ROWS: usize = 4_000_000;

/// The plan of one partition's swap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub run: String,
    /// The input files, each at the version read.
    pub inputs: Vec<PlannedInput>,
    /// One file per range of subjects, with the rows it must hold.
    pub outputs: Vec<PlannedFile>,
    pub rows: u64,
    /// The swap has begun (some inputs may be deleted): a run that finds the plan so
    /// carries the swap on, or undoes it when an input changed.
    #[serde(default)]
    pub swapping: bool,
}

/// An input file at the version the plan read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedInput {
    pub key: String,
    /// `None` in a bucket never versioned.
    pub version_id: Option<String>,
    pub etag: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedFile {
    pub key: String,
    pub rows: u64,
    /// The subjects it holds: `first_subject..=last_subject`.
    pub first_subject: String,
    pub last_subject: String,
}

/// What happened to a partition.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Rewritten: `files_in` files became `files_out`.
    Compacted {
        files_in: usize,
        files_out: usize,
        rows: u64,
    },
    /// An interrupted run's plan, carried out.
    Resumed { rows: u64 },
    /// Nothing to do (empty, or already one run's output).
    AlreadyCompact,
    /// Stopped between output files or before deleting the inputs (out of time): the
    /// next run continues from the plan.
    Interrupted,
    /// Not compacted, and why (too large for memory, a file that cannot be read).
    Skipped { why: String },
}

/// The compaction job over its ports.
pub struct Compaction<O> {
    pub objects: O,
    pub lake_bucket: String,
    /// Rows one range of subjects may hold to be sorted in memory (a single subject
    /// with more is skipped, with the reason).
    pub max_rows: u64,
    /// Rows per output file at most ([`FILE_ROWS`]; tests use fewer).
    pub file_rows: u64,
    /// Inputs up to this many bytes are held between ranges ([`CACHE_BYTES`]); a larger
    /// day is read once, into a spill file per range under `spill_dir`, instead of once
    /// per range.
    pub cache_bytes: u64,
    pub spill_dir: std::path::PathBuf,
}

/// Sum (mod 2^128) of every row's SHA-256, first 16 bytes: the same rows in any order
/// give the same sum.
fn checksum(rows: &[Reading<'_>]) -> u128 {
    rows.iter().fold(0u128, |acc, r| {
        let h = row_hash(r);
        let mut first = [0u8; 16];
        first.copy_from_slice(&h[..16]);
        acc.wrapping_add(u128::from_le_bytes(first))
    })
}

/// Input files kept in memory between the ranges' passes up to this size; beyond it,
/// each range reads them again.
/// Inputs held in memory between ranges (the function has 4 GB).
pub const CACHE_BYTES: u64 = 1 << 30;

/// Rows a spill file's row groups hold (what is buffered per range while spilling).
const SPILL_GROUP_ROWS: usize = 64 * 1024;

/// Subjects `first..=last` (by byte order), and the rows they have.
#[derive(Debug, Clone, PartialEq)]
struct SubjectRange {
    first: String,
    last: String,
    rows: u64,
}

/// Consecutive subjects grouped into ranges of at most `limit` rows (a subject with
/// more is a range of its own).
fn subject_ranges(per_subject: &BTreeMap<String, u64>, limit: u64) -> Vec<SubjectRange> {
    let mut out: Vec<SubjectRange> = Vec::new();
    for (s, n) in per_subject {
        match out.last_mut() {
            Some(r) if r.rows + n <= limit => {
                r.last = s.clone();
                r.rows += n;
            }
            _ => out.push(SubjectRange {
                first: s.clone(),
                last: s.clone(),
                rows: *n,
            }),
        }
    }
    out
}

/// Whether `v` is the version of `input` the plan read.
fn is_planned(input: &PlannedInput, v: &ObjectVersion) -> bool {
    if v.delete_marker {
        return false;
    }
    match &input.version_id {
        Some(id) => v.version_id.as_deref() == Some(id),
        None => {
            v.etag.as_deref().map(|e| e.trim_matches('"')) == Some(input.etag.trim_matches('"'))
        }
    }
}

/// Whether an earlier run's swap deleted `input` already: its current version is a
/// delete marker over the version read (in a bucket never versioned: the key is gone).
fn swapped_out(input: &PlannedInput, versions: &[ObjectVersion]) -> bool {
    match &input.version_id {
        None => !versions.iter().any(|v| v.latest && !v.delete_marker),
        Some(id) => {
            versions.iter().any(|v| v.latest && v.delete_marker)
                && versions.iter().any(|v| v.version_id.as_deref() == Some(id))
        }
    }
}

/// An input rewritten or removed since the plan read it: the day is planned again.
fn changed_since_the_plan(input: &PlannedInput) -> Outcome {
    Outcome::Skipped {
        why: format!(
            "{} changed since the plan; planned again next run",
            input.key
        ),
    }
}

fn skipped(key: &str, e: impl std::fmt::Display) -> Outcome {
    Outcome::Skipped {
        why: format!("{key}: {e}"),
    }
}

/// Spill files of one run, removed with it.
struct Spill {
    dir: std::path::PathBuf,
    paths: Vec<std::path::PathBuf>,
}

impl Drop for Spill {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn spill_error(e: impl std::fmt::Display) -> AwsError {
    AwsError::permanent("compaction spill", e.to_string())
}

fn verify_failed() -> AwsError {
    AwsError::permanent(
        "compaction verify",
        "the rewritten files do not hold exactly the input rows; the inputs are kept",
    )
}

impl<O: ObjectReader + ObjectWriter + VersionedObjects> Compaction<O> {
    fn plan_key(p: &Partition) -> String {
        p.compaction_plan_key()
    }

    /// An input's bytes at the version the plan read; `Ok(None)` when that version is
    /// gone (an erasure rewrote the file and deleted the version read, or it was removed).
    async fn read_input(&self, input: &PlannedInput) -> Result<Option<Bytes>, AwsError> {
        let opened = self
            .objects
            .open(&self.lake_bucket, &input.key, input.version_id.as_deref())
            .await;
        match opened {
            Ok(body) => body.bytes().await.map(Some),
            Err(e) if matches!(e.code.as_deref(), Some("NoSuchKey" | "NoSuchVersion")) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The plan's outputs and the plan removed (`abandon`), told as an input that changed.
    async fn gone(
        &self,
        p: Partition,
        plan: &Plan,
        input: &PlannedInput,
    ) -> Result<Outcome, AwsError> {
        self.abandon(p, plan).await?;
        Ok(changed_since_the_plan(input))
    }

    /// Compacts one partition; `keep_going` is asked before each output file and before
    /// the inputs are deleted (a run out of time leaves the plan for the next one).
    pub async fn compact(
        &self,
        p: Partition,
        run: &str,
        mut keep_going: impl FnMut() -> bool,
    ) -> Result<Outcome, AwsError> {
        let plan_key = Self::plan_key(&p);
        if let Some(plan) = self.read_plan(&plan_key).await? {
            return self.carry_out(p, &plan, true, &mut keep_going).await;
        }
        let bucket = &self.lake_bucket;
        let prefix = p.prefix();
        let mut inputs: Vec<PlannedInput> = self
            .objects
            .list_versions(bucket, &prefix)
            .await?
            .into_iter()
            .filter(|v| v.latest && !v.delete_marker && v.key.ends_with(".parquet"))
            .map(|v| PlannedInput {
                etag: v.etag.unwrap_or_default(),
                key: v.key,
                version_id: v.version_id,
            })
            .collect();
        inputs.sort_by(|a, b| a.key.cmp(&b.key));
        let name = |i: &PlannedInput| i.key.rsplit('/').next().unwrap_or_default().to_owned();
        let runs: std::collections::BTreeSet<String> = inputs
            .iter()
            .filter_map(|i| {
                let n = name(i);
                Some(n.strip_prefix(OUTPUT_PREFIX)?.split('-').next()?.to_owned())
            })
            .collect();
        let all_outputs = inputs.iter().all(|i| name(i).starts_with(OUTPUT_PREFIX));
        if inputs.is_empty() || (all_outputs && runs.len() == 1) {
            return Ok(Outcome::AlreadyCompact);
        }
        // First look: the subject column of every file, to cut the partition into
        // ranges of subjects, each of at most `file_rows` rows, each sorted alone.
        let mut per_subject: BTreeMap<String, u64> = BTreeMap::new();
        for input in &inputs {
            let key = &input.key;
            let Some(body) = self.read_input(input).await? else {
                return Ok(changed_since_the_plan(input));
            };
            let file = match LakeFile::open(body, p.metric) {
                Ok(f) => f,
                Err(e) => return Ok(skipped(key, e)),
            };
            for g in 0..file.row_groups() {
                let col = match file.subjects(g) {
                    Ok(col) => col,
                    Err(e) => return Ok(skipped(key, e)),
                };
                for s in col.iter().flatten() {
                    let s = String::from_utf8_lossy(s.data());
                    match per_subject.get_mut(s.as_ref()) {
                        Some(n) => *n += 1,
                        None => {
                            per_subject.insert(s.into_owned(), 1);
                        }
                    }
                }
            }
        }
        let ranges = subject_ranges(&per_subject, self.file_rows.min(self.max_rows));
        if let Some(r) = ranges.iter().find(|r| r.rows > self.max_rows) {
            return Ok(Outcome::Skipped {
                why: format!(
                    "one subject has {} rows, more than {} to sort in memory",
                    r.rows, self.max_rows
                ),
            });
        }
        let plan = Plan {
            run: run.to_owned(),
            inputs,
            outputs: ranges
                .into_iter()
                .enumerate()
                .map(|(i, r)| PlannedFile {
                    key: format!("{prefix}{OUTPUT_PREFIX}{run}-{i:03}.parquet"),
                    rows: r.rows,
                    first_subject: r.first,
                    last_subject: r.last,
                })
                .collect(),
            rows: per_subject.values().sum(),
            swapping: false,
        };
        let plan_body = serde_json::to_vec(&plan)
            .map_err(|e| AwsError::permanent("compaction plan", e.to_string()))?;
        self.objects
            .put(bucket, &plan_key, plan_body, "application/json")
            .await?;
        self.carry_out(p, &plan, false, &mut keep_going).await
    }

    /// Reads every input once, each row to the spill file of the pending range that
    /// holds its subject (lake Parquet, unsorted, row groups of 64 K rows): the spill
    /// files, or the outcome when an input cannot be read.
    async fn spill(
        &self,
        p: Partition,
        plan: &Plan,
        pending: &[&PlannedFile],
    ) -> Result<Result<Spill, Outcome>, AwsError> {
        let dir = self.spill_dir.join(format!(
            "pulselake-spill-{}-{}",
            plan.run,
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).map_err(spill_error)?;
        let spill = Spill {
            paths: (0..pending.len())
                .map(|i| dir.join(format!("range-{i:03}.parquet")))
                .collect(),
            dir,
        };
        let mut writers = Vec::with_capacity(pending.len());
        for path in &spill.paths {
            let sink = std::io::BufWriter::new(std::fs::File::create(path).map_err(spill_error)?);
            let writer = GroupWriter::new(sink, FileLayout::default()).map_err(spill_error)?;
            writers.push((writer, Vec::<Reading<'static>>::new()));
        }
        let flush = |(writer, rows): &mut (GroupWriter<'static, _>, Vec<Reading<'static>>)| {
            let r = with_columns(rows, |c| writer.write(c));
            rows.clear();
            r.map_err(spill_error)
        };
        for input in &plan.inputs {
            let key = &input.key;
            let Some(body) = self.read_input(input).await? else {
                return Ok(Err(self.gone(p, plan, input).await?));
            };
            let file = match LakeFile::open(body, p.metric) {
                Ok(f) => f,
                Err(e) => return Ok(Err(skipped(key, e))),
            };
            for g in 0..file.row_groups() {
                let group = match file.row_group(g) {
                    Ok(group) => group,
                    Err(e) => return Ok(Err(skipped(key, e))),
                };
                for r in group {
                    let s = r.subject_id.as_ref();
                    let i = pending.partition_point(|o| o.last_subject.as_str() < s);
                    if pending
                        .get(i)
                        .is_some_and(|o| o.first_subject.as_str() <= s)
                    {
                        writers[i].1.push(r);
                        if writers[i].1.len() >= SPILL_GROUP_ROWS {
                            flush(&mut writers[i])?;
                        }
                    }
                }
            }
        }
        for mut w in writers {
            flush(&mut w)?;
            use std::io::Write;
            w.0.finish()
                .map_err(spill_error)?
                .flush()
                .map_err(spill_error)?;
        }
        Ok(Ok(spill))
    }

    /// Writes the plan's missing outputs (each range's rows from every input, sorted,
    /// written, read back: the same rows by count and checksum), then deletes the
    /// inputs and the plan. Outputs a previous run completed are kept.
    async fn carry_out(
        &self,
        p: Partition,
        plan: &Plan,
        resumed: bool,
        keep_going: &mut impl FnMut() -> bool,
    ) -> Result<Outcome, AwsError> {
        let bucket = &self.lake_bucket;
        if plan.swapping {
            return self.swap(p, plan, resumed, true).await;
        }
        if let Some(changed) = self.changed_input(plan).await? {
            // Rewritten (an erasure, a corrected upload) or removed since the plan: the
            // outputs hold what is no longer there. Nothing was swapped yet.
            return self.gone(p, plan, changed).await;
        }
        let layout = FileLayout {
            sorted_by_subject: true,
            ..FileLayout::default()
        };
        let mut pending = Vec::new();
        for out in &plan.outputs {
            if !self.output_complete(out).await? {
                pending.push(out);
            }
        }
        // A day larger than the cache with ranges left: read once, each range's rows to
        // a local spill file, rather than every input once per range.
        let input_bytes: u64 = self
            .objects
            .list_versions(bucket, &p.prefix())
            .await?
            .iter()
            .filter(|v| v.latest && plan.inputs.iter().any(|i| i.key == v.key))
            .map(|v| v.size)
            .sum();
        let spill = if pending.len() > 1 && input_bytes > self.cache_bytes {
            if !keep_going() {
                return Ok(Outcome::Interrupted);
            }
            match self.spill(p, plan, &pending).await? {
                Ok(files) => Some(files),
                Err(outcome) => return Ok(outcome),
            }
        } else {
            None
        };
        // Inputs are kept in memory between ranges up to the cache, else read again.
        let mut cache: BTreeMap<&str, Bytes> = BTreeMap::new();
        let mut cached = 0u64;
        for (n, out) in pending.iter().enumerate() {
            if !keep_going() {
                return Ok(Outcome::Interrupted);
            }
            let mut rows: Vec<Reading<'static>> = Vec::with_capacity(out.rows as usize);
            if let Some(files) = &spill {
                let body = std::fs::read(&files.paths[n]).map_err(spill_error)?;
                match pulselake_lake::read_readings(Bytes::from(body), p.metric) {
                    Ok(r) => rows = r,
                    Err(e) => return Err(spill_error(e)),
                }
            }
            for input in plan.inputs.iter().filter(|_| spill.is_none()) {
                let key = &input.key;
                let body = match cache.get(key.as_str()) {
                    Some(b) => b.clone(),
                    None => {
                        let Some(b) = self.read_input(input).await? else {
                            return self.gone(p, plan, input).await;
                        };
                        if cached + b.len() as u64 <= self.cache_bytes {
                            cached += b.len() as u64;
                            cache.insert(key, b.clone());
                        }
                        b
                    }
                };
                let file = match LakeFile::open(body, p.metric) {
                    Ok(f) => f,
                    Err(e) => return Ok(skipped(key, e)),
                };
                let (first, last) = (out.first_subject.as_str(), out.last_subject.as_str());
                for g in 0..file.row_groups() {
                    let overlaps = file.subject_range(g).is_none_or(|(min, max)| {
                        max.as_slice() >= first.as_bytes() && min.as_slice() <= last.as_bytes()
                    });
                    if !overlaps {
                        continue;
                    }
                    match file.row_group(g) {
                        Ok(group) => rows.extend(group.into_iter().filter(|r| {
                            let s = r.subject_id.as_ref();
                            s >= first && s <= last
                        })),
                        Err(e) => return Ok(skipped(key, e)),
                    }
                }
            }
            if rows.len() as u64 != out.rows {
                // An input rewritten while it was read (a bucket without versions reads
                // the current one): plan again. Otherwise the plan is wrong: stop.
                if let Some(changed) = self.changed_input(plan).await? {
                    return self.gone(p, plan, changed).await;
                }
                return Err(verify_failed());
            }
            rows.sort_by(|a, b| {
                (a.subject_id.as_ref(), a.measured_at, a.reading_id).cmp(&(
                    b.subject_id.as_ref(),
                    b.measured_at,
                    b.reading_id,
                ))
            });
            let sum_in = checksum(&rows);
            let body = encode_readings(&rows, layout)
                .map_err(|e| AwsError::permanent("compaction encode", e.to_string()))?;
            drop(rows);
            self.objects
                .put(bucket, &out.key, body, "application/vnd.apache.parquet")
                .await?;
            // Read back: the same rows, by count and checksum, before anything goes.
            let back = self
                .objects
                .open(bucket, &out.key, None)
                .await?
                .bytes()
                .await?;
            let read = pulselake_lake::read_readings(back, p.metric)
                .map_err(|e| AwsError::permanent("compaction verify", e.to_string()))?;
            if read.len() as u64 != out.rows || checksum(&read) != sum_in {
                // Not what was written (an erasure rewrote it already): the inputs still
                // hold every row, so the outputs go and the day is planned again.
                self.abandon(p, plan).await?;
                return Ok(Outcome::Skipped {
                    why: format!(
                        "{} changed while it was verified; planned again next run",
                        out.key
                    ),
                });
            }
        }
        drop(spill);
        if !keep_going() {
            return Ok(Outcome::Interrupted);
        }
        let swapping = Plan {
            swapping: true,
            ..plan.clone()
        };
        let body = serde_json::to_vec(&swapping)
            .map_err(|e| AwsError::permanent("compaction plan", e.to_string()))?;
        self.objects
            .put(bucket, &Self::plan_key(&p), body, "application/json")
            .await?;
        self.swap(p, &swapping, resumed, false).await
    }

    /// The first input whose current version is no longer the one planned.
    async fn changed_input<'p>(
        &self,
        plan: &'p Plan,
    ) -> Result<Option<&'p PlannedInput>, AwsError> {
        for input in &plan.inputs {
            let current = self.current_version(&input.key).await?;
            if !current.is_some_and(|v| is_planned(input, &v)) {
                return Ok(Some(input));
            }
        }
        Ok(None)
    }

    /// The current version of exactly `key` (a delete marker included), if any.
    async fn current_version(&self, key: &str) -> Result<Option<ObjectVersion>, AwsError> {
        Ok(self.versions_of(key).await?.into_iter().find(|v| v.latest))
    }

    async fn versions_of(&self, key: &str) -> Result<Vec<ObjectVersion>, AwsError> {
        Ok(self
            .objects
            .list_versions(&self.lake_bucket, key)
            .await?
            .into_iter()
            .filter(|v| v.key == key)
            .collect())
    }

    /// The swap: each input deleted only while it is still the version read (a
    /// conditional delete); when one changed, every input already deleted is made
    /// current again and the outputs go. Then every version of the inputs is removed and
    /// the plan last. `carried_on`: an earlier run began this swap (inputs it deleted
    /// are passed over).
    async fn swap(
        &self,
        p: Partition,
        plan: &Plan,
        resumed: bool,
        carried_on: bool,
    ) -> Result<Outcome, AwsError> {
        for input in &plan.inputs {
            let versions = self.versions_of(&input.key).await?;
            if carried_on && swapped_out(input, &versions) {
                continue;
            }
            let deleted = match versions.iter().find(|v| v.latest) {
                Some(v) if is_planned(input, v) => {
                    self.objects
                        .delete_if_current(&self.lake_bucket, &input.key, &input.etag)
                        .await?
                }
                _ => None,
            };
            if deleted.is_none() {
                self.undo_swap(p, plan).await?;
                return Ok(Outcome::Skipped {
                    why: format!(
                        "{} changed during the swap; the swap was undone and the day is planned again next run",
                        input.key
                    ),
                });
            }
        }
        // Every input is out of the current view: the outputs hold the day now.
        let inputs: Vec<String> = plan.inputs.iter().map(|i| i.key.clone()).collect();
        self.delete_all_versions(&inputs).await?;
        self.delete_all_versions(&[Self::plan_key(&p)]).await?;
        Ok(if resumed {
            Outcome::Resumed { rows: plan.rows }
        } else {
            Outcome::Compacted {
                files_in: plan.inputs.len(),
                files_out: plan.outputs.len(),
                rows: plan.rows,
            }
        })
    }

    /// Every input the swap deleted made current again (its delete marker removed), then
    /// the outputs and the plan removed: the day is as it was, with whatever changed.
    async fn undo_swap(&self, p: Partition, plan: &Plan) -> Result<(), AwsError> {
        for input in &plan.inputs {
            let versions = self.versions_of(&input.key).await?;
            if !swapped_out(input, &versions) {
                continue;
            }
            if input.version_id.is_none() {
                // A bucket never versioned cannot bring a deleted object back: keep the
                // outputs, which hold its rows, and let the next run plan again.
                return Err(AwsError::permanent(
                    "compaction swap",
                    "an input changed during the swap in a bucket without versioning; the outputs are kept",
                ));
            }
            let markers: Vec<ObjectVersion> = versions
                .into_iter()
                .filter(|v| v.latest && v.delete_marker)
                .collect();
            self.delete_versions_checked(&markers).await?;
        }
        self.abandon(p, plan).await
    }

    /// The plan's outputs and the plan removed (every version): nothing of this run stays.
    async fn abandon(&self, p: Partition, plan: &Plan) -> Result<(), AwsError> {
        let outputs: Vec<String> = plan.outputs.iter().map(|o| o.key.clone()).collect();
        self.delete_all_versions(&outputs).await?;
        self.delete_all_versions(&[Self::plan_key(&p)]).await
    }

    async fn read_plan(&self, key: &str) -> Result<Option<Plan>, AwsError> {
        // (A plan is read whole, as the current version: its own writer is the only one.)
        if !self.objects.any_under(&self.lake_bucket, key).await? {
            return Ok(None);
        }
        let body = self
            .objects
            .open(&self.lake_bucket, key, None)
            .await?
            .bytes()
            .await?;
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| AwsError::permanent("compaction plan", e.to_string()))
    }

    async fn output_complete(&self, out: &PlannedFile) -> Result<bool, AwsError> {
        if !self.objects.any_under(&self.lake_bucket, &out.key).await? {
            return Ok(false);
        }
        let body = self
            .objects
            .open(&self.lake_bucket, &out.key, None)
            .await?
            .bytes()
            .await?;
        Ok(row_count(body).ok() == Some(out.rows))
    }

    /// Deletes every version of each key (idempotent: gone keys list nothing).
    async fn delete_all_versions(&self, keys: &[String]) -> Result<(), AwsError> {
        let mut versions: Vec<ObjectVersion> = Vec::new();
        for key in keys {
            versions.extend(self.versions_of(key).await?);
        }
        self.delete_versions_checked(&versions).await
    }

    async fn delete_versions_checked(&self, versions: &[ObjectVersion]) -> Result<(), AwsError> {
        for batch in versions.chunks(pulselake_adapters::DELETE_BATCH) {
            let failed = self
                .objects
                .delete_versions(&self.lake_bucket, batch)
                .await?;
            if let Some((key, code)) = failed.first() {
                return Err(AwsError::transient(
                    "s3:DeleteObjects",
                    format!("{key}: {code}"),
                ));
            }
        }
        Ok(())
    }
}
