//! T2: the whole lifecycle over the HTTP API with a real guest (QEMU under
//! TCG, the minimal image), real TAPs, iptables and Caddy, inside a network
//! namespace the test creates: `lobsterd serve` as a process, spawn with
//! its progress streamed, the gateway through Caddy, the agent's log
//! followed, suspend and resume, a snap downloaded and restored by
//! `spawn --from-snap`, evict; the same life through the Python package,
//! locally and through `lobster.connect`; SIGTERM stops the server.

mod common;

use std::time::{Duration, Instant};

use common::api::{json_request, request, stream_until, Served};
use common::t2::*;
use lobster_testkit::netns::{in_netns, Ctx};

/// How long a TCG guest may take to boot and serve.
const BOOT: Duration = Duration::from_secs(240);

/// Runs operation `op` (a 202 answer) to its end through its event
/// stream; the ended operation.
fn finish(socket: &std::path::Path, token: &str, op: &serde_json::Value) -> serde_json::Value {
    let id = op["id"]
        .as_str()
        .unwrap_or_else(|| panic!("not an operation: {op}"));
    let text = stream_until(
        socket,
        &format!("/v1/operations/{id}/events"),
        token,
        "event: operation",
        BOOT,
    );
    let last = text
        .split("event: operation\ndata: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_else(|| panic!("no operation event in {text}"));
    let ended: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(ended["state"], "succeeded", "{ended}");
    ended
}

#[test]
#[ignore = "t2: needs root, qemu, caddy and images"]
fn a_tenant_lives_its_whole_life_over_http() {
    in_netns("a_tenant_lives_its_whole_life_over_http", |_ctx: &Ctx| {
        require_t2();
        let lobster = Lobster::init(2, false);
        let out = lobster.run(&["--json", "api-token", "create", "t2", "--scope", "admin"]);
        assert!(out.status.success(), "{}", output(&out));
        let token: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let token = token["secret"].as_str().unwrap().to_owned();
        let socket = lobster.dir.path().join("api/api.sock");
        let server = Served::start(
            lobster.command(&["serve", "--socket", socket.to_str().unwrap()]),
            &socket,
        );
        let call = |method: &str, path: &str, body: &str| {
            json_request(&socket, method, path, &token, body)
        };

        // Spawn, its progress streamed to the end; the gateway answers
        // through Caddy.
        let started = Instant::now();
        let spec = serde_json::json!({
            "name": "web",
            "command": ["/bin/sh", "-c", "mkdir -p /tmp/w; echo hello from web > /tmp/w/index.html; exec busybox httpd -f -p 9000 -h /tmp/w"],
        });
        let (status, op) = call("POST", "/v1/tenants", &spec.to_string());
        assert_eq!(status, 202, "{op}");
        let spawned = finish(&socket, &token, &op);
        let steps: Vec<&str> = spawned["progress"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["phase"]["phase"] == "done")
            .filter_map(|e| e["step"].as_str())
            .collect();
        for step in [
            "allocate", "overlay", "network", "firewall", "vm", "agent", "workload", "route",
        ] {
            assert!(steps.contains(&step), "no {step} in {steps:?}");
        }
        eprintln!("spawn over HTTP: {:?}", started.elapsed());
        wait_for_page("web", "/", "hello from web", BOOT);
        let (status, tenant) = call("GET", "/v1/tenants/web", "");
        assert_eq!(
            (status, tenant["status"].as_str()),
            (200, Some("running")),
            "{tenant}"
        );

        // The agent's log, followed: its lines come as events.
        let log = stream_until(
            &socket,
            "/v1/tenants/web/logs/follow?source=agent&lines=20",
            &token,
            "event: line",
            Duration::from_secs(60),
        );
        assert!(log.contains("data: "), "{log}");

        // Suspend and resume as operations.
        let (status, op) = call("POST", "/v1/tenants/web/suspend", "");
        assert_eq!(status, 202, "{op}");
        assert_eq!(
            finish(&socket, &token, &op)["result"]["status"],
            "suspended"
        );
        let (status, op) = call("POST", "/v1/tenants/web/resume", "");
        assert_eq!(status, 202, "{op}");
        assert_eq!(finish(&socket, &token, &op)["result"]["status"], "running");
        wait_for_page("web", "/", "hello from web", BOOT);

        // Snap, downloaded, restored as a new tenant that serves the same.
        let (status, op) = call("POST", "/v1/tenants/web/snap", "");
        assert_eq!(status, 202, "{op}");
        let snapped = finish(&socket, &token, &op);
        let (status, archive) = request(
            &socket,
            "GET",
            &format!("/v1/operations/{}/archive", op["id"].as_str().unwrap()),
            &token,
            "",
        );
        assert_eq!(status, 200);
        assert_eq!(
            archive.len() as u64,
            snapped["result"]["archive_bytes"].as_u64().unwrap()
        );
        let downloaded = lobster.dir.path().join("web.snap");
        std::fs::write(&downloaded, &archive).unwrap();
        let out = lobster.run(&[
            "--json",
            "spawn",
            "copy",
            "--from-snap",
            downloaded.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "restore: {}", output(&out));
        let (status, tenants) = call("GET", "/v1/tenants", "");
        assert_eq!(status, 200);
        assert_eq!(tenants.as_array().map(Vec::len), Some(2), "{tenants}");

        // Evict both; nothing is left.
        for name in ["web", "copy"] {
            let (status, op) = call("DELETE", &format!("/v1/tenants/{name}"), "");
            assert_eq!(status, 202, "{op}");
            finish(&socket, &token, &op);
        }
        let (_, tenants) = call("GET", "/v1/tenants", "");
        assert_eq!(tenants, serde_json::json!([]));

        // The same life through the Python package, one script for a
        // local `lobster.Host` and for `lobster.connect` (in the venv
        // scripts/test-bindings.sh builds): spawn with a secret, follow
        // its log, the page through Caddy, then suspend, resume, molt,
        // tail, snap into a local file, evict.
        let config = lobster.config();
        let url = format!("unix:{}", socket.display());
        let local = ["local", config.to_str().unwrap()];
        let remote = ["remote", url.as_str(), token.as_str()];
        for (how, name) in [(&local[..], "pyl"), (&remote[..], "pyr")] {
            let python = |phase: &str| {
                let out = std::process::Command::new(python_of_bindings())
                    .arg(lobster_testkit::images::repo_root().join("lobster-py/tests/lifecycle.py"))
                    .args(how)
                    .args([phase, name])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "lifecycle.py {how:?} {phase}: {}",
                    output(&out)
                );
                let said = String::from_utf8_lossy(&out.stdout).to_string();
                eprintln!("python {} {phase}: {said}", how[0]);
                said
            };
            assert!(python("spawn").contains("secret-len 6"));
            wait_for_page(name, "/", "hello from python", BOOT);
            assert!(python("rest").contains("\"evicted\": true"));
        }
        let (status, metrics) = request(&socket, "GET", "/metrics", &token, "");
        assert_eq!(status, 200);
        let metrics = String::from_utf8_lossy(&metrics).to_string();
        assert!(
            metrics.contains(
                "lobster_operation_step_seconds_count{operation=\"spawn\",step=\"agent\"} 2"
            ),
            "{metrics}"
        );

        assert!(server.stop().success());
        assert!(!socket.exists());
    });
}

/// The Python of the bindings' venv, where `lobster` is installed.
fn python_of_bindings() -> std::path::PathBuf {
    let python = lobster_testkit::images::repo_root().join("target/bindings-venv/bin/python");
    assert!(
        python.exists(),
        "t2: needs {} (run scripts/test-bindings.sh)",
        python.display()
    );
    python
}
