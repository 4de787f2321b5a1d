//! Recovery at the start of every mutating command: a spawn or evict whose
//! process died midway is finished (torn down), so nothing it made outlives
//! it; a suspend or resume whose process died leaves the tenant `running`
//! or `suspended`-and-resumable, with no orphan VMM (see `suspend.rs`). A
//! `running` tenant whose VM died stays `running` (what should run):
//! bringing it back is the health checks' job (`molt`, `watch`).

use std::time::Duration;

use crate::context::{Context, Services};
use crate::error::{Error, Result};
use crate::store::{Registry, StoreError, TenantRecord, TenantStatus};

use super::evict::{finish, EvictOptions};
use super::resume::recover_resume;
use super::suspend::recover_suspend;

/// Whether [`recover`] has anything to do for `registry`.
pub(crate) fn needs_recovery(registry: &Registry) -> bool {
    registry.tenants.values().any(interrupted)
}

/// Whether a process died while spawning, evicting, suspending (the
/// tenant is `running` with an owner) or resuming (`suspended` with one) it.
fn interrupted(record: &TenantRecord) -> bool {
    matches!(
        record.status,
        TenantStatus::Creating
            | TenantStatus::Evicting
            | TenantStatus::Running
            | TenantStatus::Suspended
    ) && record.owner.is_some_and(|owner| !owner.is_alive())
}

/// What [`crate::Host::recover`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct RecoverReport {
    /// Tenants torn down and released.
    pub torn_down: Vec<String>,
    /// Interrupted suspends and resumes settled, with what was done.
    pub settled: Vec<(String, &'static str)>,
    /// Tenants whose teardown failed, with the error; each stays `evicting`
    /// with the failures in its `last_error` until it is evicted again.
    pub failed: Vec<(String, Error)>,
}

/// Finishes interrupted spawns and evicts, and reports each outcome.
///
/// Each is finished under its tenant's operation lock, on its record as
/// read under the lock: a tenant whose lock another process holds is left
/// to that process (a recover finishing it too), and a record that is no
/// longer interrupted (finished meanwhile, or a new tenant of the same
/// name) is left alone.
pub(crate) async fn recover(context: &Context) -> Result<RecoverReport> {
    let registry = context.registry().await?;
    let mut report = RecoverReport::default();
    for name in registry
        .tenants
        .values()
        .filter(|r| interrupted(r))
        .map(|r| r.name.clone())
    {
        let Some(_lock) = context.lock_tenant(&name, Duration::ZERO).await? else {
            tracing::debug!(tenant = %name, "another process holds it; it finishes it");
            continue;
        };
        let record = match context.record(&name).await {
            Ok(record) if interrupted(&record) => record,
            Ok(_) => continue,
            Err(Error::Store(StoreError::NotFound(_))) => continue,
            Err(err) => return Err(err),
        };
        tracing::warn!(tenant = %name, status = %record.status, "finishing an interrupted operation");
        let services = context.services().await?;
        let outcome = match record.status {
            TenantStatus::Running => recover_suspend(context, &services, &record).await,
            TenantStatus::Suspended => recover_resume(context, &services, &record).await,
            _ => finish(context, &services, &record, EvictOptions::default())
                .await
                .map(|()| ""),
        };
        match outcome {
            Ok("") => report.torn_down.push(name),
            Ok(what) => {
                tracing::warn!(tenant = %name, what, "settled an interrupted suspend or resume");
                put_route(context, &services, &name).await;
                report.settled.push((name, what))
            }
            Err(err) => {
                tracing::warn!(tenant = %name, error = %err.chain(), "cannot finish the interrupted operation");
                report.failed.push((name, err))
            }
        }
    }
    Ok(report)
}

/// Puts the route a settled tenant should have (to its guest, or to its
/// wake socket while suspended): the interrupted operation may have died
/// before it did. A failure is logged; the watchdog's reconcile retries.
async fn put_route(context: &Context, services: &Services, name: &str) {
    let put = async {
        let record = context.record(name).await?;
        super::put_planned_route(context.config(), services, &record).await
    };
    if let Err(e) = put.await {
        tracing::warn!(tenant = %name, error = %e.chain(), "cannot put the route of a settled tenant");
    }
}
