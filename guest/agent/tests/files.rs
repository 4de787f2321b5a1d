//! T0: `files.put` and `files.get` against the `lobster-agent` binary as a
//! host process: a tree with modes round-trips byte-identical, placement
//! inside an existing directory, size caps (the request's and the
//! agent's) leave nothing behind, hostile archives, paths outside the
//! guest's files, a missing source, and a host that hangs up mid-put.

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{upgrade, Exec, Outcome, OwnAgent};
use lobster_agent_proto::archive::{self, STAGING_PREFIX};
use lobster_agent_proto::methods::{FilesGetResult, FilesPutResult};
use lobster_agent_proto::stream::Frame;
use serde_json::{json, Value};

const TOKEN: &str = "files-token";

fn put(agent: &OwnAgent, dest: &Path, max_bytes: u64) -> Result<Exec, Value> {
    let params = json!({"dest": dest, "max_bytes": max_bytes});
    upgrade(&agent.agent.rpc, TOKEN, "files.put", params)
}

fn get(agent: &OwnAgent, path: &Path, max_bytes: u64) -> Result<Exec, Value> {
    let params = json!({"path": path, "max_bytes": max_bytes});
    upgrade(&agent.agent.rpc, TOKEN, "files.get", params)
}

/// The `End` payload of `out` (panics on anything else).
fn ended<T: serde::de::DeserializeOwned>(out: &Outcome) -> T {
    match &out.last {
        Some(Frame::End(v)) => serde_json::from_value(v.clone()).unwrap(),
        other => panic!("no End frame: {other:?}"),
    }
}

/// The code and message of `out`'s `Error` frame.
fn failed(out: &Outcome) -> (String, String) {
    match &out.last {
        Some(Frame::Error(e)) => (e.code.as_str().to_owned(), e.message.clone()),
        other => panic!("no Error frame: {other:?}"),
    }
}

/// A tree with modes 0600, 0755, 0700 (a directory), a link and content
/// larger than one frame.
fn tree(root: &Path) -> PathBuf {
    let top = root.join("tree");
    fs::create_dir_all(top.join("bin/private")).unwrap();
    fs::write(top.join("notes.txt"), b"some notes\n").unwrap();
    fs::write(top.join("key"), b"secret").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(top.join("bin/blob"), big).unwrap();
    fs::write(top.join("bin/tool"), b"#!/bin/sh\n").unwrap();
    symlink("../notes.txt", top.join("bin/notes")).unwrap();
    let mode =
        |p: &str, m: u32| fs::set_permissions(top.join(p), fs::Permissions::from_mode(m)).unwrap();
    mode("key", 0o600);
    mode("bin/tool", 0o755);
    mode("bin/private", 0o700);
    top
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn packed(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    archive::pack(path, u64::MAX, &mut bytes).unwrap();
    bytes
}

#[test]
fn a_tree_put_into_a_directory_comes_back_byte_identical_with_modes() {
    let agent = OwnAgent::start(TOKEN, &[]);
    let src = tempfile::tempdir().unwrap();
    let sent = packed(&tree(src.path()));
    let dest = tempfile::tempdir().unwrap();
    let out = put(&agent, dest.path(), 1 << 20).unwrap().deliver(&sent);
    let result: FilesPutResult = ended(&out);
    assert_eq!((result.entries, result.bytes), (8, 11 + 6 + 300_000 + 10));
    assert_eq!(out.credited, sent.len() as u64, "every byte credited");
    // An existing directory receives the top entry inside it.
    assert_eq!(names_in(dest.path()), ["tree"]);
    let placed = dest.path().join("tree");
    let mode = |p: &str| {
        fs::symlink_metadata(placed.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(
        (mode("key"), mode("bin/tool"), mode("bin/private")),
        (0o600, 0o755, 0o700)
    );
    assert_eq!(
        fs::read_link(placed.join("bin/notes")).unwrap(),
        Path::new("../notes.txt")
    );

    let out = get(&agent, &placed, 1 << 20).unwrap().finish();
    let result: FilesGetResult = ended(&out);
    assert_eq!((result.entries, result.bytes), (8, 300_027));
    assert!(
        out.stdout == sent,
        "the archive got back differs from the one sent"
    );
}

#[test]
fn a_file_put_to_a_new_name_takes_that_name() {
    let agent = OwnAgent::start(TOKEN, &[]);
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("a.txt");
    fs::write(&file, b"content").unwrap();
    let dest = tempfile::tempdir().unwrap();
    let target = dest.path().join("b.txt");
    let out = put(&agent, &target, 100).unwrap().deliver(&packed(&file));
    let _: FilesPutResult = ended(&out);
    assert_eq!(fs::read(&target).unwrap(), b"content");
    assert_eq!(names_in(dest.path()), ["b.txt"]);
}

#[test]
fn an_oversize_put_is_refused_and_leaves_nothing() {
    let src = tempfile::tempdir().unwrap();
    let sent = packed(&tree(src.path()));
    // The request's limit, then the agent's own.
    for (flags, max_bytes) in [
        (&[][..], 1000),
        (&["--max-transfer-bytes", "1000"][..], 1 << 30),
    ] {
        let agent = OwnAgent::start(TOKEN, flags);
        let dest = tempfile::tempdir().unwrap();
        let out = put(&agent, &dest.path().join("copy"), max_bytes)
            .unwrap()
            .deliver(&sent);
        let (code, message) = failed(&out);
        assert_eq!(code, "too_large", "{message}");
        assert_eq!(message, "the copy exceeds its limit of 1000 bytes");
        assert!(
            names_in(dest.path()).is_empty(),
            "{:?}",
            names_in(dest.path())
        );
    }
}

#[test]
fn an_oversize_get_ends_with_too_large() {
    let agent = OwnAgent::start(TOKEN, &["--max-transfer-bytes", "1000"]);
    let src = tempfile::tempdir().unwrap();
    let out = get(&agent, &tree(src.path()), 1 << 30).unwrap().finish();
    assert_eq!(failed(&out).0, "too_large");
}

#[test]
fn an_archive_writing_through_its_own_link_is_refused_and_leaves_nothing() {
    let agent = OwnAgent::start(TOKEN, &[]);
    let outside = tempfile::tempdir().unwrap();
    let header = |kind: tar::EntryType, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    };
    let mut builder = tar::Builder::new(Vec::new());
    let empty = std::io::empty();
    builder
        .append_data(&mut header(tar::EntryType::Directory, 0), "top", empty)
        .unwrap();
    builder
        .append_link(
            &mut header(tar::EntryType::Symlink, 0),
            "top/link",
            outside.path(),
        )
        .unwrap();
    builder
        .append_data(
            &mut header(tar::EntryType::Regular, 4),
            "top/link/evil",
            &b"evil"[..],
        )
        .unwrap();
    let bytes = builder.into_inner().unwrap();

    let dest = tempfile::tempdir().unwrap();
    let out = put(&agent, &dest.path().join("x"), 1 << 20)
        .unwrap()
        .deliver(&bytes);
    let (code, message) = failed(&out);
    assert_eq!(code, "bad_request", "{message}");
    assert!(
        message.contains("top/link/evil: goes through a symbolic link"),
        "{message}"
    );
    assert!(names_in(dest.path()).is_empty());
    assert!(names_in(outside.path()).is_empty());
}

#[test]
fn paths_outside_the_guest_files_and_missing_ones_are_refused_before_any_upgrade() {
    let agent = OwnAgent::start(TOKEN, &[]);
    let refusal = |r: Result<Exec, Value>| {
        let e = r.map(|_| ()).expect_err("should be refused");
        (
            e["code"].as_str().unwrap().to_owned(),
            e["message"].as_str().unwrap().to_owned(),
        )
    };
    let (code, msg) = refusal(put(&agent, Path::new("/proc/x"), 10));
    assert_eq!(code, "bad_request");
    assert_eq!(
        msg,
        "dest: `/proc/x` is under /proc, outside the guest's files"
    );
    let (code, msg) = refusal(get(&agent, Path::new("/sys/kernel"), 10));
    assert_eq!(
        (code.as_str(), msg.contains("path: `/sys/kernel`")),
        ("bad_request", true),
        "{msg}"
    );
    let (code, msg) = refusal(put(&agent, Path::new("relative/x"), 10));
    assert_eq!(code, "bad_request");
    assert!(msg.contains("is not an absolute path"), "{msg}");
    let dir = tempfile::tempdir().unwrap();
    let (code, msg) = refusal(get(&agent, &dir.path().join("missing"), 10));
    assert_eq!(code, "not_found", "{msg}");
    assert!(msg.contains("missing"), "{msg}");
    let (code, msg) = refusal(put(&agent, &dir.path().join("no/parent"), 10));
    assert_eq!(code, "not_found", "{msg}");
}

#[test]
fn a_host_hanging_up_mid_put_leaves_nothing() {
    let agent = OwnAgent::start(TOKEN, &[]);
    let src = tempfile::tempdir().unwrap();
    let sent = packed(&tree(src.path()));
    let dest = tempfile::tempdir().unwrap();
    let mut session = put(&agent, &dest.path().join("copy"), 1 << 20).unwrap();
    let out = session.send_within_window(&sent[..sent.len() / 2]);
    assert!(out.last.is_none(), "{out:?}");
    // Once some input was credited, the staging directory exists.
    let staging = common::until("a staging directory", Duration::from_secs(10), || {
        let names = names_in(dest.path());
        names
            .iter()
            .any(|n| n.starts_with(STAGING_PREFIX))
            .then_some(names)
    });
    assert_eq!(staging.len(), 1, "{staging:?}");
    session.hang_up();
    common::until(
        "the staging directory removed",
        Duration::from_secs(10),
        || names_in(dest.path()).is_empty().then_some(()),
    );
}

#[test]
fn hello_lists_the_file_methods() {
    let agent = OwnAgent::start(TOKEN, &[]);
    let stream = std::net::TcpStream::connect(&agent.agent.rpc).unwrap();
    let mut s = common::Session::open(stream, TOKEN);
    let hello = s.call("hello", json!({"protocol": 1, "token": TOKEN}));
    let methods = hello["methods"].to_string();
    assert!(
        methods.contains("\"files.put\"") && methods.contains("\"files.get\""),
        "{methods}"
    );
}

#[test]
fn a_whole_archive_is_not_placed_without_stdin_close() {
    let agent = OwnAgent::start(TOKEN, &[]);
    let src = tempfile::tempdir().unwrap();
    let sent = packed(&tree(src.path()));
    let dest = tempfile::tempdir().unwrap();
    let mut session = put(&agent, &dest.path().join("copy"), 1 << 20).unwrap();
    let out = session.send_within_window(&sent);
    assert!(out.last.is_none(), "{out:?}");
    // Everything reached the agent: only the missing `StdinClose` stops it.
    let mut credited = out.credited;
    while credited < sent.len() as u64 {
        match session.next() {
            Some(Frame::Credit(n)) => credited += u64::from(n),
            other => panic!("expected credit, got {other:?}"),
        }
    }
    session.hang_up();
    common::until(
        "the staging directory removed",
        Duration::from_secs(10),
        || names_in(dest.path()).is_empty().then_some(()),
    );
}

#[test]
fn copies_share_the_session_cap_with_exec() {
    let agent = OwnAgent::start(TOKEN, &["--max-exec-sessions", "1"]);
    let dest = tempfile::tempdir().unwrap();
    let held = put(&agent, &dest.path().join("copy"), 10).unwrap();
    let err = get(&agent, dest.path(), 10).map(|_| ()).unwrap_err();
    assert_eq!(err["code"], "busy", "{err}");
    let err = common::exec_start(&agent.agent.rpc, TOKEN, json!({"argv": ["true"]}))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err["code"], "busy", "{err}");
    held.hang_up();
    common::until("the slot given back", Duration::from_secs(10), || {
        get(&agent, dest.path(), 10).ok()
    });
}

#[test]
fn a_signal_frame_during_a_put_breaks_the_protocol_and_leaves_nothing() {
    let agent = OwnAgent::start(TOKEN, &[]);
    let dest = tempfile::tempdir().unwrap();
    let mut session = put(&agent, &dest.path().join("copy"), 100).unwrap();
    session.send(&Frame::Signal(15));
    let out = session.finish();
    let (code, message) = failed(&out);
    assert_eq!(code, "bad_request");
    assert_eq!(message, "signal: a file copy has no process to signal");
    assert!(names_in(dest.path()).is_empty());
}
