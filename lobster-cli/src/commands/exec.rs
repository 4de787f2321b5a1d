//! `lobsterd exec`: run a command in a tenant's guest through
//! `Host::exec` and wire it to this process's stdin, stdout, stderr,
//! signals and terminal. The exit status is the command's own
//! (`exit_status`). With `-t` the local terminal is in raw mode for the
//! session ([`RawMode`] restores it on every way out, panics included),
//! its size is sent at the start and on every SIGWINCH.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::time::Duration;

use lobster_core::agent::{exit_status, AgentError, ExecEvent, ExecInput, WindowSize};
use lobster_core::tenant::ExecRequest;
use lobster_core::Error;
use ratatui::crossterm::terminal;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::Context;
use crate::args::ExecArgs;
use crate::exit::USAGE;

/// How long lobsterd waits, after forwarding SIGTERM or SIGHUP, for the
/// command to end before it leaves as that signal's status (as `ssh`
/// does); dropping the session makes the agent hang up the command's
/// process group.
const LEAVE_GRACE: Duration = Duration::from_secs(5);

/// Size of one read from local stdin (one frame's worth).
const STDIN_CHUNK: usize = 64 * 1024;

pub async fn run(ctx: &Context, args: ExecArgs) -> Result<ExitCode, Error> {
    if args.tty {
        if let Err(code) = need_terminal("-t", "run from a terminal, or drop -t") {
            return Ok(code);
        }
    }
    let mut builder = ExecRequest::builder(args.command);
    for (key, value) in args.env {
        builder = builder.env(key, value);
    }
    if let Some(dir) = args.workdir {
        builder = builder.cwd(dir);
    }
    if let Some(user) = args.user {
        builder = builder.user(user);
    }
    if let Some(seconds) = args.timeout {
        builder = builder.timeout(Duration::from_secs(seconds));
    }
    if args.tty {
        builder = builder.tty(window_size());
    }
    let request = builder.build()?;
    run_session(ctx, &args.name, &request, args.interactive).await
}

/// Whether stdin is a terminal, else a usage error's exit code after
/// printing that `what` needs one and `hint`.
pub fn need_terminal(what: &str, hint: &str) -> Result<(), ExitCode> {
    if std::io::stdin().is_terminal() {
        Ok(())
    } else {
        eprintln!("error: {what} needs a terminal on stdin ({hint})");
        Err(ExitCode::from(USAGE))
    }
}

/// Runs `request` in tenant `name` wired to this process: its output to
/// stdout and stderr, signals forwarded, local stdin sent when
/// `interactive`, and with a terminal (`request` has a window size) the
/// local terminal in raw mode with resizes forwarded. Returns the
/// command's exit status.
pub async fn run_session(
    ctx: &Context,
    name: &str,
    request: &ExecRequest,
    interactive: bool,
) -> Result<ExitCode, Error> {
    let tty = request.params().tty.is_some();
    let session = ctx.host()?.exec(name, request).await?;
    let _raw = if tty { Some(RawMode::enter()?) } else { None };
    let (input, mut output) = session.split();
    let mut tasks = tokio::task::JoinSet::new();
    let (leaving, mut left) = mpsc::channel(1);
    tasks.spawn(forward_signals(input.clone(), tty, leaving));
    if interactive {
        tasks.spawn(pump_stdin(input.clone()));
    } else if !tty {
        input.close_stdin().await?;
    }
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    // Set by a forwarded SIGTERM or SIGHUP: (the signal, when to leave).
    let mut leave: Option<(i32, tokio::time::Instant)> = None;
    let status = loop {
        let until = leave.map(|(_, at)| at);
        let give_up = async move {
            match until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            event = output.next() => event?,
            Some(signal) = left.recv(), if leave.is_none() => {
                leave = Some((signal, tokio::time::Instant::now() + LEAVE_GRACE));
                continue;
            }
            () = give_up => break 128 + leave.map_or(1, |(signal, _)| signal),
        };
        match event {
            Some(ExecEvent::Stdout(bytes)) => write_out(&mut stdout, &bytes).await,
            Some(ExecEvent::Stderr(bytes)) => write_out(&mut stderr, &bytes).await,
            Some(ExecEvent::Exit(exit)) => break exit_status(&exit),
            None => break 1,
        }
    };
    tasks.abort_all();
    Ok(ExitCode::from(status.clamp(0, 255) as u8))
}

/// Writes guest output through; a closed local pipe only loses output.
async fn write_out(out: &mut (impl AsyncWriteExt + Unpin), bytes: &[u8]) {
    if out.write_all(bytes).await.is_ok() {
        let _ = out.flush().await;
    }
}

/// The local terminal's size (80x24 if it has none).
pub fn window_size() -> WindowSize {
    match terminal::size() {
        Ok((cols, rows)) if cols > 0 && rows > 0 => WindowSize { rows, cols },
        _ => WindowSize { rows: 24, cols: 80 },
    }
}

/// Sends local stdin to the command, then its end. Stdin is read on a
/// thread of its own: a read blocked on a terminal must not keep the
/// process alive once the command has exited.
async fn pump_stdin(input: ExecInput) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; STDIN_CHUNK];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    while let Some(chunk) = rx.recv().await {
        if input.write_stdin(&chunk).await.is_err() {
            return;
        }
    }
    let _ = input.close_stdin().await;
}

/// Forwards SIGINT, SIGTERM and SIGHUP to the command's process group
/// and, with a terminal, each SIGWINCH as the new window size. (In raw
/// mode Ctrl-C is an ordinary byte of stdin and raises no SIGINT here.)
async fn forward_signals(input: ExecInput, tty: bool, leaving: mpsc::Sender<i32>) {
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!("cannot catch signals to forward them");
        return;
    };
    let mut winch = if tty {
        signal(SignalKind::window_change()).ok()
    } else {
        None
    };
    loop {
        let sent = tokio::select! {
            _ = int.recv() => input.signal(SignalKind::interrupt().as_raw_value()).await,
            _ = term.recv() => forward_and_leave(&input, SignalKind::terminate(), &leaving).await,
            _ = hup.recv() => forward_and_leave(&input, SignalKind::hangup(), &leaving).await,
            Some(()) = async {
                match winch.as_mut() {
                    Some(w) => w.recv().await,
                    None => std::future::pending().await,
                }
            } => input.resize(window_size()).await,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Forwards `kind` (SIGTERM, SIGHUP: this process is asked to end, or its
/// terminal is gone) and tells the session loop to leave after
/// [`LEAVE_GRACE`] if the command has not ended by then.
async fn forward_and_leave(
    input: &ExecInput,
    kind: SignalKind,
    leaving: &mpsc::Sender<i32>,
) -> Result<(), AgentError> {
    let sent = input.signal(kind.as_raw_value()).await;
    let _ = leaving.try_send(kind.as_raw_value());
    sent
}

/// The local terminal in raw mode; dropping it (on return, error or
/// panic) restores the terminal as it was.
struct RawMode;

impl RawMode {
    fn enter() -> Result<RawMode, Error> {
        terminal::enable_raw_mode().map_err(|source| -> Error {
            lobster_core::tenant::TenantError::Io {
                context: "putting the terminal in raw mode",
                path: "/dev/tty".into(),
                source,
            }
            .into()
        })?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = terminal::disable_raw_mode();
    }
}
