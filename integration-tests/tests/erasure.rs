//! GDPR erasure on the local stack, on a lake the stream and file scenarios filled: one
//! subject's request is recorded with the admin CLI's code, the erasure pass rewrites
//! the lake; DuckDB then finds none of the subject's rows and every other row unchanged
//! (count and a checksum over the rows), the evidence in the audit store says so without
//! naming the subject, and readings the subject's device sends afterwards never reach
//! the lake.

use pulselake_domain::time::format_rfc3339_ms;
use pulselake_local::esm::{KinesisMapping, MappingConfig};
use pulselake_local::simulator::{Fleet, FleetConfig};
use pulselake_local::{
    LocalPlatform, duckdb, firehose, inspect, invoke_now_ms, iot, onboard, scenario,
};

fn fleet() -> FleetConfig {
    FleetConfig {
        devices: 12,
        sensors_per_device: 6,
        fault_share: 0.0,
        ..FleetConfig::default()
    }
}

/// (rows, checksum) of the rows DuckDB reads in the lake `WHERE <filter>`.
async fn lake_rows(p: &LocalPlatform, run: &str, filter: &str) -> (u64, String) {
    let dir = std::env::temp_dir().join(format!("pulselake-erasure-{}-{run}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    inspect::export_lake(&p.stack, &dir).await.unwrap();
    let rows = duckdb::query(
        &dir,
        &format!(
            "SELECT count(*), coalesce(sum(hash(reading_id, subject_id, device_id, value, measured_at, received_at, source_ref)), 0) FROM readings WHERE {filter}"
        ),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (rows[0][0].parse().unwrap(), rows[0][1].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_subject_is_gone_from_the_lake_with_proof_and_stays_gone() {
    let p = LocalPlatform::start(None).await.unwrap();
    let s = &p.stack;
    scenario::run_stream(&p, fleet(), 3, &mut |_| {})
        .await
        .unwrap();
    scenario::run_files(&p, &mut |_| {}).await.unwrap();
    let registry = Fleet::new(fleet()).registry(0);
    let victim_device = registry[2].device_id.clone();
    let victim = registry[2].assignments[0].subject_id.clone();
    let is_victim = format!("subject_id = '{victim}'");
    let others = format!("subject_id <> '{victim}'");
    let (victim_rows, _) = lake_rows(&p, "before-v", &is_victim).await;
    let (other_rows, other_sum) = lake_rows(&p, "before-o", &others).await;
    assert!(
        victim_rows > 0 && other_rows > victim_rows,
        "{victim_rows} {other_rows}"
    );

    let now = invoke_now_ms();
    let request = onboard::request_erasure(s, &victim, now).await.unwrap();
    let evidence = p.erasure().await.run(now + 1_000).await.unwrap().unwrap();
    assert_eq!(evidence.rows_removed, victim_rows);
    assert!(
        evidence.verification.passed && evidence.completed,
        "{evidence:?}"
    );
    assert_eq!(evidence.requests, vec![request.clone()]);
    assert!(evidence.verification.partitions > 0);

    assert_eq!(
        lake_rows(&p, "after-v", &is_victim).await.0,
        0,
        "no row of the subject"
    );
    assert_eq!(
        lake_rows(&p, "after-o", &others).await,
        (other_rows, other_sum),
        "every other row unchanged"
    );
    // The evidence is in the audit store, by reference, without the subject.
    let records = inspect::list_keys(s, &s.names.audit_bucket, "records/kind=erasure/")
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    let record = inspect::get_bytes(s, &s.names.audit_bucket, &records[0])
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&record);
    assert!(
        text.contains(&request) && text.contains("\"passed\":true"),
        "{text}"
    );
    assert!(!text.contains(&victim) && !text.contains(&victim_device));
    // No version of any lake object holds the subject (the local lake is unversioned,
    // as moto needs; the pass deleted every version it listed).
    for key in inspect::list_keys(s, &s.names.lake_bucket, "readings/")
        .await
        .unwrap()
    {
        let body = inspect::get_bytes(s, &s.names.lake_bucket, &key)
            .await
            .unwrap();
        assert!(
            !body.windows(victim.len()).any(|w| w == victim.as_bytes()),
            "{key}"
        );
    }

    // The device keeps sending: its readings are refused, never stored under the subject.
    let reading = serde_json::json!({"v": 1, "device_id": victim_device, "readings": [{"sensor_id": "hr-0",
        "metric": "heart_rate", "value": 71, "unit": "/min", "measured_at": format_rfc3339_ms(invoke_now_ms() - 2000)}]});
    iot::publish(
        s,
        &[(
            iot::topic_for(&victim_device),
            reading.to_string().into_bytes(),
        )],
    )
    .await
    .unwrap();
    // A new mapping reads the stream from its start: the subject's earlier messages are
    // delivered again too, and refused as well.
    let mut mapping = KinesisMapping::new(
        s,
        p.stream_ingest().await.unwrap(),
        MappingConfig::default(),
    );
    mapping.drain().await.unwrap();
    firehose::flush(s).await.unwrap();
    assert_eq!(lake_rows(&p, "later", &is_victim).await.0, 0, "tombstoned");
    let again = p.erasure().await.run(now + 2_000).await.unwrap();
    assert!(again.is_none(), "the request is done: nothing pending");
}
