//! The registry under real concurrency and crashes, with separate OS
//! processes: this test binary re-executes itself as the worker
//! (`LOBSTER_REGISTRY_WORKER` set), so workers share nothing but the files.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use lobster_core::config::Config;
use lobster_core::store::Store;
use lobster_testkit::registry::new_tenant;

const WORKER_ENV: &str = "LOBSTER_REGISTRY_WORKER";
const PROCESSES: usize = 32;
const PER_PROCESS: usize = 6;

fn main() {
    if let Ok(role) = std::env::var(WORKER_ENV) {
        let dir = std::env::var("LOBSTER_REGISTRY_DIR").expect("worker needs a directory");
        match role.as_str() {
            "churn" => churn_worker(Path::new(&dir)),
            "writer" => writer_worker(Path::new(&dir)),
            other => panic!("unknown worker role {other}"),
        }
        return;
    }
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test(
            "concurrent_processes_never_share_resources",
            concurrent_processes,
        ),
        Trial::test(
            "sigkill_mid_write_leaves_a_loadable_registry",
            sigkill_mid_write,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn config() -> Config {
    let mut config = Config::default();
    // Small enough that slots get reused, large enough for every live tenant.
    config.network.pool = "10.200.0.0/22".into();
    config
}

/// Allocates `PER_PROCESS` tenants, releasing every other one right away;
/// prints the names it kept.
fn churn_worker(dir: &Path) {
    let store = Store::new(dir);
    let config = config();
    let pid = std::process::id();
    for i in 0..PER_PROCESS {
        let name = format!("p{pid}-{i}");
        store
            .allocate(&config, new_tenant(&name))
            .expect("allocate");
        if i % 2 == 1 {
            store.release(&name).expect("release");
        } else {
            println!("{name}");
        }
    }
}

/// Rewrites a large registry forever (until killed).
fn writer_worker(dir: &Path) {
    let store = Store::new(dir);
    let config = config();
    let mut i = 0u64;
    loop {
        let name = format!("churn{}", i % 2);
        let _ = store.allocate(&config, new_tenant(&name));
        let _ = store.release(&name);
        i += 1;
    }
}

fn spawn_worker(role: &str, dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .env(WORKER_ENV, role)
        .env("LOBSTER_REGISTRY_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn worker")
}

fn concurrent_processes() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| spawn_worker("churn", dir.path()))
        .collect();
    let mut kept = HashSet::new();
    for child in children {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(format!("worker failed: {}", out.status).into());
        }
        kept.extend(String::from_utf8(out.stdout)?.lines().map(str::to_owned));
    }
    let expected = PROCESSES * PER_PROCESS.div_ceil(2);
    if kept.len() != expected {
        return Err(format!("workers kept {} tenants, expected {expected}", kept.len()).into());
    }
    let registry = Store::new(dir.path()).read()?;
    let live: HashSet<String> = registry.tenants.keys().cloned().collect();
    if live != kept {
        let lost: Vec<_> = kept.difference(&live).collect();
        let extra: Vec<_> = live.difference(&kept).collect();
        return Err(format!("lost {lost:?}, unexpected {extra:?}").into());
    }
    let records: Vec<_> = registry.tenants.values().collect();
    let distinct = |values: Vec<String>, what: &str| -> Result<(), Failed> {
        let n = values.len();
        let set: HashSet<_> = values.into_iter().collect();
        if set.len() != n {
            return Err(format!("two live tenants share a {what}").into());
        }
        Ok(())
    };
    distinct(
        records
            .iter()
            .map(|r| r.allocation.slot.to_string())
            .collect(),
        "slot",
    )?;
    distinct(
        records
            .iter()
            .map(|r| r.allocation.guest_ip.to_string())
            .collect(),
        "guest ip",
    )?;
    distinct(
        records
            .iter()
            .map(|r| r.allocation.host_ip.to_string())
            .collect(),
        "host ip",
    )?;
    distinct(
        records.iter().map(|r| r.allocation.mac.clone()).collect(),
        "mac",
    )?;
    distinct(
        records
            .iter()
            .map(|r| r.allocation.host_port.to_string())
            .collect(),
        "port",
    )?;
    distinct(
        records
            .iter()
            .map(|r| r.allocation.jail_uid.to_string())
            .collect(),
        "uid",
    )?;
    distinct(
        records.iter().map(|r| r.allocation.tap.clone()).collect(),
        "tap",
    )?;
    distinct(records.iter().map(|r| r.id.clone()).collect(), "id")?;
    // Releases were interleaved with allocations, so slots were reused: the
    // live set packs into the lowest slots only if reuse works.
    let max_slot = records.iter().map(|r| r.allocation.slot).max().unwrap_or(0) as usize;
    if max_slot >= PROCESSES * PER_PROCESS {
        return Err(format!("slot {max_slot} used: released slots were not reused").into());
    }
    Ok(())
}

fn sigkill_mid_write() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let store = Store::new(dir.path());
    let config = config();
    // A registry large enough that a write takes a while.
    for i in 0..200 {
        store.allocate(&config, new_tenant(&format!("base{i}")))?;
    }
    for round in 0..12u64 {
        let mut child = spawn_worker("writer", dir.path());
        // Vary the moment of death across rounds.
        std::thread::sleep(Duration::from_millis(20 + round * 7));
        let killed = child.kill(); // SIGKILL
        child.wait()?;
        killed?;
        let registry = store.read().map_err(|e| format!("round {round}: {e}"))?;
        let base = registry
            .tenants
            .keys()
            .filter(|k| k.starts_with("base"))
            .count();
        if base != 200 {
            return Err(format!("round {round}: {base} of 200 base tenants survived").into());
        }
        if registry.tenants.len() > 202 {
            return Err(format!("round {round}: {} tenants", registry.tenants.len()).into());
        }
    }
    Ok(())
}
