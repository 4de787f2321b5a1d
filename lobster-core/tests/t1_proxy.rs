//! T1: a real Caddy (started by the code under test, inside a private
//! network namespace, on its loopback) routes tenant hosts to backends,
//! stops routing removed routes, carries WebSocket upgrades, retries dials
//! while a backend starts, and gets its routes back after a restart.

use std::net::SocketAddr;
use std::time::Duration;

use lobster_core::config::Config;
use lobster_core::error::Classify;
use lobster_core::proxy::{
    ensure_running, prepare, Caddy, CaddyStart, ProxyError, ProxySettings, SpawnOptions,
    TenantRoute,
};
use lobster_testkit::netns::{in_netns, require, sh, Ctx};
use lobster_testkit::poll::until_async;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LISTEN: &str = "127.0.0.1:8080";

fn settings(admin: &str) -> ProxySettings {
    let mut config = Config::default();
    config.proxy.admin_address = admin.into();
    config.proxy.listen = vec![LISTEN.into()];
    config.proxy.automatic_https = false;
    config.proxy.upstream_retry_ms = 5_000;
    ProxySettings::from_config(&config)
}

/// A backend answering every request with `name`, and WebSocket upgrades
/// (any header case) with 101 and then an echo of the raw stream.
async fn backend(addr: SocketAddr, name: &'static str) {
    backend_after(addr, name, Duration::ZERO).await
}

/// [`backend`], answering plain requests only after `delay`.
async fn backend_after(addr: SocketAddr, name: &'static str, delay: Duration) {
    let listener = TcpListener::bind(addr).await.expect("bind backend");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if head.contains("upgrade: websocket") {
                    let _ = conn
                        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                        .await;
                    let (mut r, mut w) = conn.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                } else {
                    tokio::time::sleep(delay).await;
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                        name.len()
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                }
            });
        }
    });
}

/// GET / with `Host: host` through Caddy; returns (status, body).
async fn get(host: &str) -> (u16, String) {
    get_from(LISTEN, host, "/").await
}

/// GET `path` with `Host: host` from `addr`; returns (status, body).
async fn get_from(addr: &str, host: &str, path: &str) -> (u16, String) {
    let exchange = async {
        let mut conn = TcpStream::connect(addr).await.expect("connect to caddy");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).await.unwrap();
        let status = reply
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = reply
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("request through caddy timed out")
}

/// A WebSocket handshake sending `Connection: upgrade` in lower case, then
/// an echo round trip through the upgraded stream.
async fn websocket_echo(host: &str) -> Result<String, String> {
    let exchange = async {
        let mut conn = TcpStream::connect(LISTEN)
            .await
            .map_err(|e| e.to_string())?;
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        conn.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if conn.read(&mut byte).await.map_err(|e| e.to_string())? == 0 {
                return Err(format!(
                    "closed during handshake: {}",
                    String::from_utf8_lossy(&head)
                ));
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!("no upgrade: {head}"));
        }
        conn.write_all(b"hello through the proxy")
            .await
            .map_err(|e| e.to_string())?;
        let mut echo = vec![0u8; 23];
        conn.read_exact(&mut echo)
            .await
            .map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&echo).to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| Err("websocket exchange timed out".into()))
}

/// How many connections this namespace opened to `port` (SYNs counted by
/// a rule [`count_dials`] added).
fn dials_to(port: u16) -> u64 {
    let needle = format!("--dport {port} ");
    sh(&["iptables-save", "-c", "-t", "filter"])
        .lines()
        .find(|l| l.contains("-A OUTPUT") && l.contains(&needle))
        .and_then(|l| l.strip_prefix('[')?.split(':').next()?.parse().ok())
        .expect("the dial counting rule")
}

/// Adds a rule that only counts the connections opened to `port`.
fn count_dials(port: u16) {
    let port = port.to_string();
    sh(&[
        "iptables", "-I", "OUTPUT", "-p", "tcp", "--syn", "--dport", &port,
    ]);
}

/// The Caddy this test started; killed (by its pid) on drop, and its log
/// printed when the test is failing.
struct Started {
    start: Option<CaddyStart>,
    log: std::path::PathBuf,
}

impl Started {
    fn kill(&mut self) {
        match self.start.take() {
            Some(CaddyStart::Spawned(mut child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Some(other) => panic!("expected a caddy spawned by the test, got {other:?}"),
            None => {}
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- caddy log ---\n{log}");
        }
        if !std::thread::panicking() || self.start.is_some() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.kill()));
        }
    }
}

#[test]
#[ignore = "t1: needs root"]
fn caddy_routes_tenants_and_recovers_after_restart() {
    require(&["caddy"]);
    in_netns(
        "caddy_routes_tenants_and_recovers_after_restart",
        caddy_body,
    );
}

fn caddy_body(_ctx: &Ctx) {
    let dir = lobster_testkit::caddy::reachable_tempdir();
    let options = SpawnOptions {
        binary: "caddy".into(),
        state_dir: dir.path().join("caddy"),
        user: Config::default().proxy.user,
        log_file: dir.path().join("caddy.log"),
        ready_timeout: Duration::from_secs(15),
        use_systemd: false,
    };
    let admin = dir.path().join("caddy/admin.sock");
    let admin = admin.to_str().unwrap();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut started = Started {
        start: None,
        log: options.log_file.clone(),
    };
    rt.block_on(async {
        lobster_core::machine::ensure_system_user(&options.user, &options.state_dir)
            .await
            .expect("caddy's user");
        let caddy = Caddy::new(settings(admin));
        // Caddy down: a clear error naming the admin address.
        let down = caddy.list_routes().await.unwrap_err();
        assert!(down.to_string().contains(admin), "{down}");
        assert!(matches!(down, ProxyError::Unreachable { .. }), "{down:?}");

        // What `init` does: install if missing, start if down, add the server.
        started.start = Some(prepare(&caddy, &options).await.expect("start caddy"));
        assert!(matches!(
            ensure_running(&caddy, &options).await.unwrap(),
            CaddyStart::AlreadyRunning
        ));

        let (a_addr, b_addr): (SocketAddr, SocketAddr) = (
            "127.0.0.1:9001".parse().unwrap(),
            "127.0.0.1:9002".parse().unwrap(),
        );
        backend(a_addr, "backend-a").await;
        backend(b_addr, "backend-b").await;
        let a = TenantRoute::new("a", a_addr).unwrap();
        let b = TenantRoute::new("b", b_addr).unwrap();

        let report = caddy
            .reconcile(&[a.clone(), b.clone()])
            .await
            .expect("reconcile");
        assert_eq!(report.added, vec!["a", "b"]);
        assert_eq!(get("a.lobster.local").await, (200, "backend-a".into()));
        assert_eq!(get("b.lobster.local").await, (200, "backend-b".into()));
        // An unknown host matches no route: Caddy's empty 200.
        assert_eq!(get("nobody.lobster.local").await, (200, String::new()));

        // WebSocket upgrade with a lower-case `Connection: upgrade`.
        assert_eq!(
            websocket_echo("a.lobster.local").await,
            Ok("hello through the proxy".into())
        );

        // Re-running init keeps every route; putting the same route is a no-op.
        assert!(matches!(
            prepare(&caddy, &options).await.unwrap(),
            CaddyStart::AlreadyRunning
        ));
        assert!(!caddy.ensure_server().await.unwrap());
        assert!(!caddy.put_route(&a).await.unwrap());
        assert_eq!(caddy.list_routes().await.unwrap().len(), 2);

        // Replacing a route in place (same @id) re-points it.
        let a_to_b = TenantRoute::new("a", b_addr).unwrap();
        assert!(caddy.put_route(&a_to_b).await.unwrap());
        assert_eq!(get("a.lobster.local").await, (200, "backend-b".into()));
        assert!(caddy.put_route(&a).await.unwrap());

        // A request in flight survives config changes (other tenants'
        // spawns, evicts and wakes put routes all the time).
        let d_addr: SocketAddr = "127.0.0.1:9004".parse().unwrap();
        backend_after(d_addr, "backend-d", Duration::from_millis(1500)).await;
        let d = TenantRoute::new("d", d_addr).unwrap();
        caddy.put_route(&d).await.unwrap();
        let in_flight = tokio::spawn(get("d.lobster.local"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(caddy.put_route(&a_to_b).await.unwrap());
        assert!(caddy.put_route(&a).await.unwrap());
        assert_eq!(in_flight.await.unwrap(), (200, "backend-d".into()));
        assert!(caddy.remove_route("d").await.unwrap());

        // A removed route stops routing; the other keeps working.
        assert!(caddy.remove_route("a").await.unwrap());
        assert!(!caddy.remove_route("a").await.unwrap());
        assert_eq!(get("a.lobster.local").await, (200, String::new()));
        assert_eq!(get("b.lobster.local").await, (200, "backend-b".into()));
        let names: Vec<String> = caddy
            .list_routes()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, vec!["b"]);

        // Dials are retried while the guest starts: the backend comes up
        // after the request was sent, and the request still succeeds.
        let c_addr: SocketAddr = "127.0.0.1:9003".parse().unwrap();
        caddy
            .put_route(&TenantRoute::new("c", c_addr).unwrap())
            .await
            .unwrap();
        count_dials(c_addr.port());
        let late = tokio::spawn(get("c.lobster.local"));
        // Nothing listens yet: Caddy's first dial fails. A second dial is
        // its retry, with the request still held.
        until_async(
            "caddy to retry its dial to c",
            Duration::from_secs(5),
            || async { (dials_to(c_addr.port()) >= 2).then_some(()) },
        )
        .await;
        backend(c_addr, "backend-c").await;
        assert_eq!(late.await.unwrap(), (200, "backend-c".into()));

        // Restart: a fresh Caddy has no routes; reconcile brings them back
        // and drops the ones not listed.
        started.kill();
        let err = caddy.put_route(&a).await.unwrap_err();
        assert!(err.to_string().contains(admin), "{err}");
        assert_eq!(err.kind(), lobster_core::ErrorKind::HostFailure);
        started.start = Some(
            ensure_running(&caddy, &options)
                .await
                .expect("restart caddy"),
        );
        assert!(caddy.list_routes().await.unwrap().is_empty());
        let report = caddy
            .reconcile(&[a.clone(), b.clone()])
            .await
            .expect("reconcile");
        assert_eq!(report.added, vec!["a", "b"]);
        assert_eq!(get("a.lobster.local").await, (200, "backend-a".into()));
        assert_eq!(get("b.lobster.local").await, (200, "backend-b".into()));
        let report = caddy
            .reconcile(std::slice::from_ref(&b))
            .await
            .expect("reconcile");
        assert_eq!(report.removed, vec!["a"]);
        assert_eq!(caddy.reconcile(&[b]).await.unwrap(), Default::default());
    });
    started.kill();
}
