//! T1 (root): a wake socket is reachable by root and Caddy's group only:
//! its directory `root:<gid>` 0710, the socket `root:<gid>` 0660, checked
//! by connecting as `nobody`; a wake directory that is not root's own real
//! directory is refused.

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

use std::os::unix::fs::MetadataExt;

use lobster_core::error::{Classify, ErrorKind};
use lobster_core::proxy::bind_wake_socket;
use lobster_testkit::caddy::{connect_as_nobody, reachable_tempdir};

/// A group that is not nobody's (65534).
const CADDY_GID: u32 = 4242;

#[test]
#[ignore = "t1: needs root"]
fn a_wake_socket_admits_root_and_caddy_s_group_only() {
    let root = reachable_tempdir();
    let dir = root.path().join("wake");
    let path = dir.join("0a1b2c3d.sock");
    let listener = bind_wake_socket(&path, CADDY_GID).unwrap();
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, CADDY_GID, 0o710)
    );
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, CADDY_GID, 0o660)
    );
    assert_eq!(connect_as_nobody(&path), "EACCES");
    std::os::unix::net::UnixStream::connect(&path).expect("root connects");
    drop(listener);

    // A stale socket is replaced; the positive control: with nobody's group
    // the same check connects, so EACCES above is the mode's doing.
    let _listener = bind_wake_socket(&path, 65534).unwrap();
    assert_eq!(connect_as_nobody(&path), "connected");
}

#[test]
#[ignore = "t1: needs root"]
fn a_wake_directory_that_is_a_symlink_or_someone_else_s_is_refused() {
    let root = reachable_tempdir();
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let link = root.path().join("wake");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let err = bind_wake_socket(&link.join("a.sock"), CADDY_GID).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(!elsewhere.join("a.sock").exists());

    let theirs = root.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let err = bind_wake_socket(&theirs.join("a.sock"), CADDY_GID).unwrap_err();
    assert!(err.to_string().contains("owned by uid 0"), "{err}");
    assert!(!theirs.join("a.sock").exists());
}

#[tokio::test]
#[ignore = "t1: needs root"]
async fn the_watchdog_s_listeners_follow_the_registry_and_splice_a_woken_request() {
    use lobster_core::health::{EventRecord, EventSink, WakeListeners};
    use lobster_core::store::TenantStatus;
    use lobster_core::tenant::plan;
    use lobster_testkit::rig::FakeHost;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // Guests on loopback (a stand-in gateway can listen there); Caddy's
    // user is `nobody` here.
    let rig = FakeHost::new(|c| {
        c.network.pool = "127.77.0.0/24".into();
        c.proxy.user = "nobody".into();
    })
    .await;
    rig.spawn("alice").await;
    let suspend = |status| {
        rig.store()
            .modify("alice", move |r| r.status = status)
            .unwrap()
    };
    let record = suspend(TenantStatus::Suspended);
    let events = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let log = events.clone();
    let sink: EventSink =
        Arc::new(move |e: &EventRecord| log.lock().unwrap().push(serde_json::to_value(e).unwrap()));
    let listeners = WakeListeners::new(rig.host.as_ref().clone(), sink);
    listeners.sync(&rig.store().read().unwrap());
    let socket = plan::wake_socket(rig.config(), &record);
    assert_eq!(listeners.listening(), ["alice"]);
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert_eq!((meta.gid(), meta.mode() & 0o777), (65534, 0o660));

    // A stand-in gateway at the guest's address; the tenant is resumed by
    // someone else just before the request (the wake finds it running).
    let gateway = tokio::net::TcpListener::bind(plan::gateway(rig.config(), &record))
        .await
        .unwrap();
    tokio::spawn(async move {
        let (mut s, _) = gateway.accept().await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(b"pong:").await.unwrap();
        s.write_all(&buf).await.unwrap();
    });
    suspend(TenantStatus::Running);
    let mut client = tokio::net::UnixStream::connect(&socket).await.unwrap();
    client.write_all(b"ping!").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        client.read_to_string(&mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(answer, "pong:ping!");
    let kinds = events.lock().unwrap().clone();
    assert_eq!(kinds[0]["event"], "wake_start", "{kinds:?}");
    assert_eq!(kinds[0]["trigger"], "request", "{kinds:?}");
    assert_eq!(kinds[1]["event"], "woken", "{kinds:?}");
    assert_eq!(kinds[1]["tenant"], "alice", "{kinds:?}");

    // Running: the next sync stops listening and removes the socket; a
    // new suspend gets a new listener.
    listeners.sync(&rig.store().read().unwrap());
    assert!(listeners.listening().is_empty());
    assert!(!socket.exists());
    suspend(TenantStatus::Suspended);
    listeners.sync(&rig.store().read().unwrap());
    assert_eq!(listeners.listening(), ["alice"]);
    assert!(socket.exists());
    listeners.stop();
    assert!(!socket.exists());
}
