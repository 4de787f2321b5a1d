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

/// The ids of the holds the tenant's guest has.
async fn holds(rig: &FakeHost, name: &str) -> Vec<String> {
    let agent = rig.host.agent(name).await.unwrap();
    agent
        .holds()
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_a_log_follow_hold_the_guest_while_they_run() {
    let rig = FakeHost::booting(167).await;
    rig.host.spawn(sleeping_spec("alice")).await.unwrap();

    rig.host.logs("alice", LogSource::Agent, 10).await.unwrap();
    assert_eq!(
        holds(&rig, "alice").await,
        Vec::<String>::new(),
        "released after logs"
    );

    let follow = rig
        .host
        .follow_logs("alice", LogSource::Agent, 1)
        .await
        .unwrap();
    let held = holds(&rig, "alice").await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(held[0].starts_with("lobster-logs-follow-"), "{held:?}");
    drop(follow);
    until_async(
        "the follow's hold to be released",
        Duration::from_secs(10),
        || async { holds(&rig, "alice").await.is_empty().then_some(()) },
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
async fn exec_resumes_a_suspended_tenant_and_holds_it_for_the_session() {
    use lobster_core::agent::ExecEvent;
    use lobster_core::error::ErrorKind;
    use lobster_core::tenant::ExecRequest;

    let rig = FakeHost::booting(169).await;
    rig.host.spawn(sleeping_spec("alice")).await.unwrap();
    rig.host.suspend("alice").await.unwrap();

    let request = ExecRequest::builder(["true"]).build().unwrap();
    let started = rig.host.exec("alice", &request).await;
    assert_eq!(rig.record("alice").status, TenantStatus::Running);
    match started {
        // An agent that runs commands: held while the session lives.
        Ok(session) => {
            let held = holds(&rig, "alice").await;
            assert!(
                held.len() == 1 && held[0].starts_with("lobster-exec-"),
                "{held:?}"
            );
            let (_input, mut output) = session.split();
            while let Some(event) = output.next().await.unwrap() {
                if let ExecEvent::Exit(exit) = event {
                    assert_eq!(lobster_core::agent::exit_status(&exit), 0);
                }
            }
            drop(output);
        }
        // An agent built before `exec.start`: refused after the resume.
        Err(e) => assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}"),
    }
    until_async(
        "the exec's hold to be released",
        Duration::from_secs(10),
        || async { holds(&rig, "alice").await.is_empty().then_some(()) },
    )
    .await;
}
