//! The erasure scenario of `make demo` (and its test): one patient of the fleet asks
//! to be erased. The request is recorded with the admin CLI's code, the erasure pass
//! rewrites the lake, DuckDB checks the result, a partner's next export carries the
//! deletion notice, and the patient's device is refused from then on.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use erasure::ErasureEvidence;
use pulselake_domain::time::format_rfc3339_ms;

use crate::esm::{KinesisMapping, MappingConfig};
use crate::partner_client::PartnerClient;
use crate::simulator::{Fleet, FleetConfig};
use crate::{LocalPlatform, Result, duckdb, firehose, inspect, invoke_now_ms, iot, onboard};

/// What the scenario observed.
#[derive(Debug, Default)]
pub struct ErasureReport {
    pub request_id: String,
    /// The subject's rows in the lake before, and after (DuckDB).
    pub subject_rows_before: u64,
    pub subject_rows_after: u64,
    /// Every other row: (count, checksum) before and after.
    pub others_before: (u64, String),
    pub others_after: (u64, String),
    pub evidence: ErasureEvidence,
    /// The audit record holds the evidence and neither the subject nor the device.
    pub evidence_audited_without_identifiers: bool,
    /// A partner's next export: the Bundle of deletions it is given, and whether the
    /// subject's pseudonym is gone from its data.
    pub partner_deletions: usize,
    pub partner_still_sees_subject: bool,
    /// The deletion Bundles as the partner downloaded them.
    pub deletion_bundles: Vec<serde_json::Value>,
    /// Readings the subject's device sent after the request, in the lake.
    pub later_rows_in_lake: u64,
    /// The export finished before the request, downloaded again after the pass: its
    /// resources, and whether any still references the subject; whether each file
    /// matches the manifest's count and SHA-256.
    pub earlier_export_resources: (usize, usize),
    /// Records of the patient's device in the stream's quarantine (a value it sent out
    /// of range while assigned), before the request and after the pass.
    pub stream_quarantine_before: usize,
    pub stream_quarantine_after: usize,
    /// Alert state items of the patient and the heartbeat of their device, after the pass.
    pub traces_after: usize,
    /// Partitions compaction rewrote, and Observations a partner exported, while the
    /// pass ran.
    pub compacted_during: usize,
    pub exported_during: usize,
    pub earlier_export_still_holds_subject: bool,
    pub earlier_export_matches_manifest: bool,
}

impl ErasureReport {
    pub fn adds_up(&self) -> bool {
        self.subject_rows_before > 0
            && self.subject_rows_after == 0
            && self.evidence.rows_removed == self.subject_rows_before
            && self.others_before == self.others_after
            && self.evidence.verification.passed
            && self.evidence.completed
            && self.evidence_audited_without_identifiers
            && self.partner_deletions == 1
            && !self.partner_still_sees_subject
            && self.later_rows_in_lake == 0
            && !self.earlier_export_still_holds_subject
            && self.earlier_export_matches_manifest
            && self.earlier_export_resources.1 < self.earlier_export_resources.0
            && self.stream_quarantine_before > 0
            && self.stream_quarantine_after == 0
            && self.traces_after == 0
    }
}

/// (rows, checksum over every column that identifies a row) of the lake `WHERE filter`.
async fn lake_rows(p: &LocalPlatform, filter: &str) -> Result<(u64, String)> {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "pulselake-erasure-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    inspect::export_lake(&p.stack, &dir).await?;
    let rows = duckdb::query(
        &dir,
        &format!(
            "SELECT count(*), coalesce(sum(hash(reading_id, subject_id, device_id, sensor_id, value, measured_at, received_at, source_ref)), 0) FROM readings WHERE {filter}"
        ),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let rows = rows?;
    let first = rows.first().ok_or("DuckDB returned no row")?;
    Ok((first[0].parse()?, first[1].clone()))
}

/// Erases the third patient of `fleet` (run by the stream scenario before); `research`
/// is a partner onboarded before (its export shows the deletion notice).
pub async fn run_erasure(
    p: &LocalPlatform,
    fleet: FleetConfig,
    progress: &mut dyn FnMut(String),
) -> Result<ErasureReport> {
    let s = &p.stack;
    let registry = Fleet::new(fleet).registry(0);
    let record = registry
        .get(2)
        .ok_or("the fleet has fewer than 3 devices")?;
    let device = record.device_id.clone();
    let subject = record
        .assignments
        .first()
        .ok_or("no assignment")?
        .subject_id
        .clone();
    let is_subject = format!("subject_id = '{subject}'");
    let others = format!("subject_id <> '{subject}'");
    let mut report = ErasureReport::default();

    let api = p.partner_api().await?;
    let research = PartnerClient::fixture(&api.base_url, "research")?;
    let token = research.token().await?;
    let mut worker = p.export_worker().await?;
    let (before, _, _, earlier) =
        Box::pin(export_pseudonyms(&research, &token, &mut worker)).await?;

    // While still theirs, the device sends a value out of range: quarantined with its
    // payload, under the patient's device.
    let mut mapping = Box::pin(
        KinesisMapping::new(s, p.stream_ingest().await?, MappingConfig::default()).at_latest(),
    )
    .await?;
    let bad = serde_json::json!({"v": 1, "device_id": device, "readings": [{"sensor_id": "hr-0",
        "metric": "heart_rate", "value": 400, "unit": "/min", "measured_at": format_rfc3339_ms(invoke_now_ms() - 1000)}]});
    iot::publish(
        s,
        &[(iot::topic_for(&device), bad.to_string().into_bytes())],
    )
    .await?;
    Box::pin(mapping.drain()).await?;
    let named = format!("\"device_id\":\"{device}\"");
    let in_quarantine = |q: &inspect::QuarantineContents| {
        q.entries
            .iter()
            .filter(|e| e.payload.as_deref().is_some_and(|p| p.contains(&named)))
            .count()
    };
    report.stream_quarantine_before = in_quarantine(&inspect::stream_quarantine(s).await?);

    // A last cycle from a few devices, the patient's among them: new Firehose files in
    // today's partitions, so the compaction below has work while the pass runs.
    let cycle: Vec<(String, Vec<u8>)> = registry
        .iter()
        .take(6)
        .map(|r| {
            let m = serde_json::json!({"v": 1, "device_id": r.device_id, "readings": [{"sensor_id": "hr-0",
                "metric": "heart_rate", "value": 72, "unit": "/min", "measured_at": format_rfc3339_ms(invoke_now_ms() - 3000)}]});
            (iot::topic_for(&r.device_id), m.to_string().into_bytes())
        })
        .collect();
    iot::publish(s, &cycle).await?;
    Box::pin(mapping.drain()).await?;
    firehose::flush(s).await?;
    report.subject_rows_before = lake_rows(p, &is_subject).await?.0;
    report.others_before = lake_rows(p, &others).await?;

    let now = invoke_now_ms();
    report.request_id = onboard::request_erasure(s, &subject, now).await?;
    progress(format!(
        "erasure request {} recorded with `pulselake erasure request` (the patient's device and aliases no longer speak for them)",
        report.request_id
    ));
    // The pass, a compaction of every partition and a partner's export, all at once.
    let mut job = Box::pin(p.erasure()).await?;
    let compaction = p.compaction().await;
    let partitions = inspect::lake_partitions(s).await?;
    let later = now + erasure::pass::DELIVERY_HORIZON_MS + 1_000;
    let compacting = async {
        let mut compacted = 0;
        for part in &partitions {
            let o = compaction
                .compaction
                .compact(*part, "during-erasure", || true)
                .await?;
            compacted += usize::from(matches!(o, compaction::Outcome::Compacted { .. }));
        }
        Ok::<usize, crate::Error>(compacted)
    };
    let exporting = Box::pin(export_pseudonyms(&research, &token, &mut worker));
    let (evidence, compacted, exported) =
        tokio::join!(Box::pin(job.run(later)), compacting, exporting);
    let mut evidence = evidence?.ok_or("the erasure pass found no pending request")?;
    report.compacted_during = compacted?;
    report.exported_during = exported?.3.resources.len();
    progress(format!(
        "while the pass ran: compaction rewrote {} partition(s) and research exported {} Observations",
        report.compacted_during, report.exported_during
    ));
    // A partition that was being compacted is left to the next pass (the request stays
    // pending until one verifies everything).
    for next in 1..=3 {
        if evidence.completed {
            break;
        }
        progress(format!(
            "pass {next} left {} failure(s) to the next pass ({}); compaction settles, the next pass runs",
            evidence.failures.len(),
            evidence
                .failures
                .iter()
                .map(|f| format!("{:?}", f.kind).to_lowercase())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for part in &partitions {
            compaction
                .compaction
                .compact(*part, "settle", || true)
                .await?;
        }
        let rows_before = evidence.rows_removed;
        evidence = Box::pin(job.run(later + next * 86_400_000))
            .await?
            .ok_or("the next pass found no pending request")?;
        evidence.rows_removed += rows_before;
    }
    report.evidence = evidence;
    progress(format!(
        "erasure pass over {} lake partitions (one unit each on the erasure queue): {} files ({} cleared by their footer alone), {} rewritten, {} rows removed, verification {}",
        report.evidence.partitions,
        report.evidence.files_read,
        report.evidence.versions_cleared_by_footer,
        report.evidence.files_rewritten.len(),
        report.evidence.rows_removed,
        if report.evidence.verification.passed {
            "passed"
        } else {
            "FAILED"
        }
    ));
    report.subject_rows_after = lake_rows(p, &is_subject).await?.0;
    report.stream_quarantine_after = in_quarantine(&inspect::stream_quarantine(s).await?);
    report.traces_after = traces(s, &subject, &device).await?;
    progress(format!(
        "alert state of the patient and their device's heartbeat: {} and {} removed, {} left",
        report.evidence.alert_states_removed,
        report.evidence.heartbeats_removed,
        report.traces_after
    ));
    progress(format!(
        "{} of the patient's records in the stream's quarantine (a value out of range) removed; {} left",
        report.evidence.stream_quarantine_records_removed, report.stream_quarantine_after
    ));
    report.others_after = lake_rows(p, &others).await?;
    let records = inspect::list_keys(s, &s.names.audit_bucket, "records/kind=erasure/").await?;
    for key in &records {
        let text =
            String::from_utf8_lossy(&inspect::get_bytes(s, &s.names.audit_bucket, key).await?)
                .into_owned();
        report.evidence_audited_without_identifiers |= text.contains(&report.evidence.evidence_id)
            && !text.contains(&subject)
            && !text.contains(&device);
    }

    // The export made before the request, as the partner would download it now.
    let again = research
        .wait(&token, &earlier.status_url, Duration::from_secs(60))
        .await?
        .json()?;
    let now_there = research
        .fetch_all(&token, &earlier.status_url, again)
        .await?;
    report.earlier_export_resources = (earlier.resources.len(), now_there.resources.len());
    report.earlier_export_matches_manifest = now_there.matches_manifest();
    let (after, deletions, bundles, _) = export_pseudonyms(&research, &token, &mut worker).await?;
    report.deletion_bundles = bundles;
    report.partner_deletions = deletions.len();
    let gone: BTreeSet<String> = before.difference(&after).cloned().collect();
    report.earlier_export_still_holds_subject = gone.is_empty()
        || now_there.resources.iter().any(|o| {
            o["subject"]["reference"]
                .as_str()
                .is_some_and(|r| gone.contains(r))
        });
    progress(format!(
        "research's export from before the request, downloaded again: {} of its {} Observations left (the patient's removed; counts and SHA-256 in its manifest updated)",
        now_there.resources.len(),
        earlier.resources.len()
    ));
    report.partner_still_sees_subject = gone.is_empty()
        || !deletions
            .iter()
            .all(|d| gone.iter().any(|g| d.ends_with(g.as_str())));
    progress(format!(
        "research's next export: {} deletion Bundle(s) in the manifest's `deleted`, for the pseudonym it knew",
        deletions.len()
    ));

    // The device keeps sending: refused, never stored under the patient.
    let reading = serde_json::json!({"v": 1, "device_id": device, "readings": [{"sensor_id": "hr-0",
        "metric": "heart_rate", "value": 71, "unit": "/min", "measured_at": format_rfc3339_ms(invoke_now_ms() - 2000)}]});
    iot::publish(
        s,
        &[(iot::topic_for(&device), reading.to_string().into_bytes())],
    )
    .await?;
    let mut mapping = KinesisMapping::new(s, p.stream_ingest().await?, MappingConfig::default());
    mapping.drain().await?;
    firehose::flush(s).await?;
    report.later_rows_in_lake = lake_rows(p, &is_subject).await?.0;
    Ok(report)
}

/// Items that name the subject (alert state) or hold their device's heartbeat.
async fn traces(s: &crate::provision::Stack, subject: &str, device: &str) -> Result<usize> {
    let mut n = 0;
    for (table, key) in [
        (&s.names.alert_state_table, "key"),
        (&s.names.heartbeat_table, "device_id"),
    ] {
        let items = s.dynamodb.scan().table_name(table).send().await?;
        n += items
            .items()
            .iter()
            .filter_map(|i| i.get(key)?.as_s().ok())
            .filter(|k| k.starts_with(&format!("{subject}#")) || k.as_str() == device)
            .count();
    }
    Ok(n)
}

/// A system export by `client`: the patients it holds, the deletions' URLs, the
/// deletion Bundles and the export itself.
async fn export_pseudonyms(
    client: &PartnerClient,
    token: &str,
    worker: &mut crate::sqs_esm::SqsMapping<crate::invoke::ExportWorkerFn>,
) -> Result<(
    BTreeSet<String>,
    Vec<String>,
    Vec<serde_json::Value>,
    crate::partner_client::Export,
)> {
    let kick = client
        .kick_off(token, "/fhir/$export?_type=Observation")
        .await?;
    let status_url = kick
        .header("content-location")
        .ok_or_else(|| format!("kick-off refused ({}): {}", kick.status, kick.text()))?
        .to_owned();
    worker.drain(Duration::from_secs(120)).await?;
    let done = client
        .wait(token, &status_url, Duration::from_secs(60))
        .await?;
    let manifest = done.json()?;
    let mut deletions = Vec::new();
    let mut bundles = Vec::new();
    for d in manifest["deleted"].as_array().into_iter().flatten() {
        let text = client
            .download(token, d["url"].as_str().unwrap_or_default())
            .await?;
        for line in text.lines() {
            let bundle: serde_json::Value = serde_json::from_str(line)?;
            for e in bundle["entry"].as_array().into_iter().flatten() {
                deletions.push(e["request"]["url"].as_str().unwrap_or_default().to_owned());
            }
            bundles.push(bundle);
        }
    }
    let export = client.fetch_all(token, &status_url, manifest).await?;
    let patients = export
        .resources
        .iter()
        .filter_map(|o| o["subject"]["reference"].as_str().map(str::to_owned))
        .collect();
    Ok((patients, deletions, bundles, export))
}
