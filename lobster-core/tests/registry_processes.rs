//! The registry under real concurrency and crashes, with separate OS
//! processes: this test binary re-executes itself as the worker
//! (`LOBSTER_REGISTRY_WORKER` set), so workers share nothing but the files.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use lobster_core::config::Config;
use lobster_core::store::{Store, StoreError};
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

/// The churn pool: a /23 holds 128 slots, fewer than the `PROCESSES *
/// PER_PROCESS` = 192 allocations (so they succeed only if released slots
/// are reused), and as many as are ever live at once (4 per worker).
const CHURN_POOL: &str = "10.200.0.0/23";
/// The writer's pool: room for the 200 base tenants and its own.
const WRITER_POOL: &str = "10.200.0.0/22";

fn config(pool: &str) -> Config {
    let mut config = Config::default();
    config.network.pool = pool.into();
    config
}

/// Allocates `PER_PROCESS` tenants, releasing every other one right away;
/// prints `<name> <slot> kept|released` for each.
fn churn_worker(dir: &Path) {
    let store = Store::new(dir);
    let config = config(CHURN_POOL);
    let pid = std::process::id();
    for i in 0..PER_PROCESS {
        let name = format!("p{pid}-{i}");
        let record = store
            .allocate(&config, new_tenant(&name))
            .expect("allocate");
        let fate = if i % 2 == 1 {
            store.release(&name).expect("release");
            "released"
        } else {
            "kept"
        };
        println!("{name} {} {fate}", record.allocation.slot);
    }
}

/// Rewrites a large registry forever (until killed), adding and removing a
/// tenant. Inside each update, just before its write, prints `writing` and
/// waits for a byte on stdin: the parent knows when a write starts.
fn writer_worker(dir: &Path) {
    let store = Store::new(dir);
    let churn = store.read().expect("registry").tenants["base0"].clone();
    let mut out = std::io::stdout().lock();
    let mut go = std::io::stdin().lock();
    for i in 0u64.. {
        let name = format!("churn{}", i % 2);
        store
            .update(|reg| {
                writeln!(out, "writing")
                    .and_then(|()| out.flush())
                    .and_then(|()| go.read_exact(&mut [0u8]))
                    .expect("the parent's go");
                if reg.tenants.remove(&name).is_none() {
                    let mut record = churn.clone();
                    record.name.clone_from(&name);
                    reg.tenants.insert(name.clone(), record);
                }
                Ok::<_, StoreError>(())
            })
            .expect("update");
    }
}

fn spawn_worker(role: &str, dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .env(WORKER_ENV, role)
        .env("LOBSTER_REGISTRY_DIR", dir)
        .stdin(Stdio::piped())
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
    let mut slots = Vec::new();
    for child in children {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(format!("worker failed: {}", out.status).into());
        }
        for line in String::from_utf8(out.stdout)?.lines() {
            let [name, slot, fate] = line.split(' ').collect::<Vec<_>>()[..] else {
                return Err(format!("worker printed {line:?}").into());
            };
            slots.push(slot.parse::<u32>()?);
            if fate == "kept" {
                kept.insert(name.to_owned());
            }
        }
    }
    // Every allocation succeeded, more than the pool holds: slots were reused.
    let capacity = config(CHURN_POOL).capacity() as usize;
    if slots.len() != PROCESSES * PER_PROCESS || slots.len() <= capacity {
        return Err(format!("{} allocations in a pool of {capacity}", slots.len()).into());
    }
    let used: HashSet<u32> = slots.iter().copied().collect();
    if used.len() > capacity {
        return Err(format!("{} distinct slots in a pool of {capacity}", used.len()).into());
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
    Ok(())
}

/// Kills a writer (SIGKILL) while it is inside a registry update: it
/// signals each update before its write and waits for the go; the kill
/// follows the go of a later update by a delay spread over a whole write
/// cycle (measured on the writes let through). Each time the registry must
/// load with every base tenant, and some kills must have landed mid-write
/// (leaving the new registry's temporary file behind).
/// Lets the writer through three writes, timing one write cycle (a go to
/// the next signal), then lets it into a fourth and returns `round / rounds`
/// of a cycle later.
fn go_into_a_write(
    writer: &mut std::process::Child,
    round: u32,
    rounds: u32,
) -> Result<(), String> {
    let mut go = writer.stdin.take().expect("piped");
    let mut signals = BufReader::new(writer.stdout.take().expect("piped")).lines();
    let mut signal = || match signals.next() {
        Some(Ok(line)) if line == "writing" => Ok(()),
        other => Err(format!("the writer said {other:?}")),
    };
    signal()?;
    let mut cycle = Duration::MAX;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        go.write_all(b"g").map_err(|e| e.to_string())?;
        signal()?;
        cycle = cycle.min(started.elapsed());
    }
    go.write_all(b"g").map_err(|e| e.to_string())?;
    std::thread::sleep(cycle * round / rounds);
    Ok(())
}

fn sigkill_mid_write() -> Result<(), Failed> {
    // At least MIN_ROUNDS kills, then on until some landed mid-write: on an
    // idle disk the window between creating and renaming the new registry
    // is a small part of a write cycle, so the kill points walk a fine grid
    // of the cycle (GRID steps, scattered) for up to MAX_ROUNDS kills.
    const MIN_ROUNDS: u32 = 16;
    const MAX_ROUNDS: u32 = 400;
    const GRID: u32 = 64;
    let dir = tempfile::tempdir()?;
    let store = Store::new(dir.path());
    let config = config(WRITER_POOL);
    // A registry large enough that a write takes a while.
    for i in 0..200 {
        store.allocate(&config, new_tenant(&format!("base{i}")))?;
    }
    let partial = store.path().with_extension("json.tmp");
    let mut mid_write = 0;
    let mut rounds = 0;
    for round in 0..MAX_ROUNDS {
        if round >= MIN_ROUNDS && mid_write >= 2 {
            break;
        }
        rounds += 1;
        let _ = std::fs::remove_file(&partial);
        let mut child = spawn_worker("writer", dir.path());
        let into_a_write = go_into_a_write(&mut child, round * 37 % GRID, GRID);
        let killed = child.kill(); // SIGKILL
        child.wait()?;
        into_a_write.map_err(|e| format!("round {round}: {e}"))?;
        killed?;
        mid_write += usize::from(partial.exists());
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
    eprintln!("{mid_write} of {rounds} kills left a partial registry file");
    if mid_write == 0 {
        return Err("no kill landed between creating and renaming the new registry".into());
    }
    Ok(())
}
