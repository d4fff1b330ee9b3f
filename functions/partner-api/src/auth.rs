//! SMART Backend Services: a partner proves who it is with a short JWT signed by its
//! private key (RS384 or ES384), checked against the public keys it registered; the
//! answer is a short access token (RS256, signed in KMS) carrying the granted scopes.
//! Every failure is an OAuth error (`invalid_client`, `invalid_scope`, ...).

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

/// The client assertion type SMART requires.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Scopes this server grants: read access to Observations, system level.
pub const SCOPES: [&str; 2] = ["system/Observation.rs", "system/Observation.read"];
/// Access tokens live this long at most (SMART: 5 minutes).
pub const TOKEN_SECONDS: i64 = 300;
/// A client assertion may not expire later than this after now.
pub const MAX_ASSERTION_SECONDS: i64 = 300;

/// An OAuth 2.0 error response (RFC 6749 5.2).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OAuthError {
    pub error: &'static str,
    pub error_description: String,
}

impl OAuthError {
    pub fn new(error: &'static str, why: impl Into<String>) -> OAuthError {
        OAuthError {
            error,
            error_description: why.into(),
        }
    }
}

/// The form a token request carries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenRequest {
    pub grant_type: String,
    pub assertion_type: String,
    pub assertion: String,
    pub scope: String,
}

impl TokenRequest {
    /// Reads an `application/x-www-form-urlencoded` body.
    pub fn from_form(body: &str) -> TokenRequest {
        let mut r = TokenRequest::default();
        for (k, v) in crate::http::form_pairs(body) {
            match k.as_str() {
                "grant_type" => r.grant_type = v,
                "client_assertion_type" => r.assertion_type = v,
                "client_assertion" => r.assertion = v,
                "scope" => r.scope = v,
                _ => {}
            }
        }
        r
    }

    /// Checks the request's shape; returns the granted scopes (those asked for that
    /// the server offers).
    pub fn check(&self) -> Result<Vec<&'static str>, OAuthError> {
        if self.grant_type != "client_credentials" {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                "grant_type must be client_credentials",
            ));
        }
        if self.assertion_type != ASSERTION_TYPE || self.assertion.is_empty() {
            return Err(OAuthError::new(
                "invalid_request",
                format!("client_assertion_type must be {ASSERTION_TYPE}, with a client_assertion"),
            ));
        }
        let mut granted: Vec<&'static str> =
            self.scope.split_whitespace().filter_map(narrowed).collect();
        granted.sort_unstable();
        granted.dedup();
        if granted.is_empty() {
            return Err(OAuthError::new(
                "invalid_scope",
                format!(
                    "no scope this server grants was asked for ({}; wildcards such as system/*.rs are narrowed to them)",
                    SCOPES.join(", ")
                ),
            ));
        }
        Ok(granted)
    }
}

/// A requested scope narrowed to what this server grants (reading and searching
/// Observations): `system/*.rs` and `system/Observation.cruds` become
/// `system/Observation.rs`, `system/*.read` and `system/*.*` become
/// `system/Observation.read`; a scope that does not include reading and searching
/// Observations grants nothing.
fn narrowed(scope: &str) -> Option<&'static str> {
    let (resource, permission) = scope.strip_prefix("system/")?.split_once('.')?;
    if resource != "*" && resource != "Observation" {
        return None;
    }
    match permission {
        "read" | "*" => Some(SCOPES[1]),
        // SMART v2: any of c, r, u, d, s in that order, at most once each.
        v2 if !v2.is_empty()
            && v2.len() <= 5
            && v2.bytes().all(|b| b"cruds".contains(&b))
            && v2.as_bytes().windows(2).all(|w| {
                let pos = |b| b"cruds".iter().position(|x| *x == b);
                pos(w[0]) < pos(w[1])
            }) =>
        {
            (v2.contains('r') && v2.contains('s')).then_some(SCOPES[0])
        }
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: i64,
    jti: String,
}

/// Who a client assertion claims to be (unverified: to find the keys to verify it with).
pub fn claimed_client(assertion: &str) -> Result<String, OAuthError> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| OAuthError::new("invalid_client", "the client_assertion is not a JWT"))?;
    if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
        return Err(OAuthError::new(
            "invalid_client",
            "client assertions must be signed RS384 or ES384",
        ));
    }
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(assertion)
        .map_err(|_| {
            OAuthError::new(
                "invalid_client",
                "the client_assertion's claims do not read",
            )
        })?;
    claims["iss"]
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .map(str::to_owned)
        .ok_or_else(|| OAuthError::new("invalid_client", "the client_assertion has no iss"))
}

/// A verified client assertion: whose it is, its `jti`, and when it expires.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub client_id: String,
    pub jti: String,
    pub exp: i64,
}

/// Verifies a client assertion against the partner's registered public keys: the
/// signature, `iss` = `sub` = the client, `aud` = the token URL, an `exp` no more than
/// five minutes ahead. (The `jti` is checked against replay by the caller.)
pub fn verify_assertion(
    assertion: &str,
    client_id: &str,
    jwks: &str,
    token_url: &str,
    now_s: i64,
) -> Result<Verified, OAuthError> {
    let bad = |why: &str| OAuthError::new("invalid_client", why.to_owned());
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| bad("the client_assertion is not a JWT"))?;
    if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
        return Err(bad("client assertions must be signed RS384 or ES384"));
    }
    let set: JwkSet =
        serde_json::from_str(jwks).map_err(|_| bad("the client's registered keys do not read"))?;
    let candidates: Vec<_> = set
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
        .collect();
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[token_url]);
    validation.set_issuer(&[client_id]);
    validation.sub = Some(client_id.to_owned());
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.leeway = 30;
    for jwk in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        if let Ok(data) = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation) {
            let c = data.claims;
            if c.exp > now_s + MAX_ASSERTION_SECONDS + 30 {
                return Err(bad(
                    "the client_assertion expires more than 5 minutes ahead",
                ));
            }
            if c.jti.is_empty() || c.jti.len() > 256 {
                return Err(bad("the client_assertion needs a jti"));
            }
            if c.iss != c.sub {
                return Err(bad("iss and sub must both be the client id"));
            }
            return Ok(Verified {
                client_id: c.iss,
                jti: c.jti,
                exp: c.exp,
            });
        }
    }
    Err(bad(
        "the client_assertion is not signed by a key the client registered, or its claims are wrong (aud, iss, sub, exp)",
    ))
}

/// The claims of an access token this server issues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub scope: String,
}

/// The signing input of an RS256 JWT (`base64url(header).base64url(claims)`).
pub fn signing_input(kid: &str, claims: &AccessClaims) -> String {
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": kid});
    let enc = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let claims = serde_json::to_value(claims).unwrap_or_default();
    format!("{}.{}", enc(&header), enc(&claims))
}

/// The signed token: signing input and signature.
pub fn token(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Why a bearer token is refused (`401` with `WWW-Authenticate: Bearer`).
#[derive(Debug, Clone, PartialEq)]
pub struct BadToken(pub String);

/// Verifies an access token this server issued: signature (the KMS key's public
/// key), audience, issuer, expiry; and that it grants reading Observations.
pub fn verify_access(
    token: &str,
    public_pem: &DecodingKey,
    issuer: &str,
    audience: &str,
) -> Result<AccessClaims, BadToken> {
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[audience]);
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v.leeway = 5;
    let data = jsonwebtoken::decode::<AccessClaims>(token, public_pem, &v)
        .map_err(|e| BadToken(format!("the access token is not valid: {e}")))?;
    let scopes: HashSet<&str> = data.claims.scope.split_whitespace().collect();
    if !SCOPES.iter().any(|s| scopes.contains(s)) {
        return Err(BadToken(
            "the access token does not grant system/Observation.rs".into(),
        ));
    }
    Ok(data.claims)
}

/// 128 bits from the operating system's CSPRNG, as hex: export ids and token ids
/// must be unguessable (`None` only if the OS cannot give randomness).
pub fn unguessable_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_scopes_are_narrowed_to_reading_and_searching_observations() {
        for (asked, granted) in [
            ("system/*.rs", Some("system/Observation.rs")),
            ("system/*.cruds", Some("system/Observation.rs")),
            ("system/Observation.rs", Some("system/Observation.rs")),
            ("system/*.read", Some("system/Observation.read")),
            ("system/*.*", Some("system/Observation.read")),
            ("system/*.r", None),
            ("system/*.sr", None),
            ("system/*.rrs", None),
            ("system/Patient.rs", None),
            ("user/*.rs", None),
            ("patient/Observation.rs", None),
        ] {
            assert_eq!(narrowed(asked), granted, "{asked}");
        }
    }

    #[test]
    fn token_requests_are_checked_before_any_key_is_looked_up() {
        let ok = TokenRequest {
            grant_type: "client_credentials".into(),
            assertion_type: ASSERTION_TYPE.into(),
            assertion: "x.y.z".into(),
            scope: "system/Observation.rs system/Patient.rs".into(),
        };
        assert_eq!(ok.check().unwrap(), ["system/Observation.rs"]);
        let code = |r: TokenRequest| r.check().unwrap_err().error;
        assert_eq!(
            code(TokenRequest {
                grant_type: "password".into(),
                ..ok.clone()
            }),
            "unsupported_grant_type"
        );
        assert_eq!(
            code(TokenRequest {
                assertion_type: "x".into(),
                ..ok.clone()
            }),
            "invalid_request"
        );
        assert_eq!(
            code(TokenRequest {
                scope: "system/Patient.rs".into(),
                ..ok.clone()
            }),
            "invalid_scope"
        );
    }

    #[test]
    fn unsigned_and_symmetric_assertions_are_refused_outright() {
        let enc = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let claims =
            enc(serde_json::json!({"iss": "a", "sub": "a", "aud": "t", "exp": 1, "jti": "j"}));
        for alg in ["none", "HS256"] {
            let t = format!(
                "{}.{claims}.",
                enc(serde_json::json!({"alg": alg, "typ": "JWT"}))
            );
            assert_eq!(
                claimed_client(&t).unwrap_err().error,
                "invalid_client",
                "{alg}"
            );
            assert!(verify_assertion(&t, "a", r#"{"keys":[]}"#, "t", 0).is_err());
        }
    }
}
