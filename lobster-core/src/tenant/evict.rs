//! Evicting a tenant: an idempotent teardown of everything it holds.
//!
//! Every step runs even if an earlier one failed, and "already gone" counts
//! as done, so evicting twice, or evicting what a killed spawn left behind,
//! is safe. The registry entry (and with it the tenant's slot) is released
//! only when every step succeeded; otherwise the tenant stays `evicting`
//! with the failures recorded, and evicting again retries.

use std::path::Path;

use crate::base::blocking;
use crate::context::{Context, Services};
use crate::error::{Error, Result};
use crate::proxy::ProxyError;
use crate::store::{StoreError, TenantRecord, TenantStatus};

use super::plan;
use super::{current_process, TenantError};

/// What evict may keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvictOptions {
    /// Leave the overlay disk in place.
    pub keep_overlay: bool,
}

/// Runs an evict; see the module docs.
pub(crate) async fn evict(context: &Context, name: &str, options: EvictOptions) -> Result<()> {
    refuse_while_spawning(&context.record(name).await?)?;
    let _lock = super::lock(context, name, super::OPERATION_LOCK_WAIT).await?;
    // Re-read under the lock: the tenant may be gone or changed meanwhile.
    refuse_while_spawning(&context.record(name).await?)?;
    let owner = current_process()?;
    let record = context
        .modify(name, move |r| {
            r.status = TenantStatus::Evicting;
            r.owner = Some(owner);
        })
        .await?;
    let services = context.services().await?;
    finish(context, &services, &record, options).await
}

/// A `creating` tenant whose spawner lives is that spawn's: it ends
/// `running` or rolls back by itself. Evicting it under the spawn would
/// tear down what the spawn is still building.
fn refuse_while_spawning(record: &TenantRecord) -> Result<()> {
    match record.owner {
        Some(owner) if record.status == TenantStatus::Creating && owner.is_alive() => {
            Err(TenantError::Spawning {
                name: record.name.clone(),
                pid: owner.pid,
            }
            .into())
        }
        _ => Ok(()),
    }
}

/// Tears down `record` and releases it, or records why it could not.
pub(crate) async fn finish(
    context: &Context,
    services: &Services,
    record: &TenantRecord,
    options: EvictOptions,
) -> Result<()> {
    let failures = teardown(context, services, record, options).await;
    if failures.is_empty() {
        let store = context.store().clone();
        let name = record.name.clone();
        blocking(move || match store.release(&name) {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        })
        .await?;
        tracing::info!(tenant = %record.name, "evicted");
        return Ok(());
    }
    let summary: Vec<String> = failures
        .iter()
        .map(|(step, err)| format!("{step}: {}", err.chain()))
        .collect();
    let last_error = format!("evict incomplete: {}", summary.join("; "));
    context
        .modify(&record.name, |r| {
            r.owner = None;
            r.last_error = Some(last_error);
        })
        .await?;
    Err(TenantError::EvictIncomplete {
        name: record.name.clone(),
        failures: summary,
    }
    .into())
}

/// Removes everything of `record` from the host, keeping going past
/// failures; returns them by step.
async fn teardown(
    context: &Context,
    services: &Services,
    record: &TenantRecord,
    options: EvictOptions,
) -> Vec<(&'static str, Error)> {
    let config = context.config();
    let mut failures: Vec<(&'static str, Error)> = Vec::new();
    let mut check = |step: &'static str, result: Result<()>| {
        if let Err(err) = result {
            tracing::warn!(tenant = %record.name, step, error = %err.chain(), "teardown step failed");
            failures.push((step, err));
        }
    };

    // A Caddy that is down serves no routes, and none of the ways lobster
    // starts one resumes an old config: its routes are gone with it.
    let route = match services.routes.remove_route(&record.name).await {
        Err(ProxyError::Unreachable { admin, .. }) => {
            tracing::warn!(tenant = %record.name, %admin, "proxy is down; no route to remove");
            Ok(())
        }
        other => other.map(|_| ()).map_err(Error::from),
    };
    check("route", route);

    // The VMM is found by identity: the recorded process, and whatever
    // runs in the tenant's cgroup. Its jail and cgroup go with it.
    let (kind, vm_config) = plan::vm(config, record, services.default_backend);
    let recorded = record.vm.map(|vm| vm.identity);
    let stopped = crate::vmm::stop_recorded(&vm_config, recorded).await;
    let vm_confirmed_dead = stopped.is_ok();
    let jail_dir = crate::vmm::jail_dir(kind, &config.vmm, &vm_config);
    let jail = match (stopped, jail_dir) {
        (Ok(()), Some(dir)) => {
            let vm_config = vm_config.clone();
            blocking(move || Ok(crate::vmm::remove_jail(&vm_config, &dir)?)).await
        }
        (stopped, _) => stopped.map_err(Error::from),
    };
    check("vm", jail);
    if !vm_confirmed_dead {
        // The VM may still run: its rules, TAP and disk stay until a later
        // evict confirms it dead (the watchdog's reconcile keeps the rules
        // of an evicting tenant likewise).
        tracing::warn!(tenant = %record.name, "vm not confirmed dead; network, rules and disk kept");
        return failures;
    }

    match plan::tenant_net(record) {
        Ok(net) => {
            let firewall = services.firewall.clone();
            let fw_net = net.clone();
            check(
                "firewall",
                blocking(move || Ok(firewall.remove_tenant(&fw_net)?)).await,
            );
            check(
                "network",
                services.network.remove(&net).await.map_err(Error::from),
            );
        }
        Err(e) => check("network", Err(e.into())),
    }

    if !options.keep_overlay {
        let overlay = plan::overlay(config, record);
        check("overlay", blocking(move || Ok(overlay.remove()?)).await);
    }
    let files = vm_config.paths.clone();
    check(
        "files",
        blocking(move || {
            for path in [&files.api_socket, &files.console_log] {
                remove_file(path)?;
            }
            match std::fs::remove_dir_all(&files.snapshot_dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(io(&files.snapshot_dir, e))
                }
                _ => Ok(()),
            }
        })
        .await,
    );
    failures
}

/// Removes `path`; absent is success.
pub(super) fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path, e)),
        _ => Ok(()),
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    TenantError::Io {
        context: "cannot remove",
        path: path.to_path_buf(),
        source,
    }
    .into()
}
