//! The streaming scenario shared by `make demo` and the integration tests: a fleet
//! publishes through IoT Core, the event source mapping feeds stream-ingest, Firehose
//! delivers, and the lake and quarantine are read back and reconciled with what was sent.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use pulselake_domain::Reason;

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
