//! T0: the agent library in this process, driven over its JSON-lines port:
//! the workload restart policies end to end (the backoff schedule itself is
//! unit-tested in `workload.rs`), and `shutdown` handing the reboot flag to
//! whoever runs the agent.

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::Session;

use lobster_agent::{Agent, AgentConfig};
use serde_json::{json, Value};

const TOKEN: &str = "supervision-token";

/// The workload's status, polled over a session.
trait Workload {
    fn status(&mut self) -> Value;
    fn wait_status(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> Value;
}

impl Workload for Session {
    fn status(&mut self) -> Value {
        self.call("workload.status", json!({}))
    }

    /// Polls the workload status until `done` holds (generous deadline).
    fn wait_status(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let found = common::within(Duration::from_secs(20), || {
            last = self.status();
            done(&last).then(|| last.clone())
        });
        found.unwrap_or_else(|| panic!("no {what}: {last}"))
    }
}

fn agent(dir: &tempfile::TempDir) -> Agent {
    Agent::start(AgentConfig::for_host_process(dir.path(), TOKEN)).unwrap()
}

fn open(agent: &Agent) -> Session {
    Session::open(TcpStream::connect(agent.rpc_addr()).unwrap(), TOKEN)
}

fn configure(session: &mut Session, script: &str, restart: &str) {
    session.call(
        "workload.configure",
        json!({
            "workload": {"command": ["/bin/sh", "-c", script], "restart": restart},
            "start": true
        }),
    );
}

#[test]
fn on_failure_leaves_a_clean_exit_down() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir);
    let mut session = open(&agent);
    configure(&mut session, "exit 0", "on_failure");
    let status = session.wait_status("exit", |s| s["state"] == "exited");
    assert_eq!(status["restarts"], 0);
    assert_eq!(status["last_exit"]["code"], 0);
    assert!(status["restart_in_ms"].is_null(), "{status}");
}

#[test]
fn on_failure_restarts_a_failing_workload_after_one_then_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir);
    let mut session = open(&agent);
    configure(&mut session, "exit 3", "on_failure");
    let first = session.wait_status("first backoff", |s| s["state"] == "backoff");
    assert_eq!(first["restarts"], 0);
    assert_eq!(first["last_exit"]["code"], 3);
    assert!(first["restart_in_ms"].as_u64().unwrap() <= 1000, "{first}");
    let second = session.wait_status("second backoff", |s| {
        s["state"] == "backoff" && s["restarts"] == 1
    });
    let wait = second["restart_in_ms"].as_u64().unwrap();
    assert!(wait <= 2000, "the second delay is 2 s: {second}");
}

#[test]
fn never_does_not_restart_even_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir);
    let mut session = open(&agent);
    configure(&mut session, "exit 7", "never");
    let status = session.wait_status("exit", |s| s["state"] == "exited");
    assert_eq!(status["restarts"], 0);
    assert_eq!(status["last_exit"]["code"], 7);
}

#[test]
fn always_restarts_a_clean_exit_too() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir);
    let mut session = open(&agent);
    configure(&mut session, "exit 0", "always");
    let status = session.wait_status("a restart", |s| s["restarts"].as_u64() >= Some(1));
    assert_eq!(status["last_exit"]["code"], 0);
}

#[test]
fn shutdown_with_reboot_hands_the_reboot_to_the_agent_runner() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir);
    let mut session = open(&agent);
    configure(&mut session, "exec sleep 3600", "always");
    let pid = session.wait_status("a running workload", |s| s["state"] == "running")["pid"]
        .as_u64()
        .unwrap();
    assert_eq!(session.call("shutdown", json!({"reboot": true})), json!({}));
    let request = agent.wait_for_shutdown();
    assert!(request.reboot, "the reboot flag reaches the runner");
    agent.quiesce();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the workload is stopped before the reboot"
    );
}

#[test]
fn stats_report_the_next_job_of_the_openclaw_cron_store() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir);
    let mut s = open(&agent);
    assert_eq!(s.call("stats", json!({})).get("next_job_at_ms"), None);
    // What OpenClaw's gateway writes (the columns the agent reads).
    let db = dir.path().join("home/.openclaw/state/openclaw.sqlite");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE cron_jobs (job_id TEXT, enabled INTEGER NOT NULL, state_json TEXT NOT NULL);",
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let due = now + 3_600_000;
    conn.execute(
        "INSERT INTO cron_jobs VALUES ('a', 1, ?1), ('b', 0, ?2)",
        (
            format!(r#"{{"nextRunAtMs":{due}}}"#),
            format!(r#"{{"nextRunAtMs":{}}}"#, now + 60_000),
        ),
    )
    .unwrap();
    assert_eq!(s.call("stats", json!({}))["next_job_at_ms"], json!(due));
}
