//! Migration reconciliation on the demo lake: the partner export the file scenario
//! backfilled, taken as the legacy source (`pulselake migrate reconcile --from-export`),
//! matches the lake device-day by device-day; the same source with one reading the lake
//! never received names that reading's device and day.

use std::collections::BTreeSet;

use pulselake_cli::migrate::{counts_of_export, lake_counts, report_lines};
use pulselake_domain::Partition;
use pulselake_domain::reconcile::{Reconciliation, reconcile};
use pulselake_domain::time::Date;

use crate::scenario::{file_devices, partner_export};
use crate::{LocalPlatform, Result, inspect};

/// The reading the second source has and the lake never got.
pub const LOST: (&str, &str) = ("dev-file-007", "2026-11-01");

#[derive(Debug, Default)]
pub struct MigrationReport {
    pub matching: Reconciliation,
    pub with_a_lost_reading: Reconciliation,
    pub lines: Vec<String>,
}

impl MigrationReport {
    pub fn adds_up(&self) -> bool {
        let lost = &self.with_a_lost_reading.differences;
        self.matching.differences.is_empty()
            && self.matching.matched == file_devices().len()
            && lost.len() == 1
            && lost[0].device == LOST.0
            && lost[0].day.to_string() == LOST.1
            && self.with_a_lost_reading.missing() == 1
    }
}

pub async fn run_migration(
    platform: &LocalPlatform,
    progress: &mut dyn FnMut(String),
) -> Result<MigrationReport> {
    let stack = &platform.stack;
    let export = partner_export(&file_devices());
    let source = counts_of_export(&export)?;
    let mut lost = export.clone();
    lost.push_str(&format!(
        "{},hr-0,heart_rate,70,/min,{}T06:00:00Z\n",
        LOST.0, LOST.1
    ));
    let lost_source = counts_of_export(&lost)?;
    let days: BTreeSet<Date> = source.keys().map(|k| k.1).collect();
    let keys: Vec<String> = inspect::list_keys(stack, &stack.names.lake_bucket, "readings/")
        .await?
        .into_iter()
        .filter(|k| Partition::from_object_key(k).is_some_and(|p| days.contains(&p.date)))
        .collect();
    progress(format!(
        "the backfilled partner export as the legacy source: {} device-days; {} lake files on its days",
        source.len(),
        keys.len()
    ));
    let lake = lake_counts(&keys, &days, |key| async move {
        inspect::get_bytes(stack, &stack.names.lake_bucket, &key)
            .await
            .map_err(|e| pulselake_cli::AdminError::Setup(e.to_string()))
    })
    .await?;
    let mut r = MigrationReport {
        matching: reconcile(&source, &lake),
        with_a_lost_reading: reconcile(&lost_source, &lake),
        ..MigrationReport::default()
    };
    r.lines = report_lines(&r.matching);
    r.lines.extend(report_lines(&r.with_a_lost_reading));
    Ok(r)
}
