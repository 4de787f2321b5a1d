//! T0: `lobsterd spawn` options up to the point where a spawn acts on the
//! host: `--secrets-file` (a file or stdin; a bad line is refused without
//! ever being echoed), `--memory-mib`, `--overlay-size-mib` and `--backend`
//! reach the spec's validation. Valid options get as far as the image check
//! (the host has no guest images), so nothing on the host is touched.
//! What the options do to a running tenant is checked by the T2 lifecycle.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

use common::{all, Env};

/// A host from `lobsterd init --no-host-setup` in a temporary directory.
trait SpawnEnv {
    /// A secrets file holding `text`.
    fn secrets(&self, text: &str) -> PathBuf;
    fn registry_is_empty(&self) -> bool;
}

impl SpawnEnv for Env {
    fn secrets(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("secrets.env");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn registry_is_empty(&self) -> bool {
        let registry = self.state().join("registry.json");
        std::fs::read_to_string(registry).map_or(true, |r| !r.contains("\"alice\""))
    }
}

const LEAK: &str = "sk-LEAK-4242";

#[test]
fn a_secrets_line_without_equals_is_refused_and_never_echoed() {
    let env = Env::initialised();
    let file = env.secrets(&format!("# comment\nGOOD=ok\n{LEAK}\n"));
    for json in [false, true] {
        let mut args = vec!["spawn", "alice", "--secrets-file", file.to_str().unwrap()];
        if json {
            args.insert(0, "--json");
        }
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(12), "{}", all(&out));
        let text = all(&out);
        assert!(
            text.contains("secrets") && text.contains("a line is not KEY=VALUE"),
            "{text}"
        );
        assert!(!text.contains(LEAK), "the bad line was echoed: {text}");
    }
    assert!(env.registry_is_empty());
}

#[test]
fn a_bad_secret_name_is_named_but_its_value_never_shown() {
    let env = Env::initialised();
    let file = env.secrets(&format!("1BAD={LEAK}\n"));
    let out = env.run(&["spawn", "alice", "--secrets-file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(12), "{}", all(&out));
    assert!(
        all(&out).contains("`1BAD` is not a variable name"),
        "{}",
        all(&out)
    );
    assert!(!all(&out).contains(LEAK), "{}", all(&out));
}

#[test]
fn secrets_are_read_from_stdin_with_a_dash() {
    let env = Env::initialised();
    let mut child = env
        .command(&["spawn", "alice", "--secrets-file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{LEAK}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(12), "stdin was read: {}", all(&out));
    assert!(!all(&out).contains(LEAK));
}

#[test]
fn an_unreadable_secrets_file_is_named() {
    let env = Env::initialised();
    let missing = env.dir.path().join("nope.env");
    let out = env.run(&[
        "spawn",
        "alice",
        "--secrets-file",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(12), "{}", all(&out));
    assert!(
        all(&out).contains(&format!("cannot read {}", missing.display())),
        "{}",
        all(&out)
    );
}

#[test]
fn sizes_out_of_range_are_refused_by_field() {
    let env = Env::initialised();
    for (flag, value, field) in [
        ("--memory-mib", "64", "memory_mib"),
        ("--overlay-size-mib", "1", "overlay_size_mib"),
    ] {
        let out = env.run(&["spawn", "alice", flag, value]);
        assert_eq!(out.status.code(), Some(12), "{flag}: {}", all(&out));
        assert!(
            all(&out).contains(&format!("field `{field}`")),
            "{}",
            all(&out)
        );
    }
    assert!(env.registry_is_empty());
}

#[test]
fn from_snap_reaches_the_spawn_and_an_empty_one_is_a_usage_error() {
    let env = Env::initialised();
    let out = env.run(&["spawn", "alice", "--from-snap", ""]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(all(&out).contains("--from-snap"), "{}", all(&out));
    // A path is taken; the spawn then stops at the image check (this host
    // has no guest images), before the archive is even opened.
    let out = env.run(&["spawn", "alice", "--from-snap", "/nonexistent/a.ext4.zst"]);
    assert!(all(&out).contains("kernel image"), "{}", all(&out));
    assert!(env.registry_is_empty());
}

#[test]
fn an_unknown_backend_is_a_usage_error_listing_the_backends() {
    let env = Env::initialised();
    let out = env.run(&["spawn", "alice", "--backend", "xen"]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    let text = all(&out);
    assert!(
        text.contains("firecracker") && text.contains("qemu"),
        "{text}"
    );
}

#[test]
fn valid_options_reach_the_spawn_itself() {
    let env = Env::initialised();
    let file = env.secrets("API_KEY=sk-fine\n\n  # note\nOTHER=two=equals\n");
    for backend in ["qemu", "firecracker"] {
        let out = env.run(&[
            "spawn",
            "alice",
            "--memory-mib",
            "320",
            "--overlay-size-mib",
            "300",
            "--backend",
            backend,
            "--secrets-file",
            file.to_str().unwrap(),
        ]);
        // This host has no guest images: the spawn stops at its first check.
        assert_eq!(out.status.code(), Some(10), "{backend}: {}", all(&out));
        assert!(all(&out).contains("image"), "{}", all(&out));
        assert!(!all(&out).contains("sk-fine"), "{}", all(&out));
    }
    assert!(env.registry_is_empty());
}
