//! A host over fakes: a real registry and real overlay files in a temporary
//! directory; TAPs, firewall (the real planner on an in-memory ruleset, with
//! [`Faults`] to arm), and proxy routes are lobster-core's recording fakes.
//! What plays the guests is chosen by [`GuestSide`]: lobster-core's
//! recording [`FakeGuests`] (the watchdog's T0 tests and its bench), or
//! guests that boot the real agent on the Firecracker backend over the
//! spec-checked fake API server (the lifecycle tests: spawn, evict,
//! recover; see [`guest`]).

pub mod faults;
pub mod guest;
pub mod state;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lobster_core::config::{Config, PathsConfig};
use lobster_core::health::{Doctor, EventSink, FakeGuests, WatchOptions, Watchdog};
use lobster_core::host::Services;
use lobster_core::network::firewall::{Firewall, FirewallSettings, MemoryBackend};
use lobster_core::network::{FakeNetwork, NetworkOps};
use lobster_core::proxy::{FakeRoutes, ProxySettings, RouteOps};
use lobster_core::store::{Store, TenantRecord, TenantStatus};
use lobster_core::tenant::plan;
use lobster_core::vmm::firecracker::{FirecrackerSettings, FirecrackerVmm};
use lobster_core::vmm::{BackendKind, Vmm};
use lobster_core::Host;

pub use faults::{Faults, FaultyFirewall};
pub use guest::{BootedGuest, GuestLauncher, AGENT_PORT, HEALTH_PORT};
pub use state::{descendants, HostState};

/// What plays the guests of a [`FakeHost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestSide {
    /// lobster-core's recording [`FakeGuests`]: VMs and agents are
    /// simulated and building a real VMM is a test failure. The tenant pool
    /// is `10.0.0.0/16` and repairs have no backoff or cooldown (tests and
    /// benches step ticks themselves).
    Recorded,
    /// The Firecracker backend over the fake API server, each guest booting
    /// the real agent in this process ([`guest`]). The tenant pool is
    /// `127.<net>.0.0/24`: give each test its own `net`, so parallel tests
    /// never share an address.
    Booted {
        /// The second octet of the tenant pool.
        net: u8,
    },
}

/// The config of a fake host rooted in `root` for `guests` (see
/// [`GuestSide`]); `tweak` changes the rest. For booted guests it also
/// writes stand-in image files under `root`.
pub fn config(root: &Path, guests: GuestSide, tweak: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config {
        paths: PathsConfig::under(root),
        ..Config::default()
    };
    // Jails and cgroups of this host alone: an evict of a fake `alice`
    // must never reach a real tenant's cgroup.
    config.vmm.firecracker.chroot_base = root.join("jail");
    config.vmm.cgroup_parent = format!(
        "lobster-rig-{}",
        root.file_name().and_then(|n| n.to_str()).unwrap_or("test")
    )
    .into();
    match guests {
        GuestSide::Recorded => {
            config.network.pool = "10.0.0.0/16".into();
            config.watchdog.backoff_base_ms = 0;
            config.watchdog.backoff_max_ms = 0;
            config.watchdog.cooldown_ms = 0;
        }
        GuestSide::Booted { net } => {
            config.network.pool = format!("127.{net}.0.0/24");
            config.network.agent_port = AGENT_PORT;
            config.network.health_port = HEALTH_PORT;
            config.vmm.firecracker.use_jailer = false;
            config.vmm.ready_timeout_ms = 30_000;
            config.vmm.call_timeout_ms = 30_000;
            config.tenant_defaults.memory_mib = 256;
            config.tenant_defaults.overlay_size_mib = 64;
            std::fs::create_dir_all(root.join("images")).expect("images dir");
            for image in [
                &config.paths.kernel,
                &config.paths.initrd,
                &config.paths.rootfs,
            ] {
                std::fs::write(image, b"not really an image").expect("stand-in image");
            }
            // The launcher fakes Firecracker; its version (which suspend
            // records and resume compares) comes from a stand-in binary.
            config.vmm.firecracker.binary = root.join("images/firecracker");
            vmm_binary(&config.vmm.firecracker.binary, "Firecracker v1.0");
        }
    }
    tweak(&mut config);
    config
}

/// Writes a stand-in VMM binary at `path` answering `--version` with
/// `version` (replaced, not rewritten in place: no "text file busy").
pub fn vmm_binary(path: &Path, version: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, format!("#!/bin/sh\necho '{version}'\n")).expect("stand-in vmm");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&tmp, path).expect("stand-in vmm in place");
}

/// A host whose services are fakes, and the doctor that checks it.
#[derive(Debug)]
pub struct FakeHost {
    /// Where the registry, overlays and `watch.json` live.
    pub dir: tempfile::TempDir,
    /// The host, opened with the fake services.
    pub host: Host,
    /// The services the host was opened with.
    pub services: Services,
    /// TAPs.
    pub network: Arc<FakeNetwork>,
    /// The firewall over an in-memory ruleset.
    pub firewall: Arc<FaultyFirewall>,
    /// Proxy routes.
    pub routes: Arc<FakeRoutes>,
    /// Failures armed for the firewall (`firewall`) and booting guests (`boot`).
    pub faults: Arc<Faults>,
    /// VMs and agents, with [`GuestSide::Recorded`].
    pub guests: Arc<FakeGuests>,
    /// Firecracker's launcher, with [`GuestSide::Booted`].
    pub launcher: GuestLauncher,
    /// Checks and repairs, through the guests of the [`GuestSide`].
    pub doctor: Doctor,
}

impl FakeHost {
    /// An empty host with [`GuestSide::Recorded`] guests and
    /// [`config`]`(dir, Recorded, tweak)`.
    pub async fn new(tweak: impl FnOnce(&mut Config)) -> FakeHost {
        FakeHost::build(GuestSide::Recorded, tweak).await
    }

    /// An empty host whose guests boot the real agent, on `127.<net>.0.0/24`.
    pub async fn booting(net: u8) -> FakeHost {
        FakeHost::build(GuestSide::Booted { net }, |_| {}).await
    }

    /// An empty host with `guests` and [`config`]`(dir, guests, tweak)`.
    pub async fn build(guests: GuestSide, tweak: impl FnOnce(&mut Config)) -> FakeHost {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), guests, tweak);
        let faults = Arc::new(Faults::default());
        let network = Arc::new(FakeNetwork::new());
        let firewall = Arc::new(FaultyFirewall::new(
            Firewall::new(
                MemoryBackend::default(),
                FirewallSettings::from_config(&config.network).expect("firewall settings"),
            ),
            faults.clone(),
        ));
        let routes = Arc::new(FakeRoutes::new(ProxySettings::from_config(&config)));
        let recorded = Arc::new(FakeGuests::new());
        let launcher = GuestLauncher::new(faults.clone());
        let services = Services {
            network: network.clone(),
            firewall: firewall.clone(),
            routes: routes.clone(),
            default_backend: BackendKind::Firecracker,
            vmm: match guests {
                GuestSide::Recorded => Arc::new(|kind: BackendKind| -> Arc<dyn Vmm> {
                    panic!("the host built a {kind:?} VMM although its guest side is faked")
                }),
                GuestSide::Booted { .. } => {
                    let mut settings = FirecrackerSettings::from_config(&config.vmm);
                    settings.launcher = Arc::new(launcher.clone());
                    let firecracker: Arc<dyn Vmm> = Arc::new(FirecrackerVmm::new(settings));
                    Arc::new(move |kind| match kind {
                        BackendKind::Firecracker => firecracker.clone(),
                        BackendKind::Qemu => panic!("booted fake guests run on Firecracker only"),
                    })
                }
            },
        };
        let host = Host::with_services(config, services.clone()).expect("host over fakes");
        let doctor = match guests {
            GuestSide::Recorded => {
                let services = host.services().await.expect("services");
                Doctor::with_guests(&host, services, recorded.clone())
            }
            GuestSide::Booted { .. } => Doctor::new(&host).await.expect("doctor"),
        };
        FakeHost {
            dir,
            host,
            services,
            network,
            firewall,
            routes,
            faults,
            guests: recorded,
            launcher,
            doctor,
        }
    }

    /// The host's config.
    pub fn config(&self) -> &Config {
        self.host.config()
    }

    /// The registry.
    pub fn store(&self) -> Store {
        Store::new(&self.config().paths.state_dir)
    }

    /// The record of `name`.
    pub fn record(&self, name: &str) -> TenantRecord {
        self.store().read().expect("registry").tenants[name].clone()
    }

    /// The ids of the holds `name`'s guest has (asked of its agent).
    pub async fn holds(&self, name: &str) -> Vec<String> {
        let agent = self.host.agent(name).await.expect("the tenant's agent");
        let holds = agent.holds().await.expect("hold.list");
        holds.into_iter().map(|h| h.id).collect()
    }

    /// A watchdog over this host that writes `watch.json` and reports to `sink`.
    pub fn watchdog(&self, sink: EventSink) -> Watchdog {
        let options = WatchOptions {
            host_setup: false,
            write_status: true,
        };
        Watchdog::new(self.doctor.clone(), options, sink)
    }

    /// Makes the host side of `record` as a finished spawn leaves it: the
    /// overlay file, TAP, firewall rules and route (the VM is the caller's).
    pub async fn provide(&self, record: &TenantRecord) {
        let overlay = plan::overlay(self.config(), record);
        std::fs::create_dir_all(overlay.path().parent().expect("overlays dir"))
            .expect("overlays dir");
        std::fs::write(overlay.path(), b"not really ext4").expect("overlay file");
        let net = plan::tenant_net(record).expect("tenant net");
        self.network.ensure(&net).await.expect("tap");
        self.firewall.apply_tenant(&net).expect("firewall");
        let route = plan::route(self.config(), record).expect("route");
        self.routes.put_route(&route).await.expect("route");
    }

    /// Registers `name` through the real allocator (status `creating`, no
    /// VM), like a spawn's first step.
    pub fn allocate(&self, name: &str) -> TenantRecord {
        self.store()
            .allocate(self.config(), crate::registry::new_tenant(name))
            .expect("allocate")
    }

    /// What a finished spawn of `name` leaves behind, made through the
    /// real allocator and the recorded fakes: `running`, with a booted fake
    /// VM ([`GuestSide::Recorded`]).
    pub async fn spawn(&self, name: &str) -> TenantRecord {
        let record = self.allocate(name);
        self.provide(&record).await;
        let vm = self.guests.boot(name);
        self.store()
            .modify(name, |r| {
                r.status = TenantStatus::Running;
                r.vm = Some(vm);
            })
            .expect("record the vm")
    }

    /// The booted guest of the running tenant `name`, its latest boot
    /// ([`GuestSide::Booted`]).
    pub fn guest(&self, name: &str) -> Arc<BootedGuest> {
        self.launcher
            .booted()
            .into_iter()
            .rev()
            .find(|g| g.vm_id == name)
            .unwrap_or_else(|| panic!("no guest of {name} booted"))
    }

    /// Installs the minimal image's OpenClaw stand-in
    /// (`guest/images/openclaw-standin.sh`) as `openclaw` in guests that
    /// boot from now on ([`GuestLauncher::install_programs`]), so the
    /// default workload is its gateway and an exec of `openclaw` runs it.
    /// Its state (config, devices, gateway pid file) goes to the returned
    /// directory, never to the user's home; its gateway listens on
    /// 127.0.0.1 (give each test its own `network.gateway_port`).
    pub fn install_openclaw_standin(&self) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let bin = self.dir.path().join("guest-bin");
        let state = self.dir.path().join("openclaw-state");
        std::fs::create_dir_all(&bin).expect("guest-bin dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../guest/images/openclaw-standin.sh")
            .canonicalize()
            .expect("guest/images/openclaw-standin.sh");
        let wrapper = bin.join("openclaw");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nOPENCLAW_STATE_DIR='{}' OPENCLAW_STANDIN_HOST=127.0.0.1 exec /bin/sh '{}' \"$@\"\n",
                state.display(),
                script.display()
            ),
        )
        .expect("openclaw wrapper");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("chmod openclaw wrapper");
        self.launcher.install_programs(&bin);
        state
    }

    /// Everything the host holds now.
    pub async fn state(&self) -> HostState {
        HostState {
            registry: self.store().read().expect("registry").tenants,
            taps: self.network.taps(),
            rules: self.firewall.current().expect("ruleset"),
            routes: self.routes.list_routes().await.expect("routes"),
            files: state::files_under(self.dir.path()),
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
            assert!(
                Instant::now() < deadline,
                "{context}: the host is not as it was:\n{}",
                now.diff(want).join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
