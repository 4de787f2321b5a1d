//! Command-line arguments (clap). Behaviour lives in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// lobsterd: run isolated microVM tenants (VM, /30 network, overlay disk,
/// agent, OpenClaw gateway, Caddy route).
#[derive(Debug, Parser)]
#[command(name = "lobsterd", version, propagate_version = true, after_help = crate::exit::help())]
pub struct Cli {
    /// Configuration file [default: $LOBSTERD_CONFIG, else /etc/lobsterd/config.json].
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of text (errors too).
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command of the original lobsterd.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the configuration, create state directories, check prerequisites.
    Init(InitArgs),
    /// Remove what `init` set up (refused while tenants exist; `--purge`: state too).
    Uninit(UninitArgs),
    /// Create and start a tenant.
    Spawn(SpawnArgs),
    /// Destroy a tenant and everything it holds.
    Evict(EvictArgs),
    /// List tenants.
    List,
    /// Health-check tenants and repair what failed.
    Molt(MoltArgs),
    /// Run the watchdog: checks and repairs on a schedule.
    Watch(WatchArgs),
    /// Live dashboard of all tenants (`--json`: one snapshot).
    Tank(TankArgs),
    /// Show a tenant's agent or workload logs, or the watchdog's.
    Logs(LogsArgs),
    /// Snapshot a tenant's overlay disk to a compressed archive.
    Snap(SnapArgs),
    /// Snapshot a running tenant's memory to disk and stop its VM (TAP, rules and route stay).
    Suspend(NameArg),
    /// Start a suspended tenant again from its snapshot (cold boot from its disk if the snapshot cannot be loaded).
    Resume(NameArg),
    /// Run a command in a tenant's guest (`-it`: an interactive shell); exits with the command's status.
    Exec(ExecArgs),
    /// Copy a file or directory into a tenant's guest (`cp SRC NAME:DST`) or out of it (`cp NAME:SRC DST`).
    Cp(CpArgs),
    /// Configure a tenant's OpenClaw: its interactive wizard on this
    /// terminal, or `--set KEY=VALUE` (then a gateway restart) / `--get KEY`.
    Configure(ConfigureArgs),
    /// Manage a tenant's OpenClaw device pairing: list (default), approve ID, reject ID.
    Devices(DevicesArgs),
    /// Print a tenant's gateway token (`--rotate`: replace its agent and gateway tokens first).
    Token(TokenArgs),
    /// Print where the root certificate of lobster's local CA is (trust it
    /// in a client to reach tenants over HTTPS).
    Ca,
    /// Serve the HTTP API: on its unix socket, and over TCP with TLS where the config's `api.listen` says.
    Serve(ServeArgs),
    /// Manage the HTTP API's bearer tokens: create NAME --scope S, list, revoke ID.
    #[command(subcommand)]
    ApiToken(ApiTokenCommand),
    /// Print the shell completion script (e.g. `lobsterd completions bash > /etc/bash_completion.d/lobsterd`).
    Completions(CompletionsArgs),
    /// Write the man pages (lobsterd.1 and one per command) into a directory.
    Man(ManArgs),
}

/// `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: ShellArg,
}

/// A shell completions are made for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ShellArg {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

/// `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    pub dir: PathBuf,
}

/// `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Domain tenants are routed under (`<name>.<domain>`).
    #[arg(short, long)]
    pub domain: Option<String>,
    /// Put every path of a new configuration under this directory.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Overwrite an existing configuration that differs.
    #[arg(long)]
    pub force: bool,
    /// Only write the configuration and directories: leave IP forwarding,
    /// the firewall base chains and Caddy alone.
    #[arg(long)]
    pub no_host_setup: bool,
    /// Do not ask questions (init never prompts; accepted for compatibility).
    #[arg(short, long)]
    pub yes: bool,
}

/// `uninit`.
#[derive(Debug, Args)]
pub struct UninitArgs {
    /// Also remove the state (registry, overlays, snapshots, logs), the
    /// guest images, and Caddy's directory and user.
    #[arg(long)]
    pub purge: bool,
    /// Do not ask for confirmation (`--purge` asks).
    #[arg(short, long)]
    pub yes: bool,
}

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The unix socket to listen on, instead of the config's `api.socket`.
    #[arg(long)]
    pub socket: Option<std::path::PathBuf>,
    /// The group that may connect besides root, instead of `api.socket_gid`.
    #[arg(long)]
    pub gid: Option<u32>,
}

/// `api-token`.
#[derive(Debug, Subcommand)]
pub enum ApiTokenCommand {
    /// Create a token; its secret is printed once and stored only as a hash.
    Create {
        /// A label saying who holds it.
        name: String,
        /// What it may do: read, operate (also change tenants) or admin (also reveal tokens).
        #[arg(long, default_value = "read")]
        scope: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke {
        /// Its id (the 8 hex digits after `lob_`).
        id: String,
    },
}

/// A tenant name.
#[derive(Debug, Args)]
pub struct NameArg {
    /// Tenant name.
    pub name: String,
}

/// `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Tenant name.
    pub name: String,
    /// Give the running tenant new agent and gateway tokens (the old ones
    /// are refused afterwards), then print the new gateway token.
    #[arg(long)]
    pub rotate: bool,
}

/// `spawn`.
#[derive(Debug, Args)]
pub struct SpawnArgs {
    /// Tenant name: lowercase letters, digits and '-', starting with a letter, at most 63.
    pub name: String,
    /// Virtual CPUs [default: from config].
    #[arg(long)]
    pub vcpus: Option<u8>,
    /// Memory in MiB [default: from config].
    #[arg(long, value_name = "MIB")]
    pub memory_mib: Option<u32>,
    /// Overlay disk size in MiB [default: from config].
    #[arg(long, value_name = "MIB")]
    pub overlay_size_mib: Option<u32>,
    /// Disk bandwidth in MiB/s, 0 for none [default: from config].
    #[arg(long, value_name = "MIB")]
    pub disk_mib_per_s: Option<u32>,
    /// Disk operations per second, 0 for none [default: from config].
    #[arg(long, value_name = "IOPS")]
    pub disk_iops: Option<u32>,
    /// Network bandwidth each way in Mbit/s, 0 for none [default: from config].
    #[arg(long, value_name = "MBIT")]
    pub net_mbit_per_s: Option<u32>,
    /// Suspend the tenant after this many idle seconds, 0 for never
    /// [default: from config, watchdog.idle_suspend_after_s].
    #[arg(long, value_name = "SECS")]
    pub idle_suspend_after: Option<u32>,
    /// VMM backend for this tenant [default: from config].
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// Workload environment variable (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Run this shell command as the workload instead of the OpenClaw
    /// gateway (it must serve HTTP on the gateway port, 9000 by default).
    #[arg(long, value_name = "SHELL COMMAND")]
    pub command: Option<String>,
    /// File of KEY=VALUE secret lines for the workload (`-` reads stdin);
    /// secrets never go on the command line.
    #[arg(long, value_name = "PATH")]
    pub secrets_file: Option<PathBuf>,
    /// Restore: the tenant's disk is this `snap` archive's (its size
    /// included); tokens and secrets are made afresh, never taken from it.
    #[arg(long, value_name = "ARCHIVE")]
    pub from_snap: Option<PathBuf>,
}

/// A VMM backend name.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackendArg {
    /// Firecracker.
    Firecracker,
    /// QEMU microvm.
    Qemu,
}

/// `evict`.
#[derive(Debug, Args)]
pub struct EvictArgs {
    /// Tenant name.
    pub name: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    /// Keep the tenant's overlay disk.
    #[arg(long)]
    pub keep_overlay: bool,
}

/// `molt`.
#[derive(Debug, Args)]
pub struct MoltArgs {
    /// Only this tenant [default: all].
    pub name: Option<String>,
}

/// `tank`.
#[derive(Debug, Args)]
pub struct TankArgs {
    /// Time between refreshes of the dashboard.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub interval_ms: u64,
}

/// `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Detach and run in the background (events go to <logs_dir>/watch.log).
    #[arg(short, long)]
    pub daemon: bool,
    /// Skip host setup at start (forwarding, firewall base chains, Caddy);
    /// tenants' rules and routes are still reconciled.
    #[arg(long)]
    pub no_host_setup: bool,
}

/// `logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Tenant name (omit with --watchdog).
    pub name: Option<String>,
    /// Which log: the agent's or the workload's.
    #[arg(short, long, value_enum, default_value = "workload")]
    pub service: LogService,
    /// Keep printing new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the last lines to print.
    #[arg(short = 'n', long, default_value_t = 100)]
    pub lines: u32,
    /// The watchdog's log instead of a tenant's.
    #[arg(short, long)]
    pub watchdog: bool,
}

/// A log source inside a tenant.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogService {
    /// The in-guest agent.
    Agent,
    /// The workload (OpenClaw gateway).
    Workload,
}

/// `snap`.
#[derive(Debug, Args)]
pub struct SnapArgs {
    /// Tenant name.
    pub name: String,
    /// Archive to write [default: in the snapshots directory].
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

/// `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Tenant name.
    pub name: String,
    /// Send local stdin to the command (without it the command's stdin is closed).
    #[arg(short, long)]
    pub interactive: bool,
    /// Run the command on a terminal (needs one on stdin): raw mode, window
    /// size and resizes follow the local terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Environment variable for the command (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = key_value)]
    pub env: Vec<(String, String)>,
    /// Working directory in the guest (absolute) [default: the user's home].
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User name or uid to run as [default: root].
    #[arg(short, long)]
    pub user: Option<String>,
    /// Kill the command after this many seconds (exit status 124).
    #[arg(long, value_name = "S")]
    pub timeout: Option<u64>,
    /// Command and arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Keep the guest's numeric owners on the host (`cp NAME:SRC DST`;
    /// needs root) [default: the files are the invoking user's].
    #[arg(short = 'a', long)]
    pub preserve_owner: bool,
    /// What to copy: a local path, or NAME:PATH in a tenant's guest (write
    /// a local path holding `:` as `./a:b`).
    pub src: std::ffi::OsString,
    /// Where to copy it: NAME:PATH if SRC is local, else a local path (an
    /// existing directory receives it inside).
    pub dst: std::ffi::OsString,
}

/// `configure`.
#[derive(Debug, Args)]
pub struct ConfigureArgs {
    /// Tenant name.
    pub name: String,
    /// Set an OpenClaw config key (repeatable; all are written, then the
    /// gateway restarts once). Keys lobster manages (gateway.port, ...) are refused.
    #[arg(long, value_name = "KEY=VALUE", conflicts_with = "get")]
    pub set: Vec<String>,
    /// Print the value of an OpenClaw config key.
    #[arg(long, value_name = "KEY")]
    pub get: Option<String>,
}

/// `devices`.
#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Tenant name.
    pub name: String,
    /// What to do [default: list].
    #[command(subcommand)]
    pub action: Option<DevicesAction>,
}

/// A `devices` action.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DevicesAction {
    /// List pending pairing requests and paired devices.
    List,
    /// Approve a pending pairing request.
    Approve {
        /// The request id (from `list`).
        id: String,
    },
    /// Reject a pending pairing request.
    Reject {
        /// The request id (from `list`).
        id: String,
    },
}

/// `KEY=VALUE` as a pair (the value may hold `=`).
fn key_value(pair: &str) -> Result<(String, String), String> {
    pair.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{pair}` is not KEY=VALUE"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use lobster_core::ErrorKind;

    use super::Cli;

    /// Commands that parse but exit with `unsupported` in this version.
    const NOT_YET: [&str; 0] = [];

    #[test]
    fn help_marks_what_is_not_implemented_and_ends_with_the_exit_codes() {
        assert_eq!(crate::exit::code(ErrorKind::Unsupported), 15);
        let help = Cli::command().render_help().to_string();
        for command in Cli::command().get_subcommands() {
            let name = command.get_name();
            let about = command
                .get_about()
                .map(|a| a.to_string())
                .unwrap_or_default();
            assert_eq!(
                about.starts_with("Not yet implemented (exits 15): "),
                NOT_YET.contains(&name),
                "{name}: {about}"
            );
        }
        assert!(help.trim_end().ends_with(&crate::exit::help()), "{help}");
    }
}
