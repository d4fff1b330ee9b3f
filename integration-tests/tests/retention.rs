//! Retention with time travel on the local stack: four years of measurement dates, all
//! of it uploaded today (a backfill), catalogued in Glue. On 2026-11-30 the lake keeps
//! measurements from 2023-11-30 on, in S3 and in Glue (exact partition sets); a dry run
//! changes nothing; an interrupted run resumes and ends the same; a second run is a
//! no-op; every run leaves its report in the audit store.

use std::borrow::Cow;
use std::collections::BTreeSet;

use pulselake_adapters::{Catalog, GlueCatalog};
use pulselake_domain::time::{DAY_MS, parse_rfc3339_ms};
use pulselake_domain::{Metric, Partition, Reading, ReadingId, Source};
use pulselake_lake::{FileLayout, encode_readings};
use pulselake_local::{LocalPlatform, inspect};

fn reading(metric: Metric, at: i64, i: i64) -> Reading<'static> {
    Reading {
        reading_id: ReadingId::derive("dev-1", "s-0", metric, at + i),
        subject_id: Cow::Borrowed("subj-1"),
        device_id: Cow::Borrowed("dev-1"),
        sensor_id: Cow::Borrowed("s-0"),
        metric,
        value: 90.0,
        measured_at: at + i,
        received_at: at + i + 1000,
        source: Source::File,
        source_ref: Cow::Borrowed("backfill"),
        cohort: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lake_keeps_three_years_by_measurement_date_in_s3_and_glue() {
    let p = LocalPlatform::start(None).await.unwrap();
    let s = &p.stack;
    let first = parse_rfc3339_ms("2022-12-01T08:00:00Z").unwrap();
    let today = parse_rfc3339_ms("2026-11-30T03:15:00Z").unwrap();
    let cutoff = parse_rfc3339_ms("2023-11-30T00:00:00Z").unwrap();
    let mut all = BTreeSet::new();
    let mut at = first;
    while at < today {
        for metric in [Metric::HeartRate, Metric::Spo2] {
            let part = Partition::of(metric, at);
            let rows: Vec<Reading> = (0..3).map(|i| reading(metric, at, i)).collect();
            for f in 0..2 {
                s.s3.put_object()
                    .bucket(&s.names.lake_bucket)
                    .key(format!("readings/{part}/backfill-{f}.parquet"))
                    .body(
                        encode_readings(&rows, FileLayout::default())
                            .unwrap()
                            .into(),
                    )
                    .send()
                    .await
                    .unwrap();
            }
            all.insert(part);
        }
        at += 9 * DAY_MS;
    }
    // Both sides of the cut-off day itself.
    for day in ["2023-11-29T23:59:59Z", "2023-11-30T00:00:00Z"] {
        let t = parse_rfc3339_ms(day).unwrap();
        let part = Partition::of(Metric::HeartRate, t);
        s.s3.put_object()
            .bucket(&s.names.lake_bucket)
            .key(format!("readings/{part}/edge.parquet"))
            .body(
                encode_readings(&[reading(Metric::HeartRate, t, 0)], FileLayout::default())
                    .unwrap()
                    .into(),
            )
            .send()
            .await
            .unwrap();
        all.insert(part);
    }
    let glue = GlueCatalog::from_config(&s.sdk, &s.names.glue_database, &s.names.glue_table);
    let parts: Vec<Partition> = all.iter().copied().collect();
    for chunk in parts.chunks(100) {
        assert!(glue.create_partitions(chunk).await.unwrap().is_empty());
    }
    let kept: BTreeSet<Partition> = all
        .iter()
        .filter(|p| p.date.start_epoch_ms() >= cutoff)
        .copied()
        .collect();
    let expired = all.len() - kept.len();
    assert!(expired > 80 && kept.len() > 200, "{expired} {}", kept.len());
    assert_eq!(inspect::lake_partitions(s).await.unwrap(), all);

    let job = p.retention().await;
    let dry = job.run(today, true, || true).await.unwrap();
    assert_eq!(dry.partitions_expired, expired);
    assert_eq!(
        dry.object_versions,
        2 * expired - 1,
        "two files each, one edge file"
    );
    assert_eq!(
        inspect::lake_partitions(s).await.unwrap(),
        all,
        "a dry run deletes nothing"
    );
    assert_eq!(inspect::glue_partitions(s).await.unwrap(), all);

    // Stopped after 40 partitions (as at a Lambda deadline), then resumed.
    let mut budget = 40;
    let first_run = job
        .run(today, false, || {
            budget -= 1;
            budget >= 0
        })
        .await
        .unwrap();
    assert!(!first_run.complete && first_run.partitions_removed == 40);
    let resumed = job.run(today, false, || true).await.unwrap();
    assert!(
        resumed.complete && resumed.failures.is_empty(),
        "{resumed:?}"
    );
    assert_eq!(resumed.partitions_removed, expired - 40);
    assert_eq!(resumed.cutoff, "2023-11-30");

    assert_eq!(inspect::lake_partitions(s).await.unwrap(), kept);
    assert_eq!(inspect::glue_partitions(s).await.unwrap(), kept);
    let versions =
        s.s3.list_object_versions()
            .bucket(&s.names.lake_bucket)
            .prefix("readings/")
            .send()
            .await
            .unwrap();
    let left: BTreeSet<Partition> = versions
        .versions()
        .iter()
        .filter_map(|v| Partition::from_object_key(v.key().unwrap_or_default()))
        .collect();
    assert_eq!(left, kept, "no version of an expired file remains");

    let again = job.run(today, false, || true).await.unwrap();
    assert_eq!((again.partitions_expired, again.object_versions), (0, 0));
    let reports = inspect::list_keys(s, &s.names.audit_bucket, "records/kind=retention/")
        .await
        .unwrap();
    assert_eq!(
        reports.len(),
        4,
        "dry, interrupted, resumed, no-op: each reported"
    );
}
