//! Tenant networking: TAP devices, addresses and routes (rtnetlink), and the firewall ruleset (planned as data, applied as one batch).

use crate::error::{Classify, ErrorKind};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
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

impl Classify for NetworkError {
    fn kind(&self) -> ErrorKind {
        match self {
            NetworkError::Io { source, .. } => ErrorKind::from_io(source),
        }
    }
}
