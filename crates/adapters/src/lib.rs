//! Ports and adapters: each AWS capability pulselake uses sits behind a small trait,
//! with an SDK adapter for AWS (and the local stack) and an in-memory one for tests
//! and benchmarks. Functions are generic over the ports they need.

pub mod alerts;
pub mod audit;
pub mod aws;
pub mod dedup;
pub mod emf;
pub mod erasure;
pub mod erasure_passes;
pub mod error;
pub mod exports;
pub mod firehose;
pub mod glue;
pub mod heartbeats;
pub mod identity;
pub mod kafka_events;
pub mod kinesis_events;
pub mod lambda_batch;
pub mod notify;
pub mod objects;
pub mod params;
pub mod partners;
pub mod queue;
pub mod registry;
pub mod retry;
pub mod s3_events;
pub mod secrets;
pub mod shared;
pub mod signing;
pub mod teams;
pub mod uploads;
pub mod versioned_memory;
pub mod versions;

pub use alerts::{
    AlertPublisher, AlertStates, DynamoAlertStates, MemoryAlertStates, MemoryPublisher, SnsAlerts,
    StoredState,
};
pub use audit::{AuditLog, BucketAuditLog, MemoryAuditLog};
pub use aws::{ConfigError, env_number, env_var, load_config, s3_client, with_client_policy};
pub use aws_config::SdkConfig;
pub use dedup::{Claim, DedupStore, DynamoDedup, MemoryDedup, SourceManifest};
pub use emf::Metrics;
pub use erasure::{DevicePeriod, DynamoErasures, ErasureRequest, ErasureRequests, MemoryErasures};
pub use erasure_passes::{DynamoErasurePasses, ErasurePass, ErasurePasses, MemoryErasurePasses};
pub use error::AwsError;
pub use exports::{
    DELETED_FILE, DynamoExportJobs, ERRORS_FILE, ExportJobs, Job, JobStatus, MemoryExportJobs,
    OutputFile, WorkUnit, job_prefix, remove_files,
};
pub use firehose::{FailedEntry, FirehoseSink, MemorySink, RecordSink};
pub use glue::{ALREADY_EXISTS, Catalog, GlueCatalog, MemoryCatalog, NOT_FOUND, PartitionError};
pub use heartbeats::{DynamoHeartbeats, Heartbeats, MemoryHeartbeats};
pub use identity::{Credentials, DeviceIdentities, IotIdentities, MemoryIdentities};
pub use notify::{
    AliasAdmin, DynamoAliases, MemoryAliases, MemoryNotifier, Notifier, SnsTopic, SubjectAliases,
};
pub use objects::{MemoryObjects, ObjectBody, ObjectReader, ObjectWriter, Presigner, S3Objects};
pub use partners::{
    DynamoOnce, DynamoPartners, MemoryOnce, MemoryPartners, OnceClaims, Partner, Partners,
};
pub use queue::{MemoryQueue, SqsQueue, WorkQueue};
pub use registry::{
    CachedRegistry, DynamoRegistry, MemoryRegistry, RegistryAdmin, RegistryLookup, RegistryWrite,
    Resolved,
};
pub use retry::{Backoff, RetryPolicy, with_retries};
pub use secrets::{MemorySecrets, Secrets, SecretsAdmin, SecretsManager};
pub use signing::{KmsSigner, TokenSigner};
pub use teams::{DynamoTeams, MemoryTeams, Team, Teams};
pub use uploads::{MIN_PART, ObjectUploads};
pub use versioned_memory::MemoryVersioned;
pub use versions::{DELETE_BATCH, ObjectVersion, VersionedObjects};

/// Now, in epoch seconds (DynamoDB TTL attributes and expiry conditions).
/// Wall-clock now, in epoch milliseconds (the functions' one clock; tests pass their own).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn epoch_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
