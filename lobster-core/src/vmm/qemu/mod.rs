//! The QEMU `microvm` backend: the command line is planned from the
//! [`VmConfig`] ([`argv`]), the process is supervised through a pidfd, and
//! the VM is driven over QMP ([`qmp`]): `query-status`, `stop`/`cont`,
//! `system_powerdown`, `quit`, and snapshots as a migration stream to a
//! file descriptor, restored by a new process started with `-incoming defer`.

pub mod accel;
pub mod argv;
pub mod qmp;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use self::accel::Accelerator;
use self::argv::Start;
use self::qmp::Qmp;
use super::{
    launch, remove_socket, sandbox, BackendKind, ExitStatus, Result, ShutdownOutcome, Snapshot, Vm,
    VmConfig, VmIdentity, VmProcess, VmStatus, Vmm, VmmError,
};

/// QEMU's jails are `<chroot_base>/qemu/<vm_id>`.
pub const JAIL_NAME: &str = "qemu";

/// Name of the migration stream inside a snapshot directory.
pub const STATE_FILE: &str = "qemu-state.bin";

/// Settings of the QEMU backend.
#[derive(Debug, Clone)]
pub struct QemuSettings {
    /// The `qemu-system-x86_64` binary.
    pub binary: PathBuf,
    /// The accelerator (see [`accel::choose`]).
    pub accel: Accelerator,
    /// Bound on launch until QMP answers.
    pub ready_timeout: Duration,
    /// Bound on each QMP exchange.
    pub call_timeout: Duration,
    /// Bound on writing or reading a snapshot.
    pub snapshot_timeout: Duration,
}

impl QemuSettings {
    /// Settings from the host configuration; when `accel` is `auto`, KVM is
    /// probed by booting `kernel` (see [`accel`]).
    pub fn from_config(vmm: &crate::config::VmmConfig, kernel: &std::path::Path) -> QemuSettings {
        QemuSettings {
            binary: vmm.qemu.binary.clone(),
            accel: accel::choose(
                vmm.qemu.accel,
                vmm.qemu.tcg_tb_size_mib,
                &vmm.qemu.binary,
                kernel,
            ),
            ready_timeout: Duration::from_millis(vmm.ready_timeout_ms),
            call_timeout: Duration::from_millis(vmm.call_timeout_ms),
            snapshot_timeout: Duration::from_millis(vmm.snapshot_timeout_ms),
        }
    }
}

/// The QEMU backend.
#[derive(Debug, Clone)]
pub struct QemuVmm {
    settings: QemuSettings,
    version: super::version::VersionCache,
}

impl QemuVmm {
    /// A backend with these settings.
    pub fn new(settings: QemuSettings) -> QemuVmm {
        QemuVmm {
            settings,
            version: Default::default(),
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &QemuSettings {
        &self.settings
    }

    async fn start(&self, config: &VmConfig, start: Start) -> Result<QemuVm> {
        let args = match &config.jail {
            None => argv::plan(config, &self.settings.accel, start)?,
            Some(_) => {
                // Jailed, QEMU sees its socket at the jail's short path.
                let mut inside = config.clone();
                inside.paths.api_socket = sandbox::SOCKET.into();
                argv::plan(&inside, &self.settings.accel, start)?
            }
        };
        let socket = sandbox::host_socket(config, JAIL_NAME);
        launch::clear_stale_socket(&config.vm_id, &socket).await?;
        let (binary, confinement) = match &config.jail {
            None => {
                launch::create_socket_dir(&socket)?;
                (self.settings.binary.clone(), None)
            }
            Some(_) => {
                // Inside the jail only absolute paths exist.
                let binary = crate::base::find_program(&self.settings.binary).ok_or_else(|| {
                    VmmError::Spawn {
                        vm: config.vm_id.clone(),
                        binary: self.settings.binary.clone(),
                        source: std::io::ErrorKind::NotFound.into(),
                    }
                })?;
                // /dev/null: QEMU probes file locking with it.
                let mut devices: Vec<&Path> = vec![Path::new("/dev/null")];
                if self.settings.accel == Accelerator::Kvm {
                    devices.push(Path::new("/dev/kvm"));
                }
                if config.nic.is_some() {
                    devices.push(Path::new("/dev/net/tun"));
                }
                let plan = sandbox::plan(config, JAIL_NAME, &binary, &devices)?;
                let confinement = crate::base::blocking({
                    let config = config.clone();
                    move || sandbox::prepare(&config, &plan)
                })
                .await?;
                (binary, Some(confinement))
            }
        };
        let console = launch::console_for_start(config, &binary, &args);
        let mut command = Command::new(&binary);
        command.args(&args);
        if let Some(netns) = config.jail.as_ref().and_then(|j| j.netns.as_ref()) {
            let fd = std::fs::File::open(netns).map_err(|source| VmmError::Io {
                context: format!(
                    "vm {}: cannot open network namespace {}",
                    config.vm_id,
                    netns.display()
                ),
                source,
            })?;
            crate::sys::netns::join_netns_on_exec(&mut command, fd.into());
        }
        let spawned =
            VmProcess::spawn_confined(&config.vm_id, command, console, confinement.as_ref());
        let process = match spawned {
            Ok(process) => process,
            Err(e) => {
                let _ = self.remove_jail(config);
                return Err(e);
            }
        };
        let vm = QemuVm {
            config: config.clone(),
            process,
            socket,
            settings: self.settings.clone(),
        };
        if let Err(e) = vm.wait_ready().await {
            return Err(launch::abandon(&vm, e).await);
        }
        tracing::info!(vm = %config.vm_id, pid = vm.process.identity().pid, "qemu ready");
        Ok(vm)
    }

    /// Removes the jail and the cgroup of `config`'s VMM (gone by now).
    fn remove_jail(&self, config: &VmConfig) -> Result<()> {
        match &config.jail {
            Some(jail) => super::remove_jail(config, &sandbox::jail_dir(jail, JAIL_NAME)),
            None => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl Vmm for QemuVmm {
    fn kind(&self) -> BackendKind {
        BackendKind::Qemu
    }

    async fn launch(&self, config: &VmConfig) -> Result<Box<dyn Vm>> {
        Ok(Box::new(self.start(config, Start::Boot).await?))
    }

    async fn restore(
        &self,
        config: &VmConfig,
        snapshot: &Snapshot,
        resume: bool,
    ) -> Result<Box<dyn Vm>> {
        if snapshot.backend != BackendKind::Qemu {
            return Err(VmmError::InvalidState {
                vm: config.vm_id.clone(),
                operation: "restore",
                state: format!("the snapshot was written by {:?}", snapshot.backend),
            });
        }
        let file = std::fs::File::open(&snapshot.state_file).map_err(|source| VmmError::Io {
            context: format!("cannot open snapshot {}", snapshot.state_file.display()),
            source,
        })?;
        let vm = self.start(config, Start::Incoming).await?;
        if let Err(e) = vm.receive_state(file, resume).await {
            return Err(launch::abandon(&vm, e).await);
        }
        Ok(Box::new(vm))
    }

    async fn attach(&self, config: &VmConfig, identity: VmIdentity) -> Result<Box<dyn Vm>> {
        let process = launch::attach_process(config, identity)?;
        let vm = QemuVm {
            config: config.clone(),
            process,
            socket: sandbox::host_socket(config, JAIL_NAME),
            settings: self.settings.clone(),
        };
        vm.status().await?;
        Ok(Box::new(vm))
    }

    async fn version(&self) -> Result<String> {
        self.version
            .get("qemu", &self.settings.binary, self.settings.call_timeout)
            .await
    }
}

/// A QEMU VM.
#[derive(Debug)]
pub struct QemuVm {
    config: VmConfig,
    process: VmProcess,
    /// The QMP socket as the host reaches it (inside the jail, if any).
    socket: PathBuf,
    settings: QemuSettings,
}

impl QemuVm {
    /// A fresh QMP session (QEMU serves one client at a time; a session per
    /// operation lets any orchestrator process drive the VM).
    async fn qmp(&self) -> Result<Qmp> {
        self.process.check_alive()?;
        let result =
            Qmp::connect(&self.config.vm_id, &self.socket, self.settings.call_timeout).await;
        // A VMM that died mid-call explains the failure better than EOF.
        match result {
            Err(e) => Err(self.process.check_alive().err().unwrap_or(e)),
            ok => ok,
        }
    }

    async fn execute(
        &self,
        command: &str,
        args: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let mut qmp = self.qmp().await?;
        let result = qmp.execute(command, args).await;
        match result {
            Err(e) => Err(self.process.check_alive().err().unwrap_or(e)),
            ok => ok,
        }
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.settings.ready_timeout;
        loop {
            self.process.check_alive()?;
            let attempt =
                Qmp::connect(&self.config.vm_id, &self.socket, self.settings.call_timeout).await;
            match attempt {
                Ok(mut qmp) => {
                    qmp.execute("query-status", None).await?;
                    return Ok(());
                }
                Err(VmmError::Io { source, .. })
                    if matches!(
                        source.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) => {}
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                self.process.check_alive()?;
                return Err(VmmError::Timeout {
                    vm: self.config.vm_id.clone(),
                    operation: format!("waiting for qmp socket {}", self.socket.display()),
                    after: self.settings.ready_timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn receive_state(&self, file: std::fs::File, resume: bool) -> Result<()> {
        use std::os::fd::AsFd;
        let mut qmp = self.qmp().await?;
        qmp.send_fd("snapshot", file.as_fd()).await?;
        qmp.execute("migrate-incoming", Some(json!({ "uri": "fd:snapshot" })))
            .await?;
        drop(file);
        self.wait_migration(&mut qmp, "restoring the snapshot")
            .await?;
        if resume {
            qmp.execute("cont", None).await?;
        }
        Ok(())
    }

    /// Polls `query-migrate` until it completes; errors carry QEMU's reason.
    async fn wait_migration(&self, qmp: &mut Qmp, operation: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.settings.snapshot_timeout;
        loop {
            let info = qmp.execute("query-migrate", None).await?;
            match info["status"].as_str().unwrap_or("") {
                "completed" => return Ok(()),
                "failed" | "cancelled" => {
                    return Err(VmmError::Protocol {
                        vm: self.config.vm_id.clone(),
                        what: operation.to_string(),
                        detail: info["error-desc"]
                            .as_str()
                            .unwrap_or("migration failed")
                            .to_string(),
                    })
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(VmmError::Timeout {
                    vm: self.config.vm_id.clone(),
                    operation: operation.to_string(),
                    after: self.settings.snapshot_timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn cleanup(&self) -> Result<()> {
        let socket = remove_socket(&self.config.vm_id, &self.socket);
        let jail = match &self.config.jail {
            Some(jail) => super::remove_jail(&self.config, &sandbox::jail_dir(jail, JAIL_NAME)),
            None => Ok(()),
        };
        socket.and(jail)
    }
}

#[async_trait::async_trait]
impl Vm for QemuVm {
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
        let info = self.execute("query-status", None).await?;
        Ok(match info["status"].as_str().unwrap_or("") {
            "running" => VmStatus::Running,
            "paused" | "postmigrate" | "suspended" => VmStatus::Paused,
            "prelaunch" => VmStatus::NotStarted,
            "inmigrate" | "restore-vm" => VmStatus::Restoring,
            "shutdown" => VmStatus::ShuttingDown,
            other => VmStatus::Other(other.to_string()),
        })
    }

    async fn pause(&self) -> Result<()> {
        self.execute("stop", None).await.map(drop)
    }

    async fn resume(&self) -> Result<()> {
        self.execute("cont", None).await.map(drop)
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        use std::os::fd::AsFd;
        let dir = super::snapshot_dir_of_paused(self).await?;
        let state_file = dir.join(STATE_FILE);
        let partial = launch::partial_path(&state_file);
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::File::options()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&partial)
        }
        .map_err(|source| VmmError::Io {
            context: format!("cannot create {}", partial.display()),
            source,
        })?;
        let written = async {
            let mut qmp = self.qmp().await?;
            qmp.send_fd("snapshot", file.as_fd()).await?;
            qmp.execute("migrate", Some(json!({ "uri": "fd:snapshot" })))
                .await?;
            self.wait_migration(&mut qmp, "writing the snapshot").await
        }
        .await;
        drop(file);
        let committed = written.and_then(|()| launch::commit_file(&partial, &state_file));
        if let Err(e) = committed {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        tracing::info!(vm = %self.config.vm_id, file = %state_file.display(), "snapshot written");
        Ok(Snapshot {
            backend: BackendKind::Qemu,
            state_file,
            memory_file: None,
        })
    }

    async fn shutdown(&self, grace: Duration) -> Result<ShutdownOutcome> {
        let power_off = self.execute("system_powerdown", None);
        // The guest ignored the power button: stop QEMU cleanly, then by force.
        let force = async {
            let _ = self.execute("quit", None).await;
            match self.process.wait_exit(self.settings.call_timeout).await {
                Some(status) => Ok(status),
                None => self.process.kill(self.settings.call_timeout).await,
            }
        };
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::base::Classify;
    use crate::vmm::vm_config::tests::sample;

    /// A stand-in "qemu" (a shell script) and a config whose files live in `dir`.
    fn fake(dir: &Path, script: &str) -> (QemuVmm, VmConfig) {
        let binary = dir.join("fake-qemu");
        std::fs::write(&binary, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        let settings = QemuSettings {
            binary,
            accel: Accelerator::Tcg {
                tb_size_mib: 32,
                tsc_khz: 1,
            },
            // Generous: a fake that exits must be seen exiting, not timing
            // out, however loaded the machine is.
            ready_timeout: Duration::from_secs(60),
            call_timeout: Duration::from_millis(300),
            snapshot_timeout: Duration::from_secs(1),
        };
        let mut config = sample();
        config.paths.api_socket = dir.join("qmp.sock");
        config.paths.console_log = dir.join("console.log");
        config.paths.snapshot_dir = dir.join("snap");
        (QemuVmm::new(settings), config)
    }

    #[tokio::test]
    async fn process_exiting_early_is_reported_with_status_and_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (vmm, config) = fake(dir.path(), "echo 'qemu: could not open kernel' >&2; exit 1");
        let err = vmm.launch(&config).await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                VmmError::Exited {
                    status: ExitStatus::Code(1),
                    ..
                }
            ),
            "{text}"
        );
        assert!(text.contains("could not open kernel"), "{text}");
        assert_eq!(err.kind(), crate::base::ErrorKind::GuestFailure);
    }

    #[tokio::test]
    async fn socket_that_never_appears_times_out_and_the_process_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        // The shell stays (no `exec`), so its command line names the fake
        // from the moment it is spawned: no race with the script running.
        let (vmm, config) = fake(dir.path(), "sleep 30");
        let vmm = QemuVmm::new(QemuSettings {
            ready_timeout: Duration::from_millis(500),
            ..vmm.settings().clone()
        });
        let err = vmm.launch(&config).await.unwrap_err();
        assert!(matches!(err, VmmError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("qmp.sock"), "{err}");
        // Rolled back: the process is gone (or at most a zombie being reaped).
        let fake_path = dir.path().join("fake-qemu");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while running_with_arg(&fake_path) {
            assert!(std::time::Instant::now() < deadline, "fake qemu survived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether a live (non-zombie) process has `arg` on its command line.
    fn running_with_arg(arg: &Path) -> bool {
        let needle = arg.as_os_str().as_encoded_bytes();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == needle))
            })
            .any(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| !s.contains(") Z "))
            })
    }

    #[tokio::test]
    async fn silent_qmp_peer_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let (vmm, config) = fake(dir.path(), "exec sleep 30");
        // Something listens but never greets.
        let _listener = tokio::net::UnixListener::bind(&config.paths.api_socket).unwrap();
        let err = vmm.launch(&config).await.unwrap_err();
        // The stale-socket check refuses a socket someone listens on.
        assert!(matches!(err, VmmError::InvalidState { .. }), "{err}");

        let err = Qmp::connect("vm-t", &config.paths.api_socket, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, VmmError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("qmp greeting"), "{err}");
    }

    #[tokio::test]
    async fn qmp_errors_carry_class_and_description() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(read).lines();
            write
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .await
                .unwrap();
            while let Some(line) = lines.next_line().await.unwrap() {
                let request: serde_json::Value = serde_json::from_str(&line).unwrap();
                let id = &request["id"];
                let answer = if request["execute"] == "qmp_capabilities" {
                    json!({"return": {}, "id": id})
                } else {
                    write.write_all(b"{\"event\": \"STOP\"}\n").await.unwrap();
                    json!({"error": {"class": "GenericError", "desc": "no such thing"}, "id": id})
                };
                write
                    .write_all(format!("{answer}\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        let mut qmp = Qmp::connect("vm-t", &path, Duration::from_secs(2))
            .await
            .unwrap();
        let err = qmp.execute("stop", None).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "vm vm-t: qemu rejected stop: GenericError: no such thing"
        );
    }
}
