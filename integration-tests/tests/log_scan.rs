//! No identifiers in logs: the demo's workload (a fleet streaming with faults, the file
//! batch with the seed sample, alerting) runs with every function's log lines at INFO
//! and above captured as Lambda would ship them (JSON); then every device id, subject
//! id, legacy patient key and staging object key the run used is searched for in them.

use std::io::Write;
use std::sync::{Arc, Mutex};

use pulselake_local::scenario::{run_alerts, run_catalog, run_files, run_stream};
use pulselake_local::simulator::FleetConfig;
use pulselake_local::{LocalPlatform, Stack, inspect};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every identifier the run put into the stack: registry devices and subjects, alias
/// keys and their subjects, and the keys of the files uploaded.
async fn identifiers(stack: &Stack) -> Vec<String> {
    let mut out = Vec::new();
    for table in [&stack.names.registry_table, &stack.names.alias_table] {
        let items = stack
            .dynamodb
            .scan()
            .table_name(table)
            .send()
            .await
            .unwrap();
        for item in items.items() {
            for key in ["device_id", "alias", "subject_id"] {
                if let Some(v) = item.get(key).and_then(|v| v.as_s().ok()) {
                    out.push(v.clone());
                }
            }
            if let Some(list) = item.get("assignments").and_then(|v| v.as_l().ok()) {
                for a in list {
                    if let Some(s) = a
                        .as_m()
                        .ok()
                        .and_then(|m| m.get("subject_id"))
                        .and_then(|v| v.as_s().ok())
                    {
                        out.push(s.clone());
                    }
                }
            }
        }
    }
    // Files: their keys, and the legacy patient key inside a seed file's name.
    for key in inspect::list_keys(stack, &stack.names.processed_bucket, "")
        .await
        .unwrap()
    {
        if let Some(name) = key.strip_prefix("seed/") {
            out.push(format!("{}.", name.split('.').next().unwrap_or_default()));
        }
        out.push(key);
    }
    out.sort();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logs_of_a_full_local_run_hold_no_identifier() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .init();

    let p = LocalPlatform::start(None).await.unwrap();
    let fleet = FleetConfig {
        devices: 30,
        sensors_per_device: 10,
        fault_share: 0.2,
        acme_share: 0.2,
        ..FleetConfig::default()
    };
    let stream = run_stream(&p, fleet, 2, &mut |_| {}).await.unwrap();
    let files = run_files(&p, &mut |_| {}).await.unwrap();
    run_catalog(&p, &mut |_| {}).await.unwrap();
    run_alerts(&p, 4, &mut |_| {}).await.unwrap();
    assert!(
        stream.quarantined() > 0 && files.files_ingested > 0,
        "faults and files ran"
    );

    let ids = identifiers(&p.stack).await;
    assert!(ids.len() > 60, "{} identifiers", ids.len());
    assert!(
        ids.iter().any(|i| i == "P1."),
        "the seed file's patient key is searched for"
    );
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = logs.lines().collect();
    assert!(
        lines.len() > 20,
        "the functions logged: {} lines",
        lines.len()
    );
    let leaks: Vec<String> = lines
        .iter()
        .flat_map(|line| {
            ids.iter()
                .filter(|id| line.contains(id.as_str()))
                .map(move |id| format!("{id}: {line}"))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "identifiers in the logs:\n{}",
        leaks.join("\n")
    );
    // Nor any reading value: no log field carries one.
    assert!(!logs.contains("\"value\""), "a reading value in the logs");
}
