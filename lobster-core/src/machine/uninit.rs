//! `uninit`: removes what `init` and host setup put on this machine, and
//! nothing the host had before them.
//!
//! It refuses while any tenant exists (naming them, changing nothing), and
//! holds the watchdog role throughout so no watchdog sets the host up again
//! meanwhile. Then, each step bounded in time and each one run even when
//! another failed: the watchdog's unit, lobster's server in Caddy and the
//! Caddy lobster started, the firewall's chains and hooks, IPv4 forwarding
//! (only if lobster turned it on), the cgroup parent, the runtime
//! directories, jail directories left empty, and the files `init`
//! installed. `--purge` also removes
//! Caddy's user (if lobster created it), then, once every other step
//! succeeded (the state holds the record of what is left), the state
//! directory (registry, records, the guest images kept there), overlays and
//! their template cache, snapshots, logs and Caddy's directory (its local
//! CA). The configuration file stays, and so do images kept elsewhere (the
//! operator's) and the KVM probe's outcome in `/run` (keyed by the QEMU and
//! kernel it probed, it goes at reboot). A second run finds nothing and
//! changes nothing.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::unit::{remove_unit, unit_for_config, Daemon, SYSTEM_UNIT_DIR};
use super::{HostChanges, MachineError};
use crate::config::Config;
use crate::error::Result;
use crate::network::firewall::{Firewall, FirewallSettings, Iptables};
use crate::proxy::{Caddy, ProxySettings};
use crate::store::Store;
use crate::sys::cgroup::{Cgroup, Hierarchy};
use crate::vmm::VmIdentity;

/// What `uninit` is asked to do.
#[derive(Debug, Clone)]
pub struct UninitOptions {
    /// Also remove state, images and caches.
    pub purge: bool,
    /// Bound on each step.
    pub step_timeout: Duration,
    /// The file the configuration came from: a watchdog unit that runs
    /// lobsterd with it is removed even when no record names it (a host
    /// set up before installs were recorded).
    pub config_path: Option<PathBuf>,
}

impl Default for UninitOptions {
    fn default() -> Self {
        UninitOptions {
            purge: false,
            step_timeout: Duration::from_secs(60),
            config_path: None,
        }
    }
}

/// How one step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Something was removed or undone.
    Removed,
    /// Nothing of lobster's was there.
    Absent,
    /// Left on purpose (e.g. forwarding lobster did not turn on).
    Kept,
    /// It failed (or timed out): what it names is left.
    Failed,
}

/// One step of `uninit`.
#[derive(Debug, Clone, Serialize)]
pub struct UninitStep {
    /// What it handles (`firewall`, `caddy_server`, ...).
    pub name: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// What it did or found.
    pub detail: String,
}

/// What `uninit` did.
#[derive(Debug, Clone, Serialize)]
pub struct UninitReport {
    /// Whether state, images and caches were purged too.
    pub purge: bool,
    /// Every step, in order.
    pub steps: Vec<UninitStep>,
}

impl UninitReport {
    /// Whether anything was removed (false: a no-op).
    pub fn changed(&self) -> bool {
        self.steps.iter().any(|s| s.outcome == Outcome::Removed)
    }
}

/// What a step returns: its outcome and a detail, or why it failed.
type StepResult = std::result::Result<(Outcome, String), String>;

/// Removes lobster's host setup (see the module docs). Fails with kind
/// `invalid_state`, changing nothing, while tenants exist or a watchdog
/// other than the unit's runs; with kind `host_failure` naming every step
/// left when some step failed (the others are done).
pub async fn uninit(config: &Config, options: &UninitOptions) -> Result<UninitReport> {
    let state_dir = config.paths.state_dir.clone();
    let store = Store::new(&state_dir);
    let initialised = state_dir.is_dir();
    if initialised {
        let tenants: Vec<String> = store.read()?.tenants.into_keys().collect();
        if !tenants.is_empty() {
            return Err(MachineError::TenantsExist { tenants }.into());
        }
    }
    let mut changes = HostChanges::read(&state_dir)?;
    let mut run = Steps {
        steps: Vec::new(),
        within: options.step_timeout,
    };

    for daemon in Daemon::ALL {
        let unit = changes
            .files
            .iter()
            .find(|f| f.file_name().is_some_and(|n| n == daemon.unit_name()))
            .cloned()
            .or_else(|| {
                let config = std::path::absolute(options.config_path.as_deref()?).ok()?;
                unit_for_config(daemon, Path::new(SYSTEM_UNIT_DIR), &config)
            });
        let Some(unit) = unit else { continue };
        let done = run
            .step(daemon.report_key(), async {
                match remove_unit(&unit).await {
                    Ok(true) => Ok((
                        Outcome::Removed,
                        format!("{} stopped and removed", unit.display()),
                    )),
                    Ok(false) => Ok((Outcome::Absent, format!("{} is gone", unit.display()))),
                    Err(e) => Err(e.chain()),
                }
            })
            .await;
        if done {
            changes.files.remove(&unit);
        }
    }
    // Held to the end: no watchdog may set the host up again meanwhile.
    let _watchdog = match initialised {
        true => match store.lock_watchdog()? {
            Some(lock) => Some(lock),
            None => return Err(MachineError::WatchdogRunning { state_dir }.into()),
        },
        false => None,
    };

    let caddy = Caddy::new(ProxySettings::from_config(config));
    run.step("caddy_server", async {
        if !caddy.is_up().await {
            let admin = &caddy.settings().admin_address;
            return Ok((Outcome::Absent, format!("no caddy answers at {admin}")));
        }
        match caddy.remove_server().await {
            Ok(true) => Ok((
                Outcome::Removed,
                format!(
                    "server `{}` and its TLS policy removed",
                    caddy.settings().server_name
                ),
            )),
            Ok(false) => Ok((
                Outcome::Absent,
                format!("caddy has no server `{}`", caddy.settings().server_name),
            )),
            Err(e) => Err(chain(e)),
        }
    })
    .await;
    if let Some(identity) = changes.caddy {
        if run
            .step("caddy", async move { stop_process(identity).await })
            .await
        {
            changes.caddy = None;
        }
    }

    let settings = FirewallSettings::from_config(&config.network)?;
    run.step(
        "firewall",
        blocking(move || {
            if crate::base::find_program(Path::new("iptables-save")).is_none() {
                return Ok((Outcome::Absent, "no iptables-save here".into()));
            }
            let firewall = Firewall::new(Iptables::new(Duration::from_secs(30)), settings);
            match firewall.remove_all() {
                Ok(r) if r.changes == 0 => Ok((Outcome::Absent, "no lobster chain or hook".into())),
                Ok(r) => Ok((
                    Outcome::Removed,
                    format!("{} chain and hook changes", r.changes),
                )),
                Err(e) => Err(chain(e)),
            }
        }),
    )
    .await;

    let lobster_enabled = changes.ip_forwarding;
    if run
        .step("ip_forwarding", async move {
            if !lobster_enabled {
                return Ok((Outcome::Kept, "lobster did not turn it on".into()));
            }
            match crate::network::disable_ip_forwarding() {
                Ok(true) => Ok((
                    Outcome::Removed,
                    "turned off (lobster had turned it on)".into(),
                )),
                Ok(false) => Ok((Outcome::Absent, "already off".into())),
                Err(e) => Err(chain(e)),
            }
        })
        .await
    {
        changes.ip_forwarding = false;
    }

    let parent = config.vmm.cgroup_parent.clone();
    run.step(
        "cgroup",
        blocking(move || {
            let Ok(hierarchy) = Hierarchy::detect() else {
                return Ok((Outcome::Absent, "no cgroup controllers here".into()));
            };
            let group = Cgroup::at(&hierarchy, &parent);
            match group.remove_tree() {
                Ok(true) => Ok((Outcome::Removed, format!("{} removed", parent.display()))),
                Ok(false) => Ok((Outcome::Absent, format!("no cgroup {}", parent.display()))),
                Err(e) => Err(e.to_string()),
            }
        }),
    )
    .await;

    let runtime = vec![
        config.paths.wake_dir.clone(),
        config.paths.sockets_dir.clone(),
    ];
    run.step("runtime_dirs", blocking(move || remove_all(&runtime)))
        .await;

    let base = config.vmm.firecracker.chroot_base.clone();
    let mut backends = vec![base.join(crate::vmm::qemu::JAIL_NAME)];
    backends.extend(
        config
            .vmm
            .firecracker
            .binary
            .file_name()
            .map(|n| base.join(n)),
    );
    run.step(
        "jails",
        blocking(move || remove_empty_jails(&base, &backends)),
    )
    .await;

    let files: Vec<PathBuf> = changes.files.iter().cloned().collect();
    if !files.is_empty()
        && run
            .step("files", blocking(move || remove_all(&files)))
            .await
    {
        changes.files.clear();
    }

    if options.purge {
        if let Some(user) = changes.caddy_user.clone() {
            if run
                .step("caddy_user", async move { remove_user(&user).await })
                .await
            {
                changes.caddy_user = None;
            }
        }
    }
    // The state holds the record of what is left: it goes only once
    // everything else has.
    if options.purge && !run.any_failed() {
        let p = &config.paths;
        let state = vec![
            p.overlays_dir.clone(),
            p.snapshots_dir.clone(),
            p.logs_dir.clone(),
            config.proxy.caddy_dir.clone(),
            state_dir.clone(),
        ];
        run.step("state", blocking(move || remove_state(&state)))
            .await;
    } else {
        let detail = if options.purge {
            "kept until the steps above succeed (it records what is left)"
        } else {
            "kept (--purge removes it)"
        };
        run.steps.push(UninitStep {
            name: "state",
            outcome: Outcome::Kept,
            detail: format!(
                "{}, its registry, images, overlays, logs and caddy's {}: {detail}",
                state_dir.display(),
                config.proxy.caddy_dir.display()
            ),
        });
        if initialised {
            let left = changes.clone();
            let recorded = HostChanges::update(&state_dir, |c| *c = left);
            if let Err(e) = recorded {
                run.failed("record", chain(e));
            }
        }
    }

    let left: Vec<String> = run
        .steps
        .iter()
        .filter(|s| s.outcome == Outcome::Failed)
        .map(|s| format!("{}: {}", s.name, s.detail))
        .collect();
    if !left.is_empty() {
        return Err(MachineError::Incomplete { left }.into());
    }
    Ok(UninitReport {
        purge: options.purge,
        steps: run.steps,
    })
}

/// The steps run so far, each bounded by `within`.
struct Steps {
    steps: Vec<UninitStep>,
    within: Duration,
}

impl Steps {
    /// Runs one step and records how it ended; true if it succeeded.
    async fn step(&mut self, name: &'static str, work: impl Future<Output = StepResult>) -> bool {
        let outcome = match tokio::time::timeout(self.within, work).await {
            Ok(Ok((outcome, detail))) => UninitStep {
                name,
                outcome,
                detail,
            },
            Ok(Err(reason)) => UninitStep {
                name,
                outcome: Outcome::Failed,
                detail: reason,
            },
            Err(_) => UninitStep {
                name,
                outcome: Outcome::Failed,
                detail: format!("did not finish within {} s", self.within.as_secs()),
            },
        };
        let ok = outcome.outcome != Outcome::Failed;
        self.steps.push(outcome);
        ok
    }

    fn any_failed(&self) -> bool {
        self.steps.iter().any(|s| s.outcome == Outcome::Failed)
    }

    fn failed(&mut self, name: &'static str, detail: String) {
        self.steps.push(UninitStep {
            name,
            outcome: Outcome::Failed,
            detail,
        });
    }
}

/// An error's message with its causes.
fn chain(e: impl Into<crate::error::Error>) -> String {
    e.into().chain()
}

/// A blocking step on the blocking pool.
async fn blocking(work: impl FnOnce() -> StepResult + Send + 'static) -> StepResult {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(format!("step panicked: {e}")))
}

/// Stops the process `identity` names: SIGTERM, then SIGKILL after 10 s.
/// Through a pidfd opened while the identity still matched, so a reused
/// pid is never signalled.
async fn stop_process(identity: VmIdentity) -> StepResult {
    use crate::sys::pidfd::{pidfd_open, pidfd_send_signal};
    let pid = identity.pid;
    let gone = || Ok((Outcome::Absent, format!("caddy (pid {pid}) is not running")));
    if !identity.is_alive() {
        return gone();
    }
    let Ok(pidfd) = pidfd_open(pid) else {
        return gone();
    };
    // The pidfd names whatever has the pid now: check it is still ours.
    if !identity.is_alive() {
        return gone();
    }
    for (signal, grace) in [
        (libc::SIGTERM, Duration::from_secs(10)),
        (libc::SIGKILL, Duration::from_secs(5)),
    ] {
        if let Err(e) = pidfd_send_signal(&pidfd, signal) {
            if e.raw_os_error() == Some(libc::ESRCH) {
                break;
            }
            return Err(format!("cannot signal caddy (pid {pid}): {e}"));
        }
        let deadline = Instant::now() + grace;
        while identity.is_alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !identity.is_alive() {
            return Ok((Outcome::Removed, format!("caddy (pid {pid}) stopped")));
        }
    }
    Err(format!("caddy (pid {pid}) is still running after SIGKILL"))
}

/// Removes `user` (and its group) with `userdel`, bounded to 30 s.
async fn remove_user(user: &str) -> StepResult {
    if crate::sys::identity::lookup_user(user)
        .map_err(|e| format!("cannot look up user {user}: {e}"))?
        .is_none()
    {
        return Ok((Outcome::Absent, format!("no user {user}")));
    }
    let run = tokio::process::Command::new("userdel")
        .arg(user)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .map_err(|_| format!("`userdel {user}` did not finish within 30 s"))?
        .map_err(|e| format!("cannot run userdel: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`userdel {user}` exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((Outcome::Removed, format!("user {user} removed")))
}

/// Removes the backends' jail directories under `base` and `base` itself
/// where they hold nothing but directories (jails a crash left empty); a
/// file in one keeps it (it may be another user's of the same base).
fn remove_empty_jails(base: &Path, backends: &[PathBuf]) -> StepResult {
    fn only_dirs(dir: &Path) -> std::io::Result<bool> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() || !only_dirs(&entry.path())? {
                return Ok(false);
            }
        }
        Ok(true)
    }
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    for dir in backends.iter().filter(|d| d.is_dir()) {
        match only_dirs(dir) {
            Ok(true) => {
                std::fs::remove_dir_all(dir)
                    .map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
                removed.push(dir.display().to_string());
            }
            Ok(false) => kept.push(dir.display().to_string()),
            Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
        }
    }
    if std::fs::remove_dir(base).is_ok() {
        removed.push(base.display().to_string());
    }
    match (removed.is_empty(), kept.is_empty()) {
        (_, false) => Ok((Outcome::Kept, format!("{} hold files", kept.join(", ")))),
        (false, true) => Ok((Outcome::Removed, removed.join(", "))),
        (true, true) => Ok((Outcome::Absent, "no jail directory".into())),
    }
}

/// Removes lobster's directories, the state directory last; it must look
/// like lobster's (a registry or a record in it), so a configuration naming
/// another directory never empties it.
fn remove_state(dirs: &[PathBuf]) -> StepResult {
    if let Some(state_dir) = dirs.last().filter(|d| d.exists()) {
        let ours = [
            Store::new(state_dir).path().to_path_buf(),
            HostChanges::path(state_dir),
        ];
        if !ours.iter().any(|f| f.exists()) {
            return Err(format!(
                "refusing to remove {}: it holds no registry.json or host.json",
                state_dir.display()
            ));
        }
    }
    remove_all(dirs)
}

/// Removes each path (a directory with everything in it). A path too close
/// to the root (`/`, `/run`, ...) is refused: a configuration naming one
/// must not empty the host.
fn remove_all(paths: &[PathBuf]) -> StepResult {
    let mut removed = Vec::new();
    for path in paths {
        if path.components().count() < 3 {
            return Err(format!(
                "refusing to remove {}: too close to /",
                path.display()
            ));
        }
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot stat {}: {e}", path.display())),
        };
        let gone = if meta.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        match gone {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("cannot remove {}: {e}", path.display()));
            }
            _ => removed.push(path.display().to_string()),
        }
    }
    match removed.is_empty() {
        true => Ok((Outcome::Absent, "none left".into())),
        false => Ok((Outcome::Removed, removed.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_process_recorded_is_stopped_never_one_reusing_its_pid() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let identity = VmIdentity::of(pid).unwrap();
        // Same pid, another start time: another process that got the pid.
        let impostor = VmIdentity {
            start_time: identity.start_time + 1,
            ..identity
        };
        assert_eq!(stop_process(impostor).await.unwrap().0, Outcome::Absent);
        assert!(
            child.try_wait().unwrap().is_none(),
            "a reused pid was signalled"
        );
        assert_eq!(stop_process(identity).await.unwrap().0, Outcome::Removed);
        assert!(child.wait().unwrap().code().is_none(), "ended by a signal");
        assert_eq!(stop_process(identity).await.unwrap().0, Outcome::Absent);
    }

    #[test]
    fn paths_near_the_root_are_never_removed() {
        let err = remove_all(&[PathBuf::from("/run")]).unwrap_err();
        assert!(err.contains("too close to /"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("a/b");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::write(inside.join("f"), "x").unwrap();
        let gone = dir.path().join("a");
        assert_eq!(
            remove_all(std::slice::from_ref(&gone)).unwrap().0,
            Outcome::Removed
        );
        assert!(!gone.exists());
        assert_eq!(remove_all(&[gone]).unwrap().0, Outcome::Absent);
    }

    #[test]
    fn only_jails_left_empty_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("jailer");
        let (qemu, fc) = (base.join("qemu"), base.join("firecracker"));
        std::fs::create_dir_all(qemu.join("0a1b2c3d/root/dev")).unwrap();
        std::fs::create_dir_all(fc.join("other")).unwrap();
        std::fs::write(fc.join("other/file"), "someone's").unwrap();
        let (outcome, detail) = remove_empty_jails(&base, &[qemu.clone(), fc.clone()]).unwrap();
        assert_eq!(outcome, Outcome::Kept, "{detail}");
        assert!(!qemu.exists() && fc.join("other/file").exists());
        std::fs::remove_dir_all(&fc).unwrap();
        assert_eq!(
            remove_empty_jails(&base, &[qemu, fc]).unwrap().0,
            Outcome::Removed
        );
        assert!(!base.exists());
    }

    #[test]
    fn purge_never_empties_a_directory_that_is_not_lobsters_state() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("notes"), "mine").unwrap();
        let err = remove_state(std::slice::from_ref(&home)).unwrap_err();
        assert!(err.contains("holds no registry.json"), "{err}");
        assert!(home.join("notes").exists());
        std::fs::write(home.join("registry.json"), "{}").unwrap();
        assert_eq!(
            remove_state(std::slice::from_ref(&home)).unwrap().0,
            Outcome::Removed
        );
        assert!(!home.exists());
    }
}
