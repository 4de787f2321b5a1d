//! `lobster-agent`: flags override defaults; `--guest` takes defaults from
//! the kernel command line (`/proc/cmdline`).
//!
//! ```text
//! lobster-agent --guest
//! lobster-agent --dir DIR --token-file FILE [--listen ADDR] [--health-listen ADDR]
//!               [--home DIR] [--max-exec-sessions N] [--max-transfer-bytes N]
//!               [--command ARG]...
//! ```
//! On start it prints `lobster-agent: rpc=<addr> health=<addr>` on stdout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use lobster_agent::config::{read_token, AgentConfig, ShutdownAction};
use lobster_agent::Agent;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("lobster-agent: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    // PID 1 blocks the signals it handles; start (and let the workload
    // start) from a clean mask so SIGTERM stops processes at shutdown.
    let _ = nix::sys::signal::SigSet::all().thread_unblock();
    let config = parse_args(std::env::args().skip(1).collect())?;
    let on_shutdown = config.on_shutdown;
    let agent = Agent::start(config).map_err(|e| format!("starting: {e}"))?;
    println!(
        "lobster-agent: rpc={} health={}",
        agent.rpc_addr(),
        agent.health_addr()
    );
    let _ = std::io::stdout().flush();
    let request = agent.wait_for_shutdown();
    agent.quiesce();
    match on_shutdown {
        ShutdownAction::Exit => Ok(()),
        ShutdownAction::SignalInit => {
            use nix::sys::signal::{kill, Signal};
            let signal = if request.reboot {
                Signal::SIGINT
            } else {
                Signal::SIGUSR2
            };
            kill(nix::unistd::Pid::from_raw(1), signal)
                .map_err(|e| format!("signalling init: {e}"))?;
            // init stops every process, us included.
            loop {
                std::thread::park();
            }
        }
    }
}

fn parse_args(args: Vec<String>) -> Result<AgentConfig, String> {
    let mut it = args.into_iter();
    let mut config: Option<AgentConfig> = None;
    let mut overrides: Vec<(String, String)> = Vec::new();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--guest" => {
                let cmdline = std::fs::read_to_string("/proc/cmdline")
                    .map_err(|e| format!("/proc/cmdline: {e}"))?;
                config = Some(AgentConfig::for_guest(&cmdline).map_err(|e| e.to_string())?);
            }
            "--dir" => {
                let dir = it.next().ok_or("--dir needs a value")?;
                config = Some(AgentConfig::for_host_process(&PathBuf::from(dir), ""));
            }
            "--help" | "-h" => {
                println!("usage: lobster-agent --guest | --dir DIR --token-file FILE [--listen ADDR] [--health-listen ADDR] [--home DIR] [--max-exec-sessions N] [--max-transfer-bytes N] [--command ARG]...");
                std::process::exit(0);
            }
            f @ ("--token-file"
            | "--listen"
            | "--health-listen"
            | "--home"
            | "--max-exec-sessions"
            | "--max-transfer-bytes"
            | "--command") => {
                let v = it.next().ok_or(format!("{f} needs a value"))?;
                overrides.push((f.to_owned(), v));
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    let mut config = config.ok_or("either --guest or --dir DIR is required")?;
    let mut command = Vec::new();
    for (flag, value) in overrides {
        match flag.as_str() {
            "--token-file" => {
                config.token = read_token(Path::new(&value));
                config.token_file = Some(PathBuf::from(value));
            }
            "--listen" => {
                config.rpc_listen = value
                    .parse()
                    .map_err(|_| format!("--listen: `{value}` is not ip:port"))?
            }
            "--health-listen" => {
                config.health_listen = value
                    .parse()
                    .map_err(|_| format!("--health-listen: `{value}` is not ip:port"))?
            }
            "--home" => config.home = PathBuf::from(value),
            "--max-exec-sessions" => {
                config.max_exec_sessions = value
                    .parse()
                    .map_err(|_| format!("--max-exec-sessions: `{value}` is not a count"))?
            }
            "--max-transfer-bytes" => {
                config.max_transfer_bytes = value
                    .parse()
                    .map_err(|_| format!("--max-transfer-bytes: `{value}` is not a count"))?
            }
            _ => command.push(value),
        }
    }
    if !command.is_empty() {
        config.default_command = command;
    }
    if config.on_shutdown == ShutdownAction::SignalInit && std::process::id() == 1 {
        return Err("lobster-agent must not run as PID 1; lobster-init starts it".into());
    }
    Ok(config)
}
