//! `make bench`: stream-ingest on a 10,000-reading Kinesis batch, on one core, with
//! Firehose and S3 replaced by in-memory adapters. Measures the whole invocation from
//! the raw event JSON (deserialization, base64, mapping, validation, ids, packing,
//! delivery calls) and reports readings/s, a breakdown per phase and the process's peak
//! RSS, each figure also per calibration and against `bench/baseline.json`.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pulselake_adapters::kinesis_events::StreamRecord;
use pulselake_adapters::{CachedRegistry, MemoryObjects, MemoryRegistry, MemorySink};
use pulselake_benchkit::{Bench, Timings, calibration_now, peak_rss_mb};
use pulselake_domain::time::{DAY_MS, format_rfc3339_ms};
use pulselake_domain::{Assignment, DeviceMappings, DeviceRecord, Metric, TimePolicy};
use pulselake_domain::{LineTail, Provenance, ReadingId, Source, normalize};
use serde_json::json;
use stream_ingest::delivery::Packer;
use stream_ingest::{Ingest, KafkaBatch, StreamBatch};

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
                // Every third subject in a cohort, the others in none: both kinds of line.
                cohort: (m % 3 == 0).then(|| "adult".to_owned()),
            }],
        });
    }
    (
        serde_json::to_vec(&json!({ "Records": records })).unwrap(),
        devices,
    )
}

/// The Kinesis event's messages as an MSK batch: one topic-partition, keyed by device.
fn kafka_event(raw: &[u8]) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(raw).unwrap();
    let records: Vec<_> = v["Records"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({"topic": "vitals", "partition": 0, "offset": i, "timestamp": NOW,
                   "timestampType": "CREATE_TIME",
                   "key": STANDARD.encode(r["kinesis"]["partitionKey"].as_str().unwrap()),
                   "value": r["kinesis"]["data"], "headers": []})
        })
        .collect();
    serde_json::to_vec(&json!({"eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:eu-west-1:123456789012:cluster/legacy/0b7e",
        "records": {"vitals-0": records}}))
    .unwrap()
}

fn main() {
    let (raw, devices) = event();
    let ingest = Ingest {
        sink: MemorySink::default(),
        quarantine: MemoryObjects::default(),
        quarantine_bucket: "quarantine".into(),
        registry: CachedRegistry::new(
            MemoryRegistry::new(devices.clone()),
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
    let handle = |batch: &StreamBatch| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let out = rt
            .block_on(ingest.handle(batch, deadline, NOW + 500))
            .unwrap();
        assert_eq!(
            out.stats.readings_delivered, READINGS,
            "every reading is delivered"
        );
        ingest.sink.take()
    };
    // Warm-up fills the registry cache, as in a warm container.
    let delivered = handle(&serde_json::from_slice(&raw).unwrap());
    let firehose_records = delivered.len();
    // The handler's own peak, before anything else runs in the process (each batch reuses
    // the warm container's buffers, so the first one is as large as any).
    let peak_mb = peak_rss_mb();
    // `cargo test --all-targets` runs this too (without `--bench`): one pass is the smoke test.
    if !std::env::args().any(|a| a == "--bench") {
        println!("stream-ingest bench: one batch handled (run `make bench` to measure)");
        return;
    }
    let mut bench = Bench::new("stream");
    let batch: StreamBatch = serde_json::from_slice(&raw).unwrap();
    let handler = Timings::measure(20, Duration::from_secs(3), || {
        black_box(handle(&batch));
    });
    // One invocation: the runtime deserializes the event (base64 included), then the handler runs.
    let invocation = Timings::measure(20, Duration::from_secs(3), || {
        black_box(handle(&serde_json::from_slice(&raw).unwrap()));
    });
    let per_s = |t: &Timings| READINGS as f64 / t.median().as_secs_f64() / 1e6;
    println!(
        "stream-ingest: {READINGS} readings per batch ({} Kinesis records, {:.1} MB event, {firehose_records} Firehose records), one core",
        READINGS.div_ceil(PER_MESSAGE),
        raw.len() as f64 / 1e6
    );
    println!(
        "  handler     {:.2} M readings/s  ({:.2} ms per batch, median of {} runs)",
        per_s(&handler),
        handler.median().as_secs_f64() * 1e3,
        handler.runs()
    );
    println!(
        "  invocation  {:.2} M readings/s  ({:.2} ms, including the runtime's event deserialization and base64)",
        per_s(&invocation),
        invocation.median().as_secs_f64() * 1e3
    );
    // The same messages from a legacy Kafka topic (legacy-stream-ingest), event included.
    let kafka_raw = kafka_event(&raw);
    let kafka = Timings::measure(20, Duration::from_secs(3), || {
        let b: KafkaBatch = serde_json::from_slice(&kafka_raw).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let out = rt
            .block_on(ingest.handle_kafka(&b, deadline, NOW + 500))
            .unwrap();
        assert_eq!(out.stats.readings_delivered, READINGS);
        black_box(ingest.sink.take());
    });
    println!(
        "  kafka       {:.2} M readings/s  ({:.2} ms, the same messages as an MSK batch, its deserialization included)",
        per_s(&kafka),
        kafka.median().as_secs_f64() * 1e3
    );
    let readings_m = READINGS as f64 / 1e6;
    bench.rate("handler", readings_m, "M/s", &handler);
    bench.rate("invocation", readings_m, "M/s", &invocation);
    bench.rate("kafka_invocation", readings_m, "M/s", &kafka);
    phases(&raw, &ingest.mappings, &devices, &mut bench);
    peer(&raw, &devices, &delivered, &handler, &mut bench);
    println!("  peak RSS    {peak_mb:.1} MB (whole process, including the event)");
    if let Err(e) = bench.finish() {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

/// Each phase of the handler timed alone over the same batch (median of 31 runs), so a
/// regression names its phase. They sum to about the invocation: the handler interleaves
/// them per reading, which this cannot, so the sum is a little off.
fn phases(raw: &[u8], mappings: &DeviceMappings, devices: &[DeviceRecord], bench: &mut Bench) {
    let runs = 31;
    let batch: StreamBatch = serde_json::from_slice(raw).unwrap();
    let by_id: HashMap<&str, &DeviceRecord> =
        devices.iter().map(|d| (d.device_id.as_str(), d)).collect();
    let policy = TimePolicy::stream();
    let prov = |r: &StreamRecord| Provenance {
        source: Source::Stream,
        source_ref: "shardId-000000000000:49590000000",
        received_at: r.arrival_ms(),
    };
    let mut readings = Vec::new();
    for r in &batch.records {
        let m = r.device_message(mappings).unwrap();
        let device = by_id[m.device_id.as_ref()];
        for raw in m.readings {
            readings.push(
                normalize(raw.unwrap(), device, prov(r), &policy)
                    .unwrap()
                    .into_owned(),
            );
        }
    }
    let mut buffer: Vec<u8> = Vec::new();
    let mut timed: Vec<(&str, Timings)> = vec![
        (
            "decode (event JSON, base64)",
            Timings::measure(runs, Duration::ZERO, || {
                black_box(serde_json::from_slice::<StreamBatch>(raw).unwrap());
            }),
        ),
        (
            "map (payload JSON to readings)",
            Timings::measure(runs, Duration::ZERO, || {
                for r in &batch.records {
                    black_box(r.device_message(mappings).unwrap());
                }
            }),
        ),
        (
            "validate (catalog, units, clock, subject)",
            Timings::measure(runs, Duration::ZERO, || {
                for r in &batch.records {
                    let m = r.device_message(mappings).unwrap();
                    let device = by_id[m.device_id.as_ref()];
                    for raw in m.readings {
                        black_box(normalize(raw.unwrap(), device, prov(r), &policy).unwrap());
                    }
                }
            }),
        ),
        (
            "id (SHA-256 per reading)",
            Timings::measure(runs, Duration::ZERO, || {
                for r in &readings {
                    black_box(ReadingId::derive(
                        &r.device_id,
                        &r.sensor_id,
                        r.metric,
                        r.measured_at,
                    ));
                }
            }),
        ),
        (
            "dedup (batch set)",
            Timings::measure(runs, Duration::ZERO, || {
                let mut seen: HashMap<ReadingId, f64, foldhash::fast::RandomState> =
                    HashMap::with_capacity_and_hasher(readings.len(), Default::default());
                for r in &readings {
                    black_box(seen.insert(r.reading_id, r.value));
                }
            }),
        ),
        (
            "encode (JSON lines, packed)",
            Timings::measure(runs, Duration::ZERO, || {
                // The buffer is reused, as the handler's is between invocations.
                let mut packer = Packer::with_buffer(std::mem::take(&mut buffer));
                let mut tail = LineTail::default();
                for r in &readings {
                    packer.push_with(0, |buf| r.write_json_line_with(buf, &mut tail));
                }
                black_box(packer.records().len());
                buffer = packer.into_buffer();
            }),
        ),
    ];
    // Mapping and the id run inside validation here: validation is reported without them.
    let (map, id) = (timed[1].1.clone(), timed[3].1.clone());
    let mut validate = Timings::default();
    for ((v, m), i) in timed[2].1.pairs().zip(map.pairs()).zip(id.pairs()) {
        let calibration = Duration::from_secs_f64((v.1 + m.1 + i.1) / 3.0);
        validate.push(v.0.saturating_sub(m.0 + i.0), calibration);
    }
    timed[2].1 = validate;
    println!("  per phase (each alone over the batch, median of {runs}):");
    for (name, t) in &timed {
        let took = t.median();
        println!(
            "    {:<46} {:>6.2} ms  {:>5.1} ns per reading",
            name,
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e9 / READINGS as f64
        );
        let key = name.split_whitespace().next().unwrap_or(name);
        bench.phase(&format!("phase_{key}"), READINGS as f64, t);
    }
}

/// The equal-work peer (`bench/peers/stream_peer.py`, in the project's venv): the same
/// event, registry and catalog, the same checks, ids, dedup, JSON lines and packing. Its
/// lines must equal pulselake's byte for byte (else the comparison would be of unequal
/// work), and the ratio of the two handler times is reported.
fn peer(
    raw: &[u8],
    devices: &[DeviceRecord],
    delivered: &[Vec<u8>],
    handler: &Timings,
    bench: &mut Bench,
) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        println!("  Python peer: skipped (no .venv; `make venv` makes it)");
        return;
    }
    let dir = root.join("target/bench-data/stream-peer");
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    write("event.json", raw);
    write("devices.json", &serde_json::to_vec(devices).unwrap());
    let catalog: Vec<_> = Metric::all()
        .map(|m| {
            let s = m.spec();
            json!({"name": s.name, "loinc": s.loinc, "unit": s.unit, "min": s.min, "max": s.max,
                   "accepted": s.accepted.iter().map(|c| json!([c.unit, c.scale, c.offset])).collect::<Vec<_>>()})
        })
        .collect();
    let policy = TimePolicy::stream();
    write(
        "policy.json",
        &serde_json::to_vec(&json!({"catalog": catalog, "now_ms": NOW + 500,
            "max_future_skew_ms": policy.max_future_skew_ms, "max_age_ms": policy.max_age_ms,
            "earliest_ms": policy.earliest_ms}))
        .unwrap(),
    );
    let before = calibration_now();
    let out = std::process::Command::new(&python)
        .arg(root.join("bench/peers/stream_peer.py"))
        .arg(&dir)
        .output()
        .expect("the Python peer runs");
    let after = calibration_now();
    assert!(
        out.status.success(),
        "the Python peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("peer report");
    let mut ours: Vec<&[u8]> = delivered
        .iter()
        .flat_map(|r| r.split_inclusive(|&b| b == b'\n'))
        .collect();
    let theirs_text = std::fs::read(dir.join("peer.ndjson")).unwrap();
    let mut theirs: Vec<&[u8]> = theirs_text.split_inclusive(|&b| b == b'\n').collect();
    ours.sort_unstable();
    theirs.sort_unstable();
    assert!(
        ours == theirs,
        "the Python peer's lines differ from pulselake's ({} against {}): not equal work",
        theirs.len(),
        ours.len()
    );
    let peer_ms = report["handler_ms"].as_f64().unwrap_or(f64::NAN);
    // Each side against the calibration timed around it: the machine's speed moves
    // between the two measurements.
    let calibration_ms = (before + after).as_secs_f64() * 1e3 / 2.0;
    let ratio = (peer_ms / calibration_ms) / handler.relative();
    println!(
        "  Python peer {:.1} ms per batch (CPython {}, same {} lines, byte for byte): pulselake {ratio:.1}x faster \
         (against the calibration around each; {:.1}x by the raw times)",
        peer_ms,
        report["python"].as_str().unwrap_or("?"),
        ours.len(),
        peer_ms / (handler.median().as_secs_f64() * 1e3)
    );
    bench.ratio("python_peer_ratio", ratio);
}
