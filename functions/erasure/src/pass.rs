//! One erasure pass over the lake for every pending request at once, fanned out per
//! lake partition: the scheduled run plans a pass (its requests, one unit per partition
//! on the erasure queue); each unit erases and verifies its partition
//! ([`crate::partition`]) and records its evidence once; the unit that finishes the
//! pass removes the copies outside the lake ([`crate::copies`]), writes the evidence to
//! the audit store (request references, never the subjects) and only then marks the
//! requests done, if every unit verified.

use std::collections::{BTreeMap, BTreeSet};

use pulselake_adapters::{
    AlertStates, AuditLog, ErasurePass, ErasurePasses, ErasureRequest, ErasureRequests, ExportJobs,
    Heartbeats, MemoryQueue, ObjectReader, ObjectUploads, ObjectWriter, Partners, Secrets,
    VersionedObjects, WorkQueue,
};
use pulselake_domain::Partition;
use pulselake_domain::partition::READINGS_PREFIX;
use pulselake_domain::time::format_rfc3339_ms;
use serde::{Deserialize, Serialize};

use crate::copies::{Copies, CopiesErasure};
use crate::error::{ErasureError, FailureKind};
use crate::evidence::{ErasureEvidence, Failure, UnitEvidence};
use crate::exports::ExportsErasure;
use crate::lake_file::FileErasure;
use crate::partition::erase_partition;
use crate::raw::Lines;
use crate::versions::Bucket;

/// Where stream-ingest quarantines the records a subject stands behind.
const QUARANTINE_PREFIX: &str = "stream/";

/// A pass that has not finished a day after it started is replaced by the next
/// scheduled run (its units were dead-lettered, or its last unit never finished).
pub const STALE_AFTER_MS: i64 = 23 * 3_600_000;

/// Pass and unit records expire after GDPR's month and some (the evidence itself is in
/// the audit store for years).
const RECORD_DAYS: i64 = 45;

/// How long after a request rows of the subject can still land in the lake: an
/// ingest invocation that resolved the device before the tombstone runs at most 15
/// minutes, the registry cache lives 5 minutes, Firehose buffers up to 300 s; 10
/// minutes more for clocks. A pass takes a request only once this has passed, so no
/// row of the subject can arrive after the pass has looked.
pub const DELIVERY_HORIZON_MS: i64 = 35 * 60_000;

/// Days back from a request that a late row can be measured on (the stream's
/// 7-day limit on age, and the day itself): the final check reads these partitions
/// again before the request is done.
const LATE_DAYS: i64 = 8;

/// The ports the job works with, named once: AWS's in the function, in-memory ones in
/// tests.
pub trait ErasurePorts {
    type Objects: ObjectReader + ObjectWriter + VersionedObjects + ObjectUploads;
    type Requests: ErasureRequests;
    type Audit: AuditLog;
    type Passes: ErasurePasses;
    type Queue: WorkQueue;
    /// Export jobs, partners and their pseudonym keys: the exports not yet downloaded
    /// name the subjects by the partner's pseudonym.
    type Jobs: ExportJobs;
    type Partners: Partners;
    type Secrets: Secrets;
    /// Alert state (keyed by subject) and device heartbeats (a declared silence names
    /// the subject): traces of the subject outside the data stores.
    type Alerts: AlertStates;
    type Heartbeats: Heartbeats;
}

/// The erasure job over its ports.
pub struct Erasure<X: ErasurePorts> {
    pub objects: X::Objects,
    pub requests: X::Requests,
    pub audit: X::Audit,
    pub passes: X::Passes,
    /// The erasure queue: one message per unit (lake partition) of a pass.
    pub queue: X::Queue,
    pub lake_bucket: String,
    /// Where copies outside the lake live (raw files, their quarantine reports).
    pub copies: Option<Copies>,
    pub jobs: X::Jobs,
    pub partners: X::Partners,
    pub secrets: X::Secrets,
    /// The exports bucket (`None`: no exports to clear).
    pub exports_bucket: Option<String>,
    pub alerts: X::Alerts,
    pub heartbeats: X::Heartbeats,
    /// The size of the new file's parts ([`crate::lake_file::PART_BYTES`]; at least
    /// 5 MiB on S3).
    pub part_bytes: usize,
}

/// One unit of a pass: a lake partition (`metric=…/year=…/month=…/day=…`), or a day of
/// the stream's quarantine (`stream/year=…/month=…/day=…/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    pub pass: String,
    pub partition: String,
    #[serde(default, skip_serializing_if = "UnitKind::is_lake")]
    pub kind: UnitKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    #[default]
    Lake,
    StreamQuarantine,
}

impl UnitKind {
    fn is_lake(&self) -> bool {
        *self == UnitKind::Lake
    }
}

/// What a scheduled run did.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    NothingPending,
    /// A pass runs already (started less than a day ago).
    Running,
    /// A pass started: its units are on the queue.
    Started {
        pass: String,
        units: usize,
    },
    /// A pass over a lake without partitions, finished at once.
    Finished(Box<ErasureEvidence>),
}

impl<X: ErasurePorts> Erasure<X> {
    /// The scheduled run: a pass for every pending request, one unit per lake partition
    /// (every key that has any version, including files deleted since: a replaced
    /// upload's old outputs live on as older versions until they expire).
    pub async fn plan(&self, now_ms: i64) -> Result<Planned, ErasureError> {
        let pending: Vec<ErasureRequest> = self
            .pending()
            .await?
            .into_iter()
            .filter(|r| r.requested_at + DELIVERY_HORIZON_MS <= now_ms)
            .collect();
        if pending.is_empty() {
            return Ok(Planned::NothingPending);
        }
        let partitions: BTreeSet<Partition> = self
            .objects
            .list_versions(&self.lake_bucket, READINGS_PREFIX)
            .await?
            .iter()
            .filter_map(|v| Partition::from_object_key(&v.key))
            .collect();
        let days = self.quarantine_days(&pending).await?;
        let pass = ErasurePass {
            id: format!("erasure-{now_ms}"),
            requests: pending.iter().map(|r| r.request_id.clone()).collect(),
            total: (partitions.len() + days.len()) as u32,
            done: 0,
            started_at: now_ms,
            evidence: None,
        };
        if !self
            .passes
            .start(&pass, now_ms - STALE_AFTER_MS, expiry(now_ms))
            .await?
        {
            return Ok(Planned::Running);
        }
        if pass.total == 0 {
            let ev = self.finalize(&pass, now_ms).await?;
            return Ok(Planned::Finished(Box::new(ev)));
        }
        let lake = partitions.iter().map(|p| (p.to_string(), UnitKind::Lake));
        let quarantine = days.into_iter().map(|d| (d, UnitKind::StreamQuarantine));
        let units: Vec<String> = lake
            .chain(quarantine)
            .map(|(partition, kind)| {
                serde_json::to_string(&Unit {
                    pass: pass.id.clone(),
                    partition,
                    kind,
                })
            })
            .collect::<Result<_, _>>()?;
        self.queue.send(&units).await?;
        Ok(Planned::Started {
            pass: pass.id,
            units: units.len(),
        })
    }

    /// One unit: the subjects erased from one partition, verified there; the unit that
    /// finishes the pass finalizes it (its evidence returned). A unit of a pass that has
    /// finished (a redelivery) does nothing.
    pub async fn unit(
        &self,
        unit: &Unit,
        now_ms: i64,
    ) -> Result<Option<ErasureEvidence>, ErasureError> {
        let Some(pass) = self.passes.get(&unit.pass).await? else {
            return Ok(None);
        };
        if pass.evidence.is_some() {
            return Ok(None);
        }
        let requests = self.requests_of(&pass).await?;
        let ev = match unit.kind {
            UnitKind::Lake => {
                let p: Partition = unit.partition.parse()?;
                let subjects: BTreeSet<String> =
                    requests.iter().map(|r| r.subject_id.clone()).collect();
                let files = FileErasure {
                    lake: Bucket {
                        objects: &self.objects,
                        name: &self.lake_bucket,
                    },
                    subjects: &subjects,
                    part_bytes: self.part_bytes,
                };
                // Boxed: the rewrite's future is large (kept off the caller's stack).
                Box::pin(erase_partition(&files, p)).await?
            }
            UnitKind::StreamQuarantine => {
                Box::pin(self.quarantine_day(&unit.partition, &requests)).await?
            }
        };
        let record = serde_json::to_string(&ev)?;
        let pass = self
            .passes
            .finish_unit(&pass.id, &unit.partition, &record, expiry(now_ms))
            .await?;
        match pass {
            Some(pass) if pass.done >= pass.total && pass.evidence.is_none() => {
                Ok(Some(Box::pin(self.finalize(&pass, now_ms)).await?))
            }
            _ => Ok(None),
        }
    }

    /// The days of the stream's quarantine that can hold a record of the requests'
    /// subjects: from the earliest assignment of any of their devices (every day, for a
    /// request that recorded none).
    async fn quarantine_days(
        &self,
        pending: &[ErasureRequest],
    ) -> Result<Vec<String>, ErasureError> {
        let Some(c) = &self.copies else {
            return Ok(Vec::new());
        };
        if pending.iter().all(|r| r.devices.is_empty()) {
            return Ok(Vec::new());
        }
        let from = pending
            .iter()
            .flat_map(|r| r.periods.iter().map(|p| p.from))
            .min()
            .filter(|_| {
                pending
                    .iter()
                    .all(|r| !r.periods.is_empty() || r.devices.is_empty())
            });
        let first = from.map(pulselake_domain::time::Date::from_epoch_ms);
        let mut days = Vec::new();
        let dirs = |prefix: String| async move {
            self.objects.list_dirs(&c.quarantine_bucket, &prefix).await
        };
        for year in dirs(QUARANTINE_PREFIX.to_owned()).await? {
            for month in dirs(year).await? {
                for day in dirs(month).await? {
                    let date = quarantine_date(&day);
                    if first.is_none_or(|f| date.is_none_or(|d| d >= f)) {
                        days.push(day);
                    }
                }
            }
        }
        Ok(days)
    }

    /// A unit of the stream's quarantine: the day's reports without the subjects'
    /// records.
    async fn quarantine_day(
        &self,
        day: &str,
        requests: &[ErasureRequest],
    ) -> Result<UnitEvidence, ErasureError> {
        let mut ev = UnitEvidence {
            partition: day.to_owned(),
            verification: crate::evidence::Verification::nothing_to_check(),
            ..UnitEvidence::default()
        };
        let Some(c) = &self.copies else {
            return Ok(ev);
        };
        // A request recorded before periods were kept: its devices at any time.
        let periods: Vec<pulselake_adapters::DevicePeriod> = requests
            .iter()
            .flat_map(|r| {
                if r.periods.is_empty() {
                    r.devices
                        .iter()
                        .map(|d| pulselake_adapters::DevicePeriod {
                            device_id: d.clone(),
                            from: i64::MIN,
                            to: None,
                        })
                        .collect()
                } else {
                    r.periods.clone()
                }
            })
            .collect();
        let quarantine = Bucket {
            objects: &self.objects,
            name: &c.quarantine_bucket,
        };
        match crate::quarantine::clear_stream_day(&quarantine, day, &periods).await {
            Ok((_, removed)) => ev.quarantine_records_removed = removed,
            Err(e) => {
                ev.failures.push(Failure::of(day, &e));
                ev.verification.passed = false;
            }
        }
        Ok(ev)
    }

    async fn pending(&self) -> Result<Vec<ErasureRequest>, ErasureError> {
        Ok(self
            .requests
            .all()
            .await?
            .into_iter()
            .filter(|r| r.completed_at.is_none())
            .collect())
    }

    /// The pass's requests still pending (one done meanwhile stays done).
    async fn requests_of(&self, pass: &ErasurePass) -> Result<Vec<ErasureRequest>, ErasureError> {
        Ok(self
            .pending()
            .await?
            .into_iter()
            .filter(|r| pass.requests.contains(&r.request_id))
            .collect())
    }

    /// The last unit done: copies outside the lake removed, the units' evidence summed,
    /// written to the audit store, and the requests marked done if everything verified.
    async fn finalize(
        &self,
        pass: &ErasurePass,
        now_ms: i64,
    ) -> Result<ErasureEvidence, ErasureError> {
        let pending = self.requests_of(pass).await?;
        let mut ev = ErasureEvidence {
            evidence_id: pass.id.clone(),
            started_at: format_rfc3339_ms(pass.started_at),
            requests: pass.requests.clone(),
            partitions: pass.total as usize,
            ..ErasureEvidence::default()
        };
        ev.verification.passed = true;
        let mut units = 0;
        let mut raw_lines: BTreeMap<String, Lines> = BTreeMap::new();
        for record in self.passes.units(&pass.id).await? {
            let mut u: UnitEvidence = serde_json::from_str(&record)?;
            units += 1;
            if u.partition.starts_with(QUARANTINE_PREFIX) {
                ev.quarantine_days += 1;
                ev.stream_quarantine_records_removed += u.quarantine_records_removed;
            }
            for (source, lines) in std::mem::take(&mut u.raw_lines) {
                raw_lines.entry(source).or_default().merge(lines);
            }
            ev.add_unit(u);
        }
        ev.partitions -= ev.quarantine_days.min(ev.partitions);
        if units < pass.total as usize {
            ev.failures.push(Failure {
                object: "pass".into(),
                kind: FailureKind::Unfinished,
                detail: format!(
                    "{} of {} partitions unfinished",
                    pass.total as usize - units,
                    pass.total
                ),
            });
        }
        // The final check: the days a late row could have landed on, read again (and
        // erased) now that every unit is done.
        if let Some(first) = pending.iter().map(|r| r.requested_at).min() {
            let subjects: BTreeSet<String> = pending.iter().map(|r| r.subject_id.clone()).collect();
            let late = Box::pin(self.final_check(&subjects, first, now_ms)).await?;
            ev.add_final_check(late);
        }
        if let Some(copies) = &self.copies {
            let c = CopiesErasure {
                objects: &self.objects,
                copies,
                part_bytes: self.part_bytes,
            };
            ev.add_copies(Box::pin(c.clear(&pending, &raw_lines)).await?);
        }
        if let Some(bucket) = &self.exports_bucket {
            let subjects: BTreeSet<String> = pending.iter().map(|r| r.subject_id.clone()).collect();
            let e = ExportsErasure {
                objects: &self.objects,
                bucket,
                jobs: &self.jobs,
                partners: &self.partners,
                secrets: &self.secrets,
            };
            let mut exports = Box::pin(e.clear(&subjects)).await?;
            ev.failures.append(&mut exports.failures);
            ev.exports = exports;
        }
        for r in &pending {
            ev.alert_states_removed += self.alerts.forget_subject(&r.subject_id).await?;
            ev.heartbeats_removed += self.heartbeats.forget(&r.devices).await?;
        }
        ev.completed = ev.verification.passed && ev.failures.is_empty();
        ev.seconds = (now_ms - pass.started_at).max(0) as f64 / 1000.0;
        let record = serde_json::to_value(&ev)?;
        self.audit.append("erasure", now_ms, &record).await?;
        if ev.completed {
            for r in &pending {
                self.requests
                    .complete(&r.subject_id, now_ms, &ev.evidence_id)
                    .await?;
            }
        }
        // The pass keeps its evidence (the audit store has it whole; a long list of
        // files is left out here, as a table item holds at most 400 KB).
        let mut summary = ev.clone();
        if serde_json::to_string(&summary).map_or(0, |t| t.len()) > 300_000 {
            summary.files_rewritten.clear();
        }
        self.passes
            .finish(&pass.id, &serde_json::to_string(&summary)?)
            .await?;
        Ok(ev)
    }
}

impl<X: ErasurePorts> Erasure<X> {
    /// Every lake partition measured from `LATE_DAYS` before the first request to today,
    /// erased and verified again (the same work as a unit's): what arrived after a unit
    /// looked is gone before the requests are done.
    async fn final_check(
        &self,
        subjects: &BTreeSet<String>,
        first_request_ms: i64,
        now_ms: i64,
    ) -> Result<UnitEvidence, ErasureError> {
        let files = FileErasure {
            lake: Bucket {
                objects: &self.objects,
                name: &self.lake_bucket,
            },
            subjects,
            part_bytes: self.part_bytes,
        };
        let mut all = UnitEvidence {
            partition: "final check".into(),
            verification: crate::evidence::Verification::nothing_to_check(),
            ..UnitEvidence::default()
        };
        let from = pulselake_domain::time::Date::from_epoch_ms(
            first_request_ms - LATE_DAYS * pulselake_domain::time::DAY_MS,
        )
        .start_epoch_ms();
        let mut day = from;
        while day <= now_ms {
            for metric in pulselake_domain::Metric::all() {
                let p = Partition::of(metric, day);
                if !self
                    .objects
                    .any_under(&self.lake_bucket, &p.prefix())
                    .await?
                {
                    continue;
                }
                let u = Box::pin(erase_partition(&files, p)).await?;
                all.files_read += u.files_read;
                all.versions_cleared_by_footer += u.versions_cleared_by_footer;
                all.rows_removed += u.rows_removed;
                all.files_rewritten.extend(u.files_rewritten);
                all.old_versions_deleted += u.old_versions_deleted;
                all.failures.extend(u.failures);
                let v = &mut all.verification;
                v.partitions += 1;
                v.object_versions_read += u.verification.object_versions_read;
                v.subject_rows_left += u.verification.subject_rows_left;
                v.files_changed_otherwise += u.verification.files_changed_otherwise;
                v.passed &= u.verification.passed;
            }
            day += pulselake_domain::time::DAY_MS;
        }
        Ok(all)
    }
}

/// The day of a quarantine folder `stream/year=YYYY/month=MM/day=DD/`.
fn quarantine_date(dir: &str) -> Option<pulselake_domain::time::Date> {
    let mut parts = dir.strip_prefix(QUARANTINE_PREFIX)?.split('/');
    let mut value = |name: &str| -> Option<i32> {
        parts
            .next()?
            .strip_prefix(name)?
            .strip_prefix('=')?
            .parse()
            .ok()
    };
    let (y, m, d) = (value("year")?, value("month")?, value("day")?);
    pulselake_domain::time::Date::new(y, u8::try_from(m).ok()?, u8::try_from(d).ok()?)
}

fn expiry(now_ms: i64) -> i64 {
    now_ms / 1000 + RECORD_DAYS * 86_400
}

impl<X: ErasurePorts<Queue = MemoryQueue>> Erasure<X> {
    /// A whole pass in this process (tests, benchmarks): planned, then every unit the
    /// in-memory queue holds, in turn. The evidence, or `None` when nothing was pending.
    pub async fn run(&self, now_ms: i64) -> Result<Option<ErasureEvidence>, ErasureError> {
        match self.plan(now_ms).await? {
            Planned::NothingPending | Planned::Running => return Ok(None),
            Planned::Finished(ev) => return Ok(Some(*ev)),
            Planned::Started { .. } => {}
        }
        let units: Vec<String> =
            std::mem::take(&mut *self.queue.0.lock().unwrap_or_else(|p| p.into_inner()));
        let mut last = None;
        for body in units {
            let unit: Unit = serde_json::from_str(&body)?;
            if let Some(ev) = self.unit(&unit, now_ms).await? {
                last = Some(ev);
            }
        }
        Ok(last)
    }
}
