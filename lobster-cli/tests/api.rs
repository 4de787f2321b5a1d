//! `lobsterd api-token` and `lobsterd serve` as processes: a token is
//! shown once and stored hashed, the server answers on its socket with the
//! scopes enforced, and SIGTERM stops it and removes the socket.

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{all, code, json, Env};

/// One GET over the socket; the status and the body.
fn get(socket: &Path, path: &str, token: &str) -> (u16, String) {
    let (status, body) = common::api::request(socket, "GET", path, token, "");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn a_token_is_shown_once_listed_without_its_secret_and_revoked() {
    let env = Env::initialised();
    let out = env.run(&[
        "--json",
        "api-token",
        "create",
        "ci-bot",
        "--scope",
        "operate",
    ]);
    assert!(out.status.success(), "{}", all(&out));
    let created = json(&out);
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["token"]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(&format!("lob_{id}_")));

    let out = env.run(&["--json", "api-token", "list"]);
    let listed = json(&out);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["scope"], "operate");
    let stored = std::fs::read_to_string(env.state().join("api-tokens.json")).unwrap();
    assert!(
        !stored.contains(&secret[secret.len() - 64..]),
        "secret stored: {stored}"
    );
    let mode = std::fs::metadata(env.state().join("api-tokens.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let out = env.run(&["api-token", "revoke", &id]);
    assert!(out.status.success(), "{}", all(&out));
    let out = env.run(&["--json", "api-token", "list"]);
    assert_eq!(json(&out), serde_json::json!([]));
    // Unknown id, bad scope, bad name: named, exit codes of their kinds.
    let out = env.run(&["api-token", "revoke", &id]);
    assert_eq!(code(&out), 10, "{}", all(&out));
    let out = env.run(&["api-token", "create", "x", "--scope", "root"]);
    assert!(
        all(&out).contains("scope") && all(&out).contains("root"),
        "{}",
        all(&out)
    );
    let out = env.run(&["api-token", "create", "two words"]);
    assert!(all(&out).contains("name"), "{}", all(&out));
    assert_ne!(code(&out), 0);
}

#[test]
fn serve_answers_on_its_socket_and_sigterm_stops_it() {
    let env = Env::initialised();
    env.seed(&["alpha"]);
    let token = |scope: &str| {
        let out = env.run(&["--json", "api-token", "create", "t", "--scope", scope]);
        json(&out)["secret"].as_str().unwrap().to_owned()
    };
    let (read, admin) = (token("read"), token("admin"));
    let socket = env.dir.path().join("run/api.sock");
    let mut server = env
        .command(&["serve", "--socket", socket.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lobster_testkit::poll::until("the API socket", Duration::from_secs(20), || {
        UnixStream::connect(&socket).ok().map(|_| ())
    });
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o660);
    assert_eq!(mode(socket.parent().unwrap()), 0o710);

    let (status, body) = get(&socket, "/v1/tenants", &read);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"alpha\""), "{body}");
    let (status, body) = get(&socket, "/v1/tenants/alpha/token", &read);
    assert_eq!(status, 403, "{body}");
    let (status, body) = get(&socket, "/v1/tenants/alpha/token", &admin);
    assert_eq!(status, 200, "{body}");
    let (status, _) = get(&socket, "/v1/tenants", "lob_00000000_nope");
    assert_eq!(status, 401);

    common::sigterm(server.id());
    let status = server.wait().unwrap();
    let mut stderr = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(!socket.exists(), "the socket is left behind");
}

/// A self-signed certificate and key for 127.0.0.1 in `dir`.
fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("api.crt"), dir.join("api.key"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=lobster-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", all(&out));
    (cert, key)
}

#[test]
fn serve_over_tcp_speaks_only_tls_with_the_configured_certificate() {
    let env = Env::initialised();
    env.seed(&["alpha"]);
    let (cert, key) = self_signed(env.dir.path());
    // A free loopback port (released just before serve binds it).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.config()).unwrap()).unwrap();
    config["api"] = serde_json::json!({
        "socket": env.dir.path().join("run/api.sock"),
        "listen": format!("127.0.0.1:{port}"),
        "tls_cert": cert,
        "tls_key": key,
    });
    std::fs::write(env.config(), serde_json::to_vec(&config).unwrap()).unwrap();
    let out = env.run(&["--json", "api-token", "create", "t", "--scope", "read"]);
    let token = json(&out)["secret"].as_str().unwrap().to_owned();
    let mut server = env
        .command(&["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/v1/tenants");
    let curl = |extra: &[&str], url: &str| {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
            .args(extra)
            .arg(url)
            .output()
            .unwrap()
    };
    lobster_testkit::poll::until("the API's TLS port", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    });
    let auth = format!("Authorization: Bearer {token}");
    let out = curl(&["--cacert", cert.to_str().unwrap(), "-H", &auth], &url);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.ends_with("\n200") && text.contains("\"alpha\""),
        "{text} {}",
        all(&out)
    );
    // Without trusting the certificate, and in plain HTTP: no answer.
    let out = curl(&["-H", &auth], &url);
    assert!(
        !out.status.success(),
        "an untrusted certificate was accepted"
    );
    let out = curl(
        &["-H", &auth],
        &format!("http://127.0.0.1:{port}/v1/tenants"),
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("alpha"),
        "plain HTTP answered"
    );

    common::sigterm(server.id());
    assert!(server.wait().unwrap().success());
}
