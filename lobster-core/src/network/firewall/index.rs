//! A [`Ruleset`] split by tenant, so checking one tenant's rules does not
//! scan every other tenant's jumps in the shared base chains: checking N
//! tenants against one ruleset read costs O(N), not O(N²).

use std::collections::HashMap;

use super::plan::tenant_of_chain;
use super::rules::{jump_target, Ruleset};

/// A ruleset split into what every tenant shares (base chains' own rules,
/// hooks) and, per tenant id, its chains and the jumps into them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantIndex {
    shared: Ruleset,
    tenants: HashMap<String, Ruleset>,
}

impl TenantIndex {
    /// Splits `current` (one pass over its rules).
    pub fn new(current: &Ruleset) -> TenantIndex {
        let mut index = TenantIndex::default();
        for (&table, chains) in &current.tables {
            for (chain, rules) in chains {
                if let Some(id) = tenant_of_chain(chain) {
                    *index.tenant(id).chain_mut(table, chain) = rules.clone();
                    continue;
                }
                // Declared even when empty or holding only tenants' jumps.
                index.shared.chain_mut(table, chain);
                for rule in rules {
                    let owner = jump_target(rule).and_then(tenant_of_chain);
                    let part = match owner {
                        Some(id) => index.tenant(id),
                        None => &mut index.shared,
                    };
                    part.chain_mut(table, chain).push(rule.clone());
                }
            }
        }
        index
    }

    /// The ids of every tenant with chains or jumps in the ruleset.
    pub fn tenant_ids(&self) -> impl Iterator<Item = &str> {
        self.tenants.keys().map(String::as_str)
    }

    fn tenant(&mut self, id: &str) -> &mut Ruleset {
        self.tenants.entry(id.to_owned()).or_default()
    }

    /// The ruleset as far as tenant `id` is concerned: the shared part with
    /// its own chains and jumps (other tenants' left out). Planning this
    /// tenant's changes against it gives the same batch as against the
    /// whole ruleset.
    pub fn view(&self, id: &str) -> Ruleset {
        let mut view = self.shared.clone();
        if let Some(own) = self.tenants.get(id) {
            for (&table, chains) in &own.tables {
                for (chain, rules) in chains {
                    view.chain_mut(table, chain).extend(rules.iter().cloned());
                }
            }
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::tests::{settings, tenant as tenant_in_slot};
    use super::super::plan::{apply_batch, plan};
    use super::super::rules::{Op, Table};
    use super::*;
    use crate::network::TenantNet;

    fn tenant(n: u32) -> TenantNet {
        tenant_in_slot(&format!("{n:08x}"), n)
    }

    #[test]
    fn each_tenant_drifts_the_same_against_its_view_as_against_the_whole() {
        let s = settings();
        let nets: Vec<TenantNet> = (0..40).map(tenant).collect();
        let mut current = plan(&nets, &s);
        // Drift of every kind: a lost jump, a stale jump, a changed chain,
        // a missing chain, a missing static rule and hook, a foreign rule.
        let jumps = current.chain_mut(Table::Filter, "LOBSTER-FORWARD-TAPS");
        let lost = jumps
            .iter()
            .position(|r| r.contains("LOB-00000003-"))
            .unwrap();
        jumps.remove(lost);
        jumps.push("-i lob-stale -j LOB-00000004-FWI".into());
        current
            .chain_mut(Table::Filter, "LOB-00000005-IN")
            .push("-j ACCEPT".into());
        current
            .tables
            .get_mut(&Table::Filter)
            .unwrap()
            .remove("LOB-00000006-OUT");
        current.chain_mut(Table::Filter, "LOBSTER-INPUT").remove(0);
        current.chain_mut(Table::Nat, "POSTROUTING").clear();
        current
            .chain_mut(Table::Filter, "LOBSTER-OUTPUT")
            .push("-p udp -j DROP".into());
        let index = TenantIndex::new(&current);
        let mut drifted = 0;
        for net in nets.iter().chain([&tenant(99)]) {
            let whole = apply_batch(&current, net, &s);
            let view = apply_batch(&index.view(&net.id), net, &s);
            assert_eq!(view, whole, "tenant {}", net.id);
            drifted += usize::from(
                whole
                    .tables
                    .values()
                    .flatten()
                    .any(|op| !matches!(op, Op::InsertFirst(..))),
            );
        }
        assert!(drifted >= 5, "the drift reached the tenants: {drifted}");
    }

    #[test]
    fn a_planned_ruleset_has_no_drift_through_the_index() {
        let s = settings();
        let nets: Vec<TenantNet> = (0..10).map(tenant).collect();
        let index = TenantIndex::new(&plan(&nets, &s));
        for net in &nets {
            assert!(apply_batch(&index.view(&net.id), net, &s).is_empty());
        }
    }
}
