//! T1: the Caddy lobster's host setup (`init`) starts, inside a private
//! network namespace: it runs as its own unprivileged user holding only
//! the capability to bind low ports, its admin API is a unix socket that
//! `nobody` cannot reach, a foreign route placed ahead of a tenant's is
//! reported and removed by reconcile, tenants are served over HTTPS from a
//! local CA whose root lobster names (plain HTTP redirects), and the
//! system trust store is left byte for byte as it was.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lobster_core::config::{Config, PathsConfig};
use lobster_core::machine::{init, setup, InitOptions};
use lobster_core::proxy::{ca_root, caddy_uid, AdminClient, Caddy, ProxySettings, TenantRoute};
use lobster_testkit::caddy::{connect_as_nobody, reachable_tempdir, trust_store};
use lobster_testkit::cgroup::status_field;
use lobster_testkit::netns::{in_netns, require, Ctx};
use lobster_testkit::poll::until;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A backend answering every request with `name`.
async fn backend(addr: SocketAddr, name: &'static str) {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                    name.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
}

/// `curl` with `args` (bounded); (success, stdout, stderr).
fn curl(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-m", "5"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// GET https://a.lobster.local/ trusting only `root`.
fn https_a(root: &Path) -> (bool, String, String) {
    curl(&[
        "--cacert",
        root.to_str().unwrap(),
        "--resolve",
        "a.lobster.local:443:127.0.0.1",
        "https://a.lobster.local/",
    ])
}

/// One raw request on Caddy's admin socket (as root); the status line and body.
fn admin_raw(socket: &Path, method: &str, path: &str, body: &str) -> String {
    let mut conn = std::os::unix::net::UnixStream::connect(socket).expect("admin socket");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: \r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    reply
}

/// The Caddy host setup started: killed by its pid on drop, its log
/// printed when the test fails.
struct Spawned {
    pid: u32,
    log: PathBuf,
}

impl Spawned {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- caddy log ---\n{}", self.log());
        }
        let _ = std::process::Command::new("kill")
            .arg(self.pid.to_string())
            .status();
    }
}

#[test]
#[ignore = "t1: needs root"]
fn lobsters_caddy_is_unprivileged_private_and_serves_https() {
    require(&["caddy", "curl", "useradd", "iptables-restore"]);
    in_netns(
        "lobsters_caddy_is_unprivileged_private_and_serves_https",
        body,
    );
}

fn body(_ctx: &Ctx) {
    let trust_before = trust_store();
    let dir = reachable_tempdir();
    let mut config = Config {
        paths: PathsConfig::under(&dir.path().join("state")),
        ..Config::default()
    };
    config.proxy.caddy_dir = dir.path().join("caddy");
    config.proxy.admin_address = dir.path().join("caddy/admin.sock").display().to_string();
    config.proxy.upstream_retry_ms = 2_000;
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, config.to_json_pretty()).unwrap();
    let socket = PathBuf::from(&config.proxy.admin_address);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // `lobsterd init`: configuration, directories, host setup.
    init(&config_path, &InitOptions::default()).expect("init");
    let report = rt.block_on(setup(&config)).expect("host setup");
    let caddy_proc = Spawned {
        pid: report.caddy_pid.expect("setup started caddy itself"),
        log: report.caddy_log.clone(),
    };
    let pid = caddy_proc.pid as i32;

    // Caddy runs as its own user with nothing but CAP_NET_BIND_SERVICE.
    let uid = caddy_uid(&config).expect("caddy's uid");
    assert_ne!(uid, 0);
    assert_eq!(
        status_field(pid, "Uid"),
        format!("{uid}\t{uid}\t{uid}\t{uid}")
    );
    assert_eq!(status_field(pid, "Groups"), "", "no supplementary groups");
    for set in ["CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(pid, set), "0000000000000400", "{set}");
    }
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");

    // Its directory is its own and private; the admin socket is inside.
    let meta = std::fs::metadata(&config.proxy.caddy_dir).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o700));
    let caddy = Caddy::new(ProxySettings::from_config(&config));
    assert!(rt.block_on(caddy.is_up()), "root reaches the admin socket");
    assert_eq!(connect_as_nobody(&socket), "EACCES");

    // Set up once, nothing to change: the CA stays out of the trust store,
    // and lobster's TLS policy comes first.
    assert!(!rt.block_on(caddy.ensure_server()).unwrap());
    let admin = AdminClient::new(&config.proxy.admin_address, Duration::from_secs(10));
    let get = |path: &str| rt.block_on(admin.get_json(path)).expect(path);
    assert_eq!(
        get("/config/apps/pki/certificate_authorities/local/install_trust"),
        serde_json::json!(false)
    );
    let policy = get("/config/apps/tls/automation/policies/0");
    assert_eq!(policy["@id"], "lobster-tls");
    assert_eq!(
        policy["issuers"],
        serde_json::json!([{ "module": "internal" }])
    );

    // A tenant over HTTPS, trusting only the root lobster names.
    let a_addr: SocketAddr = "127.0.0.1:9001".parse().unwrap();
    rt.block_on(backend(a_addr, "backend-a"));
    let a = TenantRoute::new("a", a_addr).unwrap();
    assert!(rt.block_on(caddy.put_route(&a)).unwrap());
    let root = ca_root(&config);
    assert!(root.starts_with(&config.proxy.caddy_dir));
    let page = until(
        "a.lobster.local over https",
        Duration::from_secs(60),
        || {
            let (ok, body, _) = https_a(&root);
            ok.then_some(body)
        },
    );
    assert_eq!(page, "backend-a");
    // The system does not trust lobster's CA.
    let (ok, _, err) = curl(&[
        "--resolve",
        "a.lobster.local:443:127.0.0.1",
        "https://a.lobster.local/",
    ]);
    assert!(!ok, "the system trust store must not hold lobster's CA");
    assert!(err.contains("certificate"), "{err}");
    // Plain HTTP answers with a redirect to HTTPS.
    let (ok, redirect, err) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "--resolve",
        "a.lobster.local:80:127.0.0.1",
        "http://a.lobster.local/",
    ]);
    assert!(ok, "{err}");
    assert_eq!(redirect, "308 https://a.lobster.local/");

    // A foreign route placed first in lobster's server takes a's traffic
    // until reconcile reports and removes it.
    let reply = admin_raw(
        &socket,
        "PUT",
        "/config/apps/http/servers/lobster/routes/0",
        r#"{"match":[{"host":["a.lobster.local"]}],"handle":[{"handler":"static_response","body":"hijacked"}],"terminal":true}"#,
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(https_a(&root).1, "hijacked");
    let report = rt
        .block_on(caddy.reconcile(std::slice::from_ref(&a)))
        .expect("reconcile");
    assert_eq!(report.foreign.len(), 1, "{report:?}");
    assert!(report.foreign[0].contains("hijacked"), "{report:?}");
    assert!(
        report.added.is_empty() && report.removed.is_empty(),
        "{report:?}"
    );
    assert_eq!(https_a(&root).1, "backend-a");
    assert_eq!(
        rt.block_on(caddy.reconcile(std::slice::from_ref(&a)))
            .unwrap(),
        Default::default()
    );

    // Removal; then the trust store is as it was, and Caddy never tried
    // to install its root.
    assert!(rt.block_on(caddy.remove_route("a")).unwrap());
    let log = caddy_proc.log();
    assert!(
        log.contains("trust store installation disabled") && !log.contains("installing root"),
        "caddy's install_trust is on: {log}"
    );
    drop(caddy_proc);
    let trust_after = trust_store();
    let changed: Vec<_> = trust_before
        .keys()
        .chain(trust_after.keys())
        .filter(|k| trust_before.get(*k) != trust_after.get(*k))
        .collect();
    assert!(changed.is_empty(), "the trust store changed: {changed:?}");
}
