//! The stream's quarantine: records stream-ingest rejected (a value out of range, a unit
//! it does not know) keep their payload, and so the device that sent them, for as long as
//! the lake keeps readings. A record is the subject's when it names one of their
//! devices (as a whole token) and arrived while that device was theirs. One unit of a
//! pass per quarantine day rewrites that day's reports without those records (over the
//! version read; earlier versions deleted; a report left empty goes).

use base64::Engine;
use pulselake_adapters::{
    DevicePeriod, ObjectReader, ObjectUploads, ObjectWriter, VersionedObjects,
};
use pulselake_domain::time::parse_rfc3339_ms;

use crate::error::ErasureError;
use crate::raw::names;
use crate::versions::{Bucket, NewVersion};

/// A day of the stream's quarantine cleared of the subjects' records: (reports
/// rewritten, records removed).
pub async fn clear_stream_day<O>(
    quarantine: &Bucket<'_, O>,
    day: &str,
    periods: &[DevicePeriod],
) -> Result<(usize, usize), ErasureError>
where
    O: ObjectReader + ObjectWriter + VersionedObjects + ObjectUploads,
{
    let (mut files, mut removed) = (0, 0);
    if periods.is_empty() {
        return Ok((files, removed));
    }
    for key in quarantine.objects.list(quarantine.name, day).await? {
        if !key.ends_with(".ndjson") {
            continue;
        }
        let versions = quarantine.versions_of(&key).await?;
        let Some(current) = versions.iter().find(|v| v.latest && !v.delete_marker) else {
            continue;
        };
        let body = quarantine
            .objects
            .open(quarantine.name, &key, current.version_id.as_deref())
            .await?
            .bytes()
            .await?;
        let (kept, n) = without_the_subjects(&body, periods);
        if n == 0 {
            continue;
        }
        files += 1;
        removed += n;
        let replaced = !kept.is_empty();
        if replaced {
            NewVersion::new(
                quarantine.objects,
                quarantine.name,
                &key,
                "application/x-ndjson",
                usize::MAX,
            )
            .commit(kept, current.etag.as_deref().unwrap_or_default())
            .await?;
        }
        quarantine.delete_old(versions, replaced).await?;
    }
    Ok((files, removed))
}

/// A report's lines without the records of the subjects' devices while theirs.
pub fn without_the_subjects(report: &[u8], periods: &[DevicePeriod]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(report.len());
    let mut removed = 0;
    for line in report.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        // Read leniently (the fields used), so an entry of any version is judged.
        let entry: Option<serde_json::Value> = serde_json::from_slice(line).ok();
        let theirs = entry.as_ref().is_some_and(|e| {
            let payload: Vec<u8> = match (e["payload"].as_str(), e["payload_base64"].as_str()) {
                (Some(text), _) => text.as_bytes().to_vec(),
                (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap_or_default(),
                (None, None) => Vec::new(),
            };
            let at = e["received_at"].as_str().and_then(parse_rfc3339_ms);
            periods.iter().any(|p| {
                names(&payload, p.device_id.as_bytes()) && at.is_none_or(|at| p.covers(at))
            })
        });
        if theirs {
            removed += 1;
        } else {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    (out, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_s_records_go_only_while_it_was_the_subject_s() {
        let entry = |payload: &str, at: &str| {
            serde_json::json!({"source": "stream", "reference": "shard:1", "received_at": at,
                "reason": "out_of_range", "payload": payload})
            .to_string()
        };
        let from = parse_rfc3339_ms("2026-11-01T00:00:00Z").unwrap();
        let to = parse_rfc3339_ms("2026-11-10T00:00:00Z").unwrap();
        let report = [
            entry(r#"{"device_id":"dev-7","v":1}"#, "2026-11-05T00:00:00Z"),
            entry(r#"{"device_id":"dev-7","v":1}"#, "2026-11-12T00:00:00Z"),
            entry(r#"{"device_id":"dev-70","v":1}"#, "2026-11-05T00:00:00Z"),
        ]
        .join("\n");
        let periods = [DevicePeriod {
            device_id: "dev-7".into(),
            from,
            to: Some(to),
        }];
        let (kept, removed) = without_the_subjects(report.as_bytes(), &periods);
        assert_eq!(removed, 1, "the record while dev-7 was theirs");
        let kept = String::from_utf8(kept).unwrap();
        assert!(
            kept.contains("2026-11-12") && kept.contains("dev-70"),
            "{kept}"
        );
    }
}
