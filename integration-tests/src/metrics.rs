//! CloudWatch, for the local stack: the EMF documents functions emit are summed per
//! metric name (and reason), as a CloudWatch dashboard would show them. Each local
//! platform is its own account: documents are summed per scope (a task-local set by
//! the invokers), so tests running side by side in one process never mix their counts.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

static TOTALS: OnceLock<Mutex<BTreeMap<(u64, String), f64>>> = OnceLock::new();
static NEXT_SCOPE: AtomicU64 = AtomicU64::new(1);

tokio::task_local! {
    static SCOPE: u64;
}

fn totals() -> &'static Mutex<BTreeMap<(u64, String), f64>> {
    TOTALS.get_or_init(Default::default)
}

/// A fresh scope for one platform's metrics.
pub fn new_scope() -> u64 {
    NEXT_SCOPE.fetch_add(1, Ordering::Relaxed)
}

/// Runs `f` (a function invocation) with its metrics counted under `scope`.
pub async fn scoped<F: Future>(scope: u64, f: F) -> F::Output {
    SCOPE.scope(scope, f).await
}

/// Routes the in-process functions' EMF output here (idempotent).
pub fn capture() {
    pulselake_adapters::emf::capture_with(|line| {
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(line) else {
            return;
        };
        let scope = SCOPE.try_with(|s| *s).unwrap_or(0);
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
                *t.entry((scope, format!("{service}/{name}{reason}")))
                    .or_default() += v;
            }
        }
    });
}

/// Sum of a metric so far in `scope`, e.g. `total(s, "stream-ingest/FirehoseEntriesRetried")`.
pub fn total(scope: u64, key: &str) -> f64 {
    totals()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(scope, key.to_owned()))
        .copied()
        .unwrap_or(0.0)
}
