//! `watch`: the watchdog daemon. Events go to stdout as JSON lines; `-d`
//! starts a detached copy logging to `<logs_dir>/watch.log`.

use std::io::Write;
use std::sync::Arc;

use lobster_core::health::{EventSink, WatchOptions};
use lobster_core::{health, Error};

use super::Context;
use crate::args::WatchArgs;

/// Runs `watch` (or detaches it with `-d`).
pub async fn run(ctx: &Context, args: WatchArgs) -> Result<(), Error> {
    let host = ctx.host()?;
    if args.daemon {
        return detach(ctx, &host, args.no_host_setup);
    }
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
    health::serve_watchdog(&host, options, sink).await
}

/// Starts this binary's `watch` detached and prints its pid once it is ready.
fn detach(ctx: &Context, host: &lobster_core::Host, no_host_setup: bool) -> Result<(), Error> {
    let exe = std::env::current_exe().map_err(|source| health::HealthError::Io {
        context: "cannot find the lobsterd binary",
        path: "/proc/self/exe".into(),
        source,
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
    let log = health::watch_log_path(host.config());
    let daemon = health::detach(cmd, &log, health::READY_TIMEOUT)?;
    ctx.print(&daemon, || {
        format!(
            "watchdog started (pid {}); events in {}",
            daemon.pid,
            daemon.log.display()
        )
    });
    Ok(())
}
