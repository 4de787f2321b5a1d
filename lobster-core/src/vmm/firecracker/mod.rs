//! The Firecracker backend: the request sequence is planned from the
//! [`VmConfig`] ([`plan`]), Firecracker (directly, or under the [`jailer`])
//! is started through a [`Launcher`] and supervised through a pidfd, and
//! configured over its API socket ([`client`]). Snapshots are Firecracker
//! full snapshots (state + memory files), private (0600) and sparse in the
//! VM's snapshot directory; under the jailer they are moved out of the
//! chroot, and a restore places them in the new chroot. A restore loads
//! with `network_overrides`, so the guest gets the config's TAP whatever
//! the snapshot recorded.

pub mod api;
pub mod client;
pub mod jailer;
pub mod plan;

#[cfg(feature = "testing")]
pub mod fake;
#[cfg(feature = "testing")]
pub mod spec;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use self::client::{ApiClient, Timed};
use self::jailer::JailPlan;
use self::plan::{Features, FileNames};
use super::{
    launch, remove_socket, BackendKind, ConsoleLog, ExitStatus, Result, ShutdownOutcome, Snapshot,
    Vm, VmConfig, VmIdentity, VmProcess, VmStatus, Vmm, VmmError,
};

/// Snapshot file names inside the snapshot directory.
pub const STATE_FILE: &str = "firecracker-state.snap";
/// Guest memory file name inside the snapshot directory.
pub const MEMORY_FILE: &str = "firecracker-memory.mem";

/// Starts a VMM process. The seam between planning and the system: the
/// real one runs the binary; the contract tests' one runs a fake API.
pub trait Launcher: Send + Sync + std::fmt::Debug {
    /// Starts `program args` for `vm_id` with output to `console`.
    fn launch(
        &self,
        vm_id: &str,
        program: &Path,
        args: &[String],
        console: ConsoleLog,
    ) -> Result<VmProcess>;
}

/// Runs the real binary (in its own session; see [`VmProcess::spawn`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLauncher;

impl Launcher for SystemLauncher {
    fn launch(
        &self,
        vm_id: &str,
        program: &Path,
        args: &[String],
        console: ConsoleLog,
    ) -> Result<VmProcess> {
        let mut command = std::process::Command::new(program);
        command.args(args);
        VmProcess::spawn(vm_id, command, console)
    }
}

/// Settings of the Firecracker backend.
#[derive(Debug, Clone)]
pub struct FirecrackerSettings {
    /// The `firecracker` binary (absolute for the jailer).
    pub binary: PathBuf,
    /// The `jailer` binary, used for VMs whose config has a `jail`.
    pub jailer: PathBuf,
    /// Optional devices and observability.
    pub features: Features,
    /// Bound on the API socket appearing.
    pub ready_timeout: Duration,
    /// Bound on each API call.
    pub call_timeout: Duration,
    /// Bound on snapshot create/load calls.
    pub snapshot_timeout: Duration,
    /// How processes are started.
    pub launcher: Arc<dyn Launcher>,
}

impl FirecrackerSettings {
    /// Settings from the host configuration, with the real launcher.
    pub fn from_config(vmm: &crate::config::VmmConfig) -> FirecrackerSettings {
        use crate::config::FirecrackerLogLevel as Level;
        let fc = &vmm.firecracker;
        FirecrackerSettings {
            binary: fc.binary.clone(),
            jailer: fc.jailer.clone(),
            features: Features {
                log_level: match fc.log_level {
                    Level::Off => None,
                    Level::Error => Some(api::LogLevel::Error),
                    Level::Warning => Some(api::LogLevel::Warning),
                    Level::Info => Some(api::LogLevel::Info),
                    Level::Debug => Some(api::LogLevel::Debug),
                },
                metrics: fc.metrics,
                entropy: fc.entropy,
                balloon: fc.balloon.then_some(api::Balloon {
                    amount_mib: 0,
                    deflate_on_oom: true,
                    stats_polling_interval_s: 0,
                }),
            },
            ready_timeout: Duration::from_millis(vmm.ready_timeout_ms),
            call_timeout: Duration::from_millis(vmm.call_timeout_ms),
            snapshot_timeout: Duration::from_millis(vmm.snapshot_timeout_ms),
            launcher: Arc::new(SystemLauncher),
        }
    }
}

/// The Firecracker backend.
#[derive(Debug, Clone)]
pub struct FirecrackerVmm {
    settings: FirecrackerSettings,
    version: super::version::VersionCache,
}

/// How Firecracker is started for one VM, and how it names files.
#[derive(Debug, Clone)]
struct Layout {
    program: PathBuf,
    args: Vec<String>,
    api_socket: PathBuf,
    names: FileNames,
    jail: Option<JailPlan>,
}

impl FirecrackerVmm {
    /// A backend with these settings.
    pub fn new(settings: FirecrackerSettings) -> FirecrackerVmm {
        FirecrackerVmm {
            settings,
            version: Default::default(),
        }
    }

    fn layout(&self, config: &VmConfig) -> Result<Layout> {
        config.validate()?;
        match &config.jail {
            None => Ok(Layout {
                program: self.settings.binary.clone(),
                args: vec![
                    "--api-sock".into(),
                    plan::utf8(config, "paths.api_socket", &config.paths.api_socket)?,
                    "--id".into(),
                    config.vm_id.clone(),
                ],
                api_socket: config.paths.api_socket.clone(),
                names: FileNames::direct(config, &self.settings.features)?,
                jail: None,
            }),
            Some(jail) => {
                let hierarchy = super::sandbox::hierarchy(&config.vm_id)?;
                let plan = jailer::plan(
                    config,
                    jail,
                    &self.settings.binary,
                    &self.settings.features,
                    &hierarchy,
                )?;
                Ok(Layout {
                    program: self.settings.jailer.clone(),
                    args: plan.args.clone(),
                    api_socket: plan.api_socket.clone(),
                    names: plan.names.clone(),
                    jail: Some(plan),
                })
            }
        }
    }

    /// Starts the process and waits for its API socket.
    async fn start(
        &self,
        config: &VmConfig,
        layout: &Layout,
        extra_files: &[(PathBuf, String)],
    ) -> Result<FirecrackerVm> {
        launch::clear_stale_socket(&config.vm_id, &layout.api_socket).await?;
        match &layout.jail {
            Some(plan) => {
                let mut plan = plan.clone();
                for (source, name) in extra_files {
                    plan.files.push(jailer::ChrootFile {
                        source: Some(source.clone()),
                        name: name.clone(),
                        chown: true,
                        copy_across_filesystems: true,
                    });
                }
                jailer::prepare(&config.vm_id, &plan)?;
            }
            None => {
                launch::create_socket_dir(&layout.api_socket)?;
                if let Some(metrics) = &layout.names.metrics {
                    touch(Path::new(metrics))?;
                }
            }
        }
        let console = launch::console_for_start(config, &layout.program, &layout.args);
        let process = match self.settings.launcher.launch(
            &config.vm_id,
            &layout.program,
            &layout.args,
            console,
        ) {
            Ok(p) => p,
            Err(e) => {
                if let Some(plan) = &layout.jail {
                    let _ = jailer::cleanup(&config.vm_id, plan);
                }
                return Err(e);
            }
        };
        let vm = FirecrackerVm {
            config: config.clone(),
            client: ApiClient::new(
                &config.vm_id,
                &layout.api_socket,
                self.settings.call_timeout,
            ),
            snapshot_client: ApiClient::new(
                &config.vm_id,
                &layout.api_socket,
                self.settings.snapshot_timeout,
            ),
            process,
            layout: layout.clone(),
            settings: self.settings.clone(),
        };
        let ready = vm
            .client
            .wait_for_socket(self.settings.ready_timeout, || vm.process.check_alive())
            .await;
        match ready {
            Ok(()) => Ok(vm),
            Err(e) => Err(launch::abandon(&vm, e).await),
        }
    }

    /// Like [`Vmm::launch`], also returning how long each API call took.
    pub async fn launch_timed(&self, config: &VmConfig) -> Result<(FirecrackerVm, Vec<Timed>)> {
        let layout = self.layout(config)?;
        let calls = plan::launch(config, &layout.names, &self.settings.features)?;
        let vm = self.start(config, &layout, &[]).await?;
        match vm.client.send_all(&calls).await {
            Ok(times) => {
                tracing::info!(vm = %config.vm_id, pid = vm.process.identity().pid, "firecracker guest started");
                Ok((vm, times))
            }
            Err(e) => {
                // Rolled back: no half-configured VMM stays behind.
                let e = vm.process.check_alive().err().unwrap_or(e);
                Err(launch::abandon(&vm, e).await)
            }
        }
    }
}

#[async_trait::async_trait]
impl Vmm for FirecrackerVmm {
    fn kind(&self) -> BackendKind {
        BackendKind::Firecracker
    }

    async fn launch(&self, config: &VmConfig) -> Result<Box<dyn Vm>> {
        Ok(Box::new(self.launch_timed(config).await?.0))
    }

    async fn restore(
        &self,
        config: &VmConfig,
        snapshot: &Snapshot,
        resume: bool,
    ) -> Result<Box<dyn Vm>> {
        let (state, memory) = snapshot_files(config, snapshot)?;
        let layout = self.layout(config)?;
        let (state_name, memory_name, extra) = match &layout.jail {
            Some(_) => (
                JAILED_STATE.to_string(),
                JAILED_MEMORY.to_string(),
                vec![
                    (state, JAILED_STATE.to_string()),
                    (memory, JAILED_MEMORY.to_string()),
                ],
            ),
            None => (
                plan::utf8(config, "snapshot.state_file", &state)?,
                plan::utf8(config, "snapshot.memory_file", &memory)?,
                Vec::new(),
            ),
        };
        let calls = plan::restore(
            config,
            &layout.names,
            &self.settings.features,
            &state_name,
            &memory_name,
            resume,
        );
        let vm = self.start(config, &layout, &extra).await?;
        let (load, rest) = calls
            .split_last()
            .expect("restore plan ends with snapshot/load");
        let result = async {
            vm.client.send_all(rest).await?;
            vm.snapshot_client.send(load).await
        }
        .await;
        if let Err(e) = result {
            let e = vm.process.check_alive().err().unwrap_or(e);
            return Err(launch::abandon(&vm, e).await);
        }
        // Firecracker has read the state and maps the memory: the chroot
        // keeps no copy of the guest's memory under a name.
        if let Some(jail) = &layout.jail {
            for name in [JAILED_STATE, JAILED_MEMORY] {
                if let Err(e) = remove_if_present(&jail.host_path(name)) {
                    tracing::warn!(vm = %config.vm_id, "{e}");
                }
            }
        }
        tracing::info!(vm = %config.vm_id, pid = vm.process.identity().pid, "firecracker vm restored");
        Ok(Box::new(vm))
    }

    async fn attach(&self, config: &VmConfig, identity: VmIdentity) -> Result<Box<dyn Vm>> {
        let layout = self.layout(config)?;
        let process = launch::attach_process(config, identity)?;
        let vm = FirecrackerVm {
            config: config.clone(),
            client: ApiClient::new(
                &config.vm_id,
                &layout.api_socket,
                self.settings.call_timeout,
            ),
            snapshot_client: ApiClient::new(
                &config.vm_id,
                &layout.api_socket,
                self.settings.snapshot_timeout,
            ),
            process,
            layout,
            settings: self.settings.clone(),
        };
        vm.status().await?;
        Ok(Box::new(vm))
    }

    async fn version(&self) -> Result<String> {
        self.version
            .get(
                "firecracker",
                &self.settings.binary,
                self.settings.call_timeout,
            )
            .await
    }
}

/// A Firecracker VM.
#[derive(Debug)]
pub struct FirecrackerVm {
    config: VmConfig,
    process: VmProcess,
    client: ApiClient,
    snapshot_client: ApiClient,
    layout: Layout,
    settings: FirecrackerSettings,
}

impl FirecrackerVm {
    /// The API client (for calls the [`Vm`] trait does not cover, such as
    /// `GET /vm/config` or `FlushMetrics`).
    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    async fn call(&self, call: &plan::ApiCall) -> Result<serde_json::Value> {
        self.process.check_alive()?;
        match self.client.send(call).await {
            Err(e) => Err(self.process.check_alive().err().unwrap_or(e)),
            ok => ok,
        }
    }

    /// Removes the API socket and, under the jailer, the chroot and cgroup.
    fn cleanup(&self) -> Result<()> {
        let socket = remove_socket(&self.config.vm_id, &self.layout.api_socket);
        let jail = match &self.layout.jail {
            Some(plan) => jailer::cleanup(&self.config.vm_id, plan),
            None => Ok(()),
        };
        socket.and(jail)
    }
}

#[async_trait::async_trait]
impl Vm for FirecrackerVm {
    fn config(&self) -> &VmConfig {
        &self.config
    }

    fn process(&self) -> &VmProcess {
        &self.process
    }

    async fn status(&self) -> Result<VmStatus> {
        if let Some(status) = self.process.exit_status() {
            return Ok(VmStatus::Exited(status));
        }
        let info = self.call(&plan::ApiCall::get("/")).await?;
        Ok(match info["state"].as_str().unwrap_or("") {
            "Not started" => VmStatus::NotStarted,
            "Running" => VmStatus::Running,
            "Paused" => VmStatus::Paused,
            other => VmStatus::Other(other.to_string()),
        })
    }

    async fn pause(&self) -> Result<()> {
        self.call(&plan::set_state(api::VmState::Paused))
            .await
            .map(drop)
    }

    async fn resume(&self) -> Result<()> {
        self.call(&plan::set_state(api::VmState::Resumed))
            .await
            .map(drop)
    }

    /// Firecracker writes both files under partial names; each is then
    /// made private (0600; under the jailer it stays the tenant's, who
    /// wrote it), its zero pages are freed (the memory file is sparse),
    /// and it is synced and renamed into place, as QEMU's snapshot is. The
    /// state file marks the pair: the old one goes first and the new one
    /// comes last, so a crash between the two renames leaves no snapshot,
    /// never a state file beside another snapshot's memory. Under the
    /// jailer the files are moved out of the chroot (a rename on the same
    /// filesystem, else a sparse copy).
    async fn snapshot(&self) -> Result<Snapshot> {
        let dir = super::snapshot_dir_of_paused(self).await?.to_path_buf();
        let state_file = dir.join(STATE_FILE);
        let memory_file = dir.join(MEMORY_FILE);
        let (state_name, memory_name) = match &self.layout.jail {
            Some(_) => (JAILED_STATE.to_string(), JAILED_MEMORY.to_string()),
            None => (
                plan::utf8(
                    &self.config,
                    "paths.snapshot_dir",
                    &launch::partial_path(&state_file),
                )?,
                plan::utf8(
                    &self.config,
                    "paths.snapshot_dir",
                    &launch::partial_path(&memory_file),
                )?,
            ),
        };
        // Memory first, state last (see above).
        let files = [
            (
                memory_file.clone(),
                self.layout.jail.as_ref().map(|j| j.host_path(&memory_name)),
                true,
            ),
            (
                state_file.clone(),
                self.layout.jail.as_ref().map(|j| j.host_path(&state_name)),
                false,
            ),
        ];
        let remove_partials = |files: &[(PathBuf, Option<PathBuf>, bool)]| {
            for (target, in_jail, _) in files {
                let _ = std::fs::remove_file(launch::partial_path(target));
                if let Some(in_jail) = in_jail {
                    let _ = std::fs::remove_file(in_jail);
                }
            }
        };
        self.process.check_alive()?;
        let created = self
            .snapshot_client
            .send(&plan::snapshot(&state_name, &memory_name))
            .await;
        if let Err(e) = created {
            remove_partials(&files);
            return Err(self.process.check_alive().err().unwrap_or(e));
        }
        let committed = crate::base::blocking({
            let (files, state_file) = (files.clone(), state_file.clone());
            move || {
                remove_if_present(&state_file)?;
                for (target, in_jail, memory) in &files {
                    commit_snapshot_file(target, in_jail.as_deref(), *memory)?;
                }
                Ok(())
            }
        })
        .await;
        if let Err(e) = committed {
            remove_partials(&files);
            return Err(e);
        }
        tracing::info!(vm = %self.config.vm_id, dir = %dir.display(), "firecracker snapshot written");
        Ok(Snapshot {
            backend: BackendKind::Firecracker,
            state_file,
            memory_file: Some(memory_file),
        })
    }

    async fn shutdown(&self, grace: Duration) -> Result<ShutdownOutcome> {
        // Ctrl+Alt+Del: the guest reboots, and with reboot=k Firecracker exits.
        let ctrl_alt_del = plan::action(api::ActionType::SendCtrlAltDel);
        let power_off = self.call(&ctrl_alt_del);
        let force = self.process.kill(self.settings.call_timeout);
        launch::shutdown(
            &self.process,
            grace,
            async { power_off.await.map(drop) },
            force,
            || self.cleanup(),
        )
        .await
    }

    async fn kill(&self) -> Result<ExitStatus> {
        launch::kill(&self.process, self.settings.call_timeout, || self.cleanup()).await
    }
}

/// The snapshot's state file inside a chroot.
const JAILED_STATE: &str = "/snapshot.state";
/// The snapshot's memory file inside a chroot.
const JAILED_MEMORY: &str = "/snapshot.mem";

/// The state and memory files of a Firecracker `snapshot`, checked to be
/// there (regular files) before any process starts.
fn snapshot_files(config: &VmConfig, snapshot: &Snapshot) -> Result<(PathBuf, PathBuf)> {
    let memory = match (&snapshot.backend, &snapshot.memory_file) {
        (BackendKind::Firecracker, Some(memory)) => memory.clone(),
        _ => {
            return Err(VmmError::InvalidState {
                vm: config.vm_id.clone(),
                operation: "restore",
                state: format!(
                    "the snapshot was not written by firecracker ({:?})",
                    snapshot.backend
                ),
            })
        }
    };
    for (what, file) in [("state", &snapshot.state_file), ("memory", &memory)] {
        let found = std::fs::symlink_metadata(file).and_then(|meta| match meta.is_file() {
            true => Ok(()),
            false => Err(std::io::Error::other("not a regular file")),
        });
        if let Err(source) = found {
            return Err(VmmError::Io {
                context: format!(
                    "vm {}: cannot restore: snapshot {what} file {}",
                    config.vm_id,
                    file.display()
                ),
                source,
            });
        }
    }
    Ok((snapshot.state_file.clone(), memory))
}

/// Puts one file Firecracker wrote in place as `target`: from `in_jail`
/// (moved out of the chroot) or from `target`'s partial name, mode 0600,
/// zero pages freed when it is `memory`, synced and renamed.
fn commit_snapshot_file(target: &Path, in_jail: Option<&Path>, memory: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let partial = launch::partial_path(target);
    let copied = match in_jail {
        Some(source) => move_out_of_jail(source, &partial)?,
        None => false,
    };
    let io = |source| VmmError::Io {
        context: format!("cannot make {} private", partial.display()),
        source,
    };
    let file = jailer::open_regular(&partial, memory).map_err(io)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    if memory && !copied {
        let started = std::time::Instant::now();
        let punched =
            crate::sys::file::punch_zero_blocks(&file).map_err(|source| VmmError::Io {
                context: format!("cannot free the zero pages of {}", partial.display()),
                source,
            })?;
        tracing::debug!(file = %partial.display(), punched, took = ?started.elapsed(), "snapshot memory made sparse");
    }
    drop(file);
    launch::commit_file(&partial, target)
}

/// Moves a file the jailed Firecracker wrote out of its chroot: a rename,
/// or a sparse copy (same owner, 0600) across filesystems; returns whether
/// it copied. The jail is the VMM's to shape: only a regular file is taken
/// (a link it planted is never followed, so root copies nothing the VMM
/// could not read), and what lands at `target` must be that very file.
fn move_out_of_jail(source: &Path, target: &Path) -> Result<bool> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let io = |err| VmmError::Io {
        context: format!("cannot move {} to {}", source.display(), target.display()),
        source: err,
    };
    let file = jailer::open_regular(source, false).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    match std::fs::rename(source, target) {
        Ok(()) => {
            let landed = std::fs::symlink_metadata(target).map_err(io)?;
            if landed.is_file() && (landed.dev(), landed.ino()) == (meta.dev(), meta.ino()) {
                return Ok(false);
            }
            let _ = std::fs::remove_file(target);
            Err(io(std::io::Error::other(
                "the file was swapped while it moved",
            )))
        }
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(target)
                .map_err(io)?;
            let copied = crate::sys::file::copy_sparse_fd(&file, &out)
                .and_then(|()| std::os::unix::fs::fchown(&out, Some(meta.uid()), Some(meta.gid())));
            if let Err(e) = copied {
                let _ = std::fs::remove_file(target);
                return Err(io(e));
            }
            std::fs::remove_file(source).map_err(io)?;
            Ok(true)
        }
        Err(e) => Err(io(e)),
    }
}

/// Removes `path`; absent is success.
fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(VmmError::Io {
            context: format!("cannot remove {}", path.display()),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn touch(path: &Path) -> Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(drop)
        .map_err(|source| VmmError::Io {
            context: format!("cannot create {}", path.display()),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_planted_in_the_jail_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("registry.json");
        std::fs::write(&secret, "every token").unwrap();
        let planted = dir.path().join("jail-snapshot.mem");
        std::os::unix::fs::symlink(&secret, &planted).unwrap();
        let target = dir.path().join("out/snapshot.mem.partial");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        assert!(move_out_of_jail(&planted, &target).is_err());
        assert!(target.symlink_metadata().is_err(), "nothing may land");

        let real = dir.path().join("jail-snapshot.state");
        std::fs::write(&real, "state").unwrap();
        move_out_of_jail(&real, &target).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "state");
        assert!(!real.exists());
    }
}
