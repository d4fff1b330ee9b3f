//! `make bench`: stream-ingest on a 10,000-reading Kinesis batch, on one core, with
//! Firehose and S3 replaced by in-memory adapters. Measures the whole invocation from
//! the raw event JSON (deserialization, base64, mapping, validation, ids, packing,
//! delivery calls) and reports readings/s and the process's peak RSS.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pulselake_adapters::{CachedRegistry, MemoryObjects, MemoryRegistry, MemorySink};
use pulselake_domain::time::{DAY_MS, format_rfc3339_ms};
use pulselake_domain::{Assignment, DeviceMappings, DeviceRecord, Metric, TimePolicy};
use serde_json::json;
use stream_ingest::{Ingest, StreamBatch};

const READINGS: usize = 10_000;
const PER_MESSAGE: usize = 30;
const NOW: i64 = 1_795_342_530_000;

fn event() -> (Vec<u8>, Vec<DeviceRecord>) {
    let metrics: Vec<Metric> = Metric::all().collect();
    let messages = READINGS.div_ceil(PER_MESSAGE);
    let mut devices = Vec::new();
    let mut records = Vec::new();
    let mut left = READINGS;
    for m in 0..messages {
        let device = format!("dev-{m:06}");
        let n = left.min(PER_MESSAGE);
        left -= n;
        let readings: Vec<_> = (0..n)
            .map(|i| {
                let metric = metrics[i % metrics.len()];
                let (value, unit) = match metric {
                    Metric::BodyTemp => (98.4, "[degF]"),
                    Metric::Glucose => (5.6, "mmol/L"),
                    Metric::Spo2 => (97.5, "%"),
                    Metric::BpSystolic => (121.0, "mm[Hg]"),
                    Metric::BpDiastolic => (79.0, "mm[Hg]"),
                    _ => (72.0, "/min"),
                };
                json!({"sensor_id": format!("s-{i}"), "metric": metric.name(), "value": value, "unit": unit,
                       "measured_at": format_rfc3339_ms(NOW - 1000 - i as i64)})
            })
            .collect();
        let msg = json!({"v": 1, "device_id": device, "message_id": format!("m-{m}"),
                         "sent_at": format_rfc3339_ms(NOW), "readings": readings});
        records.push(json!({
            "eventID": format!("shardId-000000000000:{}", 49_590_000_000u64 + m as u64),
            "eventSource": "aws:kinesis",
            "kinesis": {"data": STANDARD.encode(serde_json::to_vec(&msg).unwrap()),
                        "sequenceNumber": format!("{}", 49_590_000_000u64 + m as u64),
                        "partitionKey": device, "approximateArrivalTimestamp": NOW as f64 / 1000.0}
        }));
        devices.push(DeviceRecord {
            device_id: device,
            assignments: vec![Assignment {
                subject_id: format!("subj-{m:08x}"),
                valid_from: NOW - 30 * DAY_MS,
                valid_to: None,
                cohort: None,
            }],
        });
    }
    (
        serde_json::to_vec(&json!({ "Records": records })).unwrap(),
        devices,
    )
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let (raw, devices) = event();
    let ingest = Ingest {
        sink: MemorySink::default(),
        quarantine: MemoryObjects::default(),
        quarantine_bucket: "quarantine".into(),
        registry: CachedRegistry::new(
            MemoryRegistry::new(devices),
            Duration::from_secs(300),
            Duration::from_secs(60),
        ),
        mappings: DeviceMappings::builtin(),
        policy: TimePolicy::stream(),
        retry: Default::default(),
        scratch: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // One invocation: the runtime deserializes the event, then the handler runs.
    let run = || {
        let t = Instant::now();
        let batch: StreamBatch = serde_json::from_slice(&raw).unwrap();
        let parsed = t.elapsed();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let out = rt
            .block_on(ingest.handle(&batch, deadline, NOW + 500))
            .unwrap();
        assert_eq!(
            out.stats.readings_delivered, READINGS,
            "every reading is delivered"
        );
        let total = t.elapsed();
        drop(batch);
        (ingest.sink.take().len(), parsed, total)
    };
    // Warm-up fills the registry cache, as in a warm container.
    let (firehose_records, _, _) = run();
    // `cargo test --all-targets` runs this too (without `--bench`): one pass is the smoke test.
    if !std::env::args().any(|a| a == "--bench") {
        println!("stream-ingest bench: one batch handled (run `make bench` to measure)");
        return;
    }
    let mut times = Vec::new();
    let mut handler_times = Vec::new();
    let started = Instant::now();
    while times.len() < 20 || started.elapsed() < Duration::from_secs(3) {
        let (_, parsed, total) = run();
        times.push(total);
        handler_times.push(total - parsed);
    }
    times.sort();
    handler_times.sort();
    let median = times[times.len() / 2];
    let handler = handler_times[handler_times.len() / 2];
    let rate = |d: Duration| READINGS as f64 / d.as_secs_f64() / 1e6;
    println!(
        "stream-ingest: {READINGS} readings per batch ({} Kinesis records, {:.1} MB event, {firehose_records} Firehose records), one core",
        READINGS.div_ceil(PER_MESSAGE),
        raw.len() as f64 / 1e6
    );
    println!(
        "  handler     {:.2} M readings/s  ({:.2} ms per batch, median of {} runs)",
        rate(handler),
        handler.as_secs_f64() * 1e3,
        times.len()
    );
    println!(
        "  invocation  {:.2} M readings/s  ({:.2} ms, including the runtime's event deserialization and base64)",
        rate(median),
        median.as_secs_f64() * 1e3
    );
    println!(
        "  peak RSS    {:.1} MB (whole process, including the event)",
        peak_rss_mb()
    );
}
