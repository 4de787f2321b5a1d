//! Tenant lifecycle: spawn, evict, suspend, resume, repair; one file per operation.

use crate::error::{Classify, ErrorKind};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TenantError {
    /// An I/O error on a named path or device.
    #[error("{context}")]
    Io {
        /// What was being done, naming the path or device.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Classify for TenantError {
    fn kind(&self) -> ErrorKind {
        match self {
            TenantError::Io { source, .. } => ErrorKind::from_io(source),
        }
    }
}
