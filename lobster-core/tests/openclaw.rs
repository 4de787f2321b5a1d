//! T0: `configure --set/--get` and `devices` run OpenClaw's CLI for real,
//! through the real agent of the test kit's booted fake host and the
//! minimal image's OpenClaw stand-in (`guest/images/openclaw-standin.sh`),
//! which is also the tenant's default workload (its gateway): a set is
//! read back and restarts the gateway with a new pid that logs the value;
//! owned keys and bad ids are refused before anything runs in the guest;
//! pairing requests are listed, approved and rejected; refusals leave a
//! suspended tenant suspended, and no hold is left behind.

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

use std::time::Duration;

use lobster_core::agent::{ExecEvent, LogSource, WorkloadState};
use lobster_core::error::ErrorKind;
use lobster_core::store::TenantStatus;
use lobster_core::tenant::openclaw::{DevicesOp, DevicesReport};
use lobster_core::tenant::ExecRequest;
use lobster_core::TenantSpec;
use lobster_testkit::poll::until_async;
use lobster_testkit::rig::{FakeHost, GuestSide};

/// A booted fake host on `127.<net>.0.0/24` whose guests have the
/// stand-in, with `alice` spawned on the default (OpenClaw) workload and
/// its gateway running; the stand-in's state directory.
async fn rig_with_gateway(net: u8) -> (FakeHost, std::path::PathBuf) {
    let rig = FakeHost::build(GuestSide::Booted { net }, |config| {
        config.network.gateway_port = 30000 + u16::from(net);
    })
    .await;
    let state = rig.install_openclaw_standin();
    let spec = TenantSpec::builder("alice").build().unwrap();
    rig.host.spawn(spec).await.unwrap();
    wait_for_gateway(&rig, &state).await;
    (rig, state)
}

/// Waits until `alice`'s workload runs and is the stand-in's gateway.
async fn wait_for_gateway(rig: &FakeHost, state: &std::path::Path) {
    until_async("the stand-in gateway", Duration::from_secs(20), || async {
        let status = rig.host.agent("alice").await.ok()?.status().await.ok()?;
        let pid = status.pid?.to_string();
        let up = status.state == WorkloadState::Running
            && std::fs::read_to_string(state.join("standin-gateway.pid"))
                .is_ok_and(|p| p.starts_with(&format!("{pid} ")));
        up.then_some(())
    })
    .await;
}

/// Runs `body` on a runtime of two workers whose threads, and the one
/// driving `body`, have 16 MiB of stack: the debug build's futures of a
/// spawn, a resume and an exec nested in one test overflow the default.
fn on_a_large_stack<F: std::future::Future<Output = ()> + 'static>(body: fn() -> F) {
    const STACK: usize = 16 << 20;
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_stack_size(STACK)
                .enable_all()
                .build()
                .unwrap()
                .block_on(body())
        })
        .unwrap()
        .join()
        .unwrap();
}

/// Runs `openclaw ARGS` in the guest (the test's own way in, e.g. the
/// stand-in's `devices simulate-request` hook) and returns its stdout.
async fn openclaw(rig: &FakeHost, args: &[&str]) -> String {
    let port = rig.config().network.gateway_port.to_string();
    let argv = std::iter::once("openclaw").chain(args.iter().copied());
    let request = ExecRequest::builder(argv)
        .env("OPENCLAW_GATEWAY_PORT", port)
        .build()
        .unwrap();
    let (input, mut output) = rig.host.exec("alice", &request).await.unwrap().split();
    input.close_stdin().await.unwrap();
    let mut stdout = Vec::new();
    while let Some(event) = output.next().await.unwrap() {
        match event {
            ExecEvent::Stdout(bytes) => stdout.extend_from_slice(&bytes),
            ExecEvent::Stderr(bytes) => panic!("stderr: {}", String::from_utf8_lossy(&bytes)),
            ExecEvent::Exit(exit) => assert_eq!(exit.code, Some(0), "{args:?}"),
        }
    }
    String::from_utf8(stdout).unwrap()
}

#[test]
fn config_set_then_get_returns_the_value_and_the_gateway_restarts_with_it() {
    on_a_large_stack(config_set_then_get)
}

async fn config_set_then_get() {
    // Running: the rig's guests cannot load a snapshot (a woken tenant
    // is T2 `lobster-cli t2_exec`'s; the refusals below run on a suspended one).
    let (rig, state) = rig_with_gateway(171).await;

    let key = "agents.defaults.heartbeat.every";
    let err = rig.host.config_get("alice", key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("valid but unset"), "{err}");
    wait_for_gateway(&rig, &state).await;
    let agent = rig.host.agent("alice").await.unwrap();
    let pid = agent.status().await.unwrap().pid;

    let settings = [
        (key.to_owned(), "2h".to_owned()),
        ("logging.level".to_owned(), "debug".to_owned()),
    ];
    let report = rig.host.config_set("alice", &settings).await.unwrap();
    assert!(report.restarted);
    assert_eq!(report.keys, [key, "logging.level"]);
    assert!(report.pid_before.is_some() && report.pid_after.is_some());
    assert_ne!(report.pid_before, report.pid_after);
    assert_eq!(report.pid_before, pid);
    let status = agent.status().await.unwrap();
    assert_eq!(status.state, WorkloadState::Running);
    assert_eq!(status.pid, report.pid_after);

    assert_eq!(rig.host.config_get("alice", key).await.unwrap(), "2h");
    assert_eq!(
        rig.host.config_get("alice", "logging.level").await.unwrap(),
        "debug"
    );
    // The restarted gateway started with the value (the stand-in logs its
    // config when its gateway starts).
    let new_pid = report.pid_after.unwrap();
    until_async("the new gateway's log", Duration::from_secs(10), || async {
        let log = rig.host.logs("alice", LogSource::Workload, 50).await.ok()?;
        let start = log
            .iter()
            .rposition(|l| l.contains(&format!("stand-in gateway pid {new_pid} ")))?;
        log[start..]
            .iter()
            .any(|l| l.contains("openclaw stand-in config: agents.defaults.heartbeat.every=2h"))
            .then_some(())
    })
    .await;
    assert!(state.join("standin-config").exists());
    until_async("every hold released", Duration::from_secs(10), || async {
        rig.holds("alice").await.is_empty().then_some(())
    })
    .await;
    rig.host.evict("alice").await.unwrap();
}

#[test]
fn owned_keys_and_bad_input_are_refused_before_the_guest_is_touched() {
    on_a_large_stack(refusals)
}

async fn refusals() {
    let (rig, state) = rig_with_gateway(172).await;
    rig.host.suspend("alice").await.unwrap();

    for (key, value, want) in [
        ("gateway.port", "9001", "gateway.port"),
        ("gateway.auth.token", "x", "gateway.auth"),
        ("gateway", "{}", "gateway"),
        ("a[0]", "x", "dot path"),
        ("ui.name", "two\nlines", "one line"),
    ] {
        let settings = [
            ("logging.level".to_owned(), "debug".to_owned()),
            (key.to_owned(), value.to_owned()),
        ];
        let err = rig.host.config_set("alice", &settings).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains(want), "{key}: {err}");
    }
    for id in ["", "--url=ws://evil", "a b"] {
        let op = DevicesOp::Approve(id.into());
        let err = rig.host.devices("alice", &op).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    }
    let err = rig.host.config_get("alice", "a..b").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    // Nothing ran: the tenant was not even resumed, and no setting (not
    // even the valid first one) was written.
    assert_eq!(rig.record("alice").status, TenantStatus::Suspended);
    assert!(!state.join("standin-config").exists());

    // An unknown tenant.
    let err = rig.host.config_get("bob", "a.b").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    rig.host.evict("alice").await.unwrap();
}

#[test]
fn devices_are_listed_approved_and_rejected_through_openclaw() {
    on_a_large_stack(devices)
}

async fn devices() {
    let (rig, _state) = rig_with_gateway(173).await;
    let empty = rig.host.devices("alice", &DevicesOp::List).await.unwrap();
    assert_eq!(
        empty,
        DevicesReport::List {
            pending: vec![],
            paired: vec![]
        }
    );

    let phone = openclaw(&rig, &["devices", "simulate-request", "phone"]).await;
    let tablet = openclaw(&rig, &["devices", "simulate-request", "tablet"]).await;
    let (phone, tablet) = (phone.trim().to_owned(), tablet.trim().to_owned());
    let DevicesReport::List { pending, paired } =
        rig.host.devices("alice", &DevicesOp::List).await.unwrap()
    else {
        panic!("not a list")
    };
    assert!(paired.is_empty());
    let mut ids: Vec<&str> = pending.iter().map(|d| d.request_id.as_str()).collect();
    ids.sort_unstable();
    let mut want = vec![phone.as_str(), tablet.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    let phone_entry = pending.iter().find(|d| d.request_id == phone).unwrap();
    assert_eq!(phone_entry.display_name.as_deref(), Some("phone"));

    let approved = rig
        .host
        .devices("alice", &DevicesOp::Approve(phone.clone()))
        .await
        .unwrap();
    let DevicesReport::Approved {
        request_id,
        device_id,
    } = approved
    else {
        panic!("not an approval: {approved:?}")
    };
    assert_eq!(request_id, phone);
    assert_eq!(device_id, phone_entry.device_id);
    let rejected = rig
        .host
        .devices("alice", &DevicesOp::Reject(tablet.clone()))
        .await
        .unwrap();
    assert!(
        matches!(&rejected, DevicesReport::Rejected { request_id, .. } if *request_id == tablet),
        "{rejected:?}"
    );

    let DevicesReport::List { pending, paired } =
        rig.host.devices("alice", &DevicesOp::List).await.unwrap()
    else {
        panic!("not a list")
    };
    assert!(pending.is_empty(), "{pending:?}");
    assert_eq!(paired.len(), 1);
    assert_eq!(paired[0].device_id, phone_entry.device_id);
    assert_eq!(paired[0].display_name.as_deref(), Some("phone"));

    // Approving again: no such pending request.
    let err = rig
        .host
        .devices("alice", &DevicesOp::Approve(phone))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().contains("No pending device request"),
        "{err}"
    );

    // With the gateway down, OpenClaw cannot reach it: a guest failure
    // carrying its message.
    rig.host
        .agent("alice")
        .await
        .unwrap()
        .stop(Duration::from_secs(2))
        .await
        .unwrap();
    let err = rig
        .host
        .devices("alice", &DevicesOp::List)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::GuestFailure, "{err}");
    assert!(err.to_string().contains("Gateway not reachable"), "{err}");
    until_async("every hold released", Duration::from_secs(10), || async {
        rig.holds("alice").await.is_empty().then_some(())
    })
    .await;
    rig.host.evict("alice").await.unwrap();
}
