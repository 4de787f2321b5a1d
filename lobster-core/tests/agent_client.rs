//! T0: the host-side `Agent` client against a real `lobster-agent` running
//! in this process (loopback, ephemeral ports, state in a temp dir), plus
//! hostile fake agents for the client's bounds.

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use lobster_agent::{Agent as GuestAgent, AgentConfig};
use lobster_core::agent::{
    Agent, AgentError, AgentTimeouts, ErrorCode, LogSource, OpenClawSpec, RestartPolicy, Secret,
    WorkloadSpec, WorkloadState,
};
use lobster_core::error::{Classify, ErrorKind};
use lobster_testkit::poll::until_async;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

struct Fixture {
    dir: tempfile::TempDir,
    guest: GuestAgent,
    agent: Agent,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let guest = GuestAgent::start(AgentConfig::for_host_process(dir.path(), TOKEN)).unwrap();
    let agent = Agent::new(guest.rpc_addr(), guest.health_addr(), TOKEN);
    Fixture { dir, guest, agent }
}

impl Fixture {
    /// A raw connection to the guest's RPC port (replies within 5 s).
    fn raw(&self) -> TcpStream {
        let s = TcpStream::connect(self.guest.rpc_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }
}

/// The first line `s` receives.
fn first_line(s: TcpStream) -> String {
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line
}

fn shell(script: &str) -> WorkloadSpec {
    WorkloadSpec {
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: BTreeMap::new(),
        cwd: None,
        openclaw: None,
        restart: RestartPolicy::Always,
        port: None,
    }
}

async fn log_contains(agent: &Agent, needle: &str) -> Option<()> {
    let logs = agent.logs(LogSource::Workload, 200).await.unwrap();
    logs.lines.iter().any(|l| l.contains(needle)).then_some(())
}

#[tokio::test]
async fn hello_with_the_right_token_lists_every_method() {
    let f = fixture();
    let hello = f.agent.hello().await.unwrap();
    assert_eq!(hello.protocol, lobster_agent_proto::PROTOCOL_VERSION);
    assert!(hello.methods.iter().any(|m| m == "workload.configure"));
}

#[tokio::test]
async fn a_wrong_token_is_refused_with_permission_denied() {
    let f = fixture();
    let wrong = Agent::new(f.guest.rpc_addr(), f.guest.health_addr(), "not-the-token");
    let err = wrong.stats().await.unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::Remote {
                code: ErrorCode::Unauthorized,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    let err = wrong.health().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
}

#[test]
fn a_request_without_token_gets_unauthorized_and_the_connection_closes() {
    let f = fixture();
    let mut s = f.raw();
    s.write_all(b"{\"id\":9,\"method\":\"stats\"}\n").unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(
        line.contains("\"id\":9") && line.contains("unauthorized"),
        "{line}"
    );
    line.clear();
    assert_eq!(
        r.read_line(&mut line).unwrap(),
        0,
        "connection closed after refusal"
    );
}

#[test]
fn a_per_request_token_authenticates_one_shot_callers() {
    let f = fixture();
    let mut s = f.raw();
    writeln!(
        s,
        "{{\"id\":1,\"method\":\"hold.list\",\"token\":\"{TOKEN}\"}}"
    )
    .unwrap();
    let line = first_line(s);
    assert_eq!(line.trim(), r#"{"id":1,"ok":{"holds":[]}}"#);
}

#[test]
fn an_oversized_request_is_refused_without_buffering_it() {
    let f = fixture();
    let mut s = f.raw();
    let chunk = vec![b'x'; 64 * 1024];
    // Keep writing past the cap; the agent answers and closes, so a write fails eventually.
    for _ in 0..64 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    assert!(line.contains("too_large"), "{line}");
}

#[test]
fn a_wrong_protocol_version_is_refused() {
    let f = fixture();
    let mut s = f.raw();
    writeln!(
        s,
        "{{\"id\":1,\"method\":\"hello\",\"params\":{{\"protocol\":99,\"token\":\"{TOKEN}\"}}}}"
    )
    .unwrap();
    let line = first_line(s);
    assert!(line.contains("unsupported_version"), "{line}");
}

#[tokio::test]
async fn health_port_answers_health_and_nothing_else() {
    let f = fixture();
    let h = f.agent.health().await.unwrap();
    assert_eq!(h.workload, WorkloadState::Unconfigured);
    // Point the RPC side at the health port: stats must be refused there.
    let on_health = Agent::new(f.guest.health_addr(), f.guest.health_addr(), TOKEN);
    let err = on_health.stats().await.unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::Remote {
                code: ErrorCode::UnknownMethod,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn injected_secrets_reach_the_workload_environment_and_are_stored_0600() {
    let f = fixture();
    let r = f
        .agent
        .inject_secrets(
            [("API_KEY".to_string(), "sk-test-4242".to_string())].into(),
            false,
        )
        .await
        .unwrap();
    assert_eq!(r.names, ["API_KEY"]);
    let status = f
        .agent
        .configure(
            shell("echo \"key=$API_KEY home=$HOME\"; exec sleep 600"),
            true,
        )
        .await
        .unwrap();
    assert_eq!(status.state, WorkloadState::Running);
    until_async(
        "the secret in the workload log",
        Duration::from_secs(5),
        || log_contains(&f.agent, "key=sk-test-4242"),
    )
    .await;
    let mode = std::fs::metadata(f.dir.path().join("state/secrets.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let agent_log = f.agent.logs(LogSource::Agent, 1000).await.unwrap();
    assert!(
        agent_log.lines.iter().all(|l| !l.contains("sk-test-4242")),
        "secret leaked into the agent log"
    );
    f.agent.stop(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test]
async fn workload_stop_start_restart_and_status() {
    let f = fixture();
    let err = f.agent.start().await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidState,
        "start before configure"
    );
    f.agent
        .configure(shell("exec sleep 600"), false)
        .await
        .unwrap();
    assert_eq!(
        f.agent.status().await.unwrap().state,
        WorkloadState::Stopped
    );
    let running = f.agent.start().await.unwrap();
    let pid = running.pid.unwrap();
    assert_eq!(running.state, WorkloadState::Running);
    let restarted = f.agent.restart(Duration::from_secs(2)).await.unwrap();
    assert_ne!(restarted.pid.unwrap(), pid);
    let stopped = f.agent.stop(Duration::from_secs(2)).await.unwrap();
    assert_eq!(stopped.state, WorkloadState::Stopped);
    assert_eq!(stopped.last_exit.unwrap().signal, Some(15));
    assert!(!std::path::Path::new(&format!("/proc/{}", restarted.pid.unwrap())).exists());
}

#[tokio::test]
async fn a_workload_ignoring_sigterm_is_killed_after_the_grace_time() {
    let f = fixture();
    f.agent
        .configure(
            shell("trap '' TERM; echo armed; while :; do sleep 0.1; done"),
            true,
        )
        .await
        .unwrap();
    until_async("the trap to be set", Duration::from_secs(5), || {
        log_contains(&f.agent, "armed")
    })
    .await;
    let stopped = f.agent.stop(Duration::from_millis(300)).await.unwrap();
    assert_eq!(stopped.state, WorkloadState::Stopped);
    assert_eq!(stopped.last_exit.unwrap().signal, Some(9));
}

#[tokio::test]
async fn a_crashing_workload_is_restarted_with_backoff() {
    let f = fixture();
    f.agent
        .configure(shell("echo run; exit 3"), true)
        .await
        .unwrap();
    // After its first restart the workload crashes again and waits out a
    // backoff of 2 s (1 s doubling per restart): long enough to be seen.
    let s = until_async(
        "a backoff after a restart",
        Duration::from_secs(10),
        || async {
            let s = f.agent.status().await.unwrap();
            (s.state == WorkloadState::Backoff && s.restarts >= 1).then_some(s)
        },
    )
    .await;
    assert_eq!(s.last_exit.unwrap().code, Some(3));
    let backoff_ms = (1000u64 << s.restarts.min(5)).min(30_000);
    assert!(
        s.restart_in_ms.unwrap() <= backoff_ms,
        "the backoff after {} restarts is {backoff_ms} ms: {s:?}",
        s.restarts
    );
    // The agent announced each wait: 1 s, then 2 s.
    let log = f.agent.logs(LogSource::Agent, 1000).await.unwrap();
    let waits: Vec<&str> = log
        .lines
        .iter()
        .filter_map(|l| l.split_once("workload: restarting in ").map(|(_, w)| w))
        .collect();
    assert_eq!(waits[..2], ["1s", "2s"], "{:?}", log.lines);
    // With `never` the workload stays down.
    let mut once = shell("exit 0");
    once.restart = RestartPolicy::Never;
    f.agent.configure(once, true).await.unwrap();
    until_async("exited state", Duration::from_secs(5), || async {
        (f.agent.status().await.unwrap().state == WorkloadState::Exited).then_some(())
    })
    .await;
}

#[tokio::test]
async fn logs_are_followable_and_sanitised() {
    let f = fixture();
    f.agent
        .configure(shell("printf 'evil \\033]0;title\\007 end\\n'; i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done"), true)
        .await
        .unwrap();
    until_async("first ticks", Duration::from_secs(5), || {
        log_contains(&f.agent, "tick 2")
    })
    .await;
    let tail = f.agent.logs(LogSource::Workload, 1000).await.unwrap();
    assert!(
        tail.lines.iter().any(|l| l == "evil ^[]0;title^G end"),
        "{:?}",
        tail.lines
    );
    let mut stream = f.agent.follow_logs(LogSource::Workload, 1).await.unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 4 && Instant::now() < deadline {
        if let Some(line) = stream.next_line(Duration::from_secs(1)).await.unwrap() {
            seen.push(line);
        }
    }
    assert!(
        seen.len() >= 4 && seen.iter().all(|l| l.starts_with("tick ")),
        "{seen:?}"
    );
    let n = |l: &String| l[5..].parse::<u32>().unwrap();
    assert!(
        seen.windows(2).all(|w| n(&w[1]) == n(&w[0]) + 1),
        "lines in order without gaps: {seen:?}"
    );
    f.agent.stop(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test]
async fn openclaw_config_is_written_as_the_original_does() {
    let f = fixture();
    let mut spec = shell("cat \"$HOME/.openclaw/openclaw.json\" | tr -d ' \\n'; echo; echo \"port=$OPENCLAW_GATEWAY_PORT env=$NODE_ENV\"; exec sleep 600");
    spec.openclaw = Some(OpenClawSpec {
        port: 9000,
        gateway_token: Secret("gw-token".into()),
        extra: serde_json::Value::Null,
    });
    f.agent.configure(spec, true).await.unwrap();
    let expected = r#"{"gateway":{"auth":{"mode":"token","token":"gw-token"},"bind":"custom","customBindHost":"0.0.0.0","mode":"local","port":9000}}"#;
    until_async("the config in the log", Duration::from_secs(5), || {
        log_contains(&f.agent, expected)
    })
    .await;
    until_async("the env in the log", Duration::from_secs(5), || {
        log_contains(&f.agent, "port=9000 env=production")
    })
    .await;
    let path = f.dir.path().join("home/.openclaw/openclaw.json");
    assert_eq!(
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    f.agent.stop(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test]
async fn bad_workload_specs_are_refused() {
    let f = fixture();
    let mut spec = shell("true");
    spec.env.insert("BAD-NAME".into(), "x".into());
    let err = f.agent.configure(spec, false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let mut spec = shell("true");
    spec.cwd = Some("relative".into());
    let err = f.agent.configure(spec, false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.to_string()
            .contains("workload.cwd must be an absolute path"),
        "{err}"
    );
}

#[tokio::test]
async fn stats_report_memory_load_connections_and_uptime() {
    let f = fixture();
    let s = f.agent.stats().await.unwrap();
    assert!(s.memory.total_kib > 0 && s.memory.available_kib <= s.memory.total_kib);
    assert!(s.uptime_ms > 0);
    assert!(
        s.connections.established >= 1,
        "our own connection is established"
    );
    assert!(s.connections.listening >= 2, "both agent ports listen");
    assert_eq!(s.workload_rss_kib, None);
    f.agent
        .configure(shell("exec sleep 600"), true)
        .await
        .unwrap();
    assert!(f.agent.stats().await.unwrap().workload_rss_kib.unwrap() > 0);
    f.agent.stop(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test]
async fn holds_are_acquired_renewed_listed_and_released() {
    let f = fixture();
    f.agent
        .hold_acquire("exec-1", Duration::from_secs(60))
        .await
        .unwrap();
    // Long enough to be counted below on a busy machine; then awaited.
    f.agent
        .hold_acquire("short", Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(f.agent.stats().await.unwrap().holds, 2);
    f.agent
        .hold_renew("exec-1", Duration::from_secs(120))
        .await
        .unwrap();
    until_async(
        "the short hold to expire",
        Duration::from_secs(15),
        || async { (f.agent.holds().await.unwrap().len() == 1).then_some(()) },
    )
    .await;
    assert!(f.agent.hold_release("exec-1").await.unwrap());
    assert!(!f.agent.hold_release("exec-1").await.unwrap());
    let err = f
        .agent
        .hold_renew("exec-1", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = f.agent.hold_acquire("x", Duration::ZERO).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn set_time_is_refused_outside_a_guest() {
    let f = fixture();
    let err = f
        .agent
        .set_time(std::time::SystemTime::now())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
}

#[tokio::test]
async fn shutdown_stops_the_workload_and_releases_the_agent() {
    let f = fixture();
    let pid = f
        .agent
        .configure(shell("exec sleep 600"), true)
        .await
        .unwrap()
        .pid
        .unwrap();
    f.agent.shutdown(false).await.unwrap();
    let guest = f.guest;
    let params = tokio::task::spawn_blocking(move || {
        let p = guest.wait_for_shutdown();
        guest.quiesce();
        p
    })
    .await
    .unwrap();
    assert!(!params.reboot);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "workload stopped"
    );
}

#[tokio::test]
async fn a_running_workload_is_started_again_by_a_new_agent_process() {
    let dir = tempfile::tempdir().unwrap();
    let first = GuestAgent::start(AgentConfig::for_host_process(dir.path(), TOKEN)).unwrap();
    let agent = Agent::new(first.rpc_addr(), first.health_addr(), TOKEN);
    agent
        .configure(shell("exec sleep 600"), true)
        .await
        .unwrap();
    let old = agent.status().await.unwrap().pid.unwrap();
    // A second agent on the same state dir (as after an agent crash or a
    // guest reboot) kills the stale group and starts the workload again.
    let second = GuestAgent::start(AgentConfig::for_host_process(dir.path(), TOKEN)).unwrap();
    let agent2 = Agent::new(second.rpc_addr(), second.health_addr(), TOKEN);
    let status = agent2.status().await.unwrap();
    assert_eq!(status.state, WorkloadState::Running);
    assert_ne!(status.pid.unwrap(), old);
    until_async(
        "the stale workload to die",
        Duration::from_secs(5),
        || async {
            let stat = std::fs::read_to_string(format!("/proc/{old}/stat")).unwrap_or_default();
            (stat.is_empty() || stat.contains(") Z ")).then_some(())
        },
    )
    .await;
    agent2.stop(Duration::from_secs(2)).await.unwrap();
    second.quiesce();
    drop(first);
}

// --- hostile agents: the client's own bounds -------------------------------

async fn fake_agent(reply: &'static [u8], repeat: bool) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        loop {
            if s.write_all(reply).await.is_err() || !repeat {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    addr
}

#[tokio::test]
async fn an_endless_reply_line_is_cut_off_at_the_cap() {
    let addr = fake_agent(&[b'A'; 64 * 1024], true).await;
    let agent = Agent::new(addr, addr, TOKEN);
    let err = agent.hello().await.unwrap_err();
    assert!(matches!(err, AgentError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("exceeds"), "{err}");
}

#[tokio::test]
async fn a_silent_agent_times_out() {
    let addr = fake_agent(b"", false).await;
    let agent = Agent::new(addr, addr, TOKEN).with_timeouts(AgentTimeouts {
        connect: Duration::from_millis(300),
        call: Duration::from_millis(300),
    });
    let err = agent.stats().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
}

#[tokio::test]
async fn a_misnumbered_reply_is_a_protocol_error() {
    let addr = fake_agent(b"{\"id\":77,\"ok\":{}}\n", false).await;
    let err = Agent::new(addr, addr, TOKEN).hello().await.unwrap_err();
    assert!(matches!(err, AgentError::Protocol { .. }), "{err:?}");
}

#[tokio::test]
async fn a_refused_connection_is_a_guest_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Agent::new(addr, addr, TOKEN).stats().await.unwrap_err();
    assert!(matches!(err, AgentError::Connect { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::GuestFailure);
}

#[tokio::test]
async fn a_guest_hold_is_renewed_while_it_lives_and_released_when_it_goes() {
    use lobster_core::tenant::{GuestHold, HoldTiming};
    let f = fixture();
    let timing = HoldTiming {
        ttl: Duration::from_millis(1_000),
        renew_every: Duration::from_millis(250),
    };
    let holder = Agent::new(f.guest.rpc_addr(), f.guest.health_addr(), TOKEN);
    let hold = GuestHold::acquire(holder, "logs", timing).await.unwrap();
    assert!(hold.id().starts_with("lobster-logs-"), "{}", hold.id());
    let held = |id: String| {
        let agent = &f.agent;
        async move { agent.holds().await.unwrap().iter().any(|h| h.id == id) }
    };
    assert!(held(hold.id().into()).await);
    // Well past its time to live: still held, because it is renewed.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(held(hold.id().into()).await, "renewed while the hold lives");
    let id = hold.id().to_string();
    drop(hold);
    until_async(
        "the dropped hold is released",
        Duration::from_secs(5),
        || {
            let id = id.clone();
            async { (!held(id).await).then_some(()) }
        },
    )
    .await;
    // An explicit release, and one that outlives nothing.
    let holder = Agent::new(f.guest.rpc_addr(), f.guest.health_addr(), TOKEN);
    let hold = GuestHold::acquire(holder, "molt", timing).await.unwrap();
    let id = hold.id().to_string();
    hold.release().await;
    assert!(!held(id).await, "released at once");
    // A refused acquire is an error, not a silent missing hold.
    let wrong = Agent::new(f.guest.rpc_addr(), f.guest.health_addr(), "not-the-token");
    let err = GuestHold::acquire(wrong, "logs", timing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
}
