//! T0: `Host::rotate_tokens` over the test kit's booted fake host (the
//! Firecracker backend against the fake API server, the real agent in this
//! process): new agent and gateway tokens, the old agent token refused by
//! the guest afterwards, and a rotation interrupted halfway finished by the
//! next one without locking the operator out.

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

use lobster_core::agent::Agent;
use lobster_core::store::{TenantRecord, TenantStatus};
use lobster_core::tenant::plan;
use lobster_core::{Error, ErrorKind};
use lobster_testkit::registry::sleeping_spec;
use lobster_testkit::rig::FakeHost;

fn agent(rig: &FakeHost, record: &TenantRecord, token: &str) -> Agent {
    let (rpc, health) = plan::agent_endpoints(rig.config(), record);
    Agent::new(rpc, health, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_replaces_both_tokens_and_the_guest_refuses_the_old_one() {
    let rig = FakeHost::booting(141).await;
    rig.host.spawn(sleeping_spec("alice")).await.unwrap();
    let before = rig.record("alice");

    let tenant = rig.host.rotate_tokens("alice").await.unwrap();
    let after = rig.record("alice");
    assert_ne!(after.agent_token, before.agent_token);
    assert_ne!(after.gateway_token, before.gateway_token);
    assert_eq!(tenant.gateway_token(), after.gateway_token);
    assert_eq!(after.agent_token_next, None);
    assert_eq!(after.status, TenantStatus::Running);

    let old = agent(&rig, &after, &before.agent_token)
        .hello()
        .await
        .unwrap_err();
    assert_eq!(Error::from(old).kind(), ErrorKind::PermissionDenied);
    agent(&rig, &after, &after.agent_token)
        .health()
        .await
        .unwrap();
    // What `lobsterd token` prints is the new gateway token.
    assert_eq!(rig.host.token("alice").await.unwrap(), after.gateway_token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rotation_is_finished_by_the_next_one() {
    let rig = FakeHost::booting(142).await;
    rig.host.spawn(sleeping_spec("alice")).await.unwrap();
    let first = rig.record("alice");

    // Killed after the guest took the new token, before the registry made
    // it current: the guest accepts only the recorded `next`.
    agent(&rig, &first, &first.agent_token)
        .rotate_token("taken-by-the-guest")
        .await
        .unwrap();
    rig.store()
        .modify("alice", |r| {
            r.agent_token_next = Some("taken-by-the-guest".into())
        })
        .unwrap();
    // Meanwhile the host's clients fall back to the recorded next token:
    // the health checks pass.
    rig.host
        .agent("alice")
        .await
        .unwrap()
        .health()
        .await
        .unwrap();
    let molt = rig.host.molt(Some("alice")).await.unwrap();
    assert!(molt[0].healthy, "{molt:?}");
    rig.host.rotate_tokens("alice").await.unwrap();
    let second = rig.record("alice");
    assert_eq!(second.agent_token_next, None);
    assert!(![&first.agent_token, "taken-by-the-guest"].contains(&second.agent_token.as_str()));
    agent(&rig, &second, &second.agent_token)
        .health()
        .await
        .unwrap();

    // Killed before the guest was told: the recorded `next` is dropped.
    rig.store()
        .modify("alice", |r| r.agent_token_next = Some("never-sent".into()))
        .unwrap();
    rig.host.rotate_tokens("alice").await.unwrap();
    let third = rig.record("alice");
    assert_eq!(third.agent_token_next, None);
    agent(&rig, &third, &third.agent_token)
        .health()
        .await
        .unwrap();
    for stale in [&second.agent_token, "never-sent"] {
        let err = agent(&rig, &third, stale).hello().await.unwrap_err();
        assert_eq!(Error::from(err).kind(), ErrorKind::PermissionDenied);
    }

    // Only a running tenant rotates.
    rig.store()
        .modify("alice", |r| r.status = TenantStatus::Failed)
        .unwrap();
    let err = rig.host.rotate_tokens("alice").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
}
