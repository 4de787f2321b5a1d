//! `tank`: the live dashboard (`--json`: one machine-readable snapshot).
//!
//! Every row comes from [`lobster_core::Host::overview`]; this module only
//! refreshes it on a timer, reads keys and draws [`view::Dashboard`].

mod screen;
mod view;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::mpsc::TryRecvError;
use std::time::Duration;

use lobster_core::health::Overview;
use lobster_core::{Error, ErrorKind, Host};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

use self::screen::Screen;
use self::view::{Dashboard, Sort};
use super::Context;
use crate::args::TankArgs;

/// How `tank` fails: as every command, or at the terminal.
pub enum Failure {
    /// Reading the host failed.
    Lobster(Error),
    /// Standard output is not a terminal.
    NotATerminal,
    /// Driving the terminal failed.
    Terminal(std::io::Error),
}

impl Failure {
    /// Prints the failure once and picks the exit code (`Lobster` is left to
    /// the caller's usual report).
    pub fn report(self) -> Result<ExitCode, Error> {
        let (message, kind) = match self {
            Failure::Lobster(e) => return Err(e),
            Failure::NotATerminal => (
                "standard output is not a terminal (use --json for one snapshot)".to_owned(),
                ErrorKind::Unsupported,
            ),
            Failure::Terminal(e) => (format!("terminal: {e}"), ErrorKind::HostFailure),
        };
        eprintln!("error: {message}");
        Ok(ExitCode::from(crate::exit::code(kind)))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Lobster(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Terminal(e)
    }
}

/// Runs `tank`.
pub async fn run(ctx: &Context, args: &TankArgs) -> Result<(), Failure> {
    let host = ctx.host()?;
    let overview = host.overview().await?;
    if ctx.json {
        ctx.print(&overview, String::new);
        return Ok(());
    }
    if !std::io::stdout().is_terminal() {
        return Err(Failure::NotATerminal);
    }
    live(host, overview, Duration::from_millis(args.interval_ms)).await
}

/// What the loop reacts to.
enum Message {
    /// A key was pressed.
    Key(KeyEvent),
    /// The terminal changed size: draw again.
    Resized,
    /// Reading keys failed.
    InputFailed(std::io::Error),
    /// A fresh snapshot (or why there is none).
    Snapshot(Box<Result<Overview, Error>>),
    /// SIGTERM, SIGHUP or SIGINT.
    Signal,
}

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Quit,
    NextSortKey,
    Reverse,
}

/// `q`, Esc and Ctrl-C quit; `s` cycles the sort column; `r` reverses.
fn action(key: KeyEvent) -> Option<Action> {
    if key.kind != KeyEventKind::Press {
        return None;
    }
    match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Some(Action::Quit),
        KeyCode::Char('q' | 'Q') | KeyCode::Esc => Some(Action::Quit),
        KeyCode::Char('s' | 'S') => Some(Action::NextSortKey),
        KeyCode::Char('r' | 'R') => Some(Action::Reverse),
        _ => None,
    }
}

/// The dashboard until a quit key or a signal.
async fn live(host: Host, first: Overview, interval: Duration) -> Result<(), Failure> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    let domain = host.config().domain.clone();
    let mut screen = Screen::enter()?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let refresher = tokio::spawn(refresh(host, interval, tx.clone()));
    let signals = tokio::spawn(signals(tx.clone()));
    let (stop_keys, keys) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || read_keys(tx, keys));

    let mut overview = first;
    let mut error: Option<String> = None;
    let mut sort = Sort::default();
    let outcome = loop {
        let dashboard = Dashboard {
            hostname: &hostname,
            domain: &domain,
            overview: &overview,
            sort,
            now_ms: now_ms(),
            interval,
            error: error.as_deref(),
        };
        if let Err(e) = screen
            .terminal()
            .draw(|frame| frame.render_widget(&dashboard, frame.area()))
        {
            break Err(Failure::Terminal(e));
        }
        match rx.recv().await {
            None | Some(Message::Signal) => break Ok(()),
            Some(Message::InputFailed(e)) => break Err(Failure::Terminal(e)),
            Some(Message::Resized) => {}
            Some(Message::Snapshot(snapshot)) => match *snapshot {
                Ok(fresh) => {
                    overview = fresh;
                    error = None;
                }
                Err(e) => error = Some(e.chain()),
            },
            Some(Message::Key(key)) => match action(key) {
                Some(Action::Quit) => break Ok(()),
                Some(Action::NextSortKey) => sort.key = sort.key.next(),
                Some(Action::Reverse) => sort.reversed = !sort.reversed,
                None => {}
            },
        }
    };
    refresher.abort();
    signals.abort();
    let _ = stop_keys.send(());
    drop(rx);
    // The reader polls in short slices, so this waits at most one slice.
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    let restored = screen.leave().map_err(Failure::Terminal);
    outcome.and(restored)
}

/// Sends a snapshot every `interval` until the loop stops listening.
async fn refresh(host: Host, interval: Duration, tx: mpsc::UnboundedSender<Message>) {
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer.tick().await; // the first tick is immediate; the loop has a snapshot
    loop {
        timer.tick().await;
        let snapshot = host.overview().await;
        if tx.send(Message::Snapshot(Box::new(snapshot))).is_err() {
            return;
        }
    }
}

/// Turns SIGTERM, SIGHUP and SIGINT into a clean quit.
async fn signals(tx: mpsc::UnboundedSender<Message>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = hup.recv() => {}
        _ = int.recv() => {}
    }
    let _ = tx.send(Message::Signal);
}

/// Reads terminal events on a thread of its own, polling in 100 ms slices
/// so it notices `stop` promptly.
fn read_keys(tx: mpsc::UnboundedSender<Message>, stop: std::sync::mpsc::Receiver<()>) {
    const SLICE: Duration = Duration::from_millis(100);
    loop {
        match stop.try_recv() {
            Err(TryRecvError::Empty) => {}
            Ok(()) | Err(TryRecvError::Disconnected) => return,
        }
        let message = match event::poll(SLICE) {
            Ok(false) => continue,
            Ok(true) => match event::read() {
                Ok(Event::Key(key)) => Message::Key(key),
                Ok(Event::Resize(..)) => Message::Resized,
                Ok(_) => continue,
                Err(e) => Message::InputFailed(e),
            },
            Err(e) => Message::InputFailed(e),
        };
        let failed = matches!(message, Message::InputFailed(_));
        if tx.send(message).is_err() || failed {
            return;
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn keys_map_to_actions() {
        let none = KeyModifiers::NONE;
        assert_eq!(action(press(KeyCode::Char('q'), none)), Some(Action::Quit));
        assert_eq!(action(press(KeyCode::Esc, none)), Some(Action::Quit));
        assert_eq!(
            action(press(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(action(press(KeyCode::Char('c'), none)), None);
        assert_eq!(
            action(press(KeyCode::Char('s'), none)),
            Some(Action::NextSortKey)
        );
        assert_eq!(
            action(press(KeyCode::Char('r'), none)),
            Some(Action::Reverse)
        );
        assert_eq!(action(press(KeyCode::Char('x'), none)), None);
        let mut release = press(KeyCode::Char('q'), none);
        release.kind = KeyEventKind::Release;
        assert_eq!(action(release), None);
    }
}
