//! Compaction of one finished lake partition: its files (Firehose's, in arrival order,
//! every file holding readings of every patient) rewritten as a few files sorted by
//! subject, then time, whose row groups' statistics bound the subjects they hold.
//!
//! The swap is planned: a plan object (inputs, outputs, rows, checksum) is written
//! before any output; outputs are written and read back (rows and an order-independent
//! checksum over every row must equal the inputs'); only then are the inputs deleted,
//! every version; the plan goes last. A run interrupted anywhere is finished by the
//! next: a plan whose outputs are complete is carried out, one whose outputs are not is
//! undone and the partition compacted again. Every reading is in the lake exactly once
//! before and after; for the seconds between the outputs' writing and the inputs'
//! deletion a query can see a row twice (docs/lifecycle.md).

use pulselake_adapters::{AwsError, ObjectReader, ObjectVersion, ObjectWriter, VersionedObjects};
use pulselake_domain::partition::READINGS_PREFIX;
use pulselake_domain::{Partition, Reading};
use pulselake_lake::erase::row_hash;
use pulselake_lake::{FileLayout, LakeFile, encode_readings, row_count};
use serde::{Deserialize, Serialize};

/// Prefix of compaction plans (outside `readings/`: no catalog notification).
pub const PLANS_PREFIX: &str = "_compaction/";
/// Output files' names start so.
pub const OUTPUT_PREFIX: &str = "compacted-";
/// Rows per output file (~150 MB at the lake's ~39 bytes per row).
pub const FILE_ROWS: usize = 4_000_000;

/// The plan of one partition's swap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub run: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<PlannedFile>,
    pub rows: u64,
    /// Sum (mod 2^128) of every row's SHA-256, first 16 bytes: equal iff the same rows.
    pub checksum: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedFile {
    pub key: String,
    pub rows: u64,
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
    /// An interrupted run's swap, finished.
    Resumed { rows: u64 },
    /// Nothing to do (empty, or already one run's output).
    AlreadyCompact,
    /// Stopped before deleting the inputs (out of time): the next run finishes it.
    Interrupted,
    /// Not compacted, and why (too large for memory, a file that cannot be read).
    Skipped { why: String },
}

/// The compaction job over its ports.
pub struct Compaction<O> {
    pub objects: O,
    pub lake_bucket: String,
    /// Rows a partition may hold to be compacted in memory; larger ones are skipped
    /// with a reason.
    pub max_rows: u64,
}

fn checksum(rows: &[Reading<'_>]) -> String {
    let sum = rows.iter().fold(0u128, |acc, r| {
        let h = row_hash(r);
        let mut first = [0u8; 16];
        first.copy_from_slice(&h[..16]);
        acc.wrapping_add(u128::from_le_bytes(first))
    });
    format!("{sum:032x}")
}

impl<O: ObjectReader + ObjectWriter + VersionedObjects> Compaction<O> {
    fn plan_key(p: &Partition) -> String {
        format!("{PLANS_PREFIX}{p}/plan.json")
    }

    /// Compacts one partition; `keep_going` is asked before the inputs are deleted.
    pub async fn compact(
        &self,
        p: Partition,
        run: &str,
        mut keep_going: impl FnMut() -> bool,
    ) -> Result<Outcome, AwsError> {
        let bucket = &self.lake_bucket;
        let plan_key = Self::plan_key(&p);
        if let Some(plan) = self.read_plan(&plan_key).await? {
            if self.outputs_complete(&plan).await? {
                self.delete_all_versions(&plan.inputs).await?;
                self.delete_all_versions(std::slice::from_ref(&plan_key))
                    .await?;
                return Ok(Outcome::Resumed { rows: plan.rows });
            }
            let outputs: Vec<String> = plan.outputs.iter().map(|o| o.key.clone()).collect();
            self.delete_all_versions(&outputs).await?;
            self.delete_all_versions(std::slice::from_ref(&plan_key))
                .await?;
        }
        let prefix = format!("{READINGS_PREFIX}{p}/");
        let mut inputs: Vec<String> = self
            .objects
            .list(bucket, &prefix)
            .await?
            .into_iter()
            .filter(|k| k.ends_with(".parquet"))
            .collect();
        inputs.sort();
        let runs: std::collections::BTreeSet<&str> = inputs
            .iter()
            .filter_map(|k| k.rsplit('/').next()?.strip_prefix(OUTPUT_PREFIX))
            .filter_map(|rest| rest.split('-').next())
            .collect();
        let all_outputs = inputs.iter().all(|k| {
            k.rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with(OUTPUT_PREFIX))
        });
        if inputs.is_empty() || (all_outputs && runs.len() == 1) {
            return Ok(Outcome::AlreadyCompact);
        }
        let mut rows: Vec<Reading<'static>> = Vec::new();
        for key in &inputs {
            let body = self.objects.open(bucket, key, None).await?.bytes().await?;
            let file = match LakeFile::open(body, p.metric) {
                Ok(f) => f,
                Err(e) => {
                    return Ok(Outcome::Skipped {
                        why: format!("{key}: {e}"),
                    });
                }
            };
            if rows.len() as u64 + file.rows() > self.max_rows {
                return Ok(Outcome::Skipped {
                    why: format!(
                        "more than {} rows: too large to compact in memory",
                        self.max_rows
                    ),
                });
            }
            match file.all_rows() {
                Ok(r) => rows.extend(r),
                Err(e) => {
                    return Ok(Outcome::Skipped {
                        why: format!("{key}: {e}"),
                    });
                }
            }
        }
        rows.sort_by(|a, b| {
            (a.subject_id.as_ref(), a.measured_at, a.reading_id).cmp(&(
                b.subject_id.as_ref(),
                b.measured_at,
                b.reading_id,
            ))
        });
        let plan = Plan {
            run: run.to_owned(),
            inputs: inputs.clone(),
            outputs: rows
                .chunks(FILE_ROWS)
                .enumerate()
                .map(|(i, c)| PlannedFile {
                    key: format!("{prefix}{OUTPUT_PREFIX}{run}-{i:03}.parquet"),
                    rows: c.len() as u64,
                })
                .collect(),
            rows: rows.len() as u64,
            checksum: checksum(&rows),
        };
        let plan_body = serde_json::to_vec(&plan)
            .map_err(|e| AwsError::permanent("compaction plan", e.to_string()))?;
        self.objects
            .put(bucket, &plan_key, plan_body, "application/json")
            .await?;
        let layout = FileLayout {
            sorted_by_subject: true,
            ..FileLayout::default()
        };
        for (chunk, out) in rows.chunks(FILE_ROWS).zip(&plan.outputs) {
            let body = encode_readings(chunk, layout)
                .map_err(|e| AwsError::permanent("compaction encode", e.to_string()))?;
            self.objects
                .put(bucket, &out.key, body, "application/vnd.apache.parquet")
                .await?;
        }
        drop(rows);
        // Read back: the same rows, by count and checksum, before anything is deleted.
        let mut back = Vec::new();
        for out in &plan.outputs {
            let body = self
                .objects
                .open(bucket, &out.key, None)
                .await?
                .bytes()
                .await?;
            let read = pulselake_lake::read_readings(body, p.metric)
                .map_err(|e| AwsError::permanent("compaction verify", e.to_string()))?;
            back.extend(read);
        }
        if back.len() as u64 != plan.rows || checksum(&back) != plan.checksum {
            return Err(AwsError::permanent(
                "compaction verify",
                "the rewritten files do not hold exactly the input rows; the inputs are kept",
            ));
        }
        if !keep_going() {
            return Ok(Outcome::Interrupted);
        }
        self.delete_all_versions(&inputs).await?;
        self.delete_all_versions(std::slice::from_ref(&plan_key))
            .await?;
        Ok(Outcome::Compacted {
            files_in: inputs.len(),
            files_out: plan.outputs.len(),
            rows: plan.rows,
        })
    }

    async fn read_plan(&self, key: &str) -> Result<Option<Plan>, AwsError> {
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

    async fn outputs_complete(&self, plan: &Plan) -> Result<bool, AwsError> {
        for out in &plan.outputs {
            if !self.objects.any_under(&self.lake_bucket, &out.key).await? {
                return Ok(false);
            }
            let body = self
                .objects
                .open(&self.lake_bucket, &out.key, None)
                .await?
                .bytes()
                .await?;
            if row_count(body).ok() != Some(out.rows) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Deletes every version of each key (idempotent: gone keys list nothing).
    async fn delete_all_versions(&self, keys: &[String]) -> Result<(), AwsError> {
        let mut versions: Vec<ObjectVersion> = Vec::new();
        for key in keys {
            versions.extend(
                self.objects
                    .list_versions(&self.lake_bucket, key)
                    .await?
                    .into_iter()
                    .filter(|v| &v.key == key),
            );
        }
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
