//! Vitals alert rules, as data, and their evaluation.
//!
//! A rules document (JSON, deployed as an SSM parameter) lists rules per metric,
//! optionally per cohort: a threshold, a sustained breach (N consecutive readings, or a
//! duration) or a rate of change, each with a severity and a cooldown. It is validated
//! as a whole when a container starts, so a bad document fails the deployment's first
//! invocation with a clear message rather than misjudging a patient.
//!
//! Evaluation is pure and deterministic: the state of one (subject, rule) pair and a
//! reading in, the new state and perhaps a firing out. Times are measurement times, so
//! replaying the same readings gives the same state and the same alert ids.

mod document;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::metric::Metric;

/// How urgent an alert is; subscribers filter on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A bound a value breaches: above `above` or below `below` (either or both).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    #[serde(default)]
    pub above: Option<f64>,
    #[serde(default)]
    pub below: Option<f64>,
}

impl Bounds {
    pub fn breached_by(&self, v: f64) -> bool {
        self.above.is_some_and(|a| v > a) || self.below.is_some_and(|b| v < b)
    }
}

/// What makes a rule fire.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// One reading out of bounds.
    Threshold(Bounds),
    /// Out of bounds for `readings` consecutive readings, or continuously for `for_ms`.
    Sustained {
        bounds: Bounds,
        readings: Option<u32>,
        for_ms: Option<i64>,
    },
    /// A rise (or fall) of at least `rise` (`fall`) within `within_ms`.
    RateOfChange {
        rise: Option<f64>,
        fall: Option<f64>,
        within_ms: i64,
    },
    /// A technical alarm: `readings` consecutive values outside the metric's plausible
    /// range that no physiological rule of the metric (for the rule's cohort) treats as
    /// a breach. A heart rate of 0 is a physiological page (below `hr-low`'s bound);
    /// an SpO2 of 127 % or a skin probe reading 22 Cel is a sensor fault.
    SensorFault {
        readings: u32,
        /// The bounds of the physiological rules that explain an implausible value.
        explained_by: Vec<Bounds>,
    },
}

impl Condition {
    /// Technical alarms are about the equipment, not the patient.
    pub fn kind(&self) -> AlertKind {
        match self {
            Condition::SensorFault { .. } => AlertKind::Technical,
            _ => AlertKind::Physiological,
        }
    }
}

/// What an alert is about: subscribers route technical alarms (sensor faults, silent
/// devices) to equipment staff and physiological ones to clinicians.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    Physiological,
    Technical,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Physiological => "physiological",
            AlertKind::Technical => "technical",
        }
    }
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub metric: Metric,
    /// When set, only subjects of this cohort.
    pub cohort: Option<String>,
    pub severity: Severity,
    pub condition: Condition,
    /// After a firing, the same rule stays quiet for the same subject this long
    /// (measurement time), however many readings breach.
    pub cooldown_ms: i64,
}

pub use document::RulesError;

/// The validated rules document.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Rule indexes per metric, so a reading only meets its own metric's rules.
    by_metric: [Vec<u16>; Metric::COUNT],
    /// Readings measured longer ago than this are history: evaluated, never paged.
    pub history_after_ms: i64,
    /// Paging when an assigned device falls silent (none when the document has none).
    pub device_silence: Option<SilenceRule>,
}

/// A device with a subject assigned that sends nothing for `after_ms` raises one
/// technical page, and one recovery page when it is heard again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SilenceRule {
    pub after_ms: i64,
    pub severity: Severity,
}

impl RuleSet {
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn rule(&self, index: usize) -> &Rule {
        &self.rules[index]
    }

    /// Indexes of the rules that apply to a reading of `metric` for a subject of `cohort`.
    pub fn applicable<'a>(
        &'a self,
        metric: Metric,
        cohort: Option<&'a str>,
    ) -> impl Iterator<Item = usize> + 'a {
        self.by_metric[metric as usize]
            .iter()
            .map(|&i| i as usize)
            .filter(move |&i| match &self.rules[i].cohort {
                None => true,
                Some(c) => cohort == Some(c.as_str()),
            })
    }
}

/// Points kept for a rate-of-change window (readings arrive every 20-60 s; a window of
/// an hour at 20 s needs 180). Past this, the oldest points go first.
const MAX_POINTS: usize = 256;

/// What a (subject, rule) pair remembers between readings. Stored as is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// Measurement time of the latest reading applied; older or equal ones are replays.
    #[serde(default)]
    pub last_at: i64,
    /// Sustained rules: the current run of breaching readings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breach_since: Option<i64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub breach_count: u32,
    /// Rate-of-change rules: recent (time, value) points inside the window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub points: Vec<(i64, f64)>,
    /// When the rule last fired (measurement time), for the cooldown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_at: Option<i64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A rule firing on a reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Firing {
    pub at: i64,
    pub value: f64,
}

/// The result of applying one reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Not newer than what the state has seen (a redelivery or a late reading): ignored.
    Replay,
    /// Applied; nothing to say.
    Quiet,
    /// The rule fires: page.
    Fired(Firing),
    /// The rule would fire, but the reading is history: recorded, never paged, and it
    /// starts no cooldown (a live breach right after must still page).
    Suppressed(Firing),
}

impl Rule {
    /// Applies a reading (`at` ms, `value` in the canonical unit) to the pair's state;
    /// `live` is false for history (replayed or backfilled readings).
    pub fn apply(&self, state: &mut RuleState, at: i64, value: f64, live: bool) -> Step {
        if at <= state.last_at {
            return Step::Replay;
        }
        state.last_at = at;
        let breach = match &self.condition {
            Condition::Threshold(b) => b.breached_by(value),
            Condition::Sustained {
                bounds,
                readings,
                for_ms,
            } => {
                if bounds.breached_by(value) {
                    let since = *state.breach_since.get_or_insert(at);
                    state.breach_count = state.breach_count.saturating_add(1);
                    readings.is_some_and(|n| state.breach_count >= n)
                        || for_ms.is_some_and(|d| at - since >= d)
                } else {
                    state.breach_since = None;
                    state.breach_count = 0;
                    false
                }
            }
            Condition::SensorFault {
                readings,
                explained_by,
            } => {
                let fault = !self.metric.is_plausible(value)
                    && !explained_by.iter().any(|b| b.breached_by(value));
                if fault {
                    state.breach_since.get_or_insert(at);
                    state.breach_count = state.breach_count.saturating_add(1);
                    state.breach_count >= *readings
                } else {
                    state.breach_since = None;
                    state.breach_count = 0;
                    false
                }
            }
            Condition::RateOfChange {
                rise,
                fall,
                within_ms,
            } => {
                state.points.retain(|(t, _)| at - *t <= *within_ms);
                let (lo, hi) = state
                    .points
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
                        (lo.min(*v), hi.max(*v))
                    });
                if state.points.len() >= MAX_POINTS {
                    state.points.remove(0);
                }
                state.points.push((at, value));
                rise.is_some_and(|r| value - lo >= r) || fall.is_some_and(|f| hi - value >= f)
            }
        };
        if !breach || state.fired_at.is_some_and(|f| at - f < self.cooldown_ms) {
            return Step::Quiet;
        }
        if !live {
            return Step::Suppressed(Firing { at, value });
        }
        state.fired_at = Some(at);
        Step::Fired(Firing { at, value })
    }

    /// How long a pair's state must be kept for this rule to work (then it may expire).
    pub fn memory_ms(&self) -> i64 {
        let window = match &self.condition {
            Condition::Threshold(_) => 0,
            Condition::Sustained { for_ms, .. } => for_ms.unwrap_or(3_600_000),
            Condition::SensorFault { .. } => 3_600_000,
            Condition::RateOfChange { within_ms, .. } => *within_ms,
        };
        window.max(self.cooldown_ms)
    }
}

/// An alert as subscribers receive it (the SNS message body). It names the subject only
/// by the pseudonymous key of the device registry: no name, MRN or device serial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: String,
    pub rule: String,
    pub severity: Severity,
    /// Physiological (the patient) or technical (the equipment).
    pub kind: AlertKind,
    pub metric: String,
    pub subject: String,
    pub value: f64,
    pub unit: String,
    pub measured_at: String,
    pub raised_at: String,
    /// When the triggering record reached the stream (epoch ms): latency is measured from it.
    pub arrived_at_ms: i64,
}

/// The alert id: the same rule, subject and triggering measurement always give the same
/// id, so a retried publish can be recognised downstream.
pub fn alert_id(rule_id: &str, subject_id: &str, at: i64) -> String {
    let mut h = Sha256::new();
    h.update(rule_id.as_bytes());
    h.update([0]);
    h.update(subject_id.as_bytes());
    h.update([0]);
    h.update(at.to_be_bytes());
    hex::encode(&h.finalize()[..16])
}

/// The rules deployed by default (`crates/domain/rules/default.json`, the SSM parameter's
/// initial value; a test keeps `template.yaml` in step).
pub const DEFAULT_RULES: &str = include_str!("../../rules/default.json");

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"version": 1, "history_after_seconds": 300, "rules": [
        {"id": "hr-high", "metric": "heart_rate", "severity": "high", "threshold": {"above": 130}, "cooldown_seconds": 600},
        {"id": "spo2-low-3", "metric": "spo2", "severity": "critical", "sustained": {"below": 90, "readings": 3}},
        {"id": "spo2-low-5min", "metric": "spo2", "severity": "high", "sustained": {"below": 92, "for_seconds": 300}},
        {"id": "temp-rise", "metric": "body_temp", "severity": "warning", "rate_of_change": {"rise": 1.0, "within_seconds": 1800}},
        {"id": "hr-high-neonatal", "metric": "heart_rate", "cohort": "neonatal", "severity": "high", "threshold": {"above": 180, "below": 90}}
    ]}"#;

    fn rules() -> RuleSet {
        RuleSet::from_json(DOC).unwrap()
    }

    fn rule(id: &str) -> Rule {
        rules().rules().iter().find(|r| r.id == id).unwrap().clone()
    }

    const MIN: i64 = 60_000;

    #[test]
    fn rules_apply_by_metric_and_cohort() {
        let r = rules();
        let ids =
            |m, c| -> Vec<&str> { r.applicable(m, c).map(|i| r.rule(i).id.as_str()).collect() };
        assert_eq!(ids(Metric::HeartRate, None), ["hr-high"]);
        assert_eq!(
            ids(Metric::HeartRate, Some("neonatal")),
            ["hr-high", "hr-high-neonatal"]
        );
        assert_eq!(
            ids(Metric::Spo2, Some("adult")),
            ["spo2-low-3", "spo2-low-5min"]
        );
        assert!(ids(Metric::Glucose, None).is_empty());
    }

    #[test]
    fn a_threshold_fires_once_per_cooldown() {
        let r = rule("hr-high");
        let mut s = RuleState::default();
        assert_eq!(r.apply(&mut s, MIN, 120.0, true), Step::Quiet);
        assert_eq!(
            r.apply(&mut s, 2 * MIN, 140.0, true),
            Step::Fired(Firing {
                at: 2 * MIN,
                value: 140.0
            })
        );
        for m in 3..12 {
            assert_eq!(
                r.apply(&mut s, m * MIN, 150.0, true),
                Step::Quiet,
                "cooling down at minute {m}"
            );
        }
        assert!(
            matches!(r.apply(&mut s, 12 * MIN, 150.0, true), Step::Fired(_)),
            "10 minutes later it may page again"
        );
    }

    #[test]
    fn a_replayed_or_late_reading_changes_nothing() {
        let r = rule("hr-high");
        let mut s = RuleState::default();
        assert!(matches!(
            r.apply(&mut s, 5 * MIN, 140.0, true),
            Step::Fired(_)
        ));
        let before = s.clone();
        assert_eq!(r.apply(&mut s, 5 * MIN, 140.0, true), Step::Replay);
        assert_eq!(r.apply(&mut s, 4 * MIN, 150.0, true), Step::Replay);
        assert_eq!(s, before);
    }

    #[test]
    fn sustained_by_count_needs_consecutive_breaches() {
        let r = rule("spo2-low-3");
        let mut s = RuleState::default();
        let fired: Vec<bool> = [88.0, 87.0, 95.0, 89.0, 88.0, 87.0]
            .iter()
            .enumerate()
            .map(|(i, v)| {
                matches!(
                    r.apply(&mut s, (i as i64 + 1) * MIN, *v, true),
                    Step::Fired(_)
                )
            })
            .collect();
        assert_eq!(fired, [false, false, false, false, false, true]);
    }

    #[test]
    fn sustained_by_duration_fires_when_the_breach_has_lasted() {
        let r = rule("spo2-low-5min");
        let mut s = RuleState::default();
        assert_eq!(r.apply(&mut s, 1, 91.0, true), Step::Quiet);
        assert_eq!(r.apply(&mut s, 4 * MIN, 91.0, true), Step::Quiet);
        assert!(matches!(
            r.apply(&mut s, 5 * MIN + 1, 90.0, true),
            Step::Fired(_)
        ));
    }

    #[test]
    fn rate_of_change_compares_with_the_window_minimum() {
        let r = rule("temp-rise");
        let mut s = RuleState::default();
        assert_eq!(r.apply(&mut s, MIN, 37.0, true), Step::Quiet);
        assert_eq!(r.apply(&mut s, 10 * MIN, 37.5, true), Step::Quiet);
        assert!(matches!(
            r.apply(&mut s, 20 * MIN, 38.1, true),
            Step::Fired(_)
        ));
        // A slow rise outside the window does not count.
        let mut slow = RuleState::default();
        assert_eq!(r.apply(&mut slow, MIN, 37.0, true), Step::Quiet);
        assert_eq!(r.apply(&mut slow, 40 * MIN, 37.6, true), Step::Quiet);
        assert_eq!(r.apply(&mut slow, 80 * MIN, 38.2, true), Step::Quiet);
    }

    #[test]
    fn history_is_evaluated_but_never_fires_nor_starts_a_cooldown() {
        let r = rule("hr-high");
        let mut s = RuleState::default();
        assert!(matches!(
            r.apply(&mut s, MIN, 150.0, false),
            Step::Suppressed(_)
        ));
        assert_eq!(s.fired_at, None);
        assert!(matches!(
            r.apply(&mut s, 2 * MIN, 150.0, true),
            Step::Fired(_)
        ));
    }

    #[test]
    fn alert_ids_are_deterministic_and_distinct() {
        let a = alert_id("hr-high", "subj-1", 1000);
        assert_eq!(a, alert_id("hr-high", "subj-1", 1000));
        assert_eq!(a.len(), 32);
        assert_ne!(a, alert_id("hr-high", "subj-1", 1001));
        assert_ne!(a, alert_id("hr-high", "subj-2", 1000));
    }

    #[test]
    fn bad_documents_are_refused_with_the_rule_and_the_problem() {
        let refuse = |doc: &str, needle: &str| {
            let e = RuleSet::from_json(doc).unwrap_err().to_string();
            assert!(e.contains(needle), "{e:?} should mention {needle:?}");
        };
        let one = |rule: &str| format!(r#"{{"version": 1, "rules": [{rule}]}}"#);
        refuse("nope", "not valid rules JSON");
        refuse(r#"{"version": 2, "rules": []}"#, "version 2");
        refuse(r#"{"version": 1, "rules": []}"#, "no rules");
        refuse(
            &one(r#"{"id": "x", "metric": "mood", "severity": "high", "threshold": {"above": 1}}"#),
            "\"mood\" is not in the catalog",
        );
        refuse(
            &one(
                r#"{"id": "x", "metric": "spo2", "severity": "high", "threshold": {"above": 1000}}"#,
            ),
            "outside the plausible range",
        );
        refuse(
            &one(r#"{"id": "x", "metric": "spo2", "severity": "high", "threshold": {}}"#),
            "give `above`, `below` or both",
        );
        refuse(
            &one(r#"{"id": "x", "metric": "spo2", "severity": "high"}"#),
            "exactly one of",
        );
        refuse(
            &one(
                r#"{"id": "x", "metric": "spo2", "severity": "loud", "threshold": {"below": 90}}"#,
            ),
            "loud",
        );
        refuse(
            &one(
                r#"{"id": "x", "metric": "spo2", "severity": "high", "sustained": {"below": 90}}"#,
            ),
            "exactly one of `readings`",
        );
        refuse(
            &one(
                r#"{"id": "x", "metric": "spo2", "severity": "high", "threshold": {"below": 90}, "treshold": 1}"#,
            ),
            "treshold",
        );
        refuse(
            &one(
                r#"{"id": "X Y", "metric": "spo2", "severity": "high", "threshold": {"below": 90}}"#,
            ),
            "the id must be",
        );
        refuse(
            &one(
                r#"{"id": "x", "metric": "body_temp", "severity": "high", "rate_of_change": {"rise": -1, "within_seconds": 60}}"#,
            ),
            "positive",
        );
        refuse(
            r#"{"version": 1, "rules": [{"id": "x", "metric": "spo2", "severity": "high", "threshold": {"below": 90}},
                {"id": "x", "metric": "spo2", "severity": "high", "threshold": {"below": 85}}]}"#,
            "used twice",
        );
    }

    #[test]
    fn implausible_values_breach_physiological_rules() {
        let r = RuleSet::from_json(DEFAULT_RULES).unwrap();
        let low = r.rules().iter().find(|r| r.id == "hr-low").unwrap();
        let mut s = RuleState::default();
        let steps: Vec<Step> = [0.0, 18.0, 0.0]
            .iter()
            .enumerate()
            .map(|(i, v)| low.apply(&mut s, (i as i64 + 1) * MIN, *v, true))
            .collect();
        assert_eq!(
            steps[2],
            Step::Fired(Firing {
                at: 3 * MIN,
                value: 0.0
            })
        );
    }

    #[test]
    fn a_sensor_fault_pages_after_consecutive_unexplained_implausible_values() {
        let doc = r#"{"version": 1, "rules": [
            {"id": "spo2-low", "metric": "spo2", "severity": "critical", "sustained": {"below": 90, "readings": 3}},
            {"id": "spo2-sensor", "metric": "spo2", "severity": "warning", "sensor_fault": {"readings": 3}}
        ]}"#;
        let r = RuleSet::from_json(doc).unwrap();
        let fault = r.rules().iter().find(|r| r.id == "spo2-sensor").unwrap();
        assert_eq!(fault.condition.kind(), AlertKind::Technical);
        let mut s = RuleState::default();
        let mut at = 0;
        let mut feed = |v: f64| {
            at += MIN;
            fault.apply(&mut s, at, v, true)
        };
        // 127 % twice, then a plausible value resets the run.
        assert_eq!(
            (feed(127.0), feed(127.0), feed(97.0)),
            (Step::Quiet, Step::Quiet, Step::Quiet)
        );
        // 30 % is implausible but explained: spo2-low pages on it, not the sensor rule.
        assert_eq!(
            (feed(30.0), feed(30.0), feed(30.0)),
            (Step::Quiet, Step::Quiet, Step::Quiet)
        );
        assert_eq!(feed(127.0), Step::Quiet);
        assert_eq!(feed(140.0), Step::Quiet);
        assert!(matches!(feed(127.0), Step::Fired(_)));
        // One page per cooldown, however long the fault lasts.
        assert_eq!(feed(127.0), Step::Quiet);
    }

    #[test]
    fn device_silence_is_configured_in_the_rules_document() {
        let r = RuleSet::from_json(DEFAULT_RULES).unwrap();
        assert!(r.device_silence.is_some_and(|d| d.after_ms >= 60_000));
        let bad = r#"{"version": 1, "rules": [{"id": "x", "metric": "spo2", "severity": "high", "threshold": {"below": 90}}],
            "device_silence": {"after_seconds": 5, "severity": "high"}}"#;
        assert!(
            RuleSet::from_json(bad)
                .unwrap_err()
                .to_string()
                .contains("device_silence")
        );
    }

    #[test]
    fn per_metric_tables_cover_every_metric() {
        assert_eq!(Metric::all().count(), Metric::COUNT);
        assert!(Metric::all().all(|m| (m as usize) < Metric::COUNT));
    }

    #[test]
    fn the_deployed_default_rules_are_valid() {
        let r = RuleSet::from_json(DEFAULT_RULES).unwrap();
        assert!(r.rules().len() >= 4);
    }
}
