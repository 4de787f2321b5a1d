//! `lobsterd` run as a process by the CLI's tests: a host in a temporary
//! directory, and what a command printed.
#![allow(dead_code)] // each test binary uses its part

pub mod api;
pub mod t2;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lobster_core::config::Config;
use lobster_core::store::Store;
use lobster_testkit::registry::new_tenant;

/// `lobsterd --config config ARGS…`, blind to `$LOBSTERD_CONFIG`.
pub fn lobsterd(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lobsterd"));
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("LOBSTERD_CONFIG");
    cmd
}

/// Runs [`lobsterd`] to the end.
pub fn run(config: &Path, args: &[&str]) -> Output {
    lobsterd(config, args).output().expect("run lobsterd")
}

/// A host in a temporary directory: `etc/config.json`, state in `state/`.
#[derive(Debug)]
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    /// No config yet.
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// After `lobsterd init --no-host-setup`.
    pub fn initialised() -> Env {
        let env = Env::new();
        env.init();
        env
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("etc/config.json")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        lobsterd(&self.config(), args)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        run(&self.config(), args)
    }

    /// `lobsterd init --no-host-setup` into [`Env::state`]; must succeed.
    pub fn init(&self) {
        let out = self.run(&[
            "init",
            "--no-host-setup",
            "--state-dir",
            self.state().to_str().unwrap(),
        ]);
        assert!(out.status.success(), "init: {}", all(&out));
    }

    /// Registers `names` through the real allocator (status `creating`).
    pub fn seed(&self, names: &[&str]) {
        let config = Config::load(&self.config()).unwrap();
        let store = Store::new(&config.paths.state_dir);
        for name in names {
            store.allocate(&config, new_tenant(name)).unwrap();
        }
    }
}

/// A host whose pool is `127.<net>.0.0/24` with tenant `alpha` running in
/// slot 0, its agent scripted with `steps` on `127.<net>.0.2`.
pub fn host_with_agent(
    net: u8,
    steps: Vec<lobster_testkit::fake_agent::Step>,
) -> (Env, lobster_testkit::fake_agent::ScriptedAgent) {
    let env = Env::initialised();
    let guest = std::net::Ipv4Addr::new(127, net, 0, 2);
    let listener = std::net::TcpListener::bind((guest, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.config()).unwrap()).unwrap();
    config["network"]["pool"] = serde_json::json!(format!("127.{net}.0.0/24"));
    config["network"]["agent_port"] = serde_json::json!(port);
    config["network"]["health_port"] = serde_json::json!(if port == 1 { 2 } else { 1 });
    std::fs::write(env.config(), config.to_string()).unwrap();
    let config = Config::load(&env.config()).unwrap();
    let records = lobster_testkit::registry::seed(
        &config,
        &["alpha"],
        lobster_core::store::TenantStatus::Running,
    )
    .unwrap();
    assert_eq!(records[0].allocation.guest_ip, guest);
    let agent = lobster_testkit::fake_agent::ScriptedAgent::start_on(
        listener,
        &records[0].agent_token,
        steps,
    );
    (env, agent)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Everything a command printed (errors go to stdout with `--json`).
pub fn all(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

/// Sends SIGTERM to process `pid` (one this test started).
pub fn sigterm(pid: u32) {
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill -TERM {pid}");
}
