//! Spawning a tenant: allocate → overlay disk (+ agent token) → TAP →
//! firewall → VM → agent → secrets → workload → route → `running`.
//!
//! A restore (`spec.from_snap()`) checks its archive before anything else
//! and makes the overlay from the archive's disk instead of a blank one;
//! step `scrub` then deletes every credential the disk carried (old agent
//! token, secrets, workload spec) and discards its free blocks, so the
//! token step provisions the only token the guest will accept.
//!
//! Each completed step pushes its undo; any failure rolls back in reverse
//! and reports the original error with the rollback's outcome. The registry
//! record carries the spawning process's identity while `creating`, so if
//! this process is killed midway the next command tears the rest down.
//!
//! The tenant's operation lock is held from before the allocation until the
//! spawn ends (`running`, or rolled back), so no evict, recover or repair
//! acts on a tenant that is still being built.

use std::sync::Arc;
use std::time::Duration;

use crate::agent::provision;
use crate::agent::Agent;
use crate::base::blocking;
use crate::config::Config;
use crate::context::{Context, Services};
use crate::error::{Error, Result};
use crate::store::{RunningVm, TenantRecord, TenantStatus};
use crate::vmm::{Vm, VmmError};

use super::plan;
use super::progress::{Progress, ProgressSink};
use super::rollback::UndoStack;
use super::snap::Archive;
use super::{current_process, Tenant, TenantError, TenantSpec};

/// How long a booted guest's agent may take to answer health.
pub const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Waits up to [`AGENT_READY_TIMEOUT`] for the agent of a freshly booted
/// `vm`; a VMM that dies meanwhile is reported as such, not as an agent timeout.
pub async fn wait_agent_ready(agent: &Agent, vm: &dyn Vm) -> Result<()> {
    tokio::select! {
        ready = agent.wait_ready(AGENT_READY_TIMEOUT) => ready.map(|_| ()).map_err(Error::from),
        status = vm.process().wait_exit(AGENT_READY_TIMEOUT) => match status {
            Some(status) => Err(vm.process().exited_error(status).into()),
            // Still running: only the agent's answer (or its timeout) decides.
            None => std::future::pending().await,
        },
    }
}

/// Runs a spawn; see the module docs.
pub(crate) async fn spawn(
    context: &Context,
    spec: TenantSpec,
    sink: Option<ProgressSink>,
) -> Result<Tenant> {
    check_images(context.config())?;
    let (spec, archive) = match spec.from_snap() {
        Some(path) => {
            let path = path.to_path_buf();
            let archive = blocking(move || Archive::open(&path)).await?;
            (spec.restoring(archive.disk_mib())?, Some(archive))
        }
        None => (spec, None),
    };
    let _lock = super::lock(context, spec.name(), super::OPERATION_LOCK_WAIT).await?;
    let services = context.services().await?;
    let progress = Progress::new("spawn", spec.name(), sink);
    let mut undo = UndoStack::new();
    let mut step = "allocate";
    let outcome = run(
        context,
        &services,
        &spec,
        archive.as_ref(),
        &progress,
        &mut undo,
        &mut step,
    )
    .await;
    match outcome {
        Ok(tenant) => {
            undo.commit();
            tracing::info!(tenant = %tenant.name(), route = %tenant.route(), "spawned");
            Ok(tenant)
        }
        Err(err) => {
            let report = undo.rollback().await;
            tracing::warn!(tenant = %spec.name(), step, error = %err.chain(), rollback = %report.summary(), "spawn failed");
            Err(TenantError::SpawnFailed {
                name: spec.name().to_owned(),
                step,
                rollback: report.summary(),
                source: Box::new(err),
            }
            .into())
        }
    }
}

async fn run(
    context: &Context,
    services: &Services,
    spec: &TenantSpec,
    archive: Option<&Archive>,
    progress: &Progress,
    undo: &mut UndoStack,
    step: &mut &'static str,
) -> Result<Tenant> {
    let config = context.config().clone();
    let store = context.store().clone();

    *step = "allocate";
    let owner = current_process()?;
    let new = spec.to_new_tenant(&config, Some(owner));
    let record: TenantRecord = progress
        .step(
            "allocate",
            blocking({
                let store = store.clone();
                let config = config.clone();
                move || store.allocate(&config, new)
            }),
        )
        .await?;
    let name = record.name.clone();
    undo.push("allocate", {
        let store = store.clone();
        let name = name.clone();
        move || blocking(move || store.release(&name).map(|_| ()).map_err(Error::from))
    });

    *step = "overlay";
    let overlay = plan::overlay(&config, &record);
    progress
        .step(
            "overlay",
            blocking({
                let overlay = overlay.clone();
                let (config, store, name) = (config.clone(), store.clone(), name.clone());
                let archive = archive.cloned();
                move || {
                    // Every other tenant in the registry counts, including
                    // spawns that allocated since ours: two concurrent
                    // spawns cannot both take the last room.
                    let others: Vec<_> = store
                        .read()?
                        .tenants
                        .values()
                        .filter(|r| r.name != name)
                        .map(|r| plan::overlay(&config, r))
                        .collect();
                    overlay.ensure_room(&others, config.storage.overlay_overcommit_percent)?;
                    match archive {
                        Some(archive) => overlay.create_from(archive.image()?)?,
                        None => overlay.create()?,
                    }
                    Ok::<_, Error>(())
                }
            }),
        )
        .await?;
    undo.push("overlay", {
        let overlay = overlay.clone();
        move || blocking(move || Ok(overlay.remove()?))
    });
    if archive.is_some() {
        *step = "scrub";
        progress
            .step("scrub", async {
                Ok::<_, Error>(provision::clear_credentials(overlay.path()).await?)
            })
            .await?;
    }
    *step = "token";
    progress
        .step("token", async {
            Ok::<_, Error>(provision::write_token(overlay.path(), &record.agent_token).await?)
        })
        .await?;

    *step = "network";
    let net = plan::tenant_net(&record)?;
    progress
        .step("network", async {
            Ok::<_, Error>(services.network.ensure(&net).await?)
        })
        .await?;
    undo.push("network", {
        let network = services.network.clone();
        let net = net.clone();
        move || async move { Ok(network.remove(&net).await?) }
    });

    *step = "firewall";
    progress
        .step(
            "firewall",
            blocking({
                let firewall = services.firewall.clone();
                let net = net.clone();
                move || firewall.apply_tenant(&net)
            }),
        )
        .await?;
    undo.push("firewall", {
        let firewall = services.firewall.clone();
        let net = net.clone();
        move || blocking(move || Ok(firewall.remove_tenant(&net)?))
    });

    *step = "vm";
    let (kind, vm_config) = plan::vm(&config, &record, services.default_backend);
    let vmm = (services.vmm)(kind);
    // The launch starts the console log before anything can fail.
    undo.push("console log", {
        let log = vm_config.paths.console_log.clone();
        move || crate::base::blocking(move || super::evict::remove_file(&log))
    });
    let vm: Arc<dyn Vm> = Arc::from(
        progress
            .step("vm", async {
                Ok::<_, Error>(vmm.launch(&vm_config).await?)
            })
            .await?,
    );
    undo.push("vm", {
        let vm = vm.clone();
        move || async move {
            match vm.kill().await {
                Ok(_) | Err(VmmError::NotRunning { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    });
    let running = RunningVm {
        backend: kind,
        identity: vm.identity(),
    };
    context.modify(&name, move |r| r.vm = Some(running)).await?;

    *step = "agent";
    let (rpc, health) = plan::agent_endpoints(&config, &record);
    let agent = Agent::new(rpc, health, record.agent_token.clone());
    progress
        .step("agent", wait_agent_ready(&agent, vm.as_ref()))
        .await?;
    agent.hello().await?;

    *step = "secrets";
    if !spec.secrets().is_empty() {
        progress
            .step("secrets", async {
                Ok::<_, Error>(
                    agent
                        .inject_secrets(spec.secrets().clone(), true)
                        .await
                        .map(|_| ())?,
                )
            })
            .await?;
    }

    *step = "workload";
    let workload = plan::workload(&config, &record);
    progress
        .step("workload", async {
            Ok::<_, Error>(agent.configure(workload, true).await.map(|_| ())?)
        })
        .await?;

    *step = "route";
    let route = plan::route(&config, &record)?;
    progress
        .step("route", async {
            Ok::<_, Error>(services.routes.put_route(&route).await.map(|_| ())?)
        })
        .await?;
    undo.push("route", {
        let routes = services.routes.clone();
        let name = name.clone();
        move || async move { Ok(routes.remove_route(&name).await.map(|_| ())?) }
    });

    *step = "registry";
    let record = context
        .modify(&name, |r| {
            r.status = TenantStatus::Running;
            r.owner = None;
            r.last_error = None;
        })
        .await?;
    Ok(Tenant::new(record, &config.domain))
}

/// The images every tenant boots from must exist before anything is made.
fn check_images(config: &Config) -> Result<()> {
    for (what, path) in [
        ("kernel", &config.paths.kernel),
        ("initrd", &config.paths.initrd),
        ("rootfs", &config.paths.rootfs),
    ] {
        if !path.is_file() {
            return Err(TenantError::MissingImage {
                what,
                path: path.clone(),
            }
            .into());
        }
    }
    Ok(())
}
