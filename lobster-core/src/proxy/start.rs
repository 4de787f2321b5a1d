//! Getting a Caddy to talk to: install Debian's package where the binary is
//! missing, and start Caddy where its admin API does not answer (through
//! systemd when asked and available, else `caddy run` with a minimal
//! config).
//!
//! A Caddy lobster runs itself runs as its own unprivileged user (no
//! supplementary groups, `no_new_privs`), holding only the capability to
//! bind ports below 1024, in a private directory that user owns (mode
//! 0700: its data, the local CA, its config and the admin socket). Its
//! first config already says `install_trust: false`, so the local CA never
//! reaches the system trust store. A Caddy that already answers at the
//! admin address is the operator's: lobster uses it as it is.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Caddy, ProxyError};
use crate::base::find_program;
use crate::config::Config;

/// How to run Caddy when lobster starts it itself.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// The `caddy` binary (a bare name is looked up on PATH).
    pub binary: PathBuf,
    /// Caddy's private directory: the minimal config, Caddy's data
    /// (certificates, the local CA), its autosaved config; owned by `user`,
    /// mode 0700. Its parent must let `user` through.
    pub state_dir: PathBuf,
    /// The system user Caddy runs as (it must exist).
    pub user: String,
    /// Where Caddy's output goes (appended).
    pub log_file: PathBuf,
    /// Bound on waiting for the admin API after starting.
    pub ready_timeout: Duration,
    /// Prefer `systemctl start caddy` when systemd runs and has the unit.
    pub use_systemd: bool,
}

impl SpawnOptions {
    /// How lobster runs Caddy for `config`: `caddy` from PATH as
    /// `proxy.user` in `proxy.caddy_dir`, its output in
    /// `<logs_dir>/caddy.log`, not through systemd (Debian's unit would run
    /// Caddy as its own user with a TCP admin API).
    pub fn from_config(config: &Config) -> SpawnOptions {
        SpawnOptions {
            binary: "caddy".into(),
            state_dir: config.proxy.caddy_dir.clone(),
            user: config.proxy.user.clone(),
            log_file: config.paths.logs_dir.join("caddy.log"),
            ready_timeout: Duration::from_secs(15),
            use_systemd: false,
        }
    }
}

/// The uid of `proxy.user`, the user lobster runs Caddy as: the one user
/// besides root that may connect to a guest's gateway port. Fails when the
/// user is missing (`init` creates it) or is root.
pub fn caddy_uid(config: &Config) -> Result<u32, ProxyError> {
    user_ids(&config.proxy.user).map(|(uid, _)| uid)
}

/// The uid and gid of `proxy.user` (see [`caddy_uid`]): the one user
/// besides root that may connect to a suspended tenant's wake socket.
pub fn caddy_ids(config: &Config) -> Result<(u32, u32), ProxyError> {
    user_ids(&config.proxy.user)
}

/// The uid and gid of Caddy's `user`: it must exist and not be root.
fn user_ids(user: &str) -> Result<(u32, u32), ProxyError> {
    match crate::sys::identity::lookup_user(user) {
        Ok(Some((0, _))) => Err(ProxyError::Invalid {
            field: "proxy.user",
            reason: format!("`{user}` has uid 0"),
        }),
        Ok(Some(ids)) => Ok(ids),
        Ok(None) => Err(ProxyError::Start {
            reason: format!(
                "system user `{user}` (proxy.user) is missing; `lobsterd init` creates it"
            ),
            source: Some(std::io::ErrorKind::NotFound.into()),
        }),
        Err(source) => Err(ProxyError::Io {
            context: format!("cannot look up user {user}"),
            source,
        }),
    }
}

/// The root certificate of the local CA of the Caddy lobster runs (one
/// per host, in `proxy.caddy_dir`, readable by root and Caddy only): the
/// file an operator adds to a client's trust to reach tenants over HTTPS.
/// Caddy creates it when it first issues a certificate.
pub fn ca_root(config: &Config) -> PathBuf {
    ca_root_in(&config.proxy.caddy_dir)
}

/// How the Caddy now answering came to be.
#[derive(Debug)]
pub enum CaddyStart {
    /// It was already running.
    AlreadyRunning,
    /// `caddy.service` was started through systemd.
    Systemd,
    /// Lobster spawned `caddy run`; the handle owns the child.
    Spawned(std::process::Child),
}

/// Installs Debian's `caddy` package with apt-get when no `caddy` binary is
/// found. Returns true if it installed something.
pub async fn ensure_installed(binary: &Path) -> Result<bool, ProxyError> {
    if find_program(binary).is_some() {
        return Ok(false);
    }
    if find_program(Path::new("apt-get")).is_none() {
        return Err(ProxyError::Start {
            reason: format!(
                "{} is missing and there is no apt-get to install it",
                binary.display()
            ),
            source: Some(std::io::ErrorKind::NotFound.into()),
        });
    }
    let mut cmd = tokio::process::Command::new("apt-get");
    cmd.args(["install", "-y", "caddy"])
        .env("DEBIAN_FRONTEND", "noninteractive");
    run_bounded(cmd, "apt-get install -y caddy", Duration::from_secs(600)).await?;
    Ok(true)
}

/// What `init` does for the proxy: install Caddy where the binary is
/// missing, start it where its admin API does not answer, and create
/// lobster's server where it is missing. Safe to re-run: existing routes
/// are never touched.
pub async fn prepare(caddy: &Caddy, options: &SpawnOptions) -> Result<CaddyStart, ProxyError> {
    ensure_installed(&options.binary).await?;
    let start = ensure_running(caddy, options).await?;
    if let Err(e) = caddy.ensure_server().await {
        if let CaddyStart::Spawned(mut child) = start {
            let _ = child.kill();
            let _ = child.wait();
        }
        return Err(e);
    }
    Ok(start)
}

/// Makes sure a Caddy answers at the configured admin address: returns at
/// once if one does, else starts one (systemd first, if asked and
/// available, else `caddy run --config <state_dir>/config.json`) and waits
/// for its admin API, at most `ready_timeout`.
pub async fn ensure_running(
    caddy: &Caddy,
    options: &SpawnOptions,
) -> Result<CaddyStart, ProxyError> {
    if caddy.is_up().await {
        return Ok(CaddyStart::AlreadyRunning);
    }
    let admin = caddy.settings().admin_address.clone();
    if options.use_systemd && Path::new("/run/systemd/system").is_dir() && has_caddy_unit().await {
        let mut cmd = tokio::process::Command::new("systemctl");
        cmd.args(["enable", "--now", "caddy.service"]);
        run_bounded(
            cmd,
            "systemctl enable --now caddy.service",
            Duration::from_secs(60),
        )
        .await?;
        if wait_up(caddy, options.ready_timeout, None).await? {
            return Ok(CaddyStart::Systemd);
        }
        return Err(ProxyError::Start {
            reason: format!(
                "caddy.service runs but its admin api does not answer at {admin}; \
                 set `admin` in /etc/caddy/Caddyfile to match proxy.admin_address"
            ),
            source: None,
        });
    }
    let child = spawn(options, &admin)?;
    let mut child = child;
    match wait_up(caddy, options.ready_timeout, Some(&mut child)).await {
        Ok(true) => Ok(CaddyStart::Spawned(child)),
        outcome => {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&options.log_file).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(ProxyError::Start {
                reason: format!(
                    "caddy run did not answer at {admin} within {} ms{}; log {}: {}",
                    options.ready_timeout.as_millis(),
                    match outcome {
                        Err(e) => format!(" ({e})"),
                        _ => String::new(),
                    },
                    options.log_file.display(),
                    tail.join(" | ")
                ),
                source: None,
            })
        }
    }
}

fn spawn(options: &SpawnOptions, admin: &str) -> Result<std::process::Child, ProxyError> {
    use std::os::unix::process::CommandExt;

    use crate::sys::identity::{run_unprivileged, CAP_NET_BIND_SERVICE};
    let io = |context: String| move |source| ProxyError::Io { context, source };
    // Fail closed: a TCP admin API would take orders from every local user.
    if !admin.starts_with('/') {
        return Err(ProxyError::Invalid {
            field: "proxy.admin_address",
            reason: format!(
                "`{admin}` is a TCP address: lobster starts Caddy only with its admin API \
                 on a unix socket (TCP is for a Caddy the operator runs)"
            ),
        });
    }
    let (uid, gid) = user_ids(&options.user)?;
    let dir = &options.state_dir;
    let mut private = vec![dir.clone()];
    private.extend(["data", "config", "home"].map(|sub| dir.join(sub)));
    let socket = Path::new(admin);
    if let Some(parent) = socket.parent() {
        private.push(parent.to_path_buf());
    }
    // A socket left by a Caddy that is gone (nothing answered).
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io(format!("cannot remove stale {admin}"))(e));
        }
        _ => {}
    }
    for sub in &private {
        own_private_dir(sub, uid, gid).map_err(io(format!(
            "cannot make {} a private directory of {}",
            sub.display(),
            options.user
        )))?;
    }
    let config_path = dir.join("config.json");
    let config = json!({ "admin": { "listen": format!("unix/{admin}") }, "apps": { "pki": super::routes::pki_json() } });
    crate::base::replace_file(&config_path, config.to_string().as_bytes(), 0o600)
        .and_then(|()| std::os::unix::fs::chown(&config_path, Some(uid), Some(gid)))
        .map_err(io(format!("cannot write {}", config_path.display())))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&options.log_file)
        .map_err(io(format!("cannot open {}", options.log_file.display())))?;
    let log_err = log
        .try_clone()
        .map_err(io(format!("cannot open {}", options.log_file.display())))?;
    let mut command = std::process::Command::new(&options.binary);
    command
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .current_dir(dir)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", dir.join("home"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    run_unprivileged(&mut command, uid, gid, CAP_NET_BIND_SERVICE);
    command.spawn().map_err(|source| ProxyError::Start {
        reason: format!(
            "cannot run {} as {}",
            options.binary.display(),
            options.user
        ),
        source: Some(source),
    })
}

/// Creates `dir` if missing and makes it `uid`'s alone (mode 0700).
fn own_private_dir(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Where the root certificate of the local CA of a Caddy lobster runs with
/// `state_dir` is (Caddy creates it on first use).
fn ca_root_in(state_dir: &Path) -> PathBuf {
    state_dir.join("data/caddy/pki/authorities/local/root.crt")
}

/// Polls the admin API until it answers (true), the child exits or the
/// bound passes (false).
async fn wait_up(
    caddy: &Caddy,
    within: Duration,
    mut child: Option<&mut std::process::Child>,
) -> Result<bool, ProxyError> {
    let deadline = Instant::now() + within;
    loop {
        if caddy.is_up().await {
            return Ok(true);
        }
        if let Some(child) = child.as_deref_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(ProxyError::Start {
                    reason: format!("caddy exited with {status}"),
                    source: None,
                });
            }
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn has_caddy_unit() -> bool {
    let mut cmd = tokio::process::Command::new("systemctl");
    cmd.args(["cat", "caddy.service"]);
    run_bounded(cmd, "systemctl cat caddy.service", Duration::from_secs(10))
        .await
        .is_ok()
}

async fn run_bounded(
    mut cmd: tokio::process::Command,
    what: &str,
    within: Duration,
) -> Result<(), ProxyError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|source| ProxyError::Start {
        reason: format!("cannot run `{what}`"),
        source: Some(source),
    })?;
    match tokio::time::timeout(within, child.wait_with_output()).await {
        Err(_) => Err(ProxyError::Start {
            reason: format!("`{what}` did not finish within {} s", within.as_secs()),
            source: None,
        }),
        Ok(Err(source)) => Err(ProxyError::Start {
            reason: format!("`{what}` failed"),
            source: Some(source),
        }),
        Ok(Ok(out)) if !out.status.success() => Err(ProxyError::Start {
            reason: format!(
                "`{what}` exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            source: None,
        }),
        Ok(Ok(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lobster_never_starts_caddy_with_a_tcp_admin_api() {
        let dir = tempfile::tempdir().unwrap();
        let options = SpawnOptions {
            binary: "/bin/true".into(),
            state_dir: dir.path().join("caddy"),
            user: "root".into(),
            log_file: dir.path().join("caddy.log"),
            ready_timeout: Duration::from_secs(1),
            use_systemd: false,
        };
        let err = spawn(&options, "127.0.0.1:2019").unwrap_err();
        assert!(
            matches!(
                err,
                ProxyError::Invalid {
                    field: "proxy.admin_address",
                    ..
                }
            ),
            "{err:?}"
        );
        // Nor as root.
        let err = spawn(&options, "/nonexistent/admin.sock").unwrap_err();
        assert!(
            matches!(
                err,
                ProxyError::Invalid {
                    field: "proxy.user",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!options.state_dir.exists(), "nothing made before refusing");
    }
}
