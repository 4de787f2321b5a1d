//! Suspending a tenant: its VM's memory and device state go to the
//! tenant's snapshot directory and the VMM stops; TAP, rules and route stay.
//! Resuming (see `resume.rs`) starts a new VMM from that snapshot, or
//! cold-boots from the overlay when it cannot be loaded.
//!
//! Suspend: `attach` (the recorded VM) → `stats` (soft: when the workload's
//! next job is, hence when to wake) → `version` (of the VMM) → `pause` →
//! `snapshot` → `manifest` → `stop` (the VMM, its jail and cgroup) →
//! `registry` (`suspended`) → `route`.
//!
//! # What is recorded while one runs
//!
//! Both operations hold the tenant's operation lock and record their
//! process as the tenant's `owner` before changing anything; the status
//! stays the one they started from (`running`, `suspended`) until they end.
//! The suspend's commit point is its **manifest** (`suspend.json` in the
//! snapshot directory: the [`SuspendInfo`] and each file's size, written by
//! temp+rename once the stream is complete and synced). Before it, any
//! failure continues the VM and removes the snapshot files; from it on, the
//! suspend goes forward. A resume lets a restored guest run only after the
//! new VMM's identity is recorded. So if either process dies, recovery at
//! the next command ([`recover_suspend`], `resume::recover_resume`) decides
//! from the record, the manifest and the VM:
//!
//! - `running`, owner dead (a suspend): a committed manifest and a VM that
//!   is not running the guest → the suspend is finished; otherwise the VM
//!   continues (if paused) and the snapshot files go.
//! - `suspended`, owner dead (a resume): a recorded VM running the guest is
//!   adopted (`running`, snapshot gone); a VM that never ran it is killed
//!   and the tenant stays `suspended` with its snapshot; a recorded VM that
//!   died after it may have run leaves a stale snapshot: it goes, and the
//!   tenant is `running` without a VM, which `watch`/`molt` boot.
//!
//! (`watch` does not settle these itself: until a command does, it treats
//! the tenant by its status, e.g. continues a paused `running` VM.)
//!
//! Snapshot files hold the guest's memory (secrets included): the
//! directory is 0700, the files 0600, all owned by the tenant's uid, and
//! they are removed once a resume no longer needs them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent::Agent;
use crate::base::blocking;
use crate::config::{BackendKind, Config};
use crate::context::{Context, Services};
use crate::error::{Error, Result};
use crate::store::{SuspendInfo, TenantRecord, TenantStatus};
use crate::vmm::{Vm, VmStatus};

use super::progress::{Progress, ProgressSink};
use super::{current_process, plan, put_planned_route, Tenant, TenantError};

/// The manifest's name in the snapshot directory.
pub(super) const MANIFEST: &str = "suspend.json";

/// Bound on asking the agent for its stats before a suspend.
const STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// The committed record of a complete snapshot (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Manifest {
    /// What the registry records for the suspended tenant.
    pub info: SuspendInfo,
    /// Each snapshot file with its size in bytes.
    pub files: Vec<(PathBuf, u64)>,
}

impl Manifest {
    /// Reads the manifest of `dir`; `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io_error(
                    "cannot parse snapshot manifest",
                    &path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("cannot read snapshot manifest", &path, e)),
        }
    }

    /// Why the files on disk are not the ones this manifest committed, if
    /// they are not (missing, or another size).
    pub fn mismatch(&self) -> Option<String> {
        self.files
            .iter()
            .find_map(|(path, size)| match std::fs::metadata(path) {
                Ok(meta) if meta.len() == *size => None,
                Ok(meta) => Some(format!(
                    "{} has {} bytes, the manifest says {size}",
                    path.display(),
                    meta.len()
                )),
                Err(e) => Some(format!("{}: {e}", path.display())),
            })
    }
}

/// Suspends the running tenant `name`; see the module docs.
pub(crate) async fn suspend(
    context: &Context,
    name: &str,
    sink: Option<ProgressSink>,
) -> Result<Tenant> {
    let _lock = super::lock(context, name, super::OPERATION_LOCK_WAIT).await?;
    let record = context.record(name).await?;
    if record.status != TenantStatus::Running || record.vm.is_none() {
        return Err(TenantError::InvalidState {
            name: name.to_owned(),
            status: record.status,
            operation: "suspend",
            needs: "running with a VM",
        }
        .into());
    }
    let services = context.services().await?;
    let config = context.config();
    let progress = Progress::new("suspend", name, sink);
    let vm = progress
        .step("attach", attach(config, &services, &record))
        .await
        .map_err(|source| failed("suspend", name, "attach", "nothing changed", source))?;
    let owner = current_process()?;
    let record = context.modify(name, move |r| r.owner = Some(owner)).await?;
    let mut step = "stats";
    let outcome = snapshot(
        context,
        &services,
        &record,
        vm.as_ref(),
        &progress,
        &mut step,
    )
    .await;
    let manifest = match outcome {
        Ok(manifest) => manifest,
        Err(err) => {
            let outcome = undo(context, &record, vm.as_ref()).await;
            tracing::warn!(tenant = %name, step, error = %err.chain(), outcome, "suspend failed");
            return Err(failed("suspend", name, step, &outcome, err));
        }
    };
    // Committed: from here the suspend goes forward (a failure leaves the
    // owner set, so the next command's recovery finishes it).
    let record = finish_suspend(context, &services, &record, manifest, &progress).await?;
    tracing::info!(tenant = %name, "suspended");
    Ok(Tenant::new(record, &config.domain))
}

/// The steps up to the commit point; returns the committed manifest.
async fn snapshot(
    context: &Context,
    services: &Services,
    record: &TenantRecord,
    vm: &dyn Vm,
    progress: &Progress,
    step: &mut &'static str,
) -> Result<Manifest> {
    let config = context.config();
    *step = "stats";
    let wake_at_ms = progress
        .step("stats", async {
            Ok::<_, Error>(wake_at_ms(config, record).await)
        })
        .await?;
    *step = "version";
    let kind = vm_kind(record);
    let vmm_version = progress
        .step("version", vmm_version(services, kind))
        .await?;
    let dir = vm.config().paths.snapshot_dir.clone();
    *step = "pause";
    progress
        .step("pause", async { Ok::<_, Error>(vm.pause().await?) })
        .await?;
    *step = "snapshot";
    let snapshot = progress
        .step("snapshot", async {
            // Whatever an earlier, failed attempt left is no snapshot of this VM.
            remove_snapshot_dir(&dir)?;
            Ok::<_, Error>(vm.snapshot().await?)
        })
        .await?;
    *step = "manifest";
    let manifest = Manifest {
        info: SuspendInfo {
            at: crate::base::unix_secs(),
            snapshot,
            vmm_version,
            wake_at_ms,
        },
        files: Vec::new(),
    };
    let uid = record.allocation.jail_uid;
    progress
        .step(
            "manifest",
            blocking(move || commit_manifest(&dir, manifest, uid)),
        )
        .await
}

/// Records every file's size in `manifest`, hands the directory and files
/// to the tenant's uid, and writes the manifest atomically (the commit).
fn commit_manifest(dir: &Path, mut manifest: Manifest, uid: u32) -> Result<Manifest> {
    let snapshot = &manifest.info.snapshot;
    for path in std::iter::once(&snapshot.state_file).chain(snapshot.memory_file.as_ref()) {
        let meta =
            std::fs::metadata(path).map_err(|e| io_error("cannot stat snapshot", path, e))?;
        {
            use std::os::unix::fs::MetadataExt;
            tracing::info!(
                file = %path.display(),
                apparent_bytes = meta.len(),
                disk_bytes = meta.blocks() * 512,
                "snapshot file"
            );
        }
        manifest.files.push((path.clone(), meta.len()));
    }
    let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    let path = dir.join(MANIFEST);
    crate::base::replace_file(&path, &bytes, 0o600)
        .map_err(|e| io_error("cannot write snapshot manifest", &path, e))?;
    for path in [dir, &path]
        .into_iter()
        .chain(manifest.files.iter().map(|(p, _)| p.as_path()))
    {
        std::os::unix::fs::chown(path, Some(uid), Some(uid))
            .map_err(|e| io_error("cannot hand to the tenant's uid", path, e))?;
    }
    Ok(manifest)
}

/// Undoes a suspend that failed before its commit point: the VM continues
/// (if it still lives) and the snapshot files go; returns what happened.
async fn undo(context: &Context, record: &TenantRecord, vm: &dyn Vm) -> String {
    let mut outcome = match vm.status().await {
        Ok(VmStatus::Running) => "the VM runs on".to_owned(),
        Ok(_) => match vm.resume().await {
            Ok(()) => "the VM was resumed".to_owned(),
            Err(e) => format!("the VM could not be resumed ({e}); the watchdog repairs it"),
        },
        Err(e) => format!("the VM is unreachable ({e}); the watchdog repairs it"),
    };
    if let Err(e) = remove_snapshot_dir(&vm.config().paths.snapshot_dir) {
        outcome.push_str(&format!("; {}", e.chain()));
    }
    let cleared = context.modify(&record.name, |r| r.owner = None).await;
    if let Err(e) = cleared {
        outcome.push_str(&format!("; {}", e.chain()));
    }
    outcome
}

/// From the commit point on: stops the VMM (its jail and cgroup go),
/// records `suspended` with the manifest's info, and puts the route again.
pub(super) async fn finish_suspend(
    context: &Context,
    services: &Services,
    record: &TenantRecord,
    manifest: Manifest,
    progress: &Progress,
) -> Result<TenantRecord> {
    let config = context.config();
    let name = &record.name;
    progress
        .step("stop", stop_vm(config, services, record))
        .await
        .map_err(|e| {
            failed(
                "suspend",
                name,
                "stop",
                "the snapshot is complete; the next command finishes the suspend",
                e,
            )
        })?;
    let info = manifest.info;
    let record = progress
        .step(
            "registry",
            context.modify(name, move |r| {
                r.status = TenantStatus::Suspended;
                r.suspended = Some(info);
                r.vm = None;
                r.owner = None;
            }),
        )
        .await?;
    progress
        .step("route", put_planned_route(config, services, &record))
        .await
        .map_err(|e| {
            failed(
                "suspend",
                name,
                "route",
                "the tenant is suspended; the watchdog or molt puts its route back",
                e,
            )
        })?;
    Ok(record)
}

/// Kills `record`'s VMM (the recorded process and whatever runs in its
/// cgroup) and removes its jail and cgroup, as evict does.
pub(super) async fn stop_vm(
    config: &Config,
    services: &Services,
    record: &TenantRecord,
) -> Result<()> {
    let (kind, vm_config) = plan::vm(config, record, services.default_backend);
    crate::vmm::stop_recorded(&vm_config, record.vm.map(|vm| vm.identity)).await?;
    if let Some(dir) = crate::vmm::jail_dir(kind, &config.vmm, &vm_config) {
        blocking(move || Ok::<_, Error>(crate::vmm::remove_jail(&vm_config, &dir)?)).await?;
    }
    Ok(())
}

/// Recovers a suspend whose process died (see the module docs): finishes
/// it from a committed manifest if the VM does not run the guest, else
/// lets the VM continue and drops the snapshot. Returns what it did.
pub(super) async fn recover_suspend(
    context: &Context,
    services: &Services,
    record: &TenantRecord,
) -> Result<&'static str> {
    let config = context.config();
    let (_, vm_config) = plan::vm(config, record, services.default_backend);
    let dir = vm_config.paths.snapshot_dir.clone();
    let vm = match record.vm {
        Some(_) => attach(config, services, record).await.ok(),
        None => None,
    };
    let status = match &vm {
        Some(vm) => vm.status().await.ok(),
        None => None,
    };
    let manifest = blocking({
        let dir = dir.clone();
        move || Manifest::read(&dir)
    })
    .await
    .unwrap_or(None)
    .filter(|m| m.mismatch().is_none());
    if let (Some(manifest), false) = (manifest, status == Some(VmStatus::Running)) {
        let progress = Progress::new("suspend", &record.name, None);
        finish_suspend(context, services, record, manifest, &progress).await?;
        return Ok("suspend finished");
    }
    let mut what = "suspend undone; the VM runs on";
    if let Some(vm) = &vm {
        if status != Some(VmStatus::Running) {
            continue_for_good(vm.as_ref()).await?;
            what = "suspend undone; the VM was resumed";
        }
    } else if record.vm.is_none() {
        // A VMM nobody recorded is an orphan (a resume killed while cold
        // booting): stop it; the watchdog boots the tenant.
        stop_vm(config, services, record).await?;
        what = "suspend undone; no VM: the watchdog boots it";
    }
    remove_snapshot_dir(&dir)?;
    context.modify(&record.name, |r| r.owner = None).await?;
    Ok(what)
}

/// Continues a paused VM until it stays running: a snapshot stream the
/// dead suspend started may still be written, and when it completes the
/// VMM stops the guest again.
async fn continue_for_good(vm: &dyn Vm) -> Result<()> {
    let deadline = tokio::time::Instant::now() + CONTINUE_WITHIN;
    let mut running_since = None;
    loop {
        let now = tokio::time::Instant::now();
        match vm.status().await? {
            VmStatus::Running => {
                let since = *running_since.get_or_insert(now);
                if now - since >= STAYS_RUNNING {
                    return Ok(());
                }
            }
            _ => {
                running_since = None;
                // Refused while the stream is being finished: asked again.
                if let Err(e) = vm.resume().await {
                    tracing::debug!(error = %e, "cannot continue the VM yet");
                }
            }
        }
        if now >= deadline {
            return Err(crate::vmm::VmmError::Timeout {
                vm: vm.config().vm_id.clone(),
                operation: "continuing the guest after an interrupted suspend".into(),
                after: CONTINUE_WITHIN,
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Bound on [`continue_for_good`].
const CONTINUE_WITHIN: Duration = Duration::from_secs(120);

/// How long a continued VM must keep running to count as continued.
const STAYS_RUNNING: Duration = Duration::from_secs(3);

/// The backend of `record`'s VM.
pub(super) fn vm_kind(record: &TenantRecord) -> BackendKind {
    record.vm.map(|vm| vm.backend).unwrap_or_else(|| {
        record
            .suspended
            .as_ref()
            .map(|s| s.snapshot.backend)
            .unwrap_or(BackendKind::Qemu)
    })
}

/// `record`'s recorded VM, attached.
pub(super) async fn attach(
    config: &Config,
    services: &Services,
    record: &TenantRecord,
) -> Result<Box<dyn Vm>> {
    let running = record.vm.ok_or_else(|| TenantError::InvalidState {
        name: record.name.clone(),
        status: record.status,
        operation: "attach",
        needs: "a recorded VM",
    })?;
    let (kind, vm_config) = plan::vm(config, record, services.default_backend);
    Ok((services.vmm)(kind)
        .attach(&vm_config, running.identity)
        .await?)
}

/// When to wake the tenant: its workload's next scheduled job as its agent
/// reports it, minus `suspend.wake_ahead_s`. Soft: an agent that does not
/// answer (or reports no job) gives `None`.
async fn wake_at_ms(config: &Config, record: &TenantRecord) -> Option<u64> {
    let (rpc, health) = plan::agent_endpoints(config, record);
    let agent = Agent::new(rpc, health, record.agent_token.clone())
        .with_fallback_token(record.agent_token_next.clone());
    match tokio::time::timeout(STATS_TIMEOUT, agent.stats()).await {
        Ok(Ok(stats)) => stats
            .next_job_at_ms
            .map(|at| at.saturating_sub(config.suspend.wake_ahead_s.saturating_mul(1000))),
        Ok(Err(e)) => {
            tracing::warn!(tenant = %record.name, error = %Error::from(e).chain(), "no stats from the agent; no scheduled wake");
            None
        }
        Err(_) => {
            tracing::warn!(tenant = %record.name, "the agent's stats timed out; no scheduled wake");
            None
        }
    }
}

/// The version of the `kind` VMM (snapshots do not load across versions).
pub(super) async fn vmm_version(services: &Services, kind: BackendKind) -> Result<String> {
    Ok((services.vmm)(kind).version().await?)
}

/// Removes a snapshot directory and everything in it; absent is fine.
pub(super) fn remove_snapshot_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_error("cannot remove snapshot directory", dir, e))
        }
        _ => Ok(()),
    }
}

/// The snapshot directory of `record`'s VM.
pub(super) fn snapshot_dir(config: &Config, record: &TenantRecord) -> PathBuf {
    crate::vmm::VmPaths::for_tenant(&config.paths, &config.vmm, &record.name).snapshot_dir
}

fn io_error(context: &'static str, path: &Path, source: std::io::Error) -> Error {
    TenantError::Io {
        context,
        path: path.to_path_buf(),
        source,
    }
    .into()
}

/// A [`TenantError::StepFailed`].
pub(super) fn failed(
    operation: &'static str,
    name: &str,
    step: &'static str,
    outcome: &str,
    source: Error,
) -> Error {
    TenantError::StepFailed {
        operation,
        name: name.to_owned(),
        step,
        outcome: outcome.to_owned(),
        source: Box::new(source),
    }
    .into()
}
