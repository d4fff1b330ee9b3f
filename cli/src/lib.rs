//! `pulselake`, the admin CLI: what ops would otherwise do by hand in the console.
//! Every command is a library function over ports, so the demo and the tests run the
//! same code the binary runs.

pub mod devices;
pub mod erasure;
pub mod lake_formation;
pub mod migrate;
pub mod partners;
pub mod preview;
pub mod stack;
pub mod teams;

pub use stack::StackNames;

/// Why a command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The input is wrong; nothing was changed. Every problem is listed.
    #[error("{}", .0.join("\n"))]
    Refused(Vec<String>),
    #[error(transparent)]
    Aws(#[from] pulselake_adapters::AwsError),
    #[error("{0}")]
    Setup(String),
}
