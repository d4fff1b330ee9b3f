//! GDPR erasure on the local stack, on a lake the stream and file scenarios filled (the
//! demo's scenario): one patient's request is recorded with the admin CLI's code and the
//! erasure pass rewrites the lake. DuckDB then finds none of the patient's rows and
//! every other row unchanged (count and checksum); the evidence in the audit store says
//! so without naming the patient; a partner's next export carries the deletion notice
//! and no longer the patient; readings the patient's device sends afterwards (and its
//! earlier messages, delivered again) never reach the lake.

use pulselake_local::erasure_scenario::run_erasure;
use pulselake_local::partner_client::fixture;
use pulselake_local::partner_scenario::RESEARCH_POLICY;
use pulselake_local::simulator::FleetConfig;
use pulselake_local::{LocalPlatform, fhir_schema, onboard, scenario};

fn fleet() -> FleetConfig {
    FleetConfig {
        devices: 12,
        sensors_per_device: 6,
        fault_share: 0.0,
        ..FleetConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_patient_is_gone_from_the_lake_with_proof_and_stays_gone() {
    let p = LocalPlatform::start(None).await.unwrap();
    scenario::run_stream(&p, fleet(), 3, &mut |_| {})
        .await
        .unwrap();
    scenario::run_files(&p, &mut |_| {}).await.unwrap();
    let jwks = std::fs::read_to_string(fixture("research-rs384.jwks.json")).unwrap();
    onboard::add_partner(&p.stack, "research", RESEARCH_POLICY, &jwks)
        .await
        .unwrap();

    let r = run_erasure(&p, fleet(), &mut |_| {}).await.unwrap();
    assert!(r.subject_rows_before > 0, "{r:?}");
    assert_eq!(r.subject_rows_after, 0, "no row of the patient");
    assert_eq!(r.evidence.rows_removed, r.subject_rows_before);
    assert_eq!(r.others_after, r.others_before, "every other row unchanged");
    assert!(
        r.evidence.verification.passed && r.evidence.completed,
        "{:?}",
        r.evidence
    );
    assert_eq!(r.evidence.requests, vec![r.request_id.clone()]);
    assert!(r.evidence_audited_without_identifiers);
    assert_eq!(r.partner_deletions, 1);
    assert_eq!(
        fhir_schema::problems(&r.deletion_bundles).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        fhir_schema::model_problems(&r.deletion_bundles).unwrap(),
        Vec::<String>::new()
    );
    assert!(!r.partner_still_sees_subject);
    assert_eq!(r.later_rows_in_lake, 0, "tombstoned");
    assert!(r.adds_up());
    let again = p
        .erasure()
        .await
        .run(pulselake_local::invoke_now_ms())
        .await
        .unwrap();
    assert!(again.is_none(), "the request is done: nothing pending");
}
