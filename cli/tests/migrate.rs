//! `pulselake migrate reconcile` against the local stack: a legacy export that the lake
//! holds reconciles (exit 0) and its counts are written for later; once a reading is
//! dropped from the lake, the counts name its device and day (exit 3); each run is in the
//! audit store.

use pulselake_domain::time::parse_rfc3339_ms;
use pulselake_domain::{Metric, Partition, Reading, ReadingId, Source};
use pulselake_lake::{FileLayout, encode_readings};
use pulselake_local::LocalPlatform;

fn reading(device: &str, at: i64) -> Reading<'static> {
    Reading {
        reading_id: ReadingId::derive(device, "hr-0", Metric::HeartRate, at),
        subject_id: "subj-1".into(),
        device_id: device.to_owned().into(),
        sensor_id: "hr-0".into(),
        metric: Metric::HeartRate,
        value: 70.0,
        measured_at: at,
        received_at: at + 1_000,
        source: Source::File,
        source_ref: "file:x:L2".into(),
        cohort: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_reconcile_a_backfill_and_a_lost_reading_is_named_by_device_and_day() {
    let p = LocalPlatform::start(None).await.unwrap();
    let day = parse_rfc3339_ms("2026-11-23T00:00:00Z").unwrap();
    let mut export = String::from("device_id,sensor_id,metric,value,unit,measured_at\n");
    let mut rows = Vec::new();
    for d in 0..3 {
        for m in 0..10 {
            let device = format!("dev-{d}");
            let at = day + m * 60_000 + d * 86_400_000;
            export.push_str(&format!(
                "{device},hr-0,heart_rate,70,/min,{}\n",
                pulselake_domain::time::format_rfc3339_ms(at)
            ));
            rows.push(reading(&device, at));
        }
    }
    let put = |rows: Vec<Reading<'static>>| {
        let p = &p;
        async move {
            let mut by_day = std::collections::BTreeMap::<Partition, Vec<Reading<'static>>>::new();
            for r in rows {
                by_day
                    .entry(Partition::of(r.metric, r.measured_at))
                    .or_default()
                    .push(r);
            }
            for (partition, rows) in by_day {
                p.stack
                    .s3
                    .put_object()
                    .bucket(&p.stack.names.lake_bucket)
                    .key(format!("{}backfill.parquet", partition.prefix()))
                    .body(
                        encode_readings(&rows, FileLayout::default())
                            .unwrap()
                            .into(),
                    )
                    .send()
                    .await
                    .unwrap();
            }
        }
    };
    put(rows.clone()).await;
    let dir = std::env::temp_dir().join(format!("pulselake-migrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let export_file = dir.join("legacy.csv");
    std::fs::write(&export_file, export).unwrap();
    let counts = dir.join("counts.csv");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pulselake"))
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
    let (code, out, err) = run(&[
        "migrate",
        "reconcile",
        "--from-export",
        export_file.to_str().unwrap(),
        "--write-counts",
        counts.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.starts_with(
            "source 30 readings, lake 30 on the same days; 3 device-day(s) match, 0 differ"
        ),
        "{out}"
    );
    assert!(
        std::fs::read_to_string(&counts)
            .unwrap()
            .starts_with("device_id,day,readings,checksum\ndev-0,2026-11-23,10,")
    );

    // dev-1's fifth reading of 24 November is lost from the lake.
    let lost = rows.iter().position(|r| r.device_id == "dev-1").unwrap() + 4;
    let mut kept = rows.clone();
    kept.remove(lost);
    put(kept).await;
    let (code, out, err) = run(&["migrate", "reconcile", "--source", counts.to_str().unwrap()]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(out.contains("1 reading(s) missing from the lake"), "{out}");
    assert!(
        out.contains("  dev-1 2026-11-24: source 10, lake 9: 1 missing from the lake"),
        "{out}"
    );
    assert!(err.contains("more than the threshold (0)"), "{err}");
    // Within a threshold of one, the same comparison passes.
    let (code, _, err) = run(&[
        "migrate",
        "reconcile",
        "--source",
        counts.to_str().unwrap(),
        "--threshold",
        "1",
    ]);
    assert_eq!(code, Some(0), "{err}");
    // A counts file with a bad line changes nothing and names the line.
    std::fs::write(&counts, "device_id,day,readings\ndev-1,24 Nov,9\n").unwrap();
    let (code, _, err) = run(&["migrate", "reconcile", "--source", counts.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("line 2: day \"24 Nov\""), "{err}");

    let audit = p
        .stack
        .s3
        .list_objects_v2()
        .bucket(&p.stack.names.audit_bucket)
        .prefix("records/kind=migration/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        audit.contents().len(),
        3,
        "every run that compared is audited"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
