//! T1: `lobsterd tank` in a real terminal. tmux runs the dashboard in a
//! 160x40 pane on a private server; the test reads the screen with
//! `capture-pane`, presses keys with `send-keys` and checks the rows, the
//! sort, the refresh (a changed `watch.json` shows without a key) and that
//! quitting leaves the terminal as it was (normal screen, cursor shown,
//! cooked mode).
//!
//! The host is a temporary state directory: a registry seeded through
//! `Store`, one "VMM" that is a `sleep` child (so PID, memory and uptime are
//! real), and a `watch.json` written as the watchdog writes it, naming this
//! test's pid (so the watchdog shows as alive).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use lobster_core::config::Config;
use lobster_core::health::{
    Check, CheckResult, HealthState, TenantHealth, TenantWatch, Verdict, WatchStatus,
};
use lobster_core::store::{RunningVm, Store, TenantStatus};
use lobster_core::vmm::{BackendKind, VmIdentity};
use lobster_testkit::registry::new_tenant;
use lobster_testkit::tmux::{self, Tmux};

/// A temporary host with three tenants and a watchdog status.
struct Host {
    dir: tempfile::TempDir,
    vmm: Child,
    ips: BTreeMap<String, String>,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.vmm.kill();
        let _ = self.vmm.wait();
    }
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("etc/config.json");
        let state = dir.path().join("state");
        let out = Command::new(env!("CARGO_BIN_EXE_lobsterd"))
            .arg("--config")
            .arg(&config)
            .args(["init", "--no-host-setup", "--state-dir"])
            .arg(&state)
            .output()
            .unwrap();
        assert!(out.status.success(), "init: {}", text(&out.stderr));
        let vmm = Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn sleep");
        let mut host = Host {
            dir,
            vmm,
            ips: BTreeMap::new(),
        };
        host.seed();
        host.write_watch(7, HealthState::Healthy, "restarted the vm");
        host
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("etc/config.json")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn seed(&mut self) {
        let config = Config::load(&self.config_path()).unwrap();
        let store = Store::new(&config.paths.state_dir);
        let identity = VmIdentity::of(self.vmm.id() as i32).unwrap();
        for name in ["alpha", "bravo", "charlie"] {
            let mut new = new_tenant(name);
            new.resources.vcpus = 2;
            let record = store.allocate(&config, new).unwrap();
            self.ips
                .insert(name.into(), record.allocation.guest_ip.to_string());
            store
                .modify(name, |r| {
                    r.status = if name == "bravo" {
                        TenantStatus::Stopped
                    } else {
                        TenantStatus::Running
                    };
                    if name == "alpha" {
                        r.vm = Some(RunningVm {
                            backend: BackendKind::Qemu,
                            identity,
                        });
                    }
                })
                .unwrap();
        }
    }

    /// Writes `watch.json` as the watchdog does: `alpha` in `alpha_state`
    /// with `alpha_event`, `bravo` degraded (net.tap failing), `charlie`
    /// failed (vm.process failing).
    fn write_watch(&self, tick: u64, alpha_state: HealthState, alpha_event: &str) {
        let now = now_ms();
        let tenant = |state, failing: Option<Check>, event: &str| TenantWatch {
            health: TenantHealth {
                state,
                ..TenantHealth::default()
            },
            checks: Check::ALL
                .iter()
                .map(|&check| CheckResult {
                    check,
                    verdict: if Some(check) == failing {
                        Verdict::Failed
                    } else {
                        Verdict::Ok
                    },
                    detail: None,
                })
                .collect(),
            checked_ms: Some(now),
            last_event: Some(event.into()),
            last_event_ms: Some(now - 5_000),
        };
        let alpha_failing = (alpha_state != HealthState::Healthy).then_some(Check::Tap);
        let status = WatchStatus {
            pid: std::process::id(),
            started_ms: now - 60_000,
            updated_ms: now,
            tick,
            interval_ms: 5_000,
            tenants: BTreeMap::from([
                (
                    "alpha".into(),
                    tenant(alpha_state, alpha_failing, alpha_event),
                ),
                (
                    "bravo".into(),
                    tenant(HealthState::Degraded, Some(Check::Tap), "repairing net.tap"),
                ),
                (
                    "charlie".into(),
                    tenant(HealthState::Failed, Some(Check::VmProcess), "gave up"),
                ),
            ]),
            repairs: BTreeMap::new(),
        };
        let path = WatchStatus::path(&self.state_dir());
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&status).unwrap()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    /// Starts the dashboard in a 160x40 tmux pane.
    fn tank_in_tmux(&self, name: &str) -> Tmux {
        let config = self.config_path();
        let args = ["--config", config.to_str().unwrap(), "tank"];
        Tmux::start_reporting(
            name,
            (160, 40),
            Path::new(env!("CARGO_BIN_EXE_lobsterd")),
            &args,
        )
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The tenant rows' names, top to bottom.
fn order(screen: &[String]) -> Vec<String> {
    screen
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| ["alpha", "bravo", "charlie"].contains(w))
        .map(str::to_owned)
        .collect()
}

fn row<'a>(screen: &'a [String], name: &str) -> Vec<&'a str> {
    screen
        .iter()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no row {name} in\n{}", screen.join("\n")))
        .split_whitespace()
        .collect()
}

/// Waits for the dashboard to end, then checks that it exited 0 and left
/// the terminal as it found it.
fn assert_quit_cleanly(tmux: &Tmux) {
    assert_eq!(tmux.wait_exit(), 0, "tank's exit status");
    let all = tmux.history().join("\n");
    assert!(
        !all.contains("charlie") && !all.contains("LAST EVENT"),
        "dashboard output left on the normal screen:\n{all}"
    );
}

#[test]
#[ignore = "t1: needs tmux"]
fn tank_shows_sorts_refreshes_and_quits_cleanly_in_a_terminal() {
    tmux::require();
    let host = Host::new();
    let tmux = host.tank_in_tmux("tank");

    let screen = tmux.wait_for("the three rows", |s| order(s).len() == 3);
    let all = screen.join("\n");
    eprintln!("the dashboard:\n{all}");
    assert!(all.contains("3 tenants"), "{all}");
    assert!(
        all.contains(&format!(
            "watchdog pid {} alive  tick 7",
            std::process::id()
        )),
        "{all}"
    );
    assert_eq!(order(&screen), ["alpha", "bravo", "charlie"], "{all}");

    let alpha = row(&screen, "alpha");
    assert_eq!(
        &alpha[..5],
        ["alpha", "running", "healthy", "ok", &host.ips["alpha"]],
        "{all}"
    );
    assert_eq!(alpha[5], host.vmm.id().to_string(), "pid of the VMM: {all}");
    assert_eq!(alpha[6], "2", "{all}");
    assert!(
        alpha[7].ends_with("/256") && !alpha[7].starts_with('-'),
        "memory used: {all}"
    );
    assert!(alpha[9].ends_with('s'), "uptime: {all}");
    assert!(
        alpha[10..].join(" ").starts_with("restarted the vm ("),
        "{all}"
    );
    let bravo = row(&screen, "bravo");
    assert_eq!(
        &bravo[..7],
        [
            "bravo",
            "stopped",
            "degraded",
            "net.tap",
            &host.ips["bravo"],
            "-",
            "2"
        ],
        "{all}"
    );
    assert_eq!(
        &bravo[7..10],
        ["-/256", "MiB", "-"],
        "no VM, no memory or uptime: {all}"
    );
    let charlie = row(&screen, "charlie");
    assert_eq!(
        &charlie[..5],
        [
            "charlie",
            "running",
            "failed",
            "vm.process",
            &host.ips["charlie"]
        ],
        "{all}"
    );

    // `s`: sort by state, worst first.
    tmux.keys("s");
    let screen = tmux.wait_for("rows sorted by state", |s| {
        order(s) == ["charlie", "bravo", "alpha"]
    });
    assert!(screen.join("\n").contains("sort: state"));

    // A new watchdog status shows without a key: alpha degrades.
    host.write_watch(8, HealthState::Degraded, "recreated the tap");
    let screen = tmux.wait_for("the refreshed watchdog status", |s| {
        s.iter()
            .any(|l| l.starts_with("alpha ") && l.contains("recreated the tap"))
    });
    let all = screen.join("\n");
    assert!(all.contains("tick 8"), "{all}");
    assert_eq!(
        &row(&screen, "alpha")[2..4],
        ["degraded", "net.tap"],
        "{all}"
    );
    // Still sorted by state: alpha now ties with bravo (names break ties).
    assert_eq!(order(&screen), ["charlie", "alpha", "bravo"], "{all}");

    // `r`: reversed.
    tmux.keys("r");
    tmux.wait_for("the reversed order", |s| {
        order(s) == ["bravo", "alpha", "charlie"]
    });

    // An unreadable registry: the rows stay, the footer says why.
    let registry = host.state_dir().join("registry.json");
    let good = std::fs::read(&registry).unwrap();
    std::fs::write(&registry, b"{ torn").unwrap();
    let screen = tmux.wait_for("the refresh failure", |s| {
        s.iter().any(|l| l.starts_with("refresh failed: "))
    });
    assert_eq!(order(&screen), ["bravo", "alpha", "charlie"]);
    std::fs::write(&registry, &good).unwrap();
    tmux.wait_for("the failure to clear", |s| {
        !s.iter().any(|l| l.contains("refresh failed")) && order(s).len() == 3
    });

    tmux.keys("q");
    assert_quit_cleanly(&tmux);
}

#[test]
#[ignore = "t1: needs tmux"]
fn ctrl_c_quits_the_dashboard_cleanly() {
    tmux::require();
    let host = Host::new();
    let tmux = host.tank_in_tmux("ctrlc");
    tmux.wait_for("the three rows", |s| order(s).len() == 3);
    tmux.keys("C-c");
    assert_quit_cleanly(&tmux);
}

#[test]
#[ignore = "t1: needs tmux"]
fn sigterm_quits_the_dashboard_cleanly() {
    tmux::require();
    let host = Host::new();
    let tmux = host.tank_in_tmux("sigterm");
    tmux.wait_for("the three rows", |s| order(s).len() == 3);
    // The pane runs `sh -c '<lobsterd> tank; ...'`: tank is its only child.
    let tank = tmux.command_pid().to_string();
    let out = Command::new("kill")
        .args(["-TERM", &tank])
        .output()
        .unwrap();
    assert!(out.status.success(), "kill: {}", text(&out.stderr));
    assert_quit_cleanly(&tmux);
}
