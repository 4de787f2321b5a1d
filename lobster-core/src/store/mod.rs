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

pub mod name;
mod record;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use record::{Allocation, Resources, RunningVm, TenantRecord, TenantStatus, Workload};

use crate::base::{Classify, ErrorKind};
use crate::config::Config;

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
            StoreError::NotFound(_) => ErrorKind::NotFound,
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

/// A registry as read by [`Store::snapshot`], with a hold on its file.
#[derive(Debug)]
pub struct RegistrySnapshot {
    /// The registry's content.
    pub registry: Registry,
    version: Option<FileVersion>,
}

/// The file a snapshot was read from, kept open (so its inode is not reused).
#[derive(Debug)]
struct FileVersion {
    file: File,
    stamp: FileStamp,
}

/// What identifies one version of the registry file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
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

    /// Reads the registry under a shared lock (a missing file is empty).
    pub fn read(&self) -> Result<Registry> {
        let _lock = self.lock(false)?;
        self.load()
    }

    /// Reads the registry like [`Store::read`] and keeps the file it came
    /// from open, so [`Store::changed_since`] can later tell in one `stat`
    /// whether anyone wrote since (instead of parsing it again).
    pub fn snapshot(&self) -> Result<RegistrySnapshot> {
        let _lock = self.lock(false)?;
        let (registry, version) = self.load_version()?;
        Ok(RegistrySnapshot { registry, version })
    }

    /// Whether the registry was written since `snapshot` was read. Every
    /// write replaces the file (rename), and the snapshot holds the old one
    /// open so its inode cannot be reused: the same inode at the path means
    /// no write (size and mtime guard against edits in place).
    pub fn changed_since(&self, snapshot: &RegistrySnapshot) -> Result<bool> {
        let now = match std::fs::metadata(&self.registry) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(snapshot.version.is_some())
            }
            Err(source) => {
                return Err(StoreError::Io {
                    context: "cannot stat registry",
                    path: self.registry.clone(),
                    source,
                })
            }
        };
        let Some(version) = &snapshot.version else {
            return Ok(true);
        };
        let held = version.file.metadata().map_err(|source| StoreError::Io {
            context: "cannot stat registry",
            path: self.registry.clone(),
            source,
        })?;
        Ok(FileStamp::of(&now) != version.stamp || FileStamp::of(&held) != version.stamp)
    }

    /// Runs `change` on the registry under an exclusive lock and writes the
    /// result atomically if it changed. An error from `change` writes nothing.
    pub fn update<T, E>(&self, change: impl FnOnce(&mut Registry) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let _lock = self.lock(true)?;
        let before = self.load()?;
        let mut after = before.clone();
        let out = change(&mut after)?;
        if after != before {
            self.write(&after)?;
        }
        Ok(out)
    }

    /// Reserves a slot and a name for a new tenant (status `creating`).
    pub fn allocate(&self, config: &Config, new: NewTenant) -> Result<TenantRecord> {
        self.update(|reg| {
            if reg.tenants.contains_key(&new.name) {
                return Err(StoreError::Exists(new.name.clone()));
            }
            let slot = free_slot(reg, config.capacity()).ok_or_else(|| StoreError::Exhausted {
                capacity: config.capacity(),
                pool: config.network.pool.clone(),
            })?;
            let id = loop {
                let id = random_hex(4)?;
                if reg.tenants.values().all(|t| t.id != id) {
                    break id;
                }
            };
            let record = TenantRecord {
                allocation: allocation_for(config, slot, &id),
                name: new.name.clone(),
                id,
                status: TenantStatus::Creating,
                resources: new.resources,
                workload: new.workload,
                owner: new.owner,
                created_at: unix_now(),
                agent_token: random_hex(32)?,
                gateway_token: random_hex(32)?,
                vm: None,
                last_error: None,
            };
            reg.tenants.insert(new.name, record.clone());
            Ok(record)
        })
    }

    /// Removes a tenant's record, releasing its slot for reuse.
    pub fn release(&self, name: &str) -> Result<TenantRecord> {
        self.update(|reg| {
            reg.tenants
                .remove(name)
                .ok_or_else(|| StoreError::NotFound(name.into()))
        })
    }

    /// Applies `change` to one tenant's record and returns the new record.
    pub fn modify(
        &self,
        name: &str,
        change: impl FnOnce(&mut TenantRecord),
    ) -> Result<TenantRecord> {
        self.update(|reg| {
            let record = reg
                .tenants
                .get_mut(name)
                .ok_or_else(|| StoreError::NotFound(name.into()))?;
            change(record);
            Ok(record.clone())
        })
    }

    /// Takes tenant `name`'s operation lock (held by evict, snap and
    /// repairs, so two of them never act on one tenant at once), waiting at
    /// most `wait`. `None` when another process still holds it.
    pub fn lock_tenant(&self, name: &str, wait: Duration) -> Result<Option<TenantLock>> {
        let dir = self.locks_dir();
        let path = dir.join(format!("{name}.lock"));
        match lock_file(&dir, &path, true, wait) {
            Ok(file) => Ok(Some(TenantLock { file, path })),
            Err(StoreError::LockTimeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes the single-watchdog lock of this state directory without
    /// waiting; `None` when another watchdog holds it.
    pub fn lock_watchdog(&self) -> Result<Option<TenantLock>> {
        let dir = self.registry.parent().unwrap_or(Path::new("."));
        let path = dir.join("watch.lock");
        match lock_file(dir, &path, true, Duration::ZERO) {
            Ok(file) => Ok(Some(TenantLock { file, path })),
            Err(StoreError::LockTimeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn locks_dir(&self) -> PathBuf {
        self.registry
            .parent()
            .unwrap_or(Path::new("."))
            .join("locks")
    }

    fn lock(&self, exclusive: bool) -> Result<File> {
        let dir = self.registry.parent().unwrap_or(Path::new("."));
        lock_file(dir, &self.lock, exclusive, self.lock_timeout)
    }

    fn load(&self) -> Result<Registry> {
        self.load_version().map(|(registry, _)| registry)
    }

    /// The registry and the file version it was read from (`None`: no file).
    fn load_version(&self) -> Result<(Registry, Option<FileVersion>)> {
        let io = |source| StoreError::Io {
            context: "cannot read registry",
            path: self.registry.clone(),
            source,
        };
        let mut file = match File::open(&self.registry) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Registry::default(), None))
            }
            Err(source) => return Err(io(source)),
        };
        let stamp = FileStamp::of(&file.metadata().map_err(io)?);
        let mut text = Vec::with_capacity(stamp.len as usize);
        file.read_to_end(&mut text).map_err(io)?;
        let registry = self.parse(&text)?;
        Ok((registry, Some(FileVersion { file, stamp })))
    }

    fn parse(&self, text: &[u8]) -> Result<Registry> {
        let corrupt = |reason: String| StoreError::Corrupt {
            path: self.registry.clone(),
            reason,
        };
        // Check the version first, so a newer format is named as such.
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let version: Version = serde_json::from_slice(text).map_err(|e| corrupt(e.to_string()))?;
        if version.schema_version != SCHEMA_VERSION {
            return Err(StoreError::SchemaVersion {
                path: self.registry.clone(),
                found: version.schema_version,
            });
        }
        let registry: Registry =
            serde_json::from_slice(text).map_err(|e| corrupt(e.to_string()))?;
        for (key, record) in &registry.tenants {
            if key != &record.name {
                return Err(corrupt(format!(
                    "entry `{key}` holds tenant `{}`",
                    record.name
                )));
            }
        }
        Ok(registry)
    }

    fn write(&self, registry: &Registry) -> Result<()> {
        let io = |context, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io {
                context,
                path,
                source,
            }
        };
        let dir = self.registry.parent().unwrap_or(Path::new("."));
        let tmp = self.registry.with_extension("json.tmp");
        let mut text = serde_json::to_vec_pretty(registry).expect("registry serialises");
        text.push(b'\n');
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("cannot create", &tmp))?;
        file.write_all(&text).map_err(io("cannot write", &tmp))?;
        file.sync_all().map_err(io("cannot fsync", &tmp))?;
        drop(file);
        std::fs::rename(&tmp, &self.registry).map_err(io("cannot replace", &self.registry))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("cannot fsync directory", dir))?;
        Ok(())
    }
}

/// The lowest slot no tenant holds, below `capacity`.
fn free_slot(registry: &Registry, capacity: u32) -> Option<u32> {
    let mut held: Vec<u32> = registry
        .tenants
        .values()
        .map(|t| t.allocation.slot)
        .collect();
    held.sort_unstable();
    let mut candidate = 0u32;
    for slot in held {
        if slot > candidate {
            break;
        }
        candidate = slot + 1;
    }
    (candidate < capacity).then_some(candidate)
}

/// An exclusive hold on one tenant's operations (or on the watchdog role);
/// released on drop.
#[derive(Debug)]
pub struct TenantLock {
    file: File,
    path: PathBuf,
}

impl TenantLock {
    /// Releases the lock and deletes its file (after the tenant is gone).
    pub fn release_and_remove(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
}

/// Opens (creating) `path` in `dir` and takes an `flock` on it, polling
/// with backoff for at most `timeout`.
fn lock_file(dir: &Path, path: &Path, exclusive: bool, timeout: Duration) -> Result<File> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
        context: "cannot create state directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|source| StoreError::Io {
            context: "cannot open lock file",
            path: path.to_path_buf(),
            source,
        })?;
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        let attempt = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match attempt {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StoreError::Io {
                    context: "cannot lock",
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        if start.elapsed() >= timeout {
            return Err(StoreError::LockTimeout {
                path: path.to_path_buf(),
                waited: start.elapsed(),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Everything a slot stands for. Pure: the same slot always gives the same values.
pub fn allocation_for(config: &Config, slot: u32, id: &str) -> Allocation {
    let subnet = u32::from(config.pool().addr) + 4 * slot;
    let guest_ip = Ipv4Addr::from(subnet + 2);
    Allocation {
        slot,
        subnet: Ipv4Addr::from(subnet),
        host_ip: Ipv4Addr::from(subnet + 1),
        guest_ip,
        mac: crate::network::MacAddr::from_guest_ip(guest_ip).to_string(),
        tap: format!("lob-{id}"),
        host_port: config.network.host_port_base + slot as u16,
        jail_uid: config.vmm.uid_base + slot,
    }
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
