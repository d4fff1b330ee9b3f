//! `pulselake erasure request|list`: a data subject's erasure request (GDPR Art. 17) is
//! recorded with who asked, why and when, and the subject is tombstoned at once: the
//! registry assignments and legacy aliases that attribute new readings to them are
//! removed (new readings are quarantined as unassigned, never stored under them), and
//! exports skip them. The erasure function then clears the lake and records the proof.

use pulselake_adapters::{
    AliasAdmin, DevicePeriod, ErasurePasses, ErasureRequest, ErasureRequests, RegistryAdmin,
    RegistryWrite,
};
use pulselake_domain::message::check_id;

use crate::AdminError;

/// The ports the erasure commands use.
pub struct ErasureAdmin<'a, E, R, A> {
    pub requests: &'a E,
    pub registry: &'a R,
    pub aliases: &'a A,
}

/// What recording a request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub request_id: String,
    /// Device assignments removed (the subject's devices no longer speak for them).
    pub assignments_removed: usize,
    pub aliases_removed: usize,
    /// The devices that were the subject's (to retire, if ops choose to).
    pub devices: Vec<String>,
}

impl<E: ErasureRequests, R: RegistryAdmin, A: AliasAdmin> ErasureAdmin<'_, E, R, A> {
    /// Records a request and tombstones the subject. A second request for the same
    /// subject is refused (the first one stands); the tombstone is applied again anyway.
    pub async fn request(
        &self,
        subject: &str,
        requested_by: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Recorded, AdminError> {
        let mut problems = Vec::new();
        if check_id("subject", subject).is_err() {
            problems.push(format!(
                "subject {subject:?}: a subject id is 1-128 bytes without control characters"
            ));
        }
        if requested_by.trim().is_empty() {
            problems.push("--by: who asked (a person or a ticket) is required".into());
        }
        if reason.trim().is_empty() {
            problems
                .push("--reason: why (e.g. \"GDPR Art. 17 request 2026-118\") is required".into());
        }
        if !problems.is_empty() {
            return Err(AdminError::Refused(problems));
        }
        let request_id = format!("erasure-{}", new_reference()?);
        // The request keeps the subject's aliases, so the pass can find their raw files
        // by the legacy keys in the names; the aliases go once the request is recorded.
        let aliases = self.aliases.aliases_of(subject).await?;
        let mut periods = Vec::new();
        for (d, _) in self.registry.all().await? {
            for a in d.assignments.iter().filter(|a| a.subject_id == subject) {
                periods.push(DevicePeriod {
                    device_id: d.device_id.clone(),
                    from: a.valid_from,
                    to: a.valid_to,
                });
            }
        }
        let mut theirs: Vec<String> = periods.iter().map(|p| p.device_id.clone()).collect();
        theirs.dedup();
        let fresh = self
            .requests
            .record(&ErasureRequest {
                subject_id: subject.to_owned(),
                request_id: request_id.clone(),
                requested_by: requested_by.to_owned(),
                reason: reason.to_owned(),
                aliases: aliases.clone(),
                devices: theirs.clone(),
                periods,
                requested_at: now_ms,
                completed_at: None,
                evidence: None,
            })
            .await?;
        // The tombstone is in place: no write can assign the subject from now on (the
        // registry checks it in the same transaction), so the assignments read now are
        // all there will ever be. Each goes by a write over the version read; one that
        // changed meanwhile is read again.
        let mut assignments_removed = 0;
        for (device, _) in self.registry.all().await? {
            if !device.assignments.iter().any(|a| a.subject_id == subject) {
                continue;
            }
            assignments_removed += self.unassign(&device.device_id, subject).await?;
        }
        let aliases_removed = self.aliases.remove_subject(subject).await?.len();
        if !fresh {
            return Err(AdminError::Refused(vec![format!(
                "an erasure request for this subject exists already (the tombstone was applied again: {assignments_removed} assignment(s), {aliases_removed} alias(es) removed)"
            )]));
        }
        Ok(Recorded {
            request_id,
            assignments_removed,
            aliases_removed,
            devices: theirs,
        })
    }

    /// Removes the subject's assignments from one device; how many went.
    async fn unassign(&self, device_id: &str, subject: &str) -> Result<usize, AdminError> {
        for _ in 0..20 {
            let Some((mut device, version)) = self.registry.read(device_id).await? else {
                return Ok(0);
            };
            let before = device.assignments.len();
            device.assignments.retain(|a| a.subject_id != subject);
            let removed = before - device.assignments.len();
            if removed == 0 {
                return Ok(0);
            }
            match self.registry.write(&device, version, &[]).await? {
                RegistryWrite::Written => return Ok(removed),
                RegistryWrite::Changed => continue,
                RegistryWrite::Tombstoned(_) => return Ok(0),
            }
        }
        Err(AdminError::Setup(format!(
            "device {device_id} kept changing; run the request again (the tombstone stands)"
        )))
    }

    /// One line per request: reference, status, requested, by, reason (no subject id).
    pub async fn list(&self) -> Result<Vec<String>, AdminError> {
        let mut all = self.requests.all().await?;
        all.sort_by_key(|r| r.requested_at);
        Ok(all
            .iter()
            .map(|r| {
                let status = match (&r.completed_at, &r.evidence) {
                    (Some(at), Some(ev)) => format!(
                        "done {} (evidence {ev})",
                        pulselake_domain::time::format_rfc3339_ms(*at)
                    ),
                    _ => "pending".to_owned(),
                };
                format!(
                    "{}  {status}  requested {} by {}: {}",
                    r.request_id,
                    pulselake_domain::time::format_rfc3339_ms(r.requested_at),
                    r.requested_by,
                    r.reason
                )
            })
            .collect())
    }
}

/// One line on the latest erasure pass: running (partitions done of all, since when) or
/// finished (verified or not). `None` before the first pass.
pub async fn pass_progress<P: ErasurePasses>(passes: &P) -> Result<Option<String>, AdminError> {
    let Some(p) = passes.latest().await? else {
        return Ok(None);
    };
    let started = pulselake_domain::time::format_rfc3339_ms(p.started_at);
    let requests = p.requests.len();
    Ok(Some(match &p.evidence {
        None => format!(
            "pass {}: running since {started}, {} of {} lake partitions done, {requests} request(s)",
            p.id, p.done, p.total
        ),
        Some(ev) => {
            let completed = serde_json::from_str::<serde_json::Value>(ev)
                .ok()
                .and_then(|v| v["completed"].as_bool())
                .unwrap_or(false);
            format!(
                "pass {}: finished ({} lake partitions, {requests} request(s)); {}",
                p.id,
                p.total,
                if completed {
                    "verified, requests done"
                } else {
                    "NOT verified: its requests stay pending (see the evidence in the audit bucket)"
                }
            )
        }
    }))
}

fn new_reference() -> Result<String, AdminError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| AdminError::Setup(format!("no randomness: {e}")))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod pass_tests {
    use pulselake_adapters::{ErasurePass, ErasurePasses, MemoryErasurePasses};

    use super::pass_progress;

    #[tokio::test]
    async fn the_latest_pass_shows_its_progress_then_its_outcome() {
        let passes = MemoryErasurePasses::default();
        assert_eq!(pass_progress(&passes).await.unwrap(), None);
        let pass = ErasurePass {
            id: "erasure-1".into(),
            requests: vec!["erasure-ab".into()],
            total: 3,
            started_at: 0,
            ..ErasurePass::default()
        };
        assert!(passes.start(&pass, -1, 0).await.unwrap());
        passes
            .finish_unit("erasure-1", "p1", "{}", 0)
            .await
            .unwrap();
        let running = pass_progress(&passes).await.unwrap().unwrap();
        assert!(
            running.contains("running") && running.contains("1 of 3"),
            "{running}"
        );
        passes
            .finish("erasure-1", r#"{"completed":true}"#)
            .await
            .unwrap();
        let done = pass_progress(&passes).await.unwrap().unwrap();
        assert!(
            done.contains("finished") && done.contains("verified"),
            "{done}"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use pulselake_adapters::{MemoryAliases, MemoryErasures, MemoryRegistry, RegistryLookup};
    use pulselake_domain::{Assignment, DeviceRecord};

    use super::*;

    #[tokio::test]
    async fn a_request_tombstones_the_subject_and_a_second_one_is_refused() {
        let requests = MemoryErasures::default();
        let registry = MemoryRegistry::new([DeviceRecord {
            device_id: "dev-1".into(),
            assignments: vec![
                Assignment {
                    subject_id: "subj-a".into(),
                    valid_from: 0,
                    valid_to: Some(10),
                    cohort: None,
                },
                Assignment {
                    subject_id: "subj-b".into(),
                    valid_from: 10,
                    valid_to: None,
                    cohort: None,
                },
            ],
        }]);
        let aliases = Mutex::new(MemoryAliases(HashMap::from([
            ("seed:P1".to_owned(), "subj-b".to_owned()),
            ("seed:P2".to_owned(), "subj-a".to_owned()),
        ])));
        let admin = ErasureAdmin {
            requests: &requests,
            registry: &registry,
            aliases: &aliases,
        };
        let r = admin
            .request("subj-b", "dpo@example.org", "Art. 17", 5)
            .await
            .unwrap();
        assert_eq!((r.assignments_removed, r.aliases_removed), (1, 1));
        let dev = registry.fetch(&["dev-1"]).await.unwrap();
        assert_eq!(
            dev[0].assignments.len(),
            1,
            "the other subject's assignment stays"
        );
        assert!(aliases.lock().unwrap().0.contains_key("seed:P2"));
        assert!(matches!(
            admin.request("subj-b", "dpo@example.org", "again", 6).await,
            Err(AdminError::Refused(_))
        ));
        let lines = admin.list().await.unwrap();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].contains("pending") && !lines[0].contains("subj-b"),
            "{lines:?}"
        );
        assert!(
            matches!(admin.request("", "", "", 7).await, Err(AdminError::Refused(p)) if p.len() == 3)
        );
    }
}
