//! `TenantSpec`: what a caller asks for when spawning a tenant, validated
//! when built so a bad value fails before anything is touched.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{Backend, Config, TenantLimits};
use crate::store::name::validate_tenant_name;
use crate::store::{NewTenant, Resources, Workload};
use crate::vmm::VmIdentity;

use super::TenantError;

/// A validated request for a new tenant. Unset sizes follow the host's
/// `tenant_defaults`.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantSpec {
    name: String,
    vcpus: Option<u8>,
    memory_mib: Option<u32>,
    overlay_size_mib: Option<u32>,
    backend: Option<Backend>,
    disk_mib_per_s: Option<u32>,
    disk_iops: Option<u32>,
    net_mbit_per_s: Option<u32>,
    idle_suspend_after_s: Option<u32>,
    env: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    command: Vec<String>,
    from_snap: Option<PathBuf>,
}

/// Builds a [`TenantSpec`]; [`TenantSpecBuilder::build`] validates.
#[derive(Debug, Clone)]
pub struct TenantSpecBuilder {
    spec: TenantSpec,
}

impl TenantSpec {
    /// Starts a spec for a tenant called `name`.
    ///
    /// ```
    /// use lobster_core::tenant::TenantSpec;
    /// let spec = TenantSpec::builder("alice").vcpus(1).memory_mib(512).build().unwrap();
    /// assert_eq!(spec.name(), "alice");
    /// assert!(TenantSpec::builder("Alice").build().is_err());
    /// ```
    pub fn builder(name: impl Into<String>) -> TenantSpecBuilder {
        TenantSpecBuilder {
            spec: TenantSpec {
                name: name.into(),
                vcpus: None,
                memory_mib: None,
                overlay_size_mib: None,
                backend: None,
                disk_mib_per_s: None,
                disk_iops: None,
                net_mbit_per_s: None,
                idle_suspend_after_s: None,
                env: BTreeMap::new(),
                secrets: BTreeMap::new(),
                command: Vec::new(),
                from_snap: None,
            },
        }
    }

    /// The tenant name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Environment variables for the workload (not secret).
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// Secrets for the workload (API keys); never logged or printed.
    pub fn secrets(&self) -> &BTreeMap<String, String> {
        &self.secrets
    }

    /// Sizes, rates and backend with the host's defaults filled in.
    pub fn resources(&self, config: &Config) -> Resources {
        let d = &config.tenant_defaults;
        Resources {
            vcpus: self.vcpus.unwrap_or(d.vcpus),
            memory_mib: self.memory_mib.unwrap_or(d.memory_mib),
            overlay_size_mib: self.overlay_size_mib.unwrap_or(d.overlay_size_mib),
            backend: self.backend,
            limits: Some(TenantLimits {
                disk_mib_per_s: self.disk_mib_per_s.unwrap_or(d.limits.disk_mib_per_s),
                disk_iops: self.disk_iops.unwrap_or(d.limits.disk_iops),
                net_mbit_per_s: self.net_mbit_per_s.unwrap_or(d.limits.net_mbit_per_s),
            }),
            idle_suspend_after_s: self.idle_suspend_after_s,
        }
    }

    /// The workload's argv; empty means the OpenClaw gateway.
    pub fn command(&self) -> &[String] {
        &self.command
    }

    /// The `snap` archive whose disk the tenant gets instead of a blank
    /// overlay, if it is a restore.
    pub fn from_snap(&self) -> Option<&Path> {
        self.from_snap.as_deref()
    }

    /// This spec restoring a disk of `disk_mib`: the overlay takes the
    /// disk's size; a spec that asked for another size is refused (a
    /// restored disk is neither shrunk nor grown).
    pub(crate) fn restoring(&self, disk_mib: u32) -> Result<TenantSpec, TenantError> {
        match self.overlay_size_mib {
            Some(asked) if asked != disk_mib => Err(TenantError::InvalidSpec {
                field: "overlay_size_mib",
                reason: format!(
                    "{asked} differs from the {disk_mib} MiB disk of the snap archive (from_snap); \
                     a restored tenant keeps its disk's size"
                ),
            }),
            _ => Ok(TenantSpec {
                overlay_size_mib: Some(disk_mib),
                ..self.clone()
            }),
        }
    }

    /// What the registry records for this spec, created by `owner`.
    pub fn to_new_tenant(&self, config: &Config, owner: Option<VmIdentity>) -> NewTenant {
        NewTenant {
            name: self.name.clone(),
            resources: self.resources(config),
            workload: Workload {
                command: self.command.clone(),
                env: self.env.clone(),
            },
            owner,
        }
    }
}

impl fmt::Debug for TenantSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantSpec")
            .field("name", &self.name)
            .field("vcpus", &self.vcpus)
            .field("memory_mib", &self.memory_mib)
            .field("overlay_size_mib", &self.overlay_size_mib)
            .field("backend", &self.backend)
            .field("disk_mib_per_s", &self.disk_mib_per_s)
            .field("disk_iops", &self.disk_iops)
            .field("net_mbit_per_s", &self.net_mbit_per_s)
            .field("idle_suspend_after_s", &self.idle_suspend_after_s)
            .field("env", &self.env)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("command", &self.command)
            .field("from_snap", &self.from_snap)
            .finish()
    }
}

impl TenantSpecBuilder {
    /// Virtual CPUs (1..=32).
    pub fn vcpus(mut self, vcpus: u8) -> Self {
        self.spec.vcpus = Some(vcpus);
        self
    }

    /// Guest memory in MiB (128..=262144).
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.spec.memory_mib = Some(mib);
        self
    }

    /// Overlay disk size in MiB (64..=1048576).
    pub fn overlay_size_mib(mut self, mib: u32) -> Self {
        self.spec.overlay_size_mib = Some(mib);
        self
    }

    /// VMM backend for this tenant instead of the host's.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.spec.backend = Some(backend);
        self
    }

    /// Disk bandwidth in MiB/s (0..=100000; 0: no limit).
    pub fn disk_mib_per_s(mut self, mib: u32) -> Self {
        self.spec.disk_mib_per_s = Some(mib);
        self
    }

    /// Disk operations per second (0..=1000000; 0: no limit).
    pub fn disk_iops(mut self, iops: u32) -> Self {
        self.spec.disk_iops = Some(iops);
        self
    }

    /// Network bandwidth each way in Mbit/s (0..=100000; 0: no limit).
    pub fn net_mbit_per_s(mut self, mbit: u32) -> Self {
        self.spec.net_mbit_per_s = Some(mbit);
        self
    }

    /// Suspend the tenant once it has been idle this many seconds (0:
    /// never), instead of the host's `watchdog.idle_suspend_after_s`.
    pub fn idle_suspend_after_s(mut self, secs: u32) -> Self {
        self.spec.idle_suspend_after_s = Some(secs);
        self
    }

    /// Adds a workload environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.env.insert(key.into(), value.into());
        self
    }

    /// Runs `command` as the workload instead of the OpenClaw gateway; it
    /// must serve HTTP on the configured gateway port.
    pub fn command(mut self, command: Vec<String>) -> Self {
        self.spec.command = command;
        self
    }

    /// Adds a workload secret (e.g. an API key).
    pub fn secret(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.secrets.insert(key.into(), value.into());
        self
    }

    /// Restores the disk of a `snap` archive instead of giving the tenant a
    /// blank overlay; tokens and secrets are still made afresh. The
    /// archive is checked when the spawn starts, before anything is made.
    pub fn from_snap(mut self, archive: impl Into<PathBuf>) -> Self {
        self.spec.from_snap = Some(archive.into());
        self
    }

    /// Validates every field; the error names the first bad one.
    pub fn build(self) -> Result<TenantSpec, TenantError> {
        let spec = self.spec;
        let invalid =
            |field: &'static str, reason: String| TenantError::InvalidSpec { field, reason };
        validate_tenant_name(&spec.name).map_err(|reason| invalid("name", reason))?;
        if let Some(v) = spec.vcpus.filter(|v| !(1..=32).contains(v)) {
            return Err(invalid("vcpus", format!("{v} is not in 1..=32")));
        }
        if let Some(m) = spec.memory_mib.filter(|m| !(128..=262_144).contains(m)) {
            return Err(invalid("memory_mib", format!("{m} is not in 128..=262144")));
        }
        if let Some(m) = spec
            .overlay_size_mib
            .filter(|m| !(64..=1_048_576).contains(m))
        {
            return Err(invalid(
                "overlay_size_mib",
                format!("{m} is not in 64..=1048576"),
            ));
        }
        let limits = TenantLimits {
            disk_mib_per_s: spec.disk_mib_per_s.unwrap_or(0),
            disk_iops: spec.disk_iops.unwrap_or(0),
            net_mbit_per_s: spec.net_mbit_per_s.unwrap_or(0),
        };
        if let Err((field, reason)) = limits.check() {
            return Err(invalid(field, reason));
        }
        for (field, map) in [("env", &spec.env), ("secrets", &spec.secrets)] {
            for key in map.keys() {
                let ok = !key.is_empty()
                    && !key.starts_with(|c: char| c.is_ascii_digit())
                    && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !ok {
                    return Err(invalid(
                        field,
                        format!(
                            "`{}` is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
                            key.escape_debug()
                        ),
                    ));
                }
            }
        }
        if spec
            .from_snap
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(invalid("from_snap", "the archive path is empty".into()));
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_come_from_config() {
        let config = Config::default();
        let spec = TenantSpec::builder("a").vcpus(1).build().unwrap();
        let r = spec.resources(&config);
        assert_eq!((r.vcpus, r.memory_mib, r.overlay_size_mib), (1, 1024, 4096));
        assert_eq!(r.limits, Some(config.tenant_defaults.limits));
        let spec = TenantSpec::builder("a")
            .net_mbit_per_s(0)
            .disk_iops(7)
            .build()
            .unwrap();
        let limits = spec.resources(&config).limits.unwrap();
        assert_eq!(
            (
                limits.disk_mib_per_s,
                limits.disk_iops,
                limits.net_mbit_per_s
            ),
            (100, 7, 0)
        );
    }

    #[test]
    fn the_idle_time_is_the_tenant_own_or_the_host_default() {
        let config = Config::default();
        let spec = TenantSpec::builder("a").build().unwrap();
        assert_eq!(spec.resources(&config).idle_suspend_after_s, None);
        for secs in [0, 5] {
            let spec = TenantSpec::builder("a")
                .idle_suspend_after_s(secs)
                .build()
                .unwrap();
            assert_eq!(spec.resources(&config).idle_suspend_after_s, Some(secs));
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (TenantSpec::builder("a_b"), "name"),
            (TenantSpec::builder("a").vcpus(0), "vcpus"),
            (TenantSpec::builder("a").memory_mib(64), "memory_mib"),
            (
                TenantSpec::builder("a").overlay_size_mib(1),
                "overlay_size_mib",
            ),
            (
                TenantSpec::builder("a").disk_mib_per_s(100_001),
                "disk_mib_per_s",
            ),
            (TenantSpec::builder("a").disk_iops(1_000_001), "disk_iops"),
            (
                TenantSpec::builder("a").net_mbit_per_s(100_001),
                "net_mbit_per_s",
            ),
            (TenantSpec::builder("a").env("1X", "v"), "env"),
            (TenantSpec::builder("a").secret("A-B", "v"), "secrets"),
            (TenantSpec::builder("a").from_snap(""), "from_snap"),
        ];
        for (builder, field) in cases {
            match builder.build() {
                Err(TenantError::InvalidSpec { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_restore_takes_the_disk_size_and_refuses_another() {
        let spec = TenantSpec::builder("a")
            .from_snap("/x.zst")
            .build()
            .unwrap();
        assert_eq!(spec.from_snap(), Some(Path::new("/x.zst")));
        let restoring = spec.restoring(128).unwrap();
        assert_eq!(
            restoring.resources(&Config::default()).overlay_size_mib,
            128
        );
        let sized = TenantSpec::builder("a")
            .overlay_size_mib(128)
            .from_snap("/x.zst");
        assert!(sized.clone().build().unwrap().restoring(128).is_ok());
        match sized.build().unwrap().restoring(256) {
            Err(TenantError::InvalidSpec { field, reason }) => {
                assert_eq!(field, "overlay_size_mib");
                assert!(reason.contains("128") && reason.contains("256"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debug_hides_secret_values() {
        let spec = TenantSpec::builder("a")
            .secret("API_KEY", "sk-very-secret")
            .build()
            .unwrap();
        let text = format!("{spec:?}");
        assert!(
            text.contains("API_KEY") && !text.contains("sk-very-secret"),
            "{text}"
        );
    }
}
