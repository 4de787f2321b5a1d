//! The method handlers: each request's parameters decoded, the method run
//! against the agent's state, its result encoded. Transport and
//! authentication are the connection's business (`super`).

use std::time::{Duration, Instant};

use lobster_agent_proto::methods::*;
use lobster_agent_proto::{ErrorCode, Method, Request};
use serde_json::Value;

use crate::holds::HoldError;
use crate::workload::{Failure, DEFAULT_GRACE};
use crate::{cron, stats, Shared};

/// What a dispatched method asks the connection to do.
pub(super) enum Outcome {
    /// Send this reply and go on.
    Reply(Result<Value, Failure>),
    /// Stream this log until the peer goes away.
    Follow(LogsParams),
    /// Acknowledge, then shut the agent down.
    Shutdown(ShutdownParams),
}

/// A request's parameters as `M` takes them (absent ones as `{}`).
pub(super) fn params<M: Method>(req: &Request) -> Result<M::Params, Failure> {
    let params = if req.params.is_null() {
        Value::Object(Default::default())
    } else {
        req.params.clone()
    };
    serde_json::from_value::<M::Params>(params).map_err(|e| {
        (
            ErrorCode::BadRequest,
            format!("{}: invalid params: {e}", M::NAME),
        )
    })
}

/// Decodes `M`'s parameters and runs `f`.
fn call<M: Method>(
    req: &Request,
    f: impl FnOnce(M::Params) -> Result<M::Output, Failure>,
) -> Outcome {
    let result = params::<M>(req).and_then(f).and_then(|out| {
        serde_json::to_value(out).map_err(|e| (ErrorCode::Internal, e.to_string()))
    });
    Outcome::Reply(result)
}

fn grace(p: StopParams) -> Duration {
    p.grace_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_GRACE)
        .min(Duration::from_secs(60))
}

fn hold_failure(e: HoldError) -> Failure {
    match e {
        HoldError::Invalid(msg) => (ErrorCode::BadRequest, msg.into()),
        HoldError::NotFound => (
            ErrorCode::NotFound,
            "no such hold (expired or never taken)".into(),
        ),
        HoldError::Full => (
            ErrorCode::Busy,
            format!("{MAX_HOLDS} holds are held already"),
        ),
    }
}

/// The guest clock, in ms since the epoch (0 before it).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs one authenticated request's method.
pub(super) fn dispatch(shared: &Shared, req: &Request) -> Outcome {
    let sup = &shared.supervisor;
    match req.method.as_str() {
        Health::NAME => call::<Health>(req, |_| {
            Ok(HealthResult {
                agent_uptime_ms: shared.started.elapsed().as_millis() as u64,
                system_uptime_ms: stats::uptime_ms(&shared.proc_dir),
                workload: sup.status().state,
            })
        }),
        InjectSecrets::NAME => call::<InjectSecrets>(req, |p| {
            let count = p.env.len();
            let names = shared
                .secrets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .inject(p.env, p.replace)
                .map_err(|m| (ErrorCode::BadRequest, m))?;
            shared.log.line(&format!(
                "secrets: {count} injected, {} stored",
                names.len()
            ));
            Ok(InjectSecretsResult {
                names,
                restart_needed: sup.pgid().is_some(),
            })
        }),
        Configure::NAME => call::<Configure>(req, |p| sup.configure(p.workload, p.start)),
        RotateToken::NAME => {
            call::<RotateToken>(req, |p| shared.rotate_token(p.token).map(|()| Empty {}))
        }
        Start::NAME => call::<Start>(req, |_| sup.start_workload()),
        Stop::NAME => call::<Stop>(req, |p| sup.stop(grace(p))),
        Restart::NAME => call::<Restart>(req, |p| sup.restart(grace(p))),
        Status::NAME => call::<Status>(req, |_| Ok(sup.status())),
        LogsTail::NAME => call::<LogsTail>(req, |p| {
            let n = p.lines.min(MAX_TAIL_LINES) as usize;
            Ok(match p.source {
                LogSource::Workload => shared.workload_log.tail(n),
                LogSource::Agent => shared.agent_log.tail(n),
            })
        }),
        LogsFollow::NAME => match params::<LogsFollow>(req) {
            Ok(p) => Outcome::Follow(p),
            Err(failure) => Outcome::Reply(Err(failure)),
        },
        Stats::NAME => call::<Stats>(req, |_| {
            let proc = &shared.proc_dir;
            Ok(StatsResult {
                uptime_ms: stats::uptime_ms(proc),
                load: stats::load(proc),
                memory: stats::memory(proc),
                connections: stats::connections(proc, sup.port()),
                workload_rss_kib: sup.pgid().map(|g| stats::group_rss_kib(proc, g)),
                holds: shared
                    .holds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .list(Instant::now())
                    .len() as u32,
                next_job_at_ms: cron::next_job_at_ms(
                    &cron::store_path(&shared.config.home),
                    unix_ms(),
                ),
            })
        }),
        HoldAcquire::NAME => call::<HoldAcquire>(req, |p| {
            let mut holds = shared.holds.lock().unwrap_or_else(|e| e.into_inner());
            holds
                .acquire(&p.id, p.ttl_ms, Instant::now())
                .map_err(hold_failure)
        }),
        HoldRenew::NAME => call::<HoldRenew>(req, |p| {
            let mut holds = shared.holds.lock().unwrap_or_else(|e| e.into_inner());
            holds
                .renew(&p.id, p.ttl_ms, Instant::now())
                .map_err(hold_failure)
        }),
        HoldRelease::NAME => call::<HoldRelease>(req, |p| {
            let mut holds = shared.holds.lock().unwrap_or_else(|e| e.into_inner());
            Ok(HoldReleased {
                released: holds.release(&p.id, Instant::now()),
            })
        }),
        HoldList::NAME => call::<HoldList>(req, |_| {
            let mut holds = shared.holds.lock().unwrap_or_else(|e| e.into_inner());
            Ok(HoldListResult {
                holds: holds.list(Instant::now()),
            })
        }),
        SetTime::NAME => call::<SetTime>(req, |p| {
            if !shared.config.allow_set_time {
                return Err((
                    ErrorCode::InvalidState,
                    "time.set is disabled outside a guest".into(),
                ));
            }
            let ts = nix::sys::time::TimeSpec::new(
                (p.unix_ms / 1000) as i64,
                ((p.unix_ms % 1000) * 1_000_000) as i64,
            );
            nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts)
                .map_err(|e| (ErrorCode::Internal, format!("setting the clock: {e}")))?;
            shared.log.line(&format!("clock set to {} ms", p.unix_ms));
            Ok(Empty {})
        }),
        Shutdown::NAME => match params::<Shutdown>(req) {
            Ok(p) => Outcome::Shutdown(p),
            Err(failure) => Outcome::Reply(Err(failure)),
        },
        other => Outcome::Reply(Err((
            ErrorCode::UnknownMethod,
            format!("no method `{other}`"),
        ))),
    }
}
