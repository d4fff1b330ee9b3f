//! The partner API and the export worker together over in-memory adapters: a partner
//! authenticates, kicks off an export, the worker drains the queue, the manifest lists
//! the files. What a partner depends on: exactly the rows the policy allows, as FHIR
//! Observations under per-partner pseudonyms; no subject or device id in any file or
//! audit record; retries give no duplicates; cancels leave nothing; partners never see
//! each other's jobs.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use export_worker::{ExportWorker, WorkerPorts};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use partner_api::http::{Request, Response};
use partner_api::{ApiPorts, PartnerApi, Settings};
use pulselake_adapters::{
    AwsError, CachedRegistry, MemoryAuditLog, MemoryErasures, MemoryExportJobs, MemoryObjects,
    MemoryOnce, MemoryPartners, MemoryQueue, MemoryRegistry, MemorySecrets, Partner, TokenSigner,
    WorkUnit,
};
use pulselake_domain::partner::{Mode, PartnerStatus, Policy};
use pulselake_domain::registry::{Assignment, DeviceRecord};
use pulselake_domain::time::parse_rfc3339_ms;
use pulselake_domain::{Metric, NamingKey, Reading, ReadingId, Source};
use pulselake_lake::{FileLayout, encode_readings};

const BASE: &str = "https://api.example.test/v1";
const LAKE: &str = "lake";
const EXPORTS: &str = "exports";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/partners");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture")
}

/// Signs access tokens with a PEM key (KMS's part in the deployed stack).
struct PemSigner(EncodingKey);

impl TokenSigner for PemSigner {
    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AwsError> {
        use base64::Engine;
        let sig = jsonwebtoken::crypto::sign(message, &self.0, Algorithm::RS256)
            .map_err(|e| AwsError::permanent("sign", e.to_string()))?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|e| AwsError::permanent("sign", e.to_string()))
    }
    async fn public_key_pem(&self) -> Result<String, AwsError> {
        Ok(fixture("api-signer.pub.pem"))
    }
    fn key_id(&self) -> &str {
        "api-signer"
    }
}

/// The API and the worker over the world's in-memory adapters, borrowed.
struct Borrowed<'a>(std::marker::PhantomData<&'a ()>);

impl<'a> ApiPorts for Borrowed<'a> {
    type Partners = &'a MemoryPartners;
    type Claims = &'a MemoryOnce;
    type Jobs = &'a MemoryExportJobs;
    type Signer = PemSigner;
    type Audit = &'a MemoryAuditLog;
    type Queue = &'a MemoryQueue;
    type Objects = &'a MemoryObjects;
    type Secrets = &'a MemorySecrets;
}

impl<'a> WorkerPorts for Borrowed<'a> {
    type Jobs = &'a MemoryExportJobs;
    type Partners = &'a MemoryPartners;
    type Secrets = &'a MemorySecrets;
    type Objects = &'a MemoryObjects;
    type Registry = &'a MemoryRegistry;
    type Audit = &'a MemoryAuditLog;
    type Erasures = &'a MemoryErasures;
}

/// The lake: two subjects (one `adult`, one `neonatal`) on two days, heart rate and
/// blood pressure; one systolic reading without its diastolic partner.
struct World {
    partners: MemoryPartners,
    jobs: MemoryExportJobs,
    objects: MemoryObjects,
    secrets: MemorySecrets,
    registry: MemoryRegistry,
    audit: MemoryAuditLog,
    queue: MemoryQueue,
    claims: MemoryOnce,
    erasures: MemoryErasures,
}

const DAY1: &str = "2026-11-20T08:00:00Z";
const DAY2: &str = "2026-11-21T08:00:00Z";

fn reading(device: &str, subject: &str, metric: Metric, value: f64, at: i64) -> Reading<'static> {
    Reading {
        reading_id: ReadingId::derive(device, "s-0", metric, at),
        subject_id: Cow::Owned(subject.into()),
        device_id: Cow::Owned(device.into()),
        sensor_id: Cow::Borrowed("s-0"),
        metric,
        value,
        measured_at: at,
        received_at: at + 1_000,
        source: Source::Stream,
        source_ref: Cow::Borrowed("shard-0:1"),
    }
}

fn lake_rows() -> Vec<Reading<'static>> {
    let mut rows = Vec::new();
    for day in [DAY1, DAY2] {
        let t0 = parse_rfc3339_ms(day).unwrap();
        for (device, subject) in [
            ("dev-adult", "subject-adult-7"),
            ("dev-neo", "subject-neo-3"),
        ] {
            for i in 0..30 {
                rows.push(reading(
                    device,
                    subject,
                    Metric::HeartRate,
                    60.0 + i as f64,
                    t0 + i * 60_000,
                ));
            }
            for i in 0..5 {
                let at = t0 + i * 600_000;
                rows.push(reading(
                    device,
                    subject,
                    Metric::BpSystolic,
                    120.0 + i as f64,
                    at,
                ));
                rows.push(reading(
                    device,
                    subject,
                    Metric::BpDiastolic,
                    80.0 + i as f64,
                    at,
                ));
            }
            rows.push(reading(
                device,
                subject,
                Metric::BpSystolic,
                131.0,
                t0 + 3_600_000 + 7,
            ));
        }
    }
    rows
}

fn policy(json: &str) -> Policy {
    Policy::from_json(json).expect("policy")
}

impl World {
    fn new() -> World {
        let objects = MemoryObjects::default();
        let mut by_partition: BTreeMap<String, Vec<Reading<'static>>> = BTreeMap::new();
        for r in lake_rows() {
            let p = pulselake_domain::Partition::of(r.metric, r.measured_at);
            by_partition.entry(p.to_string()).or_default().push(r);
        }
        for (p, rows) in by_partition {
            // Two files per partition: a worker reads every file.
            let (a, b) = rows.split_at(rows.len() / 2);
            for (i, part) in [a, b].into_iter().enumerate() {
                let body = encode_readings(part, FileLayout::default()).unwrap();
                objects.insert(LAKE, &format!("readings/{p}/part-{i}.parquet"), body);
            }
        }
        let registry = MemoryRegistry::new(
            [
                ("dev-adult", "subject-adult-7", "adult"),
                ("dev-neo", "subject-neo-3", "neonatal"),
            ]
            .map(|(d, s, c)| DeviceRecord {
                device_id: d.into(),
                assignments: vec![Assignment {
                    subject_id: s.into(),
                    valid_from: 0,
                    valid_to: None,
                    cohort: Some(c.into()),
                }],
            }),
        );
        let partners = MemoryPartners::default();
        let research = Partner {
            client_id: "research".into(),
            status: PartnerStatus::Active,
            policy: policy(
                r#"{"metrics":["heart_rate","bp_systolic","bp_diastolic"],"cohorts":["*"],"mode":"limited","dua":"DUA-2026-001"}"#,
            ),
            jwks: fixture("research-rs384.jwks.json"),
            key_secret: "partners/research".into(),
            version: 1,
        };
        let insurer = Partner {
            client_id: "insurer".into(),
            status: PartnerStatus::Active,
            policy: policy(
                r#"{"metrics":["heart_rate"],"cohorts":["adult"],"earliest":"2026-11-21T00:00:00Z","mode":"safe_harbor","dua":"DUA-2026-002"}"#,
            ),
            jwks: fixture("insurer-es384.jwks.json"),
            key_secret: "partners/insurer".into(),
            version: 1,
        };
        partners
            .0
            .lock()
            .unwrap()
            .insert("research".into(), research);
        partners.0.lock().unwrap().insert("insurer".into(), insurer);
        let secrets = MemorySecrets::default();
        secrets.0.lock().unwrap().insert(
            "partners/research".into(),
            vec![("v1".into(), "research-key-1".into())],
        );
        secrets.0.lock().unwrap().insert(
            "partners/insurer".into(),
            vec![("v1".into(), "insurer-key-1".into())],
        );
        World {
            partners,
            jobs: MemoryExportJobs::default(),
            objects,
            secrets,
            registry,
            audit: MemoryAuditLog::default(),
            queue: MemoryQueue::default(),
            claims: MemoryOnce::default(),
            erasures: MemoryErasures::default(),
        }
    }

    fn api(&self) -> PartnerApi<Borrowed<'_>> {
        PartnerApi {
            partners: &self.partners,
            claims: &self.claims,
            jobs: &self.jobs,
            signer: PemSigner(
                EncodingKey::from_rsa_pem(fixture("api-signer.pem").as_bytes()).unwrap(),
            ),
            verify_key: DecodingKey::from_rsa_pem(fixture("api-signer.pub.pem").as_bytes())
                .unwrap(),
            audit: &self.audit,
            queue: &self.queue,
            objects: &self.objects,
            secrets: &self.secrets,
            settings: Settings {
                base_url: BASE.into(),
                lake_bucket: LAKE.into(),
                exports_bucket: EXPORTS.into(),
            },
        }
    }

    fn worker(&self) -> ExportWorker<Borrowed<'_>> {
        ExportWorker {
            jobs: &self.jobs,
            partners: &self.partners,
            secrets: &self.secrets,
            objects: &self.objects,
            registry: CachedRegistry::new(
                &self.registry,
                Duration::from_secs(60),
                Duration::from_secs(60),
            ),
            audit: &self.audit,
            erasures: &self.erasures,
            lake_bucket: LAKE.into(),
            exports_bucket: EXPORTS.into(),
        }
    }

    /// Runs every queued unit (in the order queued).
    async fn drain(&self) -> Vec<WorkUnit> {
        let bodies: Vec<String> = std::mem::take(&mut *self.queue.0.lock().unwrap());
        let worker = self.worker();
        let mut units = Vec::new();
        for b in bodies {
            let unit: WorkUnit = serde_json::from_str(&b).unwrap();
            worker.run(&unit, now()).await.unwrap();
            units.push(unit);
        }
        units
    }
}

fn now() -> i64 {
    partner_api::now_ms()
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Request {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    Request {
        method: method.into(),
        path: path.into(),
        query: partner_api::http::form_pairs(query),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.into(),
        request_id: format!("req-{}", fastrand::u64(..)),
    }
}

static JTI: Mutex<u64> = Mutex::new(0);

fn assertion(client: &str, key_file: &str, alg: Algorithm, kid: &str) -> String {
    let jti = {
        let mut n = JTI.lock().unwrap();
        *n += 1;
        format!("jti-{}-{}", *n, fastrand::u64(..))
    };
    let now_s = now() / 1000;
    let claims = serde_json::json!({"iss": client, "sub": client, "aud": format!("{BASE}/auth/token"), "exp": now_s + 240, "jti": jti});
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    let pem = fixture(key_file);
    let key = match alg {
        Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn token_form(assertion: &str) -> String {
    format!(
        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}&scope=system%2FObservation.rs"
    )
}

async fn token_response<A>(api: &A, assertion: &str) -> Response
where
    A: Handle,
{
    api.call(request(
        "POST",
        "/auth/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        &token_form(assertion),
    ))
    .await
}

/// The API under test, whatever its adapters.
trait Handle {
    async fn call(&self, req: Request) -> Response;
}

impl<X: ApiPorts> Handle for PartnerApi<X> {
    async fn call(&self, req: Request) -> Response {
        self.handle(&req, now()).await
    }
}

async fn bearer(api: &impl Handle, client: &str) -> String {
    let a = match client {
        "research" => assertion(
            "research",
            "research-rs384.pem",
            Algorithm::RS384,
            "research-2026",
        ),
        _ => assertion(
            "insurer",
            "insurer-es384.pem",
            Algorithm::ES384,
            "insurer-2026",
        ),
    };
    let r = token_response(api, &a).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!(body["expires_in"].as_i64().unwrap() <= 300);
    format!("Bearer {}", body["access_token"].as_str().unwrap())
}

async fn get(api: &impl Handle, token: &str, path: &str) -> Response {
    api.call(request(
        "GET",
        path,
        &[
            ("authorization", token),
            ("accept", "application/fhir+json"),
        ],
        "",
    ))
    .await
}

async fn kick_off(api: &impl Handle, token: &str, path: &str) -> Response {
    api.call(request(
        "GET",
        path,
        &[
            ("authorization", token),
            ("accept", "application/fhir+json"),
            ("prefer", "respond-async"),
        ],
        "",
    ))
    .await
}

fn status_path(kick: &Response) -> String {
    let loc = kick
        .headers
        .iter()
        .find(|(k, _)| k == "content-location")
        .expect("content-location")
        .1
        .clone();
    assert!(loc.starts_with(BASE), "{loc}");
    loc[BASE.len()..].to_owned()
}

/// Runs an export to its manifest; returns it and every exported line.
async fn export(
    world: &World,
    client: &str,
    path: &str,
) -> (serde_json::Value, Vec<serde_json::Value>) {
    let api = world.api();
    let token = bearer(&api, client).await;
    let kick = kick_off(&api, &token, path).await;
    assert_eq!(kick.status, 202, "{}", kick.body);
    let status = status_path(&kick);
    let running = get(&api, &token, &status).await;
    assert_eq!(running.status, 202);
    assert!(
        running
            .headers
            .iter()
            .any(|(k, v)| k == "x-progress" && v.starts_with("0 of "))
    );
    world.drain().await;
    let done = get(&api, &token, &status).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.headers.iter().any(|(k, _)| k == "expires"));
    let manifest: serde_json::Value = serde_json::from_str(&done.body).unwrap();
    let mut lines = Vec::new();
    for out in manifest["output"].as_array().unwrap() {
        let url = out["url"].as_str().unwrap();
        let file = get(&api, &token, &url[BASE.len()..]).await;
        assert_eq!(file.status, 307);
        let location = &file
            .headers
            .iter()
            .find(|(k, _)| k == "location")
            .unwrap()
            .1;
        let (bucket, key) = location
            .strip_prefix("memory://")
            .unwrap()
            .split_once('/')
            .unwrap();
        let body = world.objects.get(bucket, key).unwrap();
        let text = std::str::from_utf8(&body).unwrap();
        let n = text.lines().count();
        assert_eq!(
            n as u64,
            out["count"].as_u64().unwrap(),
            "the manifest's count is the file's"
        );
        lines.extend(
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()),
        );
    }
    (manifest, lines)
}

fn codes(obs: &serde_json::Value) -> String {
    obs["code"]["coding"][0]["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn research_gets_every_row_as_observations_with_panels_and_pseudonyms() {
    let world = World::new();
    let (manifest, lines) = export(&world, "research", "/fhir/$export").await;
    // 2 days x 2 subjects: 30 heart rates, 5 panels, 1 lone systolic.
    let hr = lines.iter().filter(|o| codes(o) == "8867-4").count();
    let panels = lines.iter().filter(|o| codes(o) == "85354-9").count();
    let lone = lines.iter().filter(|o| codes(o) == "8480-6").count();
    assert_eq!((hr, panels, lone), (120, 20, 4));
    assert_eq!(manifest["deleted"], serde_json::json!([]));
    assert_eq!(manifest["extension"]["pseudonymKeyVersion"], "v1");
    assert_eq!(manifest["requiresAccessToken"], true);
    for o in &lines {
        assert_eq!(o["resourceType"], "Observation");
        assert_eq!(o["status"], "final");
        assert_eq!(o["category"][0]["coding"][0]["code"], "vital-signs");
        assert_eq!(
            o["effectiveDateTime"].as_str().unwrap().len(),
            "2026-11-20T08:00:00.000Z".len()
        );
    }
    let panel = lines.iter().find(|o| codes(o) == "85354-9").unwrap();
    let components: BTreeSet<String> = panel["component"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"]["coding"][0]["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        components,
        BTreeSet::from(["8480-6".to_owned(), "8462-4".to_owned()])
    );

    // Patients are research's pseudonyms of the two subjects, nothing else.
    let key = NamingKey::new(b"research-key-1".to_vec());
    let patients: BTreeSet<String> = lines
        .iter()
        .map(|o| o["subject"]["reference"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = ["subject-adult-7", "subject-neo-3"]
        .iter()
        .map(|s| format!("Patient/{}", key.pseudonym(s)))
        .collect();
    assert_eq!(patients, expected);

    // Resource ids are unique, and a second export gives the same ids and patients.
    let ids: BTreeSet<String> = lines
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), lines.len());
    let (_, again) = export(&world, "research", "/fhir/$export").await;
    let ids_again: BTreeSet<String> = again
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ids_again);

    // No subject or device id in any exported file or audit record.
    let mut all_text = String::new();
    for k in world.objects.keys(EXPORTS) {
        all_text.push_str(std::str::from_utf8(&world.objects.get(EXPORTS, &k).unwrap()).unwrap());
        all_text.push_str(&k);
    }
    for (_, record) in world.audit.0.lock().unwrap().iter() {
        all_text.push_str(&record.to_string());
    }
    for secret in ["subject-adult-7", "subject-neo-3", "dev-adult", "dev-neo"] {
        assert!(!all_text.contains(secret), "{secret} leaked");
    }
    let events: Vec<String> = world
        .audit
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, r)| r["event"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(events, ["export_completed", "export_completed"]);
}

#[tokio::test]
async fn insurer_sees_only_its_cohort_window_and_years_and_never_research_jobs() {
    let world = World::new();
    let (manifest, lines) = export(
        &world,
        "insurer",
        "/fhir/$export?_typeFilter=Observation%3Fcode%3Dhttp%3A%2F%2Floinc.org%7C8867-4",
    )
    .await;
    // Adult subject, day 2 only (the policy's earliest), heart rate only, year only.
    assert_eq!(lines.len(), 30);
    let key = NamingKey::new(b"insurer-key-1".to_vec());
    for o in &lines {
        assert_eq!(codes(o), "8867-4");
        assert_eq!(o["effectiveDateTime"], "2026");
        assert_eq!(
            o["subject"]["reference"],
            format!("Patient/{}", key.pseudonym("subject-adult-7"))
        );
    }
    assert_eq!(manifest["extension"]["deIdentification"], "safe_harbor");
    // What the policy withheld (its window, other cohorts) is in the manifest's errors.
    assert_eq!(manifest["error"][0]["count"], 2);
    assert_eq!(manifest["error"][0]["type"], "OperationOutcome");

    // A window before the policy's: accepted, and empty.
    let (_, early) = export(
        &world,
        "insurer",
        "/fhir/$export?_until=2026-11-20T23:00:00Z",
    )
    .await;
    assert!(early.is_empty());

    // Research's export is invisible to the insurer: status, files and cancel.
    let api = world.api();
    let research = bearer(&api, "research").await;
    let kick = kick_off(&api, &research, "/fhir/$export").await;
    let status = status_path(&kick);
    world.drain().await;
    let insurer = bearer(&api, "insurer").await;
    assert_eq!(get(&api, &insurer, &status).await.status, 404);
    let research_manifest: serde_json::Value =
        serde_json::from_str(&get(&api, &research, &status).await.body).unwrap();
    let file_url = research_manifest["output"][0]["url"].as_str().unwrap();
    assert_eq!(
        get(&api, &insurer, &file_url[BASE.len()..]).await.status,
        404
    );
    let del = api
        .call(request(
            "DELETE",
            &status,
            &[("authorization", &insurer)],
            "",
        ))
        .await;
    assert_eq!(del.status, 404);
    assert_eq!(get(&api, &research, &status).await.status, 200);

    // One subject, two partners, two unlinkable pseudonyms.
    let r_key = NamingKey::new(b"research-key-1".to_vec());
    assert_ne!(
        r_key.pseudonym("subject-adult-7"),
        key.pseudonym("subject-adult-7")
    );
}

#[tokio::test]
async fn policy_denials_and_bad_tokens_never_give_data() {
    let world = World::new();
    let api = world.api();
    let insurer = bearer(&api, "insurer").await;
    // A metric or a cohort outside the policy: 403 at kick-off.
    for path in [
        "/fhir/$export?_typeFilter=Observation%3Fcode%3Dhttp%3A%2F%2Floinc.org%7C59408-5",
        "/fhir/Group/neonatal/$export",
    ] {
        let r = kick_off(&api, &insurer, path).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(r.body.contains("OperationOutcome"));
    }
    // Malformed parameters: 400.
    for path in [
        "/fhir/$export?_since=yesterday",
        "/fhir/$export?_type=Patient,Encounter",
        "/fhir/$export?_since=2026-11-22T00:00:00Z&_until=2026-11-21T00:00:00Z",
    ] {
        assert_eq!(kick_off(&api, &insurer, path).await.status, 400, "{path}");
    }
    // No token, a forged one, a tampered one: 401.
    assert_eq!(kick_off(&api, "", "/fhir/$export").await.status, 401);
    assert_eq!(
        kick_off(&api, "Bearer abc.def.ghi", "/fhir/$export")
            .await
            .status,
        401
    );
    let tampered = format!("{}x", insurer);
    assert_eq!(kick_off(&api, &tampered, "/fhir/$export").await.status, 401);

    // Token endpoint: forged key, replayed jti, unknown client.
    let forged = assertion(
        "research",
        "impostor-rs384.pem",
        Algorithm::RS384,
        "research-2026",
    );
    let r = token_response(&api, &forged).await;
    assert_eq!((r.status, r.body.contains("invalid_client")), (400, true));
    let once = assertion(
        "research",
        "research-rs384.pem",
        Algorithm::RS384,
        "research-2026",
    );
    assert_eq!(token_response(&api, &once).await.status, 200);
    let replay = token_response(&api, &once).await;
    assert_eq!(
        (replay.status, replay.body.contains("invalid_client")),
        (400, true)
    );
    let stranger = assertion(
        "stranger",
        "research-rs384.pem",
        Algorithm::RS384,
        "research-2026",
    );
    assert_eq!(token_response(&api, &stranger).await.status, 400);

    // A suspended partner: no token, and a token it holds stops working.
    world
        .partners
        .0
        .lock()
        .unwrap()
        .get_mut("insurer")
        .unwrap()
        .status = PartnerStatus::Suspended;
    assert_eq!(kick_off(&api, &insurer, "/fhir/$export").await.status, 403);
    let a = assertion(
        "insurer",
        "insurer-es384.pem",
        Algorithm::ES384,
        "insurer-2026",
    );
    assert_eq!(token_response(&api, &a).await.status, 400);
    assert!(
        world.queue.0.lock().unwrap().is_empty(),
        "no export was queued"
    );
    assert!(world.objects.keys(EXPORTS).is_empty());
    let _ = Mode::Limited;
}

#[tokio::test]
async fn a_retried_unit_adds_nothing_and_a_cancel_leaves_no_files() {
    let world = World::new();
    let api = world.api();
    let token = bearer(&api, "research").await;
    let kick = kick_off(&api, &token, "/fhir/$export").await;
    let status = status_path(&kick);
    let units = world.drain().await;
    // The first unit again, as after a worker died before deleting its message.
    let files_before = world.objects.keys(EXPORTS);
    let report = world.worker().run(&units[0], now()).await.unwrap();
    assert!(
        report.skipped,
        "the job is complete: a late retry keeps nothing"
    );
    assert_eq!(world.objects.keys(EXPORTS), files_before);

    let manifest: serde_json::Value =
        serde_json::from_str(&get(&api, &token, &status).await.body).unwrap();
    let total: u64 = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 144);

    // Cancel: 202, every file gone, later polls 404, a second cancel 404.
    let del = api
        .call(request("DELETE", &status, &[("authorization", &token)], ""))
        .await;
    assert_eq!(del.status, 202);
    assert!(world.objects.keys(EXPORTS).is_empty());
    assert_eq!(get(&api, &token, &status).await.status, 404);
    assert_eq!(
        api.call(request("DELETE", &status, &[("authorization", &token)], ""))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn a_unit_retried_while_the_job_runs_counts_once() {
    let world = World::new();
    let api = world.api();
    let token = bearer(&api, "research").await;
    let kick = kick_off(&api, &token, "/fhir/$export").await;
    let status = status_path(&kick);
    let bodies: Vec<String> = world.queue.0.lock().unwrap().clone();
    let units: Vec<WorkUnit> = bodies
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let worker = world.worker();
    // The first unit twice (a redelivery), then the rest.
    worker.run(&units[0], now()).await.unwrap();
    worker.run(&units[0], now()).await.unwrap();
    let running = get(&api, &token, &status).await;
    assert!(
        running
            .headers
            .iter()
            .any(|(k, v)| k == "x-progress" && v.starts_with("1 of "))
    );
    for u in &units[1..] {
        worker.run(u, now()).await.unwrap();
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&get(&api, &token, &status).await.body).unwrap();
    let total: u64 = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 144, "each reading once");
}

#[tokio::test]
async fn a_tombstoned_subject_is_never_exported_even_before_the_lake_is_rewritten() {
    use pulselake_adapters::{ErasureRequest, ErasureRequests};
    let world = World::new();
    let (_, before) = export(&world, "research", "/fhir/$export").await;
    world
        .erasures
        .record(&ErasureRequest {
            subject_id: "subject-adult-7".into(),
            aliases: Vec::new(),
            devices: Vec::new(),
            periods: Vec::new(),
            request_id: "erasure-1".into(),
            requested_by: "dpo".into(),
            reason: "Art. 17".into(),
            requested_at: now(),
            completed_at: None,
            evidence: None,
        })
        .await
        .unwrap();
    let (manifest, after) = export(&world, "research", "/fhir/$export").await;
    let patients = |lines: &[serde_json::Value]| -> BTreeSet<String> {
        lines
            .iter()
            .map(|o| o["subject"]["reference"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(patients(&before).len(), 2);
    assert_eq!(patients(&after).len(), 1, "only the other subject");
    assert!(patients(&after).is_subset(&patients(&before)));
    assert_eq!(
        after.len() * 2,
        before.len(),
        "the two subjects have as many readings"
    );
    // The partner is told to delete what it holds of the erased subject (Art. 19).
    let gone: Vec<String> = patients(&before)
        .difference(&patients(&after))
        .cloned()
        .collect();
    let deleted = manifest["deleted"].as_array().unwrap();
    assert_eq!(deleted.len(), 1, "{manifest}");
    let url = deleted[0]["url"].as_str().unwrap();
    let api = world.api();
    let token = bearer(&api, "research").await;
    let file = get(&api, &token, &url[BASE.len()..]).await;
    assert_eq!(file.status, 307, "{}", file.body);
    let name = url.rsplit('/').next().unwrap();
    let body = world
        .objects
        .keys(EXPORTS)
        .into_iter()
        .find(|k| k.ends_with(name))
        .and_then(|k| world.objects.get(EXPORTS, &k))
        .unwrap();
    let bundle: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(bundle["type"], "transaction");
    assert_eq!(bundle["entry"][0]["request"]["method"], "DELETE");
    assert_eq!(
        bundle["entry"][0]["request"]["url"],
        format!("Observation?subject={}", gone[0])
    );
}
