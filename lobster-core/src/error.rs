//! The one public error type of lobster.
//!
//! Every module has its own `thiserror` enum (`ConfigError`, `StoreError`,
//! `NetworkError`, ...). Each module error knows its [`ErrorKind`]; [`Error`]
//! wraps them and exposes `kind()`, the only thing bindings branch on
//! (Python exception classes, C result codes, Go sentinel errors and CLI
//! exit codes are all derived from it in one place each).

pub use crate::base::{Classify, ErrorKind};

/// The public error of every lobster-core operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Loading or validating the configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The tenant registry.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Tenant lifecycle operations.
    #[error(transparent)]
    Tenant(#[from] crate::tenant::TenantError),
    /// TAP devices, addresses, firewall.
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    /// Caddy routes.
    #[error(transparent)]
    Proxy(#[from] crate::proxy::ProxyError),
    /// The VMM (Firecracker or QEMU).
    #[error(transparent)]
    Vmm(#[from] crate::vmm::VmmError),
    /// The in-guest agent.
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    /// Per-tenant overlay disks.
    #[error(transparent)]
    Overlay(#[from] crate::overlay::OverlayError),
    /// Health checks, repairs and the watchdog.
    #[error(transparent)]
    Health(#[from] crate::health::HealthError),
    /// Preparing this machine (init, host setup, the watchdog's unit).
    #[error(transparent)]
    Machine(#[from] crate::machine::MachineError),
    /// An operation that a later version implements.
    #[error("{operation} is not implemented yet: {detail}")]
    Unsupported {
        /// The operation asked for (`suspend`, `molt`, ...).
        operation: &'static str,
        /// What is missing.
        detail: &'static str,
    },
}

impl Error {
    /// The stable kind of this error; bindings map on this only.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(e) => e.kind(),
            Error::Store(e) => e.kind(),
            Error::Tenant(e) => e.kind(),
            Error::Network(e) => e.kind(),
            Error::Proxy(e) => e.kind(),
            Error::Vmm(e) => e.kind(),
            Error::Agent(e) => e.kind(),
            Error::Overlay(e) => e.kind(),
            Error::Health(e) => e.kind(),
            Error::Machine(e) => e.kind(),
            Error::Unsupported { .. } => ErrorKind::Unsupported,
        }
    }

    /// The exit status a shell gives a command that could not run, when
    /// this error is an exec the guest refused for that reason: 127 for a
    /// command not found (as `sh`). Front ends that pass a remote
    /// command's status on as their own (`lobsterd exec`) use it.
    pub fn exec_status(&self) -> Option<i32> {
        match self {
            Error::Agent(e) => e.exec_status(),
            _ => None,
        }
    }

    /// The message of this error followed by each cause, `: `-separated.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        // `transparent` variants forward `source()` of the inner error, so the
        // first source may repeat the message: skip exact repeats.
        while let Some(cause) = source {
            let text = cause.to_string();
            if !out.ends_with(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            source = cause.source();
        }
        out
    }
}

/// `Result` with lobster's public [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
