//! CloudWatch metrics in Embedded Metric Format: one JSON line on stdout per
//! invocation, turned into metrics by CloudWatch Logs with no API call on the hot path.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::OnceLock;

/// Where EMF documents go instead of stdout. Only the local harness sets it: it runs
/// functions in process and collects their metrics rather than printing them.
static CAPTURE: OnceLock<Box<Sink>> = OnceLock::new();

type Sink = dyn Fn(&str) + Send + Sync;

/// Sends every EMF document of this process to `sink` (first call wins).
pub fn capture_with(sink: impl Fn(&str) + Send + Sync + 'static) {
    let _ = CAPTURE.set(Box::new(sink));
}

/// Namespace of every pulselake metric.
pub const NAMESPACE: &str = "Pulselake";

/// Counters of one invocation, flushed as EMF documents.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    service: &'static str,
    values: Vec<(&'static str, f64, &'static str)>,
    /// Counts per reason, emitted with a `reason` dimension.
    by_reason: BTreeMap<&'static str, (&'static str, f64)>,
}

impl Metrics {
    pub fn new(service: &'static str) -> Metrics {
        Metrics {
            service,
            ..Default::default()
        }
    }

    pub fn count(&mut self, name: &'static str, value: u64) -> &mut Self {
        self.values.push((name, value as f64, "Count"));
        self
    }

    pub fn millis(&mut self, name: &'static str, value: f64) -> &mut Self {
        self.values.push((name, value, "Milliseconds"));
        self
    }

    /// Adds to `name` under the dimension `reason=<reason>`.
    pub fn count_reason(
        &mut self,
        name: &'static str,
        reason: &'static str,
        value: u64,
    ) -> &mut Self {
        self.by_reason.entry(reason).or_insert((name, 0.0)).1 += value as f64;
        self
    }

    /// The EMF documents, one per line.
    pub fn render(&self, timestamp_ms: i64) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.values.is_empty() {
            let defs: Vec<_> = self
                .values
                .iter()
                .map(|(n, _, u)| serde_json::json!({"Name": n, "Unit": u}))
                .collect();
            let mut doc = serde_json::json!({
                "_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [
                    {"Namespace": NAMESPACE, "Dimensions": [["service"]], "Metrics": defs}]},
                "service": self.service,
            });
            for (n, v, _) in &self.values {
                doc[*n] = serde_json::json!(v);
            }
            lines.push(doc.to_string());
        }
        for (reason, (name, v)) in &self.by_reason {
            let doc = serde_json::json!({
                "_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [
                    {"Namespace": NAMESPACE, "Dimensions": [["service", "reason"]],
                     "Metrics": [{"Name": name, "Unit": "Count"}]}]},
                "service": self.service,
                "reason": reason,
                *name: v,
            });
            lines.push(doc.to_string());
        }
        lines
    }

    /// Writes the documents to stdout, where the Lambda runtime ships them to CloudWatch Logs.
    pub fn flush(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let lines = self.render(now);
        if let Some(sink) = CAPTURE.get() {
            lines.iter().for_each(|l| sink(l));
            return;
        }
        let mut out = std::io::stdout().lock();
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_emf_with_service_and_reason_dimensions() {
        let mut m = Metrics::new("stream-ingest");
        m.count("ReadingsReceived", 10)
            .count("ReadingsDelivered", 8);
        m.count_reason("ReadingsQuarantined", "out_of_range", 1);
        m.count_reason("ReadingsQuarantined", "out_of_range", 1);
        let lines = m.render(1_000);
        assert_eq!(lines.len(), 2);
        let main: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(main["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(
            main["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Name"],
            "ReadingsDelivered"
        );
        assert_eq!(main["ReadingsDelivered"], 8.0);
        assert_eq!(main["service"], "stream-ingest");
        let by_reason: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(by_reason["reason"], "out_of_range");
        assert_eq!(by_reason["ReadingsQuarantined"], 2.0);
        assert_eq!(
            by_reason["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][1],
            "reason"
        );
    }
}
