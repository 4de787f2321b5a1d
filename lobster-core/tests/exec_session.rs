//! T0: the host's exec client (`Agent::exec`, `ExecSession`) against a
//! scripted agent on loopback speaking the real handshake and frames:
//! output order, stdout apart from stderr, the stdin credit window, exit
//! mapping, and every way a session can fail without hanging.

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

use std::time::Duration;

use lobster_agent_proto::stream::{Frame, STDIN_WINDOW};
use lobster_agent_proto::{ErrorCode, RemoteError, ReplyBody};
use lobster_core::agent::{
    exit_status, Agent, AgentTimeouts, ExecEvent, ExecOutput, ExecParams, WindowSize,
};
use lobster_core::error::{Classify, ErrorKind};
use lobster_testkit::fake_agent::{ScriptedAgent, Step, Transcript};
use serde_json::json;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// No test waits longer than this for the client: a hang fails.
const BOUND: Duration = Duration::from_secs(20);

fn ok(pid: u32) -> ReplyBody {
    ReplyBody::Ok(json!({ "pid": pid }))
}

fn end(exit: serde_json::Value) -> Step {
    Step::Send(Frame::End(exit))
}

fn client(fake: &ScriptedAgent) -> Agent {
    Agent::new(fake.addr(), fake.addr(), TOKEN).with_timeouts(AgentTimeouts {
        connect: Duration::from_secs(2),
        call: Duration::from_secs(5),
    })
}

fn params(argv: &[&str]) -> ExecParams {
    ExecParams {
        argv: argv.iter().map(|a| a.to_string()).collect(),
        ..ExecParams::default()
    }
}

/// Every event until the exit (or the first error).
async fn drain(
    output: &mut ExecOutput,
) -> (Vec<ExecEvent>, Option<lobster_core::agent::AgentError>) {
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(BOUND, output.next()).await {
            Err(_) => panic!("the session hung"),
            Ok(Ok(Some(event))) => events.push(event),
            Ok(Ok(None)) => return (events, None),
            Ok(Err(e)) => return (events, Some(e)),
        }
    }
}

fn clean(transcript: &Transcript) {
    assert!(
        transcript.violations.is_empty(),
        "{:?}",
        transcript.violations
    );
}

#[tokio::test]
async fn output_keeps_its_order_and_stdout_apart_from_stderr() {
    let fake = ScriptedAgent::start(
        TOKEN,
        vec![
            Step::ReplyWith(ok(42), vec![Frame::Stdout(b"one ".to_vec())]),
            Step::Send(Frame::Stderr(b"oops".to_vec())),
            Step::Send(Frame::Stdout(b"two".to_vec())),
            Step::Expect(Frame::StdinClose),
            end(json!({ "code": 3 })),
        ],
    );
    let agent = client(&fake);
    let mut p = params(&["sh", "-c", "echo"]);
    p.env.insert("K".into(), "V".into());
    let session = agent.exec(&p).await.unwrap();
    assert_eq!(session.pid(), 42);
    assert!(!session.tty());
    let (input, mut output) = session.split();
    input.close_stdin().await.unwrap();
    let (events, err) = drain(&mut output).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        events,
        [
            ExecEvent::Stdout(b"one ".to_vec()),
            ExecEvent::Stderr(b"oops".to_vec()),
            ExecEvent::Stdout(b"two".to_vec()),
            ExecEvent::Exit(serde_json::from_value(json!({ "code": 3 })).unwrap()),
        ]
    );
    assert!(
        output.next().await.unwrap().is_none(),
        "nothing after the exit"
    );
    let transcript = fake.finish();
    clean(&transcript);
    let request = transcript.request.unwrap();
    assert_eq!(request.method, "exec.start");
    assert_eq!(request.params["argv"], json!(["sh", "-c", "echo"]));
    assert_eq!(request.params["env"], json!({ "K": "V" }));
}

#[tokio::test]
async fn stdin_beyond_the_window_waits_for_credit() {
    let window = STDIN_WINDOW as usize;
    let extra = 1000;
    let fake = ScriptedAgent::start(
        TOKEN,
        vec![
            Step::Reply(ok(7)),
            Step::ReadStdin(window),
            Step::Silence(Duration::from_millis(400)),
            Step::Send(Frame::Credit(window as u32)),
            Step::ReadStdin(window + extra),
            Step::Expect(Frame::StdinClose),
            end(json!({ "code": 0 })),
        ],
    );
    let agent = client(&fake);
    let (input, mut output) = agent.exec(&params(&["cat"])).await.unwrap().split();
    let data: Vec<u8> = (0..window + extra).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let pump = tokio::spawn(async move {
        input.write_stdin(&sent).await?;
        input.close_stdin().await
    });
    let (events, err) = drain(&mut output).await;
    assert!(err.is_none(), "{err:?}");
    assert!(matches!(events.last(), Some(ExecEvent::Exit(e)) if exit_status(e) == 0));
    pump.await.unwrap().unwrap();
    let transcript = fake.finish();
    clean(&transcript);
    assert_eq!(transcript.stdin_at_silence, [window], "the window held");
    assert_eq!(transcript.stdin(), data);
}

#[tokio::test]
async fn signals_and_resizes_pass_while_stdin_waits_for_credit() {
    let window = STDIN_WINDOW as usize;
    let size = WindowSize {
        rows: 50,
        cols: 132,
    };
    let fake = ScriptedAgent::start(
        TOKEN,
        vec![
            Step::Reply(ok(9)),
            Step::ReadStdin(window),
            Step::Send(Frame::Stdout(b"window full".to_vec())),
            Step::Expect(Frame::Signal(2)),
            Step::Expect(Frame::Resize(size)),
            end(json!({ "signal": 2 })),
        ],
    );
    let agent = client(&fake);
    let (input, mut output) = agent.exec(&params(&["cat"])).await.unwrap().split();
    let stuck = input.clone();
    let pump = tokio::spawn(async move { stuck.write_stdin(&vec![b'x'; window + 10]).await });
    let full = tokio::time::timeout(BOUND, output.next()).await.unwrap();
    assert_eq!(
        full.unwrap(),
        Some(ExecEvent::Stdout(b"window full".to_vec()))
    );
    input.signal(2).await.unwrap();
    input.resize(size).await.unwrap();
    let (events, err) = drain(&mut output).await;
    assert!(err.is_none(), "{err:?}");
    match events.last() {
        Some(ExecEvent::Exit(exit)) => assert_eq!(exit_status(exit), 130),
        other => panic!("{other:?}"),
    }
    let waiting = tokio::time::timeout(BOUND, pump).await.unwrap().unwrap();
    assert!(
        waiting.is_err(),
        "a writer waiting for credit ends with the session"
    );
    clean(&fake.finish());
}

#[tokio::test]
async fn an_agent_timeout_exits_124_and_a_signal_128_plus_n() {
    for (exit, status) in [
        (json!({ "signal": 9, "timed_out": true }), 124),
        (json!({ "signal": 15 }), 143),
        (json!({ "code": 255 }), 255),
    ] {
        let fake = ScriptedAgent::start(TOKEN, vec![Step::Reply(ok(1)), end(exit.clone())]);
        let (_input, mut output) = client(&fake)
            .exec(&params(&["sleep", "9"]))
            .await
            .unwrap()
            .split();
        let (events, err) = drain(&mut output).await;
        assert!(err.is_none(), "{err:?}");
        match events.as_slice() {
            [ExecEvent::Exit(e)] => assert_eq!(exit_status(e), status, "{exit}"),
            other => panic!("{other:?}"),
        }
        clean(&fake.finish());
    }
}

#[tokio::test]
async fn an_error_frame_is_an_error_of_its_kind_with_a_sanitised_message() {
    let fake = ScriptedAgent::start(
        TOKEN,
        vec![
            Step::Reply(ok(1)),
            Step::Send(Frame::Error(RemoteError {
                code: ErrorCode::InvalidState,
                message: "pty lost \x1b]52;c;AAAA\x07".into(),
            })),
        ],
    );
    let (_input, mut output) = client(&fake).exec(&params(&["sh"])).await.unwrap().split();
    let (events, err) = drain(&mut output).await;
    assert!(events.is_empty());
    let err = err.expect("an error");
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    let text = err.to_string();
    assert!(
        text.contains("pty lost") && !text.contains('\x1b'),
        "{text}"
    );
    assert!(output.next().await.unwrap().is_none());
    clean(&fake.finish());
}

#[tokio::test]
async fn an_agent_closing_mid_session_is_an_error_not_a_hang() {
    let fake = ScriptedAgent::start(
        TOKEN,
        vec![
            Step::Reply(ok(1)),
            Step::Send(Frame::Stdout(b"half".to_vec())),
            Step::SendRaw(vec![3, 0, 0, 0, 9, b'x']),
            Step::Close,
        ],
    );
    let (_input, mut output) = client(&fake).exec(&params(&["sh"])).await.unwrap().split();
    let (events, err) = drain(&mut output).await;
    assert_eq!(events, [ExecEvent::Stdout(b"half".to_vec())]);
    let err = err.expect("an error");
    assert_eq!(err.kind(), ErrorKind::GuestFailure, "{err}");
    assert!(err.to_string().contains("closed"), "{err}");
    clean(&fake.finish());
}

#[tokio::test]
async fn a_refused_command_is_not_found_and_a_bad_field_invalid() {
    for (code, kind) in [
        (ErrorCode::NotFound, ErrorKind::NotFound),
        (ErrorCode::BadRequest, ErrorKind::InvalidArgument),
        (ErrorCode::Busy, ErrorKind::Exhausted),
    ] {
        let fake = ScriptedAgent::start(
            TOKEN,
            vec![Step::Reply(ReplyBody::Error(RemoteError {
                code,
                message: "command not found: nosuch".into(),
            }))],
        );
        let err = client(&fake).exec(&params(&["nosuch"])).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert!(
            err.to_string().contains("command not found: nosuch"),
            "{err}"
        );
        clean(&fake.finish());
    }
}

#[tokio::test]
async fn broken_frames_and_unearned_credit_break_the_protocol() {
    for bad in [
        Step::SendRaw(vec![0, 0, 0, 0, 0]),
        Step::SendRaw(vec![3, 0, 1, 0, 1]),
        Step::Send(Frame::Credit(1)),
        Step::Send(Frame::Stdin(b"host frame".to_vec())),
        Step::Send(Frame::End(json!({ "code": "zero" }))),
    ] {
        let fake = ScriptedAgent::start(TOKEN, vec![Step::Reply(ok(1)), bad.clone()]);
        let (_input, mut output) = client(&fake).exec(&params(&["sh"])).await.unwrap().split();
        let (_, err) = drain(&mut output).await;
        let err = err.unwrap_or_else(|| panic!("{bad:?} passed"));
        assert!(
            err.to_string().contains("broke the protocol"),
            "{bad:?}: {err}"
        );
        assert_eq!(err.kind(), ErrorKind::GuestFailure);
        clean(&fake.finish());
    }
}

#[tokio::test]
async fn an_agent_that_never_answers_exec_start_times_out() {
    let fake = ScriptedAgent::start(TOKEN, vec![Step::Silence(Duration::from_secs(3))]);
    let agent = Agent::new(fake.addr(), fake.addr(), TOKEN).with_timeouts(AgentTimeouts {
        connect: Duration::from_millis(500),
        call: Duration::from_millis(500),
    });
    let err = agent.exec(&params(&["sh"])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    fake.finish();
}
