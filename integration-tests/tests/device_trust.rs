//! A device speaks only for itself: a message published on device A's topic that claims
//! device B (in the native and the flat vendor format) reaches neither the lake nor the
//! alert evaluator; it is quarantined as `device_mismatch`.

use pulselake_domain::time::format_rfc3339_ms;
use pulselake_domain::{Assignment, DeviceRecord, Reason};
use pulselake_local::esm::{KinesisMapping, MappingConfig};
use pulselake_local::{LocalPlatform, firehose, inspect, invoke_now_ms, iot};

fn assigned(device: &str, subject: &str, since: i64) -> DeviceRecord {
    DeviceRecord {
        device_id: device.into(),
        assignments: vec![Assignment {
            subject_id: subject.into(),
            valid_from: since,
            valid_to: None,
            cohort: None,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_claiming_another_device_reaches_neither_the_lake_nor_alerting() {
    let p = LocalPlatform::start(None).await.unwrap();
    let s = &p.stack;
    let now = invoke_now_ms();
    s.register_devices(&[
        assigned("dev-a", "subj-a", now - 86_400_000),
        assigned("dev-b", "subj-b", now - 86_400_000),
        assigned("ACME-B", "subj-c", now - 86_400_000),
    ])
    .await
    .unwrap();
    // Heart rates that would page hr-high, for a patient the publisher does not wear.
    let v1 = |value: f64, ago: i64| {
        serde_json::json!({"v": 1, "device_id": "dev-b", "readings": [{"sensor_id": "hr-0",
            "metric": "heart_rate", "value": value, "unit": "/min",
            "measured_at": format_rfc3339_ms(now - ago * 1000)}]})
        .to_string()
        .into_bytes()
    };
    let flat = serde_json::json!({"serial": "ACME-B", "type": "HR", "val": 170.0, "uom": "bpm", "ts": now - 3000})
        .to_string()
        .into_bytes();
    let from_a = iot::topic_for("dev-a");
    iot::publish(s, &[(from_a.clone(), v1(160.0, 2)), (from_a, flat)])
        .await
        .unwrap();
    let mut lake = KinesisMapping::new(
        s,
        p.stream_ingest().await.unwrap(),
        MappingConfig::default(),
    );
    lake.drain().await.unwrap();
    firehose::flush(s).await.unwrap();
    let mut alerting = KinesisMapping::new(
        s,
        p.vitals_alert().await.unwrap(),
        MappingConfig {
            function_name: "vitals-alert".into(),
            ..MappingConfig::default()
        },
    );
    alerting.drain().await.unwrap();

    assert!(
        inspect::lake(s).await.unwrap().rows.is_empty(),
        "nothing reaches the lake"
    );
    let q = inspect::quarantine(s, "stream/").await.unwrap();
    assert_eq!(
        q.readings_by_reason().get(&Reason::DeviceMismatch),
        Some(&2),
        "{:?}",
        q.entries
    );
    let pages = s
        .sqs
        .receive_message()
        .queue_url(&s.alerts_inbox_url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(
        pages.messages().is_empty(),
        "no page for a patient on someone else's claim"
    );
    assert_eq!(
        p.metric_total("stream-ingest/ReadingsQuarantined"),
        2.0,
        "counted (and alarmed on, per reason)"
    );
}

/// The `pulselake` binary of this workspace (built with it by `cargo test --workspace`).
fn pulselake_binary() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| pulselake_local::moto::workspace_root().join("target"));
    let bin = target.join("debug").join("pulselake");
    if !bin.exists() {
        let built = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "pulselake-cli"])
            .current_dir(pulselake_local::moto::workspace_root())
            .status()
            .unwrap();
        assert!(built.success());
    }
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_onboard_assign_and_deactivate_devices_with_the_pulselake_cli() {
    let p = LocalPlatform::start(None).await.unwrap();
    let creds = std::env::temp_dir().join(format!("pulselake-creds-{}", std::process::id()));
    std::fs::create_dir_all(&creds).unwrap();
    let csv = creds.join("fleet.csv");
    std::fs::write(
        &csv,
        "device_id,subject,valid_from,cohort\ndev-c1,subj-1,2026-11-01T00:00:00Z,\ndev-c2,subj-2,2026-11-01T00:00:00Z,neonatal\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(pulselake_binary())
            .arg("--local")
            .args(args)
            .env("AWS_ENDPOINT_URL", &p.moto.endpoint)
            .env("AWS_REGION", pulselake_local::moto::REGION)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let creds_arg = creds.to_str().unwrap();
    let (code, out, err) = run(&[
        "devices",
        "import",
        csv.to_str().unwrap(),
        "--credentials",
        creds_arg,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("registered 2 devices"), "{out}");
    assert!(
        creds.join("dev-c1.key.pem").exists(),
        "the private key is handed to ops once"
    );
    // A CSV with a device registered already, a duplicate and a bad time: every line
    // named, nothing changed.
    std::fs::write(
        &csv,
        "device_id,subject,valid_from\ndev-c1,subj-9,2026-11-02T00:00:00Z\ndev-c3,subj-3,2026-11-02T00:00:00Z\ndev-c3,subj-4,2026-11-02T00:00:00Z\ndev-c4,subj-4,soon\n",
    )
    .unwrap();
    let (code, _, err) = run(&[
        "devices",
        "import",
        csv.to_str().unwrap(),
        "--credentials",
        creds_arg,
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("nothing was changed") && err.contains("line 4:") && err.contains("line 5:"),
        "{err}"
    );
    let (code, out, err) = run(&[
        "devices",
        "assign",
        "dev-c1",
        "--subject",
        "subj-7",
        "--from",
        "2026-11-15T00:00:00Z",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(&["devices", "deactivate", "dev-c2"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 certificate(s) revoked"), "{out}");
    let (_, list, _) = run(&["devices", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(
        lines[0].starts_with("dev-c1")
            && lines[0].contains("1 active")
            && lines[0].contains("subj-7"),
        "{list}"
    );
    assert!(
        lines[1].starts_with("dev-c2")
            && lines[1].contains("0 active")
            && lines[1].contains("unassigned"),
        "{list}"
    );
    let _ = std::fs::remove_dir_all(&creds);
}
