//! The streaming scenario shared by `make demo` and the integration tests: a fleet
//! publishes through IoT Core, the event source mapping feeds stream-ingest, Firehose
//! delivers, and the lake and quarantine are read back and reconciled with what was sent.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use pulselake_domain::{Assignment, DeviceRecord, Partition, Reason};

use crate::esm::{EsmStats, KinesisMapping, MappingConfig};
use crate::firehose::DeliveryStats;
use crate::simulator::{Fleet, FleetConfig, Ledger};
use crate::{LocalPlatform, Result, firehose, inspect, iot};

/// Everything the scenario observed.
#[derive(Debug, Default)]
pub struct StreamReport {
    pub ledger: Ledger,
    pub devices: usize,
    pub acme_devices: usize,
    pub cycles: usize,
    pub published: iot::Published,
    pub esm: EsmStats,
    pub delivery: DeliveryStats,
    pub lake_rows: usize,
    pub lake_distinct: usize,
    pub lake_files: usize,
    pub lake_partitions: usize,
    pub quarantined_by_reason: BTreeMap<Reason, usize>,
    pub unreadable_by_reason: BTreeMap<Reason, usize>,
    /// Firehose entries refused (and so resent by stream-ingest), and calls throttled.
    pub firehose_refused: usize,
    pub firehose_throttled: usize,
    /// Devices onboarded through the admin CLI's import.
    pub onboarded: usize,
    /// A device deactivated (certificates revoked, assignment ended) that kept sending:
    /// its readings sent afterwards, all quarantined as `device_unassigned`.
    pub deactivated_readings: usize,
}

impl StreamReport {
    pub fn quarantined(&self) -> usize {
        self.quarantined_by_reason.values().sum()
    }

    pub fn unreadable(&self) -> usize {
        self.unreadable_by_reason.values().sum()
    }

    /// Readings sent = in the lake + quarantined, corrupt messages = unreadable
    /// quarantine entries, and no reading twice in the lake.
    pub fn adds_up(&self) -> bool {
        self.ledger.readings == self.lake_distinct + self.quarantined()
            && self.ledger.corrupt_messages == self.unreadable()
            && self.lake_rows == self.lake_distinct
            && self.quarantined_by_reason == self.ledger.expected_quarantine
    }
}

/// Streams `cycles` reporting cycles of a fleet through the platform.
pub async fn run_stream(
    platform: &LocalPlatform,
    fleet_config: FleetConfig,
    cycles: usize,
    progress: &mut dyn FnMut(String),
) -> Result<StreamReport> {
    let stack = &platform.stack;
    let mut fleet = Fleet::new(fleet_config.clone());
    let now = stream_ingest::now_ms();
    let onboarded = crate::onboard::import(stack, &fleet.registry(now)).await?;
    progress(format!(
        "{onboarded} devices onboarded with `pulselake devices import`"
    ));
    let mut mapping = KinesisMapping::new(
        stack,
        platform.stream_ingest().await?,
        MappingConfig::default(),
    );
    let mut report = StreamReport {
        devices: fleet.devices.len(),
        acme_devices: fleet
            .devices
            .iter()
            .filter(|d| d.id.starts_with("ACME"))
            .count(),
        cycles,
        onboarded,
        ..StreamReport::default()
    };
    for c in 0..cycles {
        let at = now - ((cycles - c) as i64) * fleet_config.interval_s * 1000;
        let before = report.ledger.readings;
        let messages = fleet.cycle(at, &mut report.ledger);
        let published = iot::publish(stack, &messages).await?;
        report.published.routed += published.routed;
        report.published.refused += published.refused;
        mapping.drain().await?;
        let d = firehose::flush(stack).await?;
        report.delivery.raw_objects += d.raw_objects;
        report.delivery.readings += d.readings;
        report.delivery.parquet_files += d.parquet_files;
        report.delivery.conversion_errors += d.conversion_errors;
        progress(format!(
            "cycle {}/{cycles}: {} messages ({} readings) published, {} readings delivered to the lake",
            c + 1,
            messages.len(),
            report.ledger.readings - before,
            d.readings
        ));
    }
    report.esm = mapping.stats.clone();
    // One device is deactivated and keeps sending. A function container started after
    // the deactivation refuses it at once (warm ones within the registry cache's 5
    // minutes; in AWS its revoked certificate cannot even connect).
    if let Some(victim) = fleet.devices.first().map(|d| d.id.clone()) {
        crate::onboard::deactivate(stack, &victim, now - 5_000).await?;
        fleet.retire(&victim);
        let before = report.ledger.readings;
        let messages = fleet.cycle_of(&victim, now, &mut report.ledger);
        let sent = report.ledger.readings - before;
        report.deactivated_readings = sent;
        let published = iot::publish(stack, &messages).await?;
        report.published.routed += published.routed;
        let mut fresh = KinesisMapping::new(
            stack,
            platform.stream_ingest().await?,
            MappingConfig::default(),
        );
        fresh = fresh.resume_after(mapping.checkpoints());
        fresh.drain().await?;
        firehose::flush(stack).await?;
        progress(format!(
            "device {victim} deactivated with `pulselake devices deactivate`; it sent {sent} readings after"
        ));
    }
    let lake = inspect::lake(stack).await?;
    report.lake_rows = lake.rows.len();
    report.lake_distinct = lake.distinct_ids();
    report.lake_files = lake.files;
    report.lake_partitions = lake.partitions.len();
    let q = inspect::stream_quarantine(stack).await?;
    report.quarantined_by_reason = q.readings_by_reason();
    report.unreadable_by_reason = q.unreadable_by_reason();
    if let Some(p) = &platform.proxy {
        report.firehose_refused = p.stats.records_refused.load(Ordering::Relaxed);
        report.firehose_throttled = p.stats.throttled_calls.load(Ordering::Relaxed);
    }
    Ok(report)
}

// ---------------------------------------------------------------- files

/// What the file scenario uploaded and observed.
#[derive(Debug, Default)]
pub struct FileScenarioReport {
    pub uploads: usize,
    /// Rows (readings) in the files that were not rejected whole, as generated.
    pub rows_sent: usize,
    /// Of those, rows made bad on purpose, by the reason they must get.
    pub expected_bad: BTreeMap<Reason, usize>,
    /// Rows of files that are duplicates (their content is already in the lake).
    pub duplicate_rows: usize,
    pub files_ingested: usize,
    pub duplicates_skipped: usize,
    pub files_quarantined: BTreeMap<Reason, usize>,
    pub lake_rows: usize,
    pub lake_distinct: usize,
    pub quarantined_rows: BTreeMap<Reason, usize>,
    pub seed_partition_rows: usize,
    pub ops_notifications: usize,
}

impl FileScenarioReport {
    pub fn adds_up(&self) -> bool {
        let unique_rows = self.rows_sent - self.duplicate_rows;
        unique_rows == self.lake_distinct + self.quarantined_rows.values().sum::<usize>()
            && self.quarantined_rows == self.expected_bad
            && self.lake_rows == self.lake_distinct
    }
}

/// A partner's export of `devices` x 6 hours of heart rate and SpO2 on 1 November 2026,
/// once a minute, in the generic CSV layout (also the legacy source the demo reconciles).
pub fn partner_export(devices: &[DeviceRecord]) -> String {
    let mut export = String::from("device_id,sensor_id,metric,value,unit,measured_at\n");
    let start =
        pulselake_domain::time::parse_rfc3339_ms("2026-11-01T00:00:00Z").unwrap_or_default();
    for d in devices {
        for m in 0..360 {
            let at = pulselake_domain::time::format_rfc3339_ms(start + m * 60_000);
            export.push_str(&format!(
                "{},hr-0,heart_rate,{},/min,{at}\n",
                d.device_id,
                60 + m % 30
            ));
            export.push_str(&format!(
                "{},spo2-0,spo2,{},%,{at}\n",
                d.device_id,
                95 + m % 5
            ));
        }
    }
    export
}

/// The devices whose files the file scenario uploads.
pub fn file_devices() -> Vec<DeviceRecord> {
    let since =
        pulselake_domain::time::parse_rfc3339_ms("2026-01-01T00:00:00Z").unwrap_or_default();
    (0..20)
        .map(|d| DeviceRecord {
            device_id: format!("dev-file-{d:03}"),
            assignments: vec![Assignment {
                subject_id: format!("subj-f{d:03}"),
                valid_from: since,
                valid_to: None,
                cohort: None,
            }],
        })
        .collect()
}

/// Uploads a batch of files to staging and lets file-ingest take them through the queue.
pub async fn run_files(
    platform: &LocalPlatform,
    progress: &mut dyn FnMut(String),
) -> Result<FileScenarioReport> {
    use aws_sdk_s3::primitives::ByteStream;
    let stack = &platform.stack;
    let devices = file_devices();
    stack.register_devices(&devices).await?;
    stack
        .register_aliases(&[("seed:P1", "subj-5eed0001")])
        .await?;
    let lake_before = inspect::lake(stack).await?;
    let mut r = FileScenarioReport::default();

    let export = partner_export(&devices);
    let export_rows = devices.len() * 360 * 2;
    let mut bad = String::from("device_id,sensor_id,metric,value,unit,measured_at\n");
    bad.push_str("dev-file-000,hr-1,heart_rate,71,/min,2026-11-02T08:00:00Z\n");
    bad.push_str("dev-file-000,hr-1,heart_rate,420,/min,2026-11-02T08:01:00Z\n");
    bad.push_str("dev-file-000,hr-1,heart_rate,72,/min\n");
    bad.push_str("dev-file-000,hr-1,heart_rate,73,/min,yesterday\n");
    bad.push_str("dev-unknown,hr-1,heart_rate,74,/min,2026-11-02T08:04:00Z\n");
    bad.push_str("dev-file-001,glu-0,glucose,5.4,mmol/L,2026-11-02T08:05:00Z\n");
    let ndjson = (0..50)
        .map(|i| {
            format!(
                r#"{{"v":1,"device_id":"dev-file-002","readings":[{{"sensor_id":"t-0","metric":"body_temp","value":{},"unit":"[degF]","measured_at":"2026-11-03T10:{:02}:00Z"}}]}}"#,
                97.5 + (i % 3) as f64 * 0.5,
                i
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, ndjson.as_bytes())?;
    let seed = std::fs::read(
        crate::moto::workspace_root()
            .join("integration-tests/fixtures/seed-sample/P1.20201012.heart_rate.csv"),
    )?;

    let uploads: Vec<(&str, Vec<u8>)> = vec![
        ("seed/P1.20201012.heart_rate.csv", seed),
        ("csv/partner-a/2026-11-01.csv", export.clone().into_bytes()),
        ("csv/partner-b/resend-2026-11-01.csv", export.into_bytes()),
        ("csv/partner-a/2026-11-02-mixed.csv", bad.into_bytes()),
        ("ndjson/gateway-7/2026-11-03.jsonl.gz", gz.finish()?),
        ("csv/partner-c/export-semicolon.csv", b"device_id;sensor_id;metric;value;unit;measured_at\ndev-file-000;hr-0;heart_rate;70;/min;2026-11-01T00:00:00Z\n".to_vec()),
    ];
    r.rows_sent = 1440 + export_rows * 2 + 6 + 50;
    r.duplicate_rows = export_rows;
    r.expected_bad = BTreeMap::from([
        (Reason::OutOfRange, 1),
        (Reason::RaggedRow, 1),
        (Reason::InvalidTimestamp, 1),
        (Reason::UnknownDevice, 1),
    ]);
    r.uploads = uploads.len() + 1;
    let mut mapping = crate::sqs_esm::SqsMapping::new(
        stack.sqs.clone(),
        &stack.files_queue_url,
        platform.file_ingest().await?,
    );
    for (key, body) in &uploads {
        stack
            .s3
            .put_object()
            .bucket(&stack.names.staging_bucket)
            .key(*key)
            .body(ByteStream::from(body.clone()))
            .send()
            .await?;
    }
    progress(format!(
        "{} files uploaded to staging; file-ingest is taking them from the queue",
        uploads.len()
    ));
    mapping.drain(std::time::Duration::from_secs(120)).await?;
    // The partner re-sends yesterday's file under the same name: already ingested.
    let (key, body) = &uploads[1];
    stack
        .s3
        .put_object()
        .bucket(&stack.names.staging_bucket)
        .key(*key)
        .body(ByteStream::from(body.clone()))
        .send()
        .await?;
    r.rows_sent += export_rows;
    r.duplicate_rows += export_rows;
    progress("a partner re-sent a file it had already sent".into());
    mapping.drain(std::time::Duration::from_secs(60)).await?;

    r.files_ingested = platform.metric_total("file-ingest/FilesIngested") as usize;
    r.duplicates_skipped = (platform.metric_total("file-ingest/FilesDuplicate")
        + platform.metric_total("file-ingest/FilesAlreadyIngested"))
        as usize;
    let lake = inspect::lake(stack).await?;
    let before: std::collections::HashSet<_> =
        lake_before.rows.iter().map(|x| x.reading_id).collect();
    let files_rows: Vec<_> = lake
        .rows
        .iter()
        .filter(|x| x.source == pulselake_domain::Source::File && !before.contains(&x.reading_id))
        .collect();
    r.lake_rows = files_rows.len();
    r.lake_distinct = files_rows
        .iter()
        .map(|x| x.reading_id)
        .collect::<std::collections::HashSet<_>>()
        .len();
    r.seed_partition_rows = lake
        .partitions
        .iter()
        .filter(|(p, _)| p.to_string() == "metric=heart_rate/year=2020/month=10/day=12")
        .map(|(_, n)| *n)
        .sum();
    let q = inspect::quarantine(stack, "files/").await?;
    for e in &q.entries {
        match (e.reason, e.readings_total) {
            (Some(reason), None) => *r.files_quarantined.entry(reason).or_default() += 1,
            (Some(reason), Some(n)) => *r.quarantined_rows.entry(reason).or_default() += n,
            _ => {}
        }
    }
    let inbox = stack
        .sqs
        .receive_message()
        .queue_url(&stack.ops_inbox_url)
        .max_number_of_messages(10)
        .send()
        .await?;
    r.ops_notifications = inbox.messages().len();
    Ok(r)
}

/// What catalog-sync registered, checked against the lake, and what DuckDB reads.
#[derive(Debug, Default)]
pub struct CatalogReport {
    /// Lake notifications catalog-sync took from its queue.
    pub messages: usize,
    pub messages_retried: usize,
    pub partitions_created: usize,
    pub lake_partitions: usize,
    pub glue_partitions: usize,
    /// Lake partitions with data but no Glue partition.
    pub missing: Vec<Partition>,
    /// Glue partitions without data.
    pub extra: Vec<Partition>,
    /// Rows per metric as the lake holds them, and as DuckDB counts them.
    pub lake_rows: BTreeMap<String, usize>,
    pub duckdb_rows: BTreeMap<String, usize>,
    /// Lake files pyarrow read whole, and those whose schema or row count was off.
    pub pyarrow_files: usize,
    pub pyarrow_mismatches: Vec<String>,
}

impl CatalogReport {
    pub fn adds_up(&self) -> bool {
        self.missing.is_empty()
            && self.extra.is_empty()
            && self.lake_rows == self.duckdb_rows
            && self.pyarrow_mismatches.is_empty()
    }
}

/// Lets catalog-sync take every lake notification, then compares the catalog with the
/// lake partition by partition, and DuckDB's counts with the lake's.
pub async fn run_catalog(
    platform: &LocalPlatform,
    progress: &mut dyn FnMut(String),
) -> Result<CatalogReport> {
    let stack = &platform.stack;
    let mut mapping = crate::sqs_esm::SqsMapping::new(
        stack.sqs.clone(),
        &stack.catalog_queue_url,
        platform.catalog_sync().await?,
    );
    mapping.drain(std::time::Duration::from_secs(120)).await?;
    let mut r = CatalogReport {
        messages: mapping.stats.messages_done,
        messages_retried: mapping.stats.messages_retried,
        partitions_created: platform.metric_total("catalog-sync/PartitionsCreated") as usize,
        ..Default::default()
    };
    let lake = inspect::lake_partitions(stack).await?;
    let glue = inspect::glue_partitions(stack).await?;
    r.lake_partitions = lake.len();
    r.glue_partitions = glue.len();
    r.missing = lake.difference(&glue).copied().collect();
    r.extra = glue.difference(&lake).copied().collect();
    progress(format!(
        "catalog-sync took {} lake notifications; DuckDB is reading the lake",
        r.messages
    ));

    for (p, rows) in inspect::lake(stack).await?.partitions {
        *r.lake_rows.entry(p.metric.name().to_owned()).or_default() += rows;
    }
    let dir = std::env::temp_dir().join(format!(
        "pulselake-lake-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    inspect::export_lake(stack, &dir).await?;
    let counted = if r.lake_rows.is_empty() {
        Ok(BTreeMap::new())
    } else {
        crate::duckdb::rows_per_metric(&dir)
    };
    let read = crate::pyarrow::read_all(&dir);
    if let Ok(files) = &read {
        r.pyarrow_files = files.len();
        r.pyarrow_mismatches = crate::pyarrow::mismatches(&dir, files);
    }
    let _ = std::fs::remove_dir_all(&dir);
    r.duckdb_rows = counted?;
    read?;
    Ok(r)
}

/// What the alerting scenario sent and what the pager (the alerts topic's subscriber
/// queue) received.
#[derive(Debug, Default)]
pub struct AlertReport {
    /// Out-of-range episodes of different patients and rules, each a page.
    pub episodes: usize,
    /// Pages for those episodes that reached the subscriber.
    pub episode_pages: usize,
    /// One patient in distress: many breaching readings, and the pages they caused.
    pub storm_readings: usize,
    pub storm_pages: usize,
    /// Pages that appeared after the whole stream was delivered to vitals-alert again.
    pub redelivery_pages: usize,
    /// Breaching readings measured hours ago (a device catching up), and their pages.
    pub backfill_readings: usize,
    pub backfill_pages: usize,
    pub suppressed: usize,
    /// Kinesis put -> message at the subscriber, per episode, in ms.
    pub latencies_ms: Vec<f64>,
    /// Alert ids received more than once.
    pub duplicate_ids: usize,
    /// Pages whose body names a device, or that lack the filtering attributes.
    pub malformed: usize,
}

impl AlertReport {
    pub fn percentile(&self, p: f64) -> f64 {
        let mut v = self.latencies_ms.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    pub fn adds_up(&self) -> bool {
        self.episode_pages == self.episodes
            && self.storm_pages == 1
            && self.redelivery_pages == 0
            && self.backfill_pages == 0
            && self.suppressed >= self.backfill_readings
            && self.duplicate_ids == 0
            && self.malformed == 0
    }
}

/// The pager's view: alerts delivered to the subscriber queue.
struct Pager {
    seen: std::collections::HashSet<String>,
    duplicates: usize,
    malformed: usize,
}

impl Pager {
    /// Takes what has arrived, waiting up to `wait` for at least `want` pages.
    async fn take(
        &mut self,
        stack: &crate::Stack,
        want: usize,
        wait: std::time::Duration,
    ) -> Result<Vec<pulselake_domain::alerting::Alert>> {
        let start = std::time::Instant::now();
        let mut got = Vec::new();
        loop {
            let out = stack
                .sqs
                .receive_message()
                .queue_url(&stack.alerts_inbox_url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .send()
                .await?;
            for m in out.messages() {
                let body = m.body().unwrap_or_default();
                let attrs = m.message_attributes();
                let filterable = ["severity", "metric", "rule"]
                    .iter()
                    .all(|k| attrs.is_some_and(|a| a.contains_key(*k)));
                match serde_json::from_str::<pulselake_domain::alerting::Alert>(body) {
                    Ok(alert) if filterable && !body.contains("dev-") => {
                        if !self.seen.insert(alert.alert_id.clone()) {
                            self.duplicates += 1;
                        }
                        got.push(alert);
                    }
                    _ => self.malformed += 1,
                }
                stack
                    .sqs
                    .delete_message()
                    .queue_url(&stack.alerts_inbox_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await?;
            }
            if got.len() >= want || start.elapsed() >= wait {
                return Ok(got);
            }
            if out.messages().is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
    }
}

fn vitals_message(
    device: &str,
    sensor: &str,
    metric: &str,
    value: f64,
    unit: &str,
    at: i64,
) -> (String, Vec<u8>) {
    let msg = serde_json::json!({"v": 1, "device_id": device, "message_id": format!("{device}-{sensor}-{at}"),
        "sent_at": pulselake_domain::time::format_rfc3339_ms(crate::invoke_now_ms()),
        "readings": [{"sensor_id": sensor, "metric": metric, "value": value, "unit": unit,
                      "measured_at": pulselake_domain::time::format_rfc3339_ms(at)}]});
    (iot::topic_for(device), msg.to_string().into_bytes())
}

/// Out-of-range vitals published through the stream to vitals-alert, a second consumer
/// with its own event source mapping; the pages are read where a pager would get them.
pub async fn run_alerts(
    platform: &LocalPlatform,
    patients: usize,
    progress: &mut dyn FnMut(String),
) -> Result<AlertReport> {
    use std::time::{Duration, Instant};
    let stack = &platform.stack;
    let now = crate::invoke_now_ms;
    let since = now() - 86_400_000;
    let device = |i: usize| format!("dev-alert-{i:03}");
    let devices: Vec<DeviceRecord> = (0..patients + 2)
        .map(|i| DeviceRecord {
            device_id: device(i),
            assignments: vec![Assignment {
                subject_id: format!("subj-a{i:04}"),
                valid_from: since,
                valid_to: None,
                cohort: None,
            }],
        })
        .collect();
    stack.register_devices(&devices).await?;
    let alert_mapping = || MappingConfig {
        batch_size: 100,
        function_name: "vitals-alert".into(),
        ..MappingConfig::default()
    };
    // As in template.yaml, alerting starts at the stream's end (old records page nobody).
    let mut mapping = KinesisMapping::new(stack, platform.vitals_alert().await?, alert_mapping())
        .at_latest()
        .await?;
    let start = mapping.checkpoints();
    let mut pager = Pager {
        seen: Default::default(),
        duplicates: 0,
        malformed: 0,
    };
    let mut r = AlertReport::default();

    // Episodes: each patient's heart rate and temperature go out of range, live.
    for i in 0..patients {
        for (sensor, metric, value, unit) in [
            ("hr-0", "heart_rate", 152.0, "/min"),
            ("t-0", "body_temp", 39.6, "Cel"),
        ] {
            let msg = vitals_message(&device(i), sensor, metric, value, unit, now() - 1_000);
            let t = Instant::now();
            iot::publish(stack, &[msg]).await?;
            mapping.drain().await?;
            let pages = pager.take(stack, 1, Duration::from_secs(5)).await?;
            r.latencies_ms.push(t.elapsed().as_secs_f64() * 1e3);
            r.episodes += 1;
            r.episode_pages += pages.len();
        }
    }
    progress(format!(
        "{} episodes of {} patients paged; now one patient in distress",
        r.episodes, patients
    ));

    // A storm: one patient's SpO2 stays low for 20 readings in a row.
    let storm = device(patients);
    let t0 = now() - 60_000;
    let storm_msgs: Vec<_> = (0..20)
        .map(|k| vitals_message(&storm, "spo2-0", "spo2", 84.0, "%", t0 + k * 3_000))
        .collect();
    r.storm_readings = storm_msgs.len();
    iot::publish(stack, &storm_msgs).await?;
    mapping.drain().await?;
    r.storm_pages = pager
        .take(stack, 2, Duration::from_millis(500))
        .await?
        .len();

    // History: a device uploads its buffer of two hours ago, out of range.
    let late = device(patients + 1);
    let old = now() - 2 * 3_600_000;
    let backlog: Vec<_> = (0..10)
        .map(|k| vitals_message(&late, "hr-0", "heart_rate", 160.0, "/min", old + k * 30_000))
        .collect();
    r.backfill_readings = backlog.len();
    iot::publish(stack, &backlog).await?;
    mapping.drain().await?;
    r.backfill_pages = pager
        .take(stack, 1, Duration::from_millis(500))
        .await?
        .len();
    r.suppressed = platform.metric_total("vitals-alert/AlertsSuppressed") as usize;

    // Lambda delivers everything again (a new container, from where the mapping started).
    progress("everything vitals-alert received is delivered to it a second time".into());
    let mut again = KinesisMapping::new(stack, platform.vitals_alert().await?, alert_mapping())
        .resume_after(start);
    again.drain().await?;
    r.redelivery_pages = pager
        .take(stack, 1, Duration::from_millis(500))
        .await?
        .len();
    r.duplicate_ids = pager.duplicates;
    r.malformed = pager.malformed;
    Ok(r)
}
