//! `lobsterd cp` as a process: which side names a guest (usage errors exit
//! 2 naming the problem), an unknown tenant (10), and a copy out of a
//! scripted agent on the tenant's (loopback) guest address printed as a
//! one-line summary or, with `--json`, as the summary object.

mod common;

use common::{all, code, host_with_agent, json, text, Env};
use lobster_testkit::fake_agent::{Frame, ReplyBody, Step};
use serde_json::json;

#[test]
fn a_copy_must_name_exactly_one_guest_side() {
    let env = Env::initialised();
    let file = env.state().join("f");
    std::fs::write(&file, b"x").unwrap();
    let file = file.to_str().unwrap();
    for (args, problem) in [
        (vec!["cp", file, "/tmp/y"], "neither SRC nor DST"),
        (vec!["cp", file, "./alice:/x"], "neither SRC nor DST"),
        (vec!["cp", "alice:/x", "bob:/y"], "both SRC and DST"),
        (vec!["cp", "-a", file, "alice:/x"], "--preserve-owner"),
    ] {
        let out = env.run(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", all(&out));
        assert!(
            text(&out.stderr).contains(problem),
            "{args:?}: {}",
            all(&out)
        );
    }
    let out = env.run(&["cp", file]);
    assert_eq!(code(&out), 2, "{}", all(&out));
}

#[test]
fn an_unknown_tenant_exits_10() {
    let env = Env::initialised();
    let file = env.state().join("f");
    std::fs::write(&file, b"x").unwrap();
    let out = env.run(&["cp", file.to_str().unwrap(), "bob:/tmp/f"]);
    assert_eq!(code(&out), 10, "{}", all(&out));
    assert!(text(&out.stderr).contains("bob"), "{}", all(&out));
}

#[test]
fn a_copy_out_of_the_guest_is_placed_and_summarised() {
    // What the agent would send for a 5-byte file `notes`.
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("notes"), b"hello").unwrap();
    let mut archive = Vec::new();
    lobster_agent_proto::archive::pack(&source.path().join("notes"), 1 << 20, &mut archive)
        .unwrap();
    let script = || {
        vec![
            Step::Reply(ReplyBody::Ok(json!({}))),
            Step::Send(Frame::Stdout(archive.clone())),
            Step::Send(Frame::End(json!({ "entries": 1, "bytes": 5 }))),
        ]
    };

    let (env, agent) = host_with_agent(96, script());
    let dst = env.state().join("copied");
    let out = env.run(&["cp", "alpha:/root/notes", dst.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", all(&out));
    assert_eq!(text(&out.stdout).trim(), "copied 1 entries, 5 bytes");
    assert_eq!(std::fs::read(&dst).unwrap(), b"hello");
    let t = agent.finish();
    assert!(t.violations.is_empty(), "{:?}", t.violations);
    let request = t.request.unwrap();
    assert_eq!(request.method, "files.get");
    assert_eq!(request.params["path"], "/root/notes");
    assert_eq!(request.params["max_bytes"], 1u64 << 30);
    assert!(
        t.holds.contains(&"hold.acquire".to_owned()),
        "{:?}",
        t.holds
    );

    let (env, agent) = host_with_agent(97, script());
    let out = env.run(&[
        "--json",
        "cp",
        "alpha:/root/notes",
        env.state().to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", all(&out));
    assert_eq!(json(&out), json!({ "entries": 1, "bytes": 5 }));
    assert_eq!(std::fs::read(env.state().join("notes")).unwrap(), b"hello");
    assert!(agent.finish().violations.is_empty());
}
