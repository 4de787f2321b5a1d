//! Recovery at the start of every mutating command: a spawn or evict whose
//! process died midway is finished (torn down), so nothing it made outlives
//! it. A `running` tenant whose VM died stays `running` (what should run):
//! bringing it back is the health checks' job (`molt`, `watch`).

use crate::context::Context;
use crate::error::{Error, Result};
use crate::store::{Registry, TenantRecord, TenantStatus};

use super::evict::{finish, EvictOptions};

/// Whether [`recover`] has anything to do for `registry`.
pub(crate) fn needs_recovery(registry: &Registry) -> bool {
    registry.tenants.values().any(interrupted)
}

fn interrupted(record: &TenantRecord) -> bool {
    matches!(
        record.status,
        TenantStatus::Creating | TenantStatus::Evicting
    ) && record.owner.is_some_and(|owner| !owner.is_alive())
}

/// What [`crate::Host::recover`] did.
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
pub(crate) async fn recover(context: &Context) -> Result<RecoverReport> {
    let registry = context.registry().await?;
    let mut report = RecoverReport::default();
    for record in registry.tenants.values() {
        if interrupted(record) {
            tracing::warn!(tenant = %record.name, status = %record.status, "finishing an interrupted operation");
            let services = context.services().await?;
            // Another process may be finishing it at the same time; the
            // teardown is idempotent and a release of a released entry is fine.
            match finish(context, &services, record, EvictOptions::default()).await {
                Ok(()) => report.torn_down.push(record.name.clone()),
                Err(err) => {
                    tracing::warn!(tenant = %record.name, error = %err.chain(), "cannot finish the interrupted operation");
                    report.failed.push((record.name.clone(), err))
                }
            }
        }
    }
    Ok(report)
}
