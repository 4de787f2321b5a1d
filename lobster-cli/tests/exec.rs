//! `lobsterd exec` as a process against a scripted agent on the tenant's
//! (loopback) guest address: output and exit status passed through, stdin
//! pumped with `-i` and closed without, the hold taken, flags sent as the
//! request's fields.

mod common;

use std::process::Stdio;

use common::{all, code, host_with_agent, text};
use lobster_testkit::fake_agent::{ErrorCode, Frame, RemoteError, ReplyBody, Step, Transcript};
use serde_json::json;

fn ok() -> Step {
    Step::Reply(ReplyBody::Ok(json!({ "pid": 100 })))
}

fn end(exit: serde_json::Value) -> Step {
    Step::Send(Frame::End(exit))
}

fn clean(t: &Transcript) {
    assert!(t.violations.is_empty(), "{:?}", t.violations);
    assert!(
        t.holds.contains(&"hold.acquire".to_owned()),
        "{:?}",
        t.holds
    );
}

#[test]
fn output_and_exit_status_pass_through_and_flags_become_fields() {
    let (env, agent) = host_with_agent(
        91,
        vec![
            ok(),
            Step::Send(Frame::Stdout(b"out\n".to_vec())),
            Step::Send(Frame::Stderr(b"err\n".to_vec())),
            Step::Expect(Frame::StdinClose),
            end(json!({ "code": 7 })),
        ],
    );
    let out = env.run(&[
        "exec",
        "alpha",
        "-e",
        "A=b=c",
        "-w",
        "/srv",
        "-u",
        "app",
        "--timeout",
        "5",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(code(&out), 7, "{}", all(&out));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    let t = agent.finish();
    clean(&t);
    let params = &t.request.unwrap().params;
    assert_eq!(params["argv"], json!(["sh", "-c", "exit 7"]));
    assert_eq!(params["env"], json!({ "A": "b=c" }));
    assert_eq!(params["cwd"], "/srv");
    assert_eq!(params["user"], "app");
    assert_eq!(params["timeout_ms"], 5000);
    assert!(params.get("tty").is_none());
}

#[test]
fn interactive_stdin_is_sent_then_closed_and_a_signal_exit_is_128_plus_n() {
    let (env, agent) = host_with_agent(
        92,
        vec![
            ok(),
            Step::Expect(Frame::StdinClose),
            end(json!({ "signal": 9 })),
        ],
    );
    let mut child = env
        .command(&["exec", "-i", "alpha", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello\nworld\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 137, "{}", all(&out));
    let t = agent.finish();
    clean(&t);
    assert_eq!(t.stdin(), b"hello\nworld\n");
}

#[test]
fn a_command_killed_for_its_timeout_exits_124() {
    let (env, agent) = host_with_agent(
        93,
        vec![ok(), end(json!({ "signal": 9, "timed_out": true }))],
    );
    let out = env.run(&["exec", "alpha", "--timeout", "1", "--", "sleep", "60"]);
    assert_eq!(code(&out), 124, "{}", all(&out));
    clean(&agent.finish());
}

#[test]
fn a_command_the_guest_does_not_have_exits_127_as_in_a_shell() {
    let (env, agent) = host_with_agent(
        94,
        vec![Step::Reply(ReplyBody::Error(RemoteError {
            code: ErrorCode::NotFound,
            message: "command not found: nosuch".into(),
        }))],
    );
    let out = env.run(&["exec", "alpha", "--", "nosuch"]);
    assert_eq!(code(&out), 127, "{}", all(&out));
    assert!(
        text(&out.stderr).contains("command not found: nosuch"),
        "{}",
        all(&out)
    );
    clean(&agent.finish());
}

/// Whether process `pid` catches signal `n` (its `SigCgt` mask).
fn catches(pid: u32, n: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (n - 1)) != 0)
}

#[test]
fn sigterm_is_forwarded_and_lobsterd_leaves_when_the_command_does_not_end() {
    // The agent takes the signal and never ends the command (a guest gone
    // quiet): lobsterd must not wait forever.
    let (env, agent) = host_with_agent(
        90,
        vec![
            ok(),
            Step::Expect(Frame::Signal(15)),
            Step::Silence(std::time::Duration::from_secs(10)),
        ],
    );
    let child = env
        .command(&["exec", "alpha", "--", "sleep", "100"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    lobster_testkit::poll::until(
        "lobsterd to catch SIGTERM (its session runs)",
        std::time::Duration::from_secs(20),
        || catches(pid, 15).then_some(()),
    );
    common::sigterm(pid);
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 143, "{}", all(&out));
    let t = agent.finish();
    assert!(t.frames.contains(&Frame::Signal(15)), "{:?}", t.frames);
}
