//! Tenants: the [`Tenant`] handle, the [`TenantSpec`] a spawn asks for, and
//! the lifecycle operations (one file each as they land).

mod awake;
mod boot;
mod copy;
mod evict;
mod exec;
pub mod openclaw;
pub mod plan;
pub mod progress;
mod recover;
mod resume;
pub mod rollback;
mod snap;
mod spawn;
mod spec;
mod suspend;
mod token;

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub(crate) use awake::awake_if;
pub use awake::{agent_of, awake, wake, GuestHold, HoldTiming};
pub use boot::{launch_on_disk, start_workload};
pub(crate) use copy::{copy_from_guest, copy_to_guest};
pub use copy::{CopySummary, HostOwner};
pub(crate) use evict::evict;
pub use evict::EvictOptions;
pub(crate) use exec::exec;
pub use exec::{ExecRequest, ExecRequestBuilder};
pub use recover::RecoverReport;
pub(crate) use recover::{needs_recovery, recover};
pub(crate) use resume::resume;
pub(crate) use snap::snap;
pub use snap::SnapReport;
pub(crate) use spawn::spawn;
pub use spawn::{wait_agent_ready, AGENT_READY_TIMEOUT};
pub use spec::{TenantSpec, TenantSpecBuilder};
pub(crate) use suspend::suspend;
pub(crate) use token::rotate as rotate_tokens;

use crate::base::{Classify, ErrorKind};
use crate::context::Context;
use crate::store::{Allocation, Resources, RunningVm, TenantLock, TenantRecord, TenantStatus};
use crate::vmm::VmIdentity;

/// Errors of tenant operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TenantError {
    /// A spec field is malformed or out of range.
    #[error("invalid tenant spec: field `{field}`: {reason}")]
    InvalidSpec {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A guest image the spawn needs is missing.
    #[error("{what} image {} is missing: build the guest images (guest/images/build.sh) and point paths.{what} at it", path.display())]
    MissingImage {
        /// `kernel`, `initrd` or `rootfs`.
        what: &'static str,
        /// The configured path.
        path: std::path::PathBuf,
    },
    /// A spawn failed; what it had done was rolled back.
    #[error("spawn of `{name}` failed at step {step} ({rollback})")]
    SpawnFailed {
        /// The tenant.
        name: String,
        /// The step that failed.
        step: &'static str,
        /// What the rollback did (`rolled back k/n steps`, cleanup failures).
        rollback: String,
        /// The original error.
        #[source]
        source: Box<crate::Error>,
    },
    /// Some teardown steps failed; the tenant stays `evicting` (evict again).
    #[error("evict of `{name}` is incomplete ({}); evict again to retry", failures.join("; "))]
    EvictIncomplete {
        /// The tenant.
        name: String,
        /// Each failed step with its error.
        failures: Vec<String>,
    },
    /// The operator declined a confirmation.
    #[error("{operation} aborted: not confirmed")]
    Aborted {
        /// The operation.
        operation: &'static str,
    },
    /// A file operation failed.
    #[error("{context} {}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another operation (repair, evict, snap) held the tenant too long.
    #[error("tenant `{name}` is busy: another operation held it for {}s", waited.as_secs())]
    Busy {
        /// The tenant.
        name: String,
        /// How long we waited.
        waited: std::time::Duration,
    },
    /// A token rotation stopped at `step`; the registry holds a token the
    /// guest accepts (see `lobsterd token --rotate`).
    #[error("token rotation of `{name}` failed at step {step}; run it again to finish it")]
    RotationFailed {
        /// The tenant.
        name: String,
        /// `settle`, `agent token` or `gateway token`.
        step: &'static str,
        /// The original error.
        #[source]
        source: Box<crate::Error>,
    },
    /// A spawn of the tenant is still running in another process.
    #[error("tenant `{name}` is being spawned by process {pid}; evict it once that spawn ends (a failed spawn rolls itself back; a killed one is torn down by the next command)")]
    Spawning {
        /// The tenant.
        name: String,
        /// The spawning process.
        pid: i32,
    },
    /// A suspend or resume failed at `step`; `outcome` says how the tenant
    /// was left.
    #[error("{operation} of `{name}` failed at step {step}; {outcome}")]
    StepFailed {
        /// `suspend` or `resume`.
        operation: &'static str,
        /// The tenant.
        name: String,
        /// The step that failed.
        step: &'static str,
        /// Where the tenant was left.
        outcome: String,
        /// The original error.
        #[source]
        source: Box<crate::Error>,
    },
    /// A suspended tenant's snapshot cannot be loaded.
    #[error("the snapshot of `{name}` cannot be loaded: {reason}")]
    SnapshotUnusable {
        /// The tenant.
        name: String,
        /// Why.
        reason: String,
    },
    /// A `snap` archive to restore from is not one, or not one we accept.
    #[error("invalid snap archive (from_snap) {}: {reason}", path.display())]
    InvalidArchive {
        /// The archive.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An exec request field is malformed.
    #[error("invalid exec request: field `{field}`: {reason}")]
    InvalidExec {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A copy request field is malformed.
    #[error("invalid copy request: field `{field}`: {reason}")]
    InvalidCopy {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An OpenClaw command in the guest (`configure`, `devices`).
    #[error(transparent)]
    OpenClaw(#[from] openclaw::OpenClawError),
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
}

impl Classify for TenantError {
    fn kind(&self) -> ErrorKind {
        match self {
            TenantError::InvalidSpec { .. }
            | TenantError::InvalidExec { .. }
            | TenantError::InvalidCopy { .. }
            | TenantError::InvalidArchive { .. } => ErrorKind::InvalidArgument,
            TenantError::InvalidState { .. } | TenantError::Spawning { .. } => {
                ErrorKind::InvalidState
            }
            TenantError::MissingImage { .. } => ErrorKind::NotFound,
            TenantError::OpenClaw(e) => e.kind(),
            TenantError::SnapshotUnusable { .. } => ErrorKind::GuestFailure,
            TenantError::SpawnFailed { source, .. }
            | TenantError::RotationFailed { source, .. }
            | TenantError::StepFailed { source, .. } => source.kind(),
            TenantError::EvictIncomplete { .. } => ErrorKind::HostFailure,
            TenantError::Io { source, .. } => ErrorKind::from_io(source),
            TenantError::Aborted { .. } => ErrorKind::InvalidArgument,
            TenantError::Busy { .. } => ErrorKind::Timeout,
        }
    }
}

/// Puts the Caddy route `record` should have now ([`plan::route`]: to its
/// guest, or to its wake socket while it is suspended).
pub(crate) async fn put_planned_route(
    config: &crate::config::Config,
    services: &crate::context::Services,
    record: &TenantRecord,
) -> crate::Result<()> {
    let route = plan::route(config, record)?;
    Ok(services.routes.put_route(&route).await.map(drop)?)
}

/// How long spawn, evict and snap wait for another operation on the same
/// tenant (a repair restarting its VM, an evict of the name's last tenant).
pub(crate) const OPERATION_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Takes tenant `name`'s operation lock, waiting at most `wait`.
pub(crate) async fn lock(
    context: &Context,
    name: &str,
    wait: std::time::Duration,
) -> crate::Result<TenantLock> {
    match context.lock_tenant(name, wait).await? {
        Some(lock) => Ok(lock),
        None => Err(TenantError::Busy {
            name: name.to_owned(),
            waited: wait,
        }
        .into()),
    }
}

/// This process's identity, recorded on records it is changing.
pub(crate) fn current_process() -> Result<VmIdentity, TenantError> {
    let pid = std::process::id() as i32;
    VmIdentity::of(pid).map_err(|source| TenantError::Io {
        context: "cannot read own start time from",
        path: format!("/proc/{pid}/stat").into(),
        source,
    })
}

/// Tenant `name` as the registry records it now.
pub(crate) async fn get(context: &Context, name: &str) -> crate::Result<Tenant> {
    let record = context.record(name).await?;
    Ok(Tenant::new(record, &context.config().domain))
}

/// Every tenant, sorted by name.
pub(crate) async fn list(context: &Context) -> crate::Result<Vec<Tenant>> {
    let registry = context.registry().await?;
    let domain = &context.config().domain;
    Ok(registry
        .tenants
        .into_values()
        .map(|r| Tenant::new(r, domain))
        .collect())
}

/// One tenant as the registry last recorded it. A snapshot: call
/// [`crate::Host::get`] again for fresh state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    record: TenantRecord,
    route: String,
}

impl Tenant {
    pub(crate) fn new(record: TenantRecord, domain: &str) -> Tenant {
        let route = format!("{}.{domain}", record.name);
        Tenant { record, route }
    }

    /// The tenant name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// Short id naming its interfaces and jail.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// Lifecycle state.
    pub fn status(&self) -> TenantStatus {
        self.record.status
    }

    /// Sizes and backend.
    pub fn resources(&self) -> &Resources {
        &self.record.resources
    }

    /// Addresses, MAC, TAP, port and uid it holds.
    pub fn allocation(&self) -> &Allocation {
        &self.record.allocation
    }

    /// The guest's address on its /30.
    pub fn guest_ip(&self) -> Ipv4Addr {
        self.record.allocation.guest_ip
    }

    /// The host name routed to it: `<name>.<domain>`.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The running VM, if any.
    pub fn vm(&self) -> Option<&RunningVm> {
        self.record.vm.as_ref()
    }

    /// Seconds since the Unix epoch at creation.
    pub fn created_at(&self) -> u64 {
        self.record.created_at
    }

    /// The token clients present to the tenant's gateway.
    pub fn gateway_token(&self) -> &str {
        &self.record.gateway_token
    }

    /// The whole persisted record, tokens included.
    pub fn record(&self) -> &TenantRecord {
        &self.record
    }
}

/// The JSON form of a tenant (`lobsterd list --json`, the HTTP API):
/// everything but the tokens. Clients of the API read it back with serde.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Tenant))]
pub struct TenantJson {
    /// Unique name (a DNS label).
    pub name: String,
    /// Short random id naming its interfaces and jail.
    pub id: String,
    /// Lifecycle state.
    pub status: TenantStatus,
    /// Where Caddy serves it (`<name>.<domain>`).
    pub route: String,
    /// Sizes and backend.
    pub resources: Resources,
    /// Addresses, MAC, TAP, port and uid it holds.
    pub allocation: Allocation,
    /// Seconds since the Unix epoch when it was created.
    pub created_at: u64,
    /// The running VM, when one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<RunningVm>,
    /// Why it is `failed` (or what the last operation reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl From<&Tenant> for TenantJson {
    fn from(tenant: &Tenant) -> Self {
        let r = &tenant.record;
        TenantJson {
            name: r.name.clone(),
            id: r.id.clone(),
            status: r.status,
            route: tenant.route.clone(),
            resources: r.resources.clone(),
            allocation: r.allocation.clone(),
            created_at: r.created_at,
            vm: r.vm,
            last_error: r.last_error.clone(),
        }
    }
}

/// The OpenAPI schema of [`Tenant`]'s JSON.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Tenant {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <TenantJson as utoipa::PartialSchema>::schema()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Tenant {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <TenantJson as utoipa::ToSchema>::schemas(schemas)
    }
}

impl Serialize for Tenant {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TenantJson::from(self).serialize(serializer)
    }
}

/// Suspends the running tenant `name` as `lobsterd suspend` does; the
/// watchdog's idle auto-suspend (which may name no crate-private item of
/// this module) goes through it.
pub async fn suspend_idle(context: &Context, name: &str) -> crate::Result<Tenant> {
    suspend(context, name, None).await
}
