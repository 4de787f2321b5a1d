//! `lobsterd` tested as a process: exit codes, JSON output, error text.

mod common;

use std::path::Path;
use std::process::Command;

use common::{all, code, json, text, Env};
use lobster_core::config::Config;
use lobster_core::store::Store;

#[test]
fn help_lists_every_command_of_the_original() {
    let out = Command::new(env!("CARGO_BIN_EXE_lobsterd"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    for cmd in [
        "init",
        "uninit",
        "spawn",
        "evict",
        "list",
        "molt",
        "watch",
        "tank",
        "logs",
        "snap",
        "suspend",
        "resume",
        "exec",
        "configure",
        "devices",
        "token",
        "ca",
    ] {
        assert!(
            help.contains(&format!("  {cmd} ")),
            "missing {cmd} in\n{help}"
        );
    }
    assert!(help.contains("15 unsupported"));
}

#[test]
fn ca_prints_where_lobsters_caddy_keeps_its_root() {
    let env = Env::new();
    let caddy_dir = env.state().join("caddy");
    std::fs::create_dir_all(env.config().parent().unwrap()).unwrap();
    std::fs::write(
        env.config(),
        serde_json::json!({ "proxy": { "caddy_dir": caddy_dir } }).to_string(),
    )
    .unwrap();
    let out = env.run(&["--json", "ca"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let root = caddy_dir.join("data/caddy/pki/authorities/local/root.crt");
    assert_eq!(json(&out)["path"], root.to_str().unwrap());
    assert_eq!(json(&out)["exists"], false);
    let out = env.run(&["ca"]);
    assert!(text(&out.stdout).starts_with(root.to_str().unwrap()));
}

#[test]
fn usage_error_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_lobsterd"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
}

#[test]
fn init_is_idempotent_and_keeps_a_different_config_unless_forced() {
    let env = Env::new();
    let state = env.state();
    let state = state.to_str().unwrap();
    let out = env.run(&["--json", "init", "--no-host-setup", "--state-dir", state]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let report = json(&out);
    assert_eq!(report["config_action"], "written");
    assert!(report["prerequisites"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "caddy"));
    assert!(Path::new(state).join("registry.json").is_file());
    let first = std::fs::read(env.config()).unwrap();

    let out = env.run(&["--json", "init", "--no-host-setup", "--state-dir", state]);
    assert_eq!(json(&out)["config_action"], "unchanged");
    assert_eq!(std::fs::read(env.config()).unwrap(), first);

    let out = env.run(&[
        "--json",
        "init",
        "--no-host-setup",
        "--state-dir",
        state,
        "--domain",
        "example.test",
    ]);
    assert_eq!(json(&out)["config_action"], "kept");
    assert_eq!(std::fs::read(env.config()).unwrap(), first);

    let out = env.run(&[
        "--json",
        "init",
        "--no-host-setup",
        "--state-dir",
        state,
        "-d",
        "example.test",
        "--force",
    ]);
    assert_eq!(json(&out)["config_action"], "written");
    assert_eq!(Config::load(&env.config()).unwrap().domain, "example.test");
}

#[test]
fn init_names_missing_prerequisites_with_a_fix() {
    let env = Env::new();
    let out = env.run(&[
        "init",
        "--no-host-setup",
        "--state-dir",
        env.state().to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0);
    let stdout = text(&out.stdout);
    // Images are never in a fresh temporary state directory.
    assert!(stdout.contains("-- kernel"), "{stdout}");
    assert!(stdout.contains("fix: build the guest images"), "{stdout}");
}

#[test]
fn list_prints_tenants_without_tokens() {
    let env = Env::initialised();
    let out = env.run(&["--json", "list"]);
    assert_eq!(code(&out), 0);
    assert_eq!(json(&out), serde_json::json!([]));
    env.seed(&["alpha", "beta"]);
    let out = env.run(&["--json", "list"]);
    let list = json(&out);
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(list[0]["route"], "alpha.lobster.local");
    assert_eq!(list[1]["allocation"]["guest_ip"], "10.200.0.6");
    assert!(
        !text(&out.stdout).contains("token"),
        "tokens leaked: {}",
        text(&out.stdout)
    );
    let out = env.run(&["list"]);
    let table = text(&out.stdout);
    assert!(
        table.contains("alpha") && table.contains("creating"),
        "{table}"
    );
}

#[test]
fn token_prints_the_gateway_token() {
    let env = Env::initialised();
    env.seed(&["alpha"]);
    let config = Config::load(&env.config()).unwrap();
    let expected = Store::new(&config.paths.state_dir).read().unwrap().tenants["alpha"]
        .gateway_token
        .clone();
    let out = env.run(&["token", "alpha"]);
    assert_eq!(code(&out), 0);
    assert_eq!(text(&out.stdout).trim(), expected);
}

#[test]
fn missing_tenant_is_not_found_and_printed_once() {
    let env = Env::initialised();
    for cmd in [
        &["token", "ghost"][..],
        &["token", "--rotate", "ghost"],
        &["evict", "ghost", "-y"],
        &["logs", "ghost"],
    ] {
        let out = env.run(cmd);
        assert_eq!(code(&out), 10, "{cmd:?}");
        let stderr = text(&out.stderr);
        assert_eq!(
            stderr.matches("no tenant named `ghost`").count(),
            1,
            "{stderr}"
        );
    }
    let out = env.run(&["--json", "token", "ghost"]);
    assert_eq!(json(&out)["error"]["kind"], "not_found");
}

#[test]
fn bad_spawn_input_names_the_field() {
    let env = Env::initialised();
    let out = env.run(&["spawn", "Bad_Name"]);
    assert_eq!(code(&out), 12);
    assert!(
        text(&out.stderr).contains("field `name`"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&["spawn", "ok", "--vcpus", "99"]);
    assert_eq!(code(&out), 12);
    assert!(text(&out.stderr).contains("field `vcpus`"));
    let out = env.run(&["spawn", "ok", "--env", "NOEQUALS"]);
    assert_eq!(code(&out), 12);
}

#[test]
fn spawn_without_images_names_the_missing_image_and_leaves_nothing() {
    let env = Env::initialised();
    let out = env.run(&["spawn", "alpha"]);
    assert_eq!(code(&out), 10, "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("kernel image") && stderr.contains("is missing"),
        "{stderr}"
    );
    assert_eq!(json(&env.run(&["--json", "list"])), serde_json::json!([]));
}

#[test]
fn exec_usage_errors_exit_2() {
    let env = Env::initialised();
    env.seed(&["alpha"]);
    for args in [
        &["exec", "alpha"][..],
        &["exec", "alpha", "--"],
        &["exec", "alpha", "true"],
        &["exec", "alpha", "-e", "NOEQUALS", "--", "true"],
        &["exec", "alpha", "--timeout", "soon", "--", "true"],
    ] {
        let out = env.run(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", all(&out));
    }
}

#[test]
fn exec_with_a_terminal_needs_one_on_stdin() {
    let env = Env::initialised();
    env.seed(&["alpha"]);
    for tty in ["-t", "-it"] {
        let out = env.run(&["exec", tty, "alpha", "--", "sh"]);
        assert_eq!(code(&out), 2, "{}", all(&out));
        assert!(
            text(&out.stderr).contains("-t needs a terminal on stdin"),
            "{}",
            all(&out)
        );
    }
}

#[test]
fn configure_and_devices_usage_errors_exit_2() {
    let env = Env::initialised();
    env.seed(&["alpha"]);
    for args in [
        &["configure"][..],
        &["configure", "alpha", "--set", "a.b=c", "--get", "a.b"],
        &["configure", "alpha", "--get"],
        &["devices", "alpha", "approve"],
        &["devices", "alpha", "reject"],
        &["devices", "alpha", "forget", "x"],
    ] {
        let out = env.run(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", all(&out));
    }
}

#[test]
fn configure_without_set_or_get_needs_a_terminal() {
    let env = Env::initialised();
    env.seed(&["alpha"]);
    let out = env.run(&["configure", "alpha"]);
    assert_eq!(code(&out), 2, "{}", all(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("configure needs a terminal on stdin") && stderr.contains("--set"),
        "{}",
        all(&out)
    );
}

#[test]
fn configure_and_devices_name_bad_input_before_touching_the_tenant() {
    let env = Env::initialised();
    env.seed(&["alpha"]);
    for (args, want) in [
        (
            &["configure", "alpha", "--set", "logging.level"][..],
            "KEY=VALUE",
        ),
        (
            &[
                "configure",
                "alpha",
                "--set",
                "a.b=c",
                "--set",
                "gateway.port=9001",
            ],
            "\"gateway.port\" touches gateway.port, which lobster manages",
        ),
        (&["configure", "alpha", "--get", "a[0]"], "dot path"),
        (
            &["devices", "alpha", "approve", "--", "-x y"],
            "invalid device id",
        ),
    ] {
        let out = env.run(args);
        assert_eq!(code(&out), 12, "{args:?}: {}", all(&out));
        assert!(text(&out.stderr).contains(want), "{args:?}: {}", all(&out));
    }
}

#[test]
fn configure_and_devices_on_an_unknown_tenant_are_not_found() {
    let env = Env::initialised();
    for args in [
        &["configure", "ghost", "--get", "a.b"][..],
        &["configure", "ghost", "--set", "a.b=c"],
        &["devices", "ghost"],
        &["devices", "ghost", "approve", "abc-1"],
    ] {
        let out = env.run(args);
        assert_eq!(code(&out), 10, "{args:?}: {}", all(&out));
        assert!(
            text(&out.stderr).contains("ghost"),
            "{args:?}: {}",
            all(&out)
        );
    }
}

#[test]
fn exec_on_an_unknown_tenant_is_not_found() {
    let env = Env::initialised();
    let out = env.run(&["exec", "ghost", "--", "true"]);
    assert_eq!(code(&out), 10, "{}", all(&out));
    assert!(text(&out.stderr).contains("ghost"), "{}", all(&out));
}

#[test]
fn exec_on_a_tenant_that_does_not_run_names_its_state() {
    let env = Env::initialised();
    env.seed(&["alpha"]);
    let out = env.run(&["exec", "alpha", "--", "true"]);
    assert_eq!(code(&out), 13, "{}", all(&out));
    assert!(
        text(&out.stderr).contains("tenant `alpha` is creating; exec needs running or suspended"),
        "{}",
        all(&out)
    );
}

#[test]
fn exec_names_a_bad_field_before_touching_the_tenant() {
    let env = Env::initialised();
    let out = env.run(&["exec", "ghost", "-w", "relative", "--", "true"]);
    assert_eq!(code(&out), 12, "{}", all(&out));
    assert!(text(&out.stderr).contains("field `cwd`"), "{}", all(&out));
}

/// Only the refusal runs here (T0): an uninit that proceeds changes the
/// host's firewall and forwarding (t1_uninit runs it in a namespace).
#[test]
fn uninit_with_tenants_refuses_naming_them_and_changes_nothing() {
    let env = Env::initialised();
    env.seed(&["alpha", "beta"]);
    let before = std::fs::read(env.state().join("registry.json")).unwrap();
    for args in [&["uninit"][..], &["uninit", "--purge", "-y"]] {
        let out = env.run(args);
        assert_eq!(code(&out), 13, "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("2 tenant(s) exist (alpha, beta)")
                && stderr.contains("nothing was changed"),
            "{stderr}"
        );
    }
    let out = env.run(&["--json", "uninit"]);
    assert_eq!(json(&out)["error"]["kind"], "invalid_state");
    // --purge asks first; without a terminal it refuses unless --yes.
    let out = env.run(&["uninit", "--purge"]);
    assert_eq!(code(&out), 12, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("pass --yes"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read(env.state().join("registry.json")).unwrap(),
        before
    );
    assert!(!env.state().join("host.json").exists());
}

#[test]
fn molt_and_tank_on_an_empty_host() {
    let env = Env::initialised();
    let out = env.run(&["--json", "molt"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(json(&out), serde_json::json!([]));
    let out = env.run(&["molt", "nope"]);
    assert_eq!(code(&out), 10, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no tenant named `nope`"));
    let out = env.run(&["--json", "tank"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let snapshot = json(&out);
    assert_eq!(snapshot["tenants"], serde_json::json!([]));
    assert_eq!(snapshot["watchdog"], serde_json::Value::Null);
}

#[test]
fn corrupt_registry_exits_18_and_is_left_alone() {
    let env = Env::initialised();
    let registry = env.state().join("registry.json");
    std::fs::write(&registry, b"{ torn").unwrap();
    let out = env.run(&["list"]);
    assert_eq!(code(&out), 18);
    assert!(
        text(&out.stderr).contains("is corrupt"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&registry).unwrap(), b"{ torn");
}

#[test]
fn bad_or_missing_config_is_named() {
    let env = Env::new();
    let out = env.run(&["list"]);
    assert_eq!(code(&out), 10);
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "error: no configuration at {}: run `lobsterd init` to create it \
             (or name another with --config or $LOBSTERD_CONFIG)",
            env.config().display()
        )
    );
    let out = env.run(&["--json", "uninit"]);
    assert_eq!(json(&out)["error"]["kind"], "not_found");
    std::fs::create_dir_all(env.config().parent().unwrap()).unwrap();
    std::fs::write(env.config(), br#"{"network": {"pool": "10.0.0.0/31"}}"#).unwrap();
    let out = env.run(&["list"]);
    assert_eq!(code(&out), 12);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("config.json") && stderr.contains("`network.pool`"),
        "{stderr}"
    );
}

#[test]
fn config_env_variable_selects_the_file() {
    let env = Env::initialised();
    env.seed(&["viaenv"]);
    let out = Command::new(env!("CARGO_BIN_EXE_lobsterd"))
        .args(["--json", "list"])
        .env("LOBSTERD_CONFIG", env.config())
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(json(&out)[0]["name"], "viaenv");
}

#[test]
fn tank_json_prints_one_snapshot_with_the_watchdogs_view() {
    use lobster_core::health::{HealthState, TenantHealth, TenantWatch, WatchStatus};
    let env = Env::initialised();
    let out = env.run(&["--json", "tank"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let empty = json(&out);
    assert_eq!(empty["tenants"], serde_json::json!([]));
    assert!(empty["watchdog"].is_null(), "{empty}");

    env.seed(&["beta", "alpha"]);
    let watch = WatchStatus {
        pid: std::process::id(),
        started_ms: 1,
        updated_ms: 2,
        tick: 3,
        interval_ms: 5000,
        tenants: [(
            "beta".to_owned(),
            TenantWatch {
                health: TenantHealth {
                    state: HealthState::Degraded,
                    ..TenantHealth::default()
                },
                last_event: Some("repairing".into()),
                last_event_ms: Some(2),
                ..TenantWatch::default()
            },
        )]
        .into(),
        repairs: [(
            "restart_vm".to_owned(),
            lobster_core::health::RepairCount { ok: 2, failed: 1 },
        )]
        .into(),
    };
    std::fs::write(
        WatchStatus::path(&env.state()),
        serde_json::to_vec(&watch).unwrap(),
    )
    .unwrap();
    let out = env.run(&["--json", "tank"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let snapshot = json(&out);
    assert_eq!(snapshot["watchdog"]["pid"], std::process::id());
    assert_eq!(snapshot["watchdog"]["alive"], true);
    assert_eq!(snapshot["watchdog"]["tick"], 3);
    assert_eq!(
        snapshot["watchdog"]["repairs"]["restart_vm"],
        serde_json::json!({ "ok": 2, "failed": 1 })
    );
    let tenants = snapshot["tenants"].as_array().unwrap();
    let names: Vec<&str> = tenants
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert!(tenants[0]["state"].is_null(), "unchecked: {snapshot}");
    assert_eq!(tenants[0]["health"], "-");
    assert_eq!(tenants[1]["state"], "degraded");
    assert_eq!(tenants[1]["last_event"], "repairing");
    assert_eq!(tenants[1]["memory_mib"], 256);
    assert!(tenants[1]["ip"]
        .as_str()
        .unwrap()
        .parse::<std::net::Ipv4Addr>()
        .is_ok());
    assert!(snapshot["taken_ms"].as_u64().unwrap() > 0);
}

#[test]
fn tank_without_a_terminal_points_at_json() {
    let env = Env::initialised();
    let out = env.run(&["tank"]);
    assert_eq!(code(&out), 15, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("standard output is not a terminal (use --json"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "nothing drawn: {}",
        text(&out.stdout)
    );
    let out = env.run(&["tank", "--interval-ms", "5"]);
    assert_eq!(code(&out), 2, "interval below 100 ms is a usage error");
}
