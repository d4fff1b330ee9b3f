//! The partner API's routes (FHIR Bulk Data Access with SMART Backend Services),
//! generic over their ports. Every route but discovery checks the access token and the
//! partner's status first; every request is audited; errors are `OperationOutcome`s
//! (OAuth errors on the token endpoint), never a stack trace and never data.

use jsonwebtoken::DecodingKey;
use pulselake_adapters::{
    AuditLog, AwsError, ExportJobs, ObjectReader, ObjectWriter, OnceClaims, Partner, Partners,
    Presigner, Secrets, TokenSigner, WorkQueue,
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
    type Objects: ObjectReader + ObjectWriter + Presigner;
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
    partner: Option<String>,
    response: Response,
    note: Option<String>,
}

impl Outcome {
    fn anonymous(response: Response) -> Outcome {
        Outcome {
            partner: None,
            response,
            note: None,
        }
    }

    fn of(partner: &str, response: Response) -> Outcome {
        Outcome {
            partner: Some(partner.to_owned()),
            response,
            note: None,
        }
    }
}

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
        let outcome = self.route(req, now_ms).await;
        let record = serde_json::json!({
            "at": format_rfc3339_ms(now_ms),
            "request_id": req.request_id,
            "partner": outcome.partner,
            "method": req.method,
            "route": req.path,
            "parameters": audited_parameters(req),
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
            ("GET", [".well-known", "smart-configuration"]) => {
                Outcome::anonymous(self.smart_configuration())
            }
            ("GET", ["fhir", "metadata"]) => Outcome::anonymous(self.capability_statement(now_ms)),
            ("POST", ["auth", "token"]) => self.token(req, now_ms).await,
            (_, ["auth", "token"]) => Outcome::anonymous(method_not_allowed("POST")),
            (_, [".well-known", "smart-configuration"] | ["fhir", "metadata"]) => {
                Outcome::anonymous(method_not_allowed("GET"))
            }
            (method, ["fhir", rest @ ..]) => {
                let (partner, claims) = match self.authenticate(req, now_ms).await {
                    Ok(p) => p,
                    Err(o) => return o,
                };
                let response = match (method, rest) {
                    ("GET" | "POST", ["$export"] | ["Patient", "$export"]) => {
                        self.kick_off(req, &partner, &claims, None, now_ms).await
                    }
                    ("GET" | "POST", ["Group", group, "$export"]) => {
                        self.kick_off(req, &partner, &claims, Some(group), now_ms)
                            .await
                    }
                    ("GET", ["export-status", id]) => {
                        self.exports().status(&partner, id, now_ms).await
                    }
                    ("DELETE", ["export-status", id]) => self.exports().cancel(&partner, id).await,
                    ("GET", ["export-files", id, file]) => {
                        self.exports().download(&partner, id, file).await
                    }
                    (_, ["$export"] | ["Patient", "$export"] | ["Group", _, "$export"]) => {
                        method_not_allowed("GET, POST")
                    }
                    (_, ["export-status", _]) => method_not_allowed("GET, DELETE"),
                    (_, ["export-files", _, _]) => method_not_allowed("GET"),
                    _ => Response::outcome(404, "not-found", "no such resource"),
                };
                Outcome::of(&partner.client_id, response)
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
        let partner = match self.partners.get(&client_id).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return Outcome::anonymous(oauth(
                    400,
                    OAuthError::new("invalid_client", "unknown client"),
                ));
            }
            Err(e) => return Outcome::anonymous(server_error(&e)),
        };
        let refuse = |e: OAuthError| Outcome {
            partner: Some(partner.client_id.clone()),
            note: Some(e.error_description.clone()),
            response: oauth(400, e),
        };
        if partner.status != PartnerStatus::Active {
            return refuse(OAuthError::new("invalid_client", "the client is suspended"));
        }
        let verified = match auth::verify_assertion(
            &token_req.assertion,
            &partner.client_id,
            &partner.jwks,
            &self.settings.token_url(),
            now_s,
        ) {
            Ok(v) => v,
            Err(e) => return refuse(e),
        };
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

    /// A `$export` kick-off.
    async fn kick_off(
        &self,
        req: &Request,
        partner: &Partner,
        _claims: &AccessClaims,
        group: Option<&str>,
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
        let started = self
            .exports()
            .start(&self.queue, &self.secrets, partner, grant, url, now_ms)
            .await;
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
                "capabilities": ["client-confidential-asymmetric"],
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
                    "resource": [{"type": "Observation", "profile": "http://hl7.org/fhir/StructureDefinition/vitalsigns"},
                                 {"type": "Group", "operation": [{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}]},
                                 {"type": "Patient", "operation": [{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}]}],
                    "operation": [{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}]
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

/// The request's path and query, as the manifest's `request` repeats it.
fn request_line(req: &Request) -> String {
    let query: Vec<String> = req
        .query
        .iter()
        .map(|(k, v)| {
            let enc = |s: &str| {
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect();
    if query.is_empty() {
        req.path.clone()
    } else {
        format!("{}?{}", req.path, query.join("&"))
    }
}

/// Parameters worth an audit record: the request's own, never a credential.
fn audited_parameters(req: &Request) -> serde_json::Value {
    let pairs: Vec<(String, String)> = if req.path.ends_with("/auth/token") {
        crate::http::form_pairs(&req.body)
            .into_iter()
            .filter(|(k, _)| k == "grant_type" || k == "scope")
            .collect()
    } else {
        req.query.clone()
    };
    serde_json::Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v.chars().take(200).collect())))
            .collect(),
    )
}
