//! The `pulselake` binary against the local stack: ops onboard devices from a CSV,
//! reassign one, deactivate another and list them; a bad CSV changes nothing and names
//! every bad line.

use pulselake_local::LocalPlatform;

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
    // An erased subject is never assigned again, by any command.
    let (code, out, err) = run(&[
        "erasure",
        "request",
        "subj-7",
        "--by",
        "dpo@example.org",
        "--reason",
        "GDPR Art. 17",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, _, err) = run(&[
        "devices",
        "assign",
        "dev-c1",
        "--subject",
        "subj-7",
        "--from",
        "2026-12-01T00:00:00Z",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("subj-7 has an erasure request"), "{err}");
    std::fs::write(
        &csv,
        "device_id,subject,valid_from\ndev-c5,subj-5,2026-11-02T00:00:00Z\ndev-c6,subj-7,2026-11-02T00:00:00Z\n",
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
    assert!(err.contains("subj-7 has an erasure request"), "{err}");
    let (_, list, _) = run(&["devices", "list"]);
    assert_eq!(
        list.lines().count(),
        2,
        "nothing of the import landed: {list}"
    );
    assert!(
        !list.contains("subj-7"),
        "the tombstone removed the assignment: {list}"
    );
    let _ = std::fs::remove_dir_all(&creds);
}
