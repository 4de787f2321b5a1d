//! Evicting a tenant: an idempotent teardown of everything it holds.
//!
//! Every step runs even if an earlier one failed, and "already gone" counts
//! as done, so evicting twice, or evicting what a killed spawn left behind,
//! is safe. The registry entry (and with it the tenant's slot) is released
//! only when every step succeeded; otherwise the tenant stays `evicting`
//! with the failures recorded, and evicting again retries.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::host::{backend_of, Host, Services};
use crate::proxy::ProxyError;
use crate::store::{StoreError, TenantRecord, TenantStatus};
use crate::vmm::{ConsoleLog, VmProcess, VmmError};

use super::plan;
use super::{current_process, TenantError};

/// How long a killed VMM may take to exit.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// What evict may keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvictOptions {
    /// Leave the overlay disk in place.
    pub keep_overlay: bool,
}

/// Runs an evict; see the module docs.
pub(crate) async fn evict(host: &Host, name: &str, options: EvictOptions) -> Result<()> {
    host.get(name).await?;
    let lock = super::lock(host, name, super::OPERATION_LOCK_WAIT).await?;
    let owner = current_process()?;
    let record = crate::host::blocking({
        let store = host.store().clone();
        let name = name.to_owned();
        move || {
            Ok(store.modify(&name, |r| {
                r.status = TenantStatus::Evicting;
                r.owner = Some(owner);
            })?)
        }
    })
    .await?;
    let services = host.services().await?;
    let outcome = finish(host, &services, &record, options).await;
    if outcome.is_ok() {
        lock.release_and_remove();
    }
    outcome
}

/// Tears down `record` and releases it, or records why it could not.
pub(crate) async fn finish(
    host: &Host,
    services: &Services,
    record: &TenantRecord,
    options: EvictOptions,
) -> Result<()> {
    let failures = teardown(host, services, record, options).await;
    let store = host.store().clone();
    let name = record.name.clone();
    if failures.is_empty() {
        crate::host::blocking(move || match store.release(&name) {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
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
    crate::host::blocking(move || {
        Ok(store
            .modify(&name, |r| {
                r.owner = None;
                r.last_error = Some(last_error);
            })
            .map(|_| ())?)
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
    host: &Host,
    services: &Services,
    record: &TenantRecord,
    options: EvictOptions,
) -> Vec<(&'static str, Error)> {
    let config = host.config();
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

    let kind = record
        .vm
        .map(|vm| vm.backend)
        .unwrap_or_else(|| services.backend_kind(record.resources.backend));
    let vm_config = plan::vm_config(config, record, backend_of(kind));
    check("vm", stop_vm(record, &vm_config).await);

    match plan::tenant_net(record) {
        Ok(net) => {
            let firewall = services.firewall.clone();
            let fw_net = net.clone();
            check(
                "firewall",
                crate::host::blocking(move || Ok(firewall.remove_tenant(&fw_net)?)).await,
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
        check(
            "overlay",
            crate::host::blocking(move || Ok(overlay.remove()?)).await,
        );
    }
    let files = vm_config.paths.clone();
    check(
        "files",
        crate::host::blocking(move || {
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

/// Kills the tenant's VMM: the recorded process if it is still the same
/// one, and any VMM still serving the tenant's control socket (a spawn
/// killed between launch and recording the identity leaves such a one).
pub(crate) async fn stop_vm(record: &TenantRecord, vm_config: &crate::vmm::VmConfig) -> Result<()> {
    let console = ConsoleLog::new(
        &vm_config.paths.console_log,
        vm_config.paths.console_log_max_bytes,
    );
    if let Some(vm) = record.vm {
        match VmProcess::attach(&record.name, vm.identity, console.clone()) {
            Ok(process) => {
                process.kill(KILL_WAIT).await?;
            }
            Err(VmmError::NotRunning { .. } | VmmError::IdentityMismatch { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let socket = vm_config.paths.api_socket.clone();
    let orphans = crate::host::blocking(move || Ok(processes_using(&socket))).await?;
    for identity in orphans {
        if let Ok(process) = VmProcess::attach(&record.name, identity, console.clone()) {
            process.kill(KILL_WAIT).await?;
        }
    }
    Ok(())
}

/// Processes whose command line names `socket` as an argument (VMMs are
/// started with their control socket's path on the command line).
fn processes_using(socket: &Path) -> Vec<crate::vmm::VmIdentity> {
    let needle = socket.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| cmdline.split(|b| *b == 0).any(|arg| contains(arg, needle)))
                .unwrap_or(false)
        })
        .filter_map(|pid| {
            let start_time = crate::vmm::process::read_start_time(pid).ok()?;
            Some(crate::vmm::VmIdentity { pid, start_time })
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
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
