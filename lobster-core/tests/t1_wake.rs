//! T1 (root): a wake socket is reachable by root and Caddy's group only:
//! its directory `root:<gid>` 0710, the socket `root:<gid>` 0660, checked
//! by connecting as `nobody`; a wake directory that is not root's own real
//! directory is refused.

// An integration test crate is test code as a whole.
#![allow(clippy::tests_outside_test_module)]

use std::os::unix::fs::MetadataExt;

use lobster_core::error::{Classify, ErrorKind};
use lobster_core::proxy::bind_wake_socket;
use lobster_testkit::caddy::{connect_as_nobody, reachable_tempdir};

/// A group that is not nobody's (65534).
const CADDY_GID: u32 = 4242;

#[test]
#[ignore = "t1: needs root"]
fn a_wake_socket_admits_root_and_caddy_s_group_only() {
    let root = reachable_tempdir();
    let dir = root.path().join("wake");
    let path = dir.join("0a1b2c3d.sock");
    let listener = bind_wake_socket(&path, CADDY_GID).unwrap();
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, CADDY_GID, 0o710)
    );
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, CADDY_GID, 0o660)
    );
    assert_eq!(connect_as_nobody(&path), "EACCES");
    std::os::unix::net::UnixStream::connect(&path).expect("root connects");
    drop(listener);

    // A stale socket is replaced; the positive control: with nobody's group
    // the same check connects, so EACCES above is the mode's doing.
    let _listener = bind_wake_socket(&path, 65534).unwrap();
    assert_eq!(connect_as_nobody(&path), "connected");
}

#[test]
#[ignore = "t1: needs root"]
fn a_wake_directory_that_is_a_symlink_or_someone_else_s_is_refused() {
    let root = reachable_tempdir();
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let link = root.path().join("wake");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let err = bind_wake_socket(&link.join("a.sock"), CADDY_GID).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(!elsewhere.join("a.sock").exists());

    let theirs = root.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let err = bind_wake_socket(&theirs.join("a.sock"), CADDY_GID).unwrap_err();
    assert!(err.to_string().contains("owned by uid 0"), "{err}");
    assert!(!theirs.join("a.sock").exists());
}
