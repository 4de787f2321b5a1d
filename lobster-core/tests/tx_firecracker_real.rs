//! Against the real `firecracker` (and `jailer`) binaries: the same flows
//! as the contract tests, on a host with both in `$LOBSTER_FIRECRACKER_DIR`
//! or on PATH. Ignored by default (reported as skipped); `scripts/test` runs
//! them where the binaries exist.
//!
//! The `*_up_to_the_guest_boot` tests need no guest that boots: they check
//! everything Firecracker does around the guest (jailer, pause, snapshot
//! create, load into a new jailed Firecracker on another TAP through
//! `network_overrides`, resume), so they also run where `/dev/kvm` does not
//! run ordinary guests (the development host's nested PVM hypervisor). The
//! others wait for the guest's counter and need a KVM that runs guests.
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

/// `name` in `$LOBSTER_FIRECRACKER_DIR` (e.g. `/opt/firecracker-v1.14.4`),
/// else on PATH.
fn on_path(name: &str) -> PathBuf {
    let dirs: Vec<PathBuf> = match std::env::var_os("LOBSTER_FIRECRACKER_DIR") {
        Some(dir) => vec![dir.into()],
        None => std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default(),
    };
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("missing `{name}` in $LOBSTER_FIRECRACKER_DIR or on PATH"))
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
        .expect("no boot marker (these tests need a KVM that runs guests)");
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

/// A jailed VM of tenant uid 10_998 with its NIC on `tap` in network
/// namespace `netns`, its chroot and snapshots under `dir`.
fn jailed_config(dir: &Path, name: &str, netns: &str, tap: &str, parent: &TestParent) -> VmConfig {
    let mut config = vm_config(dir, name);
    config.nic = Some(lobster_testkit::vm::nic(tap, "06:00:0a:c8:00:02"));
    let vmm = VmmConfig {
        cgroup_parent: parent.relative.clone(),
        ..VmmConfig::default()
    };
    let mut jail = Jail::for_tenant(
        &vmm,
        BackendKind::Firecracker,
        name,
        TENANT_UID,
        1,
        config.memory_mib,
        Some(format!("/var/run/netns/{netns}").into()),
    );
    jail.chroot_base = dir.join("jail");
    config.jail = Some(jail);
    config
}

const TENANT_UID: u32 = 10_998;

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Suspend and resume as the tenant layer does them, against the real
/// jailer and Firecracker, up to where the guest itself would run: launch
/// jailed on TAP `tap-a`, pause, snapshot (the files land in the tenant's
/// snapshot directory, 0600, the tenant's, the memory file sparse; nothing
/// stays in the chroot), kill (chroot removed), then restore into a new
/// jailed Firecracker on TAP `tap-b` (the old one is gone, as after a
/// host reboot): Firecracker attaches to `tap-b` through `network_overrides`
/// and the guest continues paused, then running. The version the backend
/// reports is the running Firecracker's.
#[tokio::test]
#[ignore = "tx: needs firecracker and jailer (LOBSTER_FIRECRACKER_DIR or PATH), root, /dev/kvm"]
async fn real_firecracker_jailed_suspend_resume_up_to_the_guest_boot() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let netns = lobster_testkit::netns::Netns::unique("lobtx");
    let ns = netns.name().to_string();
    for tap in ["tap-a", "tap-b"] {
        let uid = TENANT_UID.to_string();
        ip(&[
            "-n", &ns, "tuntap", "add", tap, "mode", "tap", "user", &uid, "group", &uid,
        ]);
    }
    let parent = TestParent::new("tx");
    let config = jailed_config(dir.path(), "tx-fc-suspend", &ns, "tap-a", &parent);
    let jail_dir = dir.path().join("jail/firecracker/tx-fc-suspend");
    let socket = jail_dir.join("root/api.socket");
    let mut evidence = Evidence::new(&config.paths.console_log);
    let group =
        MemoryGroup::at(&config.jail.as_ref().unwrap().cgroup()).expect("a memory hierarchy");
    evidence.watch_group(MemoryGroup::at(&config.jail.as_ref().unwrap().cgroup()).unwrap());
    let vmm = backend();
    let client = lobster_core::vmm::firecracker::client::ApiClient::new(
        "tx-fc-suspend",
        &socket,
        Duration::from_secs(10),
    );

    let started = std::time::Instant::now();
    let vm = vmm.launch(&config).await.expect("jailed launch");
    evidence.watch(vm.identity());
    eprintln!(
        "launch (jailer, configure, InstanceStart): {:?}",
        started.elapsed()
    );
    assert_eq!(vm.status().await.unwrap(), VmStatus::Running);
    let version = vmm.version().await.expect("version");
    let running = client.get("/version").await.unwrap();
    assert_eq!(
        version,
        format!(
            "Firecracker v{}",
            running["firecracker_version"].as_str().unwrap()
        )
    );
    eprintln!("version: {version}");

    vm.pause().await.unwrap();
    assert_eq!(vm.status().await.unwrap(), VmStatus::Paused);
    let started = std::time::Instant::now();
    let snapshot = vm.snapshot().await.expect("snapshot");
    eprintln!(
        "snapshot create + move out + sparse: {:?}",
        started.elapsed()
    );
    let memory = snapshot.memory_file.clone().unwrap();
    for file in [&snapshot.state_file, &memory] {
        assert!(file.starts_with(&config.paths.snapshot_dir));
        let meta = std::fs::symlink_metadata(file).unwrap();
        assert!(meta.is_file());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{}",
            file.display()
        );
        assert_eq!(
            (meta.uid(), meta.gid()),
            (TENANT_UID, TENANT_UID),
            "{}",
            file.display()
        );
    }
    let meta = std::fs::metadata(&memory).unwrap();
    assert_eq!(meta.len(), u64::from(config.memory_mib) << 20);
    eprintln!(
        "memory file: {} MiB long, {} MiB on disk; state file {} bytes",
        meta.len() >> 20,
        (meta.blocks() * 512) >> 20,
        std::fs::metadata(&snapshot.state_file).unwrap().len()
    );
    assert!(meta.blocks() * 512 < meta.len(), "memory file not sparse");
    let in_jail: Vec<_> = std::fs::read_dir(jail_dir.join("root"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snapshot"))
        .collect();
    assert!(in_jail.is_empty(), "left in the chroot: {in_jail:?}");
    vm.kill().await.unwrap();
    assert!(!jail_dir.exists(), "chroot left behind");

    // The old TAP is gone: without the override the jailed Firecracker
    // (no CAP_NET_ADMIN) could not attach the guest anywhere.
    ip(&["-n", &ns, "link", "del", "tap-a"]);
    let mut moved = config.clone();
    moved.nic.as_mut().unwrap().tap = "tap-b".into();
    let started = std::time::Instant::now();
    let restored = vmm
        .restore(&moved, &snapshot, false)
        .await
        .expect("restore");
    evidence.watch(restored.identity());
    eprintln!(
        "restore (jailer, place files, load): {:?}",
        started.elapsed()
    );
    assert_eq!(restored.status().await.unwrap(), VmStatus::Paused);
    let full = client.get("/vm/config").await.unwrap();
    assert_eq!(full["network-interfaces"][0]["host_dev_name"], "tap-b");
    assert_eq!(full["machine-config"]["mem_size_mib"], config.memory_mib);
    assert!(
        !jail_dir.join("root/snapshot.mem").exists(),
        "the chroot keeps the memory file"
    );
    restored.resume().await.unwrap();
    assert_eq!(restored.status().await.unwrap(), VmStatus::Running);

    // Suspended again, as a resumed tenant later is: Firecracker writes
    // the new memory file beside the one it maps as guest memory (which
    // no name in the chroot reaches any more), and that one loads too.
    restored.pause().await.unwrap();
    let again = restored.snapshot().await.expect("second snapshot");
    assert_eq!(restored.status().await.unwrap(), VmStatus::Paused);
    restored.kill().await.unwrap();
    assert!(!jail_dir.exists(), "chroot left behind");
    let third = vmm
        .restore(&moved, &again, true)
        .await
        .expect("second restore");
    evidence.watch(third.identity());
    assert_eq!(third.status().await.unwrap(), VmStatus::Running);
    third.kill().await.unwrap();
    assert!(!jail_dir.exists(), "chroot left behind");
    assert!(!group.dir.exists(), "cgroup left behind");
}

/// The same without the jailer (no NIC: an unjailed Firecracker runs in
/// the test's own network namespace): snapshot files private and sparse in
/// the snapshot directory, loaded by a new Firecracker, resumed.
#[tokio::test]
#[ignore = "tx: needs firecracker (LOBSTER_FIRECRACKER_DIR or PATH) and /dev/kvm"]
async fn real_firecracker_suspend_resume_up_to_the_guest_boot() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let config = vm_config(dir.path(), "tx-fc-direct");
    let mut evidence = Evidence::new(&config.paths.console_log);
    let vmm = backend();
    let vm = vmm.launch(&config).await.expect("launch");
    evidence.watch(vm.identity());
    vm.pause().await.unwrap();
    let snapshot = vm.snapshot().await.expect("snapshot");
    for file in [&snapshot.state_file, snapshot.memory_file.as_ref().unwrap()] {
        let meta = std::fs::symlink_metadata(file).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{}",
            file.display()
        );
    }
    let meta = std::fs::metadata(snapshot.memory_file.as_ref().unwrap()).unwrap();
    assert!(meta.blocks() * 512 < meta.len(), "memory file not sparse");
    vm.kill().await.unwrap();
    let restored = vmm
        .restore(&config, &snapshot, true)
        .await
        .expect("restore");
    evidence.watch(restored.identity());
    assert_eq!(restored.status().await.unwrap(), VmStatus::Running);
    // Suspended again: the new snapshot replaces the one mapped as the
    // restored guest's memory by rename, never by writing into it.
    restored.pause().await.unwrap();
    let again = restored.snapshot().await.expect("second snapshot");
    assert_eq!(restored.status().await.unwrap(), VmStatus::Paused);
    restored.resume().await.unwrap();
    assert_eq!(restored.status().await.unwrap(), VmStatus::Running);
    restored.kill().await.unwrap();
    let third = vmm
        .restore(&config, &again, true)
        .await
        .expect("second restore");
    evidence.watch(third.identity());
    assert_eq!(third.status().await.unwrap(), VmStatus::Running);
    third.kill().await.unwrap();
    assert!(!config.paths.api_socket.exists(), "api socket left behind");
}
