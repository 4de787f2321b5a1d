//! Resuming a suspended tenant (see `suspend.rs` for what is recorded
//! while it runs): `version` (of the VMM; if it cannot be asked, nothing
//! changes) → `check` (manifest, files, VMM version) → `restore` (a
//! new VMM, same config: TAP, overlay, jail, cgroup; the guest still
//! paused) → its identity recorded → `continue` → `agent` → `clock` →
//! `cleanup` (snapshot files go) → `registry` (`running`) → `route`.
//!
//! If the snapshot cannot be loaded (missing, corrupt, another VMM
//! version, the restore or the agent fails), what was started is killed,
//! the snapshot is dropped (once a guest boots on the disk it is stale)
//! and the tenant cold-boots from its overlay: `boot` → `agent` →
//! `workload` → `route`, the path the health repair `restart_vm` takes.
//! Why is recorded in `last_error`. The overlay's data is never touched.

use std::time::SystemTime;

use crate::agent::Agent;
use crate::base::blocking;
use crate::context::{Context, Services};
use crate::error::{Error, Result};
use crate::store::{RunningVm, SuspendInfo, TenantRecord, TenantStatus};
use crate::vmm::VmStatus;

use super::boot::{launch_on_disk, start_workload};
use super::progress::{Progress, ProgressSink};
use super::suspend::{
    attach, failed, remove_snapshot_dir, snapshot_dir, stop_vm, vmm_version, Manifest,
};
use super::{current_process, plan, put_planned_route, wait_agent_ready, Tenant, TenantError};

/// Resumes the suspended tenant `name`; see the module docs.
pub(crate) async fn resume(
    context: &Context,
    name: &str,
    sink: Option<ProgressSink>,
) -> Result<Tenant> {
    let _lock = super::lock(context, name, super::OPERATION_LOCK_WAIT).await?;
    let record = context.record(name).await?;
    let info = match (&record.status, &record.suspended) {
        (TenantStatus::Suspended, Some(info)) => info.clone(),
        _ => {
            return Err(TenantError::InvalidState {
                name: name.to_owned(),
                status: record.status,
                operation: "resume",
                needs: "suspended",
            }
            .into())
        }
    };
    let services = context.services().await?;
    let progress = Progress::new("resume", name, sink);
    // A VMM that cannot even say its version is the host's problem, not the
    // snapshot's: the tenant stays suspended, its snapshot kept.
    let version = progress
        .step("version", vmm_version(&services, info.snapshot.backend))
        .await
        .map_err(|e| {
            failed(
                "resume",
                name,
                "version",
                "nothing changed: the tenant stays suspended",
                e,
            )
        })?;
    let owner = current_process()?;
    let record = context.modify(name, move |r| r.owner = Some(owner)).await?;
    let mut step = "check";
    let restored = from_snapshot(
        context, &services, &record, &info, &version, &progress, &mut step,
    )
    .await;
    let why = match restored {
        Ok(record) => return Ok(Tenant::new(record, &context.config().domain)),
        Err(err) => format!(
            "resume from the snapshot failed at step {step} ({}); cold-booted from the overlay: the guest's memory was lost",
            err.chain()
        ),
    };
    tracing::warn!(tenant = %name, reason = %why, "cold boot");
    let record = cold_boot(context, &services, &record, why, &progress).await?;
    Ok(Tenant::new(record, &context.config().domain))
}

/// The resume proper; any error sends the caller to the cold boot, with
/// whatever this started already stopped.
async fn from_snapshot(
    context: &Context,
    services: &Services,
    record: &TenantRecord,
    info: &SuspendInfo,
    version: &str,
    progress: &Progress,
    step: &mut &'static str,
) -> Result<TenantRecord> {
    let config = context.config();
    *step = "check";
    progress
        .step("check", check(context, record, info, version))
        .await?;
    *step = "restore";
    let (kind, vm_config) = plan::vm(config, record, services.default_backend);
    let restored = progress
        .step("restore", async {
            Ok::<_, Error>(
                (services.vmm)(kind)
                    .restore(&vm_config, &info.snapshot, false)
                    .await?,
            )
        })
        .await;
    let vm = match restored {
        Ok(vm) => vm,
        Err(err) => {
            // A restore cleans up after itself; a VMM left in the cgroup
            // anyway is stopped before anything else boots.
            stop_vm(config, services, record).await?;
            return Err(err);
        }
    };
    let running = RunningVm {
        backend: kind,
        identity: vm.identity(),
    };
    // Recorded before the guest runs: a killed resume is recovered by it.
    let outcome = async {
        let record = context
            .modify(&record.name, move |r| r.vm = Some(running))
            .await?;
        *step = "continue";
        progress
            .step("continue", async { Ok::<_, Error>(vm.resume().await?) })
            .await?;
        *step = "agent";
        let agent = agent(config, &record);
        progress
            .step("agent", wait_agent_ready(&agent, vm.as_ref()))
            .await?;
        Ok::<_, Error>((record, agent))
    }
    .await;
    let (record, agent) = match outcome {
        Ok(ok) => ok,
        Err(err) => {
            let record = context.record(&record.name).await?;
            stop_vm(config, services, &record).await?;
            context.modify(&record.name, |r| r.vm = None).await?;
            return Err(err);
        }
    };
    // The guest runs with the disk: from here the snapshot is stale.
    *step = "clock";
    let clock = progress
        .step("clock", agent.set_time(SystemTime::now()))
        .await;
    if let Err(e) = clock {
        tracing::warn!(tenant = %record.name, error = %Error::from(e).chain(), "cannot set the guest clock");
    }
    let record = adopt(context, services, &record, progress).await?;
    tracing::info!(tenant = %record.name, "resumed");
    Ok(record)
}

/// Whether the recorded snapshot can be loaded: its manifest is there and
/// names it, its files have their committed sizes, and the VMM (`version`)
/// is the version that wrote it.
async fn check(
    context: &Context,
    record: &TenantRecord,
    info: &SuspendInfo,
    version: &str,
) -> Result<()> {
    let dir = snapshot_dir(context.config(), record);
    let manifest = blocking(move || Manifest::read(&dir)).await?;
    let unusable = |reason: String| -> Result<()> {
        Err(TenantError::SnapshotUnusable {
            name: record.name.clone(),
            reason,
        }
        .into())
    };
    let Some(manifest) = manifest else {
        return unusable("its manifest is missing".into());
    };
    if manifest.info != *info {
        return unusable("its manifest names another snapshot than the registry".into());
    }
    if let Some(why) = blocking(move || Ok::<_, Error>(manifest.mismatch())).await? {
        return unusable(why);
    }
    if version != info.vmm_version {
        return unusable(format!(
            "it was written by {}, this host runs {version}",
            info.vmm_version
        ));
    }
    Ok(())
}

/// Records the tenant `running` on its (recorded) VM, puts its route and
/// removes the snapshot files.
async fn adopt(
    context: &Context,
    services: &Services,
    record: &TenantRecord,
    progress: &Progress,
) -> Result<TenantRecord> {
    let config = context.config();
    let name = &record.name;
    // Before the registry says `running`: a resume killed after this is
    // still recovered (adopted), so no snapshot outlives it.
    cleanup(context, record, progress).await;
    let record = progress
        .step(
            "registry",
            context.modify(name, |r| {
                r.status = TenantStatus::Running;
                r.suspended = None;
                r.last_error = None;
            }),
        )
        .await?;
    // The owner stays until the route is back at the guest: a resume killed
    // before that is settled by the next command, which puts the route.
    progress
        .step("route", put_planned_route(config, services, &record))
        .await
        .map_err(|e| {
            failed(
                "resume",
                name,
                "route",
                "the tenant runs; the watchdog or molt puts its route back",
                e,
            )
        })?;
    context.modify(name, |r| r.owner = None).await
}

/// Removes the snapshot files (they hold the guest's memory); a failure is
/// logged, the next suspend replaces them anyway.
async fn cleanup(context: &Context, record: &TenantRecord, progress: &Progress) {
    let dir = snapshot_dir(context.config(), record);
    let removed = progress
        .step("cleanup", blocking(move || remove_snapshot_dir(&dir)))
        .await;
    if let Err(e) = removed {
        tracing::warn!(tenant = %record.name, error = %e.chain(), "cannot remove the snapshot files");
    }
}

/// Boots the tenant afresh on its overlay (see the module docs); `why` goes
/// to `last_error`.
async fn cold_boot(
    context: &Context,
    services: &Services,
    record: &TenantRecord,
    why: String,
    progress: &Progress,
) -> Result<TenantRecord> {
    let config = context.config();
    let name = &record.name;
    // The snapshot is dropped before a guest boots on the disk.
    let dir = snapshot_dir(config, record);
    blocking(move || remove_snapshot_dir(&dir)).await?;
    let reason = why.clone();
    let record = context
        .modify(name, move |r| {
            r.status = TenantStatus::Running;
            r.suspended = None;
            r.vm = None;
            r.last_error = Some(reason);
        })
        .await?;
    let mut step = "boot";
    let booted = async {
        let (running, vm) = progress
            .step("boot", launch_on_disk(config, services, &record))
            .await?;
        let record = context.modify(name, move |r| r.vm = Some(running)).await?;
        step = "agent";
        let agent = agent(config, &record);
        progress
            .step("agent", wait_agent_ready(&agent, vm.as_ref()))
            .await?;
        step = "workload";
        progress
            .step("workload", start_workload(config, &record, &agent))
            .await?;
        step = "route";
        progress
            .step("route", put_planned_route(config, services, &record))
            .await?;
        Ok::<_, Error>(())
    }
    .await;
    let done = context.modify(name, |r| r.owner = None).await?;
    match booted {
        Ok(()) => Ok(done),
        Err(err) => Err(failed(
            "resume",
            name,
            step,
            &format!("{why}; the cold boot failed too: the tenant is running without a working VM, which the watchdog or molt repairs"),
            err,
        )),
    }
}

/// Recovers a resume whose process died (see `suspend.rs`): adopts a
/// recorded VM that runs the guest, kills one that never ran it (the
/// tenant stays suspended), and drops a snapshot a guest may have run
/// past. Returns what it did.
pub(super) async fn recover_resume(
    context: &Context,
    services: &Services,
    record: &TenantRecord,
) -> Result<&'static str> {
    let config = context.config();
    let status = match record.vm {
        Some(_) => match attach(config, services, record).await {
            Ok(vm) => vm.status().await.ok(),
            Err(_) => None,
        },
        None => None,
    };
    if status == Some(VmStatus::Running) {
        let progress = Progress::new("resume", &record.name, None);
        adopt(context, services, record, &progress).await?;
        return Ok("resume finished: the restored VM runs");
    }
    let guest_may_have_run = record.vm.is_some() && status.is_none();
    stop_vm(config, services, record).await?;
    if guest_may_have_run {
        let dir = snapshot_dir(config, record);
        blocking(move || remove_snapshot_dir(&dir)).await?;
        context
            .modify(&record.name, |r| {
                r.status = TenantStatus::Running;
                r.suspended = None;
                r.vm = None;
                r.owner = None;
                r.last_error = Some("an interrupted resume's VM died after its guest may have run: the snapshot was dropped; the watchdog or molt cold-boots the tenant".into());
            })
            .await?;
        return Ok("resume undone: snapshot stale, left for a cold boot");
    }
    context
        .modify(&record.name, |r| {
            r.vm = None;
            r.owner = None;
        })
        .await?;
    Ok("resume undone: still suspended")
}

fn agent(config: &crate::config::Config, record: &TenantRecord) -> Agent {
    let (rpc, health) = plan::agent_endpoints(config, record);
    Agent::new(rpc, health, record.agent_token.clone())
        .with_fallback_token(record.agent_token_next.clone())
}
