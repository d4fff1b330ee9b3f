//! Bulk device onboarding: a CSV of devices and who wears them, checked whole before
//! anything is registered, so a bad line never leaves the fleet half-registered.
//!
//! Columns (a header line, in any order): `device_id`, `subject`, `valid_from`
//! (RFC 3339), and optionally `cohort`. `subject` is a subject id, or a legacy
//! patient key `system:key` resolved through the subject alias table.

use std::collections::{BTreeMap, HashMap};

use crate::message::check_id;
use crate::registry::DeviceRecord;
use crate::time::parse_rfc3339_ms;

/// One device to register.
#[derive(Debug, Clone, PartialEq)]
pub struct Onboard {
    pub line: usize,
    pub device_id: String,
    /// As written: a subject id, or `system:key` to resolve.
    pub subject: String,
    pub valid_from: i64,
    pub cohort: Option<String>,
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    pub line: usize,
    pub problem: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

/// A subject reference that names a legacy patient key rather than a subject id.
pub fn is_alias(subject: &str) -> bool {
    subject.contains(':')
}

/// Reads the CSV; every line's problems are reported, not just the first.
pub fn parse_csv(text: &str) -> Result<Vec<Onboard>, Vec<LineError>> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_start_matches('\u{feff}').trim()))
        .filter(|(_, l)| !l.is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(vec![LineError {
            line: 1,
            problem: "the file is empty".into(),
        }]);
    };
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let col = |name: &str| names.iter().position(|n| n.eq_ignore_ascii_case(name));
    let (Some(device), Some(subject), Some(from)) =
        (col("device_id"), col("subject"), col("valid_from"))
    else {
        return Err(vec![LineError {
            line: 1,
            problem: "the header must name device_id, subject and valid_from (cohort optional)"
                .into(),
        }]);
    };
    let cohort = col("cohort");
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (line, text) in lines {
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or("");
        let mut problems = Vec::new();
        if fields.len() != names.len() {
            problems.push(format!(
                "{} fields where the header has {}",
                fields.len(),
                names.len()
            ));
        }
        for (what, value) in [("device_id", field(device)), ("subject", field(subject))] {
            if let Err(rej) = check_id(what, value) {
                problems.push(rej.detail);
            }
        }
        let valid_from = parse_rfc3339_ms(field(from));
        if valid_from.is_none() {
            problems.push(format!(
                "valid_from {:?} is not an RFC 3339 time",
                field(from)
            ));
        }
        if let Some(first) = seen.insert(field(device).to_owned(), line) {
            problems.push(format!(
                "device {} is listed already on line {first}",
                field(device)
            ));
        }
        match (problems.is_empty(), valid_from) {
            (true, Some(valid_from)) => rows.push(Onboard {
                line,
                device_id: field(device).to_owned(),
                subject: field(subject).to_owned(),
                valid_from,
                cohort: cohort
                    .map(field)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
            }),
            _ => errors.extend(
                problems
                    .into_iter()
                    .map(|problem| LineError { line, problem }),
            ),
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

/// Checks the rows against what exists: devices registered already, and subject aliases
/// (`aliases`: the alias lookups made for the rows' `system:key` subjects, `None` when
/// unknown). Returns the records to write, with subjects resolved.
pub fn plan(
    rows: &[Onboard],
    existing: &BTreeMap<String, DeviceRecord>,
    aliases: &HashMap<String, Option<String>>,
) -> Result<Vec<DeviceRecord>, Vec<LineError>> {
    let (mut records, mut errors) = (Vec::new(), Vec::new());
    for r in rows {
        let mut fail = |problem: String| {
            errors.push(LineError {
                line: r.line,
                problem,
            })
        };
        if existing.contains_key(&r.device_id) {
            fail(format!(
                "device {} is registered already (use `pulselake devices assign`)",
                r.device_id
            ));
            continue;
        }
        let subject = if is_alias(&r.subject) {
            match aliases.get(&r.subject).cloned().flatten() {
                Some(s) => s,
                None => {
                    fail(format!("subject {} is an unknown patient key", r.subject));
                    continue;
                }
            }
        } else {
            r.subject.clone()
        };
        let mut record = DeviceRecord {
            device_id: r.device_id.clone(),
            assignments: Vec::new(),
        };
        match record.assign(&subject, r.valid_from, r.cohort.clone()) {
            Ok(()) => records.push(record),
            Err(e) => fail(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(records)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "device_id,subject,valid_from,cohort\n";

    #[test]
    fn a_good_file_plans_one_record_per_device_with_aliases_resolved() {
        let csv = format!(
            "{HEADER}dev-1,subj-1,2026-11-01T00:00:00Z,\ndev-2,seed:P1,2026-11-01T00:00:00Z,neonatal\n"
        );
        let rows = parse_csv(&csv).unwrap();
        let aliases = HashMap::from([("seed:P1".to_owned(), Some("subj-p1".to_owned()))]);
        let records = plan(&rows, &BTreeMap::new(), &aliases).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].assignments[0].subject_id, "subj-p1");
        assert_eq!(
            records[1].assignments[0].cohort.as_deref(),
            Some("neonatal")
        );
    }

    #[test]
    fn every_bad_line_is_named_and_nothing_is_planned() {
        let csv = format!(
            "{HEADER}dev-1,subj-1,2026-11-01T00:00:00Z,\ndev-1,subj-2,2026-11-01T00:00:00Z,\n\
             dev-3,subj-3,yesterday,\ndev\u{1}4,subj-4,2026-11-01T00:00:00Z,\ndev-5,,2026-11-01T00:00:00Z,\n"
        );
        let errors = parse_csv(&csv).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5, 6], "{errors:?}");
        assert!(errors[0].problem.contains("listed already on line 2"));
        assert!(errors[1].problem.contains("not an RFC 3339 time"));
    }

    #[test]
    fn registered_devices_and_unknown_patients_are_refused_line_by_line() {
        let csv = format!(
            "{HEADER}dev-1,subj-1,2026-11-01T00:00:00Z,\ndev-2,seed:P9,2026-11-01T00:00:00Z,\ndev-3,subj-3,2026-11-01T00:00:00Z,\n"
        );
        let rows = parse_csv(&csv).unwrap();
        let existing = BTreeMap::from([(
            "dev-1".to_owned(),
            DeviceRecord {
                device_id: "dev-1".into(),
                assignments: Vec::new(),
            },
        )]);
        let aliases = HashMap::from([("seed:P9".to_owned(), None)]);
        let errors = plan(&rows, &existing, &aliases).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3]);
        assert!(errors[0].problem.contains("registered already"));
        assert!(errors[1].problem.contains("unknown patient key"));
    }
}
