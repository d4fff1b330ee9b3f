//! Ports and adapters: each AWS capability pulselake uses sits behind a small trait,
//! with an SDK adapter for AWS (and the local stack) and an in-memory one for tests
//! and benchmarks. Functions are generic over the ports they need.

pub mod alerts;
pub mod aws;
pub mod dedup;
pub mod emf;
pub mod error;
pub mod firehose;
pub mod glue;
pub mod heartbeats;
pub mod identity;
pub mod kinesis_events;
pub mod lambda_batch;
pub mod notify;
pub mod objects;
pub mod params;
pub mod registry;
pub mod retry;
pub mod s3_events;
pub mod secrets;

pub use alerts::{
    AlertPublisher, AlertStates, DynamoAlertStates, MemoryAlertStates, MemoryPublisher, SnsAlerts,
    StoredState,
};
pub use aws::{ConfigError, env_number, env_var, load_config, s3_client, with_client_policy};
pub use aws_config::SdkConfig;
pub use dedup::{Claim, DedupStore, DynamoDedup, MemoryDedup, SourceManifest};
pub use emf::Metrics;
pub use error::AwsError;
pub use firehose::{FailedEntry, FirehoseSink, MemorySink, RecordSink};
pub use glue::{ALREADY_EXISTS, Catalog, GlueCatalog, MemoryCatalog, NOT_FOUND, PartitionError};
pub use heartbeats::{DynamoHeartbeats, Heartbeats, MemoryHeartbeats};
pub use identity::{Credentials, DeviceIdentities, IotIdentities, MemoryIdentities};
pub use notify::{
    DynamoAliases, MemoryAliases, MemoryNotifier, Notifier, SnsTopic, SubjectAliases,
};
pub use objects::{MemoryObjects, ObjectBody, ObjectReader, ObjectWriter, S3Objects};
pub use registry::{
    CachedRegistry, DynamoRegistry, MemoryRegistry, RegistryAdmin, RegistryLookup, Resolved,
};
pub use retry::{Backoff, RetryPolicy, with_retries};
