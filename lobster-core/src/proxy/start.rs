//! Getting a Caddy to talk to: install Debian's package where the binary is
//! missing, and start Caddy where its admin API does not answer (through
//! systemd where it runs, else `caddy run` with a minimal config).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Caddy, ProxyError};
use crate::base::find_program;

/// How to run Caddy when lobster starts it itself.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// The `caddy` binary (a bare name is looked up on PATH).
    pub binary: PathBuf,
    /// Directory for the minimal config, Caddy's data (certificates) and
    /// its autosaved config.
    pub state_dir: PathBuf,
    /// Where Caddy's output goes (appended).
    pub log_file: PathBuf,
    /// Bound on waiting for the admin API after starting.
    pub ready_timeout: Duration,
    /// Prefer `systemctl start caddy` when systemd runs and has the unit.
    pub use_systemd: bool,
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
    let io = |context: String| move |source| ProxyError::Io { context, source };
    let dir = &options.state_dir;
    for sub in ["data", "config", "home"] {
        std::fs::create_dir_all(dir.join(sub))
            .map_err(io(format!("cannot create {}", dir.join(sub).display())))?;
    }
    let config_path = dir.join("config.json");
    let config = json!({ "admin": { "listen": admin } });
    std::fs::write(&config_path, config.to_string())
        .map_err(io(format!("cannot write {}", config_path.display())))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&options.log_file)
        .map_err(io(format!("cannot open {}", options.log_file.display())))?;
    let log_err = log
        .try_clone()
        .map_err(io(format!("cannot open {}", options.log_file.display())))?;
    std::process::Command::new(&options.binary)
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .env("HOME", dir.join("home"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        // Caddy speaks sd_notify: it must not answer the watchdog's starter.
        .env_remove(crate::base::NOTIFY_SOCKET)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|source| ProxyError::Start {
            reason: format!("cannot run {}", options.binary.display()),
            source: Some(source),
        })
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
