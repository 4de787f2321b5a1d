//! T0: `exec.start` against the `lobster-agent` binary as a host process:
//! exit codes and signals, separate stdout and stderr, stdin with credit,
//! a PTY and its resize, the timeout, the host's disconnect, the session
//! cap, authentication, users, and refusals naming the field.

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{exec_start, process_gone, until, Exec, OwnAgent};
use lobster_agent_proto::stream::{Frame, WindowSize, STDIN_WINDOW};
use serde_json::{json, Value};

const TOKEN: &str = "exec-token";

/// An agent for one test, killed (by pid) at the end.
struct Agent(OwnAgent);

impl std::ops::Deref for Agent {
    type Target = OwnAgent;
    fn deref(&self) -> &OwnAgent {
        &self.0
    }
}

impl Agent {
    fn start(flags: &[&str]) -> Agent {
        Agent(OwnAgent::start(TOKEN, flags))
    }

    fn exec(&self, params: Value) -> Exec {
        exec_start(&self.agent.rpc, TOKEN, params.clone())
            .unwrap_or_else(|e| panic!("exec.start {params} refused: {e}"))
    }

    fn refusal(&self, params: Value) -> (String, String) {
        let e = exec_start(&self.agent.rpc, TOKEN, params)
            .map(|x| x.pid)
            .expect_err("exec.start should be refused");
        (
            e["code"].as_str().unwrap().to_owned(),
            e["message"].as_str().unwrap().to_owned(),
        )
    }
}

#[test]
fn exit_codes_come_back_in_end() {
    let agent = Agent::start(&[]);
    let out = agent.exec(json!({"argv": ["true"]})).finish();
    assert_eq!(out.exit().code, Some(0));
    assert_eq!(out.exit().signal, None);
    let out = agent.exec(json!({"argv": ["sh", "-c", "exit 3"]})).finish();
    assert_eq!(out.exit().code, Some(3));
    assert!(!out.exit().timed_out);
}

#[test]
fn a_missing_command_is_not_found_before_any_upgrade() {
    let agent = Agent::start(&[]);
    let mut s = common::Session::open(TcpStream::connect(&agent.agent.rpc).unwrap(), TOKEN);
    let line = s.line("exec.start", json!({"argv": ["no-such-command-4711"]}));
    let reply: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(reply["error"]["code"], "not_found", "{line}");
    assert_eq!(
        reply["error"]["message"],
        "command not found: no-such-command-4711"
    );
    // Still JSON lines: the connection serves the next request.
    s.call("health", json!({}));
}

#[test]
fn a_process_killed_by_a_signal_reports_it() {
    let agent = Agent::start(&[]);
    let out = agent
        .exec(json!({"argv": ["sh", "-c", "kill -TERM $$"]}))
        .finish();
    assert_eq!(out.exit().signal, Some(15));
    assert_eq!(out.exit().code, None);
}

#[test]
fn a_signal_frame_reaches_the_process_group() {
    let agent = Agent::start(&[]);
    let mut exec = agent.exec(json!({"argv": ["sh", "-c", "echo up; sleep 30"]}));
    assert_eq!(exec.next(), Some(Frame::Stdout(b"up\n".to_vec())));
    exec.send(&Frame::Signal(9));
    let out = exec.finish();
    assert_eq!(out.exit().signal, Some(9));
}

#[test]
fn stdout_and_stderr_stay_apart() {
    let agent = Agent::start(&[]);
    let out = agent
        .exec(json!({"argv": ["sh", "-c", "echo out; echo err >&2; echo more"]}))
        .finish();
    assert_eq!(out.out(), "out\nmore\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.exit().code, Some(0));
}

#[test]
fn environment_cwd_and_argv_reach_the_process() {
    let agent = Agent::start(&[]);
    let out = agent
        .exec(json!({
            "argv": ["sh", "-c", "echo \"$1|$GREETING|$PATH|$(pwd)\"", "sh", "a b"],
            "env": {"GREETING": "hi"},
            "cwd": "/tmp",
        }))
        .finish();
    let line = out.out();
    let fields: Vec<&str> = line.trim_end().split('|').collect();
    assert_eq!(fields[0], "a b");
    assert_eq!(fields[1], "hi");
    assert!(fields[2].contains("/usr/bin"), "{line}");
    assert_eq!(fields[3], "/tmp");
}

#[test]
fn the_agents_token_and_environment_do_not_leak_into_the_process() {
    let agent = Agent::start(&[]);
    let out = agent.exec(json!({"argv": ["env"]})).finish();
    let env = out.out();
    assert!(!env.contains(TOKEN), "{env}");
    assert!(!env.contains("CARGO"), "{env}");
    assert!(env.contains("LANG=C.UTF-8"), "{env}");
}

#[test]
fn stdin_reaches_the_process_and_closing_it_ends_cat() {
    let agent = Agent::start(&[]);
    let out = agent.exec(json!({"argv": ["cat"]})).feed(b"hello, cat");
    assert_eq!(out.out(), "hello, cat");
    assert_eq!(out.credited, 10);
    assert_eq!(out.exit().code, Some(0));
}

#[test]
fn sixteen_mib_of_stdin_pass_within_the_window_intact() {
    let agent = Agent::start(&[]);
    let mut input = vec![0u8; 16 << 20];
    let mut x: u32 = 0x1234_5678;
    for b in input.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let mut local = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    local.stdin.take().unwrap().write_all(&input).unwrap();
    let expected = local.wait_with_output().unwrap().stdout;

    let out = agent.exec(json!({"argv": ["sha256sum"]})).feed(&input);
    assert_eq!(out.exit().code, Some(0));
    assert_eq!(out.out(), String::from_utf8_lossy(&expected));
    assert_eq!(out.credited, input.len() as u64, "every byte credited");
}

#[test]
fn stdin_beyond_the_window_is_a_protocol_error_and_kills_the_process() {
    let agent = Agent::start(&[]);
    // sleep never reads stdin: beyond what its pipe holds (64 KiB), no
    // credit comes back, and the host does not wait for any.
    let mut exec = agent.exec(json!({"argv": ["sleep", "30"]}));
    let pid = exec.pid;
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < STDIN_WINDOW as usize + 2 * chunk.len() {
        exec.send(&Frame::Stdin(chunk.clone()));
        sent += chunk.len();
    }
    let out = exec.finish();
    match out.last {
        Some(Frame::Error(e)) => {
            assert_eq!(e.code.as_str(), "bad_request");
            assert!(e.message.contains("window"), "{}", e.message);
        }
        other => panic!("expected an Error frame, got {other:?}"),
    }
    until("the process to be gone", Duration::from_secs(5), || {
        process_gone(pid).then_some(())
    });
}

#[test]
fn a_malformed_frame_is_a_protocol_error() {
    let agent = Agent::start(&[]);
    let mut exec = agent.exec(json!({"argv": ["sleep", "30"]}));
    exec.send(&Frame::Stdout(b"not yours".to_vec()));
    let out = exec.finish();
    assert!(
        matches!(&out.last, Some(Frame::Error(e)) if e.message.contains("stdout frame")),
        "{out:?}"
    );
    let mut exec = agent.exec(json!({"argv": ["sleep", "30"]}));
    exec.send(&Frame::Signal(99));
    let out = exec.finish();
    assert!(
        matches!(&out.last, Some(Frame::Error(e)) if e.message.contains("signal: 99")),
        "{out:?}"
    );
}

#[test]
fn a_pty_session_has_a_terminal_that_follows_resize() {
    let agent = Agent::start(&[]);
    let out = agent
        .exec(json!({"argv": ["tty"], "tty": {"rows": 24, "cols": 80}}))
        .finish();
    assert!(out.out().starts_with("/dev/pts/"), "{out:?}");
    assert!(out.stderr.is_empty());
    assert_eq!(out.exit().code, Some(0));

    let mut exec = agent.exec(json!({
        "argv": ["sh", "-c", "stty size; read line; stty size; echo err >&2"],
        "tty": {"rows": 24, "cols": 80},
    }));
    let mut seen = Vec::new();
    until("the first size", Duration::from_secs(10), || {
        if let Some(Frame::Stdout(b)) = exec.next() {
            seen.extend(b);
        }
        String::from_utf8_lossy(&seen)
            .contains("24 80")
            .then_some(())
    });
    exec.send(&Frame::Resize(WindowSize {
        rows: 40,
        cols: 120,
    }));
    exec.send(&Frame::Stdin(b"go\r".to_vec()));
    let out = exec.finish();
    let text = out.out();
    assert!(text.contains("40 120"), "{text:?}");
    assert!(
        text.contains("err"),
        "stderr goes to the terminal: {text:?}"
    );
    assert!(out.stderr.is_empty());
    assert_eq!(out.exit().code, Some(0));
}

#[test]
fn the_timeout_kills_the_process_and_says_so() {
    let agent = Agent::start(&[]);
    let started = Instant::now();
    let out = agent
        .exec(json!({"argv": ["sleep", "30"], "timeout_ms": 300}))
        .finish();
    assert!(out.exit().timed_out, "{out:?}");
    assert_eq!(out.exit().signal, Some(15));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_process_ignoring_sigterm_is_killed_after_the_grace() {
    let agent = Agent::start(&[]);
    let started = Instant::now();
    let out = agent
        .exec(json!({
            "argv": ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"],
            "timeout_ms": 200,
        }))
        .finish();
    assert_eq!(out.out(), "ready\n");
    assert!(out.exit().timed_out);
    assert_eq!(out.exit().signal, Some(9), "{out:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "SIGKILL came before the grace"
    );
}

#[test]
fn a_background_child_holding_the_pipe_does_not_wedge_the_session() {
    let agent = Agent::start(&[]);
    let started = Instant::now();
    let out = agent
        .exec(json!({"argv": ["sh", "-c", "sleep 30 & echo $!"]}))
        .finish();
    assert_eq!(out.exit().code, Some(0));
    assert!(started.elapsed() < Duration::from_secs(10));
    let grandchild: u32 = out.out().trim().parse().unwrap();
    until(
        "the background child to be killed with its group",
        Duration::from_secs(5),
        || process_gone(grandchild).then_some(()),
    );
}

#[test]
fn a_host_that_goes_away_takes_the_process_with_it() {
    let agent = Agent::start(&[]);
    let exec = agent.exec(json!({"argv": ["sleep", "30"]}));
    let pid = exec.pid;
    assert!(!process_gone(pid));
    exec.hang_up();
    until("the process to be gone", Duration::from_secs(5), || {
        process_gone(pid).then_some(())
    });
}

#[test]
fn sessions_beyond_the_cap_are_busy_until_one_ends() {
    let agent = Agent::start(&["--max-exec-sessions", "2"]);
    let mut first = agent.exec(json!({"argv": ["sleep", "30"]}));
    let _second = agent.exec(json!({"argv": ["sleep", "30"]}));
    let (code, message) = agent.refusal(json!({"argv": ["true"]}));
    assert_eq!(code, "busy");
    assert_eq!(
        message,
        "2 sessions (exec and file copies) are running already"
    );
    first.send(&Frame::Signal(9));
    first.finish();
    let out = agent.exec(json!({"argv": ["true"]})).finish();
    assert_eq!(out.exit().code, Some(0));
}

#[test]
fn an_unauthenticated_connection_cannot_exec() {
    let agent = Agent::start(&[]);
    let marker = agent.dir.path().join("ran");
    let argv = json!(["touch", marker.to_str().unwrap()]);
    // No hello at all, then a wrong token on the request itself.
    for token in [None, Some("wrong-token")] {
        let mut stream = TcpStream::connect(&agent.agent.rpc).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut request = json!({"id": 1, "method": "exec.start", "params": {"argv": argv}});
        if let Some(token) = token {
            request["token"] = json!(token);
        }
        writeln!(stream, "{request}").unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&stream), &mut line).unwrap();
        assert!(line.contains("unauthorized"), "{line}");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(!marker.exists(), "a refused request ran its command");
}

#[test]
fn bad_params_are_refused_naming_the_field() {
    let agent = Agent::start(&[]);
    let cases = [
        (json!({"argv": []}), "argv: must name a program"),
        (
            json!({"argv": ["true"], "cwd": "/etc/hostname"}),
            "cwd: `/etc/hostname` is not a directory",
        ),
        (
            json!({"argv": ["true"], "user": "no-such-user-4711"}),
            "user: no user `no-such-user-4711`",
        ),
        (
            json!({"argv": ["true"], "tty": {"rows": 0, "cols": 80}}),
            "tty: rows and cols must be positive",
        ),
        (
            json!({"argv": ["true", "a\u{0}b"]}),
            "argv[1]: contains a NUL byte",
        ),
    ];
    for (params, message) in cases {
        let (code, got) = agent.refusal(params);
        assert_eq!((code.as_str(), got.as_str()), ("bad_request", message));
    }
    let (code, message) = agent.refusal(json!({"argv": ["true"], "bogus": 1}));
    assert_eq!(code, "bad_request");
    assert!(message.contains("bogus"), "{message}");
}

#[test]
fn a_session_runs_as_the_requested_user() {
    let agent = Agent::start(&[]);
    let params = json!({"argv": ["sh", "-c", "id -u; id -g; echo $USER"], "user": "nobody"});
    if rustix::process::getuid().is_root() {
        let out = agent.exec(params).finish();
        let text = out.out();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "65534", "{text}");
        assert_eq!(lines[2], "nobody", "{text}");
        assert_eq!(out.exit().code, Some(0));
    } else {
        eprintln!("NOTE: not root: checking the refusal to switch users instead");
        let (code, message) = agent.refusal(params);
        assert_eq!(code, "bad_request");
        assert!(message.contains("cannot become uid 65534"), "{message}");
    }
}

#[test]
fn hello_lists_exec() {
    let agent = Agent::start(&[]);
    let mut s = common::Session::open(TcpStream::connect(&agent.agent.rpc).unwrap(), TOKEN);
    let hello = s.call("hello", json!({"protocol": 1, "token": TOKEN}));
    let methods: Vec<&str> = hello["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(methods.contains(&"exec.start"), "{methods:?}");
}
