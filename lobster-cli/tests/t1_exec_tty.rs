//! T1: `lobsterd exec -it` in a real terminal (a private tmux server, as
//! `t1_tank`), against a scripted agent on the tenant's loopback address:
//! the guest terminal starts at the pane's size and follows a resize,
//! Ctrl-C reaches the command as a byte (raw mode) instead of a signal,
//! output reaches the screen, the exit status is the command's, and the
//! terminal is back in cooked mode afterwards.

mod common;

use std::path::Path;

use common::tmux::{require_tmux, Tmux, WAIT};
use common::{host_with_agent, Env};
use lobster_testkit::fake_agent::{Frame, ReplyBody, Step};
use lobster_testkit::poll;
use serde_json::json;

/// Runs `lobsterd exec ARGS` in a 160x40 pane; afterwards the pane's shell
/// prints the exit status and the terminal modes, and stays.
fn exec_in_tmux(env: &Env, name: &str, args: &str) -> Tmux {
    let conf = env.dir.path().join("tmux.conf");
    std::fs::write(&conf, "set -g remain-on-exit on\nset -g status off\n").unwrap();
    let command = format!(
        "'{}' --config '{}' exec {args}; echo \"exec exited $?\"; stty -a; \
         echo 'modes printed'; exec sleep 600",
        env!("CARGO_BIN_EXE_lobsterd"),
        env.config().display()
    );
    Tmux::start(name, Path::new(&conf), &command)
}

#[test]
#[ignore = "t1: needs tmux"]
fn exec_it_is_raw_follows_resizes_and_restores_the_terminal() {
    require_tmux();
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
    let tmux = exec_in_tmux(&env, "exec-it", "-it alpha -- /bin/sh");
    tmux.wait_for("the guest's prompt", |s| {
        s.iter().any(|l| l.contains("guest-prompt$"))
    });
    tmux.keys("C-c");
    let out = tmux.run(&["resize-window", "-t", "main", "-x", "100", "-y", "30"]);
    assert!(out.status.success(), "resize-window");
    let done = |lines: Vec<String>| lines.iter().any(|l| l.contains("modes printed"));
    let finished = poll::within(WAIT, || {
        (done(tmux.history()) || done(tmux.screen())).then_some(())
    });
    let all = tmux.history().join("\n");
    assert!(finished.is_some(), "exec did not end:\n{all}");
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
    assert!(all.contains("exec exited 5"), "{all}");
    let modes: Vec<&str> = all.split_whitespace().collect();
    assert!(
        modes.contains(&"icanon") && modes.contains(&"echo") && !modes.contains(&"-icanon"),
        "raw mode left on:\n{all}"
    );
}
