//! T0: `Host::suspend` and `Host::resume` refuse what they cannot do and
//! change nothing, roll back a suspend that fails before its commit point,
//! fall back to a cold boot when the snapshot cannot be loaded, and a
//! killed suspend or resume is settled by the next command. Over the test
//! kit's `FakeHost::booting` (the spec-checked fake Firecracker, the real
//! agent in this process: its fake guests cannot load a snapshot, so the
//! round trip itself is T2 `t2_suspend`, over real QEMU).

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

use lobster_core::store::{SuspendInfo, TenantStatus};
use lobster_core::tenant::plan;
use lobster_core::vmm::{BackendKind, Snapshot};
use lobster_core::ErrorKind;
use lobster_testkit::registry::{ended_process, sleeping_spec};
use lobster_testkit::rig::{vmm_binary, FakeHost, HostState};

/// A rig with `alice` spawned, and the host as that left it.
async fn with_alice(net: u8) -> (FakeHost, HostState) {
    let rig = FakeHost::booting(net).await;
    rig.host.spawn(sleeping_spec("alice")).await.unwrap();
    let baseline = rig.state().await;
    (rig, baseline)
}

/// A record's `suspended` pointing at a snapshot that is not there.
fn missing_snapshot(rig: &FakeHost) -> SuspendInfo {
    let dir = rig.config().paths.snapshots_dir.join("alice");
    SuspendInfo {
        at: 1,
        snapshot: Snapshot {
            backend: BackendKind::Firecracker,
            state_file: dir.join("vmstate"),
            memory_file: Some(dir.join("memory")),
        },
        vmm_version: "Firecracker v0".into(),
        wake_at_ms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    let (rig, baseline) = with_alice(131).await;
    for err in [
        rig.host.suspend("nobody").await.unwrap_err(),
        rig.host.resume("nobody").await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains("nobody"), "{err}");
    }
    let err = rig.host.resume("alice").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    assert!(
        err.to_string()
            .contains("`alice` is running; resume needs suspended"),
        "{err}"
    );
    rig.assert_state(&baseline, "after the refused resume")
        .await;

    for status in [TenantStatus::Creating, TenantStatus::Suspended] {
        rig.store().modify("alice", |r| r.status = status).unwrap();
        let before = rig.state().await;
        let err = rig.host.suspend("alice").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
        assert!(
            err.to_string()
                .contains(&format!("`alice` is {status}; suspend needs running")),
            "{err}"
        );
        rig.assert_state(
            &before,
            &format!("after refusing to suspend a {status} tenant"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspend_failing_before_its_commit_leaves_the_vm_running() {
    // Without the host's Firecracker binary, asking it its version fails,
    // after the agent's stats and before the pause.
    let (rig, _) = with_alice(132).await;
    std::fs::remove_file(&rig.config().vmm.firecracker.binary).unwrap();
    let baseline = rig.state().await;
    let err = rig.host.suspend("alice").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("suspend of `alice` failed at step version; the VM runs on"),
        "{text}"
    );
    rig.assert_state(&baseline, "after the failed suspend")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_that_cannot_ask_the_vmm_its_version_changes_nothing() {
    let (rig, _) = with_alice(137).await;
    std::fs::remove_file(&rig.config().vmm.firecracker.binary).unwrap();
    let info = missing_snapshot(&rig);
    rig.store()
        .modify("alice", move |r| {
            r.status = TenantStatus::Suspended;
            r.suspended = Some(info);
        })
        .unwrap();
    let before = rig.record("alice");
    let err = rig.host.resume("alice").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("resume of `alice` failed at step version; nothing changed"),
        "{text}"
    );
    assert_eq!(
        rig.record("alice"),
        before,
        "still suspended, snapshot kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspend_failing_after_the_pause_resumes_the_vm() {
    let rig = FakeHost::booting(136).await;
    rig.host.spawn(sleeping_spec("alice")).await.unwrap();
    // The snapshot directory cannot be made: its parent is a file.
    let snapshots = &rig.config().paths.snapshots_dir;
    let _ = std::fs::remove_dir(snapshots);
    std::fs::write(snapshots, "in the way").unwrap();
    let baseline = rig.state().await;
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        rig.host.suspend("alice"),
    )
    .await
    .unwrap()
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("suspend of `alice` failed at step snapshot; the VM was resumed"),
        "{text}"
    );
    rig.assert_state(&baseline, "after the failed suspend")
        .await;
    rig.host
        .agent("alice")
        .await
        .unwrap()
        .health()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unloadable_snapshot_falls_back_to_a_cold_boot_and_says_why() {
    let rig = FakeHost::booting(133).await;
    rig.host.spawn(sleeping_spec("alice")).await.unwrap();
    let record = rig.record("alice");
    let old = record.vm.unwrap().identity;
    // Suspended as a suspend leaves it (no VMM), but its snapshot is gone.
    let (_, vm_config) = plan::vm(rig.config(), &record, BackendKind::Firecracker);
    lobster_core::vmm::stop_recorded(&vm_config, Some(old))
        .await
        .unwrap();
    let info = missing_snapshot(&rig);
    rig.store()
        .modify("alice", move |r| {
            r.status = TenantStatus::Suspended;
            r.suspended = Some(info);
            r.vm = None;
        })
        .unwrap();
    let tenant = rig.host.resume("alice").await.unwrap();
    assert_eq!(tenant.status(), TenantStatus::Running);
    let record = tenant.record();
    assert!(record.suspended.is_none() && record.owner.is_none());
    let why = record.last_error.as_deref().unwrap_or_default();
    assert!(
        why.contains("failed at step check")
            && why.contains("manifest is missing")
            && why.contains("cold-booted"),
        "{why}"
    );
    let new = record.vm.expect("a new VM").identity;
    assert_ne!(new, old, "a new VMM");
    // The cold-booted agent answers with the tenant's token.
    rig.host
        .agent("alice")
        .await
        .unwrap()
        .health()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_suspend_or_resume_is_settled_by_the_next_command() {
    let (rig, baseline) = with_alice(134).await;
    // A suspend killed before its commit (no manifest): the VM runs on.
    rig.store()
        .modify("alice", |r| r.owner = Some(ended_process()))
        .unwrap();
    let report = rig.host.recover().await.unwrap();
    assert_eq!(
        report.settled,
        [("alice".to_owned(), "suspend undone; the VM runs on")]
    );
    rig.assert_state(&baseline, "after settling the suspend")
        .await;

    // A resume killed once its VM ran the guest: adopted, running.
    let info = missing_snapshot(&rig);
    rig.store()
        .modify("alice", move |r| {
            r.status = TenantStatus::Suspended;
            r.suspended = Some(info);
            r.owner = Some(ended_process());
        })
        .unwrap();
    let names: Vec<_> = rig.host.list().await.unwrap();
    assert_eq!(names[0].status(), TenantStatus::Running);
    rig.assert_state(&baseline, "after settling the resume")
        .await;

    // A resume killed before its VM was recorded: the tenant stays
    // suspended, with no VMM (the stray one in its place is stopped).
    let info = missing_snapshot(&rig);
    rig.store()
        .modify("alice", move |r| {
            r.status = TenantStatus::Suspended;
            r.suspended = Some(info);
            r.vm = None;
            r.owner = Some(ended_process());
        })
        .unwrap();
    let report = rig.host.recover().await.unwrap();
    assert_eq!(
        report.settled,
        [("alice".to_owned(), "resume undone: still suspended")]
    );
    let record = rig.record("alice");
    assert_eq!(record.status, TenantStatus::Suspended);
    assert!(record.owner.is_none() && record.suspended.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_another_vmm_version_is_not_loaded() {
    let rig = FakeHost::booting(135).await;
    let binary = rig.config().vmm.firecracker.binary.clone();
    rig.host.spawn(sleeping_spec("alice")).await.unwrap();
    let snapshots = rig.config().paths.snapshots_dir.join("alice");
    let vmm = rig.record("alice").vm.unwrap().identity;
    let tenant = rig.host.suspend("alice").await.unwrap();
    assert_eq!(tenant.status(), TenantStatus::Suspended);
    assert!(tenant.record().vm.is_none());
    assert!(!vmm.is_alive(), "the VMM is stopped");
    let info = tenant.record().suspended.clone().unwrap();
    assert_eq!(info.vmm_version, "Firecracker v1.0");
    assert!(snapshots.join("suspend.json").is_file());

    // The VMM is upgraded while the tenant sleeps: a cold boot, and why.
    vmm_binary(&binary, "Firecracker v1.1");
    let tenant = rig.host.resume("alice").await.unwrap();
    assert_eq!(tenant.status(), TenantStatus::Running);
    let why = tenant.record().last_error.clone().unwrap_or_default();
    assert!(
        why.contains("written by Firecracker v1.0, this host runs Firecracker v1.1"),
        "{why}"
    );
    assert!(!snapshots.exists(), "a stale snapshot goes too");
}
