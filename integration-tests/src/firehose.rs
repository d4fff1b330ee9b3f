//! Firehose delivery, for the local stack. moto's Firehose writes each PutRecordBatch
//! as one raw object; AWS would instead buffer, de-aggregate the JSON lines, partition
//! them with the delivery stream's JQ query (`metric`, and the UTC year/month/day of
//! `measured_at`), convert to Parquet with the Glue table's schema and write under
//! `readings/metric=/year=/month=/day=/`. This does the same, so the local lake is
//! laid out like the one in AWS. Lines that fail conversion go to the error prefix.

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::ByteStream;
use pulselake_domain::{Partition, Reading};
use pulselake_lake::ParquetWriter;

use crate::Result;
use crate::provision::Stack;

const RAW_PREFIX: &str = "raw/";
/// `ErrorOutputPrefix` in `template.yaml`.
pub const ERROR_PREFIX: &str = "errors/";

#[derive(Debug, Default, Clone, PartialEq)]
pub struct DeliveryStats {
    pub raw_objects: usize,
    pub readings: usize,
    pub parquet_files: usize,
    pub conversion_errors: usize,
}

/// One record line as Firehose's format conversion reads it: by the Glue table's
/// column names ([`pulselake_lake::COLUMNS`]), each of the column's type, plus the
/// `metric` partition key. A missing or mistyped column fails the line, as in AWS.
fn convert(line: &[u8]) -> std::result::Result<Reading<'static>, String> {
    let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let fields = v.as_object().ok_or("the record is not a JSON object")?;
    for c in pulselake_lake::COLUMNS {
        let ok = match (fields.get(c.name), c.glue_type) {
            (None | Some(serde_json::Value::Null), _) => c.nullable,
            (Some(x), "string") => x.is_string(),
            (Some(x), "double") => x.is_number(),
            (Some(x), "timestamp") => x.is_i64(),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "column {} is missing or not a {}",
                c.name, c.glue_type
            ));
        }
    }
    serde_json::from_slice::<Reading>(line)
        .map(Reading::into_owned)
        .map_err(|e| e.to_string())
}

/// Delivers everything buffered so far (a buffer-interval flush).
pub async fn flush(stack: &Stack) -> Result<DeliveryStats> {
    let mut stats = DeliveryStats::default();
    let keys =
        crate::inspect::list_keys(stack, &stack.names.firehose_buffer_bucket, RAW_PREFIX).await?;
    if keys.is_empty() {
        return Ok(stats);
    }
    let mut by_partition: BTreeMap<Partition, Vec<Reading<'static>>> = BTreeMap::new();
    let mut errors = Vec::new();
    for key in &keys {
        let body =
            crate::inspect::get_bytes(stack, &stack.names.firehose_buffer_bucket, key).await?;
        stats.raw_objects += 1;
        for line in body
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        {
            match convert(line) {
                Ok(r) => {
                    let p = Partition::of(r.metric, r.measured_at);
                    by_partition.entry(p).or_default().push(r.into_owned());
                }
                Err(e) => errors.push(
                    serde_json::json!({"errorCode": "DataFormatConversion.ParseError",
                    "errorMessage": e.to_string(), "rawData": String::from_utf8_lossy(line)}),
                ),
            }
        }
    }
    let batch_id = format!("{:016x}", fastrand::u64(..));
    for (partition, readings) in &by_partition {
        let mut w = ParquetWriter::new(Vec::new());
        for r in readings {
            w.write(r);
        }
        let (bytes, rows) = w.finish()?;
        let key = format!(
            "readings/{partition}/{}-1-{batch_id}.parquet",
            stack.names.delivery_stream
        );
        put(stack, &stack.names.lake_bucket, &key, bytes).await?;
        stats.readings += rows as usize;
        stats.parquet_files += 1;
    }
    if !errors.is_empty() {
        stats.conversion_errors = errors.len();
        let body: Vec<u8> = errors
            .iter()
            .flat_map(|e| format!("{e}\n").into_bytes())
            .collect();
        let key = format!("{ERROR_PREFIX}format-conversion-failed/{batch_id}");
        put(stack, &stack.names.lake_bucket, &key, body).await?;
    }
    for key in &keys {
        stack
            .s3
            .delete_object()
            .bucket(&stack.names.firehose_buffer_bucket)
            .key(key)
            .send()
            .await?;
    }
    Ok(stats)
}

async fn put(stack: &Stack, bucket: &str, key: &str, body: Vec<u8>) -> Result<()> {
    stack
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await?;
    Ok(())
}
