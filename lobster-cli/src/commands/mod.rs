//! Command behaviour: each calls the lobster-core API and renders the result
//! as text or JSON. No orchestration logic lives here.

mod api;
mod cp;
mod docs;
mod exec;
mod init;
mod openclaw;
mod spawn;
mod tank;
mod tenants;
mod uninit;
mod watch;

use std::process::ExitCode;

use lobster_core::{Error, Host};
use serde::Serialize;

use crate::args::{Cli, Command};

/// What every command gets.
pub struct Context {
    /// The `--config` argument.
    pub config: Option<std::path::PathBuf>,
    /// `--json` output.
    pub json: bool,
}

impl Context {
    /// Opens the host named by `--config` / `$LOBSTERD_CONFIG`.
    pub fn host(&self) -> Result<Host, Error> {
        Host::open(self.config.as_deref())
    }

    /// Prints `value` as JSON, or `text()` for humans.
    pub fn print<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).expect("output serialises")
            );
        } else {
            let text = text();
            if !text.is_empty() {
                println!("{}", text.trim_end());
            }
        }
    }
}

/// Runs one parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let ctx = Context {
        config: cli.config,
        json: cli.json,
    };
    let result = match cli.command {
        Command::Init(args) => init::run(&ctx, args).await,
        Command::Spawn(args) => spawn::run(&ctx, args).await,
        Command::List => tenants::list(&ctx).await,
        Command::Token(args) => tenants::token(&ctx, &args.name, args.rotate).await,
        Command::Ca => tenants::ca(&ctx),
        Command::Serve(args) => api::serve(&ctx, &args).await,
        Command::ApiToken(command) => api::token(&ctx, command).await,
        Command::Evict(args) => tenants::evict(&ctx, &args).await,
        Command::Molt(args) => match tenants::molt(&ctx, args.name.as_deref()).await {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Suspend(args) => tenants::suspend(&ctx, &args.name).await,
        Command::Resume(args) => tenants::resume(&ctx, &args.name).await,
        Command::Uninit(args) => uninit::run(&ctx, &args).await,
        Command::Completions(args) => docs::completions(args.shell),
        Command::Man(args) => docs::man(&ctx, &args.dir),
        Command::Watch(args) => watch::run(&ctx, args).await,
        Command::Tank(args) => match tank::run(&ctx, &args).await {
            Ok(()) => Ok(()),
            Err(failure) => match failure.report() {
                Ok(code) => return code,
                Err(e) => Err(e),
            },
        },
        Command::Logs(args) => tenants::logs(&ctx, &args).await,
        Command::Snap(args) => tenants::snap(&ctx, &args).await,
        Command::Cp(args) => match cp::run(&ctx, args).await {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Exec(args) => match exec::run(&ctx, args).await {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Configure(args) => match openclaw::configure(&ctx, args).await {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Devices(args) => openclaw::devices(&ctx, args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&ctx, &err),
    }
}

/// Prints an error once, with its cause chain, and picks the exit code.
fn report(ctx: &Context, err: &Error) -> ExitCode {
    let kind = err.kind();
    let message = printable(&err.chain());
    if ctx.json {
        let body = serde_json::json!({ "error": { "kind": kind, "message": message } });
        println!(
            "{}",
            serde_json::to_string_pretty(&body).expect("error serialises")
        );
    } else {
        eprintln!("error: {message}");
    }
    ExitCode::from(crate::exit::of(err))
}

/// `text` safe for a terminal line by line: an error can quote a guest
/// (its console, its agent), and core sanitises what it knows comes from
/// one; this is the last line of defence for anything else.
fn printable(text: &str) -> String {
    text.lines()
        .map(lobster_core::agent::sanitize_for_terminal)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_reach_the_terminal_without_controls_but_with_their_lines() {
        let text = "vm a: vmm process ended\nlast output:\n\x1b]52;c;cm0=\x07bye";
        let shown = super::printable(text);
        assert!(!shown.contains(['\x1b', '\x07']), "{shown:?}");
        assert_eq!(shown.lines().count(), 3);
        assert!(shown.ends_with("^[]52;c;cm0=^Gbye"), "{shown:?}");
    }
}
