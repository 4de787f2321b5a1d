//! A whole host over fakes, for T0 lifecycle tests (spawn, evict, recover):
//! the registry and overlay disks are real (a temporary directory, real
//! `mkfs.ext4` and `debugfs`); TAPs, firewall and proxy are the crate's
//! fakes; VMs run on the Firecracker backend against the fake Firecracker
//! API server (every request checked against the pinned spec); and each
//! "guest" that boots runs the real `lobster-agent` in this process.
//!
//! How a fake guest boots: once the backend has sent `InstanceStart`, the
//! guest reads its settings where a real one does, from the `lobster.*`
//! kernel arguments and the token the host wrote into its overlay disk
//! (read back with `debugfs`), and starts the agent on loopback. The
//! guest's address is the tenant's (the pool lies in 127/8, so it is
//! local), served by forwarders that live exactly as long as the VMM
//! process: when it dies, they close and the agent's workload is stopped,
//! so nothing of a dead guest answers or runs.
//!
//! The process comparison sees every child of the test process, so each
//! test needs its own process (nextest).
//!
//! Local test kit: to be folded into `lobster-testkit`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lobster_agent::{Agent as GuestAgent, AgentConfig};
use lobster_core::config::{Config, PathsConfig};
use lobster_core::context::{FirewallOps, Services};
use lobster_core::network::firewall::{Batch, Firewall, FirewallSettings, MemoryBackend, Ruleset};
use lobster_core::network::{FakeNetwork, NetworkError, TenantNet};
use lobster_core::proxy::{FakeRoutes, ProxySettings, RouteInfo, RouteOps};
use lobster_core::store::{Store, TenantRecord};
use lobster_core::vmm::firecracker::fake::{FakeLauncher, FakeOptions, Phase};
use lobster_core::vmm::firecracker::{FirecrackerSettings, FirecrackerVmm, Launcher};
use lobster_core::vmm::{BackendKind, ConsoleLog, VmProcess, Vmm};
use lobster_core::Host;

/// Agent ports of the fake guests (unprivileged: the guest is this process).
pub const AGENT_PORT: u16 = 30052;
/// Health ports of the fake guests.
pub const HEALTH_PORT: u16 = 30053;

/// Failures armed for the next occurrence of a named operation.
#[derive(Debug, Default)]
pub struct Faults(Mutex<BTreeSet<&'static str>>);

impl Faults {
    /// Makes the next `operation` fail.
    pub fn arm(&self, operation: &'static str) {
        self.0.lock().unwrap().insert(operation);
    }

    /// Whether `operation` should fail now (disarms it).
    pub fn take(&self, operation: &'static str) -> bool {
        self.0.lock().unwrap().remove(operation)
    }
}

/// The firewall of the rig: the real planner on [`MemoryBackend`], whose
/// `apply_tenant` fails once when the fault `firewall` is armed.
#[derive(Debug)]
pub struct FaultyFirewall {
    pub inner: Firewall<MemoryBackend>,
    faults: Arc<Faults>,
}

impl FirewallOps for FaultyFirewall {
    fn apply_tenant(&self, net: &TenantNet) -> Result<(), NetworkError> {
        if self.faults.take("firewall") {
            return Err(NetworkError::Firewall {
                command: "memory-restore".into(),
                stderr: "iptables-restore: line 3 failed (injected)".into(),
                source: None,
            });
        }
        FirewallOps::apply_tenant(&self.inner, net)
    }
    fn remove_tenant(&self, net: &TenantNet) -> Result<(), NetworkError> {
        FirewallOps::remove_tenant(&self.inner, net)
    }
    fn remove_tenant_id(&self, id: &str) -> Result<(), NetworkError> {
        FirewallOps::remove_tenant_id(&self.inner, id)
    }
    fn current(&self) -> Result<Ruleset, NetworkError> {
        FirewallOps::current(&self.inner)
    }
    fn drift(&self, current: &Ruleset, net: &TenantNet) -> Batch {
        FirewallOps::drift(&self.inner, current, net)
    }
    fn reconcile(&self, tenants: &[TenantNet]) -> Result<usize, NetworkError> {
        FirewallOps::reconcile(&self.inner, tenants)
    }
}

/// A booted fake guest.
#[derive(Debug)]
pub struct Guest {
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
    pub fake: FakeLauncher,
    faults: Arc<Faults>,
    booted: Arc<Mutex<Vec<Arc<Guest>>>>,
}

impl GuestLauncher {
    /// Every guest that booted so far, in order.
    pub fn booted(&self) -> Vec<Arc<Guest>> {
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
            };
            tokio::spawn(guest.run());
        }
        Ok(process)
    }
}

struct FakeGuest {
    vm_id: String,
    fake: lobster_core::vmm::firecracker::fake::FakeFirecracker,
    process: VmProcess,
    faults: Arc<Faults>,
    booted: Arc<Mutex<Vec<Arc<Guest>>>>,
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
            let _ = self.process.signal(libc::SIGKILL); // a kernel panic
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

    async fn boot(&self) -> Result<(Guest, Vec<tokio::task::JoinHandle<()>>), String> {
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
        let agent = GuestAgent::start(AgentConfig::for_host_process(state.path(), &token))
            .map_err(|e| format!("agent: {e}"))?;
        let forwarders = vec![
            forward(kernel.rpc_listen, agent.rpc_addr()).await?,
            forward(kernel.health_listen, agent.health_addr()).await?,
        ];
        let guest = Guest {
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

/// A host over fakes (see the module docs).
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub host: Host,
    pub services: Services,
    pub network: Arc<FakeNetwork>,
    pub firewall: Arc<FaultyFirewall>,
    pub routes: Arc<FakeRoutes>,
    pub launcher: GuestLauncher,
    pub faults: Arc<Faults>,
}

/// A configuration under `root` whose tenant pool is `127.<net>.0.0/24`
/// (each test its own `net`, so parallel tests never share an address).
pub fn config(root: &Path, net: u8) -> Config {
    let mut config = Config {
        paths: PathsConfig::under(root),
        ..Config::default()
    };
    config.network.pool = format!("127.{net}.0.0/24");
    config.network.agent_port = AGENT_PORT;
    config.network.health_port = HEALTH_PORT;
    config.vmm.firecracker.use_jailer = false;
    config.vmm.ready_timeout_ms = 30_000;
    config.vmm.call_timeout_ms = 30_000;
    config.tenant_defaults.memory_mib = 256;
    config.tenant_defaults.overlay_size_mib = 64;
    let images = root.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for image in [
        &config.paths.kernel,
        &config.paths.initrd,
        &config.paths.rootfs,
    ] {
        std::fs::write(image, b"not really an image").unwrap();
    }
    config
}

impl Rig {
    /// A host on `127.<net>.0.0/24` with nothing spawned.
    pub fn new(net: u8) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), net);
        let faults = Arc::new(Faults::default());
        let network = Arc::new(FakeNetwork::new());
        let firewall = Arc::new(FaultyFirewall {
            inner: Firewall::new(
                MemoryBackend::default(),
                FirewallSettings::from_config(&config.network).unwrap(),
            ),
            faults: faults.clone(),
        });
        let routes = Arc::new(FakeRoutes::new(ProxySettings::from_config(&config)));
        let launcher = GuestLauncher {
            fake: FakeLauncher::new(FakeOptions::default()),
            faults: faults.clone(),
            booted: Arc::default(),
        };
        let mut settings = FirecrackerSettings::from_config(&config.vmm);
        settings.launcher = Arc::new(launcher.clone());
        let firecracker: Arc<dyn Vmm> = Arc::new(FirecrackerVmm::new(settings));
        let services = Services {
            network: network.clone(),
            firewall: firewall.clone(),
            routes: routes.clone(),
            default_backend: BackendKind::Firecracker,
            vmm: Arc::new(move |kind| match kind {
                BackendKind::Firecracker => firecracker.clone(),
                BackendKind::Qemu => panic!("this rig runs Firecracker only"),
            }),
        };
        let host = Host::with_services(config, services.clone()).unwrap();
        Rig {
            dir,
            host,
            services,
            network,
            firewall,
            routes,
            launcher,
            faults,
        }
    }

    pub fn config(&self) -> &Config {
        self.host.config()
    }

    /// The registry the host acts on.
    pub fn store(&self) -> Store {
        Store::new(&self.config().paths.state_dir)
    }

    /// The record of `name`.
    pub fn record(&self, name: &str) -> TenantRecord {
        self.store().read().unwrap().tenants[name].clone()
    }

    /// The booted guest of the running tenant `name` (its latest boot).
    pub fn guest(&self, name: &str) -> Arc<Guest> {
        self.launcher
            .booted()
            .into_iter()
            .rev()
            .find(|g| g.vm_id == name)
            .unwrap_or_else(|| panic!("no guest of {name} booted"))
    }

    /// Everything the host holds now.
    pub async fn state(&self) -> HostState {
        HostState {
            registry: self.store().read().unwrap().tenants,
            taps: self.network.taps(),
            rules: self.firewall.inner.current().unwrap(),
            routes: self.routes.list_routes().await.unwrap(),
            files: files_under(self.dir.path()),
            processes: descendants(std::process::id() as i32),
        }
    }

    /// Waits until the host holds exactly `want` (VMM processes and guest
    /// workloads end asynchronously), then asserts it with a diff.
    pub async fn assert_state(&self, want: &HostState, context: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.state().await;
            if &now == want {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{context}: the host is not as it was:\n{}",
                    now.diff(want).join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What a host holds, for before/after comparisons.
#[derive(Debug, Clone, PartialEq)]
pub struct HostState {
    pub registry: BTreeMap<String, TenantRecord>,
    pub taps: Vec<String>,
    pub rules: Ruleset,
    pub routes: Vec<RouteInfo>,
    /// Every file (not directory) under the host's root (registry, overlay
    /// disks and templates, sockets, logs, snapshots), relative.
    pub files: BTreeSet<PathBuf>,
    /// Live processes descending from this test (VMM stand-ins, workloads).
    pub processes: BTreeSet<(i32, String)>,
}

impl HostState {
    /// The fields that differ, each as `field: now … want …`.
    pub fn diff(&self, want: &HostState) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |name: &str, now: String, then: String| {
            if now != then {
                out.push(format!("{name}:\n  now:  {now}\n  want: {then}"));
            }
        };
        field(
            "registry",
            format!("{:?}", self.registry),
            format!("{:?}", want.registry),
        );
        field(
            "taps",
            format!("{:?}", self.taps),
            format!("{:?}", want.taps),
        );
        field(
            "rules",
            format!("{:?}", self.rules),
            format!("{:?}", want.rules),
        );
        field(
            "routes",
            format!("{:?}", self.routes),
            format!("{:?}", want.routes),
        );
        let extra = |a: &BTreeSet<PathBuf>, b: &BTreeSet<PathBuf>| {
            format!("{:?}", a.difference(b).collect::<Vec<_>>())
        };
        if self.files != want.files {
            field(
                "files (extra, missing)",
                extra(&self.files, &want.files),
                extra(&want.files, &self.files),
            );
        }
        field(
            "processes",
            format!("{:?}", self.processes),
            format!("{:?}", want.processes),
        );
        out
    }
}

fn files_under(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else {
                out.insert(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out
}

/// Live (non-zombie) descendants of `root`, as (pid, command name).
pub fn descendants(root: i32) -> BTreeSet<(i32, String)> {
    let mut children: BTreeMap<i32, Vec<(i32, String)>> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().unwrap_or("");
        let ppid: i32 = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state != "Z" && state != "X" {
            children.entry(ppid).or_default().push((pid, comm));
        }
    }
    let mut out = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for (child, comm) in children.get(&pid).into_iter().flatten() {
            out.insert((*child, comm.clone()));
            stack.push(*child);
        }
    }
    out
}
