//! The tenant firewall (iptables, nft or legacy backend).
//!
//! Planning is pure ([`plan`], [`plan_tenant`], and the `*_batch` functions
//! that diff a [`Ruleset`] read from the host against the plan). Applying
//! goes through the narrow [`FirewallBackend`] seam: read the ruleset once,
//! apply one [`Batch`] (atomic per table, like `iptables-restore`). So
//! adding the 500th tenant writes the same handful of chains as the first,
//! and never rewrites another tenant's rules.
//!
//! What each tenant gets (see [`plan_tenant`]):
//! - guest → host: only replies to host-initiated connections;
//! - guest → elsewhere: its own source address only; the tenant pool and
//!   `egress_deny` dropped, then `egress_allow` let through, then every
//!   IANA special-purpose range and the host's connected subnets dropped
//!   (the shared `LOBSTER-EGRESS` chain, reached by goto so that flushing
//!   it fails closed); at most
//!   `max_connections` new connections tracked, beyond which *new*
//!   connections are refused and existing ones keep flowing; MASQUERADE out;
//! - anything → guest: only the gateway port, only from the host itself,
//!   only from root and the proxy's uid (`-m owner`), likewise
//!   connection-limited; forwarded traffic only as replies; TAP to TAP
//!   always dropped;
//! - agent and health ports: only root-owned host processes (`-m owner`);
//! - a TAP without its chains: everything dropped (fail closed).
//!
//! The [`Firewall`] methods block on subprocesses; call them from
//! `tokio::task::spawn_blocking` in async code.

mod host;
mod index;
mod iptables;
mod plan;
mod rules;

pub use host::host_subnets;
pub use index::TenantIndex;
pub use iptables::Iptables;
pub use plan::{
    apply_batch, base_only_batch, egress_rules, fresh_apply_batch, plan, plan_tenant,
    planned_remove_batch, reconcile_batch, remove_batch, teardown_batch, tenant_chain_prefix,
    BaseChain, TenantRules, BASE_CHAINS, EGRESS_CHAIN, EGRESS_OK_CHAIN, SPECIAL_PURPOSE_RANGES,
};
pub use rules::{builtin_chains, is_owned_chain, jump_target, Batch, Op, Ruleset, Table};

use crate::config::{Ipv4Cidr, NetworkConfig};
use crate::network::{NetworkError, TenantNet};

/// What the firewall plan depends on besides the tenant itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallSettings {
    /// The tenant address pool (dropped as a destination for guests).
    pub pool: Ipv4Cidr,
    /// The guest's workload port, the only one open to the host.
    pub gateway_port: u16,
    /// The agent's RPC port (root-only from the host).
    pub agent_port: u16,
    /// The agent's health port (root-only from the host).
    pub health_port: u16,
    /// New connections allowed per tenant while this many are tracked,
    /// counted separately out of the guest and into its gateway.
    pub max_connections: u32,
    /// Besides root, the only uid whose host processes may open connections
    /// to a guest's gateway port: the proxy's (Caddy). `None`: root only.
    pub proxy_uid: Option<u32>,
    /// Destinations guests may reach although the default deny covers them
    /// (`network.egress_allow`).
    pub egress_allow: Vec<Ipv4Cidr>,
    /// Destinations guests may never reach, whatever `egress_allow` says
    /// (`network.egress_deny`).
    pub egress_deny: Vec<Ipv4Cidr>,
    /// The host's connected subnets (denied by default). [`Firewall`] reads
    /// them afresh for every operation; plans use what is here. A new
    /// tenant's fast path leaves the shared egress chains as they are; every
    /// path that reads the ruleset (`init`, the watchdog's reconcile and
    /// repairs, a re-apply) rewrites them when the subnets changed.
    pub host_subnets: Vec<Ipv4Cidr>,
}

impl FirewallSettings {
    /// The settings from the `network` section of the configuration.
    pub fn from_config(network: &NetworkConfig) -> Result<FirewallSettings, NetworkError> {
        let pool = Ipv4Cidr::parse(&network.pool).map_err(|reason| NetworkError::Invalid {
            field: "pool",
            reason,
        })?;
        let cidrs = |field: &'static str, list: &[String]| {
            list.iter()
                .map(|c| {
                    Ipv4Cidr::parse(c).map_err(|reason| NetworkError::Invalid { field, reason })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(FirewallSettings {
            pool,
            gateway_port: network.gateway_port,
            agent_port: network.agent_port,
            health_port: network.health_port,
            max_connections: network.max_connections,
            proxy_uid: None,
            egress_allow: cidrs("egress_allow", &network.egress_allow)?,
            egress_deny: cidrs("egress_deny", &network.egress_deny)?,
            host_subnets: Vec::new(),
        })
    }
}

/// The seam to the host's packet filter: read lobster's part of the ruleset,
/// apply one batch.
pub trait FirewallBackend: Send + Sync + std::fmt::Debug {
    /// The lobster-owned chains and hooks as they are now.
    fn read(&self) -> Result<Ruleset, NetworkError>;
    /// Applies `batch` as `iptables-restore --noflush` does: table by
    /// table, each table's changes all or none, stopping at the first table
    /// that fails (the tables before it stay applied).
    fn apply(&self, batch: &Batch) -> Result<(), NetworkError>;
}

/// What a firewall operation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallReport {
    /// How many rule and chain changes were applied (0: already in place).
    pub changes: usize,
}

/// Applies planned rulesets through a backend.
#[derive(Debug)]
pub struct Firewall<B: FirewallBackend = Iptables> {
    backend: B,
    settings: FirewallSettings,
    host_subnets: std::sync::Mutex<Vec<Ipv4Cidr>>,
}

impl<B: FirewallBackend> Firewall<B> {
    /// A firewall using `backend` and `settings`.
    pub fn new(backend: B, settings: FirewallSettings) -> Firewall<B> {
        Firewall {
            backend,
            settings,
            host_subnets: Default::default(),
        }
    }

    /// The backend (e.g. to read its command counter).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The settings rules are planned with now: the configured ones with
    /// the host's connected subnets as they are at this moment (kept for
    /// [`Firewall::last_settings`]).
    pub fn settings(&self) -> Result<FirewallSettings, NetworkError> {
        let subnets = host_subnets()?;
        subnets.clone_into(&mut self.host_subnets.lock().expect("not poisoned"));
        Ok(FirewallSettings {
            host_subnets: subnets,
            ..self.settings.clone()
        })
    }

    /// The settings with the host's connected subnets as the last operation
    /// read them (none before the first): what checking many tenants
    /// against one [`Firewall::current`] plans with.
    pub fn last_settings(&self) -> FirewallSettings {
        FirewallSettings {
            host_subnets: self.host_subnets.lock().expect("not poisoned").clone(),
            ..self.settings.clone()
        }
    }

    /// Puts lobster's base chains, the egress chain and hooks exactly in
    /// place (host setup, e.g. `init`): creates what is missing, drops stray
    /// rules of lobster's there; tenants' rules are left alone.
    pub fn ensure_base(&self) -> Result<FirewallReport, NetworkError> {
        let settings = self.settings()?;
        let current = self.backend.read()?;
        self.run(base_only_batch(&current, &settings))
    }

    /// Adds or repairs one tenant's rules (and the base chains and hooks if
    /// missing). A new tenant costs one batch planned without reading the
    /// ruleset; otherwise the ruleset is read and only the difference is
    /// applied (nothing when everything is in place).
    pub fn apply_tenant(&self, net: &TenantNet) -> Result<FirewallReport, NetworkError> {
        let settings = self.settings()?;
        let fresh = fresh_apply_batch(net, &settings);
        if self.backend.apply(&fresh).is_ok() {
            return Ok(FirewallReport {
                changes: fresh.len(),
            });
        }
        let current = self.backend.read()?;
        self.run(apply_batch(&current, net, &settings))
    }

    /// Removes one tenant's chains and jumps; nothing else is touched.
    /// Absent is success. Rules exactly as planned go in one batch without
    /// reading the ruleset; anything else is read and removed by name.
    pub fn remove_tenant(&self, net: &TenantNet) -> Result<FirewallReport, NetworkError> {
        let planned = planned_remove_batch(net, &self.settings);
        if self.backend.apply(&planned).is_ok() {
            return Ok(FirewallReport {
                changes: planned.len(),
            });
        }
        self.remove_tenant_id(&net.id)
    }

    /// Removes every chain and jump of tenant `id`, whatever they hold
    /// (reads the ruleset first). Absent is success.
    pub fn remove_tenant_id(&self, id: &str) -> Result<FirewallReport, NetworkError> {
        let current = self.backend.read()?;
        self.run(remove_batch(&current, id))
    }

    /// Makes the ruleset match exactly the live `tenants`: restores anything
    /// missing (after a reboot or a flush) and removes tenants not listed.
    pub fn reconcile(&self, tenants: &[TenantNet]) -> Result<FirewallReport, NetworkError> {
        let settings = self.settings()?;
        let current = self.backend.read()?;
        self.run(reconcile_batch(&current, tenants, &settings))
    }

    /// What `apply_tenant` would change for this tenant, without changing
    /// anything (empty: its rules, the base chains and hooks are in place).
    pub fn check_tenant(&self, net: &TenantNet) -> Result<Batch, NetworkError> {
        let settings = self.settings()?;
        let current = self.backend.read()?;
        Ok(apply_batch(&current, net, &settings))
    }

    /// Removes every chain and hook of lobster's (`uninit`, with no tenant
    /// left): the host's own rules are never named. Absent is success.
    pub fn remove_all(&self) -> Result<FirewallReport, NetworkError> {
        let current = self.backend.read()?;
        self.run(teardown_batch(&current))
    }

    /// The lobster part of the ruleset as it is now (and the host's
    /// connected subnets read again, for [`Firewall::last_settings`]).
    pub fn current(&self) -> Result<Ruleset, NetworkError> {
        self.settings()?;
        self.backend.read()
    }

    fn run(&self, batch: Batch) -> Result<FirewallReport, NetworkError> {
        let changes = batch.len();
        if changes > 0 {
            self.backend.apply(&batch)?;
        }
        Ok(FirewallReport { changes })
    }
}

/// An in-memory backend that is as strict as `iptables-restore --noflush`
/// on an empty host (see [`Ruleset::apply`]; compared with the real tool by
/// the `t1_firewall_differential` test), for tests and bindings' fakes.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
pub struct MemoryBackend {
    /// The filter and nat tables as they are (every rule, not only lobster's).
    state: std::sync::Mutex<Ruleset>,
    /// Every batch applied in full, in order.
    pub applied: std::sync::Mutex<Vec<Batch>>,
}

#[cfg(any(test, feature = "testing"))]
impl MemoryBackend {
    /// Every chain and rule of the fake tables, lobster's or not (what
    /// [`Ruleset::parse_tables`] reads from a real `iptables-save`).
    pub fn tables(&self) -> Ruleset {
        self.state.lock().expect("not poisoned").clone()
    }
}

#[cfg(any(test, feature = "testing"))]
impl FirewallBackend for MemoryBackend {
    fn read(&self) -> Result<Ruleset, NetworkError> {
        Ok(self.state.lock().expect("not poisoned").owned())
    }

    fn apply(&self, batch: &Batch) -> Result<(), NetworkError> {
        let mut state = self.state.lock().expect("not poisoned");
        state
            .apply(batch)
            .map_err(|stderr| NetworkError::Firewall {
                command: "memory-restore".into(),
                stderr,
                source: None,
            })?;
        self.applied
            .lock()
            .expect("not poisoned")
            .push(batch.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::MacAddr;

    #[test]
    fn firewall_applies_once_and_then_is_a_no_op() {
        let settings = FirewallSettings::from_config(&NetworkConfig::default()).unwrap();
        let fw = Firewall::new(MemoryBackend::default(), settings.clone());
        let net = TenantNet::new(
            "ab12cd34",
            Ipv4Cidr::parse("10.200.0.4/30").unwrap(),
            MacAddr([2, 0, 0, 0, 0, 1]),
            20001,
            10001,
        )
        .unwrap();
        assert!(fw.ensure_base().unwrap().changes > 0);
        assert_eq!(fw.ensure_base().unwrap().changes, 0);
        assert!(fw.apply_tenant(&net).unwrap().changes > 0);
        assert_eq!(fw.apply_tenant(&net).unwrap().changes, 0);
        assert!(fw.check_tenant(&net).unwrap().is_empty());
        assert_eq!(
            fw.current().unwrap(),
            plan(std::slice::from_ref(&net), &fw.settings().unwrap())
        );
        assert!(fw.remove_tenant(&net).unwrap().changes > 0);
        assert!(!fw.check_tenant(&net).unwrap().is_empty());
        assert_eq!(fw.remove_tenant(&net).unwrap().changes, 0);
        assert_eq!(fw.remove_tenant_id("ab12cd34").unwrap().changes, 0);
        // Applied: base, the tenant (fresh path), its removal (planned path).
        assert_eq!(fw.backend().applied.lock().unwrap().len(), 3);
    }

    #[test]
    fn remove_all_leaves_only_the_hosts_own_rules() {
        let settings = FirewallSettings::from_config(&NetworkConfig::default()).unwrap();
        let fw = Firewall::new(MemoryBackend::default(), settings);
        let mut host = Batch::default();
        host.push(Table::Filter, Op::Create("DOCKER".into()));
        host.push(
            Table::Filter,
            Op::Append("DOCKER".into(), "-j ACCEPT".into()),
        );
        host.push(
            Table::Filter,
            Op::Append("FORWARD".into(), "-j DOCKER".into()),
        );
        host.push(
            Table::Nat,
            Op::Append("POSTROUTING".into(), "-o eth0 -j MASQUERADE".into()),
        );
        fw.backend().apply(&host).unwrap();
        let before = fw.backend().tables();
        assert!(fw.ensure_base().unwrap().changes > 0);
        // A stray tenant chain left behind is lobster's too.
        let mut stray = Batch::default();
        stray.push(Table::Filter, Op::Create("LOB-dead0001-IN".into()));
        stray.push(
            Table::Filter,
            Op::Append("LOB-dead0001-IN".into(), "-j DROP".into()),
        );
        fw.backend().apply(&stray).unwrap();
        assert!(fw.remove_all().unwrap().changes > 0);
        assert_eq!(fw.backend().tables(), before);
        assert_eq!(
            fw.remove_all().unwrap().changes,
            0,
            "a second run is a no-op"
        );
    }
}
