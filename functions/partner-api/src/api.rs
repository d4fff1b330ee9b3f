//! The partner API's routes (FHIR Bulk Data Access with SMART Backend Services),
//! generic over their ports. Every route but discovery checks the access token and the
//! partner's status first; every request is audited; errors are `OperationOutcome`s
//! (OAuth errors on the token endpoint), never a stack trace and never data.

use jsonwebtoken::DecodingKey;
use pulselake_adapters::{
    AuditLog, AwsError, ExportJobs, ObjectReader, ObjectWriter, OnceClaims, Partner, Partners,
    Presigner, Secrets, TokenSigner, VersionedObjects, WorkQueue,
};
use pulselake_domain::partner::{PartnerStatus, Refusal, authorize, parse_export};
use pulselake_domain::time::format_rfc3339_ms;

use crate::auth::{self, AccessClaims, OAuthError, TokenRequest};
use crate::config::Settings;
use crate::http::{Request, Response};
use crate::jobs::Exports;

/// The ports the API works with, named once: AWS's in the function, in-memory ones in
/// tests. Each route takes the ones it uses.
pub trait ApiPorts {
    type Partners: Partners;
    type Claims: OnceClaims;
    type Jobs: ExportJobs;
    type Signer: TokenSigner;
    type Audit: AuditLog;
    type Queue: WorkQueue;
    type Objects: ObjectReader + ObjectWriter + VersionedObjects + Presigner;
    type Secrets: Secrets;
}

/// Everything the API needs, built once per cold start.
pub struct PartnerApi<X: ApiPorts> {
    pub partners: X::Partners,
    /// One-time claims: a client assertion's `jti` is accepted once.
    pub claims: X::Claims,
    pub jobs: X::Jobs,
    pub signer: X::Signer,
    /// The signer's public key, to verify access tokens.
    pub verify_key: DecodingKey,
    pub audit: X::Audit,
    pub queue: X::Queue,
    pub objects: X::Objects,
    pub secrets: X::Secrets,
    pub settings: Settings,
}

/// What a request came to, for its audit record.
struct Outcome {
    /// The partner the caller proved to be (never one it only named).
    partner: Option<String>,
    response: Response,
    note: Option<String>,
    /// The job a kick-off created or a cancel stopped.
    job: Option<String>,
}

impl Outcome {
    fn anonymous(response: Response) -> Outcome {
        Outcome {
            partner: None,
            response,
            note: None,
            job: None,
        }
    }

    fn of(partner: &str, response: Response) -> Outcome {
        Outcome {
            partner: Some(partner.to_owned()),
            response,
            note: None,
            job: None,
        }
    }
}

/// Request bodies larger than this are refused before they are parsed (a kick-off's
/// `Parameters` and a token form are a few KB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Tokens one partner may get per minute (one lives 300 s: a client needs one).
pub const TOKENS_PER_MINUTE: u32 = 30;
/// Query or body parameters beyond this many are refused before they are read.
pub const MAX_PARAMETERS: usize = 50;
/// An audit record keeps at most this many parameters, each value cut to
/// `AUDIT_VALUE_CHARS`: anonymous callers cannot fill compliance storage.
const AUDIT_PARAMETERS: usize = 20;
const AUDIT_VALUE_CHARS: usize = 200;

/// The answer to a client that did not prove who it is: the same whether the client is
/// unknown, suspended or badly signed, so the endpoint tells no one who exists.
const NOT_AUTHENTICATED: &str = "the client could not be authenticated: check the client_id, the key it signed with (registered in its JWK Set) and the assertion's claims (SMART Backend Services)";

fn server_error(e: &AwsError) -> Response {
    Response::server_error(e)
}

impl<X: ApiPorts> PartnerApi<X> {
    /// The job routes' view: the jobs table and the exports bucket.
    fn exports(&self) -> Exports<'_, X::Jobs, X::Objects> {
        Exports {
            jobs: &self.jobs,
            objects: &self.objects,
            settings: &self.settings,
        }
    }

    /// Handles one request, and records it in the audit store.
    pub async fn handle(&self, req: &Request, now_ms: i64) -> Response {
        let outcome = match bounded(req) {
            Ok(()) => self.route(req, now_ms).await,
            Err(refused) => Outcome::anonymous(refused),
        };
        let parameters = audited_parameters(req);
        let record = serde_json::json!({
            "at": format_rfc3339_ms(now_ms),
            "request_id": cut(&req.request_id, 100),
            "partner": outcome.partner,
            "method": cut(&req.method, 10),
            "route": cut(&req.path, AUDIT_VALUE_CHARS),
            "parameters": parameters.0,
            "parameters_total": parameters.1,
            "job": outcome.job,
            "status": outcome.response.status,
            "note": outcome.note,
        });
        if let Err(e) = self.audit.append("partner-api", now_ms, &record).await {
            // An access that cannot be audited does not happen.
            tracing::error!(error = %e, "the audit record could not be written; the request is refused");
            return Response::outcome(
                503,
                "transient",
                "the request could not be audited; try again",
            );
        }
        outcome.response
    }

    async fn route(&self, req: &Request, now_ms: i64) -> Outcome {
        let path = req.path.trim_end_matches('/');
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (req.method.as_str(), segments.as_slice()) {
            // SMART App Launch 2.2: at the FHIR base URL (and where it was served before).
            ("GET", [".well-known", "smart-configuration"])
            | ("GET", ["fhir", ".well-known", "smart-configuration"]) => {
                Outcome::anonymous(self.smart_configuration())
            }
            ("GET", ["fhir", "metadata"]) => Outcome::anonymous(self.capability_statement(now_ms)),
            ("POST", ["auth", "token"]) => self.token(req, now_ms).await,
            (_, ["auth", "token"]) => Outcome::anonymous(method_not_allowed("POST")),
            (
                _,
                [".well-known", "smart-configuration"]
                | ["fhir", ".well-known", "smart-configuration"]
                | ["fhir", "metadata"],
            ) => Outcome::anonymous(method_not_allowed("GET")),
            (method, ["fhir", rest @ ..]) => {
                let (partner, claims) = match self.authenticate(req, now_ms).await {
                    Ok(p) => p,
                    Err(o) => return o,
                };
                let _ = claims;
                let mut job = None;
                let response = match (method, rest) {
                    ("GET" | "POST", ["$export"] | ["Patient", "$export"]) => {
                        self.kick_off(req, &partner, None, &mut job, now_ms).await
                    }
                    ("GET" | "POST", ["Group", group, "$export"]) => {
                        self.kick_off(req, &partner, Some(group), &mut job, now_ms)
                            .await
                    }
                    ("GET", ["Group"]) => crate::groups::search(&partner, &self.settings),
                    ("GET", ["Group", id]) => crate::groups::read(&partner, id),
                    ("GET", ["export-status", id]) => {
                        self.exports().status(&partner, id, now_ms).await
                    }
                    ("DELETE", ["export-status", id]) => {
                        job = Some(cut(id, 32));
                        // The cancel is on record before any file goes.
                        match self
                            .record_intent(req, &partner, "export_cancel", id, now_ms)
                            .await
                        {
                            Ok(()) => self.exports().cancel(&partner, id).await,
                            Err(refused) => refused,
                        }
                    }
                    ("GET", ["export-files", id, file]) => {
                        self.exports().download(&partner, id, file).await
                    }
                    (_, ["$export"] | ["Patient", "$export"] | ["Group", _, "$export"]) => {
                        method_not_allowed("GET, POST")
                    }
                    (_, ["Group"] | ["Group", _]) => method_not_allowed("GET"),
                    (_, ["export-status", _]) => method_not_allowed("GET, DELETE"),
                    (_, ["export-files", _, _]) => method_not_allowed("GET"),
                    _ => Response::outcome(404, "not-found", "no such resource"),
                };
                let mut outcome = Outcome::of(&partner.client_id, response);
                outcome.job = job;
                outcome
            }
            _ => Outcome::anonymous(Response::outcome(404, "not-found", "no such resource")),
        }
    }

    /// `POST /auth/token`: client credentials with a signed client assertion.
    async fn token(&self, req: &Request, now_ms: i64) -> Outcome {
        let now_s = now_ms / 1000;
        let form_ok = req
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        let oauth = |status: u16, e: OAuthError| {
            Response::json(status, &e).with_header("cache-control", "no-store")
        };
        if !form_ok {
            let e = OAuthError::new(
                "invalid_request",
                "the body must be application/x-www-form-urlencoded",
            );
            return Outcome::anonymous(oauth(400, e));
        }
        let token_req = TokenRequest::from_form(&req.body);
        let granted = match token_req.check() {
            Ok(g) => g,
            Err(e) => return Outcome::anonymous(oauth(400, e)),
        };
        let client_id = match auth::claimed_client(&token_req.assertion) {
            Ok(c) => c,
            Err(e) => return Outcome::anonymous(oauth(400, e)),
        };
        // Unknown, suspended and badly signed clients get one answer, and the audit
        // names no partner the caller did not prove to be (the note says why, for ops).
        let unproven = |why: &str| Outcome {
            partner: None,
            note: Some(format!("client not authenticated: {why}")),
            response: oauth(400, OAuthError::new("invalid_client", NOT_AUTHENTICATED)),
            job: None,
        };
        let partner = match self.partners.get(&client_id).await {
            Ok(Some(p)) => p,
            Ok(None) => return unproven("no such client"),
            Err(e) => return Outcome::anonymous(server_error(&e)),
        };
        let refuse = |e: OAuthError| Outcome {
            partner: Some(partner.client_id.clone()),
            note: Some(e.error_description.clone()),
            response: oauth(400, e),
            job: None,
        };
        let verified = match auth::verify_assertion(
            &token_req.assertion,
            &partner.client_id,
            &partner.jwks,
            &self.settings.token_url(),
            now_s,
        ) {
            Ok(v) => v,
            Err(e) => return unproven(&e.error_description),
        };
        if partner.status != PartnerStatus::Active {
            return unproven("suspended");
        }
        // A proven client that asks for tokens in a loop is slowed, not the others.
        let minute = format!("tokens@{}", &format_rfc3339_ms(now_ms)[..16]);
        match self
            .jobs
            .count_quota(&partner.client_id, &minute, TOKENS_PER_MINUTE)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                let mut o = refuse(OAuthError::new(
                    "slow_down",
                    format!(
                        "more than {TOKENS_PER_MINUTE} tokens a minute; a token lives {} s, reuse it",
                        auth::TOKEN_SECONDS
                    ),
                ));
                o.response.status = 429;
                o.response = o.response.with_header("retry-after", "60");
                return o;
            }
            Err(e) => return Outcome::anonymous(server_error(&e)),
        }
        match self
            .claims
            .claim(
                &format!("jti#{}#{}", partner.client_id, verified.jti),
                verified.exp + 60,
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return refuse(OAuthError::new(
                    "invalid_client",
                    "the client_assertion's jti was used before",
                ));
            }
            Err(e) => return Outcome::anonymous(server_error(&e)),
        }
        let Some(token_id) = auth::unguessable_id() else {
            return Outcome::anonymous(server_error(&AwsError::transient(
                "getrandom",
                "the OS gave no randomness",
            )));
        };
        let scope = granted.join(" ");
        let claims = AccessClaims {
            iss: self.settings.base_url.clone(),
            sub: partner.client_id.clone(),
            aud: self.settings.fhir_base(),
            iat: now_s,
            exp: now_s + auth::TOKEN_SECONDS,
            jti: token_id,
            scope: scope.clone(),
        };
        let input = auth::signing_input(self.signer.key_id(), &claims);
        let signature = match self.signer.sign(input.as_bytes()).await {
            Ok(s) => s,
            Err(e) => return Outcome::anonymous(server_error(&e)),
        };
        // Issued tokens are on record: a token signed any other way (someone else with
        // rights on the key) is refused.
        match self
            .claims
            .claim(&issued_key(&claims.jti), claims.exp + 60)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return Outcome::anonymous(server_error(&AwsError::transient(
                    "token",
                    "a token id was issued twice",
                )));
            }
            Err(e) => return Outcome::anonymous(server_error(&e)),
        }
        let body = serde_json::json!({
            "access_token": auth::token(&input, &signature),
            "token_type": "bearer",
            "expires_in": auth::TOKEN_SECONDS,
            "scope": scope,
        });
        Outcome::of(
            &partner.client_id,
            Response::json(200, &body).with_header("cache-control", "no-store"),
        )
    }

    /// The bearer token and the partner behind it, or the refusal (`401`, `403`).
    async fn authenticate(
        &self,
        req: &Request,
        now_ms: i64,
    ) -> Result<(Partner, AccessClaims), Outcome> {
        let unauthorized = |why: &str| {
            Outcome::anonymous(
                Response::outcome(401, "login", why)
                    .with_header("www-authenticate", "Bearer error=\"invalid_token\""),
            )
        };
        let Some(token) = req.header("authorization").and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        }) else {
            return Err(unauthorized(
                "an access token is required (SMART Backend Services: POST /auth/token)",
            ));
        };
        let claims = match auth::verify_access(
            token.trim(),
            &self.verify_key,
            &self.settings.base_url,
            &self.settings.fhir_base(),
        ) {
            Ok(c) if c.exp * 1000 > now_ms => c,
            Ok(_) => return Err(unauthorized("the access token has expired")),
            Err(e) => return Err(unauthorized(&e.0)),
        };
        match self.claims.held(&issued_key(&claims.jti)).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(unauthorized(
                    "the access token was not issued by this server",
                ));
            }
            Err(e) => return Err(Outcome::anonymous(server_error(&e))),
        }
        match self.partners.get(&claims.sub).await {
            Ok(Some(p)) if p.status == PartnerStatus::Active => Ok((p, claims)),
            Ok(Some(p)) => Err(Outcome::of(
                &p.client_id,
                Response::outcome(403, "forbidden", "the partner is suspended"),
            )),
            Ok(None) => Err(unauthorized("the access token's client is not registered")),
            Err(e) => Err(Outcome::anonymous(server_error(&e))),
        }
    }

    /// A side effect about to happen, on record first: when the record cannot be written
    /// the effect does not happen (`503`).
    async fn record_intent(
        &self,
        req: &Request,
        partner: &Partner,
        event: &str,
        job: &str,
        now_ms: i64,
    ) -> Result<(), Response> {
        let (parameters, total) = audited_parameters(req);
        let record = serde_json::json!({
            "at": format_rfc3339_ms(now_ms),
            "request_id": cut(&req.request_id, 100),
            "event": event,
            "partner": partner.client_id,
            "job": cut(job, 32),
            "parameters": parameters,
            "parameters_total": total,
        });
        self.audit
            .append("partner-api", now_ms, &record)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "an intent could not be audited; nothing was done");
                Response::outcome(
                    503,
                    "transient",
                    "the request could not be audited; try again",
                )
            })
    }

    /// A `$export` kick-off.
    async fn kick_off(
        &self,
        req: &Request,
        partner: &Partner,
        group: Option<&str>,
        job_created: &mut Option<String>,
        now_ms: i64,
    ) -> Response {
        if !req
            .header("prefer")
            .is_some_and(|p| p.to_ascii_lowercase().contains("respond-async"))
        {
            return Response::outcome(
                400,
                "invalid",
                "bulk export needs the header Prefer: respond-async",
            );
        }
        if let Some(accept) = req.header("accept")
            && !(accept.contains("application/fhir+json")
                || accept.contains("*/*")
                || accept.contains("application/json"))
        {
            return Response::outcome(400, "invalid", "Accept must be application/fhir+json");
        }
        let grant = match kick_off_parameters(req)
            .and_then(|params| parse_export(&params, group))
            .and_then(|request| authorize(&partner.policy, partner.status, &request))
        {
            Ok(g) => g,
            Err(Refusal::BadRequest(why)) => return Response::outcome(400, "invalid", &why),
            Err(Refusal::Forbidden(why)) => return Response::outcome(403, "forbidden", &why),
        };
        let url = format!("{}{}", self.settings.base_url, request_line(req));
        let Some(id) = auth::unguessable_id() else {
            return server_error(&AwsError::transient(
                "getrandom",
                "the OS gave no randomness",
            ));
        };
        if let Err(refused) = self
            .record_intent(req, partner, "export_kickoff", &id, now_ms)
            .await
        {
            return refused;
        }
        let started = self
            .exports()
            .start(&self.queue, &self.secrets, partner, grant, &id, url, now_ms)
            .await;
        if matches!(started, Ok(Ok(_))) {
            *job_created = Some(id);
        }
        match started {
            Ok(Ok(job)) => Response::empty(202).with_header(
                "content-location",
                format!("{}/export-status/{}", self.settings.fhir_base(), job.id),
            ),
            Ok(Err(limit)) => limit,
            Err(e) => server_error(&e),
        }
    }

    fn smart_configuration(&self) -> Response {
        Response::json(
            200,
            &serde_json::json!({
                "issuer": self.settings.base_url,
                "token_endpoint": self.settings.token_url(),
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
                "grant_types_supported": ["client_credentials"],
                "scopes_supported": auth::SCOPES,
                // REQUIRED in SMART App Launch 2.2 (PKCE; S256 only, never plain), though
                // backend services use no authorization endpoint.
                "code_challenge_methods_supported": ["S256"],
                "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
            }),
        )
    }

    fn capability_statement(&self, now_ms: i64) -> Response {
        Response::fhir(
            200,
            &serde_json::json!({
                "resourceType": "CapabilityStatement",
                "status": "active",
                "date": format_rfc3339_ms(now_ms)[..10],
                "kind": "instance",
                "fhirVersion": "4.0.1",
                "format": ["json"],
                "implementation": {"description": "pulselake partner API", "url": self.settings.fhir_base()},
                "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
                "rest": [{
                    "mode": "server",
                    "security": {
                        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
                        "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                                       "extension": [{"url": "token", "valueUri": self.settings.token_url()}]}]
                    },
                    "resource": [{"type": "Observation", "profile": "http://hl7.org/fhir/StructureDefinition/vitalsigns",
                                  "searchParam": [{"name": "code", "type": "token",
                                                   "documentation": "usable in the export's _typeFilter: Observation?code=http://loinc.org|<code>"}]},
                                 {"type": "Group", "interaction": [{"code": "read"}, {"code": "search-type"}],
                                  "operation": [{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}]},
                                 {"type": "Patient", "operation": [{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}]}],
                    "operation": [{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                                   "documentation": "parameters: _outputFormat, _since, _until, _type, _typeFilter (GET, or POST with a Parameters body)"}]
                }]
            }),
        )
    }
}

/// `405` with the `Allow` header RFC 9110 asks for.
fn method_not_allowed(allow: &str) -> Response {
    Response::outcome(
        405,
        "not-supported",
        &format!("this method is not supported here; use {allow}"),
    )
    .with_header("allow", allow)
}

/// The kick-off's parameters: the query string (GET), or a FHIR `Parameters` body (POST).
fn kick_off_parameters(req: &Request) -> Result<Vec<(String, String)>, Refusal> {
    let bad = |why: &str| Refusal::BadRequest(why.to_owned());
    if req.method != "POST" || req.body.trim().is_empty() {
        return Ok(req.query.clone());
    }
    let body: serde_json::Value = serde_json::from_str(&req.body)
        .map_err(|_| bad("the body is not a FHIR Parameters resource"))?;
    if body["resourceType"] != "Parameters" {
        return Err(bad("the body is not a FHIR Parameters resource"));
    }
    let parameters = match body.get("parameter") {
        None => &[][..],
        Some(serde_json::Value::Array(list)) => list.as_slice(),
        Some(_) => return Err(bad("Parameters.parameter must be a list")),
    };
    if parameters.len() + req.query.len() > MAX_PARAMETERS {
        return Err(bad(&format!("more than {MAX_PARAMETERS} parameters")));
    }
    let mut out = req.query.clone();
    for p in parameters {
        let name = p["name"]
            .as_str()
            .ok_or_else(|| bad("a parameter has no name"))?;
        let value = ["valueString", "valueInstant", "valueCode", "valueDateTime"]
            .iter()
            .find_map(|k| p[*k].as_str())
            .ok_or_else(|| bad(&format!("parameter {name} has no value this server reads")))?;
        out.push((name.to_owned(), value.to_owned()));
    }
    Ok(out)
}

/// The kick-off's URL for the manifest's `request`: for a POST, without its
/// parameters (as the Bulk Data spec says); for a GET, its parameters as the partner
/// sent them (API Gateway hands them over decoded: they are encoded back only where a
/// query string must be).
fn request_line(req: &Request) -> String {
    const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'&')
        .add(b'+')
        .add(b'<')
        .add(b'>')
        .add(b'|');
    if req.method == "POST" || req.query.is_empty() {
        return req.path.clone();
    }
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string();
    let query: Vec<String> = req
        .query
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    format!("{}?{}", req.path, query.join("&"))
}

/// Refuses what is too large to read before reading it.
fn bounded(req: &Request) -> Result<(), Response> {
    if req.body.len() > MAX_BODY_BYTES {
        return Err(Response::outcome(
            413,
            "too-costly",
            &format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    if req.query.len() > MAX_PARAMETERS {
        return Err(Response::outcome(
            400,
            "too-costly",
            &format!("more than {MAX_PARAMETERS} query parameters"),
        ));
    }
    Ok(())
}

fn cut(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

/// Where an issued access token's id is recorded.
fn issued_key(jti: &str) -> String {
    format!("token#{jti}")
}

/// Parameters worth an audit record (the query, a kick-off's `Parameters` body, a token
/// request's grant type and scope; never a credential), bounded: at most
/// `AUDIT_PARAMETERS` of them, values cut; with how many there were.
fn audited_parameters(req: &Request) -> (serde_json::Value, usize) {
    let pairs: Vec<(String, String)> = if req.path.ends_with("/auth/token") {
        crate::http::form_pairs(&req.body)
            .into_iter()
            .filter(|(k, _)| k == "grant_type" || k == "scope")
            .collect()
    } else if req.method == "POST" && req.path.ends_with("$export") {
        kick_off_parameters(req).unwrap_or_else(|_| req.query.clone())
    } else {
        req.query.clone()
    };
    let total = pairs.len();
    let list: Vec<serde_json::Value> = pairs
        .into_iter()
        .take(AUDIT_PARAMETERS)
        .map(|(k, v)| serde_json::json!([cut(&k, 64), cut(&v, AUDIT_VALUE_CHARS)]))
        .collect();
    (serde_json::Value::Array(list), total)
}
