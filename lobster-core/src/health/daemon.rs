//! The watchdog as a process: at most one per state directory (an `flock`),
//! run in the foreground until SIGTERM or SIGINT, or detached with its
//! output in the watch log, reporting readiness explicitly ([`notify_ready`]).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::signal::unix::{signal, SignalKind};

use super::ready::{notify_ready, ReadyListener, Startup, NOTIFY_SOCKET};
use super::HealthError;
use super::{Doctor, Event, EventSink, WatchOptions, Watchdog};
use crate::context::Context;
use crate::error::Result;
use crate::store::{Store, WatchdogLock};

/// How long [`detach`] waits for a started watchdog to report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Takes the watchdog role of `store`'s state directory; an error of kind
/// `already_exists` while another watchdog holds it.
pub fn claim_watchdog(store: &Store) -> Result<WatchdogLock> {
    match store.lock_watchdog()? {
        Some(lock) => Ok(lock),
        None => Err(HealthError::WatchdogRunning {
            state_dir: store.state_dir().into(),
        }
        .into()),
    }
}

/// Runs the watchdog of `context` (a [`crate::Host`] or a [`Context`]) in this process until SIGTERM or SIGINT
/// (SIGHUP is ignored: a detached watchdog outlives its terminal). It holds
/// the watchdog role throughout and reports ready ([`notify_ready`]) once
/// its `started` event has gone to `sink`.
pub async fn serve_watchdog(
    context: impl AsRef<Context>,
    options: WatchOptions,
    sink: EventSink,
) -> Result<()> {
    let context = context.as_ref();
    let _role = claim_watchdog(context.store())?;
    let doctor = Doctor::new(context).await?;
    let shutdown = stop_signal()?;
    let reported = AtomicBool::new(false);
    let sink: EventSink = Arc::new(move |record| {
        sink(record);
        if matches!(record.event, Event::Started { .. }) && !reported.swap(true, Ordering::Relaxed)
        {
            if let Err(e) = notify_ready() {
                tracing::warn!("cannot report readiness: {e}");
            }
        }
    });
    Watchdog::new(doctor, options, sink).run(shutdown).await
}

/// Completes on SIGTERM or SIGINT; SIGHUP is swallowed.
fn stop_signal() -> Result<impl Future<Output = ()>> {
    let io = |source| HealthError::Io {
        context: "cannot install a signal handler for",
        path: "watch".into(),
        source,
    };
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    let mut int = signal(SignalKind::interrupt()).map_err(io)?;
    let mut hup = signal(SignalKind::hangup()).map_err(io)?;
    Ok(async move {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => continue,
            }
        }
    })
}

/// A daemon started by [`detach`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detached {
    /// Its pid.
    pub pid: u32,
    /// Where its output goes.
    pub log: PathBuf,
}

/// Starts `command` (a process that calls [`serve_watchdog`], or anything else that
/// reports readiness with [`notify_ready`]) in its own process group, with
/// no stdin and its output appended to `log`, and waits until it reports
/// ready. An error if it exits first (with what it wrote to the log) or
/// stays silent for `timeout` (it is left running then). Blocking.
pub fn detach(mut command: Command, log: &Path, timeout: Duration) -> Result<Detached> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    use std::os::unix::process::CommandExt;
    let io = |context, path: &Path| {
        let path = path.to_path_buf();
        move |source| HealthError::Io {
            context,
            path,
            source,
        }
    };
    if let Some(dir) = log.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("cannot create", dir))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .map_err(io("cannot open", log))?;
    let start_len = out.metadata().map(|m| m.len()).unwrap_or(0);
    let listener = ReadyListener::bind().map_err(io("cannot bind a readiness socket for", log))?;
    command
        .env(NOTIFY_SOCKET, listener.address())
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(io("cannot open", log))?)
        .stderr(out)
        .process_group(0);
    let mut child = command
        .spawn()
        .map_err(io("cannot start the daemon logging to", log))?;
    let pid = child.id();
    let startup = listener
        .wait(pid, timeout, || child.try_wait())
        .map_err(io("cannot wait for the daemon logging to", log))?;
    let (context, failure) = match startup {
        Startup::Ready => {
            // Reap it when it ends, however long this process lives.
            std::thread::spawn(move || child.wait());
            return Ok(Detached {
                pid,
                log: log.to_path_buf(),
            });
        }
        Startup::Exited(status) => {
            let text = std::fs::read(log).unwrap_or_default();
            let tail = text.get(start_len as usize..).unwrap_or_default();
            let tail = String::from_utf8_lossy(tail);
            (
                "the daemon exited before it was ready; see",
                std::io::Error::other(format!("{status}: {}", tail.trim())),
            )
        }
        Startup::TimedOut => (
            "the daemon did not report ready in time; see",
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "pid {pid} is silent after {}s (left running)",
                    timeout.as_secs()
                ),
            ),
        ),
    };
    Err(io(context, log)(failure).into())
}
