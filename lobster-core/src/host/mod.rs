//! [`Host`]: the entry point. Opened from a configuration, it reads and
//! changes the tenant registry and runs lifecycle operations.
//!
//! A `Host` is a cheap `Clone` (`Arc` inside), `Send + Sync + 'static`, and
//! holds no lock between calls: any number of processes may open the same
//! host at once; the registry's `flock` orders their changes.
//!
//! The façade on top of the layers: it hands its [`Context`] to tenant
//! operations and health, and re-exports what callers build hosts with (the
//! seams of [`crate::context`], the machine preparation of [`crate::machine`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::base::find_program;
pub use crate::context::{Context, FirewallOps, Services, VmmFactory};
pub use crate::machine::{
    init, install_files, install_unit, preflight, setup, uninit, unit_text, write_files, Daemon,
    HostChanges, InitOptions, InitReport, Outcome, Prerequisite, SetupReport, UninitOptions,
    UninitReport, UninitStep, UnitAction, API_UNIT, WATCH_UNIT,
};

use crate::agent::{Agent, ExecSession, LogFollow, LogSource, WindowSize};
use crate::base::blocking;
use crate::config::Config;
use crate::error::Result;
use crate::health::{MoltReport, Overview};
use crate::store::{ApiScope, ApiToken, TenantStatus};
use crate::tenant::openclaw::{ConfigSetReport, DevicesOp, DevicesReport};
use crate::tenant::progress::ProgressSink;
use crate::tenant::{
    CopySummary, EvictOptions, ExecRequest, HostOwner, RecoverReport, SnapReport, Tenant,
    TenantSpec,
};

/// A lobster host: its configuration and its registry.
/// The states whose logs can be read (a failed tenant's guest may still
/// answer, and its logs say why it failed).
const LOG_STATES: &[TenantStatus] = &[
    TenantStatus::Running,
    TenantStatus::Suspended,
    TenantStatus::Failed,
];
const LOG_NEEDS: &str = "running, suspended or failed";

#[derive(Debug, Clone)]
pub struct Host {
    context: Context,
    config_path: Option<Arc<Path>>,
}

/// A host hands its [`Context`] to what takes one (e.g. [`crate::health::Doctor`]).
impl AsRef<Context> for Host {
    fn as_ref(&self) -> &Context {
        &self.context
    }
}

impl Host {
    /// Opens the host described by a configuration file: `path` if given,
    /// else `$LOBSTERD_CONFIG`, else `/etc/lobsterd/config.json`.
    ///
    /// ```no_run
    /// # async fn demo() -> lobster_core::Result<()> {
    /// let host = lobster_core::Host::open(None)?;
    /// for tenant in host.list().await? {
    ///     println!("{} {}", tenant.name(), tenant.status());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn open(path: Option<&Path>) -> Result<Host> {
        let path = Config::resolve_path(path);
        let config = Config::load(&path)?;
        Ok(Host {
            context: Context::new(config),
            config_path: Some(path.into()),
        })
    }

    /// A host from a configuration already in memory (validated here).
    pub fn from_config(config: Config) -> Result<Host> {
        config.validate()?;
        Ok(Host {
            context: Context::new(config),
            config_path: None,
        })
    }

    /// A host whose lifecycle acts through `services` (fakes in tests,
    /// or real ones made for another network namespace).
    pub fn with_services(config: Config, services: Services) -> Result<Host> {
        config.validate()?;
        Ok(Host {
            context: Context::with_services(config, services),
            config_path: None,
        })
    }

    /// The system seams, made on first use (in the calling task's network
    /// namespace and runtime).
    pub async fn services(&self) -> Result<Arc<Services>> {
        self.context.services().await
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        self.context.config()
    }

    /// The file the configuration came from, if any.
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// Every tenant, sorted by name. Interrupted spawns and evicts are
    /// finished first (see [`Host::recover`]).
    pub async fn list(&self) -> Result<Vec<Tenant>> {
        self.recover_interrupted().await?;
        crate::tenant::list(&self.context).await
    }

    /// One tenant by name.
    pub async fn get(&self, name: &str) -> Result<Tenant> {
        crate::tenant::get(&self.context, name).await
    }

    /// The token clients present to a tenant's gateway.
    pub async fn token(&self, name: &str) -> Result<String> {
        Ok(self.get(name).await?.gateway_token().to_owned())
    }

    /// Creates an HTTP API token named `name` with `scope`; returns it and
    /// its secret, which is stored only as a hash and cannot be shown again.
    pub async fn create_api_token(
        &self,
        name: &str,
        scope: ApiScope,
    ) -> Result<(ApiToken, String)> {
        let store = self.context.store().clone();
        let name = name.to_owned();
        Ok(blocking(move || store.create_api_token(&name, scope)).await?)
    }

    /// Every HTTP API token (never their secrets).
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        let store = self.context.store().clone();
        Ok(blocking(move || store.api_tokens()).await?)
    }

    /// Revokes HTTP API token `id`.
    pub async fn revoke_api_token(&self, id: &str) -> Result<ApiToken> {
        let store = self.context.store().clone();
        let id = id.to_owned();
        Ok(blocking(move || store.revoke_api_token(&id)).await?)
    }

    /// The HTTP API token `presented` is, if any (compared in constant time).
    pub async fn verify_api_token(&self, presented: &str) -> Result<Option<ApiToken>> {
        let store = self.context.store().clone();
        let presented = presented.to_owned();
        Ok(blocking(move || store.verify_api_token(&presented)).await?)
    }

    /// Gives a running tenant new agent and gateway tokens; the guest
    /// refuses the old agent token and the gateway the old gateway token
    /// afterwards. Returns the tenant with its new tokens. Interrupted, it
    /// leaves a token the guest accepts recorded; running it again finishes.
    pub async fn rotate_tokens(&self, name: &str) -> Result<Tenant> {
        self.recover_interrupted().await?;
        crate::tenant::rotate_tokens(&self.context, name).await
    }

    /// Creates and starts a tenant: overlay disk, TAP, firewall rules, VM,
    /// agent, workload and route. A failure rolls back every completed step.
    pub async fn spawn(&self, spec: TenantSpec) -> Result<Tenant> {
        self.spawn_with_progress(spec, None).await
    }

    /// [`Host::spawn`], reporting each step to `progress`.
    pub async fn spawn_with_progress(
        &self,
        spec: TenantSpec,
        progress: Option<ProgressSink>,
    ) -> Result<Tenant> {
        self.recover_interrupted().await?;
        crate::tenant::spawn(&self.context, spec, progress).await
    }

    /// Removes a tenant and everything it holds (route, VM, firewall rules,
    /// TAP, overlay disk, files, registry entry). Idempotent; keeps going
    /// past failures and reports them all.
    pub async fn evict(&self, name: &str) -> Result<()> {
        self.evict_with(name, EvictOptions::default()).await
    }

    /// [`Host::evict`] with options (e.g. keep the overlay disk).
    pub async fn evict_with(&self, name: &str, options: EvictOptions) -> Result<()> {
        self.recover_interrupted().await?;
        crate::tenant::evict(&self.context, name, options).await
    }

    /// Runs [`Host::recover`] only when the registry has something to
    /// recover, so reading a healthy host never builds the system seams.
    async fn recover_interrupted(&self) -> Result<()> {
        let registry = self.context.registry().await?;
        if crate::tenant::needs_recovery(&registry) {
            crate::tenant::recover(&self.context).await?;
        }
        Ok(())
    }

    /// A client of the tenant's in-guest agent (its /30 address, its token).
    pub async fn agent(&self, name: &str) -> Result<Agent> {
        let tenant = self.get(name).await?;
        Ok(crate::tenant::agent_of(&self.context, tenant.record()))
    }

    /// The last `lines` lines of a tenant's workload or agent log,
    /// sanitised for a terminal. A suspended tenant is resumed and held
    /// awake while its log is read; one neither running, suspended nor
    /// failed (creating, evicting, stopped) is `InvalidState` at once.
    pub async fn logs(&self, name: &str, source: LogSource, lines: u32) -> Result<Vec<String>> {
        let hold =
            crate::tenant::awake_if(&self.context, name, "logs", LOG_STATES, LOG_NEEDS).await?;
        let tail = hold.agent().logs(source, lines).await;
        hold.release().await;
        Ok(tail?.lines)
    }

    /// Follows a tenant's log: the last `lines` lines, then new ones as
    /// they come ([`LogFollow::next_line`]). A suspended tenant is resumed;
    /// the tenant is held awake for as long as the stream lives.
    pub async fn follow_logs(
        &self,
        name: &str,
        source: LogSource,
        lines: u32,
    ) -> Result<LogFollow> {
        let hold =
            crate::tenant::awake_if(&self.context, name, "logs-follow", LOG_STATES, LOG_NEEDS)
                .await?;
        let follow = hold.agent().follow_logs(source, lines).await?;
        Ok(follow.keeping(hold))
    }

    /// Runs a command in a tenant's guest over its authenticated agent
    /// channel and returns the session (stdin, output, exit). A suspended
    /// tenant is resumed and held awake for as long as the session lives.
    ///
    /// # Errors
    /// `NotFound` for an unknown tenant (or an unknown command in the
    /// guest), `InvalidState` naming the state of a tenant that is neither
    /// running nor suspended.
    ///
    /// # Example
    /// ```no_run
    /// # async fn demo(host: &lobster_core::Host) -> lobster_core::Result<()> {
    /// use lobster_core::agent::{exit_status, ExecEvent};
    /// use lobster_core::tenant::ExecRequest;
    ///
    /// let request = ExecRequest::builder(["uname", "-a"]).build()?;
    /// let (input, mut output) = host.exec("alice", &request).await?.split();
    /// input.close_stdin().await?;
    /// while let Some(event) = output.next().await? {
    ///     match event {
    ///         ExecEvent::Stdout(bytes) => print!("{}", String::from_utf8_lossy(&bytes)),
    ///         ExecEvent::Stderr(bytes) => eprint!("{}", String::from_utf8_lossy(&bytes)),
    ///         ExecEvent::Exit(exit) => println!("exit status {}", exit_status(&exit)),
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn exec(&self, name: &str, request: &ExecRequest) -> Result<ExecSession> {
        crate::tenant::exec(&self.context, name, request).await
    }

    /// Copies the host file or directory `src` to `dst` in a tenant's guest
    /// (absolute; an existing directory receives it inside, as
    /// `dst/<name of src>`), with modes, numeric owners and times, over the
    /// authenticated agent channel. The guest places it atomically, or
    /// nothing. At most `copy.max_bytes` of file content. A suspended tenant
    /// is resumed and held awake while the copy runs.
    ///
    /// # Errors
    /// `InvalidArgument` for a relative `dst`, a destination the agent
    /// refuses (under `/proc`, `/sys`, `/dev`; `..`) or a copy past the
    /// cap; `NotFound` for a missing `src`, an unknown tenant or a missing
    /// parent of `dst`; `InvalidState` for a non-empty directory in the way
    /// or a tenant neither running nor suspended.
    pub async fn copy_to_guest(&self, name: &str, src: &Path, dst: &str) -> Result<CopySummary> {
        crate::tenant::copy_to_guest(&self.context, name, src, dst).await
    }

    /// Copies `src` (absolute) from a tenant's guest to host path `dst` (an
    /// existing directory receives it inside), placed atomically once the
    /// whole copy arrived, or nothing. Modes and times are kept, setuid and
    /// setgid bits dropped; `owner` decides who owns the result. At most
    /// `copy.max_bytes` of file content, enforced on both ends. A suspended
    /// tenant is resumed and held awake while the copy runs.
    ///
    /// # Errors
    /// As [`Host::copy_to_guest`]; also `InvalidArgument` for
    /// [`HostOwner::Archive`] when not running as root.
    pub async fn copy_from_guest(
        &self,
        name: &str,
        src: &str,
        dst: &Path,
        owner: HostOwner,
    ) -> Result<CopySummary> {
        crate::tenant::copy_from_guest(&self.context, name, src, dst, owner).await
    }

    /// The value of OpenClaw config key `key` in tenant `name`'s guest
    /// (`openclaw config get`: scalars bare, objects as JSON, secrets
    /// redacted). A suspended tenant is resumed and held awake meanwhile.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed or unknown key, `NotFound` for a
    /// key without a value (or an unknown tenant), `GuestFailure` when
    /// OpenClaw fails otherwise.
    pub async fn config_get(&self, name: &str, key: &str) -> Result<String> {
        crate::tenant::openclaw::config_get(&self.context, name, key).await
    }

    /// Sets OpenClaw config keys in tenant `name`'s guest (`openclaw config
    /// set KEY VALUE`, in order), then restarts its gateway once and waits
    /// until it runs with a new pid. Keys lobster owns
    /// ([`LOBSTER_OWNED_KEYS`](crate::tenant::openclaw::LOBSTER_OWNED_KEYS))
    /// and malformed settings are refused before the guest is touched.
    ///
    /// # Errors
    /// `InvalidArgument` naming the key (owned, malformed, a multi-line
    /// value, or a value OpenClaw refuses), `Timeout` when the gateway is
    /// not running again within
    /// [`RESTART_WAIT`](crate::tenant::openclaw::RESTART_WAIT).
    pub async fn config_set(
        &self,
        name: &str,
        settings: &[(String, String)],
    ) -> Result<ConfigSetReport> {
        crate::tenant::openclaw::config_set(&self.context, name, settings).await
    }

    /// Lists, approves or rejects device pairing requests of tenant
    /// `name`'s OpenClaw gateway (`openclaw devices ... --json`).
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed id, `NotFound` for a request that
    /// is not pending, `GuestFailure` when OpenClaw fails (e.g. its gateway
    /// is not up yet) or answers with something else than its JSON.
    pub async fn devices(&self, name: &str, op: &DevicesOp) -> Result<DevicesReport> {
        crate::tenant::openclaw::devices(&self.context, name, op).await
    }

    /// The exec request of OpenClaw's interactive configuration
    /// (`openclaw configure`) on a terminal of `window` cells, to run with
    /// [`Host::exec`].
    ///
    /// # Errors
    /// `InvalidArgument` for a zero-sized window.
    pub fn configure_request(&self, window: WindowSize) -> Result<ExecRequest> {
        crate::tenant::openclaw::configure_request(self.context.config(), window)
    }

    /// Writes a crash-consistent, sparse, compressed copy of a tenant's
    /// overlay disk (the VM is paused for the copy only) to `output`, or to
    /// the snapshots directory.
    pub async fn snap(&self, name: &str, output: Option<PathBuf>) -> Result<SnapReport> {
        crate::tenant::snap(&self.context, name, output).await
    }

    /// Finishes spawns and evicts whose process died midway; reports the
    /// tenants it tore down and those whose teardown failed. Every spawn,
    /// evict, list and molt does this first (and leaves a failed teardown
    /// to the tenant's `evicting` status and `last_error`).
    pub async fn recover(&self) -> Result<RecoverReport> {
        crate::tenant::recover(&self.context).await
    }

    /// Health-checks tenants (`name`, or every one that should run) and
    /// repairs what failed, in dependency order; a `failed` tenant whose
    /// checks pass afterwards is `running` again. A suspended tenant named
    /// is resumed and held awake while it is checked; without a name,
    /// suspended tenants are left alone.
    pub async fn molt(&self, name: Option<&str>) -> Result<Vec<MoltReport>> {
        self.recover_interrupted().await?;
        let hold = match name {
            Some(name) if self.get(name).await?.status() == TenantStatus::Suspended => {
                Some(crate::tenant::awake(&self.context, name, "molt").await?)
            }
            _ => None,
        };
        let doctor = crate::health::Doctor::new(&self.context).await?;
        let reports = crate::health::molt(&doctor, name).await;
        if let Some(hold) = hold {
            hold.release().await;
        }
        reports
    }

    /// The last `lines` lines of the detached watchdog's log.
    pub async fn watchdog_log(&self, lines: u32) -> Result<Vec<String>> {
        let config = self.config().clone();
        blocking(move || crate::health::log_tail(&config, lines as usize)).await
    }

    /// A snapshot of every tenant with the watchdog's view and the VMM
    /// processes' use (for dashboards).
    pub async fn overview(&self) -> Result<Overview> {
        let context = self.context.clone();
        blocking(move || crate::health::overview(&context)).await
    }

    /// Writes a running tenant's memory and device state to its snapshot
    /// directory and stops its VM; TAP, rules and route stay.
    pub async fn suspend(&self, name: &str) -> Result<Tenant> {
        self.suspend_with_progress(name, None).await
    }

    /// [`Host::suspend`], reporting each step to `progress`.
    pub async fn suspend_with_progress(
        &self,
        name: &str,
        progress: Option<ProgressSink>,
    ) -> Result<Tenant> {
        self.recover_interrupted().await?;
        crate::tenant::suspend(&self.context, name, progress).await
    }

    /// Starts a suspended tenant's VM again from its snapshot (or cold from
    /// its overlay when the snapshot cannot be loaded).
    pub async fn resume(&self, name: &str) -> Result<Tenant> {
        self.resume_with_progress(name, None).await
    }

    /// [`Host::resume`], reporting each step to `progress`.
    pub async fn resume_with_progress(
        &self,
        name: &str,
        progress: Option<ProgressSink>,
    ) -> Result<Tenant> {
        self.recover_interrupted().await?;
        crate::tenant::resume(&self.context, name, progress).await
    }
}
