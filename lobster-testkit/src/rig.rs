//! A host over fakes: a real registry and real overlay files in a temporary
//! directory; TAPs, firewall (in-memory ruleset), proxy routes and guests are
//! lobster-core's recording fakes. The watchdog's T0 tests and its bench
//! build on it.

use std::path::Path;
use std::sync::Arc;

use lobster_core::config::{Config, PathsConfig};
use lobster_core::health::{Doctor, EventSink, FakeGuests, WatchOptions, Watchdog};
use lobster_core::host::Services;
use lobster_core::network::firewall::{Firewall, FirewallSettings, MemoryBackend};
use lobster_core::network::{FakeNetwork, NetworkOps};
use lobster_core::proxy::{FakeRoutes, ProxySettings, RouteOps};
use lobster_core::store::{Store, TenantRecord, TenantStatus};
use lobster_core::tenant::plan;
use lobster_core::vmm::{BackendKind, Vmm};
use lobster_core::Host;

/// The config of a fake host rooted in `root`: pool `10.0.0.0/16`, and no
/// repair backoff or cooldown (tests and benches step ticks themselves);
/// `tweak` changes the rest.
pub fn config(root: &Path, tweak: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config {
        paths: PathsConfig::under(root),
        ..Config::default()
    };
    config.network.pool = "10.0.0.0/16".into();
    config.watchdog.backoff_base_ms = 0;
    config.watchdog.backoff_max_ms = 0;
    config.watchdog.cooldown_ms = 0;
    tweak(&mut config);
    config
}

/// A host whose services are fakes, and the doctor that checks it.
#[derive(Debug)]
pub struct FakeHost {
    /// Where the registry, overlays and `watch.json` live.
    pub dir: tempfile::TempDir,
    /// The host, opened with the fake services.
    pub host: Host,
    /// TAPs.
    pub network: Arc<FakeNetwork>,
    /// The firewall over an in-memory ruleset.
    pub firewall: Arc<Firewall<MemoryBackend>>,
    /// Proxy routes.
    pub routes: Arc<FakeRoutes>,
    /// VMs and agents.
    pub guests: Arc<FakeGuests>,
    /// Checks and repairs through the fakes.
    pub doctor: Doctor,
}

impl FakeHost {
    /// An empty host with [`config`]`(dir, tweak)`. Building a real VMM is
    /// a test failure: the guest side is faked.
    pub async fn new(tweak: impl FnOnce(&mut Config)) -> FakeHost {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), tweak);
        let network = Arc::new(FakeNetwork::new());
        let firewall = Arc::new(Firewall::new(
            MemoryBackend::default(),
            FirewallSettings::from_config(&config.network).expect("firewall settings"),
        ));
        let routes = Arc::new(FakeRoutes::new(ProxySettings::from_config(&config)));
        let guests = Arc::new(FakeGuests::new());
        let services = Services {
            network: network.clone(),
            firewall: firewall.clone(),
            routes: routes.clone(),
            default_backend: BackendKind::Firecracker,
            vmm: Arc::new(|kind: BackendKind| -> Arc<dyn Vmm> {
                panic!("the doctor built a {kind:?} VMM although its guest side is faked")
            }),
        };
        let host = Host::with_services(config, services).expect("host over fakes");
        let services = host.services().await.expect("services");
        let doctor = Doctor::with_guests(&host, services, guests.clone());
        FakeHost {
            dir,
            host,
            network,
            firewall,
            routes,
            guests,
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
    /// real allocator and the fakes: `running`, with a booted fake VM.
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
}
