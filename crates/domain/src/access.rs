//! What partners and teams are granted alike: metrics by catalog name, registry cohorts,
//! a measurement window and the agreement the access rests on. One set of checks, so a
//! word means the same in both policies.

use crate::metric::Metric;
use crate::time::parse_rfc3339_ms;

/// What is wrong with a grant: one problem, said so that the author can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl Refusal {
    fn new(text: impl Into<String>) -> Refusal {
        Refusal(text.into())
    }
}

/// Metrics: at least one, each in the catalog.
pub fn check_metrics(metrics: &[String]) -> Result<(), Refusal> {
    if metrics.is_empty() {
        return Err(Refusal::new("`metrics` is empty: nothing could be seen"));
    }
    match metrics.iter().find(|m| Metric::from_name(m).is_none()) {
        Some(m) => Err(Refusal(format!("metric {m:?} is not in the catalog"))),
        None => Ok(()),
    }
}

/// Cohorts: at least one (`*` for every subject).
pub fn check_cohorts(cohorts: &[String]) -> Result<(), Refusal> {
    if cohorts.is_empty() {
        return Err(Refusal::new(
            "`cohorts` is empty (use [\"*\"] for every subject)",
        ));
    }
    Ok(())
}

/// A measurement window `[earliest, latest)`, either end optional, in RFC 3339; the ends
/// in epoch ms.
pub fn check_window(
    earliest: Option<&str>,
    latest: Option<&str>,
) -> Result<(Option<i64>, Option<i64>), Refusal> {
    let parse = |t: Option<&str>| match t {
        None => Ok(None),
        Some(t) => parse_rfc3339_ms(t)
            .map(Some)
            .ok_or_else(|| Refusal(format!("{t:?} is not an RFC 3339 time"))),
    };
    let (from, to) = (parse(earliest)?, parse(latest)?);
    if let (Some(a), Some(b)) = (from, to)
        && a >= b
    {
        return Err(Refusal::new("`earliest` must be before `latest`"));
    }
    Ok((from, to))
}

/// The data use agreement (a reference, not the document) is required.
pub fn check_dua(dua: &str) -> Result<(), Refusal> {
    if dua.trim().is_empty() {
        return Err(Refusal::new("`dua` (the data use agreement) is required"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_names_what_is_wrong() {
        assert!(check_metrics(&[]).unwrap_err().0.contains("empty"));
        assert!(
            check_metrics(&["pulse".into()])
                .unwrap_err()
                .0
                .contains("\"pulse\"")
        );
        assert!(check_metrics(&["heart_rate".into()]).is_ok());
        assert!(check_cohorts(&[]).is_err());
        assert_eq!(
            check_window(Some("2026-01-01T00:00:00Z"), None),
            Ok((Some(1_767_225_600_000), None))
        );
        assert!(check_window(Some("2026-02-01T00:00:00Z"), Some("2026-01-01T00:00:00Z")).is_err());
        assert!(
            check_window(Some("yesterday"), None)
                .unwrap_err()
                .0
                .contains("RFC 3339")
        );
        assert!(check_dua("  ").is_err());
    }
}
