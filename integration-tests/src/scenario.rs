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
    stack.register_devices(&fleet.registry(now)).await?;
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
    let lake = inspect::lake(stack).await?;
    report.lake_rows = lake.rows.len();
    report.lake_distinct = lake.distinct_ids();
    report.lake_files = lake.files;
    report.lake_partitions = lake.partitions.len();
    let q = inspect::quarantine(stack, "stream/").await?;
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

/// Uploads a batch of files to staging and lets file-ingest take them through the queue.
pub async fn run_files(
    platform: &LocalPlatform,
    progress: &mut dyn FnMut(String),
) -> Result<FileScenarioReport> {
    use aws_sdk_s3::primitives::ByteStream;
    use pulselake_domain::time::parse_rfc3339_ms;
    let stack = &platform.stack;
    let since = parse_rfc3339_ms("2026-01-01T00:00:00Z").unwrap_or_default();
    let devices: Vec<DeviceRecord> = (0..20)
        .map(|d| DeviceRecord {
            device_id: format!("dev-file-{d:03}"),
            assignments: vec![Assignment {
                subject_id: format!("subj-f{d:03}"),
                valid_from: since,
                valid_to: None,
                cohort: None,
            }],
        })
        .collect();
    stack.register_devices(&devices).await?;
    stack
        .register_aliases(&[("seed:P1", "subj-5eed0001")])
        .await?;
    let lake_before = inspect::lake(stack).await?;
    let mut r = FileScenarioReport::default();

    // A partner's export of 20 devices x 6 hours of heart rate and SpO2, once a minute.
    let mut export = String::from("device_id,sensor_id,metric,value,unit,measured_at\n");
    let start = parse_rfc3339_ms("2026-11-01T00:00:00Z").unwrap_or_default();
    for d in &devices {
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
}

impl CatalogReport {
    pub fn adds_up(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.lake_rows == self.duckdb_rows
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
    let _ = std::fs::remove_dir_all(&dir);
    r.duckdb_rows = counted?;
    Ok(r)
}
