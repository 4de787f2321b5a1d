//! T0: `Host::from_config`, `Host::recover` and the evict flows over the
//! Firecracker backend (the test kit's `FakeHost::booting`: the
//! spec-checked fake Firecracker and the real agent in this process): an interrupted spawn and an
//! interrupted evict are finished by the next command, a teardown that
//! fails is reported (not dropped), and a running tenant whose VM died is
//! left to the health checks.

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

use lobster_core::config::{Config, PathsConfig};
use lobster_core::proxy::RouteOps;
use lobster_core::store::TenantStatus;
use lobster_core::tenant::{EvictOptions, TenantError};
use lobster_core::vmm::VmIdentity;
use lobster_core::{Error, ErrorKind, Host};
use lobster_testkit::registry::{ended_process, sleeping_spec};
use lobster_testkit::rig::{FakeHost, HostState};

/// A rig running `bystander`, the host as that left it, and `alice` spawned on top.
async fn with_alice(net: u8) -> (FakeHost, HostState) {
    let rig = FakeHost::booting(net).await;
    rig.host.spawn(sleeping_spec("bystander")).await.unwrap();
    let baseline = rig.state().await;
    rig.host.spawn(sleeping_spec("alice")).await.unwrap();
    (rig, baseline)
}

/// Marks `name` as an operation in `status` whose process died.
fn interrupt(rig: &FakeHost, name: &str, status: TenantStatus) {
    rig.store()
        .modify(name, |r| {
            r.status = status;
            r.owner = Some(ended_process());
        })
        .unwrap();
}

#[tokio::test]
async fn from_config_validates_and_opens_the_registry_without_touching_the_system() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        paths: PathsConfig::under(dir.path()),
        ..Config::default()
    };
    config.network.agent_port = config.network.health_port;
    let err = Host::from_config(config.clone()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("network.agent_port"), "{err}");

    config.network.agent_port = 52;
    let host = Host::from_config(config).unwrap();
    assert_eq!(host.config_path(), None);
    assert!(host.list().await.unwrap().is_empty());
    // Nothing to recover: the system seams are not even built.
    let report = host.recover().await.unwrap();
    assert!(report.torn_down.is_empty() && report.failed.is_empty());
    assert_eq!(
        host.get("nobody").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_spawn_is_torn_down_by_the_next_command() {
    let (rig, baseline) = with_alice(121).await;
    interrupt(&rig, "alice", TenantStatus::Creating);
    // Any command recovers first; `list` shows the result.
    let names: Vec<String> = rig
        .host
        .list()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    assert_eq!(names, ["bystander"]);
    rig.assert_state(&baseline, "after recovering the spawn")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_evict_is_finished_by_recover() {
    let (rig, baseline) = with_alice(122).await;
    // An evict killed after its first step: the route is gone, the VM,
    // rules, TAP and disk are still there.
    rig.routes.remove_route("alice").await.unwrap();
    interrupt(&rig, "alice", TenantStatus::Evicting);
    let vm = rig.record("alice").vm.unwrap().identity;
    assert!(std::path::Path::new(&format!("/proc/{}", vm.pid)).exists());

    let report = rig.host.recover().await.unwrap();
    assert_eq!(report.torn_down, ["alice"]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    rig.assert_state(&baseline, "after recovering the evict")
        .await;
    // Recovering again finds nothing.
    let report = rig.host.recover().await.unwrap();
    assert!(report.torn_down.is_empty() && report.failed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_recovery_teardown_is_reported_and_a_later_evict_finishes_it() {
    let (rig, baseline) = with_alice(123).await;
    interrupt(&rig, "alice", TenantStatus::Evicting);
    rig.network.fail_next("remove");

    let report = rig.host.recover().await.unwrap();
    assert!(report.torn_down.is_empty());
    match &report.failed[..] {
        [(name, Error::Tenant(TenantError::EvictIncomplete { failures, .. }))] => {
            assert_eq!(name, "alice");
            assert_eq!(failures.len(), 1, "{failures:?}");
            assert!(failures[0].starts_with("network: "), "{failures:?}");
        }
        other => panic!("unexpected report: {other:?}"),
    }
    let record = rig.record("alice");
    assert_eq!(record.status, TenantStatus::Evicting);
    assert_eq!(record.owner, None, "not retried by every command");
    assert!(
        record
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("evict incomplete: network: ")),
        "{:?}",
        record.last_error
    );
    rig.host.evict("alice").await.unwrap();
    rig.assert_state(&baseline, "after the second evict").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evict_keeping_the_overlay_removes_everything_else() {
    let (rig, baseline) = with_alice(124).await;
    let disk = lobster_core::tenant::plan::overlay(rig.config(), &rig.record("alice"));
    rig.host
        .evict_with("alice", EvictOptions { keep_overlay: true })
        .await
        .unwrap();
    let mut want = baseline.clone();
    want.files.insert(
        disk.path()
            .strip_prefix(rig.dir.path())
            .unwrap()
            .to_path_buf(),
    );
    rig.assert_state(&want, "after evict --keep-overlay").await;
    assert!(disk.check().present);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_tenant_whose_vm_died_is_left_to_the_health_checks() {
    let (rig, _) = with_alice(125).await;
    let vm = rig.record("alice").vm.unwrap().identity;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &vm.pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let report = rig.host.recover().await.unwrap();
    assert!(report.torn_down.is_empty() && report.failed.is_empty());
    assert_eq!(rig.record("alice").status, TenantStatus::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evict_refuses_a_tenant_whose_spawner_lives_and_recover_leaves_it() {
    let (rig, _) = with_alice(126).await;
    // A spawn still running in this (live) process, as far as the record says.
    let me = VmIdentity::of(std::process::id() as i32).unwrap();
    rig.store()
        .modify("alice", move |r| {
            r.status = TenantStatus::Creating;
            r.owner = Some(me);
        })
        .unwrap();
    let err = rig.host.evict("alice").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("being spawned by process {}", me.pid)),
        "{err}"
    );
    let report = rig.host.recover().await.unwrap();
    assert!(report.torn_down.is_empty() && report.failed.is_empty());
    assert_eq!(rig.record("alice").status, TenantStatus::Creating);
    // Once the spawner is gone, the next command tears it down.
    interrupt(&rig, "alice", TenantStatus::Creating);
    let report = rig.host.recover().await.unwrap();
    assert_eq!(report.torn_down, ["alice"]);
}

#[test]
fn a_tenant_lock_file_outlives_its_holders_so_two_never_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = lobster_core::store::Store::new(dir.path());
    let wait = std::time::Duration::ZERO;
    let first = store.lock_tenant("alice", wait).unwrap().expect("free");
    assert!(store.lock_tenant("alice", wait).unwrap().is_none());
    drop(first);
    // Released, the file stays: a later holder locks the same inode as
    // anyone who opened it meanwhile.
    assert!(dir.path().join("locks/alice.lock").is_file());
    let second = store
        .lock_tenant("alice", wait)
        .unwrap()
        .expect("free again");
    assert!(store.lock_tenant("alice", wait).unwrap().is_none());
    drop(second);
}
