//! The Glue Data Catalog: registering lake partitions.

use std::future::Future;
use std::sync::Mutex;

use aws_sdk_glue::types::{PartitionInput, StorageDescriptor};
use pulselake_domain::Partition;
use tokio::sync::OnceCell;

use crate::error::AwsError;

/// BatchCreatePartition takes at most 100 partitions.
pub const MAX_PARTITIONS_PER_CALL: usize = 100;
/// BatchDeletePartition takes at most 25.
pub const MAX_DELETES_PER_CALL: usize = 25;

/// Glue's per-entry code for a partition that is already there.
pub const ALREADY_EXISTS: &str = "AlreadyExistsException";
/// Glue's per-entry code for a partition that is not there (to delete).
pub const NOT_FOUND: &str = "EntityNotFoundException";

/// A partition Glue refused, with its error code.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionError {
    pub partition: Partition,
    pub code: String,
}

/// Port: creates partitions of the readings table (at most 100 per call) and returns
/// Glue's per-entry errors as they are (`AlreadyExistsException` included: whether that
/// counts as success is the caller's decision).
pub trait Catalog: Send + Sync {
    fn create_partitions(
        &self,
        partitions: &[Partition],
    ) -> impl Future<Output = Result<Vec<PartitionError>, AwsError>> + Send;

    /// Drops partitions (at most 25 per call); per-entry errors as Glue returns them
    /// (`EntityNotFoundException` included).
    fn delete_partitions(
        &self,
        partitions: &[Partition],
    ) -> impl Future<Output = Result<Vec<PartitionError>, AwsError>> + Send;
}

/// Glue's per-entry errors (the same shape for creates and deletes), matched back to
/// the partitions asked for.
fn entry_errors(
    partitions: &[Partition],
    errors: &[aws_sdk_glue::types::PartitionError],
) -> Vec<PartitionError> {
    errors
        .iter()
        .filter_map(|e| {
            let values = e.partition_values();
            let p = partitions
                .iter()
                .find(|p| p.values().as_slice() == values)?;
            let code = e.error_detail().and_then(|d| d.error_code());
            Some(PartitionError {
                partition: *p,
                code: code.unwrap_or("Unknown").to_owned(),
            })
        })
        .collect()
}

/// The Glue adapter. The table's storage descriptor (formats, SerDe, columns) is read once
/// per container and copied into every partition, pointing at the partition's folder.
pub struct GlueCatalog {
    client: aws_sdk_glue::Client,
    database: String,
    table: String,
    descriptor: OnceCell<StorageDescriptor>,
}

impl GlueCatalog {
    pub fn from_config(
        sdk: &aws_config::SdkConfig,
        database: impl Into<String>,
        table: impl Into<String>,
    ) -> GlueCatalog {
        GlueCatalog {
            client: aws_sdk_glue::Client::new(sdk),
            database: database.into(),
            table: table.into(),
            descriptor: OnceCell::new(),
        }
    }

    async fn descriptor(&self) -> Result<&StorageDescriptor, AwsError> {
        self.descriptor
            .get_or_try_init(|| async {
                let out = self
                    .client
                    .get_table()
                    .database_name(&self.database)
                    .name(&self.table)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("glue:GetTable", e))?;
                out.table()
                    .and_then(|t| t.storage_descriptor())
                    .cloned()
                    .ok_or_else(|| {
                        AwsError::permanent(
                            "glue:GetTable",
                            format!("table {} has no storage descriptor", self.table),
                        )
                    })
            })
            .await
    }
}

impl Catalog for GlueCatalog {
    async fn create_partitions(
        &self,
        partitions: &[Partition],
    ) -> Result<Vec<PartitionError>, AwsError> {
        const OP: &str = "glue:BatchCreatePartition";
        let table_sd = self.descriptor().await?;
        let base = table_sd
            .location()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        let inputs = partitions
            .iter()
            .map(|p| {
                let mut sd = table_sd.clone();
                sd.location = Some(format!("{base}/{p}/"));
                PartitionInput::builder()
                    .set_values(Some(p.values().to_vec()))
                    .storage_descriptor(sd)
                    .build()
            })
            .collect();
        let out = self
            .client
            .batch_create_partition()
            .database_name(&self.database)
            .table_name(&self.table)
            .set_partition_input_list(Some(inputs))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        Ok(entry_errors(partitions, out.errors()))
    }

    async fn delete_partitions(
        &self,
        partitions: &[Partition],
    ) -> Result<Vec<PartitionError>, AwsError> {
        const OP: &str = "glue:BatchDeletePartition";
        let values = partitions
            .iter()
            .map(|p| {
                aws_sdk_glue::types::PartitionValueList::builder()
                    .set_values(Some(p.values().to_vec()))
                    .build()
                    .map_err(|e| AwsError::permanent(OP, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .batch_delete_partition()
            .database_name(&self.database)
            .table_name(&self.table)
            .set_partitions_to_delete(Some(values))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        Ok(entry_errors(partitions, out.errors()))
    }
}

/// An in-memory catalog with Glue's per-entry semantics: for unit tests.
#[derive(Default)]
pub struct MemoryCatalog {
    pub partitions: Mutex<Vec<Partition>>,
    /// Sizes of the create calls made.
    pub calls: Mutex<Vec<usize>>,
    /// A partition refused with this code (to test per-entry failures).
    pub refuse: Mutex<Option<(Partition, String)>>,
    /// When set, every call fails as a whole (Glue unavailable).
    pub unavailable: std::sync::atomic::AtomicBool,
}

impl MemoryCatalog {
    pub fn snapshot(&self) -> Vec<Partition> {
        let mut v = lock(&self.partitions).clone();
        v.sort();
        v
    }

    fn check_available(&self, op: &'static str) -> Result<(), AwsError> {
        if self.unavailable.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(AwsError::transient(op, "service unavailable"));
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Catalog for MemoryCatalog {
    async fn create_partitions(
        &self,
        partitions: &[Partition],
    ) -> Result<Vec<PartitionError>, AwsError> {
        assert!(
            partitions.len() <= MAX_PARTITIONS_PER_CALL,
            "Glue takes at most 100 partitions per call"
        );
        self.check_available("glue:BatchCreatePartition")?;
        lock(&self.calls).push(partitions.len());
        let refuse = lock(&self.refuse).clone();
        let mut known = lock(&self.partitions);
        let mut errors = Vec::new();
        for p in partitions {
            let code = match &refuse {
                Some((r, code)) if r == p => Some(code.clone()),
                _ if known.contains(p) => Some(ALREADY_EXISTS.to_owned()),
                _ => None,
            };
            match code {
                Some(code) => errors.push(PartitionError {
                    partition: *p,
                    code,
                }),
                None => known.push(*p),
            }
        }
        Ok(errors)
    }

    async fn delete_partitions(
        &self,
        partitions: &[Partition],
    ) -> Result<Vec<PartitionError>, AwsError> {
        assert!(
            partitions.len() <= MAX_DELETES_PER_CALL,
            "Glue deletes at most 25 partitions per call"
        );
        self.check_available("glue:BatchDeletePartition")?;
        let mut known = lock(&self.partitions);
        let mut errors = Vec::new();
        for p in partitions {
            match known.iter().position(|k| k == p) {
                Some(i) => {
                    known.swap_remove(i);
                }
                None => errors.push(PartitionError {
                    partition: *p,
                    code: NOT_FOUND.to_owned(),
                }),
            }
        }
        Ok(errors)
    }
}
