//! This machine as a lobster host: [`init`] (configuration, directories,
//! prerequisites), the idempotent host-wide [`setup`] (forwarding, firewall
//! base, a running Caddy) that `init` and the watchdog run, the systemd
//! unit that starts the watchdog at boot, the record of what they changed
//! ([`HostChanges`]), and [`uninit`], which undoes it all.

mod changes;
mod files;
mod init;
mod setup;
mod uninit;
mod unit;

pub use changes::HostChanges;
pub use files::{install_files, write_files};
pub use init::{init, preflight, InitOptions, InitReport, Prerequisite};
pub use setup::{ensure_system_user, setup, SetupReport};
pub use uninit::{uninit, Outcome, UninitOptions, UninitReport, UninitStep};
pub use unit::{install_unit, unit_text, Daemon, UnitAction, API_UNIT, WATCH_UNIT};

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
    /// The record of what lobster changed on the host is unreadable.
    #[error("record of host changes {} is unreadable: {reason}", path.display())]
    Record {
        /// The record file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `uninit` refused: tenants exist (nothing was changed).
    #[error(
        "uninit refused: {} tenant(s) exist ({}); evict them first (`lobsterd evict NAME`); nothing was changed",
        tenants.len(),
        tenants.join(", ")
    )]
    TenantsExist {
        /// Their names.
        tenants: Vec<String>,
    },
    /// `uninit` refused: a watchdog runs for the state directory.
    #[error(
        "uninit refused: a watchdog (`lobsterd watch`) runs for {}; stop it, then run uninit again",
        state_dir.display()
    )]
    WatchdogRunning {
        /// The state directory.
        state_dir: std::path::PathBuf,
    },
    /// A path a systemd unit would hold has characters systemd splits,
    /// expands or escapes.
    #[error(
        "{field} {}: a systemd unit takes only absolute paths of letters, digits and /._+-",
        path.display()
    )]
    UnitPath {
        /// Which path.
        field: &'static str,
        /// The path.
        path: std::path::PathBuf,
    },
    /// `uninit` could not remove everything; what is left, with why.
    #[error("uninit left {}: {}", left.len(), left.join("; "))]
    Incomplete {
        /// Each step not done: `step: reason`.
        left: Vec<String>,
    },
}

impl Classify for MachineError {
    fn kind(&self) -> ErrorKind {
        match self {
            MachineError::Io { source, .. } => ErrorKind::from_io(source),
            MachineError::Record { .. } => ErrorKind::Corrupt,
            MachineError::TenantsExist { .. } | MachineError::WatchdogRunning { .. } => {
                ErrorKind::InvalidState
            }
            MachineError::Incomplete { .. } => ErrorKind::HostFailure,
            MachineError::UnitPath { .. } => ErrorKind::InvalidArgument,
        }
    }
}
