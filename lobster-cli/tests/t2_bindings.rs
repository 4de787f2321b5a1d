//! T2: a tenant's whole life through the C and Go bindings with a real
//! guest (QEMU under TCG, the minimal image) inside a network namespace the
//! test creates. Each runs its example program (`examples/c/lifecycle.c`
//! built with AddressSanitizer and its leak checker, `examples/go/lifecycle`):
//! spawn with a
//! secret, a command and progress, 32 concurrent lists during the Go spawn,
//! the log followed until the workload's line, the agent's tail, a snap
//! into a file, evict. Then `lobsterd list --json` must be empty. The
//! Python package lives the same life in t2_api.rs.
//!
//! Why not valgrind here, as for the T0 C programs: the valgrind of this
//! distribution (3.19) does not implement `pidfd_open` (syscall 434), which
//! lobster uses to hold its VMM processes, so no spawn can run under it.
//! ASan/LSan check the same things (leaks of every allocation, the Rust
//! library's included, and the C side's memory errors) at native speed.
//!
//! Needs what scripts/test-bindings.sh builds first: target/debug/liblobster.a.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::t2::*;
use lobster_testkit::images::repo_root;
use lobster_testkit::netns::{in_netns, Ctx};

/// The static library the programs link, built by `cargo build -p lobster-capi`.
fn static_library() -> PathBuf {
    let lib = repo_root().join("target/debug/liblobster.a");
    assert!(
        lib.exists(),
        "t2: needs {} (run scripts/test-bindings.sh)",
        lib.display()
    );
    lib
}

/// Runs `program` to success; its stdout, the one JSON line it prints.
fn run_to_success(mut program: Command, what: &str) -> serde_json::Value {
    let out = program.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what}: {}", output(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{what}: {said}");
    let line = said.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{what} printed {said:?}: {e}"))
}

/// Nothing is left on the host: no tenant in `lobsterd list --json`.
fn assert_nothing_left(lobster: &Lobster) {
    let out = lobster.run(&["--json", "list"]);
    assert!(out.status.success(), "{}", output(&out));
    let tenants: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tenants, serde_json::json!([]), "tenants left behind");
}

#[test]
#[ignore = "t2: needs root, qemu, caddy, gcc (ASan) and images"]
fn a_c_program_lives_a_tenants_life_without_leaks() {
    in_netns(
        "a_c_program_lives_a_tenants_life_without_leaks",
        |_ctx: &Ctx| {
            require_t2();
            let lobster = Lobster::init(2, false);
            let work = lobster.dir.path();
            let exe = work.join("lifecycle");
            let root = repo_root();
            let status = Command::new("gcc")
                .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"])
                .args(["-fsanitize=address", "-fno-omit-frame-pointer", "-I"])
                .arg(root.join("lobster-capi/include"))
                .arg(root.join("examples/c/lifecycle.c"))
                .arg(static_library())
                .args(["-lpthread", "-ldl", "-lm", "-o"])
                .arg(&exe)
                .status()
                .expect("gcc");
            assert!(status.success(), "examples/c/lifecycle.c does not build");
            let mut program = Command::new(&exe);
            program
                .env(
                    "ASAN_OPTIONS",
                    "detect_leaks=1:exitcode=99:abort_on_error=0",
                )
                .arg(lobster.config())
                .arg("cprog")
                .arg(work);
            let said = run_to_success(program, "lifecycle.c with ASan/LSan");
            assert_eq!(said["evicted"], true);
            assert!(said["followed"]
                .as_str()
                .is_some_and(|l| l.ends_with("secret-len 6")));
            assert_nothing_left(&lobster);
        },
    );
}

#[test]
#[ignore = "t2: needs root, qemu, caddy, go and images"]
fn a_go_program_lives_a_tenants_life_while_32_goroutines_list() {
    in_netns(
        "a_go_program_lives_a_tenants_life_while_32_goroutines_list",
        |_ctx: &Ctx| {
            require_t2();
            static_library();
            let lobster = Lobster::init(2, false);
            let root = repo_root();
            let exe = lobster.dir.path().join("lifecycle-go");
            let status = go(&root.join("examples/go"))
                .args(["build", "-o"])
                .arg(&exe)
                .arg("./lifecycle")
                .status()
                .expect("go");
            assert!(status.success(), "examples/go/lifecycle does not build");
            let mut program = Command::new(&exe);
            program.arg(lobster.config()).arg("goprog");
            let said = run_to_success(program, "examples/go/lifecycle");
            assert_eq!(said["evicted"], true);
            assert!(said["followed"]
                .as_str()
                .is_some_and(|l| l.ends_with("secret-len 6")));
            assert_nothing_left(&lobster);
        },
    );
}

/// `go` in `dir`, offline, with the caches scripts/test-bindings.sh uses.
fn go(dir: &Path) -> Command {
    let target = repo_root().join("target/go");
    let mut go = Command::new("go");
    go.current_dir(dir)
        .env("GOPROXY", "off")
        .env("GOCACHE", target.join("cache"))
        .env("GOPATH", target.join("path"));
    go
}
