//! T1: `lobsterd exec -it` in a real terminal (a private tmux server, as
//! `t1_tank`), against a scripted agent on the tenant's loopback address:
//! the guest terminal starts at the pane's size and follows a resize,
//! Ctrl-C reaches the command as a byte (raw mode) instead of a signal,
//! output reaches the screen, the exit status is the command's, and the
//! terminal is back in cooked mode afterwards.

mod common;

use std::path::Path;

use common::{host_with_agent, Env};
use lobster_testkit::fake_agent::{Frame, ReplyBody, Step};
use lobster_testkit::tmux::{self, Tmux};
use serde_json::json;

/// Runs `lobsterd exec ARGS` in a 160x40 pane; afterwards the pane's shell
/// prints the exit status and the terminal modes, and stays.
fn exec_in_tmux(env: &Env, name: &str, args: &[&str]) -> Tmux {
    let config = env.config();
    let args = [&["--config", config.to_str().unwrap(), "exec"], args].concat();
    Tmux::start_reporting(
        name,
        (160, 40),
        Path::new(env!("CARGO_BIN_EXE_lobsterd")),
        &args,
    )
}

#[test]
#[ignore = "t1: needs tmux"]
fn exec_it_is_raw_follows_resizes_and_restores_the_terminal() {
    tmux::require();
    let (env, agent) = host_with_agent(
        95,
        vec![
            Step::Reply(ReplyBody::Ok(json!({ "pid": 1 }))),
            Step::Send(Frame::Stdout(b"guest-prompt$ ".to_vec())),
            Step::Expect(Frame::Stdin(vec![3])),
            Step::Expect(Frame::Resize(lobster_core::agent::WindowSize {
                rows: 30,
                cols: 100,
            })),
            Step::Send(Frame::Stdout(b"bye\r\n".to_vec())),
            Step::Send(Frame::End(json!({ "code": 5 }))),
        ],
    );
    let tmux = exec_in_tmux(&env, "exec-it", &["-it", "alpha", "--", "/bin/sh"]);
    tmux.wait_for("the guest's prompt", |s| {
        s.iter().any(|l| l.contains("guest-prompt$"))
    });
    tmux.keys("C-c");
    tmux.resize(100, 30);
    let status = tmux.wait_exit();
    let all = tmux.history().join("\n");
    let transcript = agent.finish();
    assert!(
        transcript.violations.is_empty(),
        "{:?}\n{all}",
        transcript.violations
    );
    let params = &transcript.request.unwrap().params;
    assert_eq!(params["tty"], json!({ "rows": 40, "cols": 160 }));
    assert!(
        !transcript.frames.contains(&Frame::Signal(2)),
        "Ctrl-C became a signal: not raw"
    );
    assert!(all.contains("bye"), "{all}");
    assert_eq!(status, 5, "the command's exit status:\n{all}");
}
