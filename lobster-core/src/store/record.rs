//! What the registry holds per tenant.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::config::{Backend, TenantLimits};
use crate::vmm::{BackendKind, VmIdentity};

/// Lifecycle state of a tenant, persisted in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Spawn is in progress (or was interrupted: the next command cleans up).
    Creating,
    /// The VM runs and the route is in place.
    Running,
    /// Snapshotted to disk; holds no RAM.
    Suspended,
    /// Not running, not suspended (stopped by an operator or died).
    Stopped,
    /// Repair gave up; see `last_error`.
    Failed,
    /// Teardown is in progress (or was interrupted: evict again).
    Evicting,
}

impl TenantStatus {
    /// The snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Creating => "creating",
            TenantStatus::Running => "running",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Stopped => "stopped",
            TenantStatus::Failed => "failed",
            TenantStatus::Evicting => "evicting",
        }
    }
}

impl std::fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Resources a tenant holds, all derived from its slot. Released by evict,
/// reused by a later spawn, never handed out twice while held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    /// Index into the pool; every other value below derives from it.
    pub slot: u32,
    /// The tenant's /30 network address.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Ipv4))]
    pub subnet: Ipv4Addr,
    /// Host side of the /30 (`subnet + 1`), on the TAP.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Ipv4))]
    pub host_ip: Ipv4Addr,
    /// Guest side of the /30 (`subnet + 2`).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Ipv4))]
    pub guest_ip: Ipv4Addr,
    /// Guest NIC MAC: `06:00:` followed by the guest IPv4 bytes.
    pub mac: String,
    /// Host TAP device name, derived from the tenant id (at most 15 bytes).
    pub tap: String,
    /// Host TCP port reserved for the tenant (optional public DNAT).
    pub host_port: u16,
    /// Uid and gid of the tenant's VMM process.
    pub jail_uid: u32,
}

/// Sizes and backend of one tenant, fixed at spawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Virtual CPUs.
    pub vcpus: u8,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Overlay disk size in MiB.
    pub overlay_size_mib: u32,
    /// VMM backend; `None` follows the host configuration.
    pub backend: Option<Backend>,
    /// Disk and network rates; `None` (a record from before limits) follows
    /// the host's `tenant_defaults.limits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TenantLimits>,
    /// Idle time after which the watchdog suspends it, in seconds (0:
    /// never); `None` follows the host's `watchdog.idle_suspend_after_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_suspend_after_s: Option<u32>,
}

/// The persisted record of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRecord {
    /// Unique tenant name (a DNS label).
    pub name: String,
    /// Short random id (8 hex digits); names interfaces and jail directories.
    pub id: String,
    /// Lifecycle state.
    pub status: TenantStatus,
    /// Sizes and backend.
    pub resources: Resources,
    /// Held network and identity resources.
    pub allocation: Allocation,
    /// Seconds since the Unix epoch when the tenant was created.
    pub created_at: u64,
    /// Token the host presents to the in-guest agent.
    pub agent_token: String,
    /// The agent token a rotation is handing to the guest: recorded before
    /// the guest is told, made current once it has it. While set, the guest
    /// accepts one of the two (see `lobsterd token --rotate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_token_next: Option<String>,
    /// Token clients present to the tenant's gateway.
    pub gateway_token: String,
    /// The workload the agent runs (empty command: the OpenClaw gateway).
    #[serde(default)]
    pub workload: Workload,
    /// The running VM's identity, when one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<RunningVm>,
    /// The process in the middle of spawning or evicting this tenant; if it
    /// died, the next command finishes the job (teardown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<VmIdentity>,
    /// Why the tenant is `failed` (or what the last operation reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// What a resume needs, while the tenant is `suspended`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<SuspendInfo>,
}

/// A suspended tenant's snapshot and when to wake it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspendInfo {
    /// Seconds since the Unix epoch when it was suspended.
    pub at: u64,
    /// The snapshot's files (in the tenant's snapshot directory).
    pub snapshot: crate::vmm::Snapshot,
    /// The VMM version that wrote it (a different one may not load it).
    pub vmm_version: String,
    /// When the watchdog wakes it ahead of a scheduled job, in milliseconds
    /// since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at_ms: Option<u64>,
}

/// Enough to find and verify a tenant's VM process from another process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RunningVm {
    /// Backend that runs it.
    pub backend: BackendKind,
    /// Process id and start time of the VMM (against PID reuse).
    pub identity: VmIdentity,
}

/// The workload a tenant's agent runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// argv; empty means the OpenClaw gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Non-secret environment variables.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub env: std::collections::BTreeMap<String, String>,
}

/// A `running` record of `name` in slot 1 (1 vCPU, 256 MiB, a 512 MiB
/// overlay, no VM), for unit tests to adjust.
#[cfg(test)]
pub(crate) fn sample(name: &str) -> TenantRecord {
    TenantRecord {
        allocation: super::allocation_for(&crate::config::Config::default(), 1, "0000abcd"),
        name: name.into(),
        id: "0000abcd".into(),
        status: TenantStatus::Running,
        resources: Resources {
            vcpus: 1,
            memory_mib: 256,
            overlay_size_mib: 512,
            backend: None,
            limits: None,
            idle_suspend_after_s: None,
        },
        created_at: 0,
        agent_token: String::new(),
        agent_token_next: None,
        gateway_token: String::new(),
        workload: Default::default(),
        vm: None,
        owner: None,
        last_error: None,
        suspended: None,
    }
}
