//! The partner scenario of `make demo`: two partners onboarded with the admin CLI's code,
//! each exporting over HTTP what its policy grants, and every way of asking for more
//! refused. Reconciled with the lake: every granted reading exported once, under the
//! partner's own pseudonyms, with no subject or device id in any file or audit record.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use pulselake_adapters::{DynamoRegistry, RegistryLookup};
use pulselake_domain::{DeviceRecord, Metric};

use crate::partner_client::{Export, PartnerClient, fixture};
use crate::sqs_esm::SqsMapping;
use crate::{LocalPlatform, Result, inspect, invoke, onboard};

/// Every metric, every cohort, exact times (a HIPAA limited data set).
pub const RESEARCH_POLICY: &str = r#"{"metrics":["heart_rate","respiratory_rate","spo2","body_temp","bp_systolic","bp_diastolic","glucose"],
  "cohorts":["*"],"mode":"limited","dua":"DUA-2026-001"}"#;
/// Heart rate of the cardiology cohort, Safe Harbor (the year alone).
pub const INSURER_POLICY: &str = r#"{"metrics":["heart_rate"],"cohorts":["cardiology"],"mode":"safe_harbor","dua":"DUA-2026-002"}"#;

/// One partner's export.
#[derive(Debug, Default)]
pub struct ExportReport {
    pub files: usize,
    pub resources: usize,
    /// Readings the resources carry (a blood pressure panel carries two).
    pub readings: usize,
    /// Readings of the lake the policy grants.
    pub expected: usize,
    pub pseudonyms: BTreeSet<String>,
    /// Notices of what the policy withheld (the manifest's `error` count).
    pub withheld_notices: u64,
    pub seconds: f64,
    /// Safe Harbor: every time is the year alone.
    pub years_only: bool,
    pub manifest: serde_json::Value,
    /// Manifest URLs with a calendar date (`YYYY-MM`) in them: none in Safe Harbor.
    pub dated_urls: usize,
}

/// What the scenario observed.
#[derive(Debug, Default)]
pub struct PartnerReport {
    pub research: ExportReport,
    pub insurer: ExportReport,
    /// (what was tried, the status it got, the status it must get).
    pub refusals: Vec<(&'static str, u16, u16)>,
    pub cancelled_files_left: usize,
    pub audit_records: usize,
    /// Subject and device ids of the lake found in export files or audit records.
    pub identifiers_leaked: BTreeMap<String, usize>,
}

impl PartnerReport {
    pub fn adds_up(&self) -> bool {
        self.research.readings == self.research.expected
            && self.insurer.readings == self.insurer.expected
            && self.insurer.years_only
            && self.insurer.dated_urls == 0
            && self
                .research
                .pseudonyms
                .is_disjoint(&self.insurer.pseudonyms)
            && self.refusals.iter().all(|(_, got, want)| got == want)
            && self.cancelled_files_left == 0
            && self.audit_records > 0
            && self.identifiers_leaked.is_empty()
    }
}

async fn export(
    client: &PartnerClient,
    token: &str,
    path: &str,
    worker: &mut SqsMapping<invoke::ExportWorkerFn>,
) -> Result<(Export, ExportReport)> {
    let started = Instant::now();
    let kick = client.kick_off(token, path).await?;
    let status_url = kick
        .header("content-location")
        .filter(|_| kick.status == 202)
        .ok_or_else(|| format!("kick-off refused ({}): {}", kick.status, kick.text()))?
        .to_owned();
    worker.drain(Duration::from_secs(120)).await?;
    let done = client
        .wait(token, &status_url, Duration::from_secs(60))
        .await?;
    if done.status != 200 {
        return Err(format!("export not complete ({}): {}", done.status, done.text()).into());
    }
    let manifest = done.json()?;
    let e = client.fetch_all(token, &status_url, manifest).await?;
    let report = ExportReport {
        files: e.raw.len(),
        resources: e.resources.len(),
        readings: e
            .resources
            .iter()
            .map(|o| o["component"].as_array().map_or(1, Vec::len))
            .sum(),
        pseudonyms: e
            .resources
            .iter()
            .filter_map(|o| o["subject"]["reference"].as_str().map(str::to_owned))
            .collect(),
        withheld_notices: e.manifest["error"][0]["count"].as_u64().unwrap_or(0),
        seconds: started.elapsed().as_secs_f64(),
        years_only: e.resources.iter().all(|o| {
            o["effectiveDateTime"]
                .as_str()
                .is_some_and(|t| t.len() == 4)
        }),
        dated_urls: ["output", "error", "deleted"]
            .iter()
            .filter_map(|list| e.manifest[*list].as_array())
            .flatten()
            .filter_map(|f| f["url"].as_str())
            .filter(|u| holds_a_date(u))
            .count(),
        expected: 0,
        manifest: e.manifest.clone(),
    };
    Ok((e, report))
}

/// Runs the scenario on a platform whose lake the stream and file scenarios filled.
pub async fn run_partners(
    platform: &LocalPlatform,
    progress: &mut dyn FnMut(String),
) -> Result<PartnerReport> {
    let s = &platform.stack;
    for (id, policy, keys) in [
        ("research", RESEARCH_POLICY, "research-rs384.jwks.json"),
        ("insurer", INSURER_POLICY, "insurer-es384.jwks.json"),
    ] {
        onboard::add_partner(s, id, policy, &std::fs::read_to_string(fixture(keys))?).await?;
    }
    progress("partners research (limited data set, every metric) and insurer (Safe Harbor, heart rate of the cardiology cohort) added with `pulselake partners add`".into());
    let api = platform.partner_api().await?;
    let mut worker = platform.export_worker().await?;
    progress(format!("partner API at {}", api.base_url));

    // What the lake holds, and which of it each policy grants.
    let lake = inspect::lake(s).await?;
    let devices: BTreeSet<&str> = lake.rows.iter().map(|r| r.device_id.as_ref()).collect();
    let registry = DynamoRegistry::from_config(&s.sdk, &s.names.registry_table);
    let ids: Vec<&str> = devices.iter().copied().collect();
    let mut records: BTreeMap<String, DeviceRecord> = BTreeMap::new();
    for chunk in ids.chunks(100) {
        for r in registry.fetch(chunk).await? {
            records.insert(r.device_id.clone(), r);
        }
    }
    let cohort_of = |device: &str, subject: &str, at: i64| {
        records
            .get(device)
            .and_then(|d| d.assignment_at(at))
            .filter(|a| a.subject_id == subject)
            .and_then(|a| a.cohort.clone())
    };
    let mut report = PartnerReport::default();
    let research_expected = lake.rows.len();
    let insurer_expected = lake
        .rows
        .iter()
        .filter(|r| {
            r.metric == Metric::HeartRate
                && cohort_of(&r.device_id, &r.subject_id, r.measured_at).as_deref()
                    == Some("cardiology")
        })
        .count();

    let research = PartnerClient::fixture(&api.base_url, "research")?;
    let insurer = PartnerClient::fixture(&api.base_url, "insurer")?;
    let rt = research.token().await?;
    let (all, mut r) = export(&research, &rt, "/fhir/$export", &mut worker).await?;
    r.expected = research_expected;
    progress(format!(
        "research: token (RS384 client assertion), $export, {} resources in {} file(s) in {:.1} s",
        r.resources, r.files, r.seconds
    ));
    report.research = r;
    let it = insurer.token().await?;
    let (insured, mut i) =
        export(&insurer, &it, "/fhir/Group/cardiology/$export", &mut worker).await?;
    i.expected = insurer_expected;
    progress(format!(
        "insurer: token (ES384 client assertion), Group/cardiology/$export, {} resources in {:.1} s",
        i.resources, i.seconds
    ));
    report.insurer = i;

    // Every way of asking for more.
    let status = |r: &crate::http::Reply| r.status;
    let theirs = insurer.call(&it, "GET", &all.status_url, &[]).await?;
    report
        .refusals
        .push(("insurer polls research's export", status(&theirs), 404));
    if let Some(url) = all.manifest["output"][0]["url"].as_str() {
        let file = insurer.call(&it, "GET", url, &[]).await?;
        report
            .refusals
            .push(("insurer downloads research's file", status(&file), 404));
    }
    let wider = insurer.kick_off(&it, "/fhir/Group/adult/$export").await?;
    report
        .refusals
        .push(("insurer asks for the adult cohort", status(&wider), 403));
    let spo2 = format!(
        "/fhir/$export?_typeFilter=Observation%3Fcode%3Dhttp%3A%2F%2Floinc.org%7C{}",
        Metric::Spo2.loinc()
    );
    let spo2 = insurer.kick_off(&it, &spo2).await?;
    report
        .refusals
        .push(("insurer asks for SpO2", status(&spo2), 403));
    let anonymous = research
        .call("", "GET", "/fhir/$export", &[("prefer", "respond-async")])
        .await?;
    report
        .refusals
        .push(("a call without a token", status(&anonymous), 401));
    let impostor = PartnerClient::fixture(&api.base_url, "impostor")?;
    let forged = impostor
        .token_reply(&impostor.assertion()?, "system/Observation.rs")
        .await?;
    report.refusals.push((
        "an assertion signed with an unregistered key",
        status(&forged),
        400,
    ));
    let assertion = research.assertion()?;
    research
        .token_reply(&assertion, "system/Observation.rs")
        .await?;
    let replayed = research
        .token_reply(&assertion, "system/Observation.rs")
        .await?;
    report
        .refusals
        .push(("a replayed assertion", status(&replayed), 400));
    onboard::set_partner_status(s, "insurer", false).await?;
    let suspended = insurer.call(&it, "GET", &insured.status_url, &[]).await?;
    report
        .refusals
        .push(("a suspended partner's token", status(&suspended), 403));
    onboard::set_partner_status(s, "insurer", true).await?;
    progress(format!(
        "{} requests for more than a policy grants, each refused",
        report.refusals.len()
    ));

    // A cancel removes everything.
    let kick = research.kick_off(&rt, "/fhir/$export").await?;
    if let Some(status_url) = kick.header("content-location") {
        let job = status_url.rsplit('/').next().unwrap_or_default().to_owned();
        research.call(&rt, "DELETE", status_url, &[]).await?;
        worker.drain(Duration::from_secs(120)).await?;
        report.cancelled_files_left = inspect::list_keys(s, &s.names.exports_bucket, "")
            .await?
            .iter()
            .filter(|k| k.contains(&job))
            .count();
    }

    // No identifier in anything a partner or an auditor reads.
    let mut texts: Vec<String> = all.raw.iter().chain(&insured.raw).cloned().collect();
    texts.push(all.manifest.to_string());
    texts.push(insured.manifest.to_string());
    let audit = inspect::list_keys(s, &s.names.audit_bucket, "records/").await?;
    report.audit_records = audit.len();
    for key in &audit {
        let body = inspect::get_bytes(s, &s.names.audit_bucket, key).await?;
        texts.push(String::from_utf8_lossy(&body).into_owned());
    }
    let identifiers: BTreeSet<&str> = lake
        .rows
        .iter()
        .flat_map(|r| [r.device_id.as_ref(), r.subject_id.as_ref()])
        .collect();
    for id in identifiers {
        let hits = texts.iter().filter(|t| t.contains(id)).count();
        if hits > 0 {
            report.identifiers_leaked.insert(id.to_owned(), hits);
        }
    }
    Ok(report)
}

/// Whether `text` holds a calendar date, `YYYY-MM` (a file name of a limited data set
/// export does; nothing a Safe Harbor partner receives may).
pub fn holds_a_date(text: &str) -> bool {
    text.as_bytes().windows(7).any(|w| {
        w[..4].iter().all(u8::is_ascii_digit)
            && w[4] == b'-'
            && w[5..].iter().all(u8::is_ascii_digit)
    })
}
