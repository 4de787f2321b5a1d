//! T0: commands that need the guest hold it awake while they run, over the
//! test kit's booted fake host (the real agent in this process): `logs`
//! holds it for the read, `follow_logs` for as long as the stream lives,
//! each hold released afterwards; `molt` without a name leaves a suspended
//! tenant alone, and `molt NAME` of a suspended tenant goes through resume,
//! as `exec` does, holding the guest for as long as the session lives.

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

use std::time::Duration;

use lobster_core::agent::LogSource;
use lobster_core::store::TenantStatus;
use lobster_testkit::poll::until_async;
use lobster_testkit::registry::sleeping_spec;
use lobster_testkit::rig::FakeHost;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_a_log_follow_hold_the_guest_while_they_run() {
    let rig = FakeHost::booting(167).await;
    rig.host.spawn(sleeping_spec("alice")).await.unwrap();

    rig.host.logs("alice", LogSource::Agent, 10).await.unwrap();
    assert_eq!(
        rig.holds("alice").await,
        Vec::<String>::new(),
        "released after logs"
    );

    let follow = rig
        .host
        .follow_logs("alice", LogSource::Agent, 1)
        .await
        .unwrap();
    let held = rig.holds("alice").await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(held[0].starts_with("lobster-logs-follow-"), "{held:?}");
    drop(follow);
    until_async(
        "the follow's hold to be released",
        Duration::from_secs(10),
        || async { rig.holds("alice").await.is_empty().then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn molt_without_a_name_leaves_a_suspended_tenant_alone_and_molt_name_resumes_it() {
    let rig = FakeHost::booting(168).await;
    rig.host.spawn(sleeping_spec("alice")).await.unwrap();
    rig.host.suspend("alice").await.unwrap();

    let reports = rig.host.molt(None).await.unwrap();
    assert!(reports.iter().all(|r| r.tenant != "alice"), "{reports:?}");
    assert_eq!(rig.record("alice").status, TenantStatus::Suspended);

    // `molt NAME` resumes it first (the fake guests load no snapshot: a
    // cold boot), then checks it: never a health check of a suspended tenant.
    let reports = rig.host.molt(Some("alice")).await.unwrap();
    assert_eq!(rig.record("alice").status, TenantStatus::Running);
    assert_eq!(reports.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_holds_the_guest_for_the_session_and_a_missing_command_is_127() {
    use lobster_core::agent::ExecEvent;
    use lobster_core::error::ErrorKind;
    use lobster_core::tenant::ExecRequest;

    let rig = FakeHost::booting(169).await;
    rig.host.spawn(sleeping_spec("alice")).await.unwrap();
    // (A suspended tenant woken by exec: T2 `lobster-cli t2_exec`, with a
    // real snapshot; the rig's guests cannot load one.)
    let request = ExecRequest::builder(["sh", "-c", "echo from-the-guest; exit 3"])
        .build()
        .unwrap();
    let session = rig.host.exec("alice", &request).await.unwrap();
    assert_eq!(rig.record("alice").status, TenantStatus::Running);
    // Held while the session lives.
    let held = rig.holds("alice").await;
    assert!(
        held.len() == 1 && held[0].starts_with("lobster-exec-"),
        "{held:?}"
    );
    let (_input, mut output) = session.split();
    let (mut stdout, mut status) = (Vec::new(), None);
    while let Some(event) = output.next().await.unwrap() {
        match event {
            ExecEvent::Stdout(bytes) => stdout.extend_from_slice(&bytes),
            ExecEvent::Stderr(bytes) => panic!("stderr: {}", String::from_utf8_lossy(&bytes)),
            ExecEvent::Exit(exit) => status = Some(lobster_core::agent::exit_status(&exit)),
        }
    }
    drop(output);
    assert_eq!(stdout, b"from-the-guest\n");
    assert_eq!(status, Some(3));
    until_async(
        "the exec's hold to be released",
        Duration::from_secs(10),
        || async { rig.holds("alice").await.is_empty().then_some(()) },
    )
    .await;

    // A command the guest does not have: refused before it starts, with a
    // shell's status for front ends, and no hold left behind.
    let missing = ExecRequest::builder(["no-such-command"]).build().unwrap();
    let err = rig.host.exec("alice", &missing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(err.exec_status(), Some(127), "{err}");
    assert!(
        err.chain().contains("command not found: no-such-command"),
        "{}",
        err.chain()
    );
    assert!(rig.holds("alice").await.is_empty(), "a refused exec's hold");
}
