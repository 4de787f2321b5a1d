//! This machine as a lobster host: [`init`] (configuration, directories,
//! prerequisites), the idempotent host-wide [`setup`] (forwarding, firewall
//! base, a running Caddy) that `init` and the watchdog run, and the systemd
//! unit that starts the watchdog at boot.

mod init;
mod setup;
mod unit;

pub use init::{init, preflight, InitOptions, InitReport, Prerequisite};
pub use setup::{ensure_system_user, setup, SetupReport};
pub use unit::{install_watch_unit, watch_unit, UnitAction, WATCH_UNIT};

use crate::base::{Classify, ErrorKind};

/// Errors of host preparation beyond configuration and registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MachineError {
    /// A file or system-manager operation failed.
    #[error("{context} {}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path (or unit).
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Classify for MachineError {
    fn kind(&self) -> ErrorKind {
        match self {
            MachineError::Io { source, .. } => ErrorKind::from_io(source),
        }
    }
}
