//! Virtual machine monitors: the `Vmm` trait over a planned `VmConfig`, with Firecracker (production) and QEMU microvm backends.

use crate::error::{Classify, ErrorKind};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VmmError {
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

impl Classify for VmmError {
    fn kind(&self) -> ErrorKind {
        match self {
            VmmError::Io { source, .. } => ErrorKind::from_io(source),
        }
    }
}
