//! The partner API and the export worker over in-memory adapters, shared by the tests
//! that drive them: a lake of two subjects on two days, two partners (research: a
//! limited data set; insurer: Safe Harbor), tokens, kick-offs, a worker that drains
//! the queue, and the export's files read back.

use std::borrow::Cow;
use std::collections::BTreeMap;
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
use pulselake_domain::partner::{PartnerStatus, Policy};
use pulselake_domain::registry::{Assignment, DeviceRecord};
use pulselake_domain::time::parse_rfc3339_ms;
use pulselake_domain::{Metric, Reading, ReadingId, Source};
use pulselake_lake::{FileLayout, encode_readings};

pub const BASE: &str = "https://api.example.test/v1";
pub const LAKE: &str = "lake";
pub const EXPORTS: &str = "exports";
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/partners");

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture")
}

/// Signs access tokens with a PEM key (KMS's part in the deployed stack).
pub struct PemSigner(pub EncodingKey);

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
pub struct Borrowed<'a>(std::marker::PhantomData<&'a ()>);

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
pub struct World {
    pub partners: MemoryPartners,
    pub jobs: MemoryExportJobs,
    pub objects: MemoryObjects,
    pub secrets: MemorySecrets,
    pub registry: MemoryRegistry,
    pub audit: MemoryAuditLog,
    pub queue: MemoryQueue,
    pub claims: MemoryOnce,
    pub erasures: MemoryErasures,
}

pub const DAY1: &str = "2026-11-20T08:00:00Z";
pub const DAY2: &str = "2026-11-21T08:00:00Z";

pub fn reading(
    device: &str,
    subject: &str,
    metric: Metric,
    value: f64,
    at: i64,
) -> Reading<'static> {
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
        cohort: None,
    }
}

pub fn lake_rows() -> Vec<Reading<'static>> {
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

pub fn policy(json: &str) -> Policy {
    Policy::from_json(json).expect("policy")
}

impl World {
    pub fn new() -> World {
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
                r#"{"metrics":["heart_rate"],"cohorts":["adult"],"latest":"2027-01-01T00:00:00Z","mode":"safe_harbor","dua":"DUA-2026-002"}"#,
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

    pub fn api(&self) -> PartnerApi<Borrowed<'_>> {
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

    pub fn worker(&self) -> ExportWorker<Borrowed<'_>> {
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
    pub async fn drain(&self) -> Vec<WorkUnit> {
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

pub fn now() -> i64 {
    partner_api::now_ms()
}

pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Request {
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

pub static JTI: Mutex<u64> = Mutex::new(0);

pub fn assertion(client: &str, key_file: &str, alg: Algorithm, kid: &str) -> String {
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

pub fn token_form(assertion: &str) -> String {
    format!(
        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}&scope=system%2FObservation.rs"
    )
}

pub async fn token_response<A>(api: &A, assertion: &str) -> Response
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
pub trait Handle {
    async fn call(&self, req: Request) -> Response;
}

impl<X: ApiPorts> Handle for PartnerApi<X> {
    async fn call(&self, req: Request) -> Response {
        self.handle(&req, now()).await
    }
}

pub async fn bearer(api: &impl Handle, client: &str) -> String {
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

pub async fn get(api: &impl Handle, token: &str, path: &str) -> Response {
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

pub async fn kick_off(api: &impl Handle, token: &str, path: &str) -> Response {
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

pub fn status_path(kick: &Response) -> String {
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
pub async fn export(
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

pub fn codes(obs: &serde_json::Value) -> String {
    obs["code"]["coding"][0]["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Records an erasure request for `subject` (a tombstone: exports skip it at once).
pub async fn tombstone(world: &World, subject: &str) {
    use pulselake_adapters::ErasureRequests;
    world
        .erasures
        .record(&pulselake_adapters::ErasureRequest {
            subject_id: subject.into(),
            aliases: Vec::new(),
            devices: Vec::new(),
            periods: Vec::new(),
            request_id: format!("erasure-{subject}"),
            requested_by: "dpo".into(),
            reason: "Art. 17".into(),
            requested_at: now(),
            completed_at: None,
            evidence: None,
        })
        .await
        .unwrap();
}
