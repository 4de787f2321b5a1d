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
    listeners.sync(&rig.store().read().unwrap()).await;
    let socket = plan::wake_socket(rig.config(), &record);
    assert_eq!(listeners.listening(), ["alice"]);
    // The suspend left the route to the guest: the listener's start puts
    // the planned one (to the wake socket).
    use lobster_core::proxy::RouteOps;
    let routes = rig.routes.list_routes().await.unwrap();
    assert_eq!(
        routes[0].upstreams,
        [format!("unix/{}", socket.display())],
        "{routes:?}"
    );
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
    listeners.sync(&rig.store().read().unwrap()).await;
    assert!(listeners.listening().is_empty());
    assert!(!socket.exists());
    suspend(TenantStatus::Suspended);
    listeners.sync(&rig.store().read().unwrap()).await;
    assert_eq!(listeners.listening(), ["alice"]);
    assert!(socket.exists());
    listeners.stop();
    assert!(!socket.exists());
}

/// With the real Caddy lobster runs (its own user, no supplementary
/// groups): a route to a wake socket reaches the listener, which wakes once
/// and splices the request to the backend; Caddy's answer is the backend's.
#[test]
#[ignore = "t1: needs root"]
fn caddy_s_user_reaches_a_wake_socket_and_gets_the_woken_backend_s_reply() {
    lobster_testkit::netns::require(&["caddy", "curl", "useradd", "iptables-restore"]);
    lobster_testkit::netns::in_netns(
        "caddy_s_user_reaches_a_wake_socket_and_gets_the_woken_backend_s_reply",
        caddy_body,
    );
}

fn caddy_body(_ctx: &lobster_testkit::netns::Ctx) {
    use lobster_core::config::{Config, PathsConfig};
    use lobster_core::machine::{init, setup, InitOptions};
    use lobster_core::proxy::{
        caddy_ids, Caddy, ProxySettings, ReportFn, TenantRoute, Upstream, WakeFn, WakeLimits,
        WakeListener, WakeReport,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = reachable_tempdir();
    let mut config = Config {
        paths: PathsConfig::under(&dir.path().join("state")),
        ..Config::default()
    };
    config.paths.wake_dir = dir.path().join("wake");
    config.proxy.caddy_dir = dir.path().join("caddy");
    config.proxy.admin_address = dir.path().join("caddy/admin.sock").display().to_string();
    config.proxy.listen = vec![":80".into()];
    config.proxy.automatic_https = false;
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, config.to_json_pretty()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    init(&config_path, &InitOptions::default()).expect("init");
    let report = rt.block_on(setup(&config)).expect("host setup");
    let caddy_pid = report.caddy_pid.expect("setup started caddy itself");
    let _stop_caddy = KillOnDrop(caddy_pid);

    // The "guest": an HTTP backend on loopback.
    let backend: std::net::SocketAddr = "127.0.0.1:9005".parse().unwrap();
    let _guard = rt.enter();
    let listener = rt.block_on(tokio::net::TcpListener::bind(backend)).unwrap();
    rt.spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let body = "woken-backend";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });

    let (caddy_uid, caddy_gid) = caddy_ids(&config).unwrap();
    let path = config.paths.wake_dir.join("0a1b2c3d.sock");
    let socket = bind_wake_socket(&path, caddy_gid).unwrap();
    let wakes = Arc::new(AtomicUsize::new(0));
    let count = wakes.clone();
    let wake: WakeFn = Arc::new(move || {
        count.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(backend)
        })
    });
    let reports = Arc::new(Mutex::new(Vec::new()));
    let log = reports.clone();
    let report: ReportFn = Arc::new(move |r| log.lock().unwrap().push(r));
    let limits = WakeLimits {
        max_connections: 16,
        wake_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(5),
    };
    let _listener = WakeListener::start(
        socket,
        path.clone(),
        vec![0, caddy_uid],
        limits,
        wake,
        report,
    )
    .unwrap();
    let caddy = Caddy::new(ProxySettings::from_config(&config));
    let route = TenantRoute::to("w", Upstream::Unix(path)).unwrap();
    rt.block_on(caddy.ensure_server()).unwrap();
    rt.block_on(caddy.put_route(&route)).unwrap();

    let out = std::process::Command::new("curl")
        .args(["-sS", "-m", "30", "-H", "Host: w.lobster.local"])
        .arg("http://127.0.0.1:80/")
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && body == "woken-backend",
        "curl: {body} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    let reports = reports.lock().unwrap().clone();
    assert!(
        matches!(
            reports.as_slice(),
            [WakeReport::Started, WakeReport::Woken { .. }]
        ),
        "{reports:?}"
    );
}

/// Kills the process we started (Caddy) by its pid.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.0.to_string())
            .status();
    }
}
