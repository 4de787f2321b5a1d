//! Recovery at the start of every mutating command: a spawn or evict whose
//! process died midway is finished (torn down), so nothing it made outlives
//! it; a tenant whose VM process is gone is marked `stopped`.

use crate::error::Result;
use crate::host::Host;
use crate::store::TenantStatus;
use crate::vmm::process::read_start_time;

use super::evict::{finish, EvictOptions};

/// Whether [`recover`] has anything to do for `registry`.
pub(crate) fn needs_recovery(registry: &crate::store::Registry) -> bool {
    registry
        .tenants
        .values()
        .any(|r| interrupted(r) || vm_dead(r))
}

fn interrupted(record: &crate::store::TenantRecord) -> bool {
    matches!(
        record.status,
        TenantStatus::Creating | TenantStatus::Evicting
    ) && record
        .owner
        .is_some_and(|owner| !alive(owner.pid, owner.start_time))
}

fn vm_dead(record: &crate::store::TenantRecord) -> bool {
    record.status == TenantStatus::Running
        && record
            .vm
            .is_some_and(|vm| !alive(vm.identity.pid, vm.identity.start_time))
}

/// Finishes interrupted spawns and evicts; marks tenants whose VM died.
/// Returns the names it tore down.
pub(crate) async fn recover(host: &Host) -> Result<Vec<String>> {
    let registry = crate::host::blocking({
        let store = host.store().clone();
        move || Ok(store.read()?)
    })
    .await?;
    let mut torn_down = Vec::new();
    for record in registry.tenants.values() {
        let interrupted = matches!(
            record.status,
            TenantStatus::Creating | TenantStatus::Evicting
        ) && record
            .owner
            .is_some_and(|owner| !alive(owner.pid, owner.start_time));
        if interrupted {
            tracing::warn!(tenant = %record.name, status = %record.status, "finishing an interrupted operation");
            let services = host.services().await?;
            // Another process may be finishing it at the same time; the
            // teardown is idempotent and a release of a released entry is fine.
            if finish(host, &services, record, EvictOptions::default())
                .await
                .is_ok()
            {
                torn_down.push(record.name.clone());
            }
            continue;
        }
        let vm_dead = record.status == TenantStatus::Running
            && record
                .vm
                .is_some_and(|vm| !alive(vm.identity.pid, vm.identity.start_time));
        if vm_dead {
            let name = record.name.clone();
            crate::host::blocking({
                let store = host.store().clone();
                move || {
                    Ok(store
                        .modify(&name, |r| {
                            r.status = TenantStatus::Stopped;
                            r.last_error = Some("the VM process is gone".into());
                        })
                        .map(|_| ())?)
                }
            })
            .await?;
        }
    }
    Ok(torn_down)
}

fn alive(pid: i32, start_time: u64) -> bool {
    read_start_time(pid).is_ok_and(|t| t == start_time)
}
