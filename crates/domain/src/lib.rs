//! pulselake's domain: device messages and their mappings, the metric catalog,
//! validation, the canonical reading and the lake layout. Plain types and functions,
//! no AWS types and no I/O, so every rule here is unit-tested in isolation.

pub mod access;
pub mod alerting;
pub mod fhir;
pub mod keyed;
pub mod mapping;
pub mod message;
pub mod metric;
pub mod onboarding;
pub mod partition;
pub mod partner;
pub mod quarantine;
pub mod reading;
pub mod reason;
pub mod reconcile;
pub mod registry;
pub mod retention;
pub mod silence;
pub mod team;
pub mod time;
pub mod validate;

pub use keyed::NamingKey;
pub use mapping::{DeviceMappings, MappingError};
pub use message::{DeviceMessage, MAX_PAYLOAD_BYTES, RawReading};
pub use metric::Metric;
pub use partition::Partition;
pub use quarantine::{QuarantineEntry, RejectedReading};
pub use reading::{FileLine, LineTail, Reading, ReadingId, Source};
pub use reason::{Reason, Rejection};
pub use registry::{Assignment, DeviceRecord};
pub use validate::{Assessed, Provenance, TimePolicy, assess, normalize};
