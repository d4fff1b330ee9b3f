//! Lake rows to FHIR Observations, under a job's scope: rows outside it are skipped,
//! subjects become the partner's pseudonyms (computed once per subject), a day's
//! systolic and diastolic readings of one device at one instant become one panel.
//! Pure: no I/O, so the bench measures exactly this.

use std::collections::HashMap;

use pulselake_domain::fhir::{ObservationIds, effective, write_bp_panel, write_observation};
use pulselake_domain::partner::Scope;
use pulselake_domain::{Metric, NamingKey, Reading};

/// Turns rows into NDJSON Observations for one partner.
pub struct Converter<'a> {
    pub scope: &'a Scope,
    key: &'a NamingKey,
    ids: ObservationIds,
    pseudonyms: HashMap<String, String>,
}

impl<'a> Converter<'a> {
    /// `key`: the partner's pseudonym key (the job's version); subjects and resource ids
    /// are keyed with it.
    pub fn new(scope: &'a Scope, key: &'a NamingKey) -> Converter<'a> {
        Converter {
            scope,
            key,
            ids: ObservationIds::new(key),
            pseudonyms: HashMap::new(),
        }
    }

    /// The partner's pseudonym of a subject (computed once per subject).
    pub fn pseudonym(&mut self, subject: &str) -> &str {
        if !self.pseudonyms.contains_key(subject) {
            let p = self.key.pseudonym(subject);
            self.pseudonyms.insert(subject.to_owned(), p);
        }
        self.pseudonyms.get(subject).map_or("", String::as_str)
    }

    /// Whether a row is in the export (`cohort`: its subject's cohort then).
    pub fn admits(&self, r: &Reading<'_>, cohort: Option<&str>) -> bool {
        self.scope.metrics.contains(&r.metric)
            && self.scope.admits(r.measured_at, r.received_at, cohort)
    }

    /// Appends one row as an Observation.
    pub fn single(&mut self, r: &Reading<'_>, out: &mut Vec<u8>) {
        let id = self.ids.of(&r.reading_id);
        let when = effective(r.measured_at, self.scope.mode);
        let patient = self.pseudonym(&r.subject_id).to_owned();
        write_observation(out, &id, &patient, r.metric, r.value, &when);
    }

    /// Appends blood pressure rows of one day: pairs (same device, same instant) as
    /// panels, the rest as single Observations. Returns the resources written.
    pub fn blood_pressure(&mut self, rows: &[&Reading<'_>], out: &mut Vec<u8>) -> u64 {
        let mut diastolic: HashMap<(&str, i64), &Reading<'_>> = HashMap::new();
        for r in rows.iter().filter(|r| r.metric == Metric::BpDiastolic) {
            diastolic.insert((r.device_id.as_ref(), r.measured_at), r);
        }
        let mut used = std::collections::HashSet::new();
        let mut n = 0;
        for s in rows.iter().filter(|r| r.metric == Metric::BpSystolic) {
            match diastolic.get(&(s.device_id.as_ref(), s.measured_at)) {
                Some(d) if d.subject_id == s.subject_id => {
                    used.insert(d.reading_id);
                    let id = self.ids.of(&s.reading_id);
                    let when = effective(s.measured_at, self.scope.mode);
                    let patient = self.pseudonym(&s.subject_id).to_owned();
                    write_bp_panel(out, &id, &patient, s.value, d.value, &when);
                }
                _ => self.single(s, out),
            }
            n += 1;
        }
        for d in rows
            .iter()
            .filter(|r| r.metric == Metric::BpDiastolic && !used.contains(&r.reading_id))
        {
            self.single(d, out);
            n += 1;
        }
        n
    }
}
