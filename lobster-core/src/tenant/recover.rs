//! Recovery at the start of every mutating command: a spawn or evict whose
//! process died midway is finished (torn down), so nothing it made outlives
//! it. A `running` tenant whose VM died stays `running` (what should run):
//! bringing it back is the health checks' job (`molt`, `watch`).

use crate::context::Context;
use crate::error::Result;
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

/// Finishes interrupted spawns and evicts.
/// Returns the names it tore down.
pub(crate) async fn recover(context: &Context) -> Result<Vec<String>> {
    let registry = context.registry().await?;
    let mut torn_down = Vec::new();
    for record in registry.tenants.values() {
        if interrupted(record) {
            tracing::warn!(tenant = %record.name, status = %record.status, "finishing an interrupted operation");
            let services = context.services().await?;
            // Another process may be finishing it at the same time; the
            // teardown is idempotent and a release of a released entry is fine.
            if finish(context, &services, record, EvictOptions::default())
                .await
                .is_ok()
            {
                torn_down.push(record.name.clone());
            }
        }
    }
    Ok(torn_down)
}
