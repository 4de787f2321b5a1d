//! The reverse proxy: a Caddy admin API client that keeps one route per tenant (`<name>.<domain>` to the guest's gateway).

use crate::error::{Classify, ErrorKind};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
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

impl Classify for ProxyError {
    fn kind(&self) -> ErrorKind {
        match self {
            ProxyError::Io { source, .. } => ErrorKind::from_io(source),
        }
    }
}
