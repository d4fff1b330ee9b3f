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

/// A client that knows only the FHIR base URL, as SMART App Launch 2.2 has it: the
/// configuration at `{fhir base}/.well-known/smart-configuration`, the token endpoint it
/// names (the assertion's audience), a wildcard scope narrowed to the grant, then an
/// export from the base URL to its manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_knows_only_the_fhir_base_url_discovers_the_token_endpoint_and_exports() {
    use std::time::Duration;

    use pulselake_local::http::request;

    let p = LocalPlatform::start(None).await.unwrap();
    onboard::add_partner(
        &p.stack,
        "research",
        r#"{"metrics":["heart_rate"],"cohorts":["*"],"mode":"limited","dua":"DUA-2026-001"}"#,
        &std::fs::read_to_string(fixture("research-rs384.jwks.json")).unwrap(),
    )
    .await
    .unwrap();
    let api = p.partner_api().await.unwrap();
    let fhir_base = format!("{}/fhir", api.base_url);
    let conf = request(
        "GET",
        &format!("{fhir_base}/.well-known/smart-configuration"),
        &[("accept", "application/json")],
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(conf.status, 200, "{}", conf.text());
    let conf = conf.json().unwrap();
    for field in [
        "token_endpoint",
        "grant_types_supported",
        "capabilities",
        "code_challenge_methods_supported",
    ] {
        assert!(!conf[field].is_null(), "SMART 2.2 requires {field}: {conf}");
    }
    assert!(
        conf["grant_types_supported"]
            .to_string()
            .contains("client_credentials")
    );
    let token_endpoint = conf["token_endpoint"].as_str().unwrap().to_owned();

    let client = PartnerClient::fixture(&api.base_url, "research").unwrap();
    let assertion = client
        .assertion_with(|c| c["aud"] = serde_json::json!(token_endpoint))
        .unwrap();
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let form = format!(
        "grant_type=client_credentials&client_assertion_type={}&client_assertion={}&scope={}",
        enc("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        enc(&assertion),
        enc("system/*.rs")
    );
    let token = request(
        "POST",
        &token_endpoint,
        &[("content-type", "application/x-www-form-urlencoded")],
        form.into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(token.status, 200, "{}", token.text());
    let token = token.json().unwrap();
    assert_eq!(
        token["scope"], "system/Observation.rs",
        "the wildcard, narrowed"
    );
    let token = token["access_token"].as_str().unwrap().to_owned();

    let kick = client
        .kick_off(&token, &format!("{fhir_base}/$export"))
        .await
        .unwrap();
    assert_eq!(kick.status, 202, "{}", kick.text());
    let status = kick.header("content-location").unwrap().to_owned();
    let mut worker = p.export_worker().await.unwrap();
    worker.drain(Duration::from_secs(60)).await.unwrap();
    let done = client
        .wait(&token, &status, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(done.status, 200, "{}", done.text());
    let manifest = done.json().unwrap();
    assert_eq!(manifest["request"], format!("{fhir_base}/$export"));
    assert!(manifest["output"].is_array());
}
