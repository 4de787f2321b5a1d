//! T1: `lobsterd init` (with host setup) then `lobsterd uninit` on an empty
//! host, inside a network namespace the test creates, with every path of
//! the configuration in a temporary directory, Caddy's user and the cgroup
//! parent named for this test alone: uninit with a tenant refuses and
//! changes nothing; without one it leaves the firewall exactly as before
//! init (`iptables-save`), forwarding off again, no Caddy lobster started,
//! no cgroup parent, no runtime directory; a second run is a no-op;
//! `--purge` removes the state, Caddy's directory and the user init made,
//! and is a no-op the second time too.

mod common;

use std::path::{Path, PathBuf};

use common::{all, code, json, run};
use lobster_core::config::{Config, PathsConfig};
use lobster_core::host::HostChanges;
use lobster_core::store::Store;
use lobster_testkit::caddy::reachable_tempdir;
use lobster_testkit::netns::{in_netns, require, Ctx};
use lobster_testkit::registry::new_tenant;

/// Caddy's user in this test (init creates it; `--purge` removes it).
const USER: &str = "lobt-uninit";

/// If the test ends early: stops the Caddys it started (every process of
/// its own user, by pid) and removes that user.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some(uid) = user_uid() else {
            return;
        };
        let pids = || {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                        s.lines()
                            .any(|l| l.split_whitespace().take(2).eq(["Uid:", &uid.to_string()]))
                    })
                })
                .collect::<Vec<_>>()
        };
        for pid in pids() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        let _ = lobster_testkit::poll::within(std::time::Duration::from_secs(10), || {
            pids().is_empty().then_some(())
        });
        let _ = std::process::Command::new("userdel").arg(USER).status();
    }
}

/// The uid of [`USER`], if it exists.
fn user_uid() -> Option<u32> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f[0] == USER)
        .map(|f| f[2].parse().unwrap())
}

fn user_exists() -> bool {
    user_uid().is_some()
}

/// The whole ruleset of the namespace: every rule and chain, and every
/// built-in chain's policy but the default ACCEPT (an empty table, which
/// the first iptables call loads, is the same as none).
fn iptables_save() -> String {
    let out = std::process::Command::new("iptables-save")
        .output()
        .expect("iptables-save");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('*') && *l != "COMMIT")
        .map(|l| match l.split_once(" [") {
            Some((chain, _)) if l.starts_with(':') => chain.to_owned(),
            _ => l.to_owned(),
        })
        .filter(|l| !(l.starts_with(':') && l.ends_with(" ACCEPT")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn forwarding() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
        .unwrap()
        .trim()
        .to_owned()
}

/// `<mount>/<parent>` for each mount of the memory, cpu and pids
/// controllers (v1; the unified mount where there is none), read from
/// mountinfo independently of lobster's cgroup code.
fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut v1 = Vec::new();
    let mut v2 = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let point = PathBuf::from(left.split(' ').nth(4).unwrap());
        let fields: Vec<&str> = right.split(' ').collect();
        match fields[0] {
            "cgroup"
                if fields[2]
                    .split(',')
                    .any(|o| ["memory", "cpu", "pids"].contains(&o)) =>
            {
                v1.push(point.join(parent))
            }
            "cgroup2" => v2.push(point.join(parent)),
            _ => {}
        }
    }
    if v1.is_empty() {
        v2
    } else {
        v1
    }
}

/// The body of `GET path` on Caddy's admin socket.
fn admin_get(socket: &Path, path: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::os::unix::net::UnixStream::connect(socket).expect("admin socket");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    reply.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// Every path under `dir`, relative.
fn tree(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(root).unwrap().to_path_buf());
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
#[ignore = "t1: needs root"]
fn uninit_removes_what_init_set_up_and_refuses_while_tenants_exist() {
    require(&["caddy", "useradd", "userdel", "iptables-restore"]);
    in_netns(
        "uninit_removes_what_init_set_up_and_refuses_while_tenants_exist",
        body,
    );
}

fn body(_ctx: &Ctx) {
    assert!(!user_exists(), "user {USER} is left from an earlier run");
    let dir = reachable_tempdir();
    let parent = format!("lobt-uninit-{}", std::process::id());
    let mut config = Config {
        paths: PathsConfig::under(&dir.path().join("state")),
        ..Config::default()
    };
    config.proxy.user = USER.into();
    config.proxy.caddy_dir = dir.path().join("caddy");
    config.proxy.admin_address = dir.path().join("caddy/admin.sock").display().to_string();
    config.vmm.cgroup_parent = parent.clone().into();
    config.vmm.firecracker.chroot_base = dir.path().join("jailer");
    let config_path = dir.path().join("etc/config.json");
    std::fs::create_dir_all(config_path.parent().unwrap()).unwrap();
    std::fs::write(&config_path, config.to_json_pretty()).unwrap();
    let _cleanup = Cleanup;
    let firewall_before = iptables_save();
    assert_eq!(forwarding(), "0", "a new namespace forwards nothing");

    let out = run(&config_path, &["init"]);
    assert!(out.status.success(), "init: {}", all(&out));
    assert!(iptables_save().contains(":LOBSTER-FORWARD"));
    assert_eq!(forwarding(), "1");
    let recorded = HostChanges::read(&config.paths.state_dir).unwrap();
    let caddy = recorded.caddy.expect("init started caddy and recorded it");
    assert!(caddy.is_alive());
    assert!(recorded.ip_forwarding, "{recorded:?}");
    assert_eq!(recorded.caddy_user.as_deref(), Some(USER));
    assert!(user_exists());
    // Outside the host's network namespace init installs no completions
    // or man pages; one it had installed is recorded, and uninit removes it.
    let docs = dir.path().join("share/lobsterd.bash");
    std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
    let wanted = [(docs.clone(), b"complete".to_vec())];
    assert!(
        lobster_core::host::install_files(&config.paths.state_dir, &wanted)
            .unwrap()
            .is_empty()
    );
    assert!(!docs.exists());
    std::fs::write(&docs, "complete").unwrap();
    HostChanges::update(&config.paths.state_dir, |c| {
        c.files.insert(docs.clone());
    })
    .unwrap();
    // What spawns leave behind: the cgroup parent, runtime directories.
    let cgroups = cgroup_dirs(&parent);
    assert!(!cgroups.is_empty());
    for group in &cgroups {
        std::fs::create_dir_all(group.join("stale")).unwrap();
    }
    let stale_jail = config
        .vmm
        .firecracker
        .chroot_base
        .join("qemu/0a1b2c3d/root/dev");
    std::fs::create_dir_all(&stale_jail).unwrap();
    for runtime in [&config.paths.wake_dir, &config.paths.sockets_dir] {
        std::fs::create_dir_all(runtime).unwrap();
        std::fs::write(runtime.join("left"), "x").unwrap();
    }

    // With a tenant: refused, naming it, and nothing changes.
    let store = Store::new(&config.paths.state_dir);
    store.allocate(&config, new_tenant("alice")).unwrap();
    let firewall_set_up = iptables_save();
    let files_set_up = tree(dir.path());
    let out = run(&config_path, &["uninit"]);
    assert_eq!(code(&out), 13, "{}", all(&out));
    assert!(all(&out).contains("alice"), "{}", all(&out));
    assert!(all(&out).contains("nothing was changed"), "{}", all(&out));
    let out = run(&config_path, &["uninit", "--purge", "-y"]);
    assert_eq!(code(&out), 13, "{}", all(&out));
    assert_eq!(iptables_save(), firewall_set_up);
    assert_eq!(tree(dir.path()), files_set_up);
    assert_eq!(forwarding(), "1");
    assert!(caddy.is_alive());
    assert!(cgroups.iter().all(|g| g.exists()));
    assert!(user_exists());

    // Without tenants: everything init set up goes.
    store.release("alice").unwrap();
    // While a watchdog runs (it would set the host up again): refused too.
    let watchdog = store.lock_watchdog().unwrap().expect("no watchdog yet");
    let out = run(&config_path, &["uninit"]);
    assert_eq!(code(&out), 13, "{}", all(&out));
    assert!(all(&out).contains("a watchdog"), "{}", all(&out));
    assert_eq!(iptables_save(), firewall_set_up);
    assert!(caddy.is_alive());
    drop(watchdog);
    let out = run(&config_path, &["--json", "uninit"]);
    assert!(out.status.success(), "uninit: {}", all(&out));
    let report = json(&out);
    let outcome = |name: &str| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["outcome"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no step {name}: {report}"))
    };
    for step in [
        "caddy_server",
        "caddy",
        "firewall",
        "ip_forwarding",
        "cgroup",
        "runtime_dirs",
        "jails",
        "files",
    ] {
        assert_eq!(outcome(step), "removed", "{step}: {report}");
    }
    assert_eq!(
        iptables_save(),
        firewall_before,
        "the firewall is as before init"
    );
    assert_eq!(forwarding(), "0");
    assert!(!caddy.is_alive(), "the caddy init started still runs");
    assert!(cgroups.iter().all(|g| !g.exists()), "{cgroups:?}");
    assert!(!config.paths.wake_dir.exists() && !config.paths.sockets_dir.exists());
    assert!(!docs.exists(), "the installed file is left");
    assert!(
        !config.vmm.firecracker.chroot_base.exists(),
        "an empty jail is left"
    );
    std::fs::remove_dir(docs.parent().unwrap()).unwrap();
    assert!(
        config.paths.state_dir.join("registry.json").exists(),
        "state stays"
    );
    assert!(user_exists(), "the user stays with caddy's directory");

    // A second run finds nothing.
    let files = tree(dir.path());
    let out = run(&config_path, &["uninit"]);
    assert!(out.status.success(), "{}", all(&out));
    assert!(all(&out).contains("nothing to do"), "{}", all(&out));
    assert_eq!(tree(dir.path()), files);

    // init works again; forwarding the host had on before stays on, and a
    // Caddy lobster did not start (an operator's: here the record forgets
    // it) loses lobster's server and keeps running.
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
    let out = run(&config_path, &["init"]);
    assert!(out.status.success(), "init again: {}", all(&out));
    let started = HostChanges::read(&config.paths.state_dir).unwrap().caddy;
    let started = started.expect("init started caddy again");
    let changes = HostChanges::update(&config.paths.state_dir, |c| c.caddy = None).unwrap();
    let operators = HostChanges {
        caddy: None,
        ..changes
    };
    let socket = PathBuf::from(&config.proxy.admin_address);
    assert!(admin_get(&socket, "/config/apps/http/servers").contains("\"lobster\""));
    let out = run(&config_path, &["--json", "uninit"]);
    assert!(out.status.success(), "uninit: {}", all(&out));
    let report = json(&out);
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "caddy_server" && s["outcome"] == "removed"),
        "{report}"
    );
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "ip_forwarding" && s["outcome"] == "kept"),
        "{report}"
    );
    let servers = admin_get(&socket, "/config/apps/http/servers");
    assert!(!servers.contains("\"lobster\""), "{servers}");
    assert_eq!(iptables_save(), firewall_before);
    assert_eq!(
        forwarding(),
        "1",
        "forwarding lobster did not turn on stays"
    );
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").unwrap();
    assert_eq!(
        HostChanges::read(&config.paths.state_dir).unwrap(),
        operators
    );
    assert!(
        started.is_alive(),
        "uninit stopped a caddy it did not start"
    );
    // That Caddy is the test's to stop.
    let _ = std::process::Command::new("kill")
        .arg(started.pid.to_string())
        .status();
    lobster_testkit::poll::until("caddy stops", std::time::Duration::from_secs(30), || {
        (!started.is_alive()).then_some(())
    });

    // --purge: the state, caddy's directory and the user init created.
    let out = run(&config_path, &["uninit", "--purge", "--yes"]);
    assert!(out.status.success(), "uninit --purge: {}", all(&out));
    assert!(!user_exists(), "the user init created is left");
    assert_eq!(
        tree(dir.path()),
        [PathBuf::from("etc"), PathBuf::from("etc/config.json")],
        "only the configuration stays"
    );
    let out = run(&config_path, &["uninit", "--purge", "--yes"]);
    assert!(out.status.success(), "{}", all(&out));
    assert!(all(&out).contains("nothing to do"), "{}", all(&out));
    assert_eq!(iptables_save(), firewall_before);
}
