//! The partner API against its one definition, by tools nobody here wrote: schemathesis
//! (pinned, `.venv-partners`) generates requests from `api/openapi.yaml` and runs its
//! default checks (server errors, status codes, content types, headers, response
//! schemas, negative data rejected, auth not ignored) against the local API.

use std::process::Command;

use pulselake_local::partner_client::{PartnerClient, fixture};
use pulselake_local::{LocalPlatform, moto, onboard};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_api_true_to_its_openapi_document() {
    let p = LocalPlatform::start(None).await.unwrap();
    onboard::add_partner(
        &p.stack,
        "research",
        r#"{"metrics":["heart_rate"],"cohorts":["*"],"mode":"limited","dua":"DUA-2026-001","daily_exports":1000}"#,
        &std::fs::read_to_string(fixture("research-rs384.jwks.json")).unwrap(),
    )
    .await
    .unwrap();
    let api = p.partner_api().await.unwrap();
    let research = PartnerClient::fixture(&api.base_url, "research").unwrap();
    let token = research.token().await.unwrap();
    let root = moto::workspace_root();
    let schemathesis = moto::partners_venv_bin("schemathesis");
    let report =
        std::env::temp_dir().join(format!("pulselake-schemathesis-{}", std::process::id()));
    let base_url = api.base_url.clone();
    let scratch = report.clone();
    let out = tokio::task::spawn_blocking(move || {
        // Run where its cache (`.schemathesis/`) cannot land in the repository.
        std::fs::create_dir_all(&report).ok();
        Command::new(&schemathesis)
            .current_dir(&report)
            .arg("--config-file")
            .arg(root.join("api/schemathesis.toml"))
            .arg("--no-color")
            .arg("run")
            .arg(root.join("api/openapi.yaml"))
            .args(["--url", &base_url])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args(["--max-examples", "30", "--seed", "20261130"])
            .args(["--report-dir"])
            .arg(&report)
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("cannot run schemathesis (run `make venv`): {e}"));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    let _ = std::fs::remove_dir_all(&scratch);
}
