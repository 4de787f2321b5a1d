//! Registry behaviour within one process: allocation, reuse, exhaustion,
//! duplicate names, corruption handling.

use std::collections::HashSet;

use lobster_core::config::Config;
use lobster_core::store::{Store, StoreError};
use lobster_core::ErrorKind;
use lobster_testkit::registry::new_tenant as new;

fn config(pool: &str) -> Config {
    let mut config = Config::default();
    config.network.pool = pool.into();
    config.validate().unwrap();
    config
}

fn kind(err: StoreError) -> ErrorKind {
    lobster_core::Error::from(err).kind()
}

#[test]
fn allocates_distinct_derived_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let config = config("10.200.0.0/16");
    let a = store.allocate(&config, new("a")).unwrap();
    let b = store.allocate(&config, new("b")).unwrap();
    assert_eq!(a.allocation.slot, 0);
    assert_eq!(b.allocation.slot, 1);
    assert_eq!(a.allocation.subnet.to_string(), "10.200.0.0");
    assert_eq!(a.allocation.host_ip.to_string(), "10.200.0.1");
    assert_eq!(a.allocation.guest_ip.to_string(), "10.200.0.2");
    assert_eq!(b.allocation.guest_ip.to_string(), "10.200.0.6");
    assert_eq!(b.allocation.mac, "06:00:0a:c8:00:06");
    assert_eq!(b.allocation.host_port, config.network.host_port_base + 1);
    assert_eq!(b.allocation.jail_uid, config.vmm.uid_base + 1);
    assert!(a.allocation.tap.len() <= 15, "{}", a.allocation.tap);
    assert_ne!(a.allocation.tap, b.allocation.tap);
    assert_ne!(a.agent_token, b.agent_token);
    assert_eq!(a.agent_token.len(), 64);
    let reg = store.read().unwrap();
    assert_eq!(reg.tenants.len(), 2);
    assert_eq!(reg.tenants["a"], a);
}

#[test]
fn released_slot_is_reused_but_never_while_held() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let config = config("10.200.0.0/16");
    for name in ["a", "b", "c"] {
        store.allocate(&config, new(name)).unwrap();
    }
    let b = store.release("b").unwrap();
    let d = store.allocate(&config, new("d")).unwrap();
    assert_eq!(d.allocation.slot, b.allocation.slot);
    assert_eq!(d.allocation.guest_ip, b.allocation.guest_ip);
    assert_ne!(d.id, b.id, "ids are fresh even when the slot is reused");
    let e = store.allocate(&config, new("e")).unwrap();
    assert_eq!(e.allocation.slot, 3);
    assert_eq!(kind(store.release("b").unwrap_err()), ErrorKind::NotFound);
}

#[test]
fn duplicate_name_is_rejected_without_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let config = config("10.200.0.0/16");
    store.allocate(&config, new("a")).unwrap();
    let before = std::fs::read(store.path()).unwrap();
    let err = store.allocate(&config, new("a")).unwrap_err();
    assert!(err.to_string().contains("`a` exists already"), "{err}");
    assert_eq!(kind(err), ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(store.path()).unwrap(), before);
}

#[test]
fn exhausted_pool_names_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let config = config("10.200.0.0/29");
    assert_eq!(config.capacity(), 2);
    store.allocate(&config, new("a")).unwrap();
    store.allocate(&config, new("b")).unwrap();
    let err = store.allocate(&config, new("c")).unwrap_err();
    assert!(err.to_string().contains("10.200.0.0/29"), "{err}");
    assert_eq!(kind(err), ErrorKind::Exhausted);
    store.release("a").unwrap();
    assert_eq!(
        store.allocate(&config, new("c")).unwrap().allocation.slot,
        0
    );
}

#[test]
fn corrupt_or_truncated_registry_is_reported_and_left_untouched() {
    let config = config("10.200.0.0/16");
    let good = {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.allocate(&config, new("a")).unwrap();
        std::fs::read(store.path()).unwrap()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"not json at all".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        (
            "wrong shape",
            br#"{"schema_version":1,"tenants":[]}"#.to_vec(),
        ),
        (
            "unknown field",
            br#"{"schema_version":1,"tenants":{},"extra":1}"#.to_vec(),
        ),
    ];
    for (label, bytes) in cases {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        std::fs::write(store.path(), &bytes).unwrap();
        let err = store.read().unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{label}: {err}");
        assert!(err.to_string().contains("registry.json"), "{label}: {err}");
        assert_eq!(kind(err), ErrorKind::Corrupt, "{label}");
        let err = store.allocate(&config, new("b")).unwrap_err();
        assert_eq!(kind(err), ErrorKind::Corrupt, "{label}");
        assert_eq!(
            std::fs::read(store.path()).unwrap(),
            bytes,
            "{label}: file changed"
        );
    }
}

#[test]
fn newer_schema_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    std::fs::write(store.path(), br#"{"schema_version":7,"tenants":{}}"#).unwrap();
    let err = store.read().unwrap_err();
    assert!(err.to_string().contains("schema version 7"), "{err}");
}

#[test]
fn registry_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    store.allocate(&config("10.200.0.0/16"), new("a")).unwrap();
    let mode = std::fs::metadata(store.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn modify_changes_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let config = config("10.200.0.0/16");
    store.allocate(&config, new("a")).unwrap();
    store.allocate(&config, new("b")).unwrap();
    let a = store
        .modify("a", |r| {
            r.status = lobster_core::store::TenantStatus::Running
        })
        .unwrap();
    assert_eq!(a.status.as_str(), "running");
    let reg = store.read().unwrap();
    assert_eq!(reg.tenants["b"].status.as_str(), "creating");
    let ips: HashSet<_> = reg
        .tenants
        .values()
        .map(|t| t.allocation.guest_ip)
        .collect();
    assert_eq!(ips.len(), 2);
}

#[test]
fn a_snapshot_knows_whether_the_registry_was_written_since() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let config = config("10.200.0.0/16");
    let empty = store.snapshot().unwrap();
    assert!(empty.registry.tenants.is_empty());
    assert!(!store.changed_since(&empty).unwrap(), "no file, still none");
    store.allocate(&config, new("a")).unwrap();
    assert!(store.changed_since(&empty).unwrap());

    let snap = store.snapshot().unwrap();
    assert_eq!(snap.registry, store.read().unwrap());
    assert!(!store.changed_since(&snap).unwrap());
    // A change to the same size and within one mtime tick is still seen:
    // every write is a new file.
    store
        .modify("a", |r| r.agent_token = "f".repeat(64))
        .unwrap();
    assert!(store.changed_since(&snap).unwrap());
    // A write that changes nothing writes nothing.
    let snap = store.snapshot().unwrap();
    store.modify("a", |_| {}).unwrap();
    assert!(!store.changed_since(&snap).unwrap());
    store.release("a").unwrap();
    assert!(store.changed_since(&snap).unwrap());
    std::fs::remove_file(store.path()).unwrap();
    assert!(store.changed_since(&snap).unwrap(), "deleted");
}
