//! The tenant registry: the single source of truth for desired state.
//!
//! `registry.json` (mode 0600: it holds tokens) lives in the state directory
//! next to `registry.lock`. Every operation takes an `flock` on the lock file
//! for its whole read-modify-write (shared for reads, exclusive for changes),
//! so any number of processes (CLI, daemon, Python, C) may act at once. A
//! change is written to a temporary file, fsynced, renamed over the registry
//! and the directory is fsynced: a crash leaves the old or the new registry,
//! never a torn one. A registry that does not parse is reported as corrupt
//! and never overwritten.
//!
//! - `registry`: reading, snapshots and atomic updates of `registry.json`;
//! - `locks`: the `flock`s: the registry's, each tenant's operation lock
//!   ([`TenantLock`]) and the single-watchdog lock ([`WatchdogLock`]);
//! - `allocate`: slots and everything derived from them ([`allocation_for`]);
//! - `api_tokens`: the HTTP API's bearer tokens ([`ApiToken`]), hashed, in
//!   `api-tokens.json` beside the registry.

mod allocate;
mod api_tokens;
mod locks;
pub mod name;
mod record;
mod registry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use allocate::allocation_for;
pub(crate) use allocate::new_token;
pub use api_tokens::{ApiScope, ApiToken};
pub use locks::{TenantLock, WatchdogLock};
#[cfg(test)]
pub(crate) use record::sample;
pub use record::{
    Allocation, Resources, RunningVm, SuspendInfo, TenantRecord, TenantStatus, Workload,
};
pub use registry::RegistrySnapshot;

use crate::base::{Classify, ErrorKind};

/// The registry format this version reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// How long an operation waits for another process's lock before giving up.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O error on a named path.
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
    /// The registry does not parse; it was left untouched.
    #[error("registry {} is corrupt ({reason}); it was left untouched: restore it from a backup or move it aside", path.display())]
    Corrupt {
        /// The registry file.
        path: PathBuf,
        /// The parser's message, with line and column.
        reason: String,
    },
    /// The registry was written by a newer lobster.
    #[error("registry {} has schema version {found}; this lobster reads version {SCHEMA_VERSION}", path.display())]
    SchemaVersion {
        /// The registry file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
    },
    /// Another process held the lock too long.
    #[error("registry lock {} still held by another process after {}s", path.display(), waited.as_secs())]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// No tenant has that name.
    #[error("no tenant named `{0}`")]
    NotFound(String),
    /// A tenant has that name already.
    #[error("a tenant named `{0}` exists already")]
    Exists(String),
    /// Every slot of the pool is held.
    #[error("no free tenant slot: all {capacity} slots of pool {pool} are held (widen network.pool or evict a tenant)")]
    Exhausted {
        /// How many tenants fit.
        capacity: u32,
        /// The configured pool.
        pool: String,
    },
    /// An API token field is malformed.
    #[error("API token {field}: {reason}")]
    InvalidApiToken {
        /// The field (`name`, `scope`).
        field: &'static str,
        /// What is wrong, naming the value.
        reason: String,
    },
    /// No API token has that id.
    #[error("no API token with id `{0}`")]
    ApiTokenNotFound(String),
    /// The operating system's random source failed.
    #[error("cannot read random bytes: {0}")]
    Random(String),
}

impl Classify for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Io { source, .. } => ErrorKind::from_io(source),
            StoreError::Corrupt { .. } | StoreError::SchemaVersion { .. } => ErrorKind::Corrupt,
            StoreError::LockTimeout { .. } => ErrorKind::Timeout,
            StoreError::NotFound(_) | StoreError::ApiTokenNotFound(_) => ErrorKind::NotFound,
            StoreError::InvalidApiToken { .. } => ErrorKind::InvalidArgument,
            StoreError::Exists(_) => ErrorKind::AlreadyExists,
            StoreError::Exhausted { .. } => ErrorKind::Exhausted,
            StoreError::Random(_) => ErrorKind::HostFailure,
        }
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The registry's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Format version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Tenants by name.
    pub tenants: BTreeMap<String, TenantRecord>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            schema_version: SCHEMA_VERSION,
            tenants: BTreeMap::new(),
        }
    }
}

/// What a new tenant asks of the registry (validated by `TenantSpec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTenant {
    /// Tenant name.
    pub name: String,
    /// Sizes and backend.
    pub resources: Resources,
    /// What the agent runs.
    pub workload: Workload,
    /// The process creating it (`None`: not tracked).
    pub owner: Option<crate::vmm::VmIdentity>,
}

/// Handle on one registry file; cheap to clone, holds no lock between calls.
#[derive(Debug, Clone)]
pub struct Store {
    registry: PathBuf,
    lock: PathBuf,
    lock_timeout: Duration,
}

impl Store {
    /// The registry of a state directory.
    pub fn new(state_dir: &Path) -> Store {
        Store {
            registry: state_dir.join("registry.json"),
            lock: state_dir.join("registry.lock"),
            lock_timeout: LOCK_TIMEOUT,
        }
    }

    /// Changes how long to wait for the lock.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Store {
        self.lock_timeout = timeout;
        self
    }

    /// The registry file.
    pub fn path(&self) -> &Path {
        &self.registry
    }

    /// The state directory: the registry and its locks.
    pub fn state_dir(&self) -> &Path {
        self.registry.parent().unwrap_or(Path::new("."))
    }
}
