//! Against the real `firecracker` (and `jailer`) binaries: the same flows
//! as the contract tests, on a host with both on PATH and a working KVM.
//! Ignored by default (reported as skipped); `scripts/test` runs them where
//! the binaries exist. Not run on the development host, which has neither
//! the binaries nor a KVM that runs ordinary guests.
//!
//! Guest: `vmlinux` from `guest/images/kernel.sh` and the test initramfs
//! from `guest/images/test-initramfs.sh` (prints a marker, then a counter).

use std::path::{Path, PathBuf};
use std::time::Duration;

use lobster_core::config::{BackendKind, VmmConfig};
use lobster_core::vmm::firecracker::{FirecrackerSettings, FirecrackerVmm};
use lobster_core::vmm::{ConsoleLog, Jail, VmConfig, VmStatus, Vmm};
use lobster_testkit::cgroup::{MemoryGroup, TestParent};
use lobster_testkit::images::{
    first_counter, last_counter, test_guest, TEST_GUEST_READY as MARKER,
};
use lobster_testkit::poll::until_async;
use lobster_testkit::vm::blank_disks;
use lobster_testkit::Evidence;

fn on_path(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("missing `{name}` on PATH"))
}

/// Copies the test guest into `dir` (the jailer hard-links from there, so
/// it must share its filesystem) and describes a 1-vCPU VM.
fn vm_config(dir: &Path, name: &str) -> VmConfig {
    let (kernel, initrd) = test_guest("vmlinux");
    std::fs::copy(&kernel, dir.join("vmlinux")).unwrap();
    std::fs::copy(&initrd, dir.join("initrd")).unwrap();
    let mut config = lobster_testkit::vm::vm_config(dir, name, dir.join("vmlinux"));
    config.initrd = Some(dir.join("initrd"));
    config.boot_args = String::new();
    blank_disks(&config);
    config
}

fn backend() -> FirecrackerVmm {
    let mut config = VmmConfig::default();
    config.firecracker.binary = on_path("firecracker");
    config.firecracker.jailer = on_path("jailer");
    FirecrackerVmm::new(FirecrackerSettings::from_config(&config))
}

/// Launch, pause, snapshot, kill, restore into a new process, shutdown. The
/// restored guest must continue its counter where the snapshot froze it
/// (first value frozen + 1, no second boot). Every VM started is killed by
/// PID if the test fails half-way.
async fn run_flows(config: &VmConfig) {
    let mut evidence = Evidence::new(&config.paths.console_log);
    // Whatever the jailer started stays in the VM's cgroup: killed on drop
    // whichever assertion fails.
    if let Some(jail) = &config.jail {
        let group = MemoryGroup::at(&jail.cgroup()).expect("a memory hierarchy");
        evidence.watch_group(group);
    }
    let console = evidence.console().clone();
    let vmm = backend();
    let vm = vmm.launch(config).await.expect("launch");
    evidence.watch(vm.identity());
    assert_eq!(vm.status().await.unwrap(), VmStatus::Running);
    let booted = console
        .wait_for(MARKER, 0, Duration::from_secs(30))
        .await
        .expect("no boot marker");
    counter_above(&console, booted, 3).await;
    vm.pause().await.unwrap();
    assert_eq!(vm.status().await.unwrap(), VmStatus::Paused);
    let frozen =
        last_counter(&text_after(&console, booted)).expect("a counter before the snapshot");
    let snapshot = vm.snapshot().await.expect("snapshot");
    vm.kill().await.unwrap();
    let from = console.read_all().len() as u64;
    let restored = vmm.restore(config, &snapshot, true).await.expect("restore");
    evidence.watch(restored.identity());
    assert_eq!(restored.status().await.unwrap(), VmStatus::Running);
    counter_above(&console, from, frozen + 3).await;
    let after = text_after(&console, from);
    assert!(
        !after.contains(MARKER),
        "guest rebooted instead of resuming:\n{after}"
    );
    assert_eq!(
        first_counter(&after),
        Some(frozen + 1),
        "counter did not continue from the snapshot:\n{after}"
    );
    restored
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    assert!(
        restored.process().exit_status().is_some(),
        "firecracker survived shutdown"
    );
    assert!(!config.paths.api_socket.exists(), "api socket left behind");
}

/// The console text after byte `from`.
fn text_after(console: &ConsoleLog, from: u64) -> String {
    let text = console.read_all();
    text[usize::try_from(from).unwrap().min(text.len())..].to_owned()
}

/// Waits until the guest printed a counter above `value` after byte `from`.
async fn counter_above(console: &ConsoleLog, from: u64, value: u64) {
    until_async(
        &format!("the guest counter to pass {value}"),
        Duration::from_secs(30),
        || async { last_counter(&text_after(console, from)).filter(|n| *n > value) },
    )
    .await;
}

#[tokio::test]
#[ignore = "tx: needs firecracker and jailer on PATH and a KVM that runs guests"]
async fn real_firecracker_launch_pause_snapshot_restore_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    run_flows(&vm_config(dir.path(), "tx-fc")).await;
}

#[tokio::test]
#[ignore = "tx: needs firecracker and jailer on PATH, root and a KVM that runs guests"]
async fn real_firecracker_under_the_jailer() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = vm_config(dir.path(), "tx-fc-jail");
    let parent = TestParent::new("tx");
    let vmm = VmmConfig {
        cgroup_parent: parent.relative.clone(),
        ..VmmConfig::default()
    };
    config.jail = Some(Jail::for_tenant(
        &vmm,
        BackendKind::Firecracker,
        "tx-fc-jail",
        10_999,
        1,
        128,
        None,
    ));
    config.jail.as_mut().unwrap().chroot_base = dir.path().join("jail");
    let group = MemoryGroup::at(&config.jail.as_ref().unwrap().cgroup()).unwrap();
    run_flows(&config).await;
    assert!(
        !dir.path().join("jail/firecracker/tx-fc-jail").exists(),
        "chroot left behind"
    );
    assert!(!group.dir.exists(), "cgroup left behind");
}
