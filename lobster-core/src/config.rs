//! Host configuration: `/etc/lobsterd/config.json` by default.
//!
//! Every field has a default, so `{}` is a valid file. Unknown fields are
//! rejected, and every error names the file, the field path and the reason.
//! Relative paths inside the file are resolved against the file's directory,
//! so a test or an unprivileged user can run against a temporary root.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::{Classify, ErrorKind};

mod host_ids;

pub use host_ids::{IdDatabases, IdEntry};

/// Where the configuration is read from when nothing else is named.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/lobsterd/config.json";
/// The environment variable that names another configuration file.
pub const CONFIG_ENV: &str = "LOBSTERD_CONFIG";

/// Errors loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// There is no configuration file: the host is not initialised.
    #[error(
        "no configuration at {}: run `lobsterd init` to create it \
         (or name another with --config or ${CONFIG_ENV})",
        path.display()
    )]
    Missing {
        /// The file looked for.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON or a field has the wrong shape.
    #[error("config file {path}: field `{field}`: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The dotted path of the offending field (`.` for the whole document).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A value parsed but is out of range or inconsistent.
    #[error("{}field `{field}`: {reason}", path.as_ref().map(|p| format!("config file {}: ", p.display())).unwrap_or_default())]
    Invalid {
        /// The file, when the config came from one.
        path: Option<PathBuf>,
        /// The dotted path of the offending field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The file could not be written (by `init`).
    #[error("cannot write config file {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    /// The same error, naming the file it came from.
    pub fn in_file(self, file: &Path) -> ConfigError {
        match self {
            ConfigError::Parse { field, reason, .. } => ConfigError::Parse {
                path: file.to_path_buf(),
                field,
                reason,
            },
            ConfigError::Invalid { field, reason, .. } => ConfigError::Invalid {
                path: Some(file.to_path_buf()),
                field,
                reason,
            },
            other => other,
        }
    }
}

impl Classify for ConfigError {
    fn kind(&self) -> ErrorKind {
        match self {
            ConfigError::Read { source, .. } | ConfigError::Write { source, .. } => {
                ErrorKind::from_io(source)
            }
            ConfigError::Parse { .. } | ConfigError::Invalid { .. } => ErrorKind::InvalidArgument,
            ConfigError::Missing { .. } => ErrorKind::NotFound,
        }
    }
}

/// The whole host configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Tenants are routed at `<name>.<domain>`.
    pub domain: String,
    /// Sizes a tenant gets unless its spec says otherwise.
    pub tenant_defaults: TenantDefaults,
    /// Tenant address pool and ports.
    pub network: NetworkConfig,
    /// The Caddy reverse proxy.
    pub proxy: ProxyConfig,
    /// Files and directories.
    pub paths: PathsConfig,
    /// How much disk the tenants' overlays may claim.
    pub storage: StorageConfig,
    /// The virtual machine monitor.
    pub vmm: VmmConfig,
    /// The health checks, repairs and the `watch` daemon.
    pub watchdog: WatchdogConfig,
    /// Suspending tenants to disk and waking them.
    pub suspend: SuspendConfig,
    /// Copying files to and from guests (`lobsterd cp`).
    pub copy: CopyConfig,
    /// The HTTP API (`lobsterd serve`).
    pub api: ApiConfig,
}

/// The HTTP API (`lobsterd serve`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Its unix socket (absolute), in a directory of its own: `serve` makes
    /// that directory root:`socket_gid` 0710.
    pub socket: PathBuf,
    /// The group that may connect to the socket besides root (0: root only).
    pub socket_gid: u32,
    /// Also serve over TCP on this address, always with TLS (`tls_cert`,
    /// `tls_key`); `None`: the unix socket only.
    pub listen: Option<std::net::SocketAddr>,
    /// PEM certificate chain for `listen`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `listen` (keep it root-only).
    pub tls_key: Option<PathBuf>,
    /// Requests per second each token may make, sustained (at least 1).
    pub rate_per_s: u32,
    /// Requests each token may make at once after a quiet spell (at least 1).
    pub rate_burst: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            socket: PathBuf::from("/run/lobsterd-api/api.sock"),
            socket_gid: 0,
            listen: None,
            tls_cert: None,
            tls_key: None,
            rate_per_s: 50,
            rate_burst: 100,
        }
    }
}

/// Copying files to and from guests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CopyConfig {
    /// The most file content one copy may move, in bytes (at least 1):
    /// sent to the agent as the copy's limit and enforced by the host too.
    pub max_bytes: u64,
}

impl Default for CopyConfig {
    fn default() -> Self {
        CopyConfig { max_bytes: 1 << 30 }
    }
}

/// Suspending tenants to disk and waking them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuspendConfig {
    /// How long before its workload's next scheduled job a suspended tenant
    /// is woken, in seconds.
    pub wake_ahead_s: u64,
}

impl Default for SuspendConfig {
    fn default() -> Self {
        SuspendConfig { wake_ahead_s: 15 }
    }
}

/// How the watchdog checks and repairs tenants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchdogConfig {
    /// Time between the starts of two ticks.
    pub interval_ms: u64,
    /// Tenants checked (and repaired) at once.
    pub max_concurrency: usize,
    /// Bound of each probe (VMM API, agent, workload) in a check.
    pub probe_timeout_ms: u64,
    /// Repairs tried before a tenant is marked failed.
    pub max_repair_attempts: u32,
    /// Wait before the second repair; doubled for each further one.
    pub backoff_base_ms: u64,
    /// The longest wait between repairs.
    pub backoff_max_ms: u64,
    /// How long a repaired tenant must stay healthy before its repair
    /// count is forgotten (a tenant that keeps breaking reaches `failed`).
    pub cooldown_ms: u64,
    /// Suspend a running tenant once it has been idle this long (no
    /// connection to its gateway, no hold, no scheduled job due within
    /// `suspend.wake_ahead_s`); 0: never (a tenant's own setting wins).
    pub idle_suspend_after_s: u32,
    /// After a scheduled wake, how long the tenant is not suspended again
    /// (its job gets to start).
    pub scheduled_wake_grace_s: u32,
}

/// Per-tenant sizes used when a spawn does not name them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantDefaults {
    /// Virtual CPUs (1..=32).
    pub vcpus: u8,
    /// Guest memory in MiB (128..=262144).
    pub memory_mib: u32,
    /// Size of the sparse writable overlay disk in MiB (64..=1048576).
    pub overlay_size_mib: u32,
    /// Disk and network rates.
    pub limits: TenantLimits,
}

/// A tenant's disk and network rates; 0 turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct TenantLimits {
    /// Bandwidth of each of its disks (reads plus writes), MiB/s (0..=100000).
    pub disk_mib_per_s: u32,
    /// I/O operations per second on each of its disks (0..=1000000).
    pub disk_iops: u32,
    /// Network bandwidth each way, Mbit/s (0..=100000).
    pub net_mbit_per_s: u32,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits {
            disk_mib_per_s: 100,
            disk_iops: 5000,
            net_mbit_per_s: 200,
        }
    }
}

impl TenantLimits {
    /// No limit at all.
    pub const UNLIMITED: TenantLimits = TenantLimits {
        disk_mib_per_s: 0,
        disk_iops: 0,
        net_mbit_per_s: 0,
    };

    /// The first value out of range, as (field under `limits`, reason).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (field, value, max) in [
            ("disk_mib_per_s", self.disk_mib_per_s, 100_000),
            ("disk_iops", self.disk_iops, 1_000_000),
            ("net_mbit_per_s", self.net_mbit_per_s, 100_000),
        ] {
            if value > max {
                return Err((field, format!("{value} is not in 0..={max} (0: no limit)")));
            }
        }
        Ok(())
    }

    /// Disk bytes per second, `None` when unlimited.
    pub fn disk_bytes_per_s(&self) -> Option<u64> {
        (self.disk_mib_per_s > 0).then(|| u64::from(self.disk_mib_per_s) << 20)
    }

    /// Disk operations per second, `None` when unlimited.
    pub fn disk_ops_per_s(&self) -> Option<u64> {
        (self.disk_iops > 0).then(|| u64::from(self.disk_iops))
    }

    /// Network bits per second each way, `None` when unlimited.
    pub fn net_bits_per_s(&self) -> Option<u64> {
        (self.net_mbit_per_s > 0).then(|| u64::from(self.net_mbit_per_s) * 1_000_000)
    }
}

/// Tenant addressing: every tenant owns one /30 of `pool` and one slot in
/// each of the other ranges; a slot freed by evict is reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// IPv4 pool carved into /30s, in CIDR notation (prefix at most /30).
    pub pool: String,
    /// TCP port of the workload (OpenClaw gateway) inside each guest.
    pub gateway_port: u16,
    /// First host port handed to tenants (one per tenant, for optional DNAT).
    pub host_port_base: u16,
    /// TCP port of the agent's RPC endpoint inside each guest.
    pub agent_port: u16,
    /// TCP port of the agent's health endpoint inside each guest.
    pub health_port: u16,
    /// Connections a tenant may have tracked at once, counted separately for
    /// connections the guest opens and connections to its gateway; beyond
    /// it new connections are refused and existing ones keep flowing.
    pub max_connections: u32,
    /// Destinations (IPv4 CIDRs) guests may reach although the default deny
    /// (IANA special-purpose ranges, the host's connected subnets) covers
    /// them. Never overrides `egress_deny` or the tenant pool.
    pub egress_allow: Vec<String>,
    /// Destinations (IPv4 CIDRs) guests may never reach.
    pub egress_deny: Vec<String>,
}

/// The Caddy instance that routes `<name>.<domain>` to tenants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Caddy's admin API: an absolute path is a unix socket (reachable only
    /// through its private directory), `ip:port` a loopback TCP address
    /// (open to every local user: only for an operator-managed Caddy).
    pub admin_address: String,
    /// The unprivileged system user lobster runs its own Caddy as (`init`
    /// creates it when missing).
    pub user: String,
    /// Caddy's private directory (owned by `user`, mode 0700): its data
    /// (certificates, the local CA), its config and the admin socket.
    pub caddy_dir: PathBuf,
    /// Addresses the lobster server listens on. With `automatic_https`, an
    /// HTTPS port (`:443`); Caddy then answers plain HTTP on `:80` with a
    /// redirect.
    pub listen: Vec<String>,
    /// Name of the HTTP server lobster owns inside Caddy's config; tenant
    /// route ids are `<server_name>-<tenant>`.
    pub server_name: String,
    /// Let Caddy obtain certificates for tenant hosts and redirect HTTP to
    /// HTTPS. `false` serves plain HTTP on every listen address.
    pub automatic_https: bool,
    /// Who issues the certificates of tenant hosts.
    pub tls_issuer: TlsIssuer,
    /// How long a request keeps retrying the guest's gateway while the guest
    /// starts or resumes, in milliseconds (Caddy `try_duration`; 0: no retry).
    pub upstream_retry_ms: u64,
    /// Bound on every call to Caddy's admin API, in milliseconds.
    pub admin_timeout_ms: u64,
}

/// Who issues the certificates of tenant hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsIssuer {
    /// Caddy's local CA (one per host, never added to the system trust
    /// store; `lobsterd ca` prints its root).
    Internal,
    /// Caddy's default: ACME (Let's Encrypt, ZeroSSL) for a public domain
    /// whose names resolve to this host, the local CA for other names.
    Acme,
}

/// Files and directories. Relative paths resolve against the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathsConfig {
    /// Root of lobster's state (registry, lock).
    pub state_dir: PathBuf,
    /// Guest kernel (uncompressed `vmlinux` for Firecracker, `vmlinuz` works for QEMU).
    pub kernel: PathBuf,
    /// Guest initramfs (loads modules and assembles the overlay root).
    pub initrd: PathBuf,
    /// Shared read-only base root filesystem image.
    pub rootfs: PathBuf,
    /// Per-tenant overlay disks.
    pub overlays_dir: PathBuf,
    /// VMM API / QMP sockets.
    pub sockets_dir: PathBuf,
    /// Suspend snapshots and `snap` archives.
    pub snapshots_dir: PathBuf,
    /// VM console and VMM logs.
    pub logs_dir: PathBuf,
    /// The wake listeners of suspended tenants (`<id>.sock`, reachable by
    /// root and `proxy.user` only).
    pub wake_dir: PathBuf,
}

/// How much disk the tenants' overlays may claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Overlays are sparse: spawn refuses a new one unless the full sizes of
    /// all overlays fit in this percentage of the space they can use on the
    /// filesystem of `paths.overlays_dir` (its free space plus what they have
    /// written). 100: every overlay can always grow to its full size.
    pub overlay_overcommit_percent: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            overlay_overcommit_percent: 100,
        }
    }
}

/// Which VMM runs tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Firecracker where it and a working KVM exist, else QEMU.
    Auto,
    /// Firecracker (with the jailer when enabled).
    Firecracker,
    /// QEMU's `microvm` machine (KVM when it works, TCG otherwise).
    Qemu,
}

impl Backend {
    /// The backend this choice names; `None` for `auto` (decided per host).
    pub fn kind(self) -> Option<BackendKind> {
        match self {
            Backend::Auto => None,
            Backend::Firecracker => Some(BackendKind::Firecracker),
            Backend::Qemu => Some(BackendKind::Qemu),
        }
    }
}

/// Which backend runs a VM (a [`Backend`] choice once `auto` is decided).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Firecracker.
    Firecracker,
    /// QEMU microvm.
    Qemu,
}

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Accel {
    /// KVM if a probe guest really runs, else TCG.
    Auto,
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg,
}

/// VMM selection and per-backend settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmmConfig {
    /// Backend for new tenants.
    pub backend: Backend,
    /// Firecracker settings.
    pub firecracker: FirecrackerConfig,
    /// QEMU settings.
    pub qemu: QemuConfig,
    /// First uid/gid handed to tenants' VMM processes (one per tenant).
    pub uid_base: u32,
    /// Each VMM's cgroup is `<cgroup_parent>/<tenant>` under the mount of
    /// each controller (memory, cpu, pids; v2 where the host offers it,
    /// else v1); relative.
    pub cgroup_parent: PathBuf,
    /// Bound on how long a VMM may take to become ready, in milliseconds.
    pub ready_timeout_ms: u64,
    /// Bound on each VMM API call (Firecracker HTTP, QMP), in milliseconds.
    pub call_timeout_ms: u64,
    /// Bound on writing or loading a snapshot, in milliseconds.
    pub snapshot_timeout_ms: u64,
    /// Cap on each VM's console log file in bytes (at least 65536); the
    /// oldest output is dropped beyond it.
    pub console_log_max_bytes: u64,
}

/// Firecracker's log level (`PUT /logger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirecrackerLogLevel {
    /// No logger is configured.
    Off,
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warning,
    /// Informational messages too.
    Info,
    /// Debug output.
    Debug,
}

/// Firecracker and its jailer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FirecrackerConfig {
    /// The `firecracker` binary (a bare name is looked up on PATH).
    pub binary: PathBuf,
    /// The `jailer` binary.
    pub jailer: PathBuf,
    /// Run Firecracker under the jailer (chroot, own uid, cgroups).
    pub use_jailer: bool,
    /// The jailer's chroot base directory (on the filesystem of the images,
    /// overlays and snapshots: files are hard-linked into each chroot).
    pub chroot_base: PathBuf,
    /// Firecracker's log level; its log goes to the VM's console log.
    pub log_level: FirecrackerLogLevel,
    /// Flush Firecracker metrics to `<console log>.metrics.json`.
    pub metrics: bool,
    /// Give guests a virtio-rng entropy device.
    pub entropy: bool,
    /// Give guests a memory balloon (deflates on guest OOM).
    pub balloon: bool,
    /// Memory allowed to each Firecracker cgroup beyond guest memory, in MiB
    /// (the jailer's `memory.max` is guest memory plus this).
    pub memory_overhead_mib: u32,
}

/// QEMU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QemuConfig {
    /// The `qemu-system-x86_64` binary (a bare name is looked up on PATH).
    pub binary: PathBuf,
    /// Accelerator.
    pub accel: Accel,
    /// TCG translation cache size in MiB (bounds host memory per guest).
    pub tcg_tb_size_mib: u32,
    /// Memory allowed to each QEMU cgroup beyond guest memory, in MiB
    /// (QEMU itself, its TCG translation cache, its I/O buffers).
    pub memory_overhead_mib: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            domain: "lobster.local".into(),
            tenant_defaults: TenantDefaults::default(),
            network: NetworkConfig::default(),
            proxy: ProxyConfig::default(),
            paths: PathsConfig::default(),
            storage: StorageConfig::default(),
            vmm: VmmConfig::default(),
            watchdog: WatchdogConfig::default(),
            suspend: SuspendConfig::default(),
            copy: CopyConfig::default(),
            api: ApiConfig::default(),
        }
    }
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            interval_ms: 10_000,
            max_concurrency: 8,
            probe_timeout_ms: 5_000,
            max_repair_attempts: 3,
            backoff_base_ms: 5_000,
            backoff_max_ms: 60_000,
            cooldown_ms: 60_000,
            idle_suspend_after_s: 0,
            scheduled_wake_grace_s: 60,
        }
    }
}

impl Default for TenantDefaults {
    fn default() -> Self {
        TenantDefaults {
            vcpus: 2,
            memory_mib: 1024,
            overlay_size_mib: 4096,
            limits: TenantLimits::default(),
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            pool: "10.200.0.0/16".into(),
            gateway_port: 9000,
            host_port_base: 20000,
            agent_port: 52,
            health_port: 53,
            max_connections: 256,
            egress_allow: Vec::new(),
            egress_deny: Vec::new(),
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            admin_address: "/var/lib/lobster-caddy/admin.sock".into(),
            user: "lobster-caddy".into(),
            caddy_dir: PathBuf::from("/var/lib/lobster-caddy"),
            listen: vec![":443".into()],
            server_name: "lobster".into(),
            automatic_https: true,
            tls_issuer: TlsIssuer::Internal,
            upstream_retry_ms: 30_000,
            admin_timeout_ms: 5_000,
        }
    }
}

impl Default for PathsConfig {
    fn default() -> Self {
        let state = PathBuf::from("/var/lib/lobsterd");
        PathsConfig {
            kernel: state.join("images/vmlinux"),
            initrd: state.join("images/initramfs.cpio.gz"),
            rootfs: state.join("images/rootfs.ext4"),
            overlays_dir: state.join("overlays"),
            sockets_dir: PathBuf::from("/run/lobsterd"),
            snapshots_dir: state.join("snapshots"),
            logs_dir: PathBuf::from("/var/log/lobsterd"),
            wake_dir: PathBuf::from("/run/lobsterd-wake"),
            state_dir: state,
        }
    }
}

impl Default for VmmConfig {
    fn default() -> Self {
        VmmConfig {
            backend: Backend::Auto,
            firecracker: FirecrackerConfig::default(),
            qemu: QemuConfig::default(),
            uid_base: 10000,
            cgroup_parent: "lobster".into(),
            ready_timeout_ms: 10_000,
            call_timeout_ms: 5_000,
            snapshot_timeout_ms: 120_000,
            console_log_max_bytes: 8 << 20,
        }
    }
}

impl Default for FirecrackerConfig {
    fn default() -> Self {
        FirecrackerConfig {
            binary: "firecracker".into(),
            jailer: "jailer".into(),
            use_jailer: true,
            chroot_base: "/srv/jailer".into(),
            log_level: FirecrackerLogLevel::Warning,
            metrics: false,
            entropy: true,
            balloon: false,
            memory_overhead_mib: 128,
        }
    }
}

impl Default for QemuConfig {
    fn default() -> Self {
        QemuConfig {
            binary: "qemu-system-x86_64".into(),
            accel: Accel::Auto,
            tcg_tb_size_mib: 32,
            memory_overhead_mib: 256,
        }
    }
}

/// An IPv4 network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The network address (host bits zero).
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// Parses `a.b.c.d/n`; host bits must be zero.
    pub fn parse(text: &str) -> Result<Ipv4Cidr, String> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not in a.b.c.d/n form"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("`{prefix}` is not a prefix length 0..=32"))?;
        let cidr = Ipv4Cidr { addr, prefix };
        if u32::from(addr) & !cidr.mask() != 0 {
            return Err(format!("`{text}` has host bits set"));
        }
        Ok(cidr)
    }

    /// The netmask as a number.
    pub fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// How many addresses the network holds.
    pub fn size(self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// The network of `prefix` bits that holds `addr` (host bits cleared).
    pub fn containing(addr: Ipv4Addr, prefix: u8) -> Ipv4Cidr {
        let prefix = prefix.min(32);
        let cidr = Ipv4Cidr { addr, prefix };
        Ipv4Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & cidr.mask()),
            prefix,
        }
    }

    /// Whether every address of `other` lies in this network.
    pub fn contains(self, other: Ipv4Cidr) -> bool {
        self.prefix <= other.prefix && u32::from(other.addr) & self.mask() == u32::from(self.addr)
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Config {
    /// The file named by `explicit`, else `$LOBSTERD_CONFIG`, else the default.
    pub fn resolve_path(explicit: Option<&Path>) -> PathBuf {
        explicit
            .map(Path::to_path_buf)
            .or_else(|| {
                std::env::var_os(CONFIG_ENV)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ConfigError::Missing {
                path: path.to_path_buf(),
            },
            _ => ConfigError::Read {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let mut config = Config::from_json(&text).map_err(|e| e.in_file(path))?;
        config
            .check_host_ids(&IdDatabases::default())
            .map_err(|e| e.in_file(path))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.paths.resolve_relative(base);
        Ok(config)
    }

    /// Parses and validates configuration text (paths are left as written).
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            // `?` is serde_path_to_error's "no field yet" (a syntax error).
            let field = match e.path().to_string() {
                f if f == "?" => ".".to_owned(),
                f => f,
            };
            ConfigError::Parse {
                path: PathBuf::new(),
                field,
                reason: e.into_inner().to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Pretty JSON with every field, as `init` writes it.
    pub fn to_json_pretty(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("config serialises");
        text.push('\n');
        text
    }

    /// The tenant address pool.
    pub fn pool(&self) -> Ipv4Cidr {
        Ipv4Cidr::parse(&self.network.pool).expect("validated at load")
    }

    /// How many tenants fit: the smallest of the /30 count, the host port
    /// range and the uid range.
    pub fn capacity(&self) -> u32 {
        let subnets = self.pool().size() / 4;
        let ports = 65536 - u64::from(self.network.host_port_base);
        let uids = u64::from(u32::MAX - self.vmm.uid_base);
        subnets.min(ports).min(uids).min(u64::from(u32::MAX)) as u32
    }

    /// The uids (and gids) tenants' VMMs may run as: `uid_base` plus one
    /// per tenant slot.
    pub fn tenant_id_range(&self) -> std::ops::Range<u64> {
        let base = u64::from(self.vmm.uid_base);
        base..base + u64::from(self.capacity())
    }

    /// Fails when [`Config::tenant_id_range`] holds an id the host already
    /// uses (a user, a group or a subordinate id range in `databases`),
    /// naming the entry.
    pub fn check_host_ids(&self, databases: &IdDatabases) -> Result<(), ConfigError> {
        let range = self.tenant_id_range();
        match host_ids::first_overlap(&databases.entries()?, &range) {
            None => Ok(()),
            Some(entry) => Err(ConfigError::Invalid {
                path: None,
                field: "vmm.uid_base",
                reason: format!(
                    "tenant ids {}..={} overlap {}; choose a uid_base whose range no user, group or subordinate id range uses",
                    range.start,
                    range.end - 1,
                    entry.what
                ),
            }),
        }
    }

    /// Checks ranges and consistency; errors name the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: String| {
            Err(ConfigError::Invalid {
                path: None,
                field,
                reason,
            })
        };
        if let Err(reason) = crate::store::name::validate_domain(&self.domain) {
            return invalid("domain", reason);
        }
        let d = &self.tenant_defaults;
        if !(1..=32).contains(&d.vcpus) {
            return invalid(
                "tenant_defaults.vcpus",
                format!("{} is not in 1..=32", d.vcpus),
            );
        }
        if !(128..=262_144).contains(&d.memory_mib) {
            return invalid(
                "tenant_defaults.memory_mib",
                format!("{} is not in 128..=262144", d.memory_mib),
            );
        }
        if !(64..=1_048_576).contains(&d.overlay_size_mib) {
            return invalid(
                "tenant_defaults.overlay_size_mib",
                format!("{} is not in 64..=1048576", d.overlay_size_mib),
            );
        }
        if let Err((field, reason)) = d.limits.check() {
            let field = match field {
                "disk_mib_per_s" => "tenant_defaults.limits.disk_mib_per_s",
                "disk_iops" => "tenant_defaults.limits.disk_iops",
                _ => "tenant_defaults.limits.net_mbit_per_s",
            };
            return invalid(field, reason);
        }
        let n = &self.network;
        match Ipv4Cidr::parse(&n.pool) {
            Err(reason) => return invalid("network.pool", reason),
            Ok(pool) if pool.prefix > 30 => {
                return invalid(
                    "network.pool",
                    format!("/{} holds no /30; use /30 or wider", pool.prefix),
                )
            }
            Ok(_) => {}
        }
        for (field, port) in [
            ("network.gateway_port", n.gateway_port),
            ("network.host_port_base", n.host_port_base),
            ("network.agent_port", n.agent_port),
            ("network.health_port", n.health_port),
        ] {
            if port == 0 {
                return invalid(field, "port 0 is not allowed".into());
            }
        }
        if n.agent_port == n.health_port || n.agent_port == n.gateway_port {
            return invalid(
                "network.agent_port",
                "must differ from health_port and gateway_port".into(),
            );
        }
        if n.max_connections == 0 {
            return invalid("network.max_connections", "must be at least 1".into());
        }
        if self.copy.max_bytes == 0 {
            return invalid("copy.max_bytes", "must be at least 1".into());
        }
        let api = &self.api;
        if !api.socket.is_absolute() {
            return invalid(
                "api.socket",
                format!("{} is not an absolute path", api.socket.display()),
            );
        }
        let p = &self.paths;
        let shared = [
            &p.state_dir,
            &p.overlays_dir,
            &p.sockets_dir,
            &p.snapshots_dir,
            &p.logs_dir,
            &p.wake_dir,
        ];
        if let Some(dir) = api
            .socket
            .parent()
            .filter(|d| shared.contains(&&d.to_path_buf()))
        {
            return invalid(
                "api.socket",
                format!(
                    "{} is in {}, a directory lobster uses for other files: the API socket needs a directory of its own",
                    api.socket.display(),
                    dir.display()
                ),
            );
        }
        if api.listen.is_some() {
            for (field, path) in [
                ("api.tls_cert", &api.tls_cert),
                ("api.tls_key", &api.tls_key),
            ] {
                match path {
                    None => {
                        return invalid(
                            field,
                            "is required with api.listen: the API is served over TCP only with TLS"
                                .into(),
                        )
                    }
                    Some(p) if !p.is_absolute() => {
                        return invalid(field, format!("{} is not an absolute path", p.display()))
                    }
                    Some(_) => {}
                }
            }
        }
        if api.rate_per_s == 0 || api.rate_burst == 0 {
            return invalid(
                if api.rate_per_s == 0 {
                    "api.rate_per_s"
                } else {
                    "api.rate_burst"
                },
                "must be at least 1".into(),
            );
        }
        for (field, list) in [
            ("network.egress_allow", &n.egress_allow),
            ("network.egress_deny", &n.egress_deny),
        ] {
            for cidr in list {
                if let Err(reason) = Ipv4Cidr::parse(cidr) {
                    return invalid(field, reason);
                }
            }
        }
        let admin = &self.proxy.admin_address;
        if admin.starts_with('/') {
            // sun_path holds 108 bytes with the terminating NUL.
            if admin.len() > 107 {
                return invalid(
                    "proxy.admin_address",
                    format!("socket path `{admin}` is longer than 107 bytes"),
                );
            }
        } else if !admin
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
        {
            return invalid(
                "proxy.admin_address",
                format!("`{admin}` is neither an absolute socket path nor a loopback ip:port"),
            );
        }
        if self.proxy.user.is_empty()
            || self.proxy.user == "root"
            || !self
                .proxy
                .user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return invalid(
                "proxy.user",
                format!(
                    "`{}` is not an unprivileged user name (letters, digits, `-`, `_`; not root)",
                    self.proxy.user
                ),
            );
        }
        if !self.proxy.caddy_dir.is_absolute() {
            return invalid("proxy.caddy_dir", "must be an absolute path".into());
        }
        if self.proxy.listen.is_empty() {
            return invalid("proxy.listen", "needs at least one address".into());
        }
        if self.proxy.server_name.is_empty()
            || !self
                .proxy
                .server_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return invalid(
                "proxy.server_name",
                "must be non-empty letters, digits, `-` or `_`".into(),
            );
        }
        if self.proxy.admin_timeout_ms == 0 {
            return invalid("proxy.admin_timeout_ms", "must be at least 1".into());
        }
        let overcommit = self.storage.overlay_overcommit_percent;
        if !(1..=100_000).contains(&overcommit) {
            return invalid(
                "storage.overlay_overcommit_percent",
                format!("{overcommit} is not in 1..=100000"),
            );
        }
        let parent = &self.vmm.cgroup_parent;
        if parent.as_os_str().is_empty()
            || !parent
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            return invalid(
                "vmm.cgroup_parent",
                format!(
                    "{} must be a relative path without `..`, such as lobster",
                    parent.display()
                ),
            );
        }
        if self.vmm.uid_base == 0 {
            return invalid(
                "vmm.uid_base",
                "uid 0 is root; use an unused range such as 10000".into(),
            );
        }
        for (field, value) in [
            ("vmm.ready_timeout_ms", self.vmm.ready_timeout_ms),
            ("vmm.call_timeout_ms", self.vmm.call_timeout_ms),
            ("vmm.snapshot_timeout_ms", self.vmm.snapshot_timeout_ms),
        ] {
            if value == 0 {
                return invalid(field, "must be at least 1".into());
            }
        }
        if self.vmm.console_log_max_bytes < 65_536 {
            return invalid(
                "vmm.console_log_max_bytes",
                format!("{} is below 65536", self.vmm.console_log_max_bytes),
            );
        }
        if !(1..=4096).contains(&self.vmm.qemu.tcg_tb_size_mib) {
            return invalid(
                "vmm.qemu.tcg_tb_size_mib",
                format!("{} is not in 1..=4096", self.vmm.qemu.tcg_tb_size_mib),
            );
        }
        let w = &self.watchdog;
        for (field, value) in [
            ("watchdog.interval_ms", w.interval_ms),
            ("watchdog.max_concurrency", w.max_concurrency as u64),
            ("watchdog.probe_timeout_ms", w.probe_timeout_ms),
            (
                "watchdog.max_repair_attempts",
                u64::from(w.max_repair_attempts),
            ),
        ] {
            if value == 0 {
                return invalid(field, "must be at least 1".into());
            }
        }
        if w.backoff_max_ms < w.backoff_base_ms {
            return invalid(
                "watchdog.backoff_max_ms",
                format!(
                    "{} is below backoff_base_ms ({})",
                    w.backoff_max_ms, w.backoff_base_ms
                ),
            );
        }
        Ok(())
    }
}

impl PathsConfig {
    /// Every path under one root directory (for tests and unprivileged use).
    pub fn under(root: &Path) -> PathsConfig {
        PathsConfig {
            state_dir: root.to_path_buf(),
            kernel: root.join("images/vmlinux"),
            initrd: root.join("images/initramfs.cpio.gz"),
            rootfs: root.join("images/rootfs.ext4"),
            overlays_dir: root.join("overlays"),
            sockets_dir: root.join("run"),
            snapshots_dir: root.join("snapshots"),
            logs_dir: root.join("logs"),
            wake_dir: root.join("wake"),
        }
    }

    fn resolve_relative(&mut self, base: &Path) {
        for path in [
            &mut self.state_dir,
            &mut self.kernel,
            &mut self.initrd,
            &mut self.rootfs,
            &mut self.overlays_dir,
            &mut self.sockets_dir,
            &mut self.snapshots_dir,
            &mut self.logs_dir,
            &mut self.wake_dir,
        ] {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// The tenant registry file.
    pub fn registry(&self) -> PathBuf {
        self.state_dir.join("registry.json")
    }
}
