//! The partner API and the export worker together over in-memory adapters: a partner
//! authenticates, kicks off an export, the worker drains the queue, the manifest lists
//! the files. What a partner depends on: exactly the rows the policy allows, as FHIR
//! Observations under per-partner pseudonyms; no subject or device id in any file or
//! audit record; retries give no duplicates; cancels leave nothing; partners never see
//! each other's jobs.

#[path = "support/partner_world.rs"]
#[allow(dead_code)]
mod world;

use std::collections::BTreeSet;

use jsonwebtoken::Algorithm;
use pulselake_adapters::WorkUnit;
use pulselake_domain::NamingKey;
use pulselake_domain::partner::{Mode, PartnerStatus};
use world::*;

#[tokio::test]
async fn research_gets_every_row_as_observations_with_panels_and_pseudonyms() {
    let world = World::new();
    let (manifest, lines) = export(&world, "research", "/fhir/$export").await;
    // 2 days x 2 subjects: 30 heart rates, 5 panels, 1 lone systolic.
    let hr = lines.iter().filter(|o| codes(o) == "8867-4").count();
    let panels = lines.iter().filter(|o| codes(o) == "85354-9").count();
    let lone = lines.iter().filter(|o| codes(o) == "8480-6").count();
    assert_eq!((hr, panels, lone), (120, 20, 4));
    assert_eq!(manifest["deleted"], serde_json::json!([]));
    assert_eq!(manifest["extension"]["pseudonymKeyVersion"], "v1");
    assert_eq!(manifest["requiresAccessToken"], true);
    for o in &lines {
        assert_eq!(o["resourceType"], "Observation");
        assert_eq!(o["status"], "final");
        assert_eq!(o["category"][0]["coding"][0]["code"], "vital-signs");
        assert_eq!(
            o["effectiveDateTime"].as_str().unwrap().len(),
            "2026-11-20T08:00:00.000Z".len()
        );
    }
    let panel = lines.iter().find(|o| codes(o) == "85354-9").unwrap();
    let components: BTreeSet<String> = panel["component"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"]["coding"][0]["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        components,
        BTreeSet::from(["8480-6".to_owned(), "8462-4".to_owned()])
    );

    // Patients are research's pseudonyms of the two subjects, nothing else.
    let key = NamingKey::new(b"research-key-1".to_vec());
    let patients: BTreeSet<String> = lines
        .iter()
        .map(|o| o["subject"]["reference"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = ["subject-adult-7", "subject-neo-3"]
        .iter()
        .map(|s| format!("Patient/{}", key.pseudonym(s)))
        .collect();
    assert_eq!(patients, expected);

    // Resource ids are unique, and a second export gives the same ids and patients.
    let ids: BTreeSet<String> = lines
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), lines.len());
    let (_, again) = export(&world, "research", "/fhir/$export").await;
    let ids_again: BTreeSet<String> = again
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ids_again);

    // No subject or device id in any exported file or audit record.
    let mut all_text = String::new();
    for k in world.objects.keys(EXPORTS) {
        all_text.push_str(std::str::from_utf8(&world.objects.get(EXPORTS, &k).unwrap()).unwrap());
        all_text.push_str(&k);
    }
    for (_, record) in world.audit.0.lock().unwrap().iter() {
        all_text.push_str(&record.to_string());
    }
    for secret in ["subject-adult-7", "subject-neo-3", "dev-adult", "dev-neo"] {
        assert!(!all_text.contains(secret), "{secret} leaked");
    }
    let events: Vec<String> = world
        .audit
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, r)| r["event"].as_str().map(str::to_owned))
        .collect();
    // Each kick-off on record before it took effect, each completion after.
    assert_eq!(
        events,
        [
            "export_kickoff",
            "export_completed",
            "export_kickoff",
            "export_completed"
        ]
    );
}

#[tokio::test]
async fn insurer_sees_only_its_cohort_window_and_years_and_never_research_jobs() {
    let world = World::new();
    let (manifest, lines) = export(
        &world,
        "insurer",
        "/fhir/$export?_typeFilter=Observation%3Fcode%3Dhttp%3A%2F%2Floinc.org%7C8867-4",
    )
    .await;
    // Adult subject, both days (inside the policy's years), heart rate only, year only.
    assert_eq!(lines.len(), 60);
    let key = NamingKey::new(b"insurer-key-1".to_vec());
    for o in &lines {
        assert_eq!(codes(o), "8867-4");
        assert_eq!(o["effectiveDateTime"], "2026");
        assert_eq!(
            o["subject"]["reference"],
            format!("Patient/{}", key.pseudonym("subject-adult-7"))
        );
    }
    assert_eq!(manifest["extension"]["deIdentification"], "safe_harbor");
    // What the policy withheld (its window, other cohorts) is in the manifest's errors.
    assert_eq!(manifest["error"][0]["count"], 2);
    assert_eq!(manifest["error"][0]["type"], "OperationOutcome");

    // A window that ends with 2025: accepted, and empty.
    let (_, early) = export(
        &world,
        "insurer",
        "/fhir/$export?_until=2026-01-01T00:00:00Z",
    )
    .await;
    assert!(early.is_empty());
    // A window inside a day is widened to its year, and the manifest says so.
    let (widened, same) = export(
        &world,
        "insurer",
        "/fhir/$export?_since=2026-11-21T08:00:00Z&_until=2026-11-21T08:00:01Z",
    )
    .await;
    assert_eq!(same.len(), 60);
    // The policy's years, the other cohorts, the other metrics, and the widening.
    assert_eq!(widened["error"][0]["count"], 4);

    // Research's export is invisible to the insurer: status, files and cancel.
    let api = world.api();
    let research = bearer(&api, "research").await;
    let kick = kick_off(&api, &research, "/fhir/$export").await;
    let status = status_path(&kick);
    world.drain().await;
    let insurer = bearer(&api, "insurer").await;
    assert_eq!(get(&api, &insurer, &status).await.status, 404);
    let research_manifest: serde_json::Value =
        serde_json::from_str(&get(&api, &research, &status).await.body).unwrap();
    let file_url = research_manifest["output"][0]["url"].as_str().unwrap();
    assert_eq!(
        get(&api, &insurer, &file_url[BASE.len()..]).await.status,
        404
    );
    let del = api
        .call(request(
            "DELETE",
            &status,
            &[("authorization", &insurer)],
            "",
        ))
        .await;
    assert_eq!(del.status, 404);
    assert_eq!(get(&api, &research, &status).await.status, 200);

    // One subject, two partners, two unlinkable pseudonyms.
    let r_key = NamingKey::new(b"research-key-1".to_vec());
    assert_ne!(
        r_key.pseudonym("subject-adult-7"),
        key.pseudonym("subject-adult-7")
    );
}

#[tokio::test]
async fn policy_denials_and_bad_tokens_never_give_data() {
    let world = World::new();
    let api = world.api();
    let insurer = bearer(&api, "insurer").await;
    // A metric or a cohort outside the policy: 403 at kick-off.
    for path in [
        "/fhir/$export?_typeFilter=Observation%3Fcode%3Dhttp%3A%2F%2Floinc.org%7C59408-5",
        "/fhir/Group/neonatal/$export",
    ] {
        let r = kick_off(&api, &insurer, path).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(r.body.contains("OperationOutcome"));
    }
    // Malformed parameters: 400.
    for path in [
        "/fhir/$export?_since=yesterday",
        "/fhir/$export?_type=Patient,Encounter",
        "/fhir/$export?_since=2026-11-22T00:00:00Z&_until=2026-11-21T00:00:00Z",
    ] {
        assert_eq!(kick_off(&api, &insurer, path).await.status, 400, "{path}");
    }
    // No token, a forged one, a tampered one: 401.
    assert_eq!(kick_off(&api, "", "/fhir/$export").await.status, 401);
    assert_eq!(
        kick_off(&api, "Bearer abc.def.ghi", "/fhir/$export")
            .await
            .status,
        401
    );
    let tampered = format!("{}x", insurer);
    assert_eq!(kick_off(&api, &tampered, "/fhir/$export").await.status, 401);

    // Token endpoint: forged key, replayed jti, unknown client.
    let forged = assertion(
        "research",
        "impostor-rs384.pem",
        Algorithm::RS384,
        "research-2026",
    );
    let r = token_response(&api, &forged).await;
    assert_eq!((r.status, r.body.contains("invalid_client")), (400, true));
    let once = assertion(
        "research",
        "research-rs384.pem",
        Algorithm::RS384,
        "research-2026",
    );
    assert_eq!(token_response(&api, &once).await.status, 200);
    let replay = token_response(&api, &once).await;
    assert_eq!(
        (replay.status, replay.body.contains("invalid_client")),
        (400, true)
    );
    let stranger = assertion(
        "stranger",
        "research-rs384.pem",
        Algorithm::RS384,
        "research-2026",
    );
    assert_eq!(token_response(&api, &stranger).await.status, 400);

    // A suspended partner: no token, and a token it holds stops working.
    world
        .partners
        .0
        .lock()
        .unwrap()
        .get_mut("insurer")
        .unwrap()
        .status = PartnerStatus::Suspended;
    assert_eq!(kick_off(&api, &insurer, "/fhir/$export").await.status, 403);
    let a = assertion(
        "insurer",
        "insurer-es384.pem",
        Algorithm::ES384,
        "insurer-2026",
    );
    assert_eq!(token_response(&api, &a).await.status, 400);
    assert!(
        world.queue.0.lock().unwrap().is_empty(),
        "no export was queued"
    );
    assert!(world.objects.keys(EXPORTS).is_empty());
    let _ = Mode::Limited;
}

#[tokio::test]
async fn a_retried_unit_adds_nothing_and_a_cancel_leaves_no_files() {
    let world = World::new();
    let api = world.api();
    let token = bearer(&api, "research").await;
    let kick = kick_off(&api, &token, "/fhir/$export").await;
    let status = status_path(&kick);
    let units = world.drain().await;
    // The first unit again, as after a worker died before deleting its message.
    let files_before = world.objects.keys(EXPORTS);
    let report = world.worker().run(&units[0], now()).await.unwrap();
    assert!(
        report.skipped,
        "the job is complete: a late retry keeps nothing"
    );
    assert_eq!(world.objects.keys(EXPORTS), files_before);

    let manifest: serde_json::Value =
        serde_json::from_str(&get(&api, &token, &status).await.body).unwrap();
    let total: u64 = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 144);

    // Cancel: 202, every file gone, later polls 404, a second cancel 404.
    let del = api
        .call(request("DELETE", &status, &[("authorization", &token)], ""))
        .await;
    assert_eq!(del.status, 202);
    assert!(world.objects.keys(EXPORTS).is_empty());
    assert_eq!(get(&api, &token, &status).await.status, 404);
    assert_eq!(
        api.call(request("DELETE", &status, &[("authorization", &token)], ""))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn a_unit_retried_while_the_job_runs_counts_once() {
    let world = World::new();
    let api = world.api();
    let token = bearer(&api, "research").await;
    let kick = kick_off(&api, &token, "/fhir/$export").await;
    let status = status_path(&kick);
    let bodies: Vec<String> = world.queue.0.lock().unwrap().clone();
    let units: Vec<WorkUnit> = bodies
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let worker = world.worker();
    // The first unit twice (a redelivery), then the rest.
    worker.run(&units[0], now()).await.unwrap();
    worker.run(&units[0], now()).await.unwrap();
    let running = get(&api, &token, &status).await;
    assert!(
        running
            .headers
            .iter()
            .any(|(k, v)| k == "x-progress" && v.starts_with("1 of "))
    );
    for u in &units[1..] {
        worker.run(u, now()).await.unwrap();
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&get(&api, &token, &status).await.body).unwrap();
    let total: u64 = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 144, "each reading once");
}

#[tokio::test]
async fn a_tombstoned_subject_is_never_exported_even_before_the_lake_is_rewritten() {
    let world = World::new();
    let (_, before) = export(&world, "research", "/fhir/$export").await;
    tombstone(&world, "subject-adult-7").await;
    let (manifest, after) = export(&world, "research", "/fhir/$export").await;
    let patients = |lines: &[serde_json::Value]| -> BTreeSet<String> {
        lines
            .iter()
            .map(|o| o["subject"]["reference"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(patients(&before).len(), 2);
    assert_eq!(patients(&after).len(), 1, "only the other subject");
    assert!(patients(&after).is_subset(&patients(&before)));
    assert_eq!(
        after.len() * 2,
        before.len(),
        "the two subjects have as many readings"
    );
    // The partner is told to delete what it holds of the erased subject (Art. 19).
    let gone: Vec<String> = patients(&before)
        .difference(&patients(&after))
        .cloned()
        .collect();
    let deleted = manifest["deleted"].as_array().unwrap();
    assert_eq!(deleted.len(), 1, "{manifest}");
    let url = deleted[0]["url"].as_str().unwrap();
    let api = world.api();
    let token = bearer(&api, "research").await;
    let file = get(&api, &token, &url[BASE.len()..]).await;
    assert_eq!(file.status, 307, "{}", file.body);
    let name = url.rsplit('/').next().unwrap();
    let body = world
        .objects
        .keys(EXPORTS)
        .into_iter()
        .find(|k| k.ends_with(name))
        .and_then(|k| world.objects.get(EXPORTS, &k))
        .unwrap();
    let bundle: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(bundle["type"], "transaction");
    assert_eq!(bundle["entry"][0]["request"]["method"], "DELETE");
    assert_eq!(
        bundle["entry"][0]["request"]["url"],
        format!("Observation?subject={}", gone[0])
    );
}
