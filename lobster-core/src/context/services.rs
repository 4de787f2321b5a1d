//! The system seams tenant lifecycle operations act through: network (TAPs),
//! firewall, proxy routes and the VMM. [`Services::system`] builds the real
//! ones for a configuration; tests inject fakes with [`crate::Host::with_services`].

use std::sync::Arc;
use std::time::Duration;

use crate::config::{BackendKind, Config};
use crate::network::firewall::{
    apply_batch, Batch, Firewall, FirewallBackend, FirewallSettings, Iptables, Ruleset,
};
use crate::network::{Network, NetworkError, NetworkOps, TenantNet};
use crate::proxy::{Caddy, ProxySettings, RouteOps};
use crate::vmm::{self, Vmm};

/// Timeout of each netlink request and firewall batch.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(10);

/// The firewall as the lifecycle uses it: one tenant at a time.
pub trait FirewallOps: Send + Sync + std::fmt::Debug {
    /// Adds or repairs one tenant's rules.
    fn apply_tenant(&self, net: &TenantNet) -> Result<(), NetworkError>;
    /// Removes one tenant's rules; absent is success.
    fn remove_tenant(&self, net: &TenantNet) -> Result<(), NetworkError>;
    /// Removes every chain and jump of tenant `id`, whatever they hold
    /// (rules of a tenant no longer in the registry). Absent is success.
    fn remove_tenant_id(&self, id: &str) -> Result<(), NetworkError>;
    /// The lobster part of the ruleset as it is now (read once to check
    /// many tenants; the host's connected subnets are read with it).
    fn current(&self) -> Result<Ruleset, NetworkError>;
    /// What `apply_tenant` would change for `net` in `current`; empty when
    /// its rules, the base chains and the hooks are in place. Pure (the
    /// host's subnets are those read by the last operation, e.g. `current`).
    fn drift(&self, current: &Ruleset, net: &TenantNet) -> Batch;
    /// Makes the ruleset hold exactly `tenants`' rules (after a reboot or a
    /// flush); returns the number of changes.
    fn reconcile(&self, tenants: &[TenantNet]) -> Result<usize, NetworkError>;
}

impl<B: FirewallBackend> FirewallOps for Firewall<B> {
    fn apply_tenant(&self, net: &TenantNet) -> Result<(), NetworkError> {
        Firewall::apply_tenant(self, net).map(|_| ())
    }

    fn remove_tenant(&self, net: &TenantNet) -> Result<(), NetworkError> {
        Firewall::remove_tenant(self, net).map(|_| ())
    }

    fn remove_tenant_id(&self, id: &str) -> Result<(), NetworkError> {
        Firewall::remove_tenant_id(self, id).map(|_| ())
    }

    fn current(&self) -> Result<Ruleset, NetworkError> {
        Firewall::current(self)
    }

    fn drift(&self, current: &Ruleset, net: &TenantNet) -> Batch {
        apply_batch(current, net, &self.last_settings())
    }

    fn reconcile(&self, tenants: &[TenantNet]) -> Result<usize, NetworkError> {
        Firewall::reconcile(self, tenants).map(|r| r.changes)
    }
}

/// Builds the VMM backend of a kind (so a tenant runs on the backend that
/// launched it, whatever the host default is now).
pub type VmmFactory = Arc<dyn Fn(BackendKind) -> Arc<dyn Vmm> + Send + Sync>;

/// Everything the lifecycle touches outside the registry.
#[derive(Clone)]
pub struct Services {
    /// TAP devices.
    pub network: Arc<dyn NetworkOps>,
    /// Per-tenant firewall rules.
    pub firewall: Arc<dyn FirewallOps>,
    /// Proxy routes.
    pub routes: Arc<dyn RouteOps>,
    /// The backend new tenants get when their spec names none.
    pub default_backend: BackendKind,
    /// VMM backends by kind.
    pub vmm: VmmFactory,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("network", &self.network)
            .field("firewall", &self.firewall)
            .field("routes", &self.routes)
            .field("default_backend", &self.default_backend)
            .finish()
    }
}

impl Services {
    /// The real seams: rtnetlink in the caller's network namespace,
    /// iptables, Caddy's admin API, and the configured VMM (for `auto`,
    /// probed once here). Must run inside a tokio runtime.
    pub fn system(config: &Config) -> Result<Services, NetworkError> {
        let network = Network::connect(NETWORK_TIMEOUT)?;
        let mut settings = FirewallSettings::from_config(&config.network)?;
        // Only Caddy's uid (and root) may reach a guest's gateway; a missing
        // `proxy.user` fails closed: root only.
        settings.proxy_uid = crate::proxy::caddy_uid(config).ok();
        let firewall = Firewall::new(Iptables::new(NETWORK_TIMEOUT), settings);
        let routes = Caddy::new(ProxySettings::from_config(config));
        let default_backend = vmm::choose_backend(config);
        let config = config.clone();
        let vmm: VmmFactory = Arc::new(move |kind| Arc::from(vmm::backend(kind, &config)));
        Ok(Services {
            network: Arc::new(network),
            firewall: Arc::new(firewall),
            routes: Arc::new(routes),
            default_backend,
            vmm,
        })
    }
}
