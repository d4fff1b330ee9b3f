//! Device silence: an assigned device that sends nothing for a while is a technical
//! alarm (a flat battery, a lost connection, a monitor switched off), paged once, with
//! one recovery page when the device is heard again.
//!
//! vitals-alert records when each device was last heard (at most every
//! [`SilenceRule::heartbeat_every_ms`], so the cost stays a few writes per device per
//! hour); a scheduled sweep reads those heartbeats and decides with [`next_step`]. Every
//! transition is a conditional write, and pages are published from the stored state, so
//! a crash or a failed publish means the next sweep publishes again (same alert id),
//! never a lost or doubled page.

use crate::alerting::{Alert, AlertKind, SilenceRule, alert_id};
use crate::time::format_rfc3339_ms;

/// Rule ids of silence pages (technical alarms; subscribers filter on `rule`).
pub const SILENT_RULE: &str = "device-silent";
pub const RECOVERED_RULE: &str = "device-recovered";

/// What the platform knows of a device's reporting.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// When it was last heard (stream arrival time, epoch ms).
    pub last_seen: i64,
    pub silent: Option<Silent>,
}

/// A silence that was declared.
#[derive(Debug, Clone, PartialEq)]
pub struct Silent {
    /// `last_seen` when the silence was declared: hearing anything later ends it.
    pub seen: i64,
    /// The subject the device was assigned to (the page names the subject, never the device).
    pub subject: String,
    /// The silence page was published.
    pub paged: bool,
    /// The device was heard again and the recovery page is being published.
    pub recovering: bool,
}

/// What the sweep does about one device.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Nothing,
    /// Silent for longer than the rule allows: declare it (if the device still has a
    /// subject assigned; the sweep checks the registry) and page.
    Declare,
    /// Declared but not yet paged (a failed publish): page again, with the same id.
    PageSilence,
    /// Heard again after a paged silence: page the recovery.
    Recover,
    /// Heard again before the silence was ever paged: just clear it.
    Clear,
}

impl SilenceRule {
    /// How often vitals-alert records that a device was heard: a quarter of the
    /// silence window, so a silence is detected at most a quarter late.
    pub fn heartbeat_every_ms(&self) -> i64 {
        (self.after_ms / 4).max(15_000)
    }
}

/// The sweep's decision for one device at `now`.
pub fn next_step(hb: &Heartbeat, rule: &SilenceRule, now: i64) -> Step {
    match &hb.silent {
        None if now - hb.last_seen >= rule.after_ms => Step::Declare,
        None => Step::Nothing,
        Some(s) if hb.last_seen > s.seen || s.recovering => {
            if s.paged {
                Step::Recover
            } else {
                Step::Clear
            }
        }
        Some(s) if !s.paged => Step::PageSilence,
        Some(_) => Step::Nothing,
    }
}

/// The silence page. `value` is the minutes without a reading.
pub fn silence_alert(rule: &SilenceRule, s: &Silent, now: i64) -> Alert {
    page(SILENT_RULE, rule, s, now, (now - s.seen) as f64 / 60_000.0)
}

/// The recovery page. `value` is the minutes the device was silent for.
pub fn recovery_alert(rule: &SilenceRule, s: &Silent, heard_at: i64, now: i64) -> Alert {
    page(
        RECOVERED_RULE,
        rule,
        s,
        now,
        (heard_at - s.seen) as f64 / 60_000.0,
    )
}

fn page(rule_id: &str, rule: &SilenceRule, s: &Silent, now: i64, minutes: f64) -> Alert {
    Alert {
        alert_id: alert_id(rule_id, &s.subject, s.seen),
        rule: rule_id.to_owned(),
        severity: rule.severity,
        kind: AlertKind::Technical,
        metric: "device".to_owned(),
        subject: s.subject.clone(),
        value: (minutes * 10.0).round() / 10.0,
        unit: "min".to_owned(),
        measured_at: format_rfc3339_ms(s.seen),
        raised_at: format_rfc3339_ms(now),
        arrived_at_ms: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::Severity;

    const MIN: i64 = 60_000;

    fn rule() -> SilenceRule {
        SilenceRule {
            after_ms: 10 * MIN,
            severity: Severity::Warning,
        }
    }

    fn silent(seen: i64, paged: bool, recovering: bool) -> Option<Silent> {
        Some(Silent {
            seen,
            subject: "subj-1".into(),
            paged,
            recovering,
        })
    }

    #[test]
    fn a_device_heard_within_the_window_is_left_alone() {
        let hb = Heartbeat {
            last_seen: 0,
            silent: None,
        };
        assert_eq!(next_step(&hb, &rule(), 10 * MIN - 1), Step::Nothing);
        assert_eq!(next_step(&hb, &rule(), 10 * MIN), Step::Declare);
    }

    #[test]
    fn a_declared_silence_pages_until_published_then_waits_for_the_device() {
        let mut hb = Heartbeat {
            last_seen: 0,
            silent: silent(0, false, false),
        };
        assert_eq!(next_step(&hb, &rule(), 20 * MIN), Step::PageSilence);
        hb.silent = silent(0, true, false);
        assert_eq!(next_step(&hb, &rule(), 60 * MIN), Step::Nothing, "one page");
        hb.last_seen = 61 * MIN;
        assert_eq!(next_step(&hb, &rule(), 62 * MIN), Step::Recover);
        hb.silent = silent(0, true, true);
        assert_eq!(
            next_step(&hb, &rule(), 62 * MIN),
            Step::Recover,
            "until published"
        );
        hb.silent = silent(0, false, false);
        assert_eq!(
            next_step(&hb, &rule(), 62 * MIN),
            Step::Clear,
            "never paged: no recovery page"
        );
    }

    #[test]
    fn pages_name_the_subject_with_stable_ids_and_never_the_device() {
        let s = Silent {
            seen: 5 * MIN,
            subject: "subj-1".into(),
            paged: false,
            recovering: false,
        };
        let a = silence_alert(&rule(), &s, 17 * MIN);
        assert_eq!(a.alert_id, silence_alert(&rule(), &s, 18 * MIN).alert_id);
        assert_eq!(
            (a.kind, a.value, a.subject.as_str()),
            (AlertKind::Technical, 12.0, "subj-1")
        );
        let r = recovery_alert(&rule(), &s, 35 * MIN, 36 * MIN);
        assert_ne!(r.alert_id, a.alert_id);
        assert_eq!((r.rule.as_str(), r.value), (RECOVERED_RULE, 30.0));
        assert_eq!(rule().heartbeat_every_ms(), 150_000);
    }
}
