//! Ports and adapters: each AWS capability pulselake uses sits behind a small trait,
//! with an SDK adapter for AWS (and the local stack) and an in-memory one for tests
//! and benchmarks. Functions are generic over the ports they need.

pub mod aws;
pub mod emf;
pub mod error;
pub mod firehose;
pub mod objects;
pub mod params;
pub mod registry;

pub use aws::{ConfigError, env_number, env_var, load_config, s3_client};
pub use aws_config::SdkConfig;
pub use emf::Metrics;
pub use error::AwsError;
pub use firehose::{FailedEntry, FirehoseSink, MemorySink, RecordSink};
pub use objects::{MemoryBucket, ObjectStore, S3Bucket};
pub use registry::{CachedRegistry, DynamoRegistry, MemoryRegistry, RegistryLookup, Resolved};
