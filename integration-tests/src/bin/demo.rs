//! `make demo`: the whole platform on this machine. Starts the local AWS stack,
//! streams a simulated device fleet through it and reports what happened.

use std::collections::BTreeMap;
use std::time::Instant;

use pulselake_domain::Reason;
use pulselake_local::compaction_scenario::{CompactionReport, run_compaction};
use pulselake_local::erasure_scenario::{ErasureReport, run_erasure};
use pulselake_local::migration_scenario::{
    DualRunReport, MigrationReport, run_dual_run, run_migration,
};
use pulselake_local::partner_scenario::{PartnerReport, run_partners};
use pulselake_local::proxy::FaultPlan;
use pulselake_local::scenario::{
    AlertReport, CatalogReport, FileScenarioReport, StreamReport, run_alerts, run_catalog,
    run_files, run_stream,
};
use pulselake_local::simulator::FleetConfig;
use pulselake_local::team_scenario::{TeamsReport, run_teams};
use pulselake_local::{LocalPlatform, Result};

fn n(v: usize) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn reasons(m: &BTreeMap<Reason, usize>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(r, c)| format!("{r} {}", n(*c)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn arg(name: &str, default: usize) -> usize {
    let flag = format!("--{name}=");
    std::env::args()
        .find_map(|a| a.strip_prefix(&flag).and_then(|v| v.parse().ok()))
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let started = Instant::now();
    let fleet = FleetConfig {
        devices: arg("devices", 200),
        sensors_per_device: arg("sensors", 30),
        fault_share: arg("faulty-percent", 2) as f64 / 100.0,
        ..FleetConfig::default()
    };
    let cycles = arg("cycles", 5);
    // Firehose misbehaves a little, as it does in production: per-record failures and throttling.
    let faults = FaultPlan {
        record_failure_rate: 0.02,
        throttle_every: 10,
        seed: 42,
    };

    println!("pulselake demo");
    let platform = LocalPlatform::start(Some(faults)).await?;
    println!(
        "  local AWS (moto) at {}, resources provisioned as in template.yaml",
        platform.moto.endpoint
    );
    println!(
        "  Firehose faults injected: {:.0}% of records refused, every {}th call throttled",
        faults.record_failure_rate * 100.0,
        faults.throttle_every
    );
    println!();
    println!(
        "Streaming: {} devices x {} sensors, {} reporting cycles, {}% faulty messages",
        fleet.devices,
        fleet.sensors_per_device,
        cycles,
        (fleet.fault_share * 100.0).round()
    );
    let report = run_stream(&platform, fleet.clone(), cycles, &mut |line| {
        println!("  {line}")
    })
    .await?;
    print_stream(&report);

    println!();
    println!("Files: uploads, a partner re-send, duplicates, bad rows and a bad file");
    let files = run_files(&platform, &mut |line| println!("  {line}")).await?;
    print_files(&files);

    println!();
    println!("Migration: the backfill reconciled with its source, per device and day");
    let migration = run_migration(&platform, &mut |line| println!("  {line}")).await?;
    print_migration(&migration);

    println!();
    println!(
        "Catalog: lake notifications -> catalog-sync -> Glue partitions; DuckDB reads the lake"
    );
    let catalog = run_catalog(&platform, &mut |line| println!("  {line}")).await?;
    print_catalog(&catalog, &report, &files);

    println!();
    println!("Alerts: vitals-alert reads the same stream with its own mapping; pages go to SNS");
    let alerts = run_alerts(&platform, arg("alert-patients", 40), &mut |line| {
        println!("  {line}")
    })
    .await?;
    print_alerts(&alerts);

    println!();
    println!(
        "Partners: SMART Backend Services tokens, FHIR Bulk Data export, deny-by-default policies"
    );
    let partners = run_partners(&platform, &mut |line| println!("  {line}")).await?;
    print_partners(&partners);

    println!();
    println!(
        "Teams: internal ML and BI teams query the lake through Lake Formation filters, no copies"
    );
    let teams = run_teams(&platform, &mut |line| println!("  {line}")).await?;
    print_teams(&teams);

    println!();
    println!("Compaction: each partition's files rewritten sorted by subject, then time");
    let compacted = run_compaction(&platform, &mut |line| println!("  {line}")).await?;
    print_compaction(&compacted);

    println!();
    println!("Erasure: one patient asks to be forgotten (GDPR Art. 17)");
    let erased = Box::pin(run_erasure(&platform, fleet, &mut |line| {
        println!("  {line}")
    }))
    .await?;
    print_erasure(&erased);

    println!();
    println!("Dual run: a legacy Kafka topic and the devices that moved to IoT Core, side by side");
    let dual = run_dual_run(&platform, &mut |line| println!("  {line}")).await?;
    print_dual_run(&dual);

    println!();
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    if !report.adds_up()
        || !files.adds_up()
        || !catalog.adds_up()
        || !alerts.adds_up()
        || !partners.adds_up()
        || !teams.adds_up()
        || !migration.adds_up()
        || !compacted.adds_up()
        || !erased.adds_up()
        || !dual.adds_up()
    {
        return Err("the counts do not add up: see above".into());
    }
    Ok(())
}

fn print_migration(r: &MigrationReport) {
    let ok = |b: bool| if b { "ok" } else { "MISMATCH" };
    println!();
    println!("Reconciliation (pulselake migrate reconcile: counts and a checksum of reading ids)");
    for line in &r.lines {
        println!("  {line}");
    }
    println!(
        "  check: the backfill matches its source on every device-day: {}; a reading the lake never got is named by device and day: {}",
        ok(r.matching.differences.is_empty()),
        ok(r.adds_up())
    );
}

fn print_dual_run(r: &DualRunReport) {
    let ok = |b: bool| if b { "ok" } else { "MISMATCH" };
    println!(
        "  lake rows of the legacy devices: {} from Kafka ({} + {} redelivered), {} from the stream; {} distinct reading ids",
        n(r.lake_rows_kafka),
        n(r.legacy_readings),
        n(r.redelivered_readings),
        n(r.lake_rows_stream),
        n(r.lake_distinct)
    );
    for line in &r.lines {
        println!("  {line}");
    }
    println!(
        "  check: every legacy reading in the lake, the overlap and the redelivery counted once, no Kafka record left to retry: {}",
        ok(r.adds_up())
    );
}

fn print_teams(r: &TeamsReport) {
    let ok = |b: bool| if b { "ok" } else { "MISMATCH" };
    println!();
    println!("Team environments (what each team sees, DuckDB through its compiled filter)");
    for (team, preview, expected) in &r.teams {
        for line in preview.lines(team) {
            println!("  {line}");
        }
        let seen: std::collections::BTreeMap<String, u64> =
            preview.metrics.iter().map(|m| (m.0.clone(), m.1)).collect();
        println!(
            "  the lake read directly under {team}'s policy: {} readings: {}",
            n(expected.values().sum::<u64>() as usize),
            ok(seen == *expected)
        );
    }
    for (what, why) in &r.refused {
        println!("  refused: {what}: {why}");
    }
    println!(
        "  Lake Formation grants {} (SELECT through each filter, DESCRIBE of database and table), workgroups {}, audit records {}: {}",
        r.grants,
        r.workgroups.join(", "),
        r.audit_records,
        ok(r.adds_up())
    );
    for line in &r.list {
        println!("  {line}");
    }
}

fn print_stream(r: &StreamReport) {
    let l = &r.ledger;
    println!();
    println!(
        "Stream ingestion ({} devices, {} of them ACME flat-format)",
        n(r.devices),
        n(r.acme_devices)
    );
    println!(
        "  readings sent        {:>9}  in {} messages, plus {} corrupt messages",
        n(l.readings),
        n(l.messages - l.corrupt_messages),
        n(l.corrupt_messages)
    );
    println!(
        "  in the lake          {:>9}  {} Parquet files in {} partitions (metric/year/month/day)",
        n(r.lake_distinct),
        n(r.lake_files),
        n(r.lake_partitions)
    );
    println!(
        "  quarantined          {:>9}  {}",
        n(r.quarantined()),
        reasons(&r.quarantined_by_reason)
    );
    println!(
        "  corrupt, quarantined {:>9}  {}",
        n(r.unreadable()),
        reasons(&r.unreadable_by_reason)
    );
    println!(
        "  retried              {:>9}  Firehose entries refused and resent; {} throttled calls retried; {} Kinesis records retried",
        n(r.firehose_refused),
        n(r.firehose_throttled),
        n(r.esm.records_retried)
    );
    println!(
        "  duplicates in lake   {:>9}",
        n(r.lake_rows - r.lake_distinct)
    );
    let ok = |b: bool| if b { "ok" } else { "MISMATCH" };
    let reason = |x: Reason| r.quarantined_by_reason.get(&x).copied().unwrap_or(0);
    println!(
        "  device trust         {:>9}  readings claiming another device than their publisher (device_mismatch): none in the lake or alerting",
        n(reason(Reason::DeviceMismatch))
    );
    println!(
        "  deactivated device   {:>9}  readings sent after `pulselake devices deactivate`, all quarantined (device_unassigned): {}",
        n(r.deactivated_readings),
        ok(r.deactivated_readings > 0
            && reason(Reason::DeviceUnassigned) == r.deactivated_readings)
    );
    println!(
        "  check: sent {} = lake {} + quarantined {}: {}; corrupt {} = quarantined unreadable {}: {}",
        n(l.readings),
        n(r.lake_distinct),
        n(r.quarantined()),
        ok(l.readings == r.lake_distinct + r.quarantined()),
        n(l.corrupt_messages),
        n(r.unreadable()),
        ok(l.corrupt_messages == r.unreadable())
    );
    if let Some(e) = &r.esm.last_error {
        println!("  last function error: {e}");
    }
}

fn print_files(r: &FileScenarioReport) {
    let ok = |b: bool| if b { "ok" } else { "MISMATCH" };
    let quarantined: usize = r.quarantined_rows.values().sum();
    let unique = r.rows_sent - r.duplicate_rows;
    println!();
    println!("File ingestion ({} uploads)", r.uploads);
    println!("  files ingested       {:>9}", n(r.files_ingested));
    println!(
        "  duplicates skipped   {:>9}  (same content under another name, or a file sent again)",
        n(r.duplicates_skipped)
    );
    println!(
        "  files quarantined    {:>9}  {}",
        n(r.files_quarantined.values().sum()),
        reasons(&r.files_quarantined)
    );
    println!(
        "  rows in the lake     {:>9}  (seed sample: {} heart-rate readings in metric=heart_rate/year=2020/month=10/day=12)",
        n(r.lake_distinct),
        n(r.seed_partition_rows)
    );
    println!(
        "  rows quarantined     {:>9}  {}",
        n(quarantined),
        reasons(&r.quarantined_rows)
    );
    println!(
        "  ops notifications    {:>9}  (by file reference, no patient data)",
        n(r.ops_notifications)
    );
    println!(
        "  check: rows in unique files {} = lake {} + quarantined {}: {}; no row twice in the lake: {}",
        n(unique),
        n(r.lake_distinct),
        n(quarantined),
        ok(unique == r.lake_distinct + quarantined),
        ok(r.lake_rows == r.lake_distinct)
    );
}

fn print_catalog(r: &CatalogReport, stream: &StreamReport, files: &FileScenarioReport) {
    let ok = |b: bool| if b { "ok" } else { "MISMATCH" };
    let listed = |v: &[pulselake_domain::Partition]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let duckdb_total: usize = r.duckdb_rows.values().sum();
    let reported = stream.lake_distinct + files.lake_distinct;
    println!();
    println!("Glue catalog and DuckDB");
    println!(
        "  notifications        {:>9}  ({} retried)",
        n(r.messages),
        n(r.messages_retried)
    );
    println!("  partitions created   {:>9}", n(r.partitions_created));
    println!(
        "  check: every lake partition ({}) has exactly one Glue partition and every Glue partition ({}) has data: {}",
        n(r.lake_partitions),
        n(r.glue_partitions),
        ok(r.missing.is_empty() && r.extra.is_empty())
    );
    if !r.missing.is_empty() || !r.extra.is_empty() {
        println!("    missing in Glue: {}", listed(&r.missing));
        println!("    Glue without data: {}", listed(&r.extra));
    }
    println!(
        "  DuckDB (hive_partitioning over the lake): {} rows; {}",
        n(duckdb_total),
        r.duckdb_rows
            .iter()
            .map(|(m, c)| format!("{m} {}", n(*c)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  check: DuckDB counts = lake per metric: {}; DuckDB total {} = streamed {} + files {}: {}",
        ok(r.lake_rows == r.duckdb_rows),
        n(duckdb_total),
        n(stream.lake_distinct),
        n(files.lake_distinct),
        ok(duckdb_total == reported)
    );
    println!(
        "  check: pyarrow reads all {} lake files whole, each with the lake's schema and its footer's row count: {}",
        n(r.pyarrow_files),
        ok(r.pyarrow_files > 0 && r.pyarrow_mismatches.is_empty())
    );
    for m in r.pyarrow_mismatches.iter().take(5) {
        println!("    {m}");
    }
}

fn print_alerts(r: &AlertReport) {
    let ok = |b: bool| if b { "ok" } else { "MISMATCH" };
    println!();
    println!("Alerting");
    println!(
        "  alerts raised        {:>9}  {} out-of-range episodes, {} paged",
        n(r.episode_pages + r.storm_pages),
        n(r.episodes),
        n(r.episode_pages)
    );
    println!(
        "  alert storm          {:>9}  page(s) for {} consecutive low-SpO2 readings of one patient",
        n(r.storm_pages),
        n(r.storm_readings)
    );
    println!(
        "  history              {:>9}  pages for {} out-of-range readings measured 2 h ago ({} evaluated, not paged)",
        n(r.backfill_pages),
        n(r.backfill_readings),
        n(r.suppressed)
    );
    println!(
        "  redelivery           {:>9}  pages after every record was delivered a second time",
        n(r.redelivery_pages)
    );
    println!(
        "  latency              p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms  (Kinesis put -> SNS -> subscriber queue, {} alerts)",
        r.percentile(50.0),
        r.percentile(99.0),
        r.percentile(100.0),
        r.latencies_ms.len()
    );
    println!(
        "  check: every episode paged once: {}; one page per storm: {}; history and redelivery never page: {}; no duplicate alert id, no device in a page: {}; p99 <= 500 ms: {}",
        ok(r.episode_pages == r.episodes),
        ok(r.storm_pages == 1),
        ok(r.backfill_pages == 0 && r.redelivery_pages == 0),
        ok(r.duplicate_ids == 0 && r.malformed == 0),
        ok(r.percentile(99.0) <= 500.0)
    );
}

fn print_partners(r: &PartnerReport) {
    let ok = |b: bool| if b { "ok" } else { "MISMATCH" };
    println!();
    println!("Partner access");
    for (name, e) in [("research", &r.research), ("insurer", &r.insurer)] {
        println!(
            "  {name:<9} {:>9} readings exported as {} FHIR Observations in {} file(s), {} pseudonyms, {} withheld-notice(s); the lake holds {} it may see",
            n(e.readings),
            n(e.resources),
            e.files,
            n(e.pseudonyms.len()),
            e.withheld_notices,
            n(e.expected)
        );
    }
    println!("  the insurer's manifest:");
    let manifest = serde_json::to_string_pretty(&r.insurer.manifest).unwrap_or_default();
    for line in manifest.lines() {
        println!("    {line}");
    }
    for (what, got, want) in &r.refusals {
        println!(
            "  refused   {got:>9}  {what}{}",
            if got == want { "" } else { "  (MISMATCH)" }
        );
    }
    println!(
        "  audit     {:>9}  records in the audit bucket (every token, kick-off, download, cancel)",
        n(r.audit_records)
    );
    println!(
        "  check: every granted reading exported once: {}; Safe Harbor years only, no day in any URL: {}; pseudonyms unlinkable across partners: {}; every refusal as the standard says: {}; a cancel leaves no file: {}; no subject or device id in files or audit: {}",
        ok(r.research.readings == r.research.expected && r.insurer.readings == r.insurer.expected),
        ok(r.insurer.years_only && r.insurer.dated_urls == 0),
        ok(r.research.pseudonyms.is_disjoint(&r.insurer.pseudonyms)),
        ok(r.refusals.iter().all(|(_, got, want)| got == want)),
        ok(r.cancelled_files_left == 0),
        ok(r.identifiers_leaked.is_empty())
    );
}

fn print_erasure(r: &ErasureReport) {
    let ok = |b: bool| if b { "ok" } else { "MISMATCH" };
    let e = &r.evidence;
    println!();
    println!("Erasure");
    println!("  request   {:>9}  {}", "", r.request_id);
    println!(
        "  removed   {:>9}  rows of the patient ({} in the lake before), from {} of {} lake files, each rewritten in place; {} earlier version(s) deleted (the local lake keeps none)",
        n(e.rows_removed as usize),
        n(r.subject_rows_before as usize),
        e.files_rewritten.len(),
        e.files_read,
        e.old_versions_deleted
    );
    println!(
        "  verified  {:>9}  partitions re-read ({} object versions): {} rows of the patient left, {} rewritten file(s) changed otherwise",
        e.verification.partitions,
        e.verification.object_versions_read,
        e.verification.subject_rows_left,
        e.verification.files_changed_otherwise
    );
    println!(
        "  others    {:>9}  rows unchanged (DuckDB count and checksum before and after)",
        n(r.others_after.0 as usize)
    );
    println!(
        "  alongside {:>9}  partition(s) compacted and {} Observations exported while the pass ran",
        r.compacted_during,
        n(r.exported_during)
    );
    println!(
        "  copies    {:>9}  Observations of the patient removed from research's export made before the request ({} left, manifest updated); {} record(s) from the stream's quarantine; {} alert state item(s), {} heartbeat(s)",
        n(r.earlier_export_resources.0 - r.earlier_export_resources.1),
        n(r.earlier_export_resources.1),
        e.stream_quarantine_records_removed,
        e.alert_states_removed,
        e.heartbeats_removed
    );
    println!(
        "  check: no row of the patient left (DuckDB): {}; every other row unchanged: {}; request done only after verification: {}; evidence audited without identifiers: {}; partner told to delete: {}; later readings refused: {}; the earlier export without the patient, its manifest true: {}; nothing in quarantine, alert state or heartbeats: {}",
        ok(r.subject_rows_after == 0 && e.rows_removed == r.subject_rows_before),
        ok(r.others_before == r.others_after),
        ok(e.verification.passed && e.completed),
        ok(r.evidence_audited_without_identifiers),
        ok(r.partner_deletions == 1 && !r.partner_still_sees_subject),
        ok(r.later_rows_in_lake == 0),
        ok(!r.earlier_export_still_holds_subject && r.earlier_export_matches_manifest),
        ok(r.stream_quarantine_after == 0 && r.traces_after == 0)
    );
}

fn print_compaction(r: &CompactionReport) {
    let ok = |b: bool| if b { "ok" } else { "MISMATCH" };
    println!();
    println!("Compaction");
    println!(
        "  files     {:>9}  lake files became {} in {} partitions",
        n(r.files_before),
        n(r.files_after),
        r.partitions
    );
    println!(
        "  check: the same {} rows (DuckDB count and checksum): {}; every file sorted by subject then time: {}; a second run changes nothing: {}; Glue keeps every partition: {}",
        n(r.lake_after.0 as usize),
        ok(r.lake_before == r.lake_after),
        ok(r.unsorted_files == 0),
        ok(r.second_run_no_ops == r.partitions),
        ok(r.glue_partitions_kept)
    );
}
