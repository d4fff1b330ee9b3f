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

/// Why an assignment cannot be recorded: history is never rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error(
        "the device has an assignment starting at or after {0}: assignments are recorded in time order"
    )]
    NotAfterLast(String),
    #[error("the device's assignment to another subject runs past {0}: end it first")]
    Overlaps(String),
    #[error("the device has no assignment in force at {0}")]
    NoneInForce(String),
}

impl DeviceRecord {
    /// Assigns the device to `subject_id` from `from` on (open-ended), ending the
    /// assignment in force at that moment. An assignment cannot start before an
    /// existing one (that would rewrite which patient past readings belong to).
    pub fn assign(
        &mut self,
        subject_id: &str,
        from: i64,
        cohort: Option<String>,
    ) -> Result<(), AssignmentError> {
        let at = crate::time::format_rfc3339_ms(from);
        if self.assignments.iter().any(|a| a.valid_from >= from) {
            return Err(AssignmentError::NotAfterLast(at));
        }
        if self
            .assignments
            .iter()
            .any(|a| a.valid_to.is_some_and(|end| end > from))
        {
            return Err(AssignmentError::Overlaps(at));
        }
        for a in &mut self.assignments {
            if a.valid_to.is_none() {
                a.valid_to = Some(from);
            }
        }
        self.assignments.push(Assignment {
            subject_id: subject_id.to_owned(),
            valid_from: from,
            valid_to: None,
            cohort,
        });
        Ok(())
    }

    /// Ends the assignment in force at `at` (a device taken off its patient, or
    /// deactivated): its later readings belong to nobody and are quarantined.
    pub fn end_at(&mut self, at: i64) -> Result<(), AssignmentError> {
        let i = self
            .assignment_index_at(at)
            .ok_or_else(|| AssignmentError::NoneInForce(crate::time::format_rfc3339_ms(at)))?;
        self.assignments[i].valid_to = Some(at);
        Ok(())
    }

    /// The assignment open now (no end), if any.
    pub fn open_assignment(&self) -> Option<&Assignment> {
        self.assignments.iter().find(|a| a.valid_to.is_none())
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
    fn a_new_assignment_ends_the_open_one_and_never_rewrites_history() {
        let mut r = record();
        assert_eq!(
            r.assign("s-c", 250, None),
            Err(AssignmentError::NotAfterLast(
                crate::time::format_rfc3339_ms(250)
            ))
        );
        r.assign("s-c", 400, Some("neonatal".into())).unwrap();
        assert_eq!(r.subject_at(399), Some("s-b"));
        assert_eq!(r.subject_at(400), Some("s-c"));
        assert_eq!(r.assignments[1].valid_to, Some(400));
        r.end_at(500).unwrap();
        assert_eq!(r.subject_at(500), None);
        assert!(r.open_assignment().is_none());
        assert!(matches!(
            r.end_at(600),
            Err(AssignmentError::NoneInForce(_))
        ));
        // A closed assignment running past the new start is an overlap.
        let mut closed = record();
        closed.assignments[1].valid_to = Some(900);
        assert!(matches!(
            closed.assign("s-d", 800, None),
            Err(AssignmentError::Overlaps(_))
        ));
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
