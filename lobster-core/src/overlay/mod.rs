//! Per-tenant writable overlay disks (ext4 images over the shared read-only base).

use crate::error::{Classify, ErrorKind};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OverlayError {
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

impl Classify for OverlayError {
    fn kind(&self) -> ErrorKind {
        match self {
            OverlayError::Io { source, .. } => ErrorKind::from_io(source),
        }
    }
}
