//! Contract tests: lobster's Firecracker backend against a fake Firecracker
//! that validates every request against the pinned v1.16.1 API spec and
//! keeps Firecracker's ordering rules. Full launch, pause, snapshot,
//! restore and shutdown flows; error paths give clear errors.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lobster_core::vmm::firecracker::fake::{FakeFirecracker, FakeLauncher, FakeOptions, Phase};
use lobster_core::vmm::firecracker::plan::{ApiCall, Features};
use lobster_core::vmm::firecracker::spec::Spec;
use lobster_core::vmm::firecracker::{
    api, client::ApiClient, FirecrackerSettings, FirecrackerVmm, Launcher,
};
use lobster_core::vmm::{
    ExitStatus, RateLimiter, ShutdownOutcome, TokenBucket, VmConfig, VmStatus, Vmm, VmmError,
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
    let restored = vmm
        .restore(&config, &snapshot, false)
        .await
        .expect("restore");
    let fake2 = launcher.fakes()[1].clone();
    assert_all_accepted(&fake2);
    assert_eq!(fake2.requests().last().unwrap().path, "/snapshot/load");
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

#[tokio::test]
async fn a_failed_snapshot_load_is_fatal_as_in_firecracker() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    std::fs::create_dir_all(&config.paths.snapshot_dir).unwrap();
    let snapshot = lobster_core::vmm::Snapshot {
        backend: lobster_core::vmm::BackendKind::Firecracker,
        state_file: config.paths.snapshot_dir.join("missing.state"),
        memory_file: Some(config.paths.snapshot_dir.join("missing.mem")),
    };
    let launcher = FakeLauncher::new(FakeOptions::default());
    let vmm = backend_with(Arc::new(launcher.clone()), Features::default());
    let err = vmm.restore(&config, &snapshot, true).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("PUT /snapshot/load") && text.contains("missing.mem"),
        "{text}"
    );
    let fake = launcher.fakes()[0].clone();
    assert_eq!(fake.phase(), Phase::Exited);
    // Logger before the load is fine (not a boot-specific resource).
    assert_eq!(fake.requests()[0].path, "/logger");
    assert_eq!(fake.requests()[0].status, 204);
    assert!(!config.paths.api_socket.exists());
}

#[tokio::test]
async fn every_request_body_the_backend_can_send_is_valid_per_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let spec = Spec::pinned();
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
    for call in calls {
        let op = spec
            .operation(call.method.as_str(), &call.path)
            .unwrap_or_else(|| panic!("{} {} is not in the spec", call.method, call.path));
        let schema = op.body_schema.expect("body schema");
        spec.validate(&schema, call.body.as_ref().unwrap())
            .unwrap_or_else(|e| panic!("{} {}: {e}", call.method, call.path));
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
