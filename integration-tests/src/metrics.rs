//! CloudWatch, for the local stack: the EMF documents functions emit are summed per
//! metric name (and reason), as a CloudWatch dashboard would show them.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

static TOTALS: OnceLock<Mutex<BTreeMap<String, f64>>> = OnceLock::new();

fn totals() -> &'static Mutex<BTreeMap<String, f64>> {
    TOTALS.get_or_init(Default::default)
}

/// Routes the in-process functions' EMF output here (idempotent).
pub fn capture() {
    pulselake_adapters::emf::capture_with(|line| {
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(line) else {
            return;
        };
        let service = doc["service"].as_str().unwrap_or("?").to_owned();
        let reason = doc["reason"]
            .as_str()
            .map(|r| format!("[{r}]"))
            .unwrap_or_default();
        let defs = &doc["_aws"]["CloudWatchMetrics"][0]["Metrics"];
        let mut t = totals().lock().unwrap_or_else(|p| p.into_inner());
        for def in defs.as_array().into_iter().flatten() {
            if let Some(name) = def["Name"].as_str() {
                let v = doc[name].as_f64().unwrap_or(0.0);
                *t.entry(format!("{service}/{name}{reason}")).or_default() += v;
            }
        }
    });
}

/// Sum of a metric so far, e.g. `total("stream-ingest/FirehoseEntriesRetried")`.
pub fn total(key: &str) -> f64 {
    totals()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(key)
        .copied()
        .unwrap_or(0.0)
}
