//! Recovery at the start of every mutating command: a spawn or evict whose
//! process died midway is finished (torn down), so nothing it made outlives
//! it. A `running` tenant whose VM died stays `running` (what should run):
//! bringing it back is the health checks' job (`molt`, `watch`).

use crate::error::{Error, Result};
use crate::host::Host;
use crate::store::TenantStatus;
use crate::vmm::process::read_start_time;

use super::evict::{finish, EvictOptions};

/// Whether [`recover`] has anything to do for `registry`.
pub(crate) fn needs_recovery(registry: &crate::store::Registry) -> bool {
    registry.tenants.values().any(interrupted)
}

fn interrupted(record: &crate::store::TenantRecord) -> bool {
    matches!(
        record.status,
        TenantStatus::Creating | TenantStatus::Evicting
    ) && record.owner.is_some_and(|owner| !alive(owner))
}

/// What [`Host::recover`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct RecoverReport {
    /// Tenants torn down and released.
    pub torn_down: Vec<String>,
    /// Tenants whose teardown failed, with the error; each stays `evicting`
    /// with the failures in its `last_error` until it is evicted again.
    pub failed: Vec<(String, Error)>,
}

/// Finishes interrupted spawns and evicts, and reports each outcome.
pub(crate) async fn recover(host: &Host) -> Result<RecoverReport> {
    let registry = crate::host::blocking({
        let store = host.store().clone();
        move || Ok(store.read()?)
    })
    .await?;
    let mut report = RecoverReport::default();
    for record in registry.tenants.values() {
        if interrupted(record) {
            tracing::warn!(tenant = %record.name, status = %record.status, "finishing an interrupted operation");
            let services = host.services().await?;
            // Another process may be finishing it at the same time; the
            // teardown is idempotent and a release of a released entry is fine.
            match finish(host, &services, record, EvictOptions::default()).await {
                Ok(()) => report.torn_down.push(record.name.clone()),
                Err(err) => report.failed.push((record.name.clone(), err)),
            }
        }
    }
    Ok(report)
}

/// Whether the process `identity` names still runs (pid and start time
/// match, and it is not a zombie waiting to be reaped).
pub(crate) fn alive(identity: crate::vmm::VmIdentity) -> bool {
    let zombie = std::fs::read_to_string(format!("/proc/{}/stat", identity.pid))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false);
    !zombie && read_start_time(identity.pid).is_ok_and(|t| t == identity.start_time)
}
