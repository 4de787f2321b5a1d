//! [`HealthError`]: what health checks, repairs and the watchdog report
//! beyond the errors of the modules they drive.

use std::path::PathBuf;
use std::time::Duration;

use crate::base::{Classify, ErrorKind};
use crate::store::TenantStatus;

/// Errors of health operations (`molt`, the watchdog).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HealthError {
    /// A watchdog already runs for this state directory.
    #[error("a watchdog already runs for {} (see its watch.json for the pid)", state_dir.display())]
    WatchdogRunning {
        /// The state directory.
        state_dir: PathBuf,
    },
    /// Another operation (repair, evict, snap) held the tenant too long.
    #[error("tenant `{name}` is busy: another operation held it for {}s", waited.as_secs())]
    Busy {
        /// The tenant.
        name: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The tenant's state does not allow the operation.
    #[error("tenant `{name}` is {status}; {operation} needs {needs}")]
    InvalidState {
        /// The tenant.
        name: String,
        /// Its state.
        status: TenantStatus,
        /// What was asked.
        operation: &'static str,
        /// Which states would allow it.
        needs: &'static str,
    },
    /// A file operation failed (status file, watchdog log).
    #[error("{context} {}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Classify for HealthError {
    fn kind(&self) -> ErrorKind {
        match self {
            HealthError::WatchdogRunning { .. } => ErrorKind::AlreadyExists,
            HealthError::Busy { .. } => ErrorKind::Timeout,
            HealthError::InvalidState { .. } => ErrorKind::InvalidState,
            HealthError::Io { source, .. } => ErrorKind::from_io(source),
        }
    }
}
