//! The Glue Data Catalog: registering lake partitions.

use std::future::Future;
use std::sync::Mutex;

use aws_sdk_glue::types::{PartitionInput, StorageDescriptor};
use pulselake_domain::Partition;
use tokio::sync::OnceCell;

use crate::error::AwsError;

/// BatchCreatePartition takes at most 100 partitions.
pub const MAX_PARTITIONS_PER_CALL: usize = 100;

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
        let mut errors = Vec::new();
        for e in out.errors() {
            let values = e.partition_values();
            let code = e
                .error_detail()
                .and_then(|d| d.error_code())
                .unwrap_or("Unknown")
                .to_owned();
            if let Some(p) = partitions.iter().find(|p| p.values().as_slice() == values) {
                errors.push(PartitionError {
                    partition: *p,
                    code,
                });
            }
        }
        Ok(errors)
    }
}

/// An in-memory catalog with Glue's semantics (AlreadyExistsException per entry): for unit tests.
#[derive(Default)]
pub struct MemoryCatalog {
    pub partitions: Mutex<Vec<Partition>>,
    pub calls: Mutex<Vec<usize>>,
    /// Partitions that fail with this code (to test partial failures).
    pub refuse: Mutex<Option<(Partition, String)>>,
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
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(partitions.len());
        let refuse = self
            .refuse
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut known = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let mut errors = Vec::new();
        for p in partitions {
            match &refuse {
                Some((r, code)) if r == p => errors.push(PartitionError {
                    partition: *p,
                    code: code.clone(),
                }),
                _ if known.contains(p) => errors.push(PartitionError {
                    partition: *p,
                    code: "AlreadyExistsException".into(),
                }),
                _ => known.push(*p),
            }
        }
        Ok(errors)
    }
}
