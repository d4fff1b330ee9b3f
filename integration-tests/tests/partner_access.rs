//! Partners over HTTP against the local stack: a simulated fleet fills the lake, two
//! partners are onboarded with the admin CLI's code, authenticate with SMART Backend
//! Services, export, poll and download through API Gateway's proxy events, with the
//! export worker behind its queue. What a partner and the data's owners depend on: the
//! counts DuckDB finds in the lake, under each partner's policy and pseudonyms; no
//! subject or device id in any export file or audit record; partners isolated; denials
//! that give nothing; a cancel that leaves no file.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pulselake_local::partner_client::{Export, PartnerClient, fixture};
use pulselake_local::simulator::{Fleet, FleetConfig};
use pulselake_local::sqs_esm::SqsMapping;
use pulselake_local::{LocalPlatform, duckdb, fhir_schema, inspect, invoke, onboard, scenario};

const RESEARCH: &str = r#"{"metrics":["heart_rate","respiratory_rate","spo2","body_temp","bp_systolic","bp_diastolic","glucose"],
  "cohorts":["*"],"mode":"limited","dua":"DUA-2026-001"}"#;
const INSURER: &str = r#"{"metrics":["heart_rate"],"cohorts":["cardiology"],"mode":"safe_harbor","dua":"DUA-2026-002"}"#;

fn fleet() -> FleetConfig {
    FleetConfig {
        devices: 16,
        sensors_per_device: 4,
        fault_share: 0.0,
        ..FleetConfig::default()
    }
}

/// Kick-off, the worker's turn, polling to 200, and every file downloaded.
async fn export(
    client: &PartnerClient,
    token: &str,
    path: &str,
    worker: &mut SqsMapping<invoke::ExportWorkerFn>,
) -> Export {
    let kick = client.kick_off(token, path).await.unwrap();
    assert_eq!(kick.status, 202, "{}", kick.text());
    let status_url = kick.header("content-location").unwrap().to_owned();
    assert!(status_url.starts_with(&client.base_url), "{status_url}");
    worker.drain(Duration::from_secs(60)).await.unwrap();
    let done = client
        .wait(token, &status_url, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(done.status, 200, "{}", done.text());
    assert!(done.header("expires").is_some());
    let manifest = done.json().unwrap();
    client
        .fetch_all(token, &status_url, manifest)
        .await
        .unwrap()
}

/// Readings an Observation carries: a panel's components, else one.
fn readings_in(resources: &[serde_json::Value]) -> usize {
    resources
        .iter()
        .map(|o| o["component"].as_array().map_or(1, Vec::len))
        .sum()
}

fn pseudonyms(e: &Export) -> BTreeSet<String> {
    e.resources
        .iter()
        .map(|o| o["subject"]["reference"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_get_exactly_what_their_policies_allow_under_their_own_pseudonyms() {
    let p = LocalPlatform::start(None).await.unwrap();
    let s = &p.stack;
    let stream = scenario::run_stream(&p, fleet(), 3, &mut |_| {})
        .await
        .unwrap();
    assert!(stream.lake_rows > 100, "{stream:?}");
    onboard::add_partner(
        s,
        "research",
        RESEARCH,
        &std::fs::read_to_string(fixture("research-rs384.jwks.json")).unwrap(),
    )
    .await
    .unwrap();
    onboard::add_partner(
        s,
        "insurer",
        INSURER,
        &std::fs::read_to_string(fixture("insurer-es384.jwks.json")).unwrap(),
    )
    .await
    .unwrap();
    let api = p.partner_api().await.unwrap();
    let mut worker = p.export_worker().await.unwrap();
    let research = PartnerClient::fixture(&api.base_url, "research").unwrap();
    let insurer = PartnerClient::fixture(&api.base_url, "insurer").unwrap();

    // What an engine nobody here wrote finds in the lake.
    let dir = std::env::temp_dir().join(format!("pulselake-partners-{}", std::process::id()));
    inspect::export_lake(s, &dir).await.unwrap();
    let per_metric = duckdb::rows_per_metric(&dir).unwrap();
    let registry = Fleet::new(fleet()).registry(0);
    let cardiology: Vec<String> = registry
        .iter()
        .flat_map(|d| &d.assignments)
        .filter(|a| a.cohort.as_deref() == Some("cardiology"))
        .map(|a| format!("'{}'", a.subject_id))
        .collect();
    let cardiology_hr: usize = duckdb::query(
        &dir,
        &format!(
            "SELECT count(*) FROM readings WHERE metric = 'heart_rate' AND subject_id IN ({})",
            cardiology.join(",")
        ),
    )
    .unwrap()[0][0]
        .parse()
        .unwrap();
    assert!(cardiology_hr > 0);

    // Research: everything, as FHIR, every reading once.
    let rt = research.token().await.unwrap();
    let all = export(&research, &rt, "/fhir/$export", &mut worker).await;
    assert_eq!(
        readings_in(&all.resources),
        per_metric.values().sum::<usize>(),
        "every lake row once: {per_metric:?}"
    );
    assert!(
        all.resources
            .iter()
            .all(|o| o["resourceType"] == "Observation")
    );
    let mut hr = 0;
    for o in &all.resources {
        if o["code"]["coding"][0]["code"] == "8867-4" {
            hr += 1;
            let when = o["effectiveDateTime"].as_str().unwrap();
            assert!(when.len() > 4, "limited data set keeps exact times: {when}");
        }
    }
    assert_eq!(hr, per_metric["heart_rate"]);
    let manifest = &all.manifest;
    assert_eq!(manifest["requiresAccessToken"], true);
    assert!(manifest["transactionTime"].is_string());
    assert!(!manifest["output"].as_array().unwrap().is_empty());
    let research_pseudonyms = pseudonyms(&all);
    assert_eq!(research_pseudonyms.len(), registry.len(), "one per subject");

    // Again, heart rate only: the same pseudonyms, and the filter honoured.
    let again = export(
        &research,
        &rt,
        "/fhir/$export?_type=Observation&_typeFilter=Observation%3Fcode%3Dhttp%3A%2F%2Floinc.org%7C8867-4",
        &mut worker,
    )
    .await;
    assert_eq!(again.resources.len(), per_metric["heart_rate"]);
    assert!(pseudonyms(&again).is_subset(&research_pseudonyms));

    // Insurer: heart rate of the cardiology cohort, Safe Harbor (the year alone).
    let it = insurer.token().await.unwrap();
    let insured = export(&insurer, &it, "/fhir/Group/cardiology/$export", &mut worker).await;
    assert_eq!(
        insured.resources.len(),
        cardiology_hr,
        "{}",
        insured.manifest
    );
    for o in &insured.resources {
        assert_eq!(o["code"]["coding"][0]["code"], "8867-4");
        assert_eq!(o["effectiveDateTime"].as_str().unwrap().len(), 4, "{o}");
    }
    let insurer_pseudonyms = pseudonyms(&insured);
    assert_eq!(insurer_pseudonyms.len(), cardiology.len());
    assert!(
        insurer_pseudonyms.is_disjoint(&research_pseudonyms),
        "pseudonyms are unlinkable across partners"
    );

    // HL7's R4 schema accepts every resource served (and is not a rubber stamp).
    let mut served: Vec<serde_json::Value> = all.resources.clone();
    served.extend(insured.resources.iter().take(50).cloned());
    let metadata = research
        .call(&rt, "GET", "/fhir/metadata", &[])
        .await
        .unwrap();
    served.push(metadata.json().unwrap());
    let broken = served.len();
    let mut bad = all.resources[0].clone();
    bad["status"] = "finished".into();
    served.push(bad);
    let problems = fhir_schema::problems(&served).unwrap();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with(&format!("{broken}: status")),
        "{problems:?}"
    );
    // The vital-signs profile (glucose is a laboratory result): category, LOINC code,
    // UCUM quantities, a subject.
    let glucose = pulselake_domain::Metric::Glucose.loinc();
    for o in &all.resources {
        let category = if o["code"]["coding"][0]["code"] == glucose {
            "laboratory"
        } else {
            "vital-signs"
        };
        assert_eq!(o["category"][0]["coding"][0]["code"], category, "{o}");
        assert_eq!(o["code"]["coding"][0]["system"], "http://loinc.org");
        let quantities: Vec<&serde_json::Value> = match o["component"].as_array() {
            Some(c) => c.iter().map(|c| &c["valueQuantity"]).collect(),
            None => vec![&o["valueQuantity"]],
        };
        for q in quantities {
            assert_eq!(q["system"], "http://unitsofmeasure.org", "{o}");
            assert!(q["value"].is_number() && q["code"].is_string(), "{o}");
        }
        assert!(
            o["subject"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Patient/")
        );
    }

    // Isolation and denials: nothing of research's reaches the insurer.
    let theirs = insurer
        .call(&it, "GET", &all.status_url, &[])
        .await
        .unwrap();
    assert_eq!(theirs.status, 404, "{}", theirs.text());
    let file = all.manifest["output"][0]["url"].as_str().unwrap();
    let stolen = insurer.call(&it, "GET", file, &[]).await.unwrap();
    assert_eq!(stolen.status, 404, "{}", stolen.text());
    let wider = insurer
        .kick_off(&it, "/fhir/Group/adult/$export")
        .await
        .unwrap();
    assert_eq!(wider.status, 403, "{}", wider.text());
    assert_eq!(wider.json().unwrap()["resourceType"], "OperationOutcome");
    assert_eq!(
        fhir_schema::problems(&[wider.json().unwrap()]).unwrap(),
        Vec::<String>::new()
    );
    let anonymous = research
        .call("", "GET", "/fhir/$export", &[("prefer", "respond-async")])
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401);
    let impostor = PartnerClient::fixture(&api.base_url, "impostor").unwrap();
    let forged = impostor
        .token_reply(&impostor.assertion().unwrap(), "system/Observation.rs")
        .await
        .unwrap();
    assert_eq!(forged.status, 400);
    assert_eq!(forged.json().unwrap()["error"], "invalid_client");
    onboard::set_partner_status(s, "insurer", false)
        .await
        .unwrap();
    let suspended = insurer
        .call(&it, "GET", &insured.status_url, &[])
        .await
        .unwrap();
    assert_eq!(suspended.status, 403, "a held token stops working at once");
    onboard::set_partner_status(s, "insurer", true)
        .await
        .unwrap();

    // A cancelled export leaves no file.
    let kick = research.kick_off(&rt, "/fhir/$export").await.unwrap();
    assert_eq!(kick.status, 202);
    let status_url = kick.header("content-location").unwrap().to_owned();
    let job = status_url.rsplit('/').next().unwrap().to_owned();
    let cancel = research
        .call(&rt, "DELETE", &status_url, &[])
        .await
        .unwrap();
    assert_eq!(cancel.status, 202, "{}", cancel.text());
    worker.drain(Duration::from_secs(60)).await.unwrap();
    let left = inspect::list_keys(s, &s.names.exports_bucket, "")
        .await
        .unwrap();
    assert!(
        left.iter().all(|k| !k.contains(&job)),
        "no file of the cancelled job: {left:?}"
    );
    let gone = research.call(&rt, "GET", &status_url, &[]).await.unwrap();
    assert_eq!(gone.status, 404);

    // No subject or device id in any export file or audit record.
    let mut texts: Vec<String> = [&all, &again, &insured]
        .iter()
        .flat_map(|e| e.raw.iter().cloned())
        .collect();
    texts.extend([all.manifest.to_string(), insured.manifest.to_string()]);
    let audit = inspect::list_keys(s, &s.names.audit_bucket, "")
        .await
        .unwrap();
    assert!(!audit.is_empty(), "the accesses were audited");
    for key in audit {
        let body = inspect::get_bytes(s, &s.names.audit_bucket, &key)
            .await
            .unwrap();
        texts.push(String::from_utf8_lossy(&body).into_owned());
    }
    let mut leaks = BTreeMap::new();
    for d in &registry {
        for id in std::iter::once(&d.device_id).chain(d.assignments.iter().map(|a| &a.subject_id)) {
            let hits = texts.iter().filter(|t| t.contains(id.as_str())).count();
            if hits > 0 {
                leaks.insert(id.clone(), hits);
            }
        }
    }
    assert!(leaks.is_empty(), "identifiers left the lake: {leaks:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every operation `api/openapi.yaml` declares is one the function serves: discovery
/// answers, the token endpoint wants a form, everything else wants a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_of_the_openapi_document_is_served_and_guarded() {
    let p = LocalPlatform::start(None).await.unwrap();
    let api = p.partner_api().await.unwrap();
    let doc = pulselake_local::cfn::yaml("api/openapi.yaml");
    let mut seen = 0;
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        let path = path
            .as_str()
            .unwrap()
            .replace("{cohort}", "adult")
            .replace("{job}", "0123456789abcdef0123456789abcdef")
            .replace("{file}", "Observation-1.ndjson");
        for (method, op) in item.as_mapping().unwrap() {
            let method = method.as_str().unwrap().to_uppercase();
            let url = format!("{}{path}", api.base_url);
            let reply = pulselake_local::http::request(&method, &url, &[], Vec::new())
                .await
                .unwrap();
            let public = op["security"].as_sequence().is_some_and(|s| s.is_empty());
            let expected = match (public, path.as_str()) {
                (true, "/auth/token") => 400,
                (true, _) => 200,
                (false, _) => 401,
            };
            assert_eq!(reply.status, expected, "{method} {path}: {}", reply.text());
            seen += 1;
        }
    }
    assert!(seen >= 11);
}

/// Bad input at every edge gets the right 4xx (an OAuth error at the token endpoint,
/// an OperationOutcome elsewhere), never a 500 and never data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_is_refused_with_the_standard_error_never_data() {
    use base64::Engine;
    let p = LocalPlatform::start(None).await.unwrap();
    let s = &p.stack;
    onboard::add_partner(
        s,
        "research",
        RESEARCH,
        &std::fs::read_to_string(fixture("research-rs384.jwks.json")).unwrap(),
    )
    .await
    .unwrap();
    let api = p.partner_api().await.unwrap();
    let research = PartnerClient::fixture(&api.base_url, "research").unwrap();
    let now = pulselake_local::invoke_now_ms() / 1000;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(serde_json::json!({"alg": "none", "typ": "JWT"})),
        b64(research.claims())
    );
    let edited = |f: &dyn Fn(&mut serde_json::Value)| research.assertion_with(|c| f(c)).unwrap();
    let token_cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "alg none",
            unsigned,
            "system/Observation.rs",
            "invalid_client",
        ),
        (
            "wrong aud",
            edited(&|c| c["aud"] = "https://elsewhere.example/token".into()),
            "system/Observation.rs",
            "invalid_client",
        ),
        (
            "expired",
            edited(&|c| c["exp"] = (now - 60).into()),
            "system/Observation.rs",
            "invalid_client",
        ),
        (
            "exp beyond 5 minutes",
            edited(&|c| c["exp"] = (now + 3600).into()),
            "system/Observation.rs",
            "invalid_client",
        ),
        (
            "iss is not sub",
            edited(&|c| c["sub"] = "insurer".into()),
            "system/Observation.rs",
            "invalid_client",
        ),
        (
            "unknown client",
            edited(&|c| {
                c["iss"] = "nobody".into();
                c["sub"] = "nobody".into();
            }),
            "system/Observation.rs",
            "invalid_client",
        ),
        (
            "no jti",
            edited(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            "system/Observation.rs",
            "invalid_client",
        ),
        (
            "not a JWT",
            "not-a-jwt".into(),
            "system/Observation.rs",
            "invalid_client",
        ),
        (
            "a Patient scope",
            research.assertion().unwrap(),
            "system/Patient.rs",
            "invalid_scope",
        ),
        (
            "a user scope",
            research.assertion().unwrap(),
            "user/Observation.rs",
            "invalid_scope",
        ),
    ];
    for (case, assertion, scope, error) in token_cases {
        let r = research.token_reply(&assertion, scope).await.unwrap();
        assert_eq!(r.status, 400, "{case}: {}", r.text());
        assert_eq!(r.json().unwrap()["error"], error, "{case}: {}", r.text());
        assert!(r.json().unwrap().get("access_token").is_none(), "{case}");
    }
    let wrong_grant = research
        .token_form(&[("grant_type", "password"), ("username", "x")])
        .await
        .unwrap();
    assert_eq!(wrong_grant.status, 400);
    assert_eq!(
        wrong_grant.json().unwrap()["error"],
        "unsupported_grant_type"
    );

    let token = research.token().await.unwrap();
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let forged = research
        .call(
            &tampered,
            "GET",
            "/fhir/$export",
            &[("prefer", "respond-async")],
        )
        .await
        .unwrap();
    assert_eq!(forged.status, 401, "{}", forged.text());
    let kickoff_cases = [
        ("no Prefer", "/fhir/$export", false, 400),
        (
            "malformed _since",
            "/fhir/$export?_since=yesterday",
            true,
            400,
        ),
        (
            "_since after _until",
            "/fhir/$export?_since=2026-11-02T00:00:00Z&_until=2026-11-01T00:00:00Z",
            true,
            400,
        ),
        ("unknown _type", "/fhir/$export?_type=Patient", true, 400),
        (
            "unknown code",
            "/fhir/$export?_typeFilter=Observation%3Fcode%3Dhttp%3A%2F%2Floinc.org%7C1234-5",
            true,
            400,
        ),
        (
            "injection",
            "/fhir/$export?_since=2026-11-01T00:00:00Z%27%20OR%201%3D1%20--",
            true,
            400,
        ),
        (
            "unknown parameter",
            "/fhir/$export?_elements=subject",
            true,
            400,
        ),
        (
            "Parquet",
            "/fhir/$export?_outputFormat=application%2Fvnd.apache.parquet",
            true,
            400,
        ),
        ("CSV", "/fhir/$export?_outputFormat=text%2Fcsv", true, 400),
        (
            "unknown job",
            "/fhir/export-status/0123456789abcdef0123456789abcdef",
            false,
            404,
        ),
        ("another route", "/fhir/Observation", false, 404),
    ];
    for (case, path, prefer, status) in kickoff_cases {
        let headers: &[(&str, &str)] = if prefer {
            &[("prefer", "respond-async")]
        } else {
            &[]
        };
        let r = research.call(&token, "GET", path, headers).await.unwrap();
        assert_eq!(r.status, status, "{case}: {}", r.text());
        assert_eq!(
            r.json().unwrap()["resourceType"],
            "OperationOutcome",
            "{case}"
        );
    }
    assert!(
        inspect::list_keys(s, &s.names.exports_bucket, "")
            .await
            .unwrap()
            .is_empty(),
        "no refused request left a file"
    );
}
