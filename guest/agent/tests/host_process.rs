//! T0: the `lobster-agent` binary as a plain host process: flags, the
//! address line on stdout, a JSON-lines session, and `shutdown` exiting it.

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

#[test]
fn the_binary_serves_a_session_and_exits_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let common::HostAgent { mut child, rpc, .. } = common::start_agent(dir.path(), "tok-123");

    let mut s = TcpStream::connect(&rpc).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    s.write_all(
        b"{\"id\":1,\"method\":\"hello\",\"params\":{\"protocol\":1,\"token\":\"tok-123\"}}\n",
    )
    .unwrap();
    r.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("{\"id\":1,\"ok\":{") && line.contains("\"protocol\":1"),
        "{line}"
    );
    line.clear();
    s.write_all(b"{\"id\":2,\"method\":\"no.such\"}\n").unwrap();
    r.read_line(&mut line).unwrap();
    assert!(
        line.contains("\"id\":2") && line.contains("unknown_method"),
        "{line}"
    );
    line.clear();
    s.write_all(b"{\"id\":3,\"method\":\"shutdown\"}\n")
        .unwrap();
    r.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), r#"{"id":3,"ok":{}}"#);

    let status = common::exit_of(
        &mut child,
        "the agent to exit after shutdown",
        Duration::from_secs(10),
    );
    assert!(status.success(), "{status}");
}

#[test]
fn unknown_flags_are_rejected_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_lobster-agent"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument `--bogus`"));
}

#[test]
fn a_rotated_token_is_stored_and_the_old_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let common::HostAgent {
        mut child,
        rpc,
        health,
        token_file,
    } = common::start_agent(dir.path(), "old-token");
    let hello = |at: &str, token: &str| {
        let mut s = TcpStream::connect(at).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        writeln!(
            s,
            r#"{{"id":1,"method":"hello","params":{{"protocol":1,"token":"{token}"}}}}"#
        )
        .unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line
    };

    let mut session = common::Session::open(TcpStream::connect(&rpc).unwrap(), "old-token");
    let refused = session.line("token.rotate", serde_json::json!({"token": "bad token"}));
    assert!(refused.contains("bad_request"), "{refused}");
    session.call("token.rotate", serde_json::json!({"token": "new-token"}));
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), "new-token");
    for port in [&rpc, &health] {
        let old = hello(port, "old-token");
        assert!(old.contains("unauthorized"), "{old}");
        let new = hello(port, "new-token");
        assert!(new.starts_with(r#"{"id":1,"ok":"#), "{new}");
    }
    let _ = child.kill();
    let _ = child.wait();
}
