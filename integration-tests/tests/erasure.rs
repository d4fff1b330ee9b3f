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
use pulselake_local::{LocalPlatform, fhir_schema, inspect, onboard, scenario};

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

    let r = Box::pin(run_erasure(&p, fleet(), &mut |_| {}))
        .await
        .unwrap();
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
        .unwrap()
        .run(pulselake_local::invoke_now_ms() + 2 * erasure::pass::DELIVERY_HORIZON_MS)
        .await
        .unwrap();
    assert!(again.is_none(), "the request is done: nothing pending");
}

/// A patient known by a legacy key (the seed vendor's `P1`): the raw files archived
/// under that key go too, with every version, and the lake's rows of the patient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_patient_s_raw_files_go_with_their_lake_rows() {
    let p = LocalPlatform::start(None).await.unwrap();
    let s = &p.stack;
    scenario::run_files(&p, &mut |_| {}).await.unwrap();
    let archived = |keys: Vec<String>| -> Vec<String> {
        keys.into_iter()
            .filter(|k| k.starts_with("seed/P1."))
            .collect()
    };
    let before = archived(
        inspect::list_keys(s, &s.names.processed_bucket, "seed/")
            .await
            .unwrap(),
    );
    assert!(!before.is_empty(), "the seed sample is archived");
    let lake_rows = |rows: &[pulselake_domain::Reading<'_>]| {
        rows.iter()
            .filter(|r| r.subject_id == "subj-5eed0001")
            .count()
    };
    let lake = inspect::lake(s).await.unwrap();
    assert_eq!(lake_rows(&lake.rows), 1_440);

    let now = pulselake_local::invoke_now_ms();
    onboard::request_erasure(s, "subj-5eed0001", now)
        .await
        .unwrap();
    let ev = p
        .erasure()
        .await
        .unwrap()
        .run(now + erasure::pass::DELIVERY_HORIZON_MS + 1)
        .await
        .unwrap()
        .unwrap();
    assert!(ev.completed && ev.verification.passed, "{ev:?}");
    assert_eq!(ev.rows_removed, 1_440);
    assert_eq!(ev.copies.raw_files_deleted, before.len());
    assert_eq!(ev.verification.copies_left, 0);
    let after = archived(
        inspect::list_keys(s, &s.names.processed_bucket, "seed/")
            .await
            .unwrap(),
    );
    assert!(after.is_empty(), "{after:?}");
    let versions =
        s.s3.list_object_versions()
            .bucket(&s.names.processed_bucket)
            .prefix("seed/P1.")
            .send()
            .await
            .unwrap();
    assert!(
        versions.versions().is_empty(),
        "no version of the raw file is left"
    );
    assert_eq!(lake_rows(&inspect::lake(s).await.unwrap().rows), 0);
}

/// A patient whose device's rows came in files that hold other patients' rows too: the
/// archived raw files are rewritten without the patient's lines (the ones that reached
/// the lake, found by the lake rows' source, and the rejected ones, by the device), so
/// is a copy of such a file archived under another name and a file quarantined whole,
/// and the quarantine report loses the patient's entries; everyone else's lines stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_s_lines_leave_the_raw_files_and_reports_they_share_with_others() {
    let p = LocalPlatform::start(None).await.unwrap();
    let s = &p.stack;
    scenario::run_files(&p, &mut |_| {}).await.unwrap();
    let text = |key: &'static str| async move {
        String::from_utf8(
            inspect::get_bytes(s, &s.names.processed_bucket, key)
                .await
                .unwrap()
                .to_vec(),
        )
        .unwrap()
    };
    let export_before = text("csv/partner-a/2026-11-01.csv").await;
    let reports = || async {
        let mut entries = Vec::new();
        for key in inspect::list_keys(s, &s.names.quarantine_bucket, "files/")
            .await
            .unwrap()
            .iter()
            .filter(|k| k.contains("/rows-"))
        {
            let body = inspect::get_bytes(s, &s.names.quarantine_bucket, key)
                .await
                .unwrap();
            entries.extend(
                String::from_utf8_lossy(&body)
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            );
        }
        entries
    };
    let before = reports().await;
    assert!(before.iter().any(|e| e.contains("dev-file-000")));

    let now = pulselake_local::invoke_now_ms();
    onboard::request_erasure(s, "subj-f000", now).await.unwrap();
    let ev = p
        .erasure()
        .await
        .unwrap()
        .run(now + erasure::pass::DELIVERY_HORIZON_MS + 1)
        .await
        .unwrap()
        .unwrap();
    assert!(ev.completed && ev.verification.passed, "{ev:?}");
    assert_eq!(
        ev.rows_removed, 721,
        "720 from the export, 1 from the mixed file"
    );
    assert_eq!(
        ev.copies.raw_files_rewritten, 3,
        "the export, its resend under another name (skipped as a copy, archived), the mixed file: {ev:?}"
    );
    assert_eq!(
        ev.copies.raw_lines_removed,
        720 + 720 + 4 + 1,
        "the mixed file's 3 rejected lines, and the line of a file quarantined whole"
    );
    assert_eq!(ev.copies.quarantine_entries_removed, 3);
    assert_eq!(ev.copies.quarantined_files_rewritten, 1);
    let resend = text("csv/partner-b/resend-2026-11-01.csv").await;
    assert_eq!(resend.lines().count(), 1 + 19 * 720);
    assert!(!resend.contains("dev-file-000"));
    for key in inspect::list_keys(s, &s.names.quarantine_bucket, "files/")
        .await
        .unwrap()
        .iter()
        .filter(|k| k.ends_with("/raw"))
    {
        let copy = inspect::get_bytes(s, &s.names.quarantine_bucket, key)
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&copy).contains("dev-file-000"));
    }

    let export = text("csv/partner-a/2026-11-01.csv").await;
    assert!(!export.contains("dev-file-000"));
    let kept: Vec<&str> = export_before
        .lines()
        .filter(|l| !l.starts_with("dev-file-000,"))
        .collect();
    assert_eq!(
        export.lines().collect::<Vec<_>>(),
        kept,
        "everyone else's lines, in order"
    );
    let mixed = text("csv/partner-a/2026-11-02-mixed.csv").await;
    assert_eq!(
        mixed,
        "device_id,sensor_id,metric,value,unit,measured_at\n\
         dev-unknown,hr-1,heart_rate,74,/min,2026-11-02T08:04:00Z\n\
         dev-file-001,glu-0,glucose,5.4,mmol/L,2026-11-02T08:05:00Z\n"
    );
    let after = reports().await;
    assert!(
        after.iter().all(|e| !e.contains("dev-file-000")),
        "{after:?}"
    );
    assert_eq!(after.len(), before.len() - 3, "the others' entries stay");
    assert!(after.iter().any(|e| e.contains("dev-unknown")));
}
