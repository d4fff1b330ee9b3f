//! The vitals-alert logic, generic over its ports: a Kinesis batch in; rule state
//! updated, alerts published, and the records that could not be finished back to
//! Lambda as batch item failures.
//!
//! Exactly one page per episode, under retries:
//! - a pair's state and the alerts it raised are written together, with a version
//!   check, before anything is published; a reading the stored state has already seen
//!   (a redelivered batch) changes nothing and raises nothing;
//! - alerts are published from the stored pending list and cleared once SNS took them,
//!   so a crash or an SNS failure in between means a retry, not a lost page.

use std::collections::{BTreeSet, HashMap, HashSet};

use futures_util::StreamExt;
use pulselake_adapters::kinesis_events::StreamBatch;
use pulselake_adapters::{
    AlertPublisher, AlertStates, AwsError, CachedRegistry, Heartbeats, RegistryLookup, StoredState,
};
use pulselake_domain::alerting::{Alert, Rule, RuleSet, Step, alert_id};
use pulselake_domain::message::DeviceMessage;
use pulselake_domain::time::format_rfc3339_ms;
use pulselake_domain::{
    DeviceMappings, Provenance, ReadingId, Rejection, Source, TimePolicy, assess,
};

/// Pairs evaluated at the same time (each is a read-modify-write of one item).
const CONCURRENT_PAIRS: usize = 32;
/// Attempts at a pair whose item another writer changed meanwhile.
const CONFLICT_ATTEMPTS: usize = 4;
/// State is kept this long past what the rule needs, then DynamoDB's TTL removes it.
const STATE_GRACE_MS: i64 = 24 * 3_600_000;

/// Heartbeat items outlive their last write by this long (DynamoDB TTL).
const HEARTBEAT_KEEP_MS: i64 = 30 * 86_400_000;

/// Everything the function needs, built once per cold start.
pub struct VitalsAlert<R, S, P, H> {
    pub registry: CachedRegistry<R>,
    pub mappings: DeviceMappings,
    pub rules: RuleSet,
    pub states: S,
    pub publisher: P,
    pub policy: TimePolicy,
    /// Where devices' last-heard times go, for the silence sweep.
    pub heartbeats: H,
    /// Per device, the arrival time this container last recorded: a device is recorded
    /// at most once per [`SilenceRule::heartbeat_every_ms`].
    pub heard: std::sync::Mutex<HashMap<String, i64>>,
}

/// What a batch did, for logs and metrics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AlertStats {
    pub records: usize,
    /// Readings evaluated (invalid ones are stream-ingest's to quarantine).
    pub readings: usize,
    /// Of those, outside the metric's plausible range (evaluated all the same).
    pub implausible: usize,
    pub skipped_readings: usize,
    /// Records whose message claims another device than its publisher (never evaluated).
    pub mismatched: usize,
    /// A reading id seen again in the batch: an exact repeat, or a conflicting value
    /// that stream-ingest quarantines (the first value is the one the lake keeps).
    pub repeats: usize,
    /// (subject, rule) pairs touched.
    pub pairs: usize,
    pub replays: usize,
    pub published: usize,
    /// Firings on history (replayed or backfilled readings): recorded, not paged.
    pub suppressed: usize,
    pub state_writes: usize,
    pub conflicts: usize,
    pub failed_records: usize,
    /// Per published alert: stream arrival -> published, in ms.
    pub latencies_ms: Vec<i64>,
    /// Devices whose heartbeat was recorded (for the silence sweep).
    pub heartbeats: usize,
}

#[derive(Debug)]
pub struct Outcome {
    pub failed_sequence_numbers: Vec<String>,
    pub stats: AlertStats,
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("device registry unavailable: {0}")]
    Registry(AwsError),
    #[error("alert state unavailable: {0}")]
    State(AwsError),
    #[error("all {failed} records failed: {cause}")]
    AllFailed { failed: usize, cause: String },
}

/// One reading as a rule sees it.
#[derive(Debug, Clone, Copy)]
struct Obs {
    at: i64,
    value: f64,
    record: u32,
    arrived_ms: i64,
}

/// The readings of one (subject, rule) pair in a batch.
struct Pair {
    key: String,
    subject: String,
    rule: usize,
    obs: Vec<Obs>,
}

#[derive(Default)]
struct PairResult {
    replays: usize,
    published: usize,
    suppressed: usize,
    writes: usize,
    conflicts: usize,
    latencies_ms: Vec<i64>,
    error: Option<AwsError>,
}

impl<R: RegistryLookup, S: AlertStates, P: AlertPublisher, H: Heartbeats> VitalsAlert<R, S, P, H> {
    pub async fn handle(&self, batch: &StreamBatch, now_ms: i64) -> Result<Outcome, AlertError> {
        let records = &batch.records;
        let mut stats = AlertStats {
            records: records.len(),
            ..Default::default()
        };
        let messages: Vec<Result<DeviceMessage<'_>, Rejection>> = records
            .iter()
            .map(|r| r.device_message(&self.mappings))
            .collect();
        let devices = self
            .registry
            .resolve(
                messages
                    .iter()
                    .filter_map(|m| m.as_ref().ok())
                    .map(|m| m.device_id.as_ref()),
            )
            .await
            .map_err(AlertError::Registry)?;

        // Readings grouped by (subject, rule), in measurement order; each reading id once,
        // with its first value, as the lake holds it.
        let mut pairs: HashMap<(String, usize), Vec<Obs>> = HashMap::new();
        let mut seen: HashSet<ReadingId> = HashSet::new();
        // Assigned devices heard in the batch, with their latest arrival.
        let mut heard: HashMap<&str, i64> = HashMap::new();
        for (i, (record, message)) in records.iter().zip(messages).enumerate() {
            let Ok(message) = message else {
                stats.skipped_readings += 1;
                continue;
            };
            // One device never speaks for another: a message claiming another device
            // than its publisher is never evaluated (stream-ingest quarantines it).
            if message.check_publisher(record.publisher()).is_err() {
                stats.mismatched += 1;
                stats.skipped_readings += message.readings.len();
                continue;
            }
            let Some(Some(device)) = devices.get(message.device_id.as_ref()) else {
                stats.skipped_readings += message.readings.len();
                continue;
            };
            let arrived_ms = record.arrival_ms();
            if device.subject_at(arrived_ms).is_some() {
                let at = heard.entry(device.device_id.as_str()).or_insert(arrived_ms);
                *at = (*at).max(arrived_ms);
            }
            let prov = Provenance {
                source: Source::Stream,
                source_ref: "",
                received_at: arrived_ms,
            };
            for raw in message.readings {
                let Ok(assessed) = raw.and_then(|raw| assess(raw, device, prov, &self.policy))
                else {
                    stats.skipped_readings += 1;
                    continue;
                };
                let reading = assessed.reading;
                if !seen.insert(reading.reading_id) {
                    stats.repeats += 1;
                    continue;
                }
                stats.readings += 1;
                stats.implausible += usize::from(!assessed.plausible);
                let cohort = device
                    .assignment_at(reading.measured_at)
                    .and_then(|a| a.cohort.as_deref());
                for rule in self.rules.applicable(reading.metric, cohort) {
                    pairs
                        .entry((reading.subject_id.to_string(), rule))
                        .or_default()
                        .push(Obs {
                            at: reading.measured_at,
                            value: reading.value,
                            record: i as u32,
                            arrived_ms,
                        });
                }
            }
        }
        let mut pairs: Vec<Pair> = pairs
            .into_iter()
            .map(|((subject, rule), mut obs)| {
                obs.sort_by_key(|o| o.at);
                Pair {
                    key: format!("{subject}#{}", self.rules.rule(rule).id),
                    subject,
                    rule,
                    obs,
                }
            })
            .collect();
        pairs.sort_by(|a, b| a.key.cmp(&b.key));
        stats.pairs = pairs.len();
        stats.heartbeats = self.record_heartbeats(heard).await;
        if pairs.is_empty() {
            return Ok(Outcome {
                failed_sequence_numbers: Vec::new(),
                stats,
            });
        }

        let keys: Vec<String> = pairs.iter().map(|p| p.key.clone()).collect();
        let mut stored = self.states.load(&keys).await.map_err(AlertError::State)?;
        // The futures are built first: a closure inside the stream type would make the
        // handler's future not `Send` (a known limitation of higher-ranked closures).
        let work: Vec<_> = pairs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let current = stored.remove(&p.key);
                async move { (i, self.evaluate_pair(p, current, now_ms).await) }
            })
            .collect();
        let results: Vec<(usize, PairResult)> = futures_util::stream::iter(work)
            .buffer_unordered(CONCURRENT_PAIRS)
            .collect()
            .await;

        let mut failed: BTreeSet<u32> = BTreeSet::new();
        let mut causes = Vec::new();
        for (i, r) in results {
            stats.replays += r.replays;
            stats.published += r.published;
            stats.suppressed += r.suppressed;
            stats.state_writes += r.writes;
            stats.conflicts += r.conflicts;
            stats.latencies_ms.extend(r.latencies_ms);
            if let Some(e) = r.error {
                tracing::warn!(rule = %self.rules.rule(pairs[i].rule).id, error = %e, "a rule pair could not be finished; its records will be retried");
                failed.extend(pairs[i].obs.iter().map(|o| o.record));
                causes.push(e.to_string());
            }
        }
        stats.failed_records = failed.len();
        if !failed.is_empty() && failed.len() == records.len() {
            return Err(AlertError::AllFailed {
                failed: failed.len(),
                cause: causes.join("; "),
            });
        }
        Ok(Outcome {
            failed_sequence_numbers: failed
                .iter()
                .map(|&i| records[i as usize].kinesis.sequence_number.clone())
                .filter(|s| !s.is_empty())
                .collect(),
            stats,
        })
    }

    /// Records when assigned devices were heard, for the silence sweep: at most once per
    /// heartbeat interval per device and container. Best effort: a failed write is retried
    /// with the next batch (the cache is only updated on success), never a record failure.
    async fn record_heartbeats(&self, heard: HashMap<&str, i64>) -> usize {
        let Some(rule) = self.rules.device_silence else {
            return 0;
        };
        let every = rule.heartbeat_every_ms();
        let due: Vec<(&str, i64)> = {
            let cache = self.heard.lock().unwrap_or_else(|p| p.into_inner());
            heard
                .into_iter()
                .filter(|(d, at)| cache.get(*d).is_none_or(|last| at - last >= every))
                .collect()
        };
        let writes: Vec<_> = due
            .into_iter()
            .map(|(device, at)| async move {
                let expires = (at + HEARTBEAT_KEEP_MS) / 1000;
                (device, at, self.heartbeats.beat(device, at, expires).await)
            })
            .collect();
        let results: Vec<_> = futures_util::stream::iter(writes)
            .buffer_unordered(CONCURRENT_PAIRS)
            .collect()
            .await;
        let mut cache = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        let mut written = 0;
        for (device, at, result) in results {
            match result {
                Ok(()) => {
                    cache.insert(device.to_owned(), at);
                    written += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a heartbeat write failed; the next batch retries it")
                }
            }
        }
        written
    }

    /// Read-modify-write of one pair, then publishing what it raised.
    async fn evaluate_pair(
        &self,
        pair: &Pair,
        mut current: Option<StoredState>,
        now_ms: i64,
    ) -> PairResult {
        let rule = self.rules.rule(pair.rule);
        let mut out = PairResult::default();
        let mut saved = None;
        for attempt in 0..CONFLICT_ATTEMPTS {
            let base = current.clone().unwrap_or_default();
            let mut next = base.clone();
            let (mut replays, mut suppressed) = (0, 0);
            for o in &pair.obs {
                let live = now_ms - o.at <= self.rules.history_after_ms;
                match rule.apply(&mut next.state, o.at, o.value, live) {
                    Step::Replay => replays += 1,
                    Step::Quiet => {}
                    Step::Suppressed(_) => suppressed += 1,
                    Step::Fired(f) => next.pending.push(self.alert(
                        rule,
                        &pair.subject,
                        f.at,
                        f.value,
                        o.arrived_ms,
                        now_ms,
                    )),
                }
            }
            out.replays = replays;
            out.suppressed = suppressed;
            // Only what a replay could change is worth a write; the replay guard alone is not.
            let mut unguarded = next.state.clone();
            unguarded.last_at = base.state.last_at;
            if unguarded == base.state && next.pending.len() == base.pending.len() {
                saved = Some(next);
                break;
            }
            next.version = base.version + 1;
            let expires = (next.state.last_at + rule.memory_ms() + STATE_GRACE_MS) / 1000;
            match self
                .states
                .save(
                    &pair.key,
                    current.as_ref().map(|c| c.version),
                    &next,
                    expires,
                )
                .await
            {
                Ok(true) => {
                    out.writes += 1;
                    saved = Some(next);
                    break;
                }
                Ok(false) => {
                    out.conflicts += 1;
                    if attempt + 1 == CONFLICT_ATTEMPTS {
                        out.error = Some(AwsError::transient(
                            "dynamodb:PutItem",
                            "the pair kept changing under concurrent writers",
                        ));
                        return out;
                    }
                    match self.states.load(std::slice::from_ref(&pair.key)).await {
                        Ok(mut m) => current = m.remove(&pair.key),
                        Err(e) => {
                            out.error = Some(e);
                            return out;
                        }
                    }
                }
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
        let Some(mut state) = saved.filter(|s| !s.pending.is_empty()) else {
            return out;
        };
        for alert in &state.pending {
            if let Err(e) = self.publisher.publish(alert).await {
                out.error = Some(e);
                return out;
            }
            out.published += 1;
            out.latencies_ms.push(crate::now_ms() - alert.arrived_at_ms);
            tracing::info!(alert_id = %alert.alert_id, rule = %alert.rule, severity = alert.severity.as_str(), "alert published");
        }
        // Published: clear the pending list. Losing this race to another writer only
        // means that writer may publish the same alert id again.
        let expected = state.version;
        state.pending.clear();
        state.version += 1;
        let expires = (state.state.last_at + rule.memory_ms() + STATE_GRACE_MS) / 1000;
        match self
            .states
            .save(&pair.key, Some(expected), &state, expires)
            .await
        {
            Ok(_) => out.writes += 1,
            Err(e) => {
                tracing::warn!(error = %e, "could not clear published alerts; a retry may publish them again")
            }
        }
        out
    }

    fn alert(
        &self,
        rule: &Rule,
        subject: &str,
        at: i64,
        value: f64,
        arrived_ms: i64,
        now_ms: i64,
    ) -> Alert {
        Alert {
            alert_id: alert_id(&rule.id, subject, at),
            rule: rule.id.clone(),
            severity: rule.severity,
            kind: rule.condition.kind(),
            metric: rule.metric.name().to_owned(),
            subject: subject.to_owned(),
            value,
            unit: rule.metric.unit().to_owned(),
            measured_at: format_rfc3339_ms(at),
            raised_at: format_rfc3339_ms(now_ms),
            arrived_at_ms: arrived_ms,
        }
    }
}
