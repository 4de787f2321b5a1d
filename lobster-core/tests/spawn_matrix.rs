//! T0: a spawn over fakes, failed at each of its steps in turn.
//!
//! The host is the test kit's `FakeHost::booting`: real registry and
//! overlay disks, fake TAPs, firewall and proxy, the Firecracker backend
//! against the spec-checked fake Firecracker, and the real agent booting in
//! this process. Each case injects one failure into a host already running
//! a bystander tenant and asserts that the spawn fails at that step, rolls
//! back exactly the steps that completed, and leaves registry, TAPs, rules,
//! routes, files and processes as they were; then the same name spawns
//! cleanly (and evicts back to the same host).

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lobster_core::agent::{LogSource, WorkloadState};
use lobster_core::context::Services;
use lobster_core::network::NetworkOps;
use lobster_core::proxy::RouteOps;
use lobster_core::store::TenantStatus;
use lobster_core::tenant::progress::{Phase, ProgressEvent, ProgressSink};
use lobster_core::tenant::{TenantError, TenantSpec, TenantSpecBuilder};
use lobster_core::{Error, ErrorKind, Host};
use lobster_testkit::rig::{FakeHost, HostState};

/// What every tenant here runs: prints its secret's presence, then sleeps.
fn spec(name: &str) -> TenantSpecBuilder {
    TenantSpec::builder(name).command(vec![
        "/bin/sh".into(),
        "-c".into(),
        "echo \"key=$API_KEY\"; exec sleep 3600".into(),
    ])
}

/// A rig on `127.<net>.0.0/24` running the tenant `bystander`, and the host
/// as that left it.
async fn with_bystander(net: u8) -> (FakeHost, HostState) {
    let rig = FakeHost::booting(net).await;
    rig.host
        .spawn(spec("bystander").build().unwrap())
        .await
        .expect("bystander spawns");
    let baseline = rig.state().await;
    (rig, baseline)
}

/// Runs `inject` when `step` starts (the progress sink is called before
/// the step's work).
fn when_starting(step: &'static str, inject: impl Fn() + Send + Sync + 'static) -> ProgressSink {
    Arc::new(move |e: &ProgressEvent| {
        if e.step == step && e.phase == Phase::Started {
            inject();
        }
    })
}

/// Asserts `err` is a spawn failure at `step` whose rollback undid all
/// `undone` completed steps; returns the original error.
fn failed_at(err: Error, step: &str, undone: usize) -> Error {
    match err {
        Error::Tenant(TenantError::SpawnFailed {
            step: failed,
            rollback,
            source,
            ..
        }) => {
            assert_eq!(failed, step, "failed at the wrong step: {}", source.chain());
            assert_eq!(
                rollback,
                format!("rolled back {undone}/{undone} steps"),
                "{}",
                source.chain()
            );
            *source
        }
        other => panic!("not a spawn failure: {}", other.chain()),
    }
}

/// After a failure: the host is exactly as before, and `alice` now spawns
/// cleanly, runs, and evicts back to the same host.
async fn then_alice_spawns_and_evicts(rig: &FakeHost, baseline: &HostState, context: &str) {
    rig.assert_state(baseline, context).await;
    let alice = rig
        .host
        .spawn(spec("alice").secret("API_KEY", "sk-later").build().unwrap())
        .await
        .unwrap_or_else(|e| panic!("{context}: the retry failed: {}", e.chain()));
    assert_eq!(alice.status(), TenantStatus::Running);
    let status = rig
        .host
        .agent("alice")
        .await
        .unwrap()
        .status()
        .await
        .unwrap();
    assert_eq!(status.state, WorkloadState::Running, "{context}");
    rig.host.evict("alice").await.unwrap();
    rig.assert_state(baseline, &format!("{context}, after the retry's evict"))
        .await;
}

fn overlay_of(rig: &FakeHost, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(&rig.config().paths.overlays_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{name}-")) && n.ends_with(".ext4"))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_spawn_runs_every_step_over_the_contract_server_and_evicts_to_nothing() {
    let rig = FakeHost::booting(101).await;
    let empty = rig.state().await;
    let steps = Arc::new(Mutex::new(Vec::new()));
    let sink: ProgressSink = {
        let steps = steps.clone();
        Arc::new(move |e: &ProgressEvent| {
            if matches!(e.phase, Phase::Done { .. }) {
                steps.lock().unwrap().push(e.step);
            }
        })
    };
    let tenant = rig
        .host
        .spawn_with_progress(
            spec("alice").secret("API_KEY", "sk-first").build().unwrap(),
            Some(sink),
        )
        .await
        .expect("spawn");
    assert_eq!(
        *steps.lock().unwrap(),
        [
            "allocate", "overlay", "token", "network", "firewall", "vm", "agent", "secrets",
            "workload", "route"
        ]
    );
    let record = rig.record("alice");
    assert_eq!(record.status, TenantStatus::Running);
    assert_eq!(record.owner, None);
    assert_eq!(
        record.vm.unwrap().backend,
        lobster_core::vmm::BackendKind::Firecracker
    );
    assert_eq!(
        tenant.guest_ip(),
        "127.101.0.2".parse::<std::net::Ipv4Addr>().unwrap()
    );

    // Every request the backend sent was valid per the spec and accepted.
    let fake = rig.launcher.fake.fakes()[0].clone();
    for r in fake.requests() {
        assert!(
            r.status < 300,
            "{} {} rejected: {:?}",
            r.method,
            r.path,
            r.fault
        );
    }
    assert_eq!(
        fake.phase(),
        lobster_core::vmm::firecracker::fake::Phase::Running
    );
    // The guest found its token on its disk, the secret reached the
    // workload's environment, and the host side is in place.
    assert_eq!(rig.guest("alice").token, record.agent_token);
    let agent = rig.host.agent("alice").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lines = agent.logs(LogSource::Workload, 50).await.unwrap().lines;
        if lines.iter().any(|l| l.contains("key=sk-first")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "workload log: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let net = lobster_core::tenant::plan::tenant_net(&record).unwrap();
    assert!(rig.network.check(&net).await.unwrap().is_ok());
    assert!(rig.firewall.check_tenant(&net).unwrap().is_empty());
    let routes = rig.routes.list_routes().await.unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].upstreams, ["127.101.0.2:9000"]);

    rig.host.evict("alice").await.unwrap();
    // Nothing is left but the registry, the blank template overlays are
    // copied from, and the firewall's base chains with no tenant chain.
    let mut after = empty.clone();
    after.files.extend(
        [
            "registry.json",
            "registry.lock",
            "overlays/.templates/blank-64m.ext4",
        ]
        .map(PathBuf::from),
    );
    after.rules = rig.firewall.current().unwrap();
    let chains: Vec<&String> = after.rules.tables.values().flat_map(|t| t.keys()).collect();
    assert!(
        chains.iter().all(|c| !c.starts_with("LOB-")),
        "tenant chains left: {chains:?}"
    );
    rig.assert_state(&after, "after evict").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocate_fails_when_the_pool_is_full_or_the_name_taken_and_touches_nothing() {
    let (rig, baseline) = with_bystander(102).await;
    // The same registry seen through a host whose port range holds one slot.
    let mut full = rig.config().clone();
    full.network.host_port_base = 65535;
    let full = Host::with_services(full, Services::clone(&rig.services)).unwrap();
    let err = full
        .spawn(spec("alice").build().unwrap())
        .await
        .unwrap_err();
    assert_eq!(failed_at(err, "allocate", 0).kind(), ErrorKind::Exhausted);
    rig.assert_state(&baseline, "pool full").await;

    let err = rig
        .host
        .spawn(spec("bystander").build().unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        failed_at(err, "allocate", 0).kind(),
        ErrorKind::AlreadyExists
    );
    rig.assert_state(&baseline, "name taken: the tenant that has it is untouched")
        .await;
    then_alice_spawns_and_evicts(&rig, &baseline, "allocate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_failure_releases_the_allocation() {
    let (rig, baseline) = with_bystander(103).await;
    // The blank template of a new size cannot be made: its temporary file's
    // name is taken by a directory.
    let blocker = rig
        .config()
        .paths
        .overlays_dir
        .join(format!(".templates/blank-72m.{}.tmp", std::process::id()));
    std::fs::create_dir_all(blocker.join("x")).unwrap();
    let err = rig
        .host
        .spawn(spec("alice").overlay_size_mib(72).build().unwrap())
        .await
        .unwrap_err();
    std::fs::remove_dir_all(&blocker).unwrap();
    failed_at(err, "overlay", 1);
    rig.assert_state(&baseline, "template file taken").await;

    // The template is made but cannot be moved into place (its name is
    // taken by a directory): its temporary file must not stay behind.
    let taken = rig
        .config()
        .paths
        .overlays_dir
        .join(".templates/blank-80m.ext4");
    std::fs::create_dir_all(taken.join("x")).unwrap();
    let err = rig
        .host
        .spawn(spec("alice").overlay_size_mib(80).build().unwrap())
        .await
        .unwrap_err();
    std::fs::remove_dir_all(&taken).unwrap();
    failed_at(err, "overlay", 1);
    then_alice_spawns_and_evicts(&rig, &baseline, "overlay").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_refused_when_the_disk_cannot_hold_it_counting_the_other_tenants() {
    let (rig, baseline) = with_bystander(112).await;
    let overlays = rig.config().paths.overlays_dir.clone();
    let df = std::process::Command::new("df")
        .args(["--output=avail", "-BM"])
        .arg(&overlays)
        .output()
        .unwrap();
    let free_mib: u64 = String::from_utf8_lossy(&df.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().trim_end_matches('M').parse().ok())
        .expect("df prints the free MiB");
    // Room for 5% of the free space, overlays of a third of that: the first
    // fits, the second (counting the first's full size, not the little it
    // has written) does not.
    let big = u32::try_from(free_mib / 30).unwrap().min(1_048_576);
    let mut tight = rig.config().clone();
    tight.storage.overlay_overcommit_percent = 5;
    let tight = Host::with_services(tight, Services::clone(&rig.services)).unwrap();
    let huge = spec("alice").overlay_size_mib(1_048_576).build().unwrap();
    let err = tight.spawn(huge).await.unwrap_err();
    let err = failed_at(err, "overlay", 1);
    assert_eq!(err.kind(), ErrorKind::Exhausted);
    let text = err.chain().to_string();
    assert!(
        text.contains("no room for a 1048576 MiB overlay")
            && text.contains("the 1 existing overlays")
            && text.contains("overcommit of 5%"),
        "{text}"
    );
    rig.assert_state(&baseline, "no room for one huge overlay")
        .await;

    let first = tight
        .spawn(spec("first").overlay_size_mib(big).build().unwrap())
        .await
        .unwrap_or_else(|e| panic!("{big} MiB of {free_mib} MiB free fits: {}", e.chain()));
    let err = tight
        .spawn(spec("alice").overlay_size_mib(big).build().unwrap())
        .await
        .unwrap_err();
    let text = failed_at(err, "overlay", 1).chain().to_string();
    eprintln!("refused: {text}");
    assert!(text.contains("the 2 existing overlays"), "{text}");
    assert!(overlay_of(&rig, "alice").is_none(), "nothing half-made");
    tight.evict(first.name()).await.unwrap();
    std::fs::remove_file(overlays.join(format!(".templates/blank-{big}m.ext4"))).unwrap();
    then_alice_spawns_and_evicts(&rig, &baseline, "overlay room").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_failure_removes_the_overlay_disk() {
    let (rig, baseline) = with_bystander(104).await;
    // The disk is not ext4 when the token is written into it.
    let overlays = rig.config().paths.overlays_dir.clone();
    let sink = when_starting("token", move || {
        let disk = std::fs::read_dir(&overlays)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().contains("/alice-"))
            .expect("alice's disk exists when the token step starts");
        std::fs::write(disk, b"garbage").unwrap();
    });
    let err = rig
        .host
        .spawn_with_progress(spec("alice").build().unwrap(), Some(sink))
        .await
        .unwrap_err();
    failed_at(err, "token", 2);
    assert_eq!(overlay_of(&rig, "alice"), None);
    then_alice_spawns_and_evicts(&rig, &baseline, "token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_failure_removes_disk_and_allocation() {
    let (rig, baseline) = with_bystander(105).await;
    rig.network.fail_next("ensure");
    let err = rig
        .host
        .spawn(spec("alice").build().unwrap())
        .await
        .unwrap_err();
    failed_at(err, "network", 2);
    then_alice_spawns_and_evicts(&rig, &baseline, "network").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_failure_removes_the_tap() {
    let (rig, baseline) = with_bystander(106).await;
    rig.faults.arm("firewall");
    let err = rig
        .host
        .spawn(spec("alice").build().unwrap())
        .await
        .unwrap_err();
    failed_at(err, "firewall", 3);
    then_alice_spawns_and_evicts(&rig, &baseline, "firewall").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_failure_firecracker_refusing_the_kernel_removes_rules_tap_and_disk() {
    let (rig, baseline) = with_bystander(107).await;
    // The kernel vanishes between the image check and the VM's boot source:
    // the spec-checked fake refuses `PUT /boot-source` as Firecracker does.
    let kernel = rig.config().paths.kernel.clone();
    let aside = kernel.with_extension("aside");
    let sink = {
        let (kernel, aside) = (kernel.clone(), aside.clone());
        when_starting("vm", move || std::fs::rename(&kernel, &aside).unwrap())
    };
    let err = rig
        .host
        .spawn_with_progress(spec("alice").build().unwrap(), Some(sink))
        .await
        .unwrap_err();
    std::fs::rename(&aside, &kernel).unwrap();
    let source = failed_at(err, "vm", 5);
    assert!(
        source.chain().contains("The kernel file cannot be opened"),
        "{}",
        source.chain()
    );
    let launched = rig.launcher.fake.fakes();
    let refused = launched.last().unwrap().requests();
    assert!(
        refused
            .iter()
            .any(|r| r.path == "/boot-source" && r.status == 400),
        "{refused:?}"
    );
    then_alice_spawns_and_evicts(&rig, &baseline, "vm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_failure_a_guest_dying_at_boot_is_reported_as_such_and_rolled_back() {
    let (rig, baseline) = with_bystander(108).await;
    rig.faults.arm("boot");
    let started = std::time::Instant::now();
    let err = rig
        .host
        .spawn(spec("alice").build().unwrap())
        .await
        .unwrap_err();
    let source = failed_at(err, "agent", 6);
    assert_eq!(source.kind(), ErrorKind::GuestFailure, "{}", source.chain());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the VMM's death ends the wait at once, not the agent timeout"
    );
    then_alice_spawns_and_evicts(&rig, &baseline, "agent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_failure_stops_the_vm_and_never_echoes_the_value() {
    let (rig, baseline) = with_bystander(109).await;
    // The agent refuses a value over its 64 KiB limit.
    let value = format!("sk-SECRET-{}", "x".repeat(70 * 1024));
    let err = rig
        .host
        .spawn(spec("alice").secret("API_KEY", &value).build().unwrap())
        .await
        .unwrap_err();
    let message = format!("{} {err:?}", err.chain());
    let source = failed_at(err, "secrets", 6);
    assert!(
        source.chain().contains("64 KiB"),
        "the agent's reason reaches the caller: {}",
        source.chain()
    );
    assert!(!message.contains("sk-SECRET"), "a secret value was echoed");
    then_alice_spawns_and_evicts(&rig, &baseline, "secrets").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_failure_stops_the_vm() {
    let (rig, baseline) = with_bystander(110).await;
    let err = rig
        .host
        .spawn(spec("alice").command(vec![String::new()]).build().unwrap())
        .await
        .unwrap_err();
    let source = failed_at(err, "workload", 6);
    assert!(
        source.chain().contains("command[0] must not be empty"),
        "{}",
        source.chain()
    );
    then_alice_spawns_and_evicts(&rig, &baseline, "workload").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_failure_stops_the_vm_and_everything_before() {
    let (rig, baseline) = with_bystander(111).await;
    rig.routes.set_down(true);
    let err = rig
        .host
        .spawn(spec("alice").build().unwrap())
        .await
        .unwrap_err();
    rig.routes.set_down(false);
    let source = failed_at(err, "route", 6);
    assert_eq!(source.kind(), ErrorKind::HostFailure, "{}", source.chain());
    then_alice_spawns_and_evicts(&rig, &baseline, "route").await;
}
