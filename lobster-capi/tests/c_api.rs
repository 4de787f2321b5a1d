//! Compiles every C test in `tests/c/` with gcc against the checked-in
//! header and the static library cargo built next to this test, seeds a
//! registry and a watchdog status in a temporary host, and runs each
//! program (`<good> <bad> <corrupt> <empty> <imaged>` configs): under valgrind's
//! leak check when valgrind is installed, plainly otherwise.
//! `LOBSTER_REQUIRE_VALGRIND=1` (set by scripts/test-bindings.sh) turns a
//! missing valgrind into a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use lobster_core::config::Config;
use lobster_core::health::{HealthState, TenantHealth, TenantWatch, WatchStatus};
use lobster_core::store::Store;
use lobster_core::TenantSpec;

/// `target/<profile>`: this test runs from `target/<profile>/deps`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test runs from target/<profile>/deps")
        .to_path_buf()
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary host: a good config with two tenants allocated through the
/// real registry code (and a watchdog status naming alice and a watchdog
/// log of three lines), a bad config, a
/// config whose registry is corrupt, one without tenants, and one whose
/// guest images exist (empty files: a spawn gets past the image check).
struct Fixture {
    _dir: tempfile::TempDir,
    good: PathBuf,
    bad: PathBuf,
    corrupt: PathBuf,
    empty: PathBuf,
    imaged: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write fixture");
        path
    };
    let good = write(
        "good.json",
        r#"{"domain": "test.lobster", "paths": {"state_dir": "state", "logs_dir": "logs"}}"#,
    );
    let bad = write("bad.json", r#"{"tenant_defaults": {"vcpus": 0}}"#);
    let corrupt = write("corrupt.json", r#"{"paths": {"state_dir": "broken"}}"#);
    let empty = write("empty.json", r#"{"paths": {"state_dir": "empty"}}"#);
    for image in ["kernel", "initrd", "rootfs"] {
        write(image, "");
    }
    let images = dir.path().display();
    let imaged = write(
        "imaged.json",
        &format!(
            r#"{{"paths": {{"state_dir": "imaged", "kernel": "{images}/kernel", "initrd": "{images}/initrd", "rootfs": "{images}/rootfs"}}}}"#
        ),
    );
    std::fs::create_dir(dir.path().join("broken")).expect("mkdir");
    write(
        "broken/registry.json",
        r#"{"schema_version": 1, "tenants": {"#,
    );

    let config = Config::load(&good).expect("good config loads");
    let store = Store::new(&config.paths.state_dir);
    for name in ["alice", "bob"] {
        let spec = TenantSpec::builder(name).build().expect("valid spec");
        store
            .allocate(&config, spec.to_new_tenant(&config, None))
            .expect("allocate");
    }
    let alice = TenantWatch {
        health: TenantHealth {
            state: HealthState::Degraded,
            attempts: 1,
            ..TenantHealth::default()
        },
        last_event: Some("repair restart_vm failed".into()),
        ..TenantWatch::default()
    };
    let watch = WatchStatus {
        pid: std::process::id(),
        started_ms: 1_700_000_000_000,
        updated_ms: 1_700_000_060_000,
        tick: 12,
        interval_ms: 5000,
        tenants: [("alice".to_owned(), alice)].into(),
        repairs: Default::default(),
    };
    std::fs::write(
        WatchStatus::path(&config.paths.state_dir),
        serde_json::to_vec(&watch).expect("watch status serialises"),
    )
    .expect("write watch.json");
    let log = lobster_core::health::watch_log_path(&config);
    std::fs::create_dir_all(log.parent().expect("a log directory")).expect("mkdir logs");
    std::fs::write(&log, "tick 1\ntick 2\ntick 3\n").expect("write watch.log");
    Fixture {
        _dir: dir,
        good,
        bad,
        corrupt,
        empty,
        imaged,
    }
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn compile(source: &Path, out: &Path) {
    let staticlib = profile_dir().join("liblobster.a");
    assert!(
        staticlib.exists(),
        "{} is missing: build lobster-capi first (cargo build -p lobster-capi)",
        staticlib.display()
    );
    let status = Command::new("gcc")
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-g",
            "-I",
        ])
        .arg(crate_dir().join("include"))
        .arg(source)
        .arg(&staticlib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(out)
        .status()
        .expect("gcc must be installed to run the C tests");
    assert!(status.success(), "gcc failed on {}", source.display());
}

#[test]
fn c_programs_pass_and_free_everything() {
    let fixture = fixture();
    let build = tempfile::tempdir().expect("tempdir");
    let valgrind = have("valgrind");
    if !valgrind && std::env::var_os("LOBSTER_REQUIRE_VALGRIND").is_some_and(|v| v == "1") {
        panic!("valgrind is required (LOBSTER_REQUIRE_VALGRIND=1) but not installed: apt-get install valgrind");
    }
    if !valgrind {
        eprintln!("NOTE: valgrind not found: running the C tests without the leak check");
    }
    let mut sources: Vec<PathBuf> = std::fs::read_dir(crate_dir().join("tests/c"))
        .expect("tests/c")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    sources.sort();
    assert!(!sources.is_empty(), "no C tests found");
    for source in sources {
        let exe = build.path().join(source.file_stem().expect("file name"));
        compile(&source, &exe);
        let mut command = if valgrind {
            let mut c = Command::new("valgrind");
            c.args([
                "--quiet",
                "--leak-check=full",
                "--show-leak-kinds=definite,indirect",
                "--errors-for-leak-kinds=definite,indirect",
                "--error-exitcode=99",
            ])
            .arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let output = command
            .args([
                &fixture.good,
                &fixture.bad,
                &fixture.corrupt,
                &fixture.empty,
                &fixture.imaged,
            ])
            .env_remove("LOBSTERD_CONFIG")
            .output()
            .expect("run C test");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{} failed ({}):\n{stdout}\n{stderr}",
            source.display(),
            output.status
        );
        print!("{stdout}");
    }
}
