//! Partners and what each may see: a policy per partner, deny by default. A request is
//! either refused (a type, metric or cohort the partner may never see: `403`) or
//! narrowed to what the policy allows, with what was withheld said in the manifest.

use serde::{Deserialize, Serialize};

use crate::metric::Metric;
use crate::time::{Date, format_rfc3339_ms, parse_rfc3339_ms};

/// How exported data is de-identified (HIPAA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A limited data set (164.514(e)): exact dates and times, no direct identifiers,
    /// no device identifiers, a per-partner pseudonym; under a data use agreement.
    Limited,
    /// Safe Harbor (164.514(b)(2)): also no date element finer than the year.
    SafeHarbor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartnerStatus {
    Active,
    Suspended,
}

/// One partner's policy. Anything not listed is denied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Metrics by catalog name.
    pub metrics: Vec<String>,
    /// Registry cohorts whose subjects the partner may see (`*`: every subject).
    pub cohorts: Vec<String>,
    /// The measurement window the partner may see (RFC 3339), either end optional.
    #[serde(default)]
    pub earliest: Option<String>,
    #[serde(default)]
    pub latest: Option<String>,
    pub mode: Mode,
    /// Output formats beyond NDJSON (`application/vnd.apache.parquet`).
    #[serde(default)]
    pub formats: Vec<String>,
    /// The data use agreement the access rests on (a reference, not the document).
    pub dua: String,
    /// Kick-offs per day.
    #[serde(default = "default_daily_exports")]
    pub daily_exports: u32,
}

fn default_daily_exports() -> u32 {
    24
}

/// What is wrong with a policy document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid partner policy: {0}")]
pub struct PolicyError(pub String);

impl Policy {
    pub fn from_json(text: &str) -> Result<Policy, PolicyError> {
        let p: Policy = serde_json::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        use crate::access::{check_cohorts, check_dua, check_metrics, check_window};
        let refused = |e: crate::access::Refusal| PolicyError(e.0);
        check_metrics(&self.metrics).map_err(refused)?;
        check_cohorts(&self.cohorts).map_err(refused)?;
        check_window(self.earliest.as_deref(), self.latest.as_deref()).map_err(refused)?;
        if self.mode == Mode::SafeHarbor {
            for (name, t) in [
                ("earliest", self.earliest_ms()),
                ("latest", self.latest_ms()),
            ] {
                if let Some(t) = t
                    && Date::year_start_ms(Date::from_epoch_ms(t).year) != t
                {
                    return Err(PolicyError(format!(
                        "in safe_harbor mode `{name}` must be the start of a year (e.g. \"2026-01-01T00:00:00Z\"): a finer window would date what the partner receives"
                    )));
                }
            }
        }
        check_dua(&self.dua).map_err(refused)?;
        if let Some(f) = self.formats.iter().find(|f| *f != PARQUET) {
            return Err(PolicyError(format!("output format {f:?} is not offered")));
        }
        Ok(())
    }

    pub fn earliest_ms(&self) -> Option<i64> {
        self.earliest.as_deref().and_then(parse_rfc3339_ms)
    }

    pub fn latest_ms(&self) -> Option<i64> {
        self.latest.as_deref().and_then(parse_rfc3339_ms)
    }

    pub fn allows_metric(&self, m: Metric) -> bool {
        self.metrics.iter().any(|x| x == m.name())
    }

    /// Whether what an export was granted is still granted (a download after the policy
    /// narrowed, or the mode changed, is refused).
    pub fn covers(&self, scope: &Scope) -> bool {
        let every = self.cohorts.iter().any(|c| c == "*");
        let cohorts = every
            || (scope.cohorts.iter().all(|c| self.cohorts.contains(c))
                && scope
                    .group
                    .as_ref()
                    .is_none_or(|g| self.cohorts.contains(g)));
        let from = self
            .earliest_ms()
            .is_none_or(|e| scope.measured_from.is_some_and(|f| f >= e));
        let to = self
            .latest_ms()
            .is_none_or(|l| scope.measured_to.is_some_and(|t| t <= l));
        self.mode == scope.mode
            && scope.metrics.iter().all(|m| self.allows_metric(*m))
            && cohorts
            && from
            && to
    }

    /// Whether a subject of `cohort` (from its registry assignment) may be seen.
    pub fn allows_cohort(&self, cohort: Option<&str>) -> bool {
        self.cohorts
            .iter()
            .any(|c| c == "*" || Some(c.as_str()) == cohort)
    }
}

/// The Parquet output format's media type.
pub const PARQUET: &str = "application/vnd.apache.parquet";

/// The data an export delivers, after the policy: the metrics, the cohorts and the
/// windows in epoch ms. Stored with the job, so workers apply exactly what was granted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    pub metrics: Vec<Metric>,
    /// The policy's cohorts (`*`: every subject).
    pub cohorts: Vec<String>,
    /// Only subjects of this cohort (a Group export).
    pub group: Option<String>,
    /// Measured in `[from, to)`.
    pub measured_from: Option<i64>,
    pub measured_to: Option<i64>,
    /// Received (`_since`, `_until`) in `[since, until)`.
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub mode: Mode,
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    Ndjson,
}

impl OutputFormat {
    pub fn media_type(self) -> &'static str {
        match self {
            OutputFormat::Ndjson => "application/fhir+ndjson",
        }
    }
}

/// A parsed `$export` kick-off, before the policy.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExportRequest {
    /// `_type`: resource types (empty: all the server offers, i.e. Observation).
    pub types: Vec<String>,
    /// Metrics asked for through `_typeFilter=Observation?code=http://loinc.org|<code>`.
    pub metrics: Vec<Metric>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub output_format: Option<String>,
    /// `Group/{cohort}/$export`.
    pub group: Option<String>,
}

/// Why a kick-off is refused: the parameters are wrong (`400`) or ask for what the
/// partner may never see (`403`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    BadRequest(String),
    Forbidden(String),
}

const LOINC: &str = "http://loinc.org";

/// Parses the kick-off parameters (`name=value` pairs, already percent-decoded).
pub fn parse_export(
    params: &[(String, String)],
    group: Option<&str>,
) -> Result<ExportRequest, Refusal> {
    let bad = |m: String| Refusal::BadRequest(m);
    let mut req = ExportRequest {
        group: group.map(str::to_owned),
        ..ExportRequest::default()
    };
    if let Some(g) = group
        && (g.is_empty()
            || g.len() > 64
            || !g
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(bad(
            "the group id must be 1-64 letters, digits, '-' or '_'".into()
        ));
    }
    for (name, value) in params {
        match name.as_str() {
            "_type" => req
                .types
                .extend(value.split(',').map(|t| t.trim().to_owned())),
            "_since" | "_until" => {
                let t = crate::time::parse_rfc3339_ms(value).ok_or_else(|| {
                    bad(format!("{name} {:?} is not a FHIR instant", short(value)))
                })?;
                if name == "_since" {
                    req.since = Some(t)
                } else {
                    req.until = Some(t)
                }
            }
            "_outputFormat" => req.output_format = Some(value.clone()),
            "_typeFilter" => {
                for filter in value.split(',') {
                    let Some(query) = filter.strip_prefix("Observation?") else {
                        return Err(bad(format!(
                            "_typeFilter {:?} must be Observation?code=...",
                            short(filter)
                        )));
                    };
                    for part in query.split('&') {
                        let Some(codes) = part.strip_prefix("code=") else {
                            return Err(bad(format!(
                                "_typeFilter supports code= only, not {:?}",
                                short(part)
                            )));
                        };
                        for code in codes.split(',') {
                            let loinc = code
                                .strip_prefix(LOINC)
                                .and_then(|c| c.strip_prefix('|'))
                                .unwrap_or(code);
                            let metric = Metric::all()
                                .find(|m| {
                                    m.loinc() == loinc || m.spec().loinc_alternates.contains(&loinc)
                                })
                                .ok_or_else(|| {
                                    bad(format!(
                                        "code {:?} is no vital sign this server holds",
                                        short(code)
                                    ))
                                })?;
                            req.metrics.push(metric);
                        }
                    }
                }
            }
            "_elements" | "includeAssociatedData" | "patient" => {
                return Err(bad(format!("{name} is not supported")));
            }
            other => return Err(bad(format!("unknown parameter {:?}", short(other)))),
        }
    }
    if let Some(t) = req.types.iter().find(|t| *t != "Observation") {
        return Err(bad(format!(
            "_type {:?} is not exported (Observation only)",
            short(t)
        )));
    }
    if let (Some(a), Some(b)) = (req.since, req.until)
        && a >= b
    {
        return Err(bad("_since must be before _until".into()));
    }
    Ok(req)
}

fn short(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A granted export: what it will deliver, and what was withheld (said in the manifest).
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub scope: Scope,
    pub withheld: Vec<String>,
}

/// Applies a partner's policy to a request: deny by default.
pub fn authorize(
    policy: &Policy,
    status: PartnerStatus,
    req: &ExportRequest,
) -> Result<Grant, Refusal> {
    if status != PartnerStatus::Active {
        return Err(Refusal::Forbidden("the partner is suspended".into()));
    }
    let mut withheld = Vec::new();
    let metrics: Vec<Metric> = if req.metrics.is_empty() {
        let all: Vec<Metric> = Metric::all().filter(|m| policy.allows_metric(*m)).collect();
        let denied: Vec<&str> = Metric::all()
            .filter(|m| !policy.allows_metric(*m))
            .map(|m| m.name())
            .collect();
        if !denied.is_empty() {
            withheld.push(format!(
                "metrics outside the policy were not exported: {}",
                denied.join(", ")
            ));
        }
        all
    } else {
        if let Some(m) = req.metrics.iter().find(|m| !policy.allows_metric(**m)) {
            return Err(Refusal::Forbidden(format!(
                "the policy does not grant {} ({})",
                m.name(),
                m.loinc()
            )));
        }
        let mut m = req.metrics.clone();
        m.sort();
        m.dedup();
        m
    };
    if let Some(g) = &req.group
        && !policy.allows_cohort(Some(g))
    {
        return Err(Refusal::Forbidden(format!(
            "the policy does not grant cohort {g}"
        )));
    }
    let format = match req.output_format.as_deref() {
        None | Some("application/fhir+ndjson" | "application/ndjson" | "ndjson") => {
            OutputFormat::Ndjson
        }
        // A policy may grant Parquet (the lake's own format) for when the worker writes
        // it; until then the request is refused, never answered in another format.
        Some(PARQUET) => {
            return Err(Refusal::BadRequest(
                "_outputFormat application/vnd.apache.parquet is not offered yet; ask for application/fhir+ndjson".into(),
            ));
        }
        Some(other) => {
            return Err(Refusal::BadRequest(format!(
                "_outputFormat {:?} is not offered",
                short(other)
            )));
        }
    };
    let (earliest, latest) = (policy.earliest_ms(), policy.latest_ms());
    // Safe Harbor keeps no date element finer than the year: not in what is sent, and
    // not through the window either (a partner bisecting `_since` would date each
    // resource to the second).
    let instant = |t: i64| match policy.mode {
        Mode::Limited => format_rfc3339_ms(t),
        Mode::SafeHarbor => Date::from_epoch_ms(t).year.to_string(),
    };
    if earliest.is_some() || latest.is_some() {
        withheld.push(format!(
            "readings measured outside the policy's window ({} to {}) were not exported",
            earliest.map_or("the beginning".into(), instant),
            latest.map_or("now".into(), instant)
        ));
    }
    let (since, until) = match policy.mode {
        Mode::Limited => (req.since, req.until),
        Mode::SafeHarbor => {
            let since = req
                .since
                .map(|t| Date::year_start_ms(Date::from_epoch_ms(t).year));
            let until = req
                .until
                .map(|t| Date::year_start_ms(Date::from_epoch_ms(t - 1).year + 1));
            if since != req.since || until != req.until {
                withheld.push(format!(
                    "Safe Harbor: _since and _until were widened to whole calendar years ({} to {})",
                    since.map_or("the beginning".into(), instant),
                    until.map_or("now".into(), |u| instant(u - 1)),
                ));
            }
            (since, until)
        }
    };
    if !policy.cohorts.iter().any(|c| c == "*") && req.group.is_none() {
        withheld.push(format!(
            "subjects outside the cohorts {} were not exported",
            policy.cohorts.join(", ")
        ));
    }
    Ok(Grant {
        scope: Scope {
            metrics,
            cohorts: policy.cohorts.clone(),
            group: req.group.clone(),
            measured_from: earliest,
            measured_to: latest,
            since,
            until,
            mode: policy.mode,
            format,
        },
        withheld,
    })
}

impl Scope {
    /// Whether a reading measured at `measured_at`, received at `received_at`, of a
    /// subject in `cohort`, is in the export (the metric is the partition's).
    pub fn admits(&self, measured_at: i64, received_at: i64, cohort: Option<&str>) -> bool {
        let measured = self.measured_from.is_none_or(|f| measured_at >= f)
            && self.measured_to.is_none_or(|t| measured_at < t);
        let received = self.since.is_none_or(|s| received_at >= s)
            && self.until.is_none_or(|u| received_at < u);
        let cohort_ok = match &self.group {
            Some(g) => cohort == Some(g.as_str()),
            None => self
                .cohorts
                .iter()
                .any(|c| c == "*" || Some(c.as_str()) == cohort),
        };
        measured && received && cohort_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::from_json(
            r#"{"metrics": ["heart_rate", "spo2"], "cohorts": ["adult"], "earliest": "2026-01-01T00:00:00Z",
                "mode": "safe_harbor", "dua": "DUA-2026-017"}"#,
        )
        .unwrap()
    }

    fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn a_request_within_the_policy_is_granted_and_narrowed_with_what_was_withheld() {
        let req = parse_export(&params(&[("_type", "Observation")]), None).unwrap();
        let g = authorize(&policy(), PartnerStatus::Active, &req).unwrap();
        assert_eq!(g.scope.metrics, [Metric::HeartRate, Metric::Spo2]);
        assert_eq!(g.withheld.len(), 3, "{:?}", g.withheld);
        assert_eq!(g.scope.mode, Mode::SafeHarbor);
    }

    #[test]
    fn what_the_policy_never_grants_is_forbidden_and_bad_parameters_are_bad_requests() {
        let forbidden = |p: &[(&str, &str)], group: Option<&str>| {
            let req = parse_export(&params(p), group).unwrap();
            matches!(
                authorize(&policy(), PartnerStatus::Active, &req),
                Err(Refusal::Forbidden(_))
            )
        };
        assert!(forbidden(
            &[("_typeFilter", "Observation?code=http://loinc.org|8310-5")],
            None
        ));
        assert!(forbidden(&[], Some("neonatal")));
        let req = parse_export(&[], None).unwrap();
        assert!(matches!(
            authorize(&policy(), PartnerStatus::Suspended, &req),
            Err(Refusal::Forbidden(_))
        ));
        for bad in [
            vec![("_type", "Patient")],
            vec![("_since", "yesterday")],
            vec![
                ("_since", "2026-11-02T00:00:00Z"),
                ("_until", "2026-11-01T00:00:00Z"),
            ],
            vec![("_typeFilter", "Observation?code=http://loinc.org|1234-5")],
            vec![("_typeFilter", "Patient?gender=male")],
            vec![("_foo", "1")],
            vec![("_since", "2026-11-01T00:00:00Z' OR 1=1 --")],
        ] {
            assert!(
                matches!(
                    parse_export(&params(&bad), None),
                    Err(Refusal::BadRequest(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_export(&[], Some("a/../b")),
            Err(Refusal::BadRequest(_))
        ));
        // Parquet is refused, even where a policy grants it, rather than answered as NDJSON.
        let mut granted = policy();
        granted.formats = vec![PARQUET.into()];
        let req = parse_export(&params(&[("_outputFormat", PARQUET)]), None).unwrap();
        assert!(matches!(
            authorize(&granted, PartnerStatus::Active, &req),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn a_grant_is_covered_until_the_policy_narrows() {
        let req = parse_export(&[], None).unwrap();
        let scope = authorize(&policy(), PartnerStatus::Active, &req)
            .unwrap()
            .scope;
        assert!(policy().covers(&scope));
        let mut fewer = policy();
        fewer.metrics = vec!["heart_rate".into()];
        assert!(!fewer.covers(&scope), "a metric was taken away");
        let mut later = policy();
        later.earliest = Some("2027-01-01T00:00:00Z".into());
        assert!(!later.covers(&scope), "the window narrowed");
        let mut limited = policy();
        limited.mode = Mode::Limited;
        assert!(!limited.covers(&scope), "the mode changed");
        let mut wider = policy();
        wider.cohorts = vec!["*".into()];
        assert!(wider.covers(&scope));
    }

    #[test]
    fn safe_harbor_windows_are_whole_calendar_years() {
        let t = |x: &str| parse_rfc3339_ms(x).unwrap();
        let req = parse_export(
            &params(&[
                ("_since", "2026-11-01T10:00:00Z"),
                ("_until", "2026-11-01T10:00:01Z"),
            ]),
            None,
        )
        .unwrap();
        let g = authorize(&policy(), PartnerStatus::Active, &req).unwrap();
        assert_eq!(g.scope.since, Some(t("2026-01-01T00:00:00Z")));
        assert_eq!(g.scope.until, Some(t("2027-01-01T00:00:00Z")));
        let said = g.withheld.join("\n");
        assert!(
            said.contains("widened to whole calendar years (2026 to 2026)"),
            "{said}"
        );
        assert!(
            !said.contains("-01-01"),
            "no date finer than the year: {said}"
        );
        // An until at a year's start stays there.
        let req = parse_export(&params(&[("_until", "2026-01-01T00:00:00Z")]), None).unwrap();
        let g = authorize(&policy(), PartnerStatus::Active, &req).unwrap();
        assert_eq!(g.scope.until, Some(t("2026-01-01T00:00:00Z")));
        // A policy window finer than the year is refused in Safe Harbor mode.
        let fine = r#"{"metrics": ["heart_rate"], "cohorts": ["*"], "earliest": "2026-03-01T00:00:00Z",
                       "mode": "safe_harbor", "dua": "DUA-1"}"#;
        assert!(
            Policy::from_json(fine)
                .unwrap_err()
                .0
                .contains("start of a year")
        );
        assert!(Policy::from_json(&fine.replace("safe_harbor", "limited")).is_ok());
    }

    #[test]
    fn the_scope_admits_only_readings_inside_every_window_and_cohort() {
        let mut p = policy();
        p.mode = Mode::Limited;
        let req = parse_export(&params(&[("_since", "2026-11-01T00:00:00Z")]), None).unwrap();
        let s = authorize(&p, PartnerStatus::Active, &req).unwrap().scope;
        let t = |x: &str| parse_rfc3339_ms(x).unwrap();
        assert!(s.admits(
            t("2026-06-01T00:00:00Z"),
            t("2026-11-02T00:00:00Z"),
            Some("adult")
        ));
        assert!(
            !s.admits(
                t("2025-06-01T00:00:00Z"),
                t("2026-11-02T00:00:00Z"),
                Some("adult")
            ),
            "before the policy"
        );
        assert!(
            !s.admits(
                t("2026-06-01T00:00:00Z"),
                t("2026-10-02T00:00:00Z"),
                Some("adult")
            ),
            "before _since"
        );
        assert!(!s.admits(
            t("2026-06-01T00:00:00Z"),
            t("2026-11-02T00:00:00Z"),
            Some("neonatal")
        ));
        assert!(
            !s.admits(t("2026-06-01T00:00:00Z"), t("2026-11-02T00:00:00Z"), None),
            "no cohort is no grant"
        );
    }

    #[test]
    fn policies_that_would_grant_nothing_or_anything_unclear_are_refused() {
        for bad in [
            r#"{"metrics": [], "cohorts": ["*"], "mode": "limited", "dua": "x"}"#,
            r#"{"metrics": ["mood"], "cohorts": ["*"], "mode": "limited", "dua": "x"}"#,
            r#"{"metrics": ["spo2"], "cohorts": [], "mode": "limited", "dua": "x"}"#,
            r#"{"metrics": ["spo2"], "cohorts": ["*"], "mode": "limited", "dua": ""}"#,
            r#"{"metrics": ["spo2"], "cohorts": ["*"], "mode": "open", "dua": "x"}"#,
            r#"{"metrics": ["spo2"], "cohorts": ["*"], "mode": "limited", "dua": "x", "earliest": "2027-01-01T00:00:00Z", "latest": "2026-01-01T00:00:00Z"}"#,
            r#"{"metrics": ["spo2"], "cohorts": ["*"], "mode": "limited", "dua": "x", "extra": 1}"#,
        ] {
            assert!(Policy::from_json(bad).is_err(), "{bad}");
        }
    }
}
