//! Client of the in-guest `lobster-agent` (JSON lines over TCP on the tenant's /30).

use crate::error::{Classify, ErrorKind};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
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

impl Classify for AgentError {
    fn kind(&self) -> ErrorKind {
        match self {
            AgentError::Io { source, .. } => ErrorKind::from_io(source),
        }
    }
}
