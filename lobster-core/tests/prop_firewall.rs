//! Properties of the firewall planner from any reachable ruleset: random
//! and planned batches applied to the strict in-memory model (which the
//! `t1_firewall_differential` test holds to the real `iptables-restore`),
//! and arbitrary sets of tenants.

mod prop_support;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use lobster_core::config::Ipv4Cidr;
use lobster_core::network::firewall::{
    apply_batch, builtin_chains, fresh_apply_batch, is_owned_chain, jump_target, plan,
    reconcile_batch, remove_batch, tenant_chain_prefix, Ruleset,
};
use lobster_core::network::{MacAddr, TenantNet};
use prop_support::firewall::{any_settings, kept, reach, settings_variant, steps, IDS, VARIANTS};
use proptest::prelude::*;

/// What is not lobster's: rules outside its chains that jump to none of them.
fn foreign(rs: &Ruleset) -> Ruleset {
    let mut out = Ruleset::default();
    for (&table, chains) in &rs.tables {
        for (chain, rules) in chains.iter().filter(|(c, _)| !is_owned_chain(c)) {
            let theirs: Vec<String> = rules
                .iter()
                .filter(|r| jump_target(r).is_none())
                .cloned()
                .collect();
            if !theirs.is_empty() || !builtin_chains(table).contains(&chain.as_str()) {
                *out.chain_mut(table, chain) = theirs;
            }
        }
    }
    out
}

/// `rs` without tenant `id`'s chains and the rules jumping into them.
fn without_tenant(rs: &Ruleset, id: &str) -> Ruleset {
    let prefix = tenant_chain_prefix(id);
    let mut out = rs.clone();
    for chains in out.tables.values_mut() {
        chains.retain(|chain, _| !chain.starts_with(&prefix));
        for rules in chains.values_mut() {
            rules.retain(|r| !jump_target(r).is_some_and(|t| t.starts_with(&prefix)));
        }
    }
    out.tables.retain(|_, chains| !chains.is_empty());
    out
}

/// Lobster's part with the jumps in each base chain sorted (their order
/// follows the order tenants were added in, which means nothing).
fn unordered(mut rs: Ruleset) -> Ruleset {
    for chains in rs.tables.values_mut() {
        for (chain, rules) in chains.iter_mut() {
            if !chain.starts_with("LOB-") {
                rules.sort();
            }
        }
    }
    rs
}

proptest! {
    #![proptest_config(prop_support::config(64))]

    /// Reconcile, from anything: its batch is accepted, then lobster's
    /// part is exactly the plan, a second reconcile (and every tenant's
    /// apply) has nothing to do, and nothing foreign changed.
    #[test]
    fn reconcile_then_plan_is_idempotent(steps in steps(12), mask in 0..4u8, k in 0..VARIANTS) {
        let s = settings_variant(k);
        let live = kept(mask);
        let mut state = reach(&steps);
        let before = state.clone();
        let batch = reconcile_batch(&state.owned(), &live, &s);
        prop_assert!(state.apply(&batch).is_ok(), "refused:\n{}", batch.render());
        prop_assert_eq!(unordered(state.owned()), unordered(plan(&live, &s)));
        prop_assert!(reconcile_batch(&state.owned(), &live, &s).is_empty());
        for t in &live {
            prop_assert!(apply_batch(&state.owned(), t, &s).is_empty());
        }
        prop_assert_eq!(foreign(&state), foreign(&before));
    }

    /// Removing a tenant, from anything, takes exactly its chains and the
    /// jumps into them: every other byte stays.
    #[test]
    fn removing_a_tenant_touches_nothing_else(steps in steps(12), which in 0..IDS.len()) {
        let id = IDS[which];
        let mut state = reach(&steps);
        let want = without_tenant(&state, id);
        let batch = remove_batch(&state.owned(), id);
        prop_assert!(state.apply(&batch).is_ok(), "refused:\n{}", batch.render());
        prop_assert_eq!(state.render(), want.render());
        prop_assert!(remove_batch(&state.owned(), id).is_empty());
    }

    /// Any set of tenants: added one by one without reading (the fresh
    /// path) or reconciled at once, the result is the plan; removing any
    /// one leaves exactly the plan of the others, byte for byte.
    #[test]
    fn any_tenants_plan_add_and_remove_cleanly(
        tenants in tenants(12),
        gone in any::<prop::sample::Index>(),
        s in any_settings(),
    ) {
        let mut fresh = Ruleset::default();
        fresh.apply(&reconcile_batch(&fresh.clone(), &[], &s)).unwrap();
        for t in &tenants {
            prop_assert!(fresh.apply(&fresh_apply_batch(t, &s)).is_ok());
        }
        let mut reconciled = Ruleset::default();
        reconciled.apply(&reconcile_batch(&reconciled.clone(), &tenants, &s)).unwrap();
        prop_assert_eq!(&fresh, &plan(&tenants, &s));
        prop_assert_eq!(&reconciled, &plan(&tenants, &s));

        let gone = gone.index(tenants.len());
        let mut after = fresh.clone();
        after.apply(&remove_batch(&fresh, &tenants[gone].id)).unwrap();
        let mut others = tenants.clone();
        others.remove(gone);
        prop_assert_eq!(after.render(), plan(&others, &s).render());
    }
}

/// 1..=max tenants with distinct valid ids and distinct slots of the
/// default pool.
fn tenants(max: usize) -> impl Strategy<Value = Vec<TenantNet>> {
    prop::collection::btree_map("[a-z0-9]{1,11}", 0..16_000u32, 1..=max).prop_map(|by_id| {
        let mut slots = BTreeSet::new();
        by_id
            .into_iter()
            .filter(|(_, slot)| slots.insert(*slot))
            .map(|(id, slot)| {
                let subnet = Ipv4Cidr {
                    addr: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + 4 * slot),
                    prefix: 30,
                };
                let mac = MacAddr::from_guest_ip(Ipv4Addr::from(u32::from(subnet.addr) + 2));
                TenantNet::new(&id, subnet, mac, 20000, 10000 + slot).expect("valid")
            })
            .collect()
    })
}
