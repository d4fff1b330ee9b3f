//! The rules document: parsed and validated as a whole when a container starts, every
//! problem named with its rule, so a bad document fails a deployment, never a patient.

use serde::Deserialize;

use super::{Bounds, Condition, Rule, RuleSet, Severity, SilenceRule};
use crate::metric::Metric;

/// Why a rules document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("invalid alert rules: the document is not valid rules JSON: {0}")]
    NotADocument(String),
    #[error("invalid alert rules: version {0} is not supported (expected 1)")]
    Version(u32),
    /// A document-wide setting is out of bounds or missing.
    #[error("invalid alert rules: {0}")]
    Document(&'static str),
    #[error("invalid alert rules: rule id {0:?} is used twice")]
    DuplicateId(String),
    #[error("invalid alert rules: rule {rule:?}: {problem}")]
    Rule { rule: String, problem: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    version: u32,
    #[serde(default = "default_history_seconds")]
    history_after_seconds: i64,
    rules: Vec<RuleDoc>,
    #[serde(default)]
    device_silence: Option<SilenceDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceDoc {
    after_seconds: i64,
    severity: Severity,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SensorFaultDoc {
    readings: u32,
}

fn default_history_seconds() -> i64 {
    300
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    id: String,
    metric: String,
    #[serde(default)]
    cohort: Option<String>,
    severity: Severity,
    #[serde(default)]
    cooldown_seconds: Option<i64>,
    #[serde(default)]
    threshold: Option<Bounds>,
    #[serde(default)]
    sustained: Option<SustainedDoc>,
    #[serde(default)]
    rate_of_change: Option<RateDoc>,
    #[serde(default)]
    sensor_fault: Option<SensorFaultDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SustainedDoc {
    #[serde(default)]
    above: Option<f64>,
    #[serde(default)]
    below: Option<f64>,
    #[serde(default)]
    readings: Option<u32>,
    #[serde(default)]
    for_seconds: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateDoc {
    #[serde(default)]
    rise: Option<f64>,
    #[serde(default)]
    fall: Option<f64>,
    within_seconds: i64,
}

const DEFAULT_COOLDOWN_S: i64 = 900;
const MAX_WINDOW_S: i64 = 24 * 3600;

impl RuleSet {
    /// Parses and validates a rules document; every problem is named with its rule.
    pub fn from_json(text: &str) -> Result<RuleSet, RulesError> {
        let doc: Document =
            serde_json::from_str(text).map_err(|e| RulesError::NotADocument(e.to_string()))?;
        if doc.version != 1 {
            return Err(RulesError::Version(doc.version));
        }
        if !(0..=7 * 86_400).contains(&doc.history_after_seconds) {
            return Err(RulesError::Document(
                "history_after_seconds must be between 0 and 604800",
            ));
        }
        if doc.rules.is_empty() {
            return Err(RulesError::Document("the document has no rules"));
        }
        if doc.rules.len() > u16::MAX as usize {
            return Err(RulesError::Document("too many rules"));
        }
        let mut rules = Vec::with_capacity(doc.rules.len());
        for r in doc.rules {
            let rule = validate(r)?;
            if rules.iter().any(|x: &Rule| x.id == rule.id) {
                return Err(RulesError::DuplicateId(rule.id));
            }
            rules.push(rule);
        }
        explain_sensor_faults(&mut rules);
        let mut by_metric: [Vec<u16>; Metric::COUNT] = Default::default();
        for (i, r) in rules.iter().enumerate() {
            by_metric[r.metric as usize].push(i as u16);
        }
        let device_silence = match doc.device_silence {
            None => None,
            Some(d) if (60..=7 * 86_400).contains(&d.after_seconds) => Some(SilenceRule {
                after_ms: d.after_seconds * 1000,
                severity: d.severity,
            }),
            Some(_) => {
                return Err(RulesError::Document(
                    "device_silence.after_seconds must be between 60 and 604800",
                ));
            }
        };
        Ok(RuleSet {
            rules,
            by_metric,
            history_after_ms: doc.history_after_seconds * 1000,
            device_silence,
        })
    }
}

/// Gives each sensor-fault rule the bounds of the physiological rules that apply
/// wherever it does (same metric; no cohort, or its own), so that a value those rules
/// page on is not also a sensor fault.
fn explain_sensor_faults(rules: &mut [Rule]) {
    let bounds: Vec<(Metric, Option<String>, Bounds)> = rules
        .iter()
        .filter_map(|r| match &r.condition {
            Condition::Threshold(b) | Condition::Sustained { bounds: b, .. } => {
                Some((r.metric, r.cohort.clone(), *b))
            }
            _ => None,
        })
        .collect();
    for r in rules.iter_mut() {
        let (metric, cohort) = (r.metric, r.cohort.clone());
        if let Condition::SensorFault { explained_by, .. } = &mut r.condition {
            *explained_by = bounds
                .iter()
                .filter(|(m, c, _)| *m == metric && (c.is_none() || *c == cohort))
                .map(|(_, _, b)| *b)
                .collect();
        }
    }
}

fn validate(r: RuleDoc) -> Result<Rule, RulesError> {
    let id = r.id;
    let err = |problem: String| RulesError::Rule {
        rule: id.clone(),
        problem,
    };
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(err(
            "the id must be 1-64 characters of a-z, 0-9, '-' or '_'".into(),
        ));
    }
    let metric = Metric::from_name(&r.metric)
        .ok_or_else(|| err(format!("metric {:?} is not in the catalog", r.metric)))?;
    if let Some(c) = &r.cohort
        && (c.is_empty() || c.len() > 64)
    {
        return Err(err("a cohort must be 1-64 characters".into()));
    }
    let cooldown_s = r.cooldown_seconds.unwrap_or(DEFAULT_COOLDOWN_S);
    if !(0..=MAX_WINDOW_S).contains(&cooldown_s) {
        return Err(err(format!(
            "cooldown_seconds must be between 0 and {MAX_WINDOW_S}"
        )));
    }
    let spec = metric.spec();
    let check_bounds = |b: &Bounds| -> Result<(), RulesError> {
        if b.above.is_none() && b.below.is_none() {
            return Err(err("give `above`, `below` or both".into()));
        }
        for v in [b.above, b.below].into_iter().flatten() {
            if !v.is_finite() || v < spec.min || v > spec.max {
                return Err(err(format!(
                    "bound {v} is outside the plausible range of {metric} ({}..={} {})",
                    spec.min, spec.max, spec.unit
                )));
            }
        }
        if let (Some(a), Some(b)) = (b.above, b.below)
            && b >= a
        {
            return Err(err(
                "`below` must be lower than `above` (otherwise every value breaches)".into(),
            ));
        }
        Ok(())
    };
    let kinds = [
        r.threshold.is_some(),
        r.sustained.is_some(),
        r.rate_of_change.is_some(),
        r.sensor_fault.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(err(
            "give exactly one of `threshold`, `sustained`, `rate_of_change`, `sensor_fault`".into(),
        ));
    }
    let condition = if let Some(b) = r.threshold {
        check_bounds(&b)?;
        Condition::Threshold(b)
    } else if let Some(s) = r.sustained {
        let bounds = Bounds {
            above: s.above,
            below: s.below,
        };
        check_bounds(&bounds)?;
        match (s.readings, s.for_seconds) {
            (Some(n), None) if (2..=1000).contains(&n) => {}
            (None, Some(t)) if (1..=MAX_WINDOW_S).contains(&t) => {}
            _ => {
                return Err(err(
                    "sustained needs exactly one of `readings` (2-1000) or `for_seconds` (1-86400)"
                        .into(),
                ));
            }
        }
        Condition::Sustained {
            bounds,
            readings: s.readings,
            for_ms: s.for_seconds.map(|t| t * 1000),
        }
    } else if let Some(rc) = r.rate_of_change {
        for v in [rc.rise, rc.fall].into_iter().flatten() {
            if !(v.is_finite() && v > 0.0) {
                return Err(err("`rise` and `fall` must be positive".into()));
            }
        }
        if rc.rise.is_none() && rc.fall.is_none() {
            return Err(err("rate_of_change needs `rise`, `fall` or both".into()));
        }
        if !(1..=MAX_WINDOW_S).contains(&rc.within_seconds) {
            return Err(err(format!(
                "within_seconds must be between 1 and {MAX_WINDOW_S}"
            )));
        }
        Condition::RateOfChange {
            rise: rc.rise,
            fall: rc.fall,
            within_ms: rc.within_seconds * 1000,
        }
    } else if let Some(f) = r.sensor_fault {
        if !(1..=1000).contains(&f.readings) {
            return Err(err(
                "sensor_fault needs `readings` between 1 and 1000".into()
            ));
        }
        Condition::SensorFault {
            readings: f.readings,
            explained_by: Vec::new(),
        }
    } else {
        unreachable!("exactly one kind was checked above")
    };
    Ok(Rule {
        id,
        metric,
        cohort: r.cohort,
        severity: r.severity,
        condition,
        cooldown_ms: cooldown_s * 1000,
    })
}
