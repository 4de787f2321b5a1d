//! T0: `Host::copy_to_guest` and `Host::copy_from_guest` over the test
//! kit's booted fake host, whose guests run the real agent in this process
//! (so a "guest path" is a path of this machine, in a temp dir): a tree
//! with modes and a link round-trips byte for byte, the guest is held only
//! while the copy runs, the size cap refuses a copy and leaves nothing, and
//! refusals name the field or path. Against a scripted agent: the host
//! holds its own cap on a get, and an error frame mid-get leaves nothing. (Resuming a suspended tenant is the
//! gate `exec` goes through, tested in `guest_commands.rs`.)

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use lobster_agent_proto::archive::UnpackOptions;
use lobster_core::agent::Agent;
use lobster_core::error::{Classify, ErrorKind};
use lobster_core::tenant::HostOwner;
use lobster_testkit::fake_agent::{ErrorCode, Frame, RemoteError, ReplyBody, ScriptedAgent, Step};
use lobster_testkit::poll::until_async;
use lobster_testkit::registry::sleeping_spec;
use lobster_testkit::rig::{FakeHost, GuestSide};
use lobster_testkit::tree::{listing, names, tree, TREE_BYTES, TREE_ENTRIES};
use serde_json::json;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// A booted rig with `alice` running and `copy.max_bytes` = `cap`.
async fn with_alice(net: u8, cap: u64) -> FakeHost {
    let rig = FakeHost::build(GuestSide::Booted { net }, |c| c.copy.max_bytes = cap).await;
    rig.host.spawn(sleeping_spec("alice")).await.unwrap();
    rig
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_round_trips_with_its_modes() {
    let rig = with_alice(181, 1 << 20).await;
    let host_side = tempfile::tempdir().unwrap();
    let guest_side = tempfile::tempdir().unwrap();
    let src = tree(host_side.path());

    let guest_dst = guest_side.path().join("d");
    let put = rig
        .host
        .copy_to_guest("alice", &src, guest_dst.to_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        (put.entries, put.bytes),
        (TREE_ENTRIES, TREE_BYTES),
        "{put:?}"
    );
    assert_eq!(listing(&guest_dst), listing(&src));
    let agent = rig.host.agent("alice").await.unwrap();
    assert!(
        agent.holds().await.unwrap().is_empty(),
        "the hold is released"
    );

    // Into an existing host directory: placed inside, as `back/d`.
    let back = host_side.path().join("back");
    fs::create_dir(&back).unwrap();
    let got = rig
        .host
        .copy_from_guest(
            "alice",
            guest_dst.to_str().unwrap(),
            &back,
            HostOwner::Invoker,
        )
        .await
        .unwrap();
    assert_eq!(got, put);
    assert_eq!(names(&back), ["d"]);
    assert_eq!(listing(&back.join("d")), listing(&src));
    assert!(
        agent.holds().await.unwrap().is_empty(),
        "the hold is released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_file_becomes_the_destination_path() {
    let rig = with_alice(182, 1 << 20).await;
    let guest_side = tempfile::tempdir().unwrap();
    let host_side = tempfile::tempdir().unwrap();
    let file = guest_side.path().join("notes.txt");
    fs::write(&file, b"hello").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();

    let dst = host_side.path().join("renamed");
    let got = rig
        .host
        .copy_from_guest("alice", file.to_str().unwrap(), &dst, HostOwner::Invoker)
        .await
        .unwrap();
    assert_eq!((got.entries, got.bytes), (1, 5));
    assert_eq!(fs::read(&dst).unwrap(), b"hello");
    assert_eq!(
        fs::metadata(&dst).unwrap().permissions().mode() & 0o7777,
        0o640
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_past_the_cap_is_refused_naming_it_and_leaves_nothing() {
    let rig = with_alice(183, 1000).await;
    let host_side = tempfile::tempdir().unwrap();
    let guest_side = tempfile::tempdir().unwrap();
    let big = host_side.path().join("big");
    fs::write(&big, vec![7u8; 5000]).unwrap();

    let dst = guest_side.path().join("big");
    let err = rig
        .host
        .copy_to_guest("alice", &big, dst.to_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let text = err.chain();
    assert!(
        text.contains("1000") && text.contains("nothing was placed"),
        "{text}"
    );
    // The agent removes its staging directory once it sees the host go.
    until_async(
        "the guest's staging directory to be removed",
        Duration::from_secs(10),
        || async { names(guest_side.path()).is_empty().then_some(()) },
    )
    .await;

    // The other way: the guest's file is too big for the host's cap.
    fs::write(guest_side.path().join("big"), vec![7u8; 5000]).unwrap();
    let back = host_side.path().join("back");
    fs::create_dir(&back).unwrap();
    let err = rig
        .host
        .copy_from_guest("alice", dst.to_str().unwrap(), &back, HostOwner::Invoker)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let text = err.chain();
    assert!(
        text.contains("1000") && text.contains("nothing was placed"),
        "{text}"
    );
    assert!(names(&back).is_empty(), "nothing placed, no staging");
    let agent = rig.host.agent("alice").await.unwrap();
    assert!(
        agent.holds().await.unwrap().is_empty(),
        "the hold is released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_path_or_field() {
    let rig = with_alice(184, 1 << 20).await;
    let host_side = tempfile::tempdir().unwrap();
    let file = host_side.path().join("f");
    fs::write(&file, b"x").unwrap();

    let err = rig
        .host
        .copy_to_guest("alice", &file, "/proc/x")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.chain().contains("/proc/x"), "{}", err.chain());

    let err = rig
        .host
        .copy_to_guest("alice", &file, "root/x")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("`dst`"), "{err}");

    // A non-empty directory in the way (`guest/f` holds something).
    let guest_side = tempfile::tempdir().unwrap();
    fs::create_dir_all(guest_side.path().join("f/inside")).unwrap();
    let err = rig
        .host
        .copy_to_guest("alice", &file, guest_side.path().to_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    assert_eq!(names(&guest_side.path().join("f")), ["inside"]);

    let missing = host_side.path().join("missing");
    let err = rig
        .host
        .copy_to_guest("alice", &missing, "/tmp/x")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    let guest_missing = host_side.path().join("not-in-the-guest");
    let err = rig
        .host
        .copy_from_guest(
            "alice",
            guest_missing.to_str().unwrap(),
            host_side.path(),
            HostOwner::Invoker,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    let err = rig
        .host
        .copy_from_guest("bob", "/etc/hostname", host_side.path(), HostOwner::Invoker)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("bob"), "{err}");
    assert_eq!(names(host_side.path()), ["f"]);
}

/// The archive of a `size`-byte file named `big`.
fn archive_of_big(size: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("big"), vec![7u8; size]).unwrap();
    let mut archive = Vec::new();
    lobster_agent_proto::archive::pack(&dir.path().join("big"), u64::MAX, &mut archive).unwrap();
    archive
}

#[tokio::test]
async fn the_host_holds_its_cap_on_a_get_whatever_the_agent_sends() {
    let scripted = ScriptedAgent::start(
        TOKEN,
        vec![
            Step::Reply(ReplyBody::Ok(json!({}))),
            Step::Send(Frame::Stdout(archive_of_big(5000))),
            Step::Send(Frame::End(json!({ "entries": 1, "bytes": 5000 }))),
        ],
    );
    let agent = Agent::new(scripted.addr(), scripted.addr(), TOKEN);
    let dst = tempfile::tempdir().unwrap();
    let err = agent
        .get_path("/srv/big", dst.path(), 1000, UnpackOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("1000") && text.contains("nothing was placed"),
        "{text}"
    );
    assert!(names(dst.path()).is_empty(), "nothing placed, no staging");
}

#[tokio::test]
async fn an_error_frame_mid_get_leaves_nothing() {
    let archive = archive_of_big(3000);
    let scripted = ScriptedAgent::start(
        TOKEN,
        vec![
            Step::Reply(ReplyBody::Ok(json!({}))),
            Step::Send(Frame::Stdout(archive[..1024].to_vec())),
            Step::Send(Frame::Error(RemoteError {
                code: ErrorCode::Internal,
                message: "reading /srv/big".into(),
            })),
        ],
    );
    let agent = Agent::new(scripted.addr(), scripted.addr(), TOKEN);
    let dst = tempfile::tempdir().unwrap();
    let err = agent
        .get_path("/srv/big", dst.path(), 1 << 20, UnpackOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::GuestFailure, "{err}");
    assert!(err.to_string().contains("reading /srv/big"), "{err}");
    assert!(names(dst.path()).is_empty(), "nothing placed, no staging");
    assert!(scripted.finish().violations.is_empty());
}

#[tokio::test]
async fn a_hostile_archive_from_the_guest_is_a_guest_failure_and_leaves_nothing() {
    // The archive of `big` with its one entry renamed `../big`.
    let mut archive = archive_of_big(100);
    archive[..100].fill(0);
    archive[..6].copy_from_slice(b"../big");
    archive[148..156].fill(b' ');
    let sum: u32 = archive[..512].iter().map(|&b| u32::from(b)).sum();
    archive[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let scripted = ScriptedAgent::start(
        TOKEN,
        vec![
            Step::Reply(ReplyBody::Ok(json!({}))),
            Step::Send(Frame::Stdout(archive)),
            Step::Send(Frame::End(json!({ "entries": 1, "bytes": 100 }))),
        ],
    );
    let agent = Agent::new(scripted.addr(), scripted.addr(), TOKEN);
    let root = tempfile::tempdir().unwrap();
    let dst = root.path().join("inner");
    fs::create_dir(&dst).unwrap();
    let err = agent
        .get_path("/srv/big", &dst, 1 << 20, UnpackOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::GuestFailure, "{err}");
    assert!(err.to_string().contains("../big"), "{err}");
    assert_eq!(names(root.path()), ["inner"]);
    assert!(names(&dst).is_empty(), "nothing placed, no staging");
}
