//! A partner's side of the API, over HTTP: SMART Backend Services (a signed client
//! assertion for an access token), a bulk export kick-off, polling, and downloads
//! through the redirect. What the tests and the demo use to act as a partner.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::Result;
use crate::http::{Reply, request};

/// The test key pairs of `integration-tests/fixtures/partners`.
pub fn fixture(name: &str) -> String {
    crate::moto::workspace_root()
        .join("integration-tests/fixtures/partners")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A partner with its private key.
pub struct PartnerClient {
    pub base_url: String,
    pub client_id: String,
    key: EncodingKey,
    alg: Algorithm,
    kid: String,
}

/// A finished export: the manifest and every resource, parsed.
pub struct Export {
    pub status_url: String,
    pub manifest: serde_json::Value,
    pub resources: Vec<serde_json::Value>,
    /// The files' raw text (scanned for identifiers).
    pub raw: Vec<String>,
}

impl PartnerClient {
    /// `research` (RS384) or `insurer` (ES384), the fixture partners; `impostor` holds a
    /// key research never registered, under research's key id and client id.
    pub fn fixture(base_url: &str, who: &str) -> Result<PartnerClient> {
        let (client, file, alg, kid) = match who {
            "research" => (
                "research",
                "research-rs384.pem",
                Algorithm::RS384,
                "research-2026",
            ),
            "insurer" => (
                "insurer",
                "insurer-es384.pem",
                Algorithm::ES384,
                "insurer-2026",
            ),
            "impostor" => (
                "research",
                "impostor-rs384.pem",
                Algorithm::RS384,
                "research-2026",
            ),
            other => return Err(format!("no fixture partner {other}").into()),
        };
        let pem = std::fs::read(fixture(file))?;
        let key = match alg {
            Algorithm::ES384 => EncodingKey::from_ec_pem(&pem)?,
            _ => EncodingKey::from_rsa_pem(&pem)?,
        };
        Ok(PartnerClient {
            base_url: base_url.to_owned(),
            client_id: client.to_owned(),
            key,
            alg,
            kid: kid.to_owned(),
        })
    }

    /// A fresh client assertion (`jti` unique), for the token endpoint.
    pub fn assertion(&self) -> Result<String> {
        self.assertion_with(|_| {})
    }

    /// The claims of a fresh, valid assertion (epoch seconds).
    pub fn claims(&self) -> serde_json::Value {
        let now = crate::invoke_now_ms() / 1000;
        serde_json::json!({
            "iss": self.client_id, "sub": self.client_id,
            "aud": format!("{}/auth/token", self.base_url),
            "exp": now + 240, "iat": now,
            "jti": format!("{:032x}", fastrand::u128(..)),
        })
    }

    /// An assertion whose claims `edit` changed first (for the refusals tests).
    pub fn assertion_with(&self, edit: impl FnOnce(&mut serde_json::Value)) -> Result<String> {
        let mut claims = self.claims();
        edit(&mut claims);
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }

    /// `POST /auth/token` with `assertion`; the raw reply.
    pub async fn token_reply(&self, assertion: &str, scope: &str) -> Result<Reply> {
        self.token_form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
            ("scope", scope),
        ])
        .await
    }

    /// `POST /auth/token` with any form fields; the raw reply.
    pub async fn token_form(&self, fields: &[(&str, &str)]) -> Result<Reply> {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let form = fields
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        request(
            "POST",
            &format!("{}/auth/token", self.base_url),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("accept", "application/json"),
            ],
            form.into_bytes(),
        )
        .await
    }

    /// An access token (`system/Observation.rs`).
    pub async fn token(&self) -> Result<String> {
        let reply = self
            .token_reply(&self.assertion()?, "system/Observation.rs")
            .await?;
        if reply.status != 200 {
            return Err(format!("token refused ({}): {}", reply.status, reply.text()).into());
        }
        Ok(reply.json()?["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// A request with the token; `path` relative to the base URL, or an absolute URL.
    pub async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Result<Reply> {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base_url)
        };
        let auth = format!("Bearer {token}");
        let mut headers: Vec<(&str, &str)> = vec![
            ("authorization", &auth),
            ("accept", "application/fhir+json"),
        ];
        headers.extend_from_slice(extra);
        request(method, &url, &headers, Vec::new()).await
    }

    /// A kick-off (`GET`, `Prefer: respond-async`).
    pub async fn kick_off(&self, token: &str, path: &str) -> Result<Reply> {
        self.call(token, "GET", path, &[("prefer", "respond-async")])
            .await
    }

    /// Polls `status_url` until it is no longer `202`, at most `timeout`.
    pub async fn wait(&self, token: &str, status_url: &str, timeout: Duration) -> Result<Reply> {
        let start = Instant::now();
        loop {
            let r = self.call(token, "GET", status_url, &[]).await?;
            if r.status != 202 || start.elapsed() > timeout {
                return Ok(r);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Downloads a manifest's file: the API answers `307` to a short-lived link.
    pub async fn download(&self, token: &str, url: &str) -> Result<String> {
        let r = self.call(token, "GET", url, &[]).await?;
        let Some(location) = r.header("location").filter(|_| r.status == 307) else {
            return Err(format!("download refused ({}): {}", r.status, r.text()).into());
        };
        let file = request("GET", location, &[], Vec::new()).await?;
        if file.status != 200 {
            return Err(format!("the download link answered {}", file.status).into());
        }
        Ok(file.text())
    }

    /// Every output file of a completed export's manifest, parsed.
    pub async fn fetch_all(
        &self,
        token: &str,
        status_url: &str,
        manifest: serde_json::Value,
    ) -> Result<Export> {
        let mut resources = Vec::new();
        let mut raw = Vec::new();
        for out in manifest["output"].as_array().into_iter().flatten() {
            let text = self
                .download(token, out["url"].as_str().unwrap_or_default())
                .await?;
            for line in text.lines() {
                resources.push(serde_json::from_str(line)?);
            }
            raw.push(text);
        }
        Ok(Export {
            status_url: status_url.to_owned(),
            manifest,
            resources,
            raw,
        })
    }
}

impl Export {
    /// Whether every file holds the count and SHA-256 its manifest entry says.
    pub fn matches_manifest(&self) -> bool {
        use sha2::Digest;
        let outputs: Vec<&serde_json::Value> = self.manifest["output"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        outputs.len() == self.raw.len()
            && outputs.iter().zip(&self.raw).all(|(o, text)| {
                o["count"].as_u64() == Some(text.lines().count() as u64)
                    && o["extension"]["sha256"].as_str()
                        == Some(hex::encode(sha2::Sha256::digest(text.as_bytes())).as_str())
            })
    }
}
