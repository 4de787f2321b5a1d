//! Virtual machine monitors.
//!
//! A tenant's VM is described once as a [`VmConfig`] (plain data). A
//! [`Vmm`] backend plans from it (QEMU's command line, Firecracker's API
//! request sequence: pure functions with golden tests), launches the VMM
//! process under pidfd supervision ([`process`]), and hands back a [`Vm`]
//! handle for status, pause/resume, snapshot, shutdown and kill. A VM
//! outlives the handle and the orchestrator: the registry stores its
//! [`VmIdentity`], and [`Vmm::attach`] finds it again later.
//!
//! Backends: [`qemu`] (microvm machine, QMP; TCG where KVM does not really
//! run guests) and [`firecracker`] (API over its unix socket, optional
//! jailer).
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use lobster_core::config::Config;
//! use lobster_core::vmm::{self, Drive, VmConfig, VmPaths};
//!
//! # async fn run() -> Result<(), lobster_core::vmm::VmmError> {
//! let host = Config::default();
//! let backend = vmm::backend_for(&host);
//! let config = VmConfig {
//!     vm_id: "vm-alice".into(),
//!     kernel: host.paths.kernel.clone(),
//!     initrd: Some(host.paths.initrd.clone()),
//!     boot_args: "quiet".into(),
//!     drives: vec![Drive {
//!         id: "rootfs".into(),
//!         path: host.paths.rootfs.clone(),
//!         read_only: true,
//!         rate_limiter: None,
//!     }],
//!     nic: None,
//!     vcpus: 1,
//!     memory_mib: 256,
//!     paths: VmPaths::for_tenant(&host.paths, &host.vmm, "alice"),
//!     jail: None,
//! };
//! let vm = backend.launch(&config).await?;
//! let booted = vm.process().console().wait_for("login:", 0, Duration::from_secs(30)).await;
//! let identity = vm.identity(); // store it; `backend.attach(&config, identity)` later
//! vm.pause().await?;
//! let snapshot = vm.snapshot().await?;
//! vm.kill().await?;
//! let vm = backend.restore(&config, &snapshot, true).await?;
//! vm.shutdown(Duration::from_secs(10)).await?;
//! # let _ = (booted, identity);
//! # Ok(())
//! # }
//! ```

pub mod console;
pub mod firecracker;
mod launch;
pub mod process;
pub mod qemu;
pub mod sandbox;
mod stop;
mod version;
pub mod vm_config;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::base::{Classify, ErrorKind};
pub use crate::config::BackendKind;
pub use console::ConsoleLog;
pub use process::{BootId, ExitStatus, VmIdentity, VmProcess};
pub use stop::{remove_jail, stop_recorded};
pub use vm_config::{Drive, Jail, Nic, RateLimiter, TokenBucket, VmConfig, VmPaths};

/// `Result` of this module.
pub type Result<T, E = VmmError> = std::result::Result<T, E>;

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
    /// A `VmConfig` field is unusable.
    #[error("vm {vm}: field `{field}`: {reason}")]
    InvalidConfig {
        /// The VM.
        vm: String,
        /// Dotted field path.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The VMM binary could not be started.
    #[error("vm {vm}: cannot start {}", binary.display())]
    Spawn {
        /// The VM.
        vm: String,
        /// The binary.
        binary: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The VMM process ended (while being launched, or unexpectedly).
    #[error("vm {vm}: vmm process ended ({status}); last output:\n{log_tail}")]
    Exited {
        /// The VM.
        vm: String,
        /// How it ended.
        status: ExitStatus,
        /// The tail of its console log.
        log_tail: String,
    },
    /// An operation did not finish in time.
    #[error("vm {vm}: {operation} timed out after {after:?}")]
    Timeout {
        /// The VM.
        vm: String,
        /// What was being waited for.
        operation: String,
        /// The bound.
        after: Duration,
    },
    /// Firecracker answered an API call with an error.
    #[error("vm {vm}: firecracker rejected {method} {path} ({status}): {fault_message}")]
    Api {
        /// The VM.
        vm: String,
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Firecracker's `fault_message`.
        fault_message: String,
    },
    /// QEMU answered a QMP command with an error.
    #[error("vm {vm}: qemu rejected {command}: {class}: {desc}")]
    Qmp {
        /// The VM.
        vm: String,
        /// The QMP command.
        command: String,
        /// QMP error class.
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// The VMM's answer made no sense.
    #[error("vm {vm}: {what}: {detail}")]
    Protocol {
        /// The VM.
        vm: String,
        /// The exchange.
        what: String,
        /// What was wrong with it.
        detail: String,
    },
    /// No process with the recorded pid runs.
    #[error("vm {vm}: no vmm process with pid {pid} is running")]
    NotRunning {
        /// The VM.
        vm: String,
        /// The recorded pid.
        pid: i32,
    },
    /// The recorded pid now belongs to another process.
    #[error("vm {vm}: pid {pid} was reused (start time {found}, recorded {expected})")]
    IdentityMismatch {
        /// The VM.
        vm: String,
        /// The pid.
        pid: i32,
        /// Recorded start time.
        expected: u64,
        /// Current start time.
        found: u64,
    },
    /// The VM is not in a state that allows the operation.
    #[error("vm {vm}: cannot {operation} while {state}")]
    InvalidState {
        /// The VM.
        vm: String,
        /// The operation.
        operation: &'static str,
        /// The current state.
        state: String,
    },
    /// The operation is not available for this backend or host.
    #[error("vm {vm}: {operation} is not supported: {reason}")]
    Unsupported {
        /// The VM.
        vm: String,
        /// The operation.
        operation: &'static str,
        /// Why.
        reason: String,
    },
}

impl Classify for VmmError {
    fn kind(&self) -> ErrorKind {
        match self {
            VmmError::Io { source, .. } | VmmError::Spawn { source, .. } => {
                ErrorKind::from_io(source)
            }
            VmmError::InvalidConfig { .. } => ErrorKind::InvalidArgument,
            VmmError::Exited { .. } => ErrorKind::GuestFailure,
            VmmError::Timeout { .. } => ErrorKind::Timeout,
            VmmError::Api { status, .. } if *status < 500 => ErrorKind::InvalidArgument,
            VmmError::Api { .. } | VmmError::Qmp { .. } | VmmError::Protocol { .. } => {
                ErrorKind::HostFailure
            }
            VmmError::NotRunning { .. } | VmmError::IdentityMismatch { .. } => ErrorKind::NotFound,
            VmmError::InvalidState { .. } => ErrorKind::InvalidState,
            VmmError::Unsupported { .. } => ErrorKind::Unsupported,
        }
    }
}

/// What the VMM reports about its guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmStatus {
    /// Configured, guest not started yet.
    NotStarted,
    /// The guest runs.
    Running,
    /// The guest's vCPUs are stopped.
    Paused,
    /// The VMM is receiving a snapshot.
    Restoring,
    /// The guest shut down; the VMM is exiting.
    ShuttingDown,
    /// The VMM process has ended.
    Exited(ExitStatus),
    /// A state this module does not model (the VMM's own word).
    Other(String),
}

/// How a graceful shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownOutcome {
    /// The guest powered off within the grace period.
    Graceful(ExitStatus),
    /// The guest did not; the VMM was stopped or killed.
    Forced(ExitStatus),
}

/// Files of a VM snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// The backend that wrote it (snapshots are not portable).
    pub backend: BackendKind,
    /// Device and vCPU state (QEMU: the whole migration stream).
    pub state_file: PathBuf,
    /// Guest memory, when the backend stores it separately (Firecracker).
    pub memory_file: Option<PathBuf>,
}

/// A VMM backend: launches VMs, restores them, re-attaches to running ones.
#[async_trait::async_trait]
pub trait Vmm: Send + Sync + std::fmt::Debug {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// Starts the VMM for `config` and returns once it is ready and the
    /// guest has been started (the guest's own boot is the caller's to
    /// wait for, e.g. through its agent).
    async fn launch(&self, config: &VmConfig) -> Result<Box<dyn Vm>>;

    /// Starts a new VMM from `snapshot`, taken from a VM with the same
    /// `config`; with `resume` the guest continues at once, else it stays paused.
    async fn restore(
        &self,
        config: &VmConfig,
        snapshot: &Snapshot,
        resume: bool,
    ) -> Result<Box<dyn Vm>>;

    /// Finds a VM launched earlier (by any process) from its recorded identity.
    async fn attach(&self, config: &VmConfig, identity: VmIdentity) -> Result<Box<dyn Vm>>;

    /// The VMM's version, as its binary prints it first in `--version`
    /// (`Firecracker v1.14.4`, `QEMU emulator version 7.2.19 (...)`). Record
    /// it with a snapshot (`SuspendInfo.vmm_version`): only the same
    /// version is sure to load it, so compare before [`Vmm::restore`]. Asked
    /// once per binary file (again after it changes), within the call timeout.
    async fn version(&self) -> Result<String>;
}

/// The directory the `kind` backend jails `config`'s VMM in, if it does:
/// QEMU's `<chroot_base>/qemu/<jail id>`, the jailer's `<chroot_base>/<name
/// of the firecracker binary>/<jail id>` (removed by [`remove_jail`] once the
/// VMM is gone).
pub fn jail_dir(
    kind: BackendKind,
    vmm: &crate::config::VmmConfig,
    config: &VmConfig,
) -> Option<PathBuf> {
    let jail = config.jail.as_ref()?;
    let name = match kind {
        BackendKind::Qemu => std::ffi::OsStr::new(qemu::JAIL_NAME),
        BackendKind::Firecracker => vmm.firecracker.binary.file_name()?,
    };
    Some(jail.chroot_base.join(name).join(&jail.id))
}

/// A running VM. Dropping the handle leaves the VM running.
#[async_trait::async_trait]
pub trait Vm: Send + Sync + std::fmt::Debug {
    /// The configuration it was launched from.
    fn config(&self) -> &VmConfig;

    /// The supervised VMM process.
    fn process(&self) -> &VmProcess;

    /// Pid and start time, for the registry.
    fn identity(&self) -> VmIdentity {
        self.process().identity()
    }

    /// Asks the VMM what the guest is doing.
    async fn status(&self) -> Result<VmStatus>;

    /// Stops the guest's vCPUs.
    async fn pause(&self) -> Result<()>;

    /// Continues a paused guest.
    async fn resume(&self) -> Result<()>;

    /// Writes a snapshot of the paused guest to `config.paths.snapshot_dir`.
    /// The VM stays paused; kill it or resume it afterwards.
    async fn snapshot(&self) -> Result<Snapshot>;

    /// Asks the guest to power off, waits up to `grace`, then stops the
    /// VMM by force. Removes the control socket.
    async fn shutdown(&self, grace: Duration) -> Result<ShutdownOutcome>;

    /// Kills the VMM's process group and removes the control socket.
    async fn kill(&self) -> Result<ExitStatus>;
}

/// What every backend's `snapshot` checks first: the VM is paused; returns
/// its snapshot directory, created.
pub(crate) async fn snapshot_dir_of_paused(vm: &dyn Vm) -> Result<&std::path::Path> {
    let status = vm.status().await?;
    if status != VmStatus::Paused {
        return Err(VmmError::InvalidState {
            vm: vm.config().vm_id.clone(),
            operation: "snapshot",
            state: format!("{status:?}").to_lowercase(),
        });
    }
    let dir = &vm.config().paths.snapshot_dir;
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| VmmError::Io {
            context: format!("cannot create snapshot directory {}", dir.display()),
            source,
        })?;
    Ok(dir)
}

/// Removes a control socket left behind by a dead VMM (absent is fine).
pub(crate) fn remove_socket(vm: &str, path: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(VmmError::Io {
            context: format!("vm {vm}: cannot remove socket {}", path.display()),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// The backend the host configuration asks for; see [`choose_backend`].
pub fn backend_for(config: &crate::config::Config) -> Box<dyn Vmm> {
    backend(choose_backend(config), config)
}

/// The backend of `kind`, with the host configuration's settings.
pub fn backend(kind: BackendKind, config: &crate::config::Config) -> Box<dyn Vmm> {
    match kind {
        BackendKind::Firecracker => Box::new(firecracker::FirecrackerVmm::new(
            firecracker::FirecrackerSettings::from_config(&config.vmm),
        )),
        BackendKind::Qemu => Box::new(qemu::QemuVmm::new(qemu::QemuSettings::from_config(
            &config.vmm,
            &config.paths.kernel,
        ))),
    }
}

/// Which backend the host configuration asks for; `auto` is resolved by
/// [`auto_backend`] with the host's [`kvm_runs_guests`] probe.
pub fn choose_backend(config: &crate::config::Config) -> BackendKind {
    match config.vmm.backend.kind() {
        Some(kind) => kind,
        None => auto_backend(config, || kvm_runs_guests(config)),
    }
}

/// What `auto` picks: Firecracker when its binary exists and `kvm` (asked
/// only then) finds that KVM really runs guests, else QEMU. The choice is
/// logged.
pub fn auto_backend(
    config: &crate::config::Config,
    kvm: impl FnOnce() -> Result<(), String>,
) -> BackendKind {
    let Some(binary) = crate::base::find_program(&config.vmm.firecracker.binary) else {
        tracing::info!(firecracker = %config.vmm.firecracker.binary.display(), "vmm backend: qemu (no firecracker binary)");
        return BackendKind::Qemu;
    };
    match kvm() {
        Ok(()) => {
            tracing::info!(binary = %binary.display(), "vmm backend: firecracker");
            BackendKind::Firecracker
        }
        Err(kvm) => {
            tracing::info!(%kvm, "vmm backend: qemu (kvm does not run guests)");
            BackendKind::Qemu
        }
    }
}

/// Whether KVM really runs guests here: the boot probe of [`qemu::accel`]
/// where QEMU is installed, else the KVM_RUN probe alone.
pub fn kvm_runs_guests(config: &crate::config::Config) -> Result<(), String> {
    match crate::base::find_program(&config.vmm.qemu.binary) {
        Some(qemu) => qemu::accel::kvm_usable(&qemu, &config.paths.kernel),
        None => crate::sys::kvm::probe_kvm_runs_guest().map_err(|e| e.to_string()),
    }
}
