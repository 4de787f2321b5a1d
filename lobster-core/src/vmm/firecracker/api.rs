//! Firecracker API bodies (v1.16.1), as typed structs. Optional fields are
//! left out when unset, as Firecracker expects; names and enums follow the
//! pinned spec in `spec/`, which the contract tests check every body against.

use serde::{Deserialize, Serialize};

/// `PUT /machine-config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineConfig {
    /// vCPUs, 1..=32.
    pub vcpu_count: u8,
    /// Memory in MiB.
    pub mem_size_mib: u32,
    /// Simultaneous multithreading.
    pub smt: bool,
    /// Needed for diff snapshots.
    pub track_dirty_pages: bool,
}

/// `PUT /boot-source`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootSource {
    /// Kernel (uncompressed ELF) as Firecracker sees it.
    pub kernel_image_path: String,
    /// Initramfs as Firecracker sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd_path: Option<String>,
    /// Kernel command line.
    pub boot_args: String,
}

/// A token bucket (`TokenBucket`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBucket {
    /// Bucket size.
    pub size: u64,
    /// Extra initial burst.
    pub one_time_burst: u64,
    /// Refill time in ms.
    pub refill_time: u64,
}

/// `RateLimiter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimiter {
    /// Bytes bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<TokenBucket>,
    /// Operations bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops: Option<TokenBucket>,
}

/// `PUT /drives/{drive_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drive {
    /// Drive id (also in the path).
    pub drive_id: String,
    /// Backing file as Firecracker sees it.
    pub path_on_host: String,
    /// Boot from it (lobster boots from the initramfs: always false).
    pub is_root_device: bool,
    /// Read-only.
    pub is_read_only: bool,
    /// I/O limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limiter: Option<RateLimiter>,
}

/// `PUT /network-interfaces/{iface_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    /// Interface id (also in the path).
    pub iface_id: String,
    /// Host TAP device.
    pub host_dev_name: String,
    /// Guest MAC.
    pub guest_mac: String,
    /// Receive limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_rate_limiter: Option<RateLimiter>,
    /// Transmit limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_rate_limiter: Option<RateLimiter>,
}

/// Log levels of `PUT /logger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warning,
    /// Informational.
    Info,
    /// Debug.
    Debug,
    /// Trace.
    Trace,
    /// Nothing.
    Off,
}

/// `PUT /logger`. Without `log_path` Firecracker logs to its stdout, which
/// lobster already sends to the capped console log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logger {
    /// Level.
    pub level: LogLevel,
    /// File or FIFO for the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_path: Option<String>,
    /// Prefix lines with the level.
    pub show_level: bool,
    /// Prefix lines with file:line.
    pub show_log_origin: bool,
}

/// `PUT /metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// File or FIFO the JSON metrics are flushed to.
    pub metrics_path: String,
}

/// `PUT /entropy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entropy {
    /// Limits on the guest's draw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limiter: Option<RateLimiter>,
}

/// `PUT /balloon`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balloon {
    /// Target balloon size in MiB.
    pub amount_mib: u32,
    /// Deflate when the guest runs out of memory.
    pub deflate_on_oom: bool,
    /// Statistics interval in seconds (0: off).
    pub stats_polling_interval_s: u32,
}

/// `PUT /actions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionType {
    /// Boot the guest.
    InstanceStart,
    /// Press Ctrl+Alt+Del (x86): the guest reboots, Firecracker exits.
    SendCtrlAltDel,
    /// Write metrics now.
    FlushMetrics,
}

/// `PUT /actions` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceAction {
    /// The action.
    pub action_type: ActionType,
}

/// `PATCH /vm` states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmState {
    /// Stop the vCPUs.
    Paused,
    /// Continue.
    Resumed,
}

/// `PATCH /vm` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmStateChange {
    /// The new state.
    pub state: VmState,
}

/// `PUT /snapshot/create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotCreate {
    /// Device/vCPU state file.
    pub snapshot_path: String,
    /// Guest memory file.
    pub mem_file_path: String,
    /// `Full` (lobster does not use diff snapshots).
    pub snapshot_type: String,
}

/// `mem_backend` of `PUT /snapshot/load`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryBackend {
    /// `File`.
    pub backend_type: String,
    /// The memory file.
    pub backend_path: String,
}

/// `network_overrides` item of `PUT /snapshot/load`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkOverride {
    /// Interface id.
    pub iface_id: String,
    /// TAP to use instead of the one recorded in the snapshot.
    pub host_dev_name: String,
}

/// `PUT /snapshot/load`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotLoad {
    /// Device/vCPU state file.
    pub snapshot_path: String,
    /// Where guest memory comes from.
    pub mem_backend: MemoryBackend,
    /// Resume at once.
    pub resume_vm: bool,
    /// TAP name changes since the snapshot.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_overrides: Vec<NetworkOverride>,
}

/// `GET /` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// "Firecracker".
    pub app_name: String,
    /// The `--id`.
    pub id: String,
    /// `Not started`, `Running` or `Paused`.
    pub state: String,
    /// Firecracker's version.
    pub vmm_version: String,
}

impl From<crate::vmm::TokenBucket> for TokenBucket {
    fn from(b: crate::vmm::TokenBucket) -> TokenBucket {
        TokenBucket {
            size: b.size,
            one_time_burst: b.one_time_burst,
            refill_time: b.refill_time_ms,
        }
    }
}

impl From<crate::vmm::RateLimiter> for RateLimiter {
    fn from(l: crate::vmm::RateLimiter) -> RateLimiter {
        RateLimiter {
            bandwidth: l.bandwidth.map(Into::into),
            ops: l.ops.map(Into::into),
        }
    }
}
