//! `pulselake teams` against the local stack, as ops would run it: two teams added, listed
//! and previewed, one narrowed, suspended and reactivated, one removed; bad policies and a
//! second team of one name refused with nothing applied. What moto holds (Lake Formation
//! grants and LF-tags, Athena workgroups, team records, audit records) is read back.

use pulselake_domain::{Metric, Reading, ReadingId, Source};
use pulselake_lake::{FileLayout, encode_readings};
use pulselake_local::LocalPlatform;

const ROLE: &str = "arn:aws:iam::123456789012:role/pulselake-team-neo";

fn policy(metrics: &str, cohorts: &str, columns: &str, role: &str) -> String {
    format!(
        r#"{{"metrics":{metrics},"cohorts":{cohorts},"columns":{columns},
        "purpose":"neonatal sepsis model","owner":"neo@example.org","expires":"2099-01-01T00:00:00Z",
        "dua":"IRB-9","budget":{{"bytes_per_query":10000000000,"bytes_per_month":100000000000}},
        "role_arn":"{role}"}}"#
    )
}

/// A day of heart rate and SpO2 in the lake: 40 readings, every other one neonatal.
async fn fill_lake(p: &LocalPlatform) {
    let at = 1_795_305_600_000; // 2026-11-22
    for metric in [Metric::HeartRate, Metric::Spo2] {
        let rows: Vec<Reading<'static>> = (0..20)
            .map(|i| Reading {
                reading_id: ReadingId::derive("dev-1", "s", metric, at + i),
                subject_id: "subj-1".into(),
                device_id: "dev-1".into(),
                sensor_id: "s".into(),
                metric,
                value: 90.0,
                measured_at: at + i,
                received_at: at + 5_000,
                source: Source::Stream,
                source_ref: "shard:1".into(),
                cohort: (i % 2 == 0).then(|| "neonatal".into()),
            })
            .collect();
        let key = format!(
            "{}part-0.parquet",
            pulselake_domain::Partition::of(metric, at).prefix()
        );
        p.stack
            .s3
            .put_object()
            .bucket(&p.stack.names.lake_bucket)
            .key(key)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_add_narrow_suspend_and_remove_team_environments_with_the_pulselake_cli() {
    let p = LocalPlatform::start(None).await.unwrap();
    fill_lake(&p).await;
    let dir = std::env::temp_dir().join(format!("pulselake-teams-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pulselake"))
            .arg("--local")
            .args(args)
            .env("AWS_ENDPOINT_URL", &p.moto.endpoint)
            .env("AWS_REGION", pulselake_local::moto::REGION)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env(
                "PULSELAKE_PYTHON",
                pulselake_local::moto::venv_bin("python"),
            )
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let neo = file(
        "neo.json",
        &policy(
            r#"["heart_rate","spo2"]"#,
            r#"["neonatal"]"#,
            r#"["value","measured_at"]"#,
            ROLE,
        ),
    );
    let (code, out, err) = run(&["teams", "add", "neo", "--policy", &neo]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("workgroup pulselake-team-neo"), "{out}");
    assert!(out.contains("(cohort IN ('neonatal'))"), "{out}");

    // Refused, nothing applied: a second team of one name, an unknown metric and column,
    // a role that is no role.
    let bad = file(
        "bad.json",
        &policy(
            r#"["pulse"]"#,
            r#"["*"]"#,
            r#"["ssn"]"#,
            "arn:aws:iam::123456789012:user/x",
        ),
    );
    let (code, _, err) = run(&["teams", "add", "neo", "--policy", &neo]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("team neo exists already"), "{err}");
    let (code, _, err) = run(&["teams", "add", "other", "--policy", &bad]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("nothing was changed")
            && err.contains("\"pulse\"")
            && err.contains("\"ssn\"")
            && err.contains("role ARN"),
        "{err}"
    );
    let athena = aws_sdk_athena::Client::new(&p.stack.sdk);
    let workgroups = || async {
        let out = athena.list_work_groups().send().await.unwrap();
        let mut names: Vec<String> = out
            .work_groups()
            .iter()
            .filter_map(|w| w.name())
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    };
    assert!(
        !workgroups()
            .await
            .contains(&"pulselake-team-other".to_owned())
    );

    // What the team sees: 20 of the 40 readings (the neonatal ones), its columns only.
    let (code, out, err) = run(&["teams", "preview", "neo"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("neo sees 20 of the lake's 40 readings, columns: value, measured_at, metric, year, month, day"),
        "{out}"
    );
    // Narrowed to SpO2: the preview follows.
    let spo2 = file(
        "spo2.json",
        &policy(r#"["spo2"]"#, r#"["neonatal"]"#, r#"["value"]"#, ROLE),
    );
    let (code, out, err) = run(&["teams", "update-policy", "neo", "--policy", &spo2]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, out, _) = run(&["teams", "preview", "neo"]);
    assert!(
        out.contains("neo sees 10 of the lake's 40 readings, columns: value, metric"),
        "{out}"
    );

    // Lake Formation holds the team's grants: SELECT through its filter, DESCRIBE of the
    // database and the table; the lake's columns carry their sensitivity tag.
    let lf = aws_sdk_lakeformation::Client::new(&p.stack.sdk);
    let grants = || async {
        let out = lf.list_permissions().send().await.unwrap();
        out.principal_resource_permissions()
            .iter()
            .filter(|g| {
                g.principal()
                    .and_then(|p| p.data_lake_principal_identifier())
                    == Some(ROLE)
            })
            .map(|g| {
                let r = g.resource().unwrap();
                let what = if let Some(f) = r.data_cells_filter() {
                    format!("filter {}", f.name().unwrap_or_default())
                } else if r.table().is_some() {
                    "table".to_owned()
                } else {
                    "database".to_owned()
                };
                format!("{what}: {:?}", g.permissions())
            })
            .collect::<Vec<_>>()
    };
    let held = grants().await;
    assert_eq!(held.len(), 3, "{held:?}");
    assert!(
        held.iter()
            .any(|g| g == "filter pulselake-team-neo: [Select]"),
        "{held:?}"
    );
    let tags = lf
        .get_resource_lf_tags()
        .resource(
            aws_sdk_lakeformation::types::Resource::builder()
                .table_with_columns(
                    aws_sdk_lakeformation::types::TableWithColumnsResource::builder()
                        .database_name("pulselake_lake")
                        .name("readings")
                        .column_names("device_id")
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let on_device = format!("{:?}", tags.lf_tags_on_columns());
    assert!(
        on_device.contains("pulselake-sensitivity") && on_device.contains("identifier"),
        "{on_device}"
    );

    // Suspended: no grant left; the list says so; reactivated: the grants are back.
    let (code, out, err) = run(&["teams", "suspend", "neo"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(grants().await.is_empty(), "{:?}", grants().await);
    let (_, list, _) = run(&["teams", "list"]);
    assert!(
        list.starts_with("neo  suspended  metrics=spo2  cohorts=neonatal"),
        "{list}"
    );
    assert!(list.contains("identifiers=none"), "{list}");
    let (code, out, err) = run(&["teams", "reactivate", "neo"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(grants().await.len(), 3);

    // Removed: grants, workgroup and record gone.
    let (code, out, err) = run(&["teams", "remove", "neo"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(grants().await.is_empty());
    assert!(
        !workgroups()
            .await
            .contains(&"pulselake-team-neo".to_owned())
    );
    let (_, list, _) = run(&["teams", "list"]);
    assert!(list.trim().is_empty(), "{list}");
    let (code, _, err) = run(&["teams", "preview", "neo"]);
    assert_eq!(code, Some(2), "{err}");

    // Every change is in the audit store: add, update, suspend, reactivate, remove.
    let audit = p
        .stack
        .s3
        .list_objects_v2()
        .bucket(&p.stack.names.audit_bucket)
        .prefix("records/kind=teams/")
        .send()
        .await
        .unwrap();
    assert_eq!(audit.contents().len(), 5);
    let _ = std::fs::remove_dir_all(&dir);
}
