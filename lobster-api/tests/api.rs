//! The HTTP API over a real unix socket, against a host of fakes whose
//! guests boot the real agent (the test kit's `FakeHost::booting`): every
//! scope against every route, the lifecycle through operations, bad input.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use lobster_api::auth::RateLimit;
use lobster_api::Api;
use lobster_core::store::ApiScope;
use lobster_testkit::rig::FakeHost;
use serde_json::Value;

/// A server on a unix socket and a token of each scope.
struct Server {
    rig: FakeHost,
    socket: PathBuf,
    read: String,
    operate: String,
    admin: String,
    _dir: tempfile::TempDir,
}

async fn server(net: u8) -> Server {
    server_with(net, |api| api).await
}

async fn server_with(net: u8, tweak: impl FnOnce(Api) -> Api) -> Server {
    let rig = FakeHost::booting(net).await;
    let host = Arc::new(rig.host.clone());
    let token = |scope| {
        let host = host.clone();
        async move { host.create_api_token("test", scope).await.unwrap().1 }
    };
    let (read, operate, admin) = (
        token(ApiScope::Read).await,
        token(ApiScope::Operate).await,
        token(ApiScope::Admin).await,
    );
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(lobster_api::serve(
        listener,
        tweak(Api::new(host)),
        std::future::pending(),
    ));
    Server {
        rig,
        socket,
        read,
        operate,
        admin,
        _dir: dir,
    }
}

/// Sends one request over the socket; the response, its body unread.
async fn send(
    socket: &Path,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> hyper::Response<hyper::body::Incoming> {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "lobster");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    sender.send_request(request).await.unwrap()
}

/// A response's content type.
fn content_type(response: &hyper::Response<hyper::body::Incoming>) -> String {
    response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// One request; the status and the body as JSON (a JSON string when it is
/// not JSON, `Null` when empty).
async fn call(
    socket: &Path,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let (status, _, bytes) = download(socket, method, path, token, body).await;
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, json)
}

/// One request; the status, content type and raw body.
async fn download(
    socket: &Path,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let response = send(socket, method, path, token, body).await;
    let (status, kind) = (response.status().as_u16(), content_type(&response));
    let bytes = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, kind, bytes)
}

/// The status, content type and body of a GET whose body may never end (a
/// stream), read until it holds `until`.
async fn open_stream(socket: &Path, path: &str, token: &str, until: &str) -> (u16, String, String) {
    let response = send(socket, "GET", path, Some(token), b"").await;
    let (status, kind) = (response.status().as_u16(), content_type(&response));
    let mut body = response.into_body();
    let mut text = String::new();
    let read = async {
        while !text.contains(until) {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        text.push_str(&String::from_utf8_lossy(data));
                    }
                }
                _ => break,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .unwrap_or_else(|_| panic!("{path}: no `{until}` within 20 s"));
    (status, kind, text)
}

/// What one exec session over the WebSocket gave back.
#[derive(Debug, Default)]
struct Exec {
    /// The first message: `{"started": …}` or `{"error": …}`.
    first: Value,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The `exit` document (Null if none came).
    exit: Value,
    /// The close code the server sent.
    close: Option<u16>,
}

/// Runs an exec session: sends `start`, then `stdin` and its end, and
/// reads everything back until the server closes (20 s at most).
async fn exec(socket: &Path, tenant: &str, token: &str, start: Value, stdin: &[u8]) -> Exec {
    use tokio_tungstenite::tungstenite::Message;
    let end = serde_json::json!({ "close_stdin": true });
    let then = vec![
        Message::binary(stdin.to_vec()),
        Message::text(end.to_string()),
    ];
    exec_then(socket, tenant, token, start, then).await
}

/// Runs an exec session: sends `start`, then the messages `then` once it
/// started, and reads everything back until the server closes (20 s at most).
async fn exec_then(
    socket: &Path,
    tenant: &str,
    token: &str,
    start: Value,
    then: Vec<tokio_tungstenite::tungstenite::Message>,
) -> Exec {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let mut request = format!("ws://lobster/v1/tenants/{tenant}/exec")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    ws.send(Message::text(start.to_string())).await.unwrap();
    let mut got = Exec::default();
    let mut then = then;
    let run = async {
        while let Some(Ok(message)) = ws.next().await {
            match message {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value.get("exit").is_some() {
                        got.exit = value["exit"].clone();
                    } else if got.first.is_null() {
                        got.first = value;
                        if got.first.get("started").is_some() {
                            for message in then.drain(..) {
                                // A command that ended may close first.
                                let _ = ws.send(message).await;
                            }
                        }
                    }
                }
                Message::Binary(bytes) => match bytes.first() {
                    Some(&lobster_api::exec::STDOUT) => got.stdout.extend(&bytes[1..]),
                    Some(&lobster_api::exec::STDERR) => got.stderr.extend(&bytes[1..]),
                    other => panic!("an output frame tagged {other:?}"),
                },
                Message::Close(frame) => {
                    got.close = frame.map(|f| u16::from(f.code));
                    break;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the exec session ended within 20 s");
    got
}

/// Polls operation `id` until it ends.
async fn finished(s: &Server, id: &str) -> Value {
    for _ in 0..600 {
        let (status, op) = call(
            &s.socket,
            "GET",
            &format!("/v1/operations/{id}"),
            Some(&s.read),
            b"",
        )
        .await;
        assert_eq!(status, 200, "{op}");
        if op["state"] != "running" {
            return op;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("operation {id} still running after 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scope_reaches_only_its_routes_and_none_reveals_a_tenant() {
    let s = server(210).await;
    s.rig.spawn("alpha").await;
    // The admin token with its last digit changed.
    let last = if s.admin.ends_with('0') { "1" } else { "0" };
    let wrong = format!("{}{last}", &s.admin[..s.admin.len() - 1]);
    // (method, path, the least scope it needs). Mutating routes name a
    // tenant that does not exist, so a call that gets through changes
    // nothing: 404.
    let routes = [
        ("GET", "/v1/tenants", ApiScope::Read),
        ("GET", "/v1/tenants/alpha", ApiScope::Read),
        ("GET", "/v1/operations", ApiScope::Read),
        ("GET", "/v1/overview", ApiScope::Read),
        ("GET", "/metrics", ApiScope::Read),
        ("GET", "/v1/tenants/ghost/logs", ApiScope::Read),
        ("GET", "/v1/tenants/ghost/logs/follow", ApiScope::Read),
        ("GET", "/v1/tenants/alpha/token", ApiScope::Admin),
        ("DELETE", "/v1/tenants/ghost", ApiScope::Operate),
        ("POST", "/v1/tenants/ghost/suspend", ApiScope::Operate),
        ("POST", "/v1/tenants/ghost/resume", ApiScope::Operate),
        ("POST", "/v1/tenants/ghost/snap", ApiScope::Operate),
        ("POST", "/v1/tenants/ghost/molt", ApiScope::Operate),
        ("GET", "/v1/operations/op-999/archive", ApiScope::Admin),
        ("GET", "/v1/tenants/ghost/exec", ApiScope::Admin),
        ("POST", "/v1/tenants/ghost/rotate-tokens", ApiScope::Admin),
        ("GET", "/v1/watchdog/log", ApiScope::Read),
    ];
    for (method, path, needed) in routes {
        for (token, label) in [(None, "none"), (Some(wrong.as_str()), "wrong")] {
            let (status, body) = call(&s.socket, method, path, token, b"").await;
            assert_eq!(status, 401, "{method} {path} with {label} token: {body}");
            assert_eq!(body["code"], "unauthorized");
        }
        for (token, scope) in [
            (&s.read, ApiScope::Read),
            (&s.operate, ApiScope::Operate),
            (&s.admin, ApiScope::Admin),
        ] {
            let (status, body) = call(&s.socket, method, path, Some(token), b"").await;
            if scope < needed {
                assert_eq!(status, 403, "{method} {path} as {scope:?}: {body}");
                assert_eq!(body["code"], "forbidden");
            } else {
                assert!(
                    status == 200 || status == 404,
                    "{method} {path} as {scope:?}: {status} {body}"
                );
            }
        }
    }
    // Without the scope, a tenant that exists and one that does not look
    // the same.
    for token in [None, Some(s.read.as_str())] {
        let known = call(&s.socket, "GET", "/v1/tenants/alpha/token", token, b"").await;
        let ghost = call(&s.socket, "GET", "/v1/tenants/ghost/token", token, b"").await;
        assert_eq!(known, ghost);
    }
    let (status, body) = call(
        &s.socket,
        "GET",
        "/v1/tenants/alpha/token",
        Some(&s.admin),
        b"",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["token"], s.rig.record("alpha").gateway_token);
    // A revoked token is refused from then on.
    let id = s.read.split('_').nth(1).unwrap();
    s.rig.host.revoke_api_token(id).await.unwrap();
    let (status, _) = call(&s.socket, "GET", "/v1/tenants", Some(&s.read), b"").await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_and_evict_run_as_operations_one_at_a_time_per_tenant() {
    let s = server(211).await;
    let spec = br#"{"name":"web","memory_mib":256}"#;
    let (status, op) = call(&s.socket, "POST", "/v1/tenants", Some(&s.operate), spec).await;
    assert_eq!(status, 202, "{op}");
    assert_eq!(op["state"], "running");
    assert_eq!(op["kind"], "spawn");
    // A second spawn of the name while the first runs: 409, not a race.
    let (status, body) = call(&s.socket, "POST", "/v1/tenants", Some(&s.operate), spec).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "conflict");

    let done = finished(&s, op["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["result"]["status"], "running");
    let steps: Vec<&str> = done["progress"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["phase"]["phase"] == "done")
        .filter_map(|e| e["step"].as_str())
        .collect();
    for step in ["allocate", "overlay", "network", "vm", "agent", "route"] {
        assert!(steps.contains(&step), "no {step} in {steps:?}: {done}");
    }
    let (status, tenants) = call(&s.socket, "GET", "/v1/tenants", Some(&s.read), b"").await;
    assert_eq!(status, 200);
    assert_eq!(tenants[0]["name"], "web");
    assert!(tenants[0].get("gateway_token").is_none(), "{tenants}");
    let (status, overview) = call(&s.socket, "GET", "/v1/overview", Some(&s.read), b"").await;
    assert_eq!(status, 200, "{overview}");
    assert_eq!(overview["tenants"][0]["name"], "web");
    let (status, logs) = call(
        &s.socket,
        "GET",
        "/v1/tenants/web/logs?source=agent&lines=5",
        Some(&s.read),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{logs}");
    assert!(logs["lines"].as_array().unwrap().len() <= 5, "{logs}");
    for bad in ["lines=99999", "source=kernel", "colour=red", "lines=-1"] {
        let path = format!("/v1/tenants/web/logs?{bad}");
        let (status, body) = call(&s.socket, "GET", &path, Some(&s.read), b"").await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["message"].as_str().unwrap().starts_with("query"),
            "{body}"
        );
    }
    let (status, metrics) = call(&s.socket, "GET", "/metrics", Some(&s.read), b"").await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap();
    for line in [
        "lobster_tenants{status=\"running\"} 1",
        "lobster_tenants_by_health{health=\"none\"} 1",
        "lobster_operation_step_seconds_count{operation=\"spawn\",step=\"vm\"} 1",
        "lobster_api_requests_total{method=\"POST\",route=\"/v1/tenants\",status=\"202\"} 1",
        "lobster_api_requests_total{method=\"POST\",route=\"/v1/tenants\",status=\"409\"} 1",
        "lobster_vmm_resident_bytes{tenant=\"web\"} ",
    ] {
        assert!(metrics.contains(line), "no `{line}` in\n{metrics}");
    }
    let (status, kind, _) = open_stream(
        &s.socket,
        "/v1/tenants/web/logs/follow?lines=1",
        &s.read,
        "",
    )
    .await;
    assert_eq!((status, kind.as_str()), (200, "text/event-stream"));
    // The spawn's progress as a stream: every step, then the operation.
    let (status, _, text) = open_stream(
        &s.socket,
        &format!("/v1/operations/{}/events", done["id"].as_str().unwrap()),
        &s.read,
        "event: operation",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        text.contains("event: progress\ndata: {\"operation\":\"spawn\""),
        "{text}"
    );
    assert!(text.contains("\"step\":\"route\""), "{text}");
    // The watchdog's repairs by kind, from its status file.
    let mut watch = lobster_core::health::WatchStatus {
        pid: std::process::id(),
        started_ms: 1,
        updated_ms: 2,
        tick: 3,
        interval_ms: 5000,
        tenants: Default::default(),
        repairs: Default::default(),
    };
    watch.repairs.insert(
        "restart_vm".into(),
        lobster_core::health::RepairCount { ok: 4, failed: 1 },
    );
    let state_dir = &s.rig.config().paths.state_dir;
    let status = lobster_core::health::WatchStatus::path(state_dir);
    std::fs::write(status, serde_json::to_vec(&watch).unwrap()).unwrap();
    let (_, metrics) = call(&s.socket, "GET", "/metrics", Some(&s.read), b"").await;
    let metrics = metrics.as_str().unwrap();
    for line in [
        "lobster_watchdog_repairs{repair=\"restart_vm\",outcome=\"ok\"} 4",
        "lobster_watchdog_repairs{repair=\"restart_vm\",outcome=\"failed\"} 1",
    ] {
        assert!(metrics.contains(line), "no `{line}` in\n{metrics}");
    }
    // The watchdog's events: none logged yet is 404; then its lines.
    let (status, body) = call(&s.socket, "GET", "/v1/events", Some(&s.read), b"").await;
    assert_eq!(status, 404, "{body}");
    let log = lobster_core::health::watch_log_path(s.rig.config());
    std::fs::write(&log, "tick 1: web healthy\n").unwrap();
    let (status, _, text) = open_stream(&s.socket, "/v1/events?lines=5", &s.read, "healthy").await;
    assert_eq!(status, 200);
    assert!(
        text.contains("event: watchdog\ndata: tick 1: web healthy"),
        "{text}"
    );
    let (status, tail) = call(
        &s.socket,
        "GET",
        "/v1/watchdog/log?lines=5",
        Some(&s.read),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{tail}");
    assert_eq!(tail["lines"], serde_json::json!(["tick 1: web healthy"]));

    // New tokens: the gateway's changes and is never in the answer.
    let before = s.rig.record("web").gateway_token;
    let (status, rotated) = call(
        &s.socket,
        "POST",
        "/v1/tenants/web/rotate-tokens",
        Some(&s.admin),
        b"",
    )
    .await;
    assert_eq!(
        (status, rotated["name"].as_str()),
        (200, Some("web")),
        "{rotated}"
    );
    assert!(!rotated.to_string().contains("token\""), "{rotated}");
    assert_ne!(s.rig.record("web").gateway_token, before);

    // Spawning it again fails on the operation, as the host says.
    let (_, op) = call(&s.socket, "POST", "/v1/tenants", Some(&s.operate), spec).await;
    let again = finished(&s, op["id"].as_str().unwrap()).await;
    assert_eq!(again["state"], "failed");
    assert_eq!(again["error"]["code"], "already_exists", "{again}");

    // Molt: an operation whose result is the checks and repairs.
    let (status, op) = call(
        &s.socket,
        "POST",
        "/v1/tenants/web/molt",
        Some(&s.operate),
        b"",
    )
    .await;
    assert_eq!(status, 202, "{op}");
    let molted = finished(&s, op["id"].as_str().unwrap()).await;
    assert_eq!(molted["state"], "succeeded", "{molted}");
    assert_eq!(molted["result"]["tenant"], "web", "{molted}");
    assert!(molted["result"]["checks"].is_array(), "{molted}");
    // Every tenant at once: one report each, the operation's tenant `*`.
    let (status, op) = call(&s.socket, "POST", "/v1/molt", Some(&s.operate), b"").await;
    assert_eq!((status, op["tenant"].as_str()), (202, Some("*")), "{op}");
    let molted = finished(&s, op["id"].as_str().unwrap()).await;
    assert_eq!(molted["result"]["reports"][0]["tenant"], "web", "{molted}");
    let (status, _) = call(&s.socket, "POST", "/v1/molt", Some(&s.read), b"").await;
    assert_eq!(status, 403);

    // Exec over a WebSocket: stdin in, stdout and stderr apart, the exit
    // status; a missing command and a bad start message are refused.
    let start = serde_json::json!({
        "argv": ["sh", "-c", "cat; echo \"to $WHO\" >&2; exit 3"],
        "env": { "WHO": "stderr" },
    });
    let ran = exec(&s.socket, "web", &s.admin, start, b"hello over ws").await;
    assert!(ran.first["started"]["pid"].as_u64().unwrap() > 0, "{ran:?}");
    assert_eq!(ran.stdout, b"hello over ws", "{ran:?}");
    assert_eq!(ran.stderr, b"to stderr\n", "{ran:?}");
    assert_eq!(ran.exit["status"], 3, "{ran:?}");
    assert_eq!(ran.close, Some(1000));
    // A command that ends at once: stdin sent after its end is dropped and
    // its exit still comes.
    let quick = serde_json::json!({ "argv": ["sh", "-c", "exit 5"] });
    let ran = exec(&s.socket, "web", &s.admin, quick, b"too late").await;
    assert_eq!(
        (ran.exit["status"].as_i64(), ran.close),
        (Some(5), Some(1000)),
        "{ran:?}"
    );
    // A malformed control message ends the session with 1008.
    let cat = serde_json::json!({ "argv": ["cat"] });
    let bogus = tokio_tungstenite::tungstenite::Message::text(r#"{"bogus":1}"#);
    let ran = exec_then(&s.socket, "web", &s.admin, cat, vec![bogus]).await;
    assert_eq!(ran.close, Some(1008), "{ran:?}");
    let missing = serde_json::json!({ "argv": ["no-such-command-here"] });
    let ran = exec(&s.socket, "web", &s.admin, missing, b"").await;
    assert_eq!(ran.first["error"]["code"], "not_found", "{ran:?}");
    assert_eq!(ran.close, Some(1008));
    for bad in [
        serde_json::json!({ "argv": [] }),
        serde_json::json!({ "argv": ["sh"], "colour": "red" }),
        serde_json::json!({ "argv": ["sh"], "cwd": "relative" }),
    ] {
        let ran = exec(&s.socket, "web", &s.admin, bad.clone(), b"").await;
        let code = ran.first["error"]["code"].as_str().unwrap_or_default();
        assert!(
            code == "bad_request" || code == "invalid_argument",
            "{bad}: {ran:?}"
        );
        assert!(ran.exit.is_null(), "{bad}: {ran:?}");
    }

    // Snap: an operation, then its archive (admin only), byte-identical.
    let (status, op) = call(
        &s.socket,
        "POST",
        "/v1/tenants/web/snap",
        Some(&s.operate),
        b"",
    )
    .await;
    assert_eq!(status, 202, "{op}");
    let snapped = finished(&s, op["id"].as_str().unwrap()).await;
    assert_eq!(snapped["state"], "succeeded", "{snapped}");
    let archive = format!("/v1/operations/{}/archive", op["id"].as_str().unwrap());
    let (status, _) = call(&s.socket, "GET", &archive, Some(&s.operate), b"").await;
    assert_eq!(status, 403);
    let (status, _, bytes) = download(&s.socket, "GET", &archive, Some(&s.admin), b"").await;
    assert_eq!(status, 200);
    let path = snapped["result"]["path"].as_str().unwrap();
    assert_eq!(bytes, std::fs::read(path).unwrap());
    assert_eq!(
        bytes.len() as u64,
        snapped["result"]["archive_bytes"].as_u64().unwrap()
    );

    let (status, op) = call(
        &s.socket,
        "DELETE",
        "/v1/tenants/web",
        Some(&s.operate),
        b"",
    )
    .await;
    assert_eq!(status, 202, "{op}");
    let done = finished(&s, op["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let (status, body) = call(&s.socket, "GET", "/v1/tenants/web", Some(&s.read), b"").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "not_found");
    let (status, ops) = call(&s.socket, "GET", "/v1/operations", Some(&s.read), b"").await;
    assert_eq!(status, 200);
    assert_eq!(ops.as_array().unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_clear_4xx_and_changes_nothing() {
    let s = server(212).await;
    let t = Some(s.operate.as_str());
    let big = format!(
        r#"{{"name":"x","env":{{"A":"{}"}}}}"#,
        "a".repeat(128 * 1024)
    );
    let cases: [(&str, &str, &[u8], u16, &str); 9] = [
        ("POST", "/v1/tenants", b"{not json", 400, "request body"),
        (
            "POST",
            "/v1/tenants",
            br#"{"name":"x","color":"red"}"#,
            400,
            "color",
        ),
        (
            "POST",
            "/v1/tenants",
            br#"{"name":"Bad Name"}"#,
            400,
            "Bad Name",
        ),
        (
            "POST",
            "/v1/tenants",
            br#"{"name":"x","vcpus":0}"#,
            422,
            "vcpus",
        ),
        ("POST", "/v1/tenants", big.as_bytes(), 413, ""),
        ("GET", "/v1/tenants/..", b"", 400, "tenant name"),
        ("GET", "/v1/tenants/a%2F..%2Fb", b"", 400, "tenant name"),
        ("DELETE", "/v1/tenants/UPPER", b"", 400, "UPPER"),
        ("GET", "/v1/operations/op-999", b"", 404, "op-999"),
    ];
    for (method, path, body, want, names) in cases {
        let (status, answer) = call(&s.socket, method, path, t, body).await;
        assert_eq!(status, want, "{method} {path}: {answer}");
        if !names.is_empty() {
            let message = answer["message"].as_str().unwrap_or_default();
            assert!(message.contains(names), "{method} {path}: {answer}");
        }
    }
    let (_, tenants) = call(&s.socket, "GET", "/v1/tenants", t, b"").await;
    assert_eq!(tenants, serde_json::json!([]));
    let (_, ops) = call(&s.socket, "GET", "/v1/operations", t, b"").await;
    assert_eq!(ops, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_budget_gets_429_and_other_tokens_do_not() {
    let limit = RateLimit {
        per_second: 1.0,
        burst: 5.0,
    };
    let s = server_with(213, |api| api.with_rate_limit(limit)).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(call(&s.socket, "GET", "/v1/tenants", Some(&s.read), b"").await);
    }
    let ok = statuses.iter().filter(|(status, _)| *status == 200).count();
    assert!((5..=6).contains(&ok), "{statuses:?}");
    let (status, body) = statuses.last().unwrap();
    assert_eq!(*status, 429, "{body}");
    assert_eq!(body["code"], "rate_limited");
    // Another token has its own budget.
    let (status, _) = call(&s.socket, "GET", "/v1/tenants", Some(&s.admin), b"").await;
    assert_eq!(status, 200);
    // Requests without a valid token are refused before any budget.
    let (status, _) = call(&s.socket, "GET", "/v1/tenants", None, b"").await;
    assert_eq!(status, 401);
}
