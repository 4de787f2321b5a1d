//! The tenant registry: the single source of truth for desired state.

pub mod name;

use crate::error::{Classify, ErrorKind};

/// Errors of the registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O error on a named path.
    #[error("{context}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Classify for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Io { source, .. } => ErrorKind::from_io(source),
        }
    }
}
