//! T2: `lobsterd suspend` and `resume` end to end with real guests (QEMU
//! under TCG, the minimal image), real TAPs, iptables and Caddy, inside a
//! network namespace each test creates.
//!
//! The test workload keeps its state where a suspend must keep it: a
//! counter process, a random id in tmpfs (`/tmp`), the HTTP listener that
//! serves both, and a random id on the tenant disk (made once). A resume
//! from the snapshot keeps all of them; a cold boot keeps only the disk's.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use common::t2::*;
use lobster_testkit::cgroup::{status_field, MemoryGroup};
use lobster_testkit::netns::{in_netns, Ctx};
use lobster_testkit::poll;

/// Serves `/tmp/w`: `mem.txt` (new at each workload start, in tmpfs),
/// `disk.txt` (made once on the tenant disk), `count.txt` (a counter
/// process's count, once a second).
const WORKLOAD: &str = r#"mkdir -p /tmp/w
[ -s /root/disk.txt ] || { cat /proc/sys/kernel/random/uuid > /root/disk.txt; sync; }
cp /root/disk.txt /tmp/w/disk.txt
cat /proc/sys/kernel/random/uuid > /tmp/w/mem.txt
(n=0; while true; do n=$((n+1)); echo $n > /tmp/w/count.new; mv /tmp/w/count.new /tmp/w/count.txt; sleep 1; done) &
exec busybox httpd -f -p 9000 -h /tmp/w"#;

/// How long a TCG guest may take to boot and serve.
const BOOT: Duration = Duration::from_secs(240);

fn spawn(lobster: &Lobster, name: &str) {
    let started = Instant::now();
    let out = lobster.run(&["--json", "spawn", name, "--command", WORKLOAD]);
    assert!(out.status.success(), "spawn {name}: {}", output(&out));
    eprintln!("spawn {name}: {:?}", started.elapsed());
}

/// `path` of tenant `name` through Caddy (polled: the guest may still be
/// coming up), trimmed.
fn page(name: &str, path: &str) -> String {
    wait_for_page(name, path, "", BOOT).trim().to_owned()
}

fn count(name: &str) -> u64 {
    page(name, "/count.txt").parse().expect("a count")
}

/// Runs `lobsterd --json ARGS`, asserting success; returns the tenant it
/// printed and how long it took.
fn ok(lobster: &Lobster, args: &[&str]) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    let out = lobster.run(&[&["--json"], args].concat());
    let took = started.elapsed();
    assert!(out.status.success(), "{args:?}: {}", output(&out));
    eprintln!("{args:?}: {took:?}\n{}", text(&out.stderr));
    (serde_json::from_slice(&out.stdout).unwrap(), took)
}

/// Runs `lobsterd ARGS`, asserting it fails with a message containing `want`.
fn refused(lobster: &Lobster, args: &[&str], want: &str) {
    let out = lobster.run(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let all = output(&out);
    assert!(all.contains(want), "{args:?}: want {want:?} in: {all}");
}

/// The recorded VMM pid of `name`.
fn vmm_pid(lobster: &Lobster, name: &str) -> i32 {
    lobster.tenant(name)["vm"]["identity"]["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("{name} has no VM: {}", lobster.tenant(name))) as i32
}

fn mem_available_kib() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .expect("MemAvailable")
}

/// Asserts `name` runs on exactly one VMM and has no snapshot left.
fn assert_running(lobster: &Lobster, name: &str, id: &str, context: &str) {
    let record = lobster.tenant(name);
    assert_eq!(record["status"], "running", "{context}: {record}");
    let vmms = lobster.vmms(id);
    assert_eq!(vmms.len(), 1, "{context}: VMMs {vmms:?}");
    assert_eq!(vmms[0], vmm_pid(lobster, name), "{context}: recorded VMM");
    let snapshots = lobster.state().join(format!("snapshots/{name}"));
    assert!(!snapshots.exists(), "{context}: snapshot left");
}

/// Asserts `name` is suspended with no VMM (process, cgroup, jail).
fn assert_suspended(lobster: &Lobster, name: &str, id: &str, context: &str) {
    let record = lobster.tenant(name);
    assert_eq!(record["status"], "suspended", "{context}: {record}");
    assert!(record.get("vm").is_none(), "{context}: {record}");
    // A VMM that recovery killed may take a moment to go (its memory
    // freed): it must be gone within seconds, never keep running.
    poll::until(
        &format!("{context}: no VMM to run"),
        Duration::from_secs(10),
        || lobster.vmms(id).is_empty().then_some(()),
    );
    let group = MemoryGroup::at(&lobster.cgroups.relative.join(id)).unwrap();
    assert!(!group.dir.exists(), "{context}: cgroup left");
    let jail = lobster.state().join(format!("jail/qemu/{id}"));
    assert!(!jail.exists(), "{context}: jail left");
}

#[test]
#[ignore = "t2: needs root, qemu, caddy and images"]
fn suspend_and_resume_keep_the_guest_and_free_its_memory() {
    in_netns(
        "suspend_and_resume_keep_the_guest_and_free_its_memory",
        |_ctx: &Ctx| {
            require_t2();
            let lobster = Lobster::init(1, false);
            refused(&lobster, &["suspend", "ghost"], "ghost");
            refused(&lobster, &["resume", "ghost"], "ghost");
            spawn(&lobster, "s");
            let id = lobster.id("s");
            let mem = page("s", "/mem.txt");
            let disk = page("s", "/disk.txt");
            refused(
                &lobster,
                &["resume", "s"],
                "is running; resume needs suspended",
            );

            // Suspend: the VMM and its memory go.
            let pid = vmm_pid(&lobster, "s");
            // The guest's memory is QEMU's anonymous memory.
            let rss_kib: u64 = status_field(pid, "RssAnon")
                .trim_end_matches(" kB")
                .parse()
                .unwrap();
            let group = MemoryGroup::at(&lobster.cgroups.relative.join(&id)).unwrap();
            let charged = group.usage();
            let available = mem_available_kib();
            let before = count("s");
            let (tenant, took) = ok(&lobster, &["suspend", "s"]);
            assert_eq!(tenant["status"], "suspended", "{tenant}");
            assert_suspended(&lobster, "s", &id, "after suspend");
            assert!(!alive(pid), "the VMM process {pid} lives on");
            // Its cgroup, charged with at least the guest's resident memory,
            // is gone: the host got that memory back.
            assert!(
                charged >= rss_kib * 1024,
                "cgroup charge {charged} < RssAnon {rss_kib} KiB"
            );
            eprintln!(
                "suspend took {took:?}; VMM RssAnon {rss_kib} KiB, cgroup charge {} KiB, MemAvailable +{} KiB",
                charged / 1024,
                (mem_available_kib() as i64) - (available as i64)
            );
            // The snapshot: private to the tenant's uid.
            let uid = lobster.tenant("s")["allocation"]["jail_uid"]
                .as_u64()
                .unwrap() as u32;
            let dir = lobster.state().join("snapshots/s");
            let meta = std::fs::metadata(&dir).unwrap();
            assert_eq!(
                (meta.mode() & 0o777, meta.uid()),
                (0o700, uid),
                "snapshot dir"
            );
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let meta = entry.metadata().unwrap();
                assert_eq!(
                    (meta.mode() & 0o777, meta.uid()),
                    (0o600, uid),
                    "{}",
                    entry.path().display()
                );
                eprintln!(
                    "snapshot file {}: {} bytes apparent, {} bytes on disk",
                    entry.file_name().to_string_lossy(),
                    meta.len(),
                    meta.blocks() * 512
                );
            }
            refused(
                &lobster,
                &["suspend", "s"],
                "is suspended; suspend needs running",
            );
            assert_suspended(&lobster, "s", &id, "after a refused suspend");

            // Resume: the same processes, memory and listener.
            let (tenant, took) = ok(&lobster, &["resume", "s"]);
            eprintln!("resume (to agent ready and route) took {took:?}");
            assert_eq!(tenant["status"], "running", "{tenant}");
            assert!(tenant.get("last_error").is_none(), "{tenant}");
            assert_running(&lobster, "s", &id, "after resume");
            assert_eq!(page("s", "/mem.txt"), mem, "tmpfs survives");
            let after = count("s");
            assert!(
                after >= before && after < before + 30,
                "the counter goes on: {before} then {after}"
            );
            poll::until("the counter counting", Duration::from_secs(30), || {
                (count("s") > after).then_some(())
            });

            // A suspend failing after the pause: the guest runs on.
            let parent = lobster.state().join("snapshots");
            std::fs::remove_dir(&parent).unwrap();
            std::fs::write(&parent, "in the way").unwrap();
            refused(
                &lobster,
                &["suspend", "s"],
                "failed at step snapshot; the VM was resumed",
            );
            std::fs::remove_file(&parent).unwrap();
            assert_running(&lobster, "s", &id, "after a failed suspend");
            let now = count("s");
            poll::until("the counter counting", Duration::from_secs(30), || {
                (count("s") > now).then_some(())
            });
            assert_eq!(page("s", "/mem.txt"), mem, "the same guest");

            // A corrupted snapshot: a cold boot from the disk, and why.
            ok(&lobster, &["suspend", "s"]);
            let state = dir.join("qemu-state.bin");
            let mut bytes = std::fs::read(&state).unwrap();
            bytes[..4096].fill(0xa5);
            std::fs::write(&state, &bytes).unwrap();
            let (tenant, took) = ok(&lobster, &["resume", "s"]);
            eprintln!("cold-boot resume took {took:?}");
            let why = tenant["last_error"].as_str().unwrap_or_default();
            assert!(
                why.contains("cold-booted") && why.contains("restore"),
                "{tenant}"
            );
            assert_running(&lobster, "s", &id, "after the cold boot");
            assert_ne!(page("s", "/mem.txt"), mem, "a cold boot is a new guest");
            assert_eq!(page("s", "/disk.txt"), disk, "the disk's data is intact");

            // Evict of a suspended tenant: everything goes, the snapshot too.
            ok(&lobster, &["suspend", "s"]);
            let out = lobster.run(&["evict", "-y", "s"]);
            assert!(out.status.success(), "evict: {}", output(&out));
            lobster.assert_gone("s", &id);
            assert!(!dir.exists(), "snapshot dir left");
        },
    );
}

/// Runs `lobsterd ARGS` and SIGKILLs it once it reports starting `phase`.
fn kill_at(lobster: &Lobster, args: &[&str], phase: &str) {
    let (mut child, seen) = start_until_phase(lobster.command(args), phase);
    let marker = format!("[{phase}] ...");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    eprintln!("killed {args:?} at {phase} after: {seen:?}");
    assert!(
        seen.iter().any(|l| l.contains(&marker)),
        "never reached {phase}: {seen:?}"
    );
}

#[test]
#[ignore = "t2: needs root, qemu, caddy and images"]
fn a_killed_suspend_or_resume_leaves_a_running_or_resumable_tenant() {
    in_netns(
        "a_killed_suspend_or_resume_leaves_a_running_or_resumable_tenant",
        |_ctx: &Ctx| {
            require_t2();
            let lobster = Lobster::init(1, false);
            spawn(&lobster, "k");
            let id = lobster.id("k");
            let mem = page("k", "/mem.txt");
            // After each kill, the next command (`list`) settles the
            // tenant: running, or suspended with no VMM and a snapshot
            // that resumes. Either way the guest's memory is never lost.
            let settle = |context: &str| {
                let record = lobster.tenant("k");
                match record["status"].as_str() {
                    Some("running") => {}
                    Some("suspended") => {
                        assert_suspended(&lobster, "k", &id, context);
                        ok(&lobster, &["resume", "k"]);
                    }
                    _ => panic!("{context}: {record}"),
                }
                assert_running(&lobster, "k", &id, context);
                assert_eq!(page("k", "/mem.txt"), mem, "{context}: guest memory lost");
            };
            for phase in [
                "stats", "version", "pause", "snapshot", "manifest", "stop", "registry", "route",
            ] {
                kill_at(&lobster, &["suspend", "k"], phase);
                settle(&format!("suspend killed at {phase}"));
            }
            for phase in [
                "version", "check", "restore", "continue", "agent", "clock", "cleanup", "registry",
                "route",
            ] {
                ok(&lobster, &["suspend", "k"]);
                kill_at(&lobster, &["resume", "k"], phase);
                settle(&format!("resume killed at {phase}"));
            }
        },
    );
}
