//! `pulselake partners ...`: add, update-policy, set-keys, suspend, reactivate,
//! rotate-key, list. A partner is its policy (deny by default), the public keys it signs
//! client assertions with (a JWK Set), and a pseudonym key in Secrets Manager that
//! only the partner API and the export worker read.

use pulselake_adapters::{Partner, Partners, SecretsAdmin};
use pulselake_domain::partner::{PartnerStatus, Policy};
use serde::Deserialize;

use crate::AdminError;

/// The ports the partner commands use.
pub struct PartnerAdmin<'a, P, S> {
    pub partners: &'a P,
    pub secrets: &'a S,
    /// Secrets are named `<prefix><client id>` (the functions may read only those).
    pub secret_prefix: &'a str,
    /// The stack's KMS key, which encrypts the pseudonym keys.
    pub kms_key: Option<&'a str>,
}

/// Client ids: what a partner puts in `iss`; also part of S3 prefixes and secret names.
fn check_client_id(id: &str) -> Result<(), String> {
    let ok = (3..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "client id {id:?}: 3-64 characters of a-z, 0-9 and '-', not starting with '-'"
        ))
    }
}

/// A JWK Set of public keys a partner may sign assertions with (RS384 or ES384): no
/// private key material, every key with a `kid`.
pub fn check_jwks(text: &str) -> Result<(), Vec<String>> {
    let set: serde_json::Value =
        serde_json::from_str(text).map_err(|e| vec![format!("the key set is not JSON: {e}")])?;
    let Some(keys) = set["keys"].as_array().filter(|k| !k.is_empty()) else {
        return Err(vec!["the key set has no \"keys\"".into()]);
    };
    let mut problems = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let kid = k["kid"].as_str().unwrap_or("");
        if kid.is_empty() {
            problems.push(format!("key {i} has no kid"));
        }
        match (k["kty"].as_str(), k["crv"].as_str()) {
            (Some("RSA"), _) => {}
            (Some("EC"), Some("P-384")) => {}
            _ => problems.push(format!(
                "key {i} ({kid}): only RSA (RS384) and EC P-384 (ES384) keys are accepted"
            )),
        }
        if ["d", "p", "q", "dp", "dq", "qi"]
            .iter()
            .any(|f| k.get(*f).is_some())
        {
            problems.push(format!(
                "key {i} ({kid}) holds private key material: register public keys only"
            ));
        }
        if jsonwebtoken::jwk::Jwk::deserialize(k).is_err() {
            problems.push(format!("key {i} ({kid}) is not a valid JWK"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn policy_of(text: &str) -> Result<Policy, AdminError> {
    Policy::from_json(text).map_err(|e| AdminError::Refused(vec![format!("policy: {}", e.0)]))
}

/// A fresh 256-bit pseudonym key from the OS's CSPRNG, as hex.
fn new_key() -> Result<String, AdminError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| AdminError::Setup(format!("no randomness from the OS: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Read-modify-write attempts before a change gives up on a record that keeps changing.
const CHANGE_ATTEMPTS: usize = 5;

impl<P: Partners, S: SecretsAdmin> PartnerAdmin<'_, P, S> {
    async fn existing(&self, client_id: &str) -> Result<Partner, AdminError> {
        self.partners
            .get(client_id)
            .await?
            .ok_or_else(|| AdminError::Refused(vec![format!("no partner {client_id}")]))
    }

    /// Reads the partner, applies `change` and writes it over the version read; a
    /// concurrent change makes it read and apply again, so neither is lost.
    async fn change(
        &self,
        client_id: &str,
        change: impl Fn(&mut Partner),
    ) -> Result<(), AdminError> {
        for _ in 0..CHANGE_ATTEMPTS {
            let mut p = self.existing(client_id).await?;
            change(&mut p);
            if self.partners.put(&p).await? {
                return Ok(());
            }
        }
        Err(AdminError::Setup(format!(
            "partner {client_id} kept changing while this change was made; try again"
        )))
    }

    /// Adds a partner (active) with a new pseudonym key. Refused, with every problem
    /// listed, if the id, the policy or the keys are wrong, or the partner exists.
    pub async fn add(
        &self,
        client_id: &str,
        policy: &str,
        jwks: &str,
    ) -> Result<Partner, AdminError> {
        let mut problems = Vec::new();
        if let Err(e) = check_client_id(client_id) {
            problems.push(e);
        }
        let policy = match policy_of(policy) {
            Ok(p) => Some(p),
            Err(AdminError::Refused(mut p)) => {
                problems.append(&mut p);
                None
            }
            Err(e) => return Err(e),
        };
        if let Err(mut p) = check_jwks(jwks) {
            problems.append(&mut p);
        }
        if problems.is_empty() && self.partners.get(client_id).await?.is_some() {
            problems.push(format!("partner {client_id} exists already"));
        }
        let (Some(policy), true) = (policy, problems.is_empty()) else {
            return Err(AdminError::Refused(problems));
        };
        let key_secret = format!("{}{client_id}", self.secret_prefix);
        if self
            .secrets
            .create(&key_secret, &new_key()?, self.kms_key)
            .await?
            .is_none()
        {
            // Left from a partner removed by hand: a new key, so old pseudonyms die with it.
            self.secrets.put_version(&key_secret, &new_key()?).await?;
        }
        let partner = Partner {
            client_id: client_id.to_owned(),
            status: PartnerStatus::Active,
            policy,
            jwks: jwks.to_owned(),
            key_secret,
            version: 0,
        };
        if !self.partners.put(&partner).await? {
            return Err(AdminError::Refused(vec![format!(
                "partner {client_id} exists already"
            )]));
        }
        Ok(partner)
    }

    /// Replaces a partner's policy (exports already running keep the scope they got).
    pub async fn update_policy(&self, client_id: &str, policy: &str) -> Result<(), AdminError> {
        let policy = policy_of(policy)?;
        self.change(client_id, |p| p.policy = policy.clone()).await
    }

    /// Replaces the public keys a partner signs with (its own key rotation).
    pub async fn set_keys(&self, client_id: &str, jwks: &str) -> Result<(), AdminError> {
        check_jwks(jwks).map_err(AdminError::Refused)?;
        self.change(client_id, |p| p.jwks = jwks.to_owned()).await
    }

    /// Suspends or reactivates a partner: a suspended one gets no token, and tokens it
    /// holds stop working at once.
    pub async fn set_status(
        &self,
        client_id: &str,
        status: PartnerStatus,
    ) -> Result<(), AdminError> {
        self.change(client_id, |p| p.status = status).await
    }

    /// A new pseudonym key version: later exports use it (their pseudonyms no longer
    /// match earlier ones; the manifest names the version). Returns the version id.
    pub async fn rotate_key(&self, client_id: &str) -> Result<String, AdminError> {
        let p = self.existing(client_id).await?;
        Ok(self.secrets.put_version(&p.key_secret, &new_key()?).await?)
    }

    /// One line per partner: id, status, mode, metrics, cohorts, window, agreement,
    /// pseudonym key version.
    pub async fn list(&self) -> Result<Vec<String>, AdminError> {
        let mut out = Vec::new();
        for p in self.partners.all().await? {
            let version = self.secrets.current_version(&p.key_secret).await?;
            let status = match p.status {
                PartnerStatus::Active => "active",
                PartnerStatus::Suspended => "suspended",
            };
            let pol = &p.policy;
            out.push(format!(
                "{}  {status}  {}  metrics={}  cohorts={}  window={}..{}  dua={}  key={}",
                p.client_id,
                serde_json::to_value(pol.mode)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                pol.metrics.join(","),
                pol.cohorts.join(","),
                pol.earliest.as_deref().unwrap_or(""),
                pol.latest.as_deref().unwrap_or(""),
                pol.dua,
                version
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulselake_adapters::{MemoryPartners, MemorySecrets, Secrets};

    const POLICY: &str =
        r#"{"metrics":["heart_rate"],"cohorts":["adult"],"mode":"limited","dua":"DUA-1"}"#;
    const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-384","kid":"k1","x":"nvV4Jp0PI8JXx6C1hbQ7fyF0T9U4r2hwzXUmsnoMz1wQRq-7uBuvG4L1oQ_K6fy0","y":"IvN0pZmSN_K7DBIfhs6Y9Gp6JP1MxrZpCpi2p5ycVT2CY3xmP7sB2SW6v4Si9VRn"}]}"#;

    fn admin<'a>(
        partners: &'a MemoryPartners,
        secrets: &'a MemorySecrets,
    ) -> PartnerAdmin<'a, MemoryPartners, MemorySecrets> {
        PartnerAdmin {
            partners,
            secrets,
            secret_prefix: "pulselake/partners/",
            kms_key: None,
        }
    }

    #[tokio::test]
    async fn add_refuses_every_problem_at_once_and_changes_nothing() {
        let (p, s) = (MemoryPartners::default(), MemorySecrets::default());
        let private = r#"{"keys":[{"kty":"RSA","kid":"x","n":"AQAB","e":"AQAB","d":"AQAB"}]}"#;
        let Err(AdminError::Refused(problems)) = admin(&p, &s)
            .add(
                "Bad Id",
                r#"{"metrics":["pulse"],"cohorts":[],"mode":"limited","dua":"x"}"#,
                private,
            )
            .await
        else {
            panic!("refused");
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[2].contains("private key material"), "{problems:?}");
        assert!(p.all().await.unwrap().is_empty());
        assert!(s.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_partner_is_added_suspended_and_its_key_rotated() {
        let (p, s) = (MemoryPartners::default(), MemorySecrets::default());
        let a = admin(&p, &s);
        let added = a.add("research", POLICY, JWKS).await.unwrap();
        assert_eq!(added.key_secret, "pulselake/partners/research");
        let (v1, k1) = s.current(&added.key_secret).await.unwrap();
        assert_eq!(k1.len(), 64);
        assert!(matches!(
            a.add("research", POLICY, JWKS).await,
            Err(AdminError::Refused(_))
        ));
        a.set_status("research", PartnerStatus::Suspended)
            .await
            .unwrap();
        assert_eq!(
            p.get("research").await.unwrap().unwrap().status,
            PartnerStatus::Suspended
        );
        let v2 = a.rotate_key("research").await.unwrap();
        let (current, k2) = s.current(&added.key_secret).await.unwrap();
        assert_eq!(current, v2);
        assert_ne!((v1, k1), (v2.clone(), k2));
        let lines = a.list().await.unwrap();
        assert!(
            lines[0].starts_with("research  suspended  limited  metrics=heart_rate"),
            "{lines:?}"
        );
        assert!(lines[0].ends_with(&format!("key={v2}")));
    }
}
