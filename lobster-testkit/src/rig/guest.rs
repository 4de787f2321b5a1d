//! Guests that boot for real on the Firecracker backend: the VMM is the
//! spec-checked fake Firecracker API server, and each guest that boots runs
//! the real `lobster-agent` in this process.
//!
//! How a fake guest boots: once the backend has sent `InstanceStart`, the
//! guest reads its settings where a real one does, from the `lobster.*`
//! kernel arguments and the token the host wrote into its overlay disk
//! (read back with `debugfs`), and starts the agent on loopback. The
//! guest's address is the tenant's (the pool lies in 127/8, so it is
//! local), served by forwarders that live exactly as long as the VMM
//! process: when it dies, they close and the agent's workload is stopped,
//! so nothing of a dead guest answers or runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lobster_agent::config::COMMAND_PATH;
use lobster_agent::{Agent as GuestAgent, AgentConfig};
use lobster_core::vmm::firecracker::fake::{FakeFirecracker, FakeLauncher, FakeOptions, Phase};
use lobster_core::vmm::firecracker::Launcher;
use lobster_core::vmm::{ConsoleLog, VmProcess};
use rustix::process::Signal;

use super::faults::Faults;

/// Agent ports of the fake guests (unprivileged: the guest is this process).
pub const AGENT_PORT: u16 = 30052;
/// Health ports of the fake guests.
pub const HEALTH_PORT: u16 = 30053;

/// A booted fake guest.
#[derive(Debug)]
pub struct BootedGuest {
    /// The VM (= tenant) name.
    pub vm_id: String,
    /// The real agent, in this process.
    pub agent: Arc<GuestAgent>,
    /// The token the guest read from its disk.
    pub token: String,
    _state: tempfile::TempDir,
}

/// The Firecracker launcher of the rig: [`FakeLauncher`] (the spec-checked
/// fake API server and a supervised stand-in process), plus a guest that
/// boots the real agent once the VM is started (see the module docs).
/// With the fault `boot` armed, the next guest crashes while booting (its
/// VMM process dies).
#[derive(Debug, Clone)]
pub struct GuestLauncher {
    /// The spec-checked fake API servers it started.
    pub fake: FakeLauncher,
    faults: Arc<Faults>,
    booted: Arc<Mutex<Vec<Arc<BootedGuest>>>>,
    programs: Arc<Mutex<Option<PathBuf>>>,
}

impl GuestLauncher {
    /// A launcher over a fresh [`FakeLauncher`]; `faults` may crash a boot.
    pub fn new(faults: Arc<Faults>) -> GuestLauncher {
        GuestLauncher {
            fake: FakeLauncher::new(FakeOptions::default()),
            faults,
            booted: Arc::default(),
            programs: Arc::default(),
        }
    }

    /// Gives guests that boot from now on the programs in `dir`, as a
    /// guest image has them in `/usr/local/bin`: `dir` comes first in the
    /// `PATH` of their workload and exec sessions, and their default
    /// workload is `dir/openclaw gateway`.
    pub fn install_programs(&self, dir: &Path) {
        *self.programs.lock().unwrap() = Some(dir.to_owned());
    }

    /// Every guest that booted so far, in order.
    pub fn booted(&self) -> Vec<Arc<BootedGuest>> {
        self.booted.lock().unwrap().clone()
    }
}

impl Launcher for GuestLauncher {
    fn launch(
        &self,
        vm_id: &str,
        program: &Path,
        args: &[String],
        console: ConsoleLog,
    ) -> lobster_core::vmm::Result<VmProcess> {
        let process = self.fake.launch(vm_id, program, args, console)?;
        let fake = self.fake.fakes().last().cloned();
        if let Some(fake) = fake {
            let guest = FakeGuest {
                vm_id: vm_id.to_owned(),
                fake,
                process: process.clone(),
                faults: self.faults.clone(),
                booted: self.booted.clone(),
                programs: self.programs.lock().unwrap().clone(),
            };
            tokio::spawn(guest.run());
        }
        Ok(process)
    }
}

struct FakeGuest {
    vm_id: String,
    fake: FakeFirecracker,
    process: VmProcess,
    faults: Arc<Faults>,
    booted: Arc<Mutex<Vec<Arc<BootedGuest>>>>,
    programs: Option<PathBuf>,
}

impl FakeGuest {
    /// Boots when the VM starts, serves until the VMM dies, then stops.
    async fn run(self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.fake.phase() != Phase::Running {
            if self.process.check_alive().is_err() || Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if self.faults.take("boot") {
            let _ = self.process.signal(Signal::KILL.as_raw()); // a kernel panic
            return;
        }
        let (guest, forwarders) = match self.boot().await {
            Ok(booted) => booted,
            Err(e) => panic!("fake guest {} cannot boot: {e}", self.vm_id),
        };
        let guest = Arc::new(guest);
        self.booted.lock().unwrap().push(guest.clone());
        self.process.wait_exit(Duration::from_secs(24 * 3600)).await;
        for forwarder in forwarders {
            forwarder.abort();
        }
        let agent = guest.agent.clone();
        let _ = tokio::task::spawn_blocking(move || agent.quiesce()).await;
    }

    async fn boot(&self) -> Result<(BootedGuest, Vec<tokio::task::JoinHandle<()>>), String> {
        let requests = self.fake.requests();
        let body = |path: &str| {
            requests
                .iter()
                .find(|r| r.method == "PUT" && r.path == path && r.status < 300)
                .map(|r| r.body.clone())
                .ok_or_else(|| format!("no accepted PUT {path}"))
        };
        let boot_args = body("/boot-source")?["boot_args"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let disk = PathBuf::from(
            body("/drives/overlay")?["path_on_host"]
                .as_str()
                .unwrap_or_default(),
        );
        let token = read_token(&disk).await?;
        let kernel = AgentConfig::for_guest(&boot_args).map_err(|e| e.to_string())?;
        let state = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut config = AgentConfig::for_host_process(state.path(), &token);
        if let Some(dir) = &self.programs {
            config.command_path = format!("{}:{COMMAND_PATH}", dir.display());
            config.default_command =
                vec![dir.join("openclaw").display().to_string(), "gateway".into()];
        }
        let agent = GuestAgent::start(config).map_err(|e| format!("agent: {e}"))?;
        let forwarders = vec![
            forward(kernel.rpc_listen, agent.rpc_addr()).await?,
            forward(kernel.health_listen, agent.health_addr()).await?,
        ];
        let guest = BootedGuest {
            vm_id: self.vm_id.clone(),
            agent: Arc::new(agent),
            token,
            _state: state,
        };
        Ok((guest, forwarders))
    }
}

/// `meta/agent.token` of an ext4 image, as the guest reads it.
async fn read_token(disk: &Path) -> Result<String, String> {
    let out = tokio::process::Command::new("debugfs")
        .arg("-R")
        .arg("cat meta/agent.token")
        .arg(disk)
        .output()
        .await
        .map_err(|e| format!("debugfs: {e}"))?;
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if token.is_empty() {
        return Err(format!("no token in {}", disk.display()));
    }
    Ok(token)
}

/// Serves `at` (the guest's address) by forwarding to `to`; the listener
/// and every connection close when the returned task is aborted. Binding
/// retries for a while: the previous guest at this address may be closing.
async fn forward(at: SocketAddr, to: SocketAddr) -> Result<tokio::task::JoinHandle<()>, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let listener = loop {
        match tokio::net::TcpListener::bind(at).await {
            Ok(l) => break l,
            Err(e) if Instant::now() > deadline => return Err(format!("bind {at}: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    Ok(tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    }))
}
