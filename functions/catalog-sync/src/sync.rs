//! From S3 notifications of the lake bucket to Glue partitions.
//!
//! A batch is coalesced to its distinct partitions first: a busy day brings hundreds of
//! files per partition, and Glue needs to hear of each partition once. Creating is
//! idempotent (`AlreadyExistsException` is success), so redelivered messages, many
//! containers and concurrent batches all converge on exactly one partition.

use std::collections::{BTreeMap, BTreeSet};

use pulselake_adapters::glue::{MAX_DELETES_PER_CALL, MAX_PARTITIONS_PER_CALL};
use pulselake_adapters::s3_events::{ChangeKind, Changes, parse_changes};
use pulselake_adapters::{ALREADY_EXISTS, AwsError, Catalog, NOT_FOUND, ObjectReader};
use pulselake_domain::Partition;

pub use pulselake_adapters::lambda_batch::Message;

/// What a batch did, for logs and metrics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SyncStats {
    pub messages: usize,
    /// Lake objects the messages named.
    pub objects: usize,
    /// ObjectReader that are not readings data (Firehose error output, staging, other tables).
    pub ignored: usize,
    /// Distinct partitions the batch touched.
    pub partitions: usize,
    pub created: usize,
    pub existing: usize,
    pub dropped: usize,
    pub failed_messages: usize,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct SyncOutcome {
    /// Messages to be retried (SQS partial batch response).
    pub failed_message_ids: Vec<String>,
    pub stats: SyncStats,
}

/// The function, generic over its ports.
pub struct CatalogSync<C, O> {
    pub catalog: C,
    /// The lake bucket, read to tell whether a partition still holds data.
    pub objects: O,
    pub lake_bucket: String,
}

/// Partitions and the messages (by index) that named them.
type Touched = BTreeMap<Partition, BTreeSet<usize>>;

impl<C: Catalog, O: ObjectReader> CatalogSync<C, O> {
    pub async fn handle_batch(&self, messages: &[Message<'_>]) -> Result<SyncOutcome, AwsError> {
        let mut stats = SyncStats {
            messages: messages.len(),
            ..Default::default()
        };
        let mut failed = BTreeSet::new();
        let mut created = Touched::new();
        let mut removed = Touched::new();
        for (i, m) in messages.iter().enumerate() {
            if m.id.is_none_or(str::is_empty) {
                // Without an id the message cannot be reported alone: fail the batch.
                return Err(AwsError::permanent("sqs", "a message without a messageId"));
            }
            let changes = match parse_changes(m.body.unwrap_or_default()) {
                Changes::Test => continue,
                Changes::Invalid(why) => {
                    tracing::error!(error = %why, "unreadable message; it will go to the DLQ");
                    failed.insert(i);
                    continue;
                }
                Changes::Objects(c) => c,
            };
            for c in changes {
                stats.objects += 1;
                let partition = (c.object.bucket == self.lake_bucket)
                    .then(|| Partition::from_object_key(&c.object.key))
                    .flatten();
                let Some(p) = partition else {
                    stats.ignored += 1;
                    continue;
                };
                let touched = match c.kind {
                    ChangeKind::Created => &mut created,
                    ChangeKind::Removed => &mut removed,
                };
                touched.entry(p).or_default().insert(i);
            }
        }
        stats.partitions = created
            .keys()
            .chain(removed.keys())
            .collect::<BTreeSet<_>>()
            .len();

        let wanted: Vec<Partition> = created.keys().copied().collect();
        for chunk in wanted.chunks(MAX_PARTITIONS_PER_CALL) {
            match self.catalog.create_partitions(chunk).await {
                Ok(errors) => {
                    stats.created += chunk.len() - errors.len();
                    for e in errors {
                        if e.code == ALREADY_EXISTS {
                            stats.existing += 1;
                        } else {
                            tracing::error!(partition = %e.partition, code = %e.code, "Glue refused a partition; its messages will be retried");
                            failed.extend(&created[&e.partition]);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, partitions = chunk.len(), "BatchCreatePartition failed; its messages will be retried");
                    for p in chunk {
                        failed.extend(&created[p]);
                    }
                }
            }
        }

        if !removed.is_empty() {
            self.drop_emptied(&removed, &mut stats, &mut failed).await;
        }

        let failed_message_ids: Vec<String> = failed
            .into_iter()
            .filter_map(|i| messages[i].id.map(str::to_owned))
            .collect();
        stats.failed_messages = failed_message_ids.len();
        Ok(SyncOutcome {
            failed_message_ids,
            stats,
        })
    }

    /// Drops the partitions whose last object went away (a corrected file re-uploaded
    /// with no readings left on that day, say). S3 listings are strongly consistent, so
    /// an empty listing means no data; a writer that lands a file while the partition is
    /// being dropped is caught by looking again afterwards and creating it anew.
    async fn drop_emptied(
        &self,
        removed: &Touched,
        stats: &mut SyncStats,
        failed: &mut BTreeSet<usize>,
    ) {
        let mut empty = Vec::new();
        for (p, msgs) in removed {
            match self.holds_data(p).await {
                Ok(true) => {}
                Ok(false) => empty.push(*p),
                Err(e) => {
                    tracing::warn!(partition = %p, error = %e, "could not list a partition; its messages will be retried");
                    failed.extend(msgs);
                }
            }
        }
        for chunk in empty.chunks(MAX_DELETES_PER_CALL) {
            let errors = match self.catalog.delete_partitions(chunk).await {
                Ok(errors) => errors,
                Err(e) => {
                    tracing::warn!(error = %e, "BatchDeletePartition failed; its messages will be retried");
                    for p in chunk {
                        failed.extend(&removed[p]);
                    }
                    continue;
                }
            };
            for p in chunk {
                match errors.iter().find(|e| e.partition == *p) {
                    None => stats.dropped += 1,
                    Some(e) if e.code == NOT_FOUND => {}
                    Some(e) => {
                        tracing::error!(partition = %p, code = %e.code, "Glue refused to drop a partition; its messages will be retried");
                        failed.extend(&removed[p]);
                    }
                }
            }
            // A file that landed meanwhile must not be left without its partition.
            for p in chunk {
                let recreated = match self.holds_data(p).await {
                    Ok(false) => continue,
                    Ok(true) => {
                        self.catalog
                            .create_partitions(std::slice::from_ref(p))
                            .await
                    }
                    Err(e) => Err(e),
                };
                match recreated {
                    Ok(errors) if errors.iter().all(|e| e.code == ALREADY_EXISTS) => {
                        stats.dropped = stats.dropped.saturating_sub(1);
                    }
                    Ok(_) | Err(_) => {
                        tracing::warn!(partition = %p, "a partition dropped while a file landed could not be re-created; retrying");
                        failed.extend(&removed[p]);
                    }
                }
            }
        }
    }

    async fn holds_data(&self, p: &Partition) -> Result<bool, AwsError> {
        self.objects.any_under(&self.lake_bucket, &p.prefix()).await
    }
}
