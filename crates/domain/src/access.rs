//! What partners and teams are granted alike: metrics by catalog name, registry cohorts,
//! a measurement window and the agreement the access rests on. One set of checks, so a
//! word means the same in both policies.

use crate::metric::Metric;
use crate::time::parse_rfc3339_ms;

/// Metrics: at least one, each in the catalog.
pub fn check_metrics(metrics: &[String]) -> Result<(), String> {
    if metrics.is_empty() {
        return Err("`metrics` is empty: nothing could be seen".into());
    }
    match metrics.iter().find(|m| Metric::from_name(m).is_none()) {
        Some(m) => Err(format!("metric {m:?} is not in the catalog")),
        None => Ok(()),
    }
}

/// Cohorts: at least one (`*` for every subject).
pub fn check_cohorts(cohorts: &[String]) -> Result<(), String> {
    if cohorts.is_empty() {
        return Err("`cohorts` is empty (use [\"*\"] for every subject)".into());
    }
    Ok(())
}

/// A measurement window `[earliest, latest)`, either end optional, in RFC 3339; the ends
/// in epoch ms.
pub fn check_window(
    earliest: Option<&str>,
    latest: Option<&str>,
) -> Result<(Option<i64>, Option<i64>), String> {
    let parse = |t: Option<&str>| match t {
        None => Ok(None),
        Some(t) => parse_rfc3339_ms(t)
            .map(Some)
            .ok_or_else(|| format!("{t:?} is not an RFC 3339 time")),
    };
    let (from, to) = (parse(earliest)?, parse(latest)?);
    if let (Some(a), Some(b)) = (from, to)
        && a >= b
    {
        return Err("`earliest` must be before `latest`".into());
    }
    Ok((from, to))
}

/// The data use agreement (a reference, not the document) is required.
pub fn check_dua(dua: &str) -> Result<(), String> {
    if dua.trim().is_empty() {
        return Err("`dua` (the data use agreement) is required".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_names_what_is_wrong() {
        assert!(check_metrics(&[]).unwrap_err().contains("empty"));
        assert!(
            check_metrics(&["pulse".into()])
                .unwrap_err()
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
                .contains("RFC 3339")
        );
        assert!(check_dua("  ").is_err());
    }
}
