//! A determined partner against the partner API and the export worker (in-memory
//! adapters, the real code paths): one test per way it tries to learn more than its
//! policy grants, or to hold other partners back, each named for what it fails to
//! learn or do.

#[path = "support/partner_world.rs"]
#[allow(dead_code)]
mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use partner_api::http::Response;
use partner_api::{ApiPorts, PartnerApi, Settings};
use pulselake_adapters::{
    AuditLog, AwsError, MemoryExportJobs, MemoryObjects, MemoryOnce, MemoryPartners, MemoryQueue,
    MemorySecrets, TokenSigner, WorkUnit,
};
use pulselake_domain::partner::PartnerStatus;
use pulselake_domain::{Metric, NamingKey, ReadingId};
use sha2::{Digest, Sha256};
use world::*;

/// Whether `text` holds a calendar date (`YYYY-MM`) or a time of day (`HH:MM`).
fn has_date_or_time(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    for i in 0..b.len() {
        if i + 7 <= b.len() && digits(&b[i..i + 4]) && b[i + 4] == b'-' && digits(&b[i + 5..i + 7])
        {
            return Some(text[i.saturating_sub(20)..(i + 27).min(text.len())].to_owned());
        }
        if i + 5 <= b.len() && digits(&b[i..i + 2]) && b[i + 2] == b':' && digits(&b[i + 3..i + 5])
        {
            return Some(text[i.saturating_sub(20)..(i + 25).min(text.len())].to_owned());
        }
    }
    None
}

fn header<'r>(r: &'r Response, name: &str) -> Option<&'r str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Everything a partner receives from a finished export: the manifest, each file's
/// name and body (the errors and deletions files too).
async fn everything_received(
    world: &World,
    who: &str,
    path: &str,
) -> (serde_json::Value, Vec<(String, String)>) {
    let api = world.api();
    let token = bearer(&api, who).await;
    let kick = kick_off(&api, &token, path).await;
    assert_eq!(kick.status, 202, "{}", kick.body);
    let status = status_path(&kick);
    world.drain().await;
    let done = get(&api, &token, &status).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let manifest: serde_json::Value = serde_json::from_str(&done.body).unwrap();
    let mut files = Vec::new();
    for list in ["output", "error", "deleted"] {
        for f in manifest[list].as_array().unwrap() {
            let url = f["url"].as_str().unwrap();
            let r = get(&api, &token, &url[BASE.len()..]).await;
            assert_eq!(r.status, 307, "{url}: {}", r.body);
            let location = header(&r, "location").unwrap();
            let (bucket, key) = location
                .strip_prefix("memory://")
                .unwrap()
                .split_once('/')
                .unwrap();
            let body = world.objects.get(bucket, key).unwrap();
            files.push((url.to_owned(), String::from_utf8(body.to_vec()).unwrap()));
        }
    }
    (manifest, files)
}

fn ids(files: &[(String, String)]) -> BTreeSet<String> {
    files
        .iter()
        .flat_map(|(_, body)| body.lines())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|o| o["resourceType"] == "Observation")
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_safe_harbor_partner_learns_no_date_finer_than_the_year() {
    let world = World::new();
    let (manifest, files) = everything_received(&world, "insurer", "/fhir/$export").await;
    assert!(!files.is_empty());
    // The kick-off's own time (an instant the spec requires, the partner's own request)
    // is the one time in the manifest; nothing else it receives carries a date.
    let mut rest = manifest.clone();
    rest.as_object_mut().unwrap().remove("transactionTime");
    assert_eq!(
        has_date_or_time(&rest.to_string()),
        None,
        "manifest: {rest}"
    );
    let mut observations = 0;
    for (url, body) in &files {
        assert_eq!(has_date_or_time(url), None, "a file name dates it: {url}");
        assert_eq!(has_date_or_time(body), None, "{url} dates a resource");
        observations += body
            .lines()
            .filter(|l| l.contains("\"Observation\""))
            .count();
    }
    assert_eq!(observations, 60, "both days of the adult subject, undated");
    // Files are named by keyed hash, listed and filled in keyed order: neither the
    // list's order nor a file's order follows time.
    let names: Vec<&str> = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["url"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    for (url, body) in files.iter().filter(|(u, _)| u.contains("heart_rate-")) {
        let lines: Vec<&str> = body.lines().collect();
        let mut by_id = lines.clone();
        by_id.sort();
        assert_eq!(lines, by_id, "{url}: lines in keyed-id order");
    }
    // The notices say what was withheld in years.
    let errors = &files
        .iter()
        .find(|(u, _)| u.ends_with("/errors.ndjson"))
        .unwrap()
        .1;
    for line in errors.lines() {
        let o: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(o["issue"][0]["severity"], "information");
        assert_eq!(o["issue"][0]["code"], "informational");
    }
}

#[tokio::test]
async fn bisecting_windows_dates_nothing_in_safe_harbor_mode() {
    let world = World::new();
    let (_, whole) = everything_received(&world, "insurer", "/fhir/$export").await;
    let all = ids(&whole);
    assert_eq!(all.len(), 60);
    // One second around day 2's first reading, then one around day 1's: each window is
    // widened to its calendar year, so each answer is the whole year again.
    for (since, until) in [
        ("2026-11-21T08:00:00Z", "2026-11-21T08:00:01Z"),
        ("2026-11-20T08:00:00Z", "2026-11-20T08:00:01Z"),
        ("2026-11-20T08:00:01Z", "2026-11-21T07:59:59Z"),
    ] {
        let (manifest, files) = everything_received(
            &world,
            "insurer",
            &format!("/fhir/$export?_since={since}&_until={until}"),
        )
        .await;
        assert_eq!(
            ids(&files),
            all,
            "the window {since}..{until} told something"
        );
        let errors = &files
            .iter()
            .find(|(u, _)| u.ends_with("/errors.ndjson"))
            .unwrap()
            .1;
        assert!(
            errors.contains("widened to whole calendar years (2026 to 2026)"),
            "the manifest says the window was widened: {manifest}"
        );
    }
}

/// The fleet of the test lake, as large as the RFP's: 4,000 devices with 30 sensors
/// each, the lake's own two devices among them.
fn fleet() -> Vec<(String, String)> {
    let mut devices: Vec<String> = (0..3_998).map(|i| format!("dev-{i:04}")).collect();
    devices.push("dev-adult".into());
    devices.push("dev-neo".into());
    let mut out = Vec::new();
    for d in &devices {
        for s in 0..30 {
            out.push((d.clone(), format!("s-{s}")));
        }
    }
    out
}

#[tokio::test]
async fn observation_ids_resist_a_dictionary_over_every_device_and_sensor_of_the_fleet() {
    let world = World::new();
    let (_, files) = everything_received(&world, "research", "/fhir/$export").await;
    // The attacker (a limited data set: exact times) picks heart rate Observations and
    // knows the metric and instant of each.
    let mut targets: Vec<(String, i64)> = files
        .iter()
        .flat_map(|(_, b)| b.lines())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|o| o["code"]["coding"][0]["code"] == "8867-4")
        .map(|o| {
            let at =
                pulselake_domain::time::parse_rfc3339_ms(o["effectiveDateTime"].as_str().unwrap())
                    .unwrap();
            (o["id"].as_str().unwrap().to_owned(), at)
        })
        .collect();
    targets.sort();
    targets.truncate(8);
    assert_eq!(targets.len(), 8);
    // Every unkeyed way to turn (device, sensor, metric, time) into an id: the reading
    // id itself, and the hash the ids once were (SHA-256 over the client and the
    // reading id). A keyed hash with the partner's own key is the control: with the
    // key, the dictionary finds every device, so the dictionary is complete.
    let unkeyed = |reading: &ReadingId| -> [String; 2] {
        let mut h = Sha256::new();
        h.update(b"pulselake.observation.v1");
        h.update(("research".len() as u32).to_be_bytes());
        h.update(b"research");
        h.update(reading.0);
        [hex::encode(reading.0), hex::encode(&h.finalize()[..16])]
    };
    let with_key =
        pulselake_domain::fhir::ObservationIds::new(&NamingKey::new(b"research-key-1".to_vec()));
    let fleet = fleet();
    let mut recovered_without_key = 0;
    let mut recovered_with_key = BTreeMap::new();
    for (id, at) in &targets {
        for (device, sensor) in &fleet {
            let reading = ReadingId::derive(device, sensor, Metric::HeartRate, *at);
            if unkeyed(&reading).contains(id) {
                recovered_without_key += 1;
            }
            if with_key.of(&reading) == *id {
                recovered_with_key.insert(id.clone(), device.clone());
            }
        }
    }
    assert_eq!(recovered_without_key, 0, "an id gave its device away");
    assert_eq!(
        recovered_with_key.len(),
        targets.len(),
        "the control: with the partner's key every id is found"
    );
}

#[tokio::test]
async fn a_rotated_key_still_delivers_every_deletion() {
    let world = World::new();
    // Research receives the subject under key v1, then its key rotates.
    let (_, first) = everything_received(&world, "research", "/fhir/$export").await;
    assert!(!first.is_empty());
    world
        .secrets
        .0
        .lock()
        .unwrap()
        .get_mut("partners/research")
        .unwrap()
        .push(("v2".into(), "research-key-2".into()));
    tombstone(&world, "subject-adult-7").await;
    let (manifest, files) = everything_received(&world, "research", "/fhir/$export").await;
    assert_eq!(manifest["extension"]["pseudonymKeyVersion"], "v2");
    let deletions = &files
        .iter()
        .find(|(u, _)| u.ends_with("/deleted.ndjson"))
        .unwrap()
        .1;
    let bundle: serde_json::Value = serde_json::from_str(deletions.trim()).unwrap();
    let urls: BTreeSet<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request"]["url"].as_str().unwrap().to_owned())
        .collect();
    for key in ["research-key-1", "research-key-2"] {
        let p = NamingKey::new(key.as_bytes().to_vec()).pseudonym("subject-adult-7");
        assert!(
            urls.contains(&format!("Observation?subject=Patient/{p}")),
            "no deletion under {key}: {urls:?}"
        );
    }
    assert_eq!(
        urls.len(),
        2,
        "the erased subject only, once per key version"
    );
}

#[tokio::test]
async fn a_partner_waiting_behind_a_large_export_is_not_failed() {
    let world = World::new();
    let api = world.api();
    let research = bearer(&api, "research").await;
    let insurer = bearer(&api, "insurer").await;
    // Both kick off 30 minutes ago (tokens are checked against that time too).
    let t0 = now() - 30 * 60_000;
    let kick = |token: String| {
        let api = &api;
        async move {
            let headers = [
                ("authorization", token.as_str()),
                ("accept", "application/fhir+json"),
                ("prefer", "respond-async"),
            ];
            api.handle(&request("GET", "/fhir/$export", &headers, ""), t0)
                .await
        }
    };
    let big = status_path(&kick(research.clone()).await);
    let small = status_path(&kick(insurer.clone()).await);
    let queued: Vec<WorkUnit> = std::mem::take(&mut *world.queue.0.lock().unwrap())
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let small_job = small.rsplit('/').next().unwrap().to_owned();
    let (theirs, mine): (Vec<WorkUnit>, Vec<WorkUnit>) =
        queued.into_iter().partition(|u| u.job != small_job);
    assert!(theirs.len() > 3 && !mine.is_empty());
    // Research's units run, one every 10 minutes, for 30 minutes; the insurer's wait.
    let worker = world.worker();
    for (i, unit) in theirs.iter().take(3).enumerate() {
        worker
            .run(unit, t0 + (i as i64 + 1) * 600_000)
            .await
            .unwrap();
    }
    let later = now();
    let poll = |path: String, token: String, at: i64| {
        let api = &api;
        async move {
            api.handle(
                &request(
                    "GET",
                    &path,
                    &[
                        ("authorization", &token),
                        ("accept", "application/fhir+json"),
                    ],
                    "",
                ),
                at,
            )
            .await
        }
    };
    let waiting = poll(small.clone(), insurer.clone(), later).await;
    assert_eq!(
        waiting.status, 202,
        "waiting is not stalling: {}",
        waiting.body
    );
    // Its units run at last, and it completes.
    for unit in theirs.iter().skip(3).chain(&mine) {
        worker.run(unit, later + 1).await.unwrap();
    }
    assert_eq!(poll(small, insurer, later + 2).await.status, 200);
    assert_eq!(poll(big, research, later + 2).await.status, 200);

    // The control: when no unit of any export finishes for 20 minutes, the watchdog
    // fails the job (work that stopped).
    let stopped = World::new();
    let api = stopped.api();
    let token = bearer(&api, "insurer").await;
    let headers = [
        ("authorization", token.as_str()),
        ("accept", "application/fhir+json"),
        ("prefer", "respond-async"),
    ];
    let past = now() - 21 * 60_000;
    let kicked = api
        .handle(&request("GET", "/fhir/$export", &headers, ""), past)
        .await;
    let status = status_path(&kicked);
    let r = api
        .handle(
            &request("GET", &status, &[("authorization", &token)], ""),
            now(),
        )
        .await;
    assert_eq!(r.status, 500, "{}", r.body);
}

#[tokio::test]
async fn unknown_and_suspended_clients_get_the_same_answer() {
    let world = World::new();
    let api = world.api();
    // Research's key, but the insurer's id: a bad signature for a client that exists.
    let badly_signed = assertion(
        "insurer",
        "research-rs384.pem",
        Algorithm::RS384,
        "insurer-2026",
    );
    let unknown = assertion(
        "nobody",
        "research-rs384.pem",
        Algorithm::RS384,
        "research-2026",
    );
    world
        .partners
        .0
        .lock()
        .unwrap()
        .get_mut("research")
        .unwrap()
        .status = PartnerStatus::Suspended;
    let suspended = assertion(
        "research",
        "research-rs384.pem",
        Algorithm::RS384,
        "research-2026",
    );
    let mut answers = Vec::new();
    for a in [&unknown, &suspended, &badly_signed] {
        let r = token_response(&api, a).await;
        answers.push((r.status, r.body));
    }
    assert_eq!(answers[0].0, 400);
    assert!(answers[0].1.contains("invalid_client"), "{}", answers[0].1);
    assert_eq!(answers[0], answers[1], "unknown and suspended alike");
    assert_eq!(answers[0], answers[2], "unknown and badly signed alike");
    // The audit names none of them: none proved who it is.
    for (_, record) in world.audit.0.lock().unwrap().iter() {
        assert!(record["partner"].is_null(), "{record}");
        assert!(!record.to_string().contains("nobody"), "{record}");
    }
}

/// An audit log that refuses writes while `failing`.
#[derive(Default)]
struct FlakyAudit {
    records: Mutex<Vec<serde_json::Value>>,
    failing: AtomicBool,
}

impl AuditLog for FlakyAudit {
    async fn append(
        &self,
        _kind: &str,
        _at: i64,
        record: &serde_json::Value,
    ) -> Result<(), AwsError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(AwsError::transient(
                "s3:PutObject",
                "audit store unavailable",
            ));
        }
        self.records.lock().unwrap().push(record.clone());
        Ok(())
    }
}

struct Flaky<'a>(std::marker::PhantomData<&'a ()>);

impl<'a> ApiPorts for Flaky<'a> {
    type Partners = &'a MemoryPartners;
    type Claims = &'a MemoryOnce;
    type Jobs = &'a MemoryExportJobs;
    type Signer = PemSigner;
    type Audit = &'a FlakyAudit;
    type Queue = &'a MemoryQueue;
    type Objects = &'a MemoryObjects;
    type Secrets = &'a MemorySecrets;
}

fn flaky_api<'a>(world: &'a World, audit: &'a FlakyAudit) -> PartnerApi<Flaky<'a>> {
    PartnerApi {
        partners: &world.partners,
        claims: &world.claims,
        jobs: &world.jobs,
        signer: PemSigner(EncodingKey::from_rsa_pem(fixture("api-signer.pem").as_bytes()).unwrap()),
        verify_key: DecodingKey::from_rsa_pem(fixture("api-signer.pub.pem").as_bytes()).unwrap(),
        audit,
        queue: &world.queue,
        objects: &world.objects,
        secrets: &world.secrets,
        settings: Settings {
            base_url: BASE.into(),
            lake_bucket: LAKE.into(),
            exports_bucket: EXPORTS.into(),
        },
    }
}

#[tokio::test]
async fn no_access_or_side_effect_escapes_the_audit_trail_and_no_caller_can_flood_it() {
    let world = World::new();
    let audit = FlakyAudit::default();
    let api = flaky_api(&world, &audit);
    let token = bearer(&api, "research").await;
    // A POST kick-off: its Parameters and the job it created are on record.
    let body = r#"{"resourceType":"Parameters","parameter":[{"name":"_since","valueInstant":"2026-11-01T00:00:00Z"},{"name":"_typeFilter","valueString":"Observation?code=http://loinc.org|8867-4"}]}"#;
    let kick = api
        .call(request(
            "POST",
            "/fhir/$export",
            &[
                ("authorization", &token),
                ("prefer", "respond-async"),
                ("content-type", "application/fhir+json"),
            ],
            body,
        ))
        .await;
    assert_eq!(kick.status, 202, "{}", kick.body);
    let status = status_path(&kick);
    let job = status.rsplit('/').next().unwrap().to_owned();
    {
        let records = audit.records.lock().unwrap();
        let kickoff = records
            .iter()
            .rev()
            .find(|r| r["route"] == "/fhir/$export")
            .unwrap();
        assert_eq!(kickoff["job"], job.as_str());
        let params = kickoff["parameters"].to_string();
        assert!(
            params.contains("_typeFilter") && params.contains("8867-4"),
            "{params}"
        );
        assert!(
            records
                .iter()
                .any(|r| r["event"] == "export_kickoff" && r["job"] == job.as_str()),
            "the intent is on record before the job exists"
        );
    }
    world.drain().await;
    // A cancel whose audit record cannot be written does nothing.
    let files_before = world.objects.keys(EXPORTS).len();
    assert!(files_before > 0);
    audit.failing.store(true, Ordering::SeqCst);
    let cancel = api
        .call(request("DELETE", &status, &[("authorization", &token)], ""))
        .await;
    assert_eq!(cancel.status, 503);
    assert_eq!(
        world.objects.keys(EXPORTS).len(),
        files_before,
        "no file went unaudited"
    );
    audit.failing.store(false, Ordering::SeqCst);
    // A kick-off that cannot be audited creates no job.
    let queued = world.queue.0.lock().unwrap().len();
    audit.failing.store(true, Ordering::SeqCst);
    let refused = kick_off(&api, &token, "/fhir/$export").await;
    audit.failing.store(false, Ordering::SeqCst);
    assert_eq!(refused.status, 503);
    assert_eq!(
        world.queue.0.lock().unwrap().len(),
        queued,
        "nothing was queued"
    );
    // Anonymous junk: 49 parameters of 5,000 characters become one bounded record.
    let junk: Vec<String> = (0..49)
        .map(|i| format!("p{i}={}", "x".repeat(5_000)))
        .collect();
    let before = audit.records.lock().unwrap().len();
    let r = api
        .call(request(
            "GET",
            &format!("/{}?{}", "y".repeat(3_000), junk.join("&")),
            &[],
            "",
        ))
        .await;
    assert_eq!(r.status, 404);
    {
        let records = audit.records.lock().unwrap();
        assert_eq!(records.len(), before + 1);
        let record = records.last().unwrap();
        assert!(
            record.to_string().len() < 6_000,
            "{} bytes",
            record.to_string().len()
        );
        assert_eq!(record["parameters_total"], 49);
    }
    // Too many parameters, or too large a body, are refused before they are read.
    let many: Vec<String> = (0..60).map(|i| format!("p{i}=1")).collect();
    let r = api
        .call(request(
            "GET",
            &format!("/fhir/$export?{}", many.join("&")),
            &[],
            "",
        ))
        .await;
    assert_eq!(r.status, 400);
    let r = api
        .call(request(
            "POST",
            "/fhir/$export",
            &[("authorization", &token), ("prefer", "respond-async")],
            &" ".repeat(partner_api::api::MAX_BODY_BYTES + 1),
        ))
        .await;
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn a_token_the_api_never_issued_opens_nothing_and_revoked_grants_stop_at_once() {
    let world = World::new();
    let api = world.api();
    // Someone with rights to sign with the API's key mints a token for research.
    let forged = {
        let now_s = now() / 1000;
        let claims = partner_api::auth::AccessClaims {
            iss: BASE.into(),
            sub: "research".into(),
            aud: format!("{BASE}/fhir"),
            iat: now_s,
            exp: now_s + 300,
            jti: "f".repeat(32),
            scope: "system/Observation.rs".into(),
        };
        let signer =
            PemSigner(EncodingKey::from_rsa_pem(fixture("api-signer.pem").as_bytes()).unwrap());
        let input = partner_api::auth::signing_input(signer.key_id(), &claims);
        let sig = signer.sign(input.as_bytes()).await.unwrap();
        format!("Bearer {}", partner_api::auth::token(&input, &sig))
    };
    let r = kick_off(&api, &forged, "/fhir/$export").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(world.queue.0.lock().unwrap().is_empty());

    // A download after the policy narrowed is refused.
    let token = bearer(&api, "research").await;
    let status = status_path(&kick_off(&api, &token, "/fhir/$export").await);
    world.drain().await;
    let manifest: serde_json::Value =
        serde_json::from_str(&get(&api, &token, &status).await.body).unwrap();
    let file = manifest["output"][0]["url"].as_str().unwrap()[BASE.len()..].to_owned();
    assert_eq!(get(&api, &token, &file).await.status, 307);
    world
        .partners
        .0
        .lock()
        .unwrap()
        .get_mut("research")
        .unwrap()
        .policy
        .metrics = vec!["spo2".into()];
    assert_eq!(get(&api, &token, &file).await.status, 403);

    // A cancel removes every version of every file.
    let del = api
        .call(request("DELETE", &status, &[("authorization", &token)], ""))
        .await;
    assert_eq!(del.status, 202);
    use pulselake_adapters::VersionedObjects;
    let left = world
        .objects
        .list_versions(EXPORTS, "exports/research/")
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");

    // The worker stops the export of a partner suspended while it runs.
    let world = World::new();
    let api = world.api();
    let token = bearer(&api, "insurer").await;
    let status = status_path(&kick_off(&api, &token, "/fhir/$export").await);
    world
        .partners
        .0
        .lock()
        .unwrap()
        .get_mut("insurer")
        .unwrap()
        .status = PartnerStatus::Suspended;
    world.drain().await;
    let job = status.rsplit('/').next().unwrap();
    use pulselake_adapters::ExportJobs;
    let stopped = world.jobs.get(job).await.unwrap().unwrap();
    assert_eq!(stopped.status, pulselake_adapters::JobStatus::Failed);
    let written: Vec<String> = world
        .objects
        .keys(EXPORTS)
        .into_iter()
        .filter(|k| k.contains(job) && k.ends_with(".ndjson") && !k.ends_with("errors.ndjson"))
        .collect();
    assert!(written.is_empty(), "{written:?}");
}

#[tokio::test]
async fn a_smart_client_finds_everything_from_the_fhir_base_url() {
    let world = World::new();
    let api = world.api();
    // SMART App Launch 2.2: `{fhir base}/.well-known/smart-configuration`.
    let conf = api
        .call(request(
            "GET",
            "/fhir/.well-known/smart-configuration",
            &[],
            "",
        ))
        .await;
    assert_eq!(conf.status, 200, "{}", conf.body);
    let conf: serde_json::Value = serde_json::from_str(&conf.body).unwrap();
    assert_eq!(conf["token_endpoint"], format!("{BASE}/auth/token"));
    let methods = conf["code_challenge_methods_supported"].as_array().unwrap();
    assert!(methods.contains(&"S256".into()) && !methods.contains(&"plain".into()));
    for field in [
        "grant_types_supported",
        "capabilities",
        "token_endpoint_auth_methods_supported",
    ] {
        assert!(
            conf[field].as_array().is_some_and(|a| !a.is_empty()),
            "{field}"
        );
    }
    // The old path still answers.
    let old = api
        .call(request("GET", "/.well-known/smart-configuration", &[], ""))
        .await;
    assert_eq!(old.status, 200);

    // A wildcard scope is narrowed to what is granted, and the answer says so.
    let a = assertion(
        "insurer",
        "insurer-es384.pem",
        Algorithm::ES384,
        "insurer-2026",
    );
    let form = token_form(&a).replace("scope=system%2FObservation.rs", "scope=system%2F*.rs");
    let r = api
        .call(request(
            "POST",
            "/auth/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            &form,
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let granted: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(granted["scope"], "system/Observation.rs");
    let token = format!("Bearer {}", granted["access_token"].as_str().unwrap());

    // The CapabilityStatement names _typeFilter's search parameter.
    let cs = api.call(request("GET", "/fhir/metadata", &[], "")).await;
    assert!(cs.body.contains("_typeFilter"), "{}", cs.body);

    // The Groups the insurer may export: its cohort, no members, nothing else.
    let groups: serde_json::Value =
        serde_json::from_str(&get(&api, &token, "/fhir/Group").await.body).unwrap();
    assert_eq!(groups["type"], "searchset");
    assert_eq!(groups["total"], 1);
    assert_eq!(groups["entry"][0]["resource"]["id"], "adult");
    assert!(groups["entry"][0]["resource"].get("member").is_none());
    assert_eq!(get(&api, &token, "/fhir/Group/adult").await.status, 200);
    assert_eq!(get(&api, &token, "/fhir/Group/neonatal").await.status, 404);

    // The manifest's `request` is the kick-off as the partner sent it.
    let path = "/fhir/Group/adult/$export?_typeFilter=Observation?code=http://loinc.org%7C8867-4";
    let kick = kick_off(&api, &token, path).await;
    assert_eq!(kick.status, 202, "{}", kick.body);
    let status = status_path(&kick);
    world.drain().await;
    let manifest: serde_json::Value =
        serde_json::from_str(&get(&api, &token, &status).await.body).unwrap();
    assert_eq!(manifest["request"], format!("{BASE}{path}"));
}

#[tokio::test]
async fn a_client_asking_for_tokens_in_a_loop_is_slowed_and_the_others_are_not() {
    let world = World::new();
    let api = world.api();
    let research = || {
        assertion(
            "research",
            "research-rs384.pem",
            Algorithm::RS384,
            "research-2026",
        )
    };
    // All within one minute.
    let at = now();
    let mut statuses = Vec::new();
    for _ in 0..=partner_api::api::TOKENS_PER_MINUTE {
        let req = request(
            "POST",
            "/auth/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            &token_form(&research()),
        );
        let r = api.handle(&req, at).await;
        statuses.push((r.status, r.body));
    }
    let (last, granted) = statuses.split_last().unwrap();
    assert!(granted.iter().all(|(s, _)| *s == 200), "{granted:?}");
    assert_eq!(last.0, 429, "{}", last.1);
    assert!(last.1.contains("slow_down"), "{}", last.1);
    // The insurer is not held back by research's loop.
    bearer(&api, "insurer").await;
}
