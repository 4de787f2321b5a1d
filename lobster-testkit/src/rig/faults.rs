//! Failures a test arms for the next occurrence of a named operation, and
//! the firewall that honours them.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use lobster_core::context::FirewallOps;
use lobster_core::network::firewall::{Batch, Firewall, MemoryBackend, Ruleset};
use lobster_core::network::{NetworkError, TenantNet};

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

/// The real firewall planner on [`MemoryBackend`], whose `apply_tenant`
/// fails once when the fault `firewall` is armed. Dereferences to the
/// firewall itself, for inspecting the ruleset.
#[derive(Debug)]
pub struct FaultyFirewall {
    inner: Firewall<MemoryBackend>,
    faults: Arc<Faults>,
}

impl FaultyFirewall {
    /// `inner`, failing when `faults` say so.
    pub fn new(inner: Firewall<MemoryBackend>, faults: Arc<Faults>) -> FaultyFirewall {
        FaultyFirewall { inner, faults }
    }
}

impl std::ops::Deref for FaultyFirewall {
    type Target = Firewall<MemoryBackend>;

    fn deref(&self) -> &Firewall<MemoryBackend> {
        &self.inner
    }
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
