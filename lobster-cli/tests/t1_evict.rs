//! T1: `lobsterd evict --keep-overlay` through the real system seams
//! (rtnetlink, iptables, the proxy admin API) inside a network namespace
//! the test creates: the tenant is gone from the registry and the host, its
//! overlay disk stays byte for byte; without the flag the disk goes too.
//!
//! The tenants are seeded through `Store` with an overlay file each (no VM:
//! what evict keeps or removes does not depend on one; the T2 lifecycle
//! evicts running guests).

mod common;

use std::path::PathBuf;

use common::{all, run};
use lobster_core::config::Config;
use lobster_core::store::Store;
use lobster_core::tenant::plan;
use lobster_testkit::netns::{self, in_netns, Ctx};
use lobster_testkit::registry::new_tenant;

/// Registers `name` and writes its overlay disk; returns the disk's path.
fn seed(config: &Config, name: &str) -> PathBuf {
    let record = Store::new(&config.paths.state_dir)
        .allocate(config, new_tenant(name))
        .unwrap();
    let disk = plan::overlay(config, &record).path().to_path_buf();
    std::fs::create_dir_all(disk.parent().unwrap()).unwrap();
    std::fs::write(&disk, format!("the disk of {name}")).unwrap();
    disk
}

#[test]
#[ignore = "t1: needs root"]
fn evict_keep_overlay_keeps_only_the_disk() {
    in_netns("evict_keep_overlay_keeps_only_the_disk", |_ctx: &Ctx| {
        netns::require(&["iptables-save", "iptables-restore"]);
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.json");
        let state = dir.path().join("state");
        let out = run(
            &config_path,
            &[
                "init",
                "--no-host-setup",
                "--state-dir",
                state.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "init: {}", all(&out));
        let config = Config::load(&config_path).unwrap();

        let kept = seed(&config, "alice");
        let out = run(&config_path, &["evict", "-y", "--keep-overlay", "alice"]);
        assert!(out.status.success(), "evict --keep-overlay: {}", all(&out));
        assert_eq!(
            std::fs::read_to_string(&kept).unwrap(),
            "the disk of alice",
            "the disk is kept as it was"
        );
        let out = run(&config_path, &["--json", "list"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");

        // The control: without the flag the disk is removed.
        let removed = seed(&config, "bob");
        let out = run(&config_path, &["evict", "-y", "bob"]);
        assert!(out.status.success(), "evict: {}", all(&out));
        assert!(!removed.exists(), "bob's disk is left");
        assert!(kept.exists(), "evicting bob touched alice's kept disk");
    });
}
