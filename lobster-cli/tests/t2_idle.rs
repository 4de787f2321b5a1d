//! T2: idle auto-suspend, holds and scheduled wake, through `lobsterd` as
//! a process with real guests (QEMU/TCG, the minimal image), TAPs,
//! iptables and Caddy inside the test's network namespace. One host, three
//! tenants idle after 5 s by their own setting (the host's is off):
//!
//! - `idle`, untouched: `lobsterd watch` suspends it (no VMM left);
//! - `held`, whose agent holds a hold the test took: never suspended while
//!   the hold lasts, suspended once it is released;
//! - `cron`, whose workload has a job in OpenClaw's cron store (a real
//!   SQLite state database with OpenClaw's `cron_jobs` table, written into
//!   the guest by the workload: the minimal image has no OpenClaw, and the
//!   agent reads the store from the workload's home as it would OpenClaw's):
//!   suspended with a wake time of the job less `suspend.wake_ahead_s`, and resumed
//!   by the watchdog at that time, before the job is due.
//!
//! Needs what `t2_lifecycle` needs, and `base64`; suspend and resume
//! themselves (`lobsterd suspend`/`resume`) must work on QEMU.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lobster_core::agent::Agent;
use lobster_testkit::netns::{in_netns, require, sh, Ctx};
use lobster_testkit::poll;

mod common;

use common::t2::{output, require_t2, Lobster, Watch, WORKLOAD};

/// Idle time of every test tenant (its own `--idle-suspend-after`).
const IDLE_S: u64 = 5;
/// How long before its job `cron` is woken (`suspend.wake_ahead_s`).
const WAKE_AHEAD_S: u64 = 30;
/// How far after its spawn `cron`'s job is due: its boot, an idle time and
/// a suspend fit well before `job - WAKE_AHEAD_S` on a loaded host.
const JOB_AFTER_SPAWN_S: u64 = 180;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// OpenClaw's state database holding one enabled job due at `due_ms`, in
/// the form OpenClaw 2026.9.6 writes it (`cron_jobs`, `state_json`).
fn cron_store(dir: &Path, due_ms: u64) -> Vec<u8> {
    let path = dir.join("openclaw.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE cron_jobs (
           store_key TEXT NOT NULL, job_id TEXT NOT NULL, declaration_key TEXT,
           owner_agent_id TEXT, name TEXT NOT NULL, description TEXT,
           enabled INTEGER NOT NULL, agent_id TEXT, payload_kind TEXT NOT NULL,
           job_json TEXT NOT NULL, grant_definition_revision TEXT,
           grant_definition_generation INTEGER, grant_definition_updated_at INTEGER,
           state_json TEXT NOT NULL DEFAULT '{}', runtime_updated_at_ms INTEGER,
           schedule_identity TEXT, sort_order INTEGER NOT NULL DEFAULT 0,
           updated_at INTEGER NOT NULL, PRIMARY KEY (store_key, job_id)
         ) STRICT;",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO cron_jobs (store_key, job_id, name, enabled, payload_kind, job_json,
           state_json, updated_at)
         VALUES ('/root/.openclaw/cron/jobs.json', 'daily-digest', 'digest', 1, 'agentTurn',
           '{\"schedule\":{\"kind\":\"every\",\"everyMs\":86400000}}', ?1, 0)",
        [format!(r#"{{"nextRunAtMs":{due_ms}}}"#)],
    )
    .unwrap();
    drop(conn);
    std::fs::read(&path).unwrap()
}

/// The test workload, after writing `store` where OpenClaw keeps its state
/// database (`$HOME/.openclaw/state/openclaw.sqlite`).
fn workload_with_store(store: &[u8], dir: &Path) -> String {
    let raw = dir.join("store.bin");
    std::fs::write(&raw, store).unwrap();
    let encoded = sh(&["base64", "-w0", raw.to_str().unwrap()]);
    format!(
        "mkdir -p \"$HOME/.openclaw/state\" && echo '{}' | base64 -d > \"$HOME/.openclaw/state/openclaw.sqlite\"\n{WORKLOAD}",
        encoded.trim()
    )
}

/// The agent of `name`, as the host reaches it (the test runs as root).
fn agent(lobster: &Lobster, name: &str) -> Agent {
    let record = lobster.record(name);
    let ip = record["allocation"]["guest_ip"].as_str().unwrap();
    let at = |port: u16| -> SocketAddr { format!("{ip}:{port}").parse().unwrap() };
    Agent::new(at(52), at(53), record["agent_token"].as_str().unwrap())
}

fn spawn(lobster: &Lobster, name: &str, command: &str) {
    let tenant = format!("TENANT={name}");
    let idle = IDLE_S.to_string();
    let out = lobster.run(&[
        "--json",
        "spawn",
        name,
        "--command",
        command,
        "--env",
        &tenant,
        "--env",
        "PROBES=",
        "--idle-suspend-after",
        &idle,
    ]);
    assert!(out.status.success(), "spawn {name}: {}", output(&out));
    assert_eq!(
        lobster.record(name)["resources"]["idle_suspend_after_s"],
        IDLE_S,
        "the tenant's own idle time is recorded"
    );
}

fn status(lobster: &Lobster, name: &str) -> String {
    lobster.record(name)["status"].as_str().unwrap().to_owned()
}

#[test]
#[ignore = "t2: needs root, qemu, caddy and images"]
fn idle_tenants_are_suspended_held_ones_are_not_and_a_job_wakes_one_ahead() {
    in_netns(
        "idle_tenants_are_suspended_held_ones_are_not_and_a_job_wakes_one_ahead",
        |_ctx: &Ctx| {
            require_t2();
            require(&["base64"]);
            let lobster = Lobster::init(4, false); // a power of two
            lobster.edit_config(|c| {
                c["suspend"]["wake_ahead_s"] = WAKE_AHEAD_S.into();
                c["watchdog"]["scheduled_wake_grace_s"] = 600.into();
            });
            let runtime = tokio::runtime::Runtime::new().unwrap();

            spawn(&lobster, "idle", WORKLOAD);
            spawn(&lobster, "held", WORKLOAD);
            let held = agent(&lobster, "held");
            runtime
                .block_on(held.hold_acquire("t2-idle", Duration::from_secs(3600)))
                .expect("hold on held");
            let due_ms = now_ms() + JOB_AFTER_SPAWN_S * 1000;
            let store = cron_store(lobster.dir.path(), due_ms);
            spawn(
                &lobster,
                "cron",
                &workload_with_store(&store, lobster.dir.path()),
            );
            // The workload writes the store as it starts.
            let cron = agent(&lobster, "cron");
            let mut last = None;
            let read = poll::within(Duration::from_secs(60), || {
                last = runtime
                    .block_on(cron.stats())
                    .ok()
                    .map(|s| s.next_job_at_ms);
                last.flatten()
            });
            assert_eq!(read, Some(due_ms), "the agent reads the store: {last:?}");

            let mut watch = Watch::start(&lobster);
            let idle_id = lobster.record("idle")["id"].as_str().unwrap().to_owned();
            let suspended = watch.first("idle suspended", Duration::from_secs(240), |e| {
                e["event"] == "suspend" && e["tenant"] == "idle"
            });
            assert_eq!(suspended["trigger"], "idle", "{suspended}");
            assert_eq!(suspended["ok"], true, "{suspended}");
            assert!(suspended["idle_ms"].as_u64().unwrap() >= IDLE_S * 1000);
            assert_eq!(status(&lobster, "idle"), "suspended");
            assert!(
                lobster.vmms(&idle_id).is_empty(),
                "a VMM of a suspended tenant runs"
            );

            let suspended = watch.first("cron suspended", Duration::from_secs(240), |e| {
                e["event"] == "suspend" && e["tenant"] == "cron"
            });
            assert_eq!(suspended["ok"], true, "{suspended}");
            let wake_at = lobster.record("cron")["suspended"]["wake_at_ms"]
                .as_u64()
                .expect("cron has a wake time");
            assert_eq!(wake_at, due_ms - WAKE_AHEAD_S * 1000);
            assert!(
                suspended["at_ms"].as_u64().unwrap() < wake_at,
                "cron was suspended too late to show a scheduled wake (a slow host?): {suspended}"
            );

            // Held, idle otherwise, for many idle times: never suspended.
            assert!(
                !watch.any(|e| e["event"] == "suspend" && e["tenant"] == "held"),
                "a tenant with a hold was suspended"
            );
            assert_eq!(status(&lobster, "held"), "running");

            let woken = watch.wait(
                "cron woken on schedule",
                Duration::from_millis(due_ms.saturating_sub(now_ms()) + 60_000),
                |e| e["event"] == "resume" && e["tenant"] == "cron",
            );
            assert_eq!(woken["trigger"], "schedule", "{woken}");
            assert_eq!(woken["ok"], true, "{woken}");
            let started = woken["at_ms"].as_u64().unwrap() - woken["elapsed_ms"].as_u64().unwrap();
            assert!(
                started >= wake_at,
                "woken before its time: {started} < {wake_at}"
            );
            assert!(
                woken["at_ms"].as_u64().unwrap() < due_ms,
                "not running before its job was due: {woken}"
            );
            assert_eq!(status(&lobster, "cron"), "running");
            let stats = runtime
                .block_on(agent(&lobster, "cron").stats())
                .expect("the woken guest's agent answers");
            assert_eq!(stats.next_job_at_ms, Some(due_ms), "its disk came back");
            assert_eq!(status(&lobster, "held"), "running", "still held");

            // The hold was what kept it awake: released, it goes to sleep.
            assert!(runtime.block_on(held.hold_release("t2-idle")).unwrap());
            let suspended = watch.wait("held suspended", Duration::from_secs(120), |e| {
                e["event"] == "suspend" && e["tenant"] == "held"
            });
            assert_eq!(suspended["ok"], true, "{suspended}");
            watch.stop();
        },
    );
}
