//! The workload supervisor: runs the configured command in its own process
//! group with a clean environment (base + spec + injected secrets), sends its
//! output to the workload log, and restarts it after exits with exponential
//! backoff (1 s doubling to 30 s; reset after a run of 60 s).
//!
//! One mutex guards the state; the child is only ever reaped (`try_wait`)
//! and signalled under it, so a signal never reaches a reused pid.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lobster_agent_proto::methods::{
    ExitInfo, RestartPolicy, WorkloadSpec, WorkloadState, WorkloadStatus,
};
use lobster_agent_proto::ErrorCode;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::files::write_private;
use crate::logs::{pump, LogSink};
use crate::secrets::{valid_env_name, Secrets};
use crate::{openclaw, Log};

/// `PATH` of the processes the agent starts (the workload, exec sessions).
pub const COMMAND_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const STABLE_RUN: Duration = Duration::from_secs(60);
/// Default time between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(100);

/// A method failure: protocol error code and message.
pub type Failure = (ErrorCode, String);

/// What the supervisor needs from the rest of the agent.
#[derive(Debug)]
pub struct Context {
    /// `HOME` of the workload.
    pub home: PathBuf,
    /// Command when the spec names none.
    pub default_command: Vec<String>,
    /// `PATH` of the workload.
    pub command_path: String,
    /// Where `workload.json` and `workload.pgid` live.
    pub state_dir: PathBuf,
    /// Workload output.
    pub output: Arc<LogSink>,
    /// The agent's log.
    pub log: Log,
    /// Injected secrets.
    pub secrets: Arc<Mutex<Secrets>>,
}

#[derive(Debug)]
struct Run {
    child: Child,
    pgid: i32,
    started: Instant,
}

#[derive(Debug, Default)]
struct State {
    spec: Option<WorkloadSpec>,
    desired: bool,
    run: Option<Run>,
    restarts: u32,
    last_exit: Option<ExitInfo>,
    backoff: Duration,
    restart_at: Option<Instant>,
    exited: bool,
}

#[derive(Serialize, Deserialize)]
struct Persisted {
    spec: WorkloadSpec,
    desired: bool,
}

/// Supervises one workload.
#[derive(Debug)]
pub struct Supervisor {
    ctx: Context,
    state: Mutex<State>,
    wake: Condvar,
}

impl Supervisor {
    /// A supervisor with the persisted spec (if any) loaded; a workload that
    /// was running before the agent (or the guest) restarted is started again.
    pub fn start(ctx: Context) -> Arc<Supervisor> {
        kill_stale_group(&ctx.state_dir);
        let sup = Arc::new(Supervisor {
            ctx,
            state: Mutex::new(State {
                backoff: BACKOFF_MIN,
                ..State::default()
            }),
            wake: Condvar::new(),
        });
        if let Some(p) = std::fs::read(sup.spec_path())
            .ok()
            .and_then(|b| serde_json::from_slice::<Persisted>(&b).ok())
        {
            let mut s = sup.lock();
            s.spec = Some(p.spec);
            if p.desired {
                s.desired = true;
                sup.ctx
                    .log
                    .line("workload: starting the persisted workload");
                sup.spawn(&mut s);
            }
        }
        let worker = Arc::clone(&sup);
        std::thread::Builder::new()
            .name("supervisor".into())
            .spawn(move || worker.run())
            .expect("spawning the supervisor thread");
        sup
    }

    fn run(&self) {
        let mut s = self.lock();
        loop {
            self.tick(&mut s);
            s = self
                .wake
                .wait_timeout(s, TICK)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spec_path(&self) -> PathBuf {
        self.ctx.state_dir.join("workload.json")
    }

    /// Reaps an exited child and starts due restarts.
    fn tick(&self, s: &mut State) {
        self.reap(s);
        if s.run.is_none() && s.desired && s.restart_at.is_some_and(|t| Instant::now() >= t) {
            s.restart_at = None;
            s.restarts += 1;
            self.spawn(s);
        }
    }

    fn reap(&self, s: &mut State) {
        let Some(run) = s.run.as_mut() else { return };
        let status = match run.child.try_wait() {
            Ok(Some(status)) => status,
            Ok(None) => return,
            Err(e) => {
                self.ctx
                    .log
                    .line(&format!("workload: waiting for pid {}: {e}", run.pgid));
                return;
            }
        };
        let ran = run.started.elapsed();
        let pgid = run.pgid;
        s.run = None;
        let _ = std::fs::remove_file(self.ctx.state_dir.join("workload.pgid"));
        // Stragglers of the group (children the workload left behind).
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        use std::os::unix::process::ExitStatusExt;
        let exit = ExitInfo {
            code: status.code(),
            signal: status.signal(),
        };
        self.ctx.log.line(&format!(
            "workload: pid {pgid} exited ({}) after {:.1}s",
            describe(&exit),
            ran.as_secs_f64()
        ));
        self.after_exit(s, exit, ran);
    }

    fn after_exit(&self, s: &mut State, exit: ExitInfo, ran: Duration) {
        s.last_exit = Some(exit);
        let policy = s.spec.as_ref().map(|w| w.restart).unwrap_or_default();
        let delay = match s.desired {
            true => restart_delay(policy, exit, ran, &mut s.backoff),
            false => None,
        };
        if let Some(delay) = delay {
            s.restart_at = Some(Instant::now() + delay);
            self.ctx
                .log
                .line(&format!("workload: restarting in {}s", delay.as_secs()));
        } else {
            s.exited = s.desired;
            s.desired = false;
        }
    }

    fn spawn(&self, s: &mut State) {
        let Some(spec) = s.spec.clone() else { return };
        match self.launch(&spec) {
            Ok(run) => {
                self.ctx
                    .log
                    .line(&format!("workload: started pid {}", run.pgid));
                let record = format!("{} {}", boot_id(), run.pgid);
                let _ = write_private(&self.ctx.state_dir.join("workload.pgid"), record.as_bytes());
                s.run = Some(run);
                s.exited = false;
            }
            Err(e) => {
                self.ctx.log.line(&format!("workload: cannot start: {e}"));
                self.ctx
                    .output
                    .append(&format!("lobster-agent: cannot start the workload: {e}"));
                self.after_exit(
                    s,
                    ExitInfo {
                        code: Some(127),
                        signal: None,
                    },
                    Duration::ZERO,
                );
            }
        }
    }

    fn launch(&self, spec: &WorkloadSpec) -> std::io::Result<Run> {
        let argv = if spec.command.is_empty() {
            &self.ctx.default_command
        } else {
            &spec.command
        };
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| std::io::Error::other("empty command"))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", &self.ctx.command_path)
            .env("HOME", &self.ctx.home)
            .env("LANG", "C.UTF-8")
            .current_dir(spec.cwd.as_deref().map(Path::new).unwrap_or(Path::new("/")))
            .process_group(0)
            .stdin(Stdio::null());
        cmd.envs(&spec.env);
        if let Some(oc) = &spec.openclaw {
            if let Some(aside) = openclaw::write_config(&self.ctx.home, oc)? {
                self.ctx.log.line(&format!(
                    "openclaw: the config was {}: kept it as {} and wrote a fresh one",
                    aside.reason,
                    aside.to.display()
                ));
            }
            cmd.envs(openclaw::environment(oc, &self.ctx.home));
        }
        {
            let secrets = self.ctx.secrets.lock().unwrap_or_else(|p| p.into_inner());
            cmd.envs(secrets.env());
        }
        let (reader, writer) = std::io::pipe()?;
        cmd.stdout(writer.try_clone()?).stderr(writer);
        std::fs::create_dir_all(&self.ctx.home)?;
        let child = cmd.spawn()?;
        drop(cmd); // closes our copies of the pipe's write end
        let output = Arc::clone(&self.ctx.output);
        std::thread::Builder::new()
            .name("workload-output".into())
            .spawn(move || pump(reader, &output))?;
        let pgid = i32::try_from(child.id()).map_err(std::io::Error::other)?;
        Ok(Run {
            child,
            pgid,
            started: Instant::now(),
        })
    }

    fn persist(&self, s: &State) -> Result<(), Failure> {
        let Some(spec) = s.spec.clone() else {
            return Ok(());
        };
        let bytes = serde_json::to_vec(&Persisted {
            spec,
            desired: s.desired,
        })
        .map_err(|e| (ErrorCode::Internal, format!("encoding workload spec: {e}")))?;
        write_private(&self.spec_path(), &bytes).map_err(|e| {
            (
                ErrorCode::Internal,
                format!("writing {}: {e}", self.spec_path().display()),
            )
        })
    }

    /// Sets the workload; with `start`, (re)starts it.
    pub fn configure(&self, spec: WorkloadSpec, start: bool) -> Result<WorkloadStatus, Failure> {
        validate(&spec)?;
        {
            let mut s = self.lock();
            s.spec = Some(spec);
            self.persist(&s)?;
        }
        if start {
            self.restart(DEFAULT_GRACE)
        } else {
            Ok(self.status())
        }
    }

    /// Starts the workload if it is not running.
    pub fn start_workload(&self) -> Result<WorkloadStatus, Failure> {
        let mut s = self.lock();
        if s.spec.is_none() {
            return Err((ErrorCode::InvalidState, "no workload configured".into()));
        }
        s.desired = true;
        s.restarts = 0;
        s.backoff = BACKOFF_MIN;
        s.restart_at = None;
        self.persist(&s)?;
        if s.run.is_none() {
            self.spawn(&mut s);
        }
        Ok(status_of(&s, &self.ctx.default_command))
    }

    /// Stops the workload: SIGTERM to the group, SIGKILL after `grace`.
    pub fn stop(&self, grace: Duration) -> Result<WorkloadStatus, Failure> {
        let pgid = {
            let mut s = self.lock();
            s.desired = false;
            s.restart_at = None;
            s.exited = false;
            self.persist(&s)?;
            match s.run.as_ref() {
                Some(run) => run.pgid,
                None => return Ok(status_of(&s, &self.ctx.default_command)),
            }
        };
        self.ctx.log.line(&format!("workload: stopping pid {pgid}"));
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            {
                let mut s = self.lock();
                self.reap(&mut s);
                if s.run.is_none() {
                    return Ok(status_of(&s, &self.ctx.default_command));
                }
                if Instant::now() >= deadline {
                    self.ctx
                        .log
                        .line(&format!("workload: pid {pgid} ignored SIGTERM; killing"));
                    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                    if let Some(run) = s.run.as_mut() {
                        let _ = run.child.wait();
                    }
                    self.reap_killed(&mut s);
                    return Ok(status_of(&s, &self.ctx.default_command));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn reap_killed(&self, s: &mut State) {
        if let Some(run) = s.run.take() {
            let _ = std::fs::remove_file(self.ctx.state_dir.join("workload.pgid"));
            s.last_exit = Some(ExitInfo {
                code: None,
                signal: Some(Signal::SIGKILL as i32),
            });
            self.ctx
                .log
                .line(&format!("workload: pid {} killed", run.pgid));
        }
    }

    /// Stops (if running) and starts.
    pub fn restart(&self, grace: Duration) -> Result<WorkloadStatus, Failure> {
        self.stop(grace)?;
        self.start_workload()
    }

    /// Current status.
    pub fn status(&self) -> WorkloadStatus {
        let mut s = self.lock();
        self.reap(&mut s);
        status_of(&s, &self.ctx.default_command)
    }

    /// The port the workload serves on, if known (for connection counts).
    pub fn port(&self) -> Option<u16> {
        let s = self.lock();
        let spec = s.spec.as_ref()?;
        spec.port.or(spec.openclaw.as_ref().map(|o| o.port))
    }

    /// Process group of the running workload.
    pub fn pgid(&self) -> Option<u32> {
        self.lock().run.as_ref().map(|r| r.pgid as u32)
    }
}

/// The restart policy with its backoff: after a run of `ran` that ended
/// with `exit`, how long until the workload is started again (`None`: it
/// stays down). `backoff` is the next delay: it doubles from 1 s up to
/// 30 s, and a run of at least 60 s resets it.
fn restart_delay(
    policy: RestartPolicy,
    exit: ExitInfo,
    ran: Duration,
    backoff: &mut Duration,
) -> Option<Duration> {
    let again = match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => exit.code != Some(0),
        RestartPolicy::Never => false,
    };
    if !again {
        return None;
    }
    if ran >= STABLE_RUN {
        *backoff = BACKOFF_MIN;
    }
    let delay = *backoff;
    *backoff = (delay * 2).min(BACKOFF_MAX);
    Some(delay)
}

fn status_of(s: &State, default_command: &[String]) -> WorkloadStatus {
    let now = Instant::now();
    let state = match (&s.spec, &s.run, s.restart_at, s.exited) {
        (None, _, _, _) => WorkloadState::Unconfigured,
        (_, Some(_), _, _) => WorkloadState::Running,
        (_, None, Some(_), _) => WorkloadState::Backoff,
        (_, None, None, true) => WorkloadState::Exited,
        _ => WorkloadState::Stopped,
    };
    let command = match &s.spec {
        Some(spec) if !spec.command.is_empty() => spec.command.clone(),
        Some(_) => default_command.to_vec(),
        None => Vec::new(),
    };
    WorkloadStatus {
        state,
        pid: s.run.as_ref().map(|r| r.pgid as u32),
        command,
        restarts: s.restarts,
        last_exit: s.last_exit,
        uptime_ms: s
            .run
            .as_ref()
            .map(|r| r.started.elapsed().as_millis() as u64),
        restart_in_ms: s
            .restart_at
            .map(|t| t.saturating_duration_since(now).as_millis() as u64),
    }
}

fn validate(spec: &WorkloadSpec) -> Result<(), Failure> {
    let bad = |m: String| Err((ErrorCode::BadRequest, m));
    if spec.command.first().is_some_and(|p| p.is_empty()) {
        return bad("workload.command[0] must not be empty".into());
    }
    if spec.command.iter().any(|a| a.contains('\0')) {
        return bad("workload.command must not contain NUL".into());
    }
    if let Some(name) = spec.env.keys().find(|k| !valid_env_name(k)) {
        return bad(format!(
            "workload.env: `{}` is not a variable name",
            name.escape_debug()
        ));
    }
    if spec.env.values().any(|v| v.contains('\0')) {
        return bad("workload.env values must not contain NUL".into());
    }
    if spec.cwd.as_deref().is_some_and(|c| !c.starts_with('/')) {
        return bad("workload.cwd must be an absolute path".into());
    }
    if spec.openclaw.as_ref().is_some_and(|o| o.port == 0) {
        return bad("workload.openclaw.port must not be 0".into());
    }
    Ok(())
}

fn describe(exit: &ExitInfo) -> String {
    match (exit.code, exit.signal) {
        (Some(c), _) => format!("code {c}"),
        (_, Some(s)) => format!("signal {s}"),
        _ => "unknown".into(),
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Kills the process group of a workload left running by a previous agent
/// process in this boot (the agent crashed or was restarted by init).
fn kill_stale_group(state_dir: &Path) {
    let path = state_dir.join("workload.pgid");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let mut words = text.split_whitespace();
    if let (Some(boot), Some(Ok(pgid))) = (words.next(), words.next().map(str::parse::<i32>)) {
        if boot == boot_id() && pgid > 1 {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILED: ExitInfo = ExitInfo {
        code: Some(1),
        signal: None,
    };
    const SUCCEEDED: ExitInfo = ExitInfo {
        code: Some(0),
        signal: None,
    };
    const KILLED: ExitInfo = ExitInfo {
        code: None,
        signal: Some(9),
    };

    fn secs(delays: &[Option<Duration>]) -> Vec<Option<u64>> {
        delays.iter().map(|d| d.map(|d| d.as_secs())).collect()
    }

    #[test]
    fn quick_failures_back_off_doubling_from_one_second_to_thirty() {
        let mut backoff = BACKOFF_MIN;
        let delays: Vec<_> = (0..8)
            .map(|_| restart_delay(RestartPolicy::Always, FAILED, Duration::ZERO, &mut backoff))
            .collect();
        assert_eq!(
            secs(&delays),
            [1, 2, 4, 8, 16, 30, 30, 30].map(Some).to_vec()
        );
    }

    #[test]
    fn a_run_of_a_minute_resets_the_backoff() {
        let mut backoff = BACKOFF_MIN;
        for _ in 0..4 {
            restart_delay(
                RestartPolicy::Always,
                FAILED,
                Duration::from_secs(1),
                &mut backoff,
            );
        }
        assert_eq!(backoff, Duration::from_secs(16));
        let just_short = STABLE_RUN - Duration::from_millis(1);
        let delay = restart_delay(RestartPolicy::Always, FAILED, just_short, &mut backoff);
        assert_eq!(delay, Some(Duration::from_secs(16)));
        let delay = restart_delay(RestartPolicy::Always, FAILED, STABLE_RUN, &mut backoff);
        assert_eq!(delay, Some(Duration::from_secs(1)));
        assert_eq!(backoff, Duration::from_secs(2));
    }

    #[test]
    fn each_policy_restarts_what_it_names() {
        let cases = [
            (RestartPolicy::Always, [Some(1), Some(1), Some(1)]),
            (RestartPolicy::OnFailure, [None, Some(1), Some(1)]),
            (RestartPolicy::Never, [None, None, None]),
        ];
        for (policy, want) in cases {
            let got: Vec<_> = [SUCCEEDED, FAILED, KILLED]
                .map(|exit| {
                    let mut backoff = BACKOFF_MIN;
                    restart_delay(policy, exit, Duration::ZERO, &mut backoff)
                })
                .to_vec();
            assert_eq!(secs(&got), want.to_vec(), "{policy:?}");
        }
    }

    #[test]
    fn no_restart_leaves_the_backoff_alone() {
        let mut backoff = Duration::from_secs(8);
        assert_eq!(
            restart_delay(RestartPolicy::Never, FAILED, STABLE_RUN, &mut backoff),
            None
        );
        assert_eq!(backoff, Duration::from_secs(8));
    }
}
