//! `watch`: the watchdog daemon. Events go to stdout as JSON lines; `-d`
//! starts a detached copy logging to `<logs_dir>/watch.log`.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lobster_core::health::{Doctor, EventSink, WatchOptions, Watchdog};
use lobster_core::tenant::TenantError;
use lobster_core::Error;
use tokio::signal::unix::{signal, SignalKind};

use super::Context;
use crate::args::WatchArgs;

/// Runs `watch` (or detaches it with `-d`).
pub async fn run(ctx: &Context, args: WatchArgs) -> Result<(), Error> {
    let host = ctx.host()?;
    if args.daemon {
        return detach(ctx, &host, args.no_host_setup);
    }
    let _instance = host.lock_watchdog()?;
    let doctor = Doctor::new(&host).await?;
    let sink: EventSink = Arc::new(|event| {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, event);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    });
    let options = WatchOptions {
        host_setup: !args.no_host_setup,
        write_status: true,
    };
    let watchdog = Watchdog::new(doctor, options, sink);
    let io = |source| {
        Error::from(TenantError::Io {
            context: "cannot install a signal handler for",
            path: "watch".into(),
            source,
        })
    };
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    let mut int = signal(SignalKind::interrupt()).map_err(io)?;
    let mut hup = signal(SignalKind::hangup()).map_err(io)?;
    let shutdown = async move {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                // A detached daemon outlives its terminal: a hangup is not a stop.
                _ = hup.recv() => continue,
            }
        }
    };
    watchdog.run(shutdown).await
}

/// Starts `lobsterd watch` in its own process group with output to the
/// watch log, waits until it has started (or failed), and prints its pid.
fn detach(ctx: &Context, host: &lobster_core::Host, no_host_setup: bool) -> Result<(), Error> {
    use std::os::unix::process::CommandExt;
    let logs = &host.config().paths.logs_dir;
    let log_path = lobster_core::health::watch_log_path(host.config());
    let io = |context, path: &std::path::Path, source| {
        Error::from(TenantError::Io {
            context,
            path: path.to_path_buf(),
            source,
        })
    };
    std::fs::create_dir_all(logs).map_err(|e| io("cannot create", logs, e))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| io("cannot open", &log_path, e))?;
    let start_len = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().map_err(|e| {
        io(
            "cannot find the lobsterd binary",
            "/proc/self/exe".as_ref(),
            e,
        )
    })?;
    let mut cmd = std::process::Command::new(exe);
    if let Some(config) = host.config_path() {
        cmd.arg("--config")
            .arg(std::path::absolute(config).unwrap_or(config.to_path_buf()));
    }
    cmd.arg("watch");
    if no_host_setup {
        cmd.arg("--no-host-setup");
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(|e| io("cannot open", &log_path, e))?,
        )
        .stderr(log)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| io("cannot start the watchdog", &log_path, e))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| io("cannot wait for", &log_path, e))?
        {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail = text.get(start_len as usize..).unwrap_or_default().trim();
            return Err(io(
                "the watchdog exited at once; see",
                &log_path,
                std::io::Error::other(format!("{status}: {tail}")),
            ));
        }
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text
            .get(start_len as usize..)
            .is_some_and(|t| t.contains("\"event\":\"started\""))
            || Instant::now() >= deadline
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id();
    ctx.print(&serde_json::json!({ "pid": pid, "log": log_path }), || {
        format!(
            "watchdog started (pid {pid}); events in {}",
            log_path.display()
        )
    });
    Ok(())
}
