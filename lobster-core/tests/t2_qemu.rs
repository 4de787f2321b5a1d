//! T2: the QEMU backend boots real guests (TCG here, KVM where it works).
//!
//! Guest: the pinned Debian cloud kernel (`guest/images/kernel.sh`) and the
//! test initramfs (`guest/images/test-initramfs.sh`), whose /init prints
//! `LOBSTER-TEST-GUEST-READY` and then `n=<counter>` every 100 ms. No
//! network devices: these guests need none. On failure the console log is
//! printed into the test output.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lobster_core::config::{Accel, BackendKind, VmmConfig};
use lobster_core::vmm::qemu::{QemuSettings, QemuVmm};
use lobster_core::vmm::{ConsoleLog, ExitStatus, ShutdownOutcome, Vm, VmConfig, VmStatus, Vmm};
use lobster_testkit::cgroup::{
    limit_file, status_field, status_field_while_alive, MemoryGroup, TestParent,
};
use lobster_testkit::images::{
    first_counter, last_counter, test_guest, TEST_GUEST_READY as MARKER,
};
use lobster_testkit::netns::Netns;
use lobster_testkit::poll::until_async;
use lobster_testkit::vm::{blank_disks, nic};
use lobster_testkit::Evidence;

const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

fn qemu_binary() -> PathBuf {
    let binary = PathBuf::from("qemu-system-x86_64");
    let found = std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "missing qemu-system-x86_64 on PATH (apt-get install qemu-system-x86)"
    );
    binary
}

fn backend(kernel: &Path) -> QemuVmm {
    let mut config = VmmConfig::default();
    config.qemu.binary = qemu_binary();
    if let Ok(accel) = std::env::var("LOBSTER_TEST_ACCEL") {
        config.qemu.accel = match accel.as_str() {
            "kvm" => Accel::Kvm,
            "tcg" => Accel::Tcg,
            _ => Accel::Auto,
        };
    }
    config.ready_timeout_ms = 20_000;
    QemuVmm::new(QemuSettings::from_config(&config, kernel))
}

/// A VM config in `dir` for the test guest, with a read-only base disk and
/// a writable overlay (blank: the guest does not mount them, but QEMU opens
/// and locks them like real ones).
fn vm_config(dir: &Path, name: &str) -> VmConfig {
    let (kernel, initrd) = test_guest("vmlinuz");
    let mut config = lobster_testkit::vm::vm_config(dir, name, kernel);
    config.initrd = Some(initrd);
    blank_disks(&config);
    config
}

/// Launches `config` on a fresh backend, has `evidence` kill it by PID if
/// the test fails, and waits for the boot marker: the VM and the console
/// offset just after the marker.
async fn boot(config: &VmConfig, evidence: &mut Evidence) -> (Box<dyn Vm>, u64) {
    let vm = backend(&config.kernel)
        .launch(config)
        .await
        .expect("launch");
    evidence.watch(vm.identity());
    let booted = vm
        .process()
        .console()
        .wait_for(MARKER, 0, BOOT_TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("no boot marker within {BOOT_TIMEOUT:?}"));
    (vm, booted)
}

/// The last counter value the guest printed after byte `from`.
fn counter_after(console: &ConsoleLog, from: u64) -> Option<u64> {
    let text = console.read_all();
    let start = usize::try_from(from).unwrap().min(text.len());
    last_counter(&text[start..])
}

async fn wait_counter_above(console: &ConsoleLog, from: u64, value: u64, within: Duration) -> u64 {
    until_async(
        &format!("the guest counter to pass {value}"),
        within,
        || async { counter_after(console, from).filter(|n| *n > value) },
    )
    .await
}

/// Inode numbers of the file as /proc/locks prints them (`maj:min:ino`).
fn locks_on(path: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(path).unwrap().ino();
    let needle = format!(":{ino} ");
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&needle))
        .count()
}

fn assert_gone(pid: i32, config: &VmConfig) {
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "qemu pid {pid} still exists"
    );
    assert!(
        !config.paths.api_socket.exists(),
        "qmp socket {} left behind",
        config.paths.api_socket.display()
    );
    assert_eq!(
        locks_on(&config.drives[1].path),
        0,
        "lock left on the overlay disk"
    );
}

#[tokio::test]
#[ignore = "t2: needs root, qemu and images"]
async fn boots_to_marker_then_kill_leaves_no_process_socket_or_lock() {
    let dir = tempfile::tempdir().unwrap();
    let config = vm_config(dir.path(), "t2-boot");
    let mut evidence = Evidence::new(&config.paths.console_log);

    let (vm, _) = boot(&config, &mut evidence).await;
    let pid = vm.identity().pid;
    assert_eq!(vm.status().await.unwrap(), VmStatus::Running);
    assert!(
        locks_on(&config.drives[1].path) > 0,
        "qemu should lock the overlay"
    );

    let status = vm.kill().await.expect("kill");
    assert_eq!(status, ExitStatus::Signal(libc::SIGKILL));
    assert_gone(pid, &config);
    assert!(matches!(vm.status().await.unwrap(), VmStatus::Exited(_)));
}

#[tokio::test]
#[ignore = "t2: needs root, qemu and images"]
async fn pause_stops_guest_progress_and_resume_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = vm_config(dir.path(), "t2-pause");
    let mut evidence = Evidence::new(&config.paths.console_log);

    let (vm, booted) = boot(&config, &mut evidence).await;
    let console = vm.process().console().clone();
    wait_counter_above(&console, booted, 3, Duration::from_secs(30)).await;

    vm.pause().await.expect("pause");
    assert_eq!(vm.status().await.unwrap(), VmStatus::Paused);
    let frozen = counter_after(&console, booted).unwrap();
    // While paused the counter must not move; 1 s is ten ticks of the guest.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        counter_after(&console, booted),
        Some(frozen),
        "guest ran while paused"
    );

    vm.resume().await.expect("resume");
    assert_eq!(vm.status().await.unwrap(), VmStatus::Running);
    wait_counter_above(&console, booted, frozen + 3, Duration::from_secs(30)).await;

    let pid = vm.identity().pid;
    // The test guest has no ACPI power-button handling: shutdown falls back.
    let outcome = vm
        .shutdown(Duration::from_millis(500))
        .await
        .expect("shutdown");
    assert!(matches!(outcome, ShutdownOutcome::Forced(_)), "{outcome:?}");
    assert_gone(pid, &config);
}

/// Snapshot, kill, then restore into a new QEMU process started by a fresh
/// backend from the files alone (config and snapshot description read back
/// from disk, as a later orchestrator process would).
#[tokio::test]
#[ignore = "t2: needs root, qemu and images"]
async fn snapshot_then_restore_in_a_new_process_keeps_guest_state() {
    let dir = tempfile::tempdir().unwrap();
    let config = vm_config(dir.path(), "t2-snap");
    let mut evidence = Evidence::new(&config.paths.console_log);

    let (frozen, restore_from) = {
        let (vm, booted) = boot(&config, &mut evidence).await;
        let console = vm.process().console().clone();
        wait_counter_above(&console, booted, 10, Duration::from_secs(30)).await;

        let err = vm.snapshot().await.expect_err("snapshot of a running vm");
        assert!(
            err.to_string().contains("cannot snapshot while running"),
            "{err}"
        );
        vm.pause().await.expect("pause");
        let frozen = counter_after(&console, booted).unwrap();
        let snapshot = vm.snapshot().await.expect("snapshot");
        let pid = vm.identity().pid;
        vm.kill().await.expect("kill after snapshot");
        assert_gone(pid, &config);
        std::fs::write(
            dir.path().join("snapshot.json"),
            serde_json::to_vec(&(&config, &snapshot)).unwrap(),
        )
        .unwrap();
        (frozen, console.read_all().len() as u64)
    };

    let (config, snapshot): (VmConfig, lobster_core::vmm::Snapshot) =
        serde_json::from_slice(&std::fs::read(dir.path().join("snapshot.json")).unwrap()).unwrap();
    let vmm = backend(&config.kernel);
    let vm = vmm
        .restore(&config, &snapshot, true)
        .await
        .expect("restore");
    let pid = vm.identity().pid;
    evidence.watch(vm.identity());
    assert_eq!(vm.status().await.unwrap(), VmStatus::Running);
    let console = vm.process().console().clone();
    let last =
        wait_counter_above(&console, restore_from, frozen + 5, Duration::from_secs(30)).await;

    // The restored guest continued the counter from where it was frozen:
    // its first value after restore is frozen+1, and it did not reboot.
    let after = console.read_all()[restore_from as usize..].to_string();
    assert!(
        !after.contains(MARKER),
        "guest rebooted instead of resuming:\n{after}"
    );
    let first = first_counter(&after).expect("restored guest printed no counter");
    assert_eq!(
        first,
        frozen + 1,
        "counter did not continue from the snapshot"
    );
    assert!(last > first);

    vm.kill().await.expect("kill restored vm");
    assert_gone(pid, &config);
}

/// Dropping the handle leaves the VM running; a fresh backend re-attaches
/// from the recorded identity, and a wrong start time is refused.
#[tokio::test]
#[ignore = "t2: needs root, qemu and images"]
async fn vm_outlives_its_handle_and_attach_finds_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = vm_config(dir.path(), "t2-attach");
    let mut evidence = Evidence::new(&config.paths.console_log);
    eprintln!(
        "accelerator: {:?}",
        lobster_core::vmm::qemu::accel::kvm_usable("qemu-system-x86_64".as_ref(), &config.kernel)
    );

    let identity = {
        let vm = backend(&config.kernel)
            .launch(&config)
            .await
            .expect("launch");
        evidence.watch(vm.identity());
        vm.identity()
    };
    let console = ConsoleLog::new(&config.paths.console_log, 1 << 30);
    let booted = console
        .wait_for(MARKER, 0, BOOT_TIMEOUT)
        .await
        .expect("boot marker");
    wait_counter_above(&console, booted, 3, Duration::from_secs(30)).await;

    let vmm = backend(&config.kernel);
    let wrong = lobster_core::vmm::VmIdentity {
        start_time: identity.start_time + 1,
        ..identity
    };
    let err = vmm
        .attach(&config, wrong)
        .await
        .expect_err("wrong identity");
    assert_eq!(
        lobster_core::Error::from(err).kind(),
        lobster_core::ErrorKind::NotFound
    );

    let vm = vmm.attach(&config, identity).await.expect("attach");
    assert_eq!(vm.status().await.unwrap(), VmStatus::Running);
    vm.kill().await.expect("kill");
    assert_gone(identity.pid, &config);
    let err = vmm
        .attach(&config, identity)
        .await
        .expect_err("attach to a dead vm");
    assert!(err.to_string().contains("no vmm process"), "{err}");
}

/// A guest that dies (kernel panic: no init, no root) ends QEMU; the death
/// is reported with its exit status and the console tail.
#[tokio::test]
#[ignore = "t2: needs root, qemu and images"]
async fn a_dying_guest_is_reported_with_exit_status_and_console_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = vm_config(dir.path(), "t2-panic");
    config.initrd = None; // nothing to run: the kernel panics, QEMU exits
    let mut evidence = Evidence::new(&config.paths.console_log);
    let vm = backend(&config.kernel)
        .launch(&config)
        .await
        .expect("launch");
    evidence.watch(vm.identity());
    let status = vm
        .process()
        .wait_exit(BOOT_TIMEOUT)
        .await
        .expect("qemu did not exit after the guest panicked");
    assert_eq!(
        status,
        ExitStatus::Code(0),
        "-no-reboot turns the panic reboot into exit 0"
    );
    assert_eq!(vm.status().await.unwrap(), VmStatus::Exited(status));
    let err = vm.pause().await.expect_err("pausing a dead vm");
    let text = err.to_string();
    assert!(text.contains("vmm process ended (exit code 0)"), "{text}");
    assert!(text.contains("Kernel panic"), "{text}");
    vm.kill().await.expect("kill of a dead vm is a no-op");
    assert!(!config.paths.api_socket.exists());
}

/// A jail for `uid` as a tenant of `memory_mib` gets one, its chroot in
/// `dir` and its cgroup under `parent` (this test process's alone).
fn jail(
    dir: &Path,
    id: &str,
    uid: u32,
    memory_mib: u32,
    parent: &TestParent,
) -> lobster_core::vmm::Jail {
    let vmm = VmmConfig {
        cgroup_parent: parent.relative.clone(),
        ..VmmConfig::default()
    };
    let mut jail =
        lobster_core::vmm::Jail::for_tenant(&vmm, BackendKind::Qemu, id, uid, 1, memory_mib, None);
    jail.chroot_base = dir.join("jail");
    jail
}

/// A jailed QEMU runs as the tenant's uid with no groups and no way to
/// regain privileges, under its seccomp filter, in a root holding only its
/// own files, and in its own cgroup whose memory limit is guest memory
/// plus the overhead; kill removes the jail and the cgroup.
#[tokio::test]
#[ignore = "t2: needs root, qemu and images"]
async fn a_jailed_vm_runs_as_the_tenant_uid_sandboxed_in_its_cgroup() {
    // The owner of /proc/self is our effective uid.
    let euid = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").unwrap().uid()
    };
    assert_eq!(euid, 0, "needs root (to switch uid)");
    let dir = tempfile::tempdir().unwrap();
    let parent = TestParent::new("t2");
    let mut config = vm_config(dir.path(), "t2-jail");
    config.jail = Some(jail(
        dir.path(),
        "t2-jail",
        10_998,
        config.memory_mib,
        &parent,
    ));
    let limits = config.jail.as_ref().unwrap().limits;
    let mut evidence = Evidence::new(&config.paths.console_log);
    let (vm, _) = boot(&config, &mut evidence).await;
    let pid = vm.identity().pid;

    let uid_line = status_field(pid, "Uid");
    assert!(
        uid_line.split_whitespace().all(|id| id == "10998"),
        "{uid_line}"
    );
    assert_eq!(
        status_field(pid, "Gid").split_whitespace().next(),
        Some("10998")
    );
    assert_eq!(status_field(pid, "Groups"), "", "no supplementary groups");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(status_field(pid, "Seccomp"), "2", "qemu's -sandbox filter");

    let group = MemoryGroup::of(pid).expect("qemu sits in a memory cgroup");
    assert!(
        group.dir.ends_with(parent.relative.join("t2-jail")),
        "{}",
        group.dir.display()
    );
    assert_eq!(group.limit(), (128 + 256) << 20);
    assert_eq!(group.limit(), limits.memory_bytes);
    // CPU: one CPU's worth of quota per vCPU; pids: the task cap.
    assert_eq!(
        limits.cpu_quota_us,
        u64::from(config.vcpus) * limits.cpu_period_us
    );
    let cpu = limit_file(pid, "cpu", "cpu.cfs_quota_us", "cpu.max");
    assert_eq!(
        cpu.split_whitespace().next(),
        Some(limits.cpu_quota_us.to_string().as_str()),
        "cpu quota"
    );
    let pids = limit_file(pid, "pids", "pids.max", "pids.max");
    assert_eq!(pids, limits.pids.to_string(), "pids.max");

    // Its root holds its own files, not the host's.
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap());
    assert!(
        inside(&config.kernel).exists(),
        "kernel missing in the jail"
    );
    assert!(inside(&config.drives[1].path).exists(), "overlay missing");
    for host_only in ["/etc/passwd", "/root", "/proc/1", "/var", "/home"] {
        assert!(
            !inside(Path::new(host_only)).exists(),
            "{host_only} is visible in the jail"
        );
    }
    assert!(
        !inside(&config.paths.console_log).exists(),
        "the console log is an fd, not a file in the jail"
    );

    vm.pause()
        .await
        .expect("qmp still works after dropping privileges");
    vm.resume().await.unwrap();

    // Every per-tenant file is private, with the directories on the way
    // open (as /var/lib/lobsterd is): another user gets EACCES.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let jail_dir = lobster_core::vmm::jail_dir(BackendKind::Qemu, &VmmConfig::default(), &config)
        .expect("qemu is jailed");
    for (path, is_dir) in [
        (config.drives[1].path.clone(), false),
        (config.paths.console_log.clone(), false),
        (jail_dir.clone(), true),
    ] {
        assert!(path.exists(), "{}", path.display());
        assert!(
            nobody_is_denied(&path, is_dir),
            "{} is open to nobody",
            path.display()
        );
    }
    let overlay_owner = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&config.drives[1].path).unwrap().uid()
    };
    assert_eq!(overlay_owner, 10_998, "the overlay is handed to the tenant");

    // A spawn killed before recording the VM leaves a VMM nobody knows the
    // pid of: it is found by its cgroup, and its jail and cgroup go.
    drop(vm);
    let cgroup_dir = group.dir.clone();
    lobster_core::vmm::stop_recorded(&config, None)
        .await
        .expect("stop by cgroup");
    lobster_core::vmm::remove_jail(&config, &jail_dir).expect("remove the jail");
    until_async(
        "the orphan qemu to be gone",
        Duration::from_secs(10),
        || async { (!Path::new(&format!("/proc/{pid}")).exists()).then_some(()) },
    )
    .await;
    assert!(!jail_dir.exists(), "jail left behind");
    assert!(
        !cgroup_dir.exists(),
        "cgroup {} left behind",
        cgroup_dir.display()
    );
}

/// Whether uid 65534 (nobody, no groups) gets "Permission denied" reading
/// `path` (a file) or listing it (a directory).
fn nobody_is_denied(path: &Path, is_dir: bool) -> bool {
    use std::os::unix::process::CommandExt;
    let mut command = if is_dir {
        std::process::Command::new("ls")
    } else {
        let mut head = std::process::Command::new("head");
        head.arg("-c0");
        head
    };
    let out = command.arg(path).uid(65_534).gid(65_534).output().unwrap();
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Permission denied")
}

/// A guest that touches more memory than its VMM's cgroup allows cannot
/// grow QEMU past the limit: the kernel zeroes 2 MiB huge pages for 190
/// MiB of the guest's 256 MiB at boot (`hugepages=` with `init_on_alloc`),
/// which takes an unconfined QEMU from ~195 MiB to ~325 MiB here; limited
/// to 260 MiB, it stays within.
#[tokio::test]
#[ignore = "t2: needs root, qemu and images"]
async fn a_guest_touching_more_than_its_limit_does_not_grow_its_vmm_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let parent = TestParent::new("t2");
    let mut config = vm_config(dir.path(), "t2-memory");
    config.memory_mib = 256;
    config.boot_args = "quiet hugepages=95 init_on_alloc=1".into();
    let mut jail = jail(dir.path(), "t2-memory", 10_995, 256, &parent);
    const LIMIT: u64 = 260 << 20;
    jail.limits.memory_bytes = LIMIT;
    config.jail = Some(jail);
    let mut evidence = Evidence::new(&config.paths.console_log);
    let vm = backend(&config.kernel)
        .launch(&config)
        .await
        .expect("launch");
    evidence.watch(vm.identity());
    let pid = vm.identity().pid;
    let group = MemoryGroup::of(pid).expect("qemu sits in a memory cgroup");
    assert_eq!(group.limit(), LIMIT);
    // The guest presses against the limit (the kernel then reclaims, and
    // with nothing to reclaim kills QEMU); it never gets past it.
    let deadline = std::time::Instant::now() + BOOT_TIMEOUT;
    // Pressed against it: hit it, or came within 4 MiB of it.
    while group.hits() == 0 && group.peak() < LIMIT - (4 << 20) {
        assert!(
            std::time::Instant::now() < deadline,
            "the guest never reached its VMM's memory limit (peak {} of {LIMIT})",
            group.peak()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let peak = group.peak();
    assert!(peak <= LIMIT, "peak {peak} over the limit {LIMIT}");
    // Anonymous memory (guest RAM, QEMU's heap) is charged here; shared
    // file pages (QEMU's libraries) count in VmRSS but may be charged to
    // whichever group first read them. The kernel may have killed QEMU
    // for the limit by now, which is the limit working too.
    if let Some(rss_anon) = status_field_while_alive(pid, "RssAnon") {
        let rss_kib: u64 = rss_anon
            .split_whitespace()
            .next()
            .and_then(|kib| kib.parse().ok())
            .expect("RssAnon in kB");
        assert!(
            rss_kib << 10 <= LIMIT,
            "anonymous rss {rss_kib} KiB over the limit"
        );
    }
    let cgroup_dir = group.dir.clone();
    vm.kill().await.unwrap();
    assert!(!cgroup_dir.exists(), "cgroup left behind");
}

/// With `jail.netns`, QEMU runs inside that namespace and attaches the TAP
/// that exists only there. Everything lives in the test's own namespace.
#[tokio::test]
#[ignore = "t2: needs root, qemu and images"]
async fn a_vm_with_a_netns_runs_there_and_holds_its_tap() {
    use std::os::unix::fs::MetadataExt;
    let netns = Netns::unique("lobster-vmmtest-");
    netns.ip(&["tuntap", "add", "dev", "lobt0", "mode", "tap"]);
    let dir = tempfile::tempdir().unwrap();
    let mut config = vm_config(dir.path(), "t2-netns");
    config.nic = Some(nic("lobt0", "06:00:0a:c8:00:02"));
    let parent = TestParent::new("t2");
    let mut jail = jail(dir.path(), "t2-netns", 10_997, config.memory_mib, &parent);
    jail.netns = Some(netns.path());
    config.jail = Some(jail);
    let mut evidence = Evidence::new(&config.paths.console_log);
    let (vm, _) = boot(&config, &mut evidence).await;
    let pid = vm.identity().pid;

    let vm_ns = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .ino();
    let test_ns = std::fs::metadata(netns.path()).unwrap().ino();
    assert_eq!(
        vm_ns, test_ns,
        "qemu is not in the test's network namespace"
    );
    let holds_tap = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .any(|info| {
            info.lines()
                .any(|l| l.starts_with("iff:") && l.ends_with("lobt0"))
        });
    assert!(holds_tap, "qemu holds no fd for tap lobt0");

    vm.kill().await.unwrap();
    assert_gone(pid, &config);
}
