//! A reading has one identity whatever path it takes: the same readings streamed by a
//! device, uploaded as CSV and uploaded as NDJSON land with the same reading ids.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use pulselake_domain::time::format_rfc3339_ms;
use pulselake_domain::{Assignment, DeviceRecord, ReadingId, Source};
use pulselake_local::esm::{KinesisMapping, MappingConfig};
use pulselake_local::sqs_esm::SqsMapping;
use pulselake_local::{LocalPlatform, firehose, inspect, invoke_now_ms, iot};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_readings_by_stream_csv_and_ndjson_have_the_same_ids() {
    let p = LocalPlatform::start(None).await.unwrap();
    let s = &p.stack;
    let now = invoke_now_ms();
    s.register_devices(&[DeviceRecord {
        device_id: "dev-000001".into(),
        assignments: vec![Assignment {
            subject_id: "subj-1".into(),
            valid_from: now - 86_400_000,
            valid_to: None,
            cohort: None,
        }],
    }])
    .await
    .unwrap();
    // A pulse oximeter: heart rate and SpO2 from one sensor id at one instant.
    let at = format_rfc3339_ms(now - 600_000);
    let message = serde_json::json!({"v": 1, "device_id": "dev-000001", "readings": [
        {"sensor_id": "ox-0", "metric": "heart_rate", "value": 72, "unit": "/min", "measured_at": at},
        {"sensor_id": "ox-0", "metric": "spo2", "value": 97, "unit": "%", "measured_at": at}]})
    .to_string();

    iot::publish(
        s,
        &[(iot::topic_for("dev-000001"), message.clone().into_bytes())],
    )
    .await
    .unwrap();
    let mut stream = KinesisMapping::new(
        s,
        p.stream_ingest().await.unwrap(),
        MappingConfig::default(),
    );
    stream.drain().await.unwrap();
    firehose::flush(s).await.unwrap();

    let csv = format!(
        "device_id,sensor_id,metric,value,unit,measured_at\n\
         dev-000001,ox-0,heart_rate,72,/min,{at}\n\
         dev-000001,ox-0,spo2,97,%,{at}\n"
    );
    for (key, body) in [
        ("csv/oximeter.csv", csv),
        ("ndjson/oximeter.ndjson", message),
    ] {
        s.s3.put_object()
            .bucket(&s.names.staging_bucket)
            .key(key)
            .body(ByteStream::from(body.into_bytes()))
            .send()
            .await
            .unwrap();
    }
    let mut files = SqsMapping::new(
        s.sqs.clone(),
        &s.files_queue_url,
        p.file_ingest().await.unwrap(),
    );
    files.drain(Duration::from_secs(60)).await.unwrap();

    let lake = inspect::lake(s).await.unwrap();
    let ids = |keep: &dyn Fn(&pulselake_domain::Reading) -> bool| -> BTreeSet<ReadingId> {
        lake.rows
            .iter()
            .filter(|r| keep(r))
            .map(|r| r.reading_id)
            .collect()
    };
    let streamed = ids(&|r| r.source == Source::Stream);
    let files: Vec<BTreeSet<ReadingId>> = lake
        .rows
        .iter()
        .filter(|r| r.source == Source::File)
        .map(|r| {
            r.source_ref
                .split(':')
                .nth(1)
                .unwrap_or_default()
                .to_owned()
        })
        .collect::<BTreeSet<String>>()
        .into_iter()
        .map(|file| ids(&|r| r.source == Source::File && r.source_ref.contains(&file)))
        .collect();
    assert_eq!(streamed.len(), 2, "both metrics of the one sensor landed");
    assert_eq!(files.len(), 2, "the CSV and the NDJSON file");
    for f in &files {
        assert_eq!(f, &streamed, "file ids = stream ids");
    }
    assert_eq!(
        lake.rows.len(),
        6,
        "each path's rows are kept (at least once delivery)"
    );
}
