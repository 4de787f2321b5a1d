//! `lobsterd api-token` and `lobsterd serve` as processes: a token is
//! shown once and stored hashed, the server answers on its socket with the
//! scopes enforced, and SIGTERM stops it and removes the socket.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{all, code, json, Env};

/// One HTTP/1.1 request over the socket; the status and the body.
fn get(socket: &Path, path: &str, token: &str) -> (u16, String) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: lobster\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
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

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
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
