//! Slot allocation against a model: any sequence of allocations and
//! releases on a small pool gives exactly the slots (lowest free first),
//! refusals and derived values a plain map would.

mod prop_support;

use std::collections::{BTreeMap, BTreeSet};

use lobster_core::config::Config;
use lobster_core::store::{Store, StoreError};
use lobster_testkit::registry::new_tenant;
use proptest::prelude::*;

/// A /28: 4 slots, so sequences fill it, run out and reuse often.
const POOL: &str = "10.200.0.0/28";
const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

#[derive(Debug, Clone)]
enum Action {
    Allocate(usize),
    Release(usize),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0..NAMES.len()).prop_map(Action::Allocate),
        2 => (0..NAMES.len()).prop_map(Action::Release),
    ]
}

proptest! {
    #![proptest_config(prop_support::config(32))]

    #[test]
    fn slots_follow_the_model(actions in prop::collection::vec(action(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut config = Config::default();
        config.network.pool = POOL.into();
        config.validate().unwrap();
        prop_assert_eq!(config.capacity(), 4);
        // The model: name -> slot.
        let mut model: BTreeMap<&str, u32> = BTreeMap::new();
        for action in &actions {
            match *action {
                Action::Allocate(n) => {
                    let name = NAMES[n];
                    let used: BTreeSet<u32> = model.values().copied().collect();
                    let free = (0..config.capacity()).find(|s| !used.contains(s));
                    match (store.allocate(&config, new_tenant(name)), model.contains_key(name), free) {
                        (Err(StoreError::Exists(_)), true, _) => {}
                        (Err(StoreError::Exhausted { .. }), false, None) => {}
                        (Ok(record), false, Some(slot)) => {
                            prop_assert_eq!(record.allocation.slot, slot);
                            model.insert(name, slot);
                        }
                        (got, exists, free) => {
                            prop_assert!(false, "allocate {}: got {:?}; model: exists {}, free {:?}", name, got.map(|r| r.allocation.slot), exists, free);
                        }
                    }
                }
                Action::Release(n) => {
                    let name = NAMES[n];
                    match (store.release(name), model.remove(name)) {
                        (Ok(record), Some(slot)) => prop_assert_eq!(record.allocation.slot, slot),
                        (Err(StoreError::NotFound(_)), None) => {}
                        (got, want) => prop_assert!(false, "release {}: got {:?}, model {:?}", name, got.map(|r| r.allocation.slot), want),
                    }
                }
            }
            // The registry on disk holds what the model holds, and no two
            // tenants share anything a slot stands for.
            let registry = store.read().unwrap();
            let slots: BTreeMap<&str, u32> = registry
                .tenants
                .iter()
                .map(|(name, t)| (name.as_str(), t.allocation.slot))
                .collect();
            prop_assert_eq!(&slots, &model);
            let tenants: Vec<_> = registry.tenants.values().collect();
            for (i, a) in tenants.iter().enumerate() {
                for b in &tenants[i + 1..] {
                    let (x, y) = (&a.allocation, &b.allocation);
                    prop_assert!(x.subnet != y.subnet && x.guest_ip != y.guest_ip && x.mac != y.mac);
                    prop_assert!(x.tap != y.tap && x.host_port != y.host_port && x.jail_uid != y.jail_uid);
                    prop_assert_ne!(&a.id, &b.id);
                }
            }
        }
    }
}
