//! T0: spawn, evict and recover of one tenant name from many OS processes
//! at once, some of them SIGKILLed midway, end with a whole tenant or none:
//! never a half one, and never a VMM the registry does not record.
//!
//! This binary re-executes itself as the workers (`LOBSTER_LIFECYCLE_WORKER`
//! names the operation), so they share only what separate `lobsterd`s
//! share: the state directory, the overlay disks and the VMM processes.
//! Real VMs are too slow for hundreds of operations, so each worker runs the
//! test kit's fake rig over the shared directory ([`GuestSide::Booted`]:
//! the Firecracker backend against the spec-checked fake API server, a real
//! stand-in VMM process and the real agent booting in the worker). TAPs,
//! firewall rules and routes are each worker's in-memory fakes, so they are
//! not compared here (recover.rs covers them within one process).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use lobster_core::config::{Config, PathsConfig};
use lobster_core::store::{Store, TenantStatus};
use lobster_core::tenant::{plan, TenantSpec};
use lobster_testkit::rig::{self, FakeHost, GuestSide};

const WORKER_ENV: &str = "LOBSTER_LIFECYCLE_WORKER";
const ROOT_ENV: &str = "LOBSTER_LIFECYCLE_ROOT";
/// The one name every worker fights over.
const NAME: &str = "contested";
/// The rig's tenant pool is `127.<NET>.0.0/24`.
const NET: u8 = 140;
const ROUNDS: usize = 8;
/// Workers started together in each round.
const WORKERS: usize = 8;
/// What an operation may answer when others race it: the name is taken,
/// absent, or (evict's `InvalidState`) being spawned by a live process.
const EXPECTED: &[&str] = &[
    "spawn: ok",
    "spawn: AlreadyExists",
    "evict: ok",
    "evict: NotFound",
    "evict: InvalidState",
    "recover: ok",
];
/// How long any worker may take.
const WORKER_DEADLINE: Duration = Duration::from_secs(120);

fn main() {
    if let Ok(operation) = std::env::var(WORKER_ENV) {
        let root = std::env::var(ROOT_ENV).expect("worker needs the host root");
        worker(&operation, Path::new(&root));
        return;
    }
    let args = Arguments::from_args();
    let trials = vec![Trial::test(
        "racing_spawn_evict_recover_leave_a_whole_tenant_or_none",
        racing_operations,
    )];
    libtest_mimic::run(&args, trials).exit();
}

/// The shared host's config, as every worker opens it.
fn config(root: &Path) -> Config {
    rig::config(root, GuestSide::Booted { net: NET }, |_| {})
}

/// Runs one operation on the shared host and prints its outcome.
fn worker(operation: &str, root: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let shared = PathsConfig::under(root);
        let rig = FakeHost::build(GuestSide::Booted { net: NET }, |c| c.paths = shared).await;
        let outcome = match operation {
            "spawn" => {
                let spec = TenantSpec::builder(NAME)
                    .command(vec![
                        "/bin/sh".into(),
                        "-c".into(),
                        "exec sleep 3600".into(),
                    ])
                    .build()
                    .expect("spec");
                rig.host.spawn(spec).await.map(|_| ())
            }
            "evict" => rig.host.evict(NAME).await,
            "recover" => rig.host.recover().await.map(|_| ()),
            other => panic!("unknown operation {other}"),
        };
        match outcome {
            Ok(()) => println!("{operation}: ok"),
            Err(e) => println!("{operation}: {:?}: {}", e.kind(), e.chain()),
        }
    });
}

fn start(operation: &str, root: &Path) -> Child {
    Command::new(std::env::current_exe().expect("own path"))
        .env(WORKER_ENV, operation)
        .env(ROOT_ENV, root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start worker")
}

/// Waits for `child`; `Ok(true)` when it exited 0, `Ok(false)` when killed.
fn finish(mut child: Child, killed: bool) -> Result<String, Failed> {
    let deadline = Instant::now() + WORKER_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let mut out = String::new();
            std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out)
                .map_err(|e| e.to_string())?;
            if !killed && !status.success() {
                return Err(format!("a worker failed ({status}): {out}").into());
            }
            return Ok(out.trim().to_owned());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("a worker hung".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A tiny deterministic generator: the same schedule every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn racing_operations() -> Result<(), Failed> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = dir.path();
    let config = config(root); // writes the stand-in images
    let guard = KillVmmsOnDrop(root.to_path_buf());
    let mut rng = Lcg(12);
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..ROUNDS {
        let mut children = Vec::new();
        for _ in 0..WORKERS {
            let operation = ["spawn", "spawn", "evict", "recover"][rng.below(4) as usize];
            // About one in three spawns and evicts dies midway.
            let doomed = operation != "recover" && rng.below(3) == 0;
            children.push((start(operation, root), doomed));
        }
        std::thread::sleep(Duration::from_millis(100 + rng.below(600)));
        for (child, doomed) in &mut children {
            if *doomed {
                let _ = child.kill();
            }
        }
        for (child, doomed) in children {
            let out = finish(child, doomed)?;
            if out.is_empty() {
                continue; // killed before it reported
            }
            let outcome = out.split(": ").take(2).collect::<Vec<_>>().join(": ");
            // An operation fails only for what the name's state says, never
            // because another one acted on the tenant underneath it.
            let refused_spawning =
                outcome != "evict: InvalidState" || out.contains("is being spawned by process");
            if !EXPECTED.contains(&outcome.as_str()) || !refused_spawning {
                return Err(format!("round {round}: unexpected outcome {out}").into());
            }
            *tally.entry(outcome).or_default() += 1;
        }
        // Between rounds (and at the end) the next command has recovered.
        finish(start("recover", root), false)?;
        assert_whole(&config, root).map_err(|e| format!("after round {round}: {e}"))?;
    }
    eprintln!("outcomes: {tally:?}");
    finish(start("evict", root), false)?;
    assert_whole(&config, root)?;
    if Store::new(&config.paths.state_dir)
        .read()
        .map_err(|e| e.to_string())?
        .tenants
        .contains_key(NAME)
    {
        return Err("the final evict left the tenant".into());
    }
    drop(guard);
    Ok(())
}

/// Polls until the host holds a whole tenant `NAME` or none (VMMs exit
/// asynchronously), then returns the mismatch if it never does.
fn assert_whole(config: &Config, root: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let problem = match whole(config, root) {
            Ok(()) => return Ok(()),
            Err(problem) => problem,
        };
        if Instant::now() > deadline {
            return Err(problem);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn whole(config: &Config, root: &Path) -> Result<(), String> {
    let registry = Store::new(&config.paths.state_dir)
        .read()
        .map_err(|e| e.to_string())?;
    let vmms = vmms_under(root);
    let files = tenant_files(root);
    match registry.tenants.get(NAME) {
        None => {
            if !vmms.is_empty() || !files.is_empty() {
                return Err(format!("no tenant, yet VMMs {vmms:?} and files {files:?}"));
            }
        }
        Some(record) => {
            let vm = record.vm.map(|vm| vm.identity);
            let recorded: BTreeSet<i32> = vm.iter().map(|v| v.pid).collect();
            let overlay = plan::overlay(config, record);
            if record.status != TenantStatus::Running
                || record.owner.is_some()
                || !vm.is_some_and(|v| v.is_alive())
                || vmms != recorded
                || !overlay.path().is_file()
            {
                return Err(format!(
                    "a half tenant: {} (owner {:?}), recorded VM {vm:?}, running VMMs {vmms:?}, files {files:?}",
                    record.status, record.owner
                ));
            }
        }
    }
    Ok(())
}

/// Stand-in VMMs of this host: processes whose command line names a path
/// under `root` (their `--api-sock`).
fn vmms_under(root: &Path) -> BTreeSet<i32> {
    let needle = root.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            });
            !zombie
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// Files under `root` that belong to a tenant: all but the stand-in
/// images, the registry, the lock files and the overlay templates.
fn tenant_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if !["images", "locks", ".templates"].contains(&name.as_str()) {
                    stack.push(path);
                }
            } else if !name.starts_with("registry") {
                out.push(relative);
            }
        }
    }
    out
}

/// Kills every stand-in VMM of the host when the test ends, however it
/// ends (a test ends what it started).
struct KillVmmsOnDrop(PathBuf);

impl Drop for KillVmmsOnDrop {
    fn drop(&mut self) {
        for pid in vmms_under(&self.0) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}
