//! The device registry: which subject (pseudonymous patient key) wore a device, when.

use serde::{Deserialize, Serialize};

/// One device and its assignment history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub device_id: String,
    pub assignments: Vec<Assignment>,
}

/// A device worn by one subject for `[valid_from, valid_to)` (UTC epoch ms; open-ended when `valid_to` is absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub subject_id: String,
    pub valid_from: i64,
    #[serde(default)]
    pub valid_to: Option<i64>,
    /// The clinical cohort the subject belongs to for this assignment (e.g. `neonatal`),
    /// which alert rules may target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
}

impl Assignment {
    pub fn covers(&self, t: i64) -> bool {
        self.valid_from <= t && self.valid_to.is_none_or(|end| t < end)
    }
}

impl DeviceRecord {
    /// The subject wearing the device at `t`, if any. When assignments overlap by
    /// mistake, the latest-starting one wins, so a re-assignment takes effect at once.
    pub fn subject_at(&self, t: i64) -> Option<&str> {
        self.assignment_at(t).map(|a| a.subject_id.as_str())
    }

    /// The assignment in force at `t` (see [`DeviceRecord::subject_at`]).
    pub fn assignment_at(&self, t: i64) -> Option<&Assignment> {
        self.assignment_index_at(t).map(|i| &self.assignments[i])
    }

    /// The position in `assignments` of [`DeviceRecord::assignment_at`].
    pub fn assignment_index_at(&self, t: i64) -> Option<usize> {
        self.assignments
            .iter()
            .enumerate()
            .filter(|(_, a)| a.covers(t))
            .max_by_key(|(_, a)| a.valid_from)
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> DeviceRecord {
        DeviceRecord {
            device_id: "dev-1".into(),
            assignments: vec![
                Assignment {
                    subject_id: "s-a".into(),
                    valid_from: 100,
                    valid_to: Some(200),
                    cohort: None,
                },
                Assignment {
                    subject_id: "s-b".into(),
                    valid_from: 300,
                    valid_to: None,
                    cohort: None,
                },
            ],
        }
    }

    #[test]
    fn subject_follows_the_validity_period() {
        let r = record();
        assert_eq!(r.subject_at(99), None);
        assert_eq!(r.subject_at(100), Some("s-a"));
        assert_eq!(r.subject_at(199), Some("s-a"));
        assert_eq!(r.subject_at(200), None, "valid_to is exclusive");
        assert_eq!(
            r.subject_at(250),
            None,
            "a gap between patients is unassigned"
        );
        assert_eq!(r.subject_at(i64::MAX), Some("s-b"));
    }

    #[test]
    fn overlapping_assignments_resolve_to_the_latest() {
        let mut r = record();
        r.assignments.push(Assignment {
            subject_id: "s-c".into(),
            valid_from: 150,
            valid_to: None,
            cohort: None,
        });
        assert_eq!(r.subject_at(160), Some("s-c"));
    }
}
