//! Tombstones hold, whatever runs beside them, on the local stack's DynamoDB: an
//! assignment racing an erasure request ends with the subject unassigned (the registry
//! write and the tombstone check are one transaction), and two partner changes at once
//! both take effect (each goes over the version it read).

use pulselake_adapters::{
    DynamoAliases, DynamoErasures, DynamoPartners, DynamoRegistry, IotIdentities, Partners,
    RegistryAdmin,
};
use pulselake_cli::devices::Devices;
use pulselake_cli::erasure::ErasureAdmin;
use pulselake_cli::partners::PartnerAdmin;
use pulselake_domain::partner::PartnerStatus;
use pulselake_domain::time::parse_rfc3339_ms;
use pulselake_local::{LocalPlatform, onboard};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_racing_an_erasure_request_ends_with_the_subject_erased() {
    let p = LocalPlatform::start(None).await.unwrap();
    let s = &p.stack;
    let names = &onboard::names();
    let registry = DynamoRegistry::from_config(&s.sdk, &names.registry_table)
        .with_tombstones(&names.erasure_table);
    let identities = IotIdentities::from_config(&s.sdk, &names.device_policy);
    let aliases = DynamoAliases::from_config(&s.sdk, &names.alias_table);
    let requests = DynamoErasures::from_config(&s.sdk, &names.erasure_table);
    let devices = Devices {
        registry: &registry,
        identities: &identities,
        aliases: &aliases,
        credentials_dir: None,
    };
    let erasures = ErasureAdmin {
        requests: &requests,
        registry: &registry,
        aliases: &aliases,
    };
    let from = parse_rfc3339_ms("2026-11-01T00:00:00Z").unwrap();
    // Each round: a device moves to a patient at the moment that patient's erasure is
    // requested; the two interleave differently round to round.
    for round in 0..8 {
        let device = format!("dev-race-{round}");
        let subject = format!("subj-race-{round}");
        devices
            .register(&device, &format!("subj-before-{round}"), from, None)
            .await
            .unwrap();
        let assign = async {
            for _ in 0..round % 3 {
                tokio::task::yield_now().await;
            }
            devices
                .assign(&device, &subject, from + 86_400_000, None)
                .await
        };
        let request = async {
            for _ in 0..(round / 3) {
                tokio::task::yield_now().await;
            }
            erasures
                .request(&subject, "dpo@example.org", "GDPR Art. 17", from)
                .await
        };
        let (assigned, requested) = tokio::join!(assign, request);
        requested.unwrap();
        let (record, _) = registry.read(&device).await.unwrap().unwrap();
        assert!(
            record.assignments.iter().all(|a| a.subject_id != subject),
            "round {round}: the erased subject is assigned ({assigned:?}): {record:?}"
        );
        // And it stays so.
        let again = devices
            .assign(&device, &subject, from + 2 * 86_400_000, None)
            .await;
        assert!(
            matches!(&again, Err(e) if e.to_string().contains("has an erasure request")),
            "{again:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_partner_changes_at_once_both_take_effect() {
    let p = LocalPlatform::start(None).await.unwrap();
    let s = &p.stack;
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/partners");
    let names = onboard::names();
    let jwks = std::fs::read_to_string(fixtures.join("research-rs384.jwks.json")).unwrap();
    let other = std::fs::read_to_string(fixtures.join("insurer-es384.jwks.json")).unwrap();
    onboard::add_partner(
        s,
        "lab",
        r#"{"metrics":["heart_rate"],"cohorts":["*"],"mode":"limited","dua":"DUA-1"}"#,
        &jwks,
    )
    .await
    .unwrap();
    let partners = DynamoPartners::from_config(&s.sdk, &names.partners_table);
    let secrets = pulselake_adapters::SecretsManager::from_config(&s.sdk);
    let admin = PartnerAdmin {
        partners: &partners,
        secrets: &secrets,
        secret_prefix: &names.partner_secret_prefix,
        kms_key: names.kms_key.as_deref(),
    };
    let (keys, status) = tokio::join!(
        admin.set_keys("lab", &other),
        admin.set_status("lab", PartnerStatus::Suspended)
    );
    keys.unwrap();
    status.unwrap();
    let lab = partners.get("lab").await.unwrap().unwrap();
    assert_eq!(
        lab.status,
        PartnerStatus::Suspended,
        "the suspension stands"
    );
    assert_eq!(lab.jwks, other, "and so do the new keys");
    assert_eq!(lab.version, 3, "one write each, over the version it read");
}
