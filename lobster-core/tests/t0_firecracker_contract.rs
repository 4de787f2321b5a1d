//! Contract tests: lobster's Firecracker backend against a fake Firecracker
//! that validates every request against the pinned v1.16.1 API spec and
//! keeps Firecracker's ordering rules. Full launch, pause, snapshot,
//! restore and shutdown flows, directly and under the (fake) jailer; every
//! body is also valid for v1.14.4; error paths give clear errors.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lobster_core::vmm::firecracker::fake::{
    FakeFirecracker, FakeLauncher, FakeOptions, Phase, FAKE_MEMORY_BYTES, MEMORY_MARK,
};
use lobster_core::vmm::firecracker::plan::{ApiCall, Features};
use lobster_core::vmm::firecracker::spec::Spec;
use lobster_core::vmm::firecracker::{
    api, client::ApiClient, FirecrackerSettings, FirecrackerVmm, Launcher,
};
use lobster_core::vmm::{
    BackendKind, ExitStatus, Jail, RateLimiter, ShutdownOutcome, Snapshot, TokenBucket, VmConfig,
    VmStatus, Vmm, VmmError,
};
use lobster_core::ErrorKind;
use lobster_testkit::poll::until_async;
use lobster_testkit::vm::{blank_disks, nic, vm_config};
use serde_json::json;

/// Tenant alice's VM: 2 vCPUs, 1 GiB, a NIC, and rate limits on the
/// overlay and the NIC (so every body shape the backend sends is exercised).
fn config(dir: &Path) -> VmConfig {
    let bucket = |size| TokenBucket {
        size,
        one_time_burst: 0,
        refill_time_ms: 1000,
    };
    let limit = RateLimiter {
        bandwidth: Some(bucket(1_250_000)),
        ops: Some(bucket(1000)),
    };
    let mut config = vm_config(dir, "vm-alice", dir.join("vmlinux"));
    config.initrd = Some(dir.join("initrd"));
    config.boot_args = "quiet lobster.ip=10.200.0.2/30".into();
    config.drives[1].rate_limiter = Some(RateLimiter {
        bandwidth: Some(bucket(52_428_800)),
        ops: Some(bucket(5000)),
    });
    let mut eth0 = nic("lob-alice", "06:00:0a:c8:00:02");
    eth0.rx_rate_limiter = Some(limit);
    eth0.tx_rate_limiter = Some(limit);
    config.nic = Some(eth0);
    config.vcpus = 2;
    config.memory_mib = 1024;
    // The fake opens the kernel, initrd and drives as Firecracker would.
    for file in [&config.kernel, config.initrd.as_ref().unwrap()] {
        std::fs::write(file, "guest").unwrap();
    }
    blank_disks(&config);
    config
}

/// Bounds for a fake that answers in milliseconds: only a hang reaches
/// them, however busy the machine (nextest runs these tests in parallel).
const GENEROUS: Duration = Duration::from_secs(30);

fn backend_with(launcher: Arc<dyn Launcher>, features: Features) -> FirecrackerVmm {
    FirecrackerVmm::new(FirecrackerSettings {
        binary: "/usr/local/bin/firecracker".into(),
        jailer: "/usr/local/bin/jailer".into(),
        features,
        ready_timeout: GENEROUS,
        call_timeout: GENEROUS,
        snapshot_timeout: GENEROUS,
        launcher,
    })
}

fn all_features() -> Features {
    Features {
        log_level: Some(api::LogLevel::Off),
        metrics: true,
        entropy: true,
        balloon: Some(api::Balloon {
            amount_mib: 0,
            deflate_on_oom: true,
            stats_polling_interval_s: 5,
        }),
    }
}

fn assert_all_accepted(fake: &FakeFirecracker) {
    for r in fake.requests() {
        assert!(
            r.status < 300,
            "{} {} was rejected: {:?}\nbody: {}",
            r.method,
            r.path,
            r.fault,
            r.body
        );
    }
}

async fn wait_gone(pid: i32) {
    until_async(&format!("process {pid} to end"), GENEROUS, || async {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        (!stat.is_ok_and(|s| !s.contains(") Z "))).then_some(())
    })
    .await;
}

#[tokio::test]
async fn launch_pause_snapshot_restore_shutdown_through_the_spec_checked_fake() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let launcher = FakeLauncher::new(FakeOptions::default());
    let vmm = backend_with(Arc::new(launcher.clone()), all_features());

    // Launch: every configuration call is valid per the spec and accepted.
    let vm = vmm.launch(&config).await.expect("launch");
    let fake = launcher.fakes()[0].clone();
    assert_all_accepted(&fake);
    let paths: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        paths,
        [
            "PUT /logger",
            "PUT /metrics",
            "PUT /machine-config",
            "PUT /boot-source",
            "PUT /drives/rootfs",
            "PUT /drives/overlay",
            "PUT /network-interfaces/eth0",
            "PUT /entropy",
            "PUT /balloon",
            "PUT /actions"
        ]
    );
    assert_eq!(
        launcher.launches()[0],
        [
            "/usr/local/bin/firecracker",
            "--api-sock",
            &config.paths.api_socket.display().to_string(),
            "--id",
            "vm-alice"
        ]
    );
    assert_eq!(vm.status().await.unwrap(), VmStatus::Running);

    // What the VMM reports back matches what was configured.
    let full = ApiClient::new("vm-alice", &config.paths.api_socket, GENEROUS)
        .get("/vm/config")
        .await
        .unwrap();
    assert_eq!(full["machine-config"]["vcpu_count"], 2);
    assert_eq!(full["drives"][1]["rate_limiter"]["ops"]["size"], 5000);
    assert_eq!(
        full["network-interfaces"][0]["guest_mac"],
        "06:00:0a:c8:00:02"
    );

    // Snapshot needs a paused VM: Firecracker's refusal reaches the user.
    let err = vm.snapshot().await.unwrap_err();
    assert!(matches!(err, VmmError::InvalidState { .. }), "{err}");

    vm.pause().await.unwrap();
    assert_eq!(vm.status().await.unwrap(), VmStatus::Paused);
    let ticks = fake.ticks();
    let snapshot = vm.snapshot().await.expect("snapshot");
    assert!(snapshot.state_file.exists() && snapshot.memory_file.as_ref().unwrap().exists());
    assert_eq!(
        fake.requests().last().unwrap().body,
        json!({
            "snapshot_path": format!("{}.partial", snapshot.state_file.display()),
            "mem_file_path": format!("{}.partial", snapshot.memory_file.as_ref().unwrap().display()),
            "snapshot_type": "Full",
        })
    );
    assert_private_and_sparse(&snapshot, None);
    // Written under partial names, then renamed into place: none is left.
    let partials: Vec<_> = std::fs::read_dir(&config.paths.snapshot_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name.to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(
        partials.is_empty(),
        "partial snapshot files left: {partials:?}"
    );
    vm.resume().await.unwrap();
    assert_eq!(vm.status().await.unwrap(), VmStatus::Running);
    let pid = vm.identity().pid;
    vm.kill().await.unwrap();
    wait_gone(pid).await;
    assert!(!config.paths.api_socket.exists(), "socket left behind");
    assert_all_accepted(&fake);

    // Restore into a new process (paused), check state carried over, resume.
    // The TAP was renamed meanwhile (as after a host reboot): the load
    // overrides the snapshot's TAP with the config's.
    let mut config = config;
    config.nic.as_mut().unwrap().tap = "lob-alice-2".into();
    let restored = vmm
        .restore(&config, &snapshot, false)
        .await
        .expect("restore");
    let fake2 = launcher.fakes()[1].clone();
    assert_all_accepted(&fake2);
    let load = fake2.requests().last().unwrap().clone();
    assert_eq!(load.path, "/snapshot/load");
    assert_eq!(
        load.body,
        json!({
            "snapshot_path": snapshot.state_file.display().to_string(),
            "mem_backend": {
                "backend_type": "File",
                "backend_path": snapshot.memory_file.as_ref().unwrap().display().to_string(),
            },
            "resume_vm": false,
            "network_overrides": [{"iface_id": "eth0", "host_dev_name": "lob-alice-2"}],
        })
    );
    let full = ApiClient::new("vm-alice", &config.paths.api_socket, GENEROUS)
        .get("/vm/config")
        .await
        .unwrap();
    assert_eq!(
        full["network-interfaces"][0]["host_dev_name"],
        "lob-alice-2"
    );
    assert_eq!(restored.status().await.unwrap(), VmStatus::Paused);
    assert!(ticks > 0, "the guest made progress before the snapshot");
    assert_eq!(fake2.ticks(), ticks, "guest state did not carry over");
    restored.resume().await.unwrap();
    assert_eq!(restored.status().await.unwrap(), VmStatus::Running);

    // Graceful shutdown: Ctrl+Alt+Del, the VMM exits by itself.
    let pid = restored.identity().pid;
    let outcome = restored.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(outcome, ShutdownOutcome::Graceful(ExitStatus::Code(0)));
    assert_eq!(fake2.phase(), Phase::Exited);
    wait_gone(pid).await;
    assert!(!config.paths.api_socket.exists(), "socket left behind");
    assert_all_accepted(&fake2);
}

#[tokio::test]
async fn fake_rejects_what_firecracker_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let socket = dir.path().join("fake.sock");
    let fake = FakeFirecracker::start(
        &socket,
        FakeOptions {
            id: "t".into(),
            ..FakeOptions::default()
        },
    )
    .unwrap();
    let client = ApiClient::new("t", &socket, GENEROUS);
    let put = |path: &str, body: serde_json::Value| ApiCall {
        method: lobster_core::vmm::firecracker::plan::Method::Put,
        path: path.into(),
        body: Some(body),
    };
    let patch = |path: &str, body: serde_json::Value| ApiCall {
        method: lobster_core::vmm::firecracker::plan::Method::Patch,
        path: path.into(),
        body: Some(body),
    };
    let fault = |r: Result<serde_json::Value, VmmError>| match r.unwrap_err() {
        VmmError::Api {
            status: 400,
            fault_message,
            ..
        } => fault_message,
        other => panic!("expected a 400, got {other}"),
    };
    let kernel = config.kernel.display().to_string();

    // Body shape per the spec.
    let f = fault(
        client
            .send(&put(
                "/machine-config",
                json!({"vcpu_count": 2, "mem_size_mib": 256, "turbo": true}),
            ))
            .await,
    );
    assert!(f.contains("unknown field `turbo`"), "{f}");
    let f = fault(
        client
            .send(&put(
                "/machine-config",
                json!({"vcpu_count": 64, "mem_size_mib": 256}),
            ))
            .await,
    );
    assert!(f.contains("maximum 32"), "{f}");
    let f = fault(
        client
            .send(&put("/boot-source", json!({"boot_args": "x"})))
            .await,
    );
    assert!(f.contains("missing field `kernel_image_path`"), "{f}");
    let f = fault(client.send(&put("/logger", json!({"level": "Loud"}))).await);
    assert!(f.contains("unknown variant `Loud`"), "{f}");
    let f = fault(client.send(&put("/nowhere", json!({}))).await);
    assert!(f.contains("Invalid request method and/or path"), "{f}");
    // `Off` is a valid level (the YAML 1.1 trap would reject it).
    client
        .send(&put("/logger", json!({"level": "Off"})))
        .await
        .unwrap();

    // Order and state.
    let f = fault(
        client
            .send(&put("/actions", json!({"action_type": "InstanceStart"})))
            .await,
    );
    assert!(f.contains("without kernel configuration"), "{f}");
    let f = fault(client.send(&patch("/vm", json!({"state": "Paused"}))).await);
    assert!(f.contains("before starting"), "{f}");
    let f = fault(
        client
            .send(&put(
                "/boot-source",
                json!({"kernel_image_path": "/no/such/vmlinux"}),
            ))
            .await,
    );
    assert!(f.contains("kernel file cannot be opened"), "{f}");
    let f = fault(client.send(&put("/drives/a", json!({"drive_id": "b", "is_root_device": false, "path_on_host": kernel, "is_read_only": true}))).await);
    assert!(f.contains("does not match"), "{f}");
    client
        .send(&put("/boot-source", json!({"kernel_image_path": kernel})))
        .await
        .unwrap();
    let f = fault(client.send(&put("/snapshot/load", json!({"snapshot_path": "/s", "mem_backend": {"backend_type": "File", "backend_path": "/m"}}))).await);
    assert!(
        f.contains("after configuring boot-specific resources"),
        "{f}"
    );
    client
        .send(&put("/actions", json!({"action_type": "InstanceStart"})))
        .await
        .unwrap();
    let f = fault(
        client
            .send(&put(
                "/machine-config",
                json!({"vcpu_count": 1, "mem_size_mib": 128}),
            ))
            .await,
    );
    assert!(f.contains("after starting"), "{f}");
    let f = fault(
        client
            .send(&put(
                "/snapshot/create",
                json!({"snapshot_path": "/tmp/x", "mem_file_path": "/tmp/y"}),
            ))
            .await,
    );
    assert!(f.contains("not paused"), "{f}");
    // Firecracker flushes on request even without a metrics file.
    client
        .send(&put("/actions", json!({"action_type": "FlushMetrics"})))
        .await
        .unwrap();
    assert_eq!(fake.phase(), Phase::Running);
}

/// A snapshot of alice's VM, written through the backend.
async fn take_snapshot(vmm: &FirecrackerVmm, config: &VmConfig) -> Snapshot {
    let vm = vmm.launch(config).await.expect("launch");
    vm.pause().await.unwrap();
    let snapshot = vm.snapshot().await.expect("snapshot");
    vm.kill().await.unwrap();
    snapshot
}

#[tokio::test]
async fn a_failed_snapshot_load_is_fatal_as_in_firecracker() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let launcher = FakeLauncher::new(FakeOptions::default());
    let vmm = backend_with(Arc::new(launcher.clone()), Features::default());
    let snapshot = take_snapshot(&vmm, &config).await;
    std::fs::write(&snapshot.state_file, "not a snapshot").unwrap();
    let err = vmm.restore(&config, &snapshot, true).await.unwrap_err();
    let text = err.to_string();
    // Firecracker's own fault message reaches the user.
    assert!(
        text.contains("PUT /snapshot/load")
            && text.contains("Load snapshot error: Failed to restore from snapshot"),
        "{text}"
    );
    let fake = launcher.fakes()[1].clone();
    assert_eq!(fake.phase(), Phase::Exited);
    // Logger before the load is fine (not a boot-specific resource).
    assert_eq!(fake.requests()[0].path, "/logger");
    assert_eq!(fake.requests()[0].status, 204);
    assert!(!config.paths.api_socket.exists());
}

#[tokio::test]
async fn a_missing_snapshot_file_is_refused_before_any_process_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let launcher = FakeLauncher::new(FakeOptions::default());
    let vmm = backend_with(Arc::new(launcher.clone()), Features::default());
    let snapshot = take_snapshot(&vmm, &config).await;
    let memory = snapshot.memory_file.clone().unwrap();
    let elsewhere = dir.path().join("elsewhere.mem");
    for (file, planted_link) in [
        (&snapshot.state_file, false),
        (&memory, false),
        (&memory, true),
    ] {
        let kept = dir.path().join("kept");
        std::fs::rename(file, &kept).unwrap();
        if planted_link {
            std::fs::rename(&kept, &elsewhere).unwrap();
            std::os::unix::fs::symlink(&elsewhere, file).unwrap();
        }
        let err = vmm.restore(&config, &snapshot, true).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("cannot restore") && text.contains(&file.display().to_string()),
            "{text}"
        );
        if !planted_link {
            assert_eq!(lobster_core::Error::from(err).kind(), ErrorKind::NotFound);
            std::fs::rename(&kept, file).unwrap();
        }
        assert_eq!(
            launcher.launches().len(),
            1,
            "a VMM started for a missing snapshot"
        );
    }
    // A snapshot of the other backend is refused too.
    let qemu = Snapshot {
        backend: BackendKind::Qemu,
        ..snapshot
    };
    let err = vmm.restore(&config, &qemu, true).await.unwrap_err();
    assert!(matches!(err, VmmError::InvalidState { .. }), "{err}");
    assert_eq!(launcher.launches().len(), 1);
}

/// The snapshot's files are private (0600) and owned by `owner` (the
/// tenant under the jailer; else whoever ran Firecracker), and the memory
/// file keeps only its data: zero pages take no disk.
fn assert_private_and_sparse(snapshot: &Snapshot, owner: Option<(u32, u32)>) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let memory = snapshot.memory_file.as_ref().unwrap();
    for file in [&snapshot.state_file, memory] {
        let meta = std::fs::symlink_metadata(file).unwrap();
        assert!(meta.is_file(), "{}", file.display());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{}",
            file.display()
        );
        if let Some(owner) = owner {
            assert_eq!((meta.uid(), meta.gid()), owner, "{}", file.display());
        }
    }
    let content = std::fs::read(memory).unwrap();
    assert_eq!(content.len(), FAKE_MEMORY_BYTES);
    assert!(content.starts_with(MEMORY_MARK));
    let allocated = std::fs::metadata(memory).unwrap().blocks() * 512;
    assert!(
        allocated < (FAKE_MEMORY_BYTES / 4) as u64,
        "memory file not sparse: {allocated} bytes on disk"
    );
}

/// What a jailed VM's chroot held when its VMM was started.
#[derive(Debug, Clone, Default)]
struct ChrootSeen(Arc<std::sync::Mutex<Vec<(String, std::fs::Metadata)>>>);

/// Notes the chroot's files as the (fake) jailer starts, then launches.
#[derive(Debug)]
struct Inspecting {
    inner: FakeLauncher,
    root: std::path::PathBuf,
    seen: ChrootSeen,
}

impl Launcher for Inspecting {
    fn launch(
        &self,
        vm_id: &str,
        program: &Path,
        args: &[String],
        console: lobster_core::vmm::ConsoleLog,
    ) -> lobster_core::vmm::Result<lobster_core::vmm::VmProcess> {
        let mut seen = self.seen.0.lock().unwrap();
        seen.clear();
        for entry in std::fs::read_dir(&self.root).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            seen.push((name, std::fs::symlink_metadata(entry.path()).unwrap()));
        }
        self.inner.launch(vm_id, program, args, console)
    }
}

/// Suspend and resume under the (fake) jailer, with the VM's images and
/// its chroot in `dir`, and its snapshot directory in `snapshots`: the snapshot leaves the chroot for the tenant's snapshot
/// directory (0600, the tenant's), nothing of it stays in the jail, and a
/// restore places it in a new chroot (a hard link on the same filesystem,
/// else a sparse copy; the tenant's, 0600) and loads it by chroot path.
async fn jailed_suspend_resume(dir: &Path, snapshots: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut config = config(dir);
    config.paths.snapshot_dir = snapshots.join("alice");
    let chroot_base = &dir.join("jail");
    let me = std::fs::metadata(dir).unwrap();
    let owner = (me.uid(), me.gid());
    let mut jail = Jail::for_tenant(
        &Default::default(),
        BackendKind::Firecracker,
        "t0-fc-jail",
        owner.0,
        2,
        1024,
        None,
    );
    jail.gid = owner.1;
    jail.chroot_base = chroot_base.to_path_buf();
    jail.cgroup_parent = format!("lobster-t0-{}", std::process::id()).into();
    config.jail = Some(jail);
    let jail_dir = chroot_base.join("firecracker/t0-fc-jail");
    let root = jail_dir.join("root");
    let fakes = FakeLauncher::new(FakeOptions::default());
    let seen = ChrootSeen::default();
    let launcher = Inspecting {
        inner: fakes.clone(),
        root: root.clone(),
        seen: seen.clone(),
    };
    let vmm = backend_with(Arc::new(launcher), Features::default());

    let vm = vmm.launch(&config).await.expect("jailed launch");
    let fake = fakes.fakes()[0].clone();
    assert_eq!(fakes.launches()[0][0], "/usr/local/bin/jailer");
    vm.pause().await.unwrap();
    let snapshot = vm.snapshot().await.expect("snapshot");
    assert_eq!(
        fake.requests().last().unwrap().body,
        json!({"snapshot_path": "/snapshot.state", "mem_file_path": "/snapshot.mem", "snapshot_type": "Full"})
    );
    assert_all_accepted(&fake);
    assert!(snapshot.state_file.starts_with(&config.paths.snapshot_dir));
    assert_private_and_sparse(&snapshot, Some(owner));
    let left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snapshot"))
        .collect();
    assert!(
        left.is_empty(),
        "snapshot files left in the chroot: {left:?}"
    );
    let ticks = fake.ticks();
    vm.kill().await.unwrap();
    assert!(!jail_dir.exists(), "chroot left behind");

    config.nic.as_mut().unwrap().tap = "lob-alice-2".into();
    let restored = vmm
        .restore(&config, &snapshot, false)
        .await
        .expect("jailed restore");
    let fake2 = fakes.fakes()[1].clone();
    assert_all_accepted(&fake2);
    assert_eq!(
        fake2.requests().last().unwrap().body,
        json!({
            "snapshot_path": "/snapshot.state",
            "mem_backend": {"backend_type": "File", "backend_path": "/snapshot.mem"},
            "resume_vm": false,
            "network_overrides": [{"iface_id": "eth0", "host_dev_name": "lob-alice-2"}],
        })
    );
    assert_eq!(fake2.ticks(), ticks, "guest state did not carry over");
    assert_eq!(restored.status().await.unwrap(), VmStatus::Paused);
    let same_fs = me.dev() == std::fs::metadata(snapshots).unwrap().dev();
    let placed = seen.0.lock().unwrap().clone();
    for (name, source) in [
        ("snapshot.state", &snapshot.state_file),
        ("snapshot.mem", snapshot.memory_file.as_ref().unwrap()),
    ] {
        let (_, meta) = placed
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} was not in the chroot: {placed:?}"));
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        assert_eq!((meta.uid(), meta.gid()), owner, "{name}");
        let linked = meta.ino() == std::fs::metadata(source).unwrap().ino();
        assert_eq!(
            linked, same_fs,
            "{name}: a hard link exactly when on the same filesystem"
        );
        if !same_fs {
            assert!(
                meta.blocks() * 512 < (FAKE_MEMORY_BYTES / 4) as u64,
                "{name}: copy not sparse"
            );
        }
    }
    // Loaded: the chroot keeps no copy of the guest's memory under a name.
    assert!(!root.join("snapshot.mem").exists() && !root.join("snapshot.state").exists());
    restored.kill().await.unwrap();
    assert!(!jail_dir.exists(), "chroot left behind");
}

#[tokio::test]
async fn jailed_suspend_and_resume_move_the_snapshot_out_of_and_into_the_chroot() {
    let dir = tempfile::tempdir().unwrap();
    jailed_suspend_resume(dir.path(), &dir.path().join("snapshots")).await;
}

#[tokio::test]
async fn jailed_suspend_and_resume_copy_sparsely_across_filesystems() {
    let dir = tempfile::tempdir().unwrap();
    // /dev/shm (tmpfs) is another filesystem than the temporary directory
    // on a usual host; where it is not, this repeats the test above.
    let other = tempfile::tempdir_in("/dev/shm").unwrap();
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata(dir.path()).unwrap().dev()
        == std::fs::metadata(other.path()).unwrap().dev()
    {
        eprintln!("NOTE: /dev/shm shares the temporary directory's filesystem: no copy across filesystems tested");
    }
    jailed_suspend_resume(other.path(), dir.path()).await;
}

#[tokio::test]
async fn every_request_body_the_backend_can_send_is_valid_per_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let features = all_features();
    let files =
        lobster_core::vmm::firecracker::plan::FileNames::direct(&config, &features).unwrap();
    let mut calls =
        lobster_core::vmm::firecracker::plan::launch(&config, &files, &features).unwrap();
    calls.extend(lobster_core::vmm::firecracker::plan::restore(
        &config, &files, &features, "/s", "/m", true,
    ));
    calls.push(lobster_core::vmm::firecracker::plan::snapshot("/s", "/m"));
    for state in [api::VmState::Paused, api::VmState::Resumed] {
        calls.push(lobster_core::vmm::firecracker::plan::set_state(state));
    }
    for action in [
        api::ActionType::InstanceStart,
        api::ActionType::SendCtrlAltDel,
        api::ActionType::FlushMetrics,
    ] {
        calls.push(lobster_core::vmm::firecracker::plan::action(action));
    }
    // The load as the jailer path sends it, and one without a NIC.
    let mut no_nic = config.clone();
    no_nic.nic = None;
    calls.extend(lobster_core::vmm::firecracker::plan::restore(
        &no_nic,
        &files,
        &features,
        "/snapshot.state",
        "/snapshot.mem",
        false,
    ));
    for spec in Spec::supported() {
        for call in &calls {
            let op = spec
                .operation(call.method.as_str(), &call.path)
                .unwrap_or_else(|| {
                    panic!(
                        "{} {} is not in spec {}",
                        call.method,
                        call.path,
                        spec.version()
                    )
                });
            let schema = op.body_schema.expect("body schema");
            spec.validate(&schema, call.body.as_ref().unwrap())
                .unwrap_or_else(|e| {
                    panic!(
                        "{} {} (spec {}): {e}",
                        call.method,
                        call.path,
                        spec.version()
                    )
                });
        }
    }
}

#[tokio::test]
async fn fault_message_reaches_the_user_and_launch_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.drives[1].path = dir.path().join("missing-overlay.ext4");
    let launcher = FakeLauncher::new(FakeOptions::default());
    let vmm = backend_with(Arc::new(launcher.clone()), Features::default());
    let err = vmm.launch(&config).await.unwrap_err();
    let text = lobster_core::Error::from(err).chain();
    assert!(
        text.contains("firecracker rejected PUT /drives/overlay (400)"),
        "{text}"
    );
    assert!(text.contains("missing-overlay.ext4"), "{text}");
    // Rolled back: nothing listens, no socket file remains.
    assert!(!config.paths.api_socket.exists());
    let fake = launcher.fakes()[0].clone();
    assert_eq!(fake.requests().last().unwrap().status, 400);
    assert!(
        !fake.requests().iter().any(|r| r.path == "/actions"),
        "started despite the failure"
    );
}

#[derive(Debug)]
struct Script(&'static str);

impl Launcher for Script {
    fn launch(
        &self,
        vm_id: &str,
        _program: &Path,
        _args: &[String],
        console: lobster_core::vmm::ConsoleLog,
    ) -> lobster_core::vmm::Result<lobster_core::vmm::VmProcess> {
        let mut command = std::process::Command::new("sh");
        command.args(["-c", self.0]);
        lobster_core::vmm::VmProcess::spawn(vm_id, command, console)
    }
}

#[tokio::test]
async fn process_exiting_early_is_reported_with_its_status_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let vmm = backend_with(
        Arc::new(Script(
            "echo 'Error: Kvm(Error(19)) no /dev/kvm' >&2; exit 1",
        )),
        Features::default(),
    );
    let err = vmm.launch(&config).await.unwrap_err();
    assert!(
        matches!(
            err,
            VmmError::Exited {
                status: ExitStatus::Code(1),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("no /dev/kvm"), "{err}");
}

#[tokio::test]
async fn socket_that_never_appears_is_a_timeout_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let mut settings = FirecrackerSettings::from_config(&Default::default());
    settings.launcher = Arc::new(Script("exec sleep 30"));
    settings.ready_timeout = Duration::from_millis(300);
    let err = FirecrackerVmm::new(settings)
        .launch(&config)
        .await
        .unwrap_err();
    let socket = config.paths.api_socket.display().to_string();
    assert!(err.to_string().contains(&socket), "{err}");
    assert_eq!(lobster_core::Error::from(err).kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn slow_api_call_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let launcher = FakeLauncher::new(FakeOptions {
        delay: Some(("/boot-source".into(), Duration::from_secs(3))),
        ..FakeOptions::default()
    });
    let mut settings = FirecrackerSettings::from_config(&Default::default());
    settings.launcher = Arc::new(launcher);
    settings.call_timeout = Duration::from_millis(300);
    let err = FirecrackerVmm::new(settings)
        .launch(&config)
        .await
        .unwrap_err();
    assert!(matches!(err, VmmError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("PUT /boot-source"), "{err}");
}

#[tokio::test]
async fn a_taken_socket_is_refused_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let _other = FakeFirecracker::start(&config.paths.api_socket, FakeOptions::default()).unwrap();
    let launcher = FakeLauncher::new(FakeOptions::default());
    let err = backend_with(Arc::new(launcher.clone()), Features::default())
        .launch(&config)
        .await
        .unwrap_err();
    assert!(matches!(err, VmmError::InvalidState { .. }), "{err}");
    assert!(launcher.launches().is_empty());
}

#[tokio::test]
async fn fake_answers_match_the_response_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let launcher = FakeLauncher::new(FakeOptions::default());
    let vmm = backend_with(Arc::new(launcher), all_features());
    let vm = vmm.launch(&config).await.expect("launch");
    let spec = Spec::pinned();
    let client = ApiClient::new("vm-alice", &config.paths.api_socket, GENEROUS);
    for (path, definition) in [
        ("/", "InstanceInfo"),
        ("/vm/config", "FullVmConfiguration"),
        ("/machine-config", "MachineConfiguration"),
        ("/version", "FirecrackerVersion"),
    ] {
        let answer = client.get(path).await.unwrap();
        let schema = json!({ "$ref": format!("#/definitions/{definition}") });
        spec.validate(&schema, &answer)
            .unwrap_or_else(|e| panic!("GET {path} answered outside the spec: {e}\n{answer}"));
    }
    vm.kill().await.unwrap();
}
