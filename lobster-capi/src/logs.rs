//! Logs: a tenant's tail (`lobster_host_logs`), `lobster_log_follow`, a
//! followed log as a pull handle, and the watchdog's tail. Lines are sanitised for a terminal by the
//! core (no control characters, so none holds a newline); the guest is
//! held awake while a follow handle lives.

use std::ffi::c_char;
use std::time::Duration;

use lobster_core::agent::{LogFollow, LogSource};
use tokio_util::sync::CancellationToken;

use crate::error::{lobster_error, lobster_result, Failure};
use crate::ffi;
use crate::host::lobster_host;
use crate::panic::{boundary, boundary_value};
use crate::runtime::block_on;

/// A followed log (owned; `const` use is thread-safe: one thread may wait
/// in `lobster_log_follow_next` while another calls `_close`).
#[derive(Debug)]
pub struct lobster_log_follow {
    follow: tokio::sync::Mutex<Option<LogFollow>>,
    closed: CancellationToken,
}

/// `source` by name: NULL or `"workload"` (the workload's output) or
/// `"agent"` (the in-guest agent's own log).
fn source(name: *const c_char) -> Result<LogSource, Failure> {
    let Some(name) = ffi::opt_str_arg(name, "source")? else {
        return Ok(LogSource::Workload);
    };
    serde_json::from_value(serde_json::Value::String(name.to_owned())).map_err(|_| {
        Failure::InvalidArgument("source", format!("`{name}` is not `workload` or `agent`"))
    })
}

/// The last `lines` lines of a tenant's log (`source`: NULL or
/// `"workload"`, or `"agent"`). A suspended tenant is resumed for the read.
/// On success `*out` is an owned string (`lobster_string_free`): each line
/// followed by `\n`, empty when the log is.
#[no_mangle]
pub extern "C" fn lobster_host_logs(
    host: *const lobster_host,
    name: *const c_char,
    source: *const c_char,
    lines: u32,
    out: *mut *mut c_char,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_logs", err_out, || {
        let host = lobster_host::core(host)?;
        let name = ffi::str_arg(name, "name")?;
        let source = self::source(source)?;
        let out = ffi::out(out, "out")?;
        let tail = block_on(host.logs(name, source, lines))??;
        out.set(ffi::string_into_raw(lines_text(&tail), "log lines")?);
        Ok(())
    })
}

/// The last `lines` lines of the detached watchdog's log
/// (`LOBSTER_RESULT_NOT_FOUND` when no watchdog has written one). On
/// success `*out` is an owned string (`lobster_string_free`): each line
/// followed by `\n`.
#[no_mangle]
pub extern "C" fn lobster_host_watchdog_log(
    host: *const lobster_host,
    lines: u32,
    out: *mut *mut c_char,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_watchdog_log", err_out, || {
        let host = lobster_host::core(host)?;
        let out = ffi::out(out, "out")?;
        let tail = block_on(host.watchdog_log(lines))??;
        out.set(ffi::string_into_raw(
            lines_text(&tail),
            "watchdog log lines",
        )?);
        Ok(())
    })
}

/// `lines`, each followed by `\n`.
fn lines_text(lines: &[String]) -> String {
    lines.iter().flat_map(|l| [l.as_str(), "\n"]).collect()
}

/// Follows a tenant's log: the last `lines` lines, then new ones as they
/// come (`lobster_log_follow_next`). A suspended tenant is resumed and held
/// awake until the handle is freed. On success `*out` is an owned handle
/// (`lobster_log_follow_free`).
#[no_mangle]
pub extern "C" fn lobster_host_follow_logs(
    host: *const lobster_host,
    name: *const c_char,
    source: *const c_char,
    lines: u32,
    out: *mut *mut lobster_log_follow,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_follow_logs", err_out, || {
        let host = lobster_host::core(host)?;
        let name = ffi::str_arg(name, "name")?;
        let source = self::source(source)?;
        let out = ffi::out(out, "out")?;
        let follow = block_on(host.follow_logs(name, source, lines))??;
        out.set(ffi::into_raw(lobster_log_follow {
            follow: tokio::sync::Mutex::new(Some(follow)),
            closed: CancellationToken::new(),
        }));
        Ok(())
    })
}

/// Waits at most `timeout_ms` for the next line. On success `*out` is the
/// line, owned (`lobster_string_free`), or NULL if none came in time (the
/// stream stays usable). A closed handle gives `LOBSTER_RESULT_INVALID_STATE`;
/// a stream that broke gives the core's error, and so does every later call.
#[no_mangle]
pub extern "C" fn lobster_log_follow_next(
    follow: *const lobster_log_follow,
    timeout_ms: u32,
    out: *mut *mut c_char,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_log_follow_next", err_out, || {
        let follow = ffi::borrow(follow, "follow")?;
        let out = ffi::out(out, "out")?;
        let within = Duration::from_millis(timeout_ms.into());
        let line = block_on(follow.next(within))??;
        out.set(match line {
            Some(line) => ffi::string_into_raw(line, "log line")?,
            None => std::ptr::null_mut(),
        });
        Ok(())
    })
}

impl lobster_log_follow {
    async fn next(&self, within: Duration) -> Result<Option<String>, Failure> {
        let closed = Failure::Closed("log stream");
        let mut guard = tokio::select! {
            guard = self.follow.lock() => guard,
            () = self.closed.cancelled() => return Err(closed),
        };
        let stream = guard.as_mut().ok_or(closed)?;
        let line = tokio::select! {
            line = stream.next_line(within) => line,
            () = self.closed.cancelled() => Ok(None),
        };
        if self.closed.is_cancelled() {
            *guard = None;
            return Err(Failure::Closed("log stream"));
        }
        line.map_err(|e| {
            *guard = None;
            Failure::Core(e.into())
        })
    }
}

/// Ends a followed log at once: a waiting `lobster_log_follow_next` returns
/// `LOBSTER_RESULT_INVALID_STATE`, as does every later one. Safe from any
/// thread; the handle must still be freed. NULL is ignored.
#[no_mangle]
pub extern "C" fn lobster_log_follow_close(follow: *const lobster_log_follow) {
    boundary_value((), || {
        if let Ok(follow) = ffi::borrow(follow, "follow") {
            follow.closed.cancel();
        }
    });
}

/// Frees a followed log (ending it, and the hold on the guest). No other
/// thread may still use it. NULL is ignored.
#[no_mangle]
pub extern "C" fn lobster_log_follow_free(follow: *mut lobster_log_follow) {
    boundary_value((), || {
        if let Ok(follow) = ffi::take(follow, "follow") {
            // Dropping a follow talks to nothing, but its hold's release
            // may need the runtime; run the drop inside it.
            let _ = block_on(async move { drop(follow) });
        }
    });
}
