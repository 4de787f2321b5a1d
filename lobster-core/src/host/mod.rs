//! [`Host`]: the entry point. Opened from a configuration, it reads and
//! changes the tenant registry and runs lifecycle operations.
//!
//! A `Host` is a cheap `Clone` (`Arc` inside), `Send + Sync + 'static`, and
//! holds no lock between calls: any number of processes may open the same
//! host at once; the registry's `flock` orders their changes.

mod init;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use init::{init, preflight, InitOptions, InitReport, Prerequisite};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{Store, StoreError};
use crate::tenant::{Tenant, TenantSpec};

/// A lobster host: its configuration and its registry.
#[derive(Debug, Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    config_path: Option<PathBuf>,
    store: Store,
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
        Ok(Host::build(config, Some(path)))
    }

    /// A host from a configuration already in memory (validated here).
    pub fn from_config(config: Config) -> Result<Host> {
        config.validate()?;
        Ok(Host::build(config, None))
    }

    fn build(config: Config, config_path: Option<PathBuf>) -> Host {
        let store = Store::new(&config.paths.state_dir);
        Host {
            inner: Arc::new(Inner {
                config,
                config_path,
                store,
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The file the configuration came from, if any.
    pub fn config_path(&self) -> Option<&Path> {
        self.inner.config_path.as_deref()
    }

    /// The tenant registry.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Every tenant, sorted by name.
    pub async fn list(&self) -> Result<Vec<Tenant>> {
        let host = self.clone();
        blocking(move || {
            let registry = host.inner.store.read()?;
            let domain = &host.inner.config.domain;
            Ok(registry
                .tenants
                .into_values()
                .map(|r| Tenant::new(r, domain))
                .collect())
        })
        .await
    }

    /// One tenant by name.
    pub async fn get(&self, name: &str) -> Result<Tenant> {
        let host = self.clone();
        let name = name.to_owned();
        blocking(move || {
            let mut registry = host.inner.store.read()?;
            let record = registry
                .tenants
                .remove(&name)
                .ok_or(StoreError::NotFound(name))?;
            Ok(Tenant::new(record, &host.inner.config.domain))
        })
        .await
    }

    /// The token clients present to a tenant's gateway.
    pub async fn token(&self, name: &str) -> Result<String> {
        Ok(self.get(name).await?.gateway_token().to_owned())
    }

    /// Creates and starts a tenant.
    pub async fn spawn(&self, spec: TenantSpec) -> Result<Tenant> {
        let _ = spec;
        Err(not_yet("spawn"))
    }

    /// Removes a tenant and everything it holds.
    pub async fn evict(&self, name: &str) -> Result<()> {
        self.get(name).await?;
        Err(not_yet("evict"))
    }

    /// Health-checks tenants (all, or one) and repairs what failed.
    pub async fn molt(&self, name: Option<&str>) -> Result<()> {
        if let Some(name) = name {
            self.get(name).await?;
        }
        Err(not_yet("molt"))
    }

    /// Snapshots a running tenant to disk and stops its VM.
    pub async fn suspend(&self, name: &str) -> Result<()> {
        self.get(name).await?;
        Err(not_yet("suspend"))
    }

    /// Restores a suspended tenant.
    pub async fn resume(&self, name: &str) -> Result<()> {
        self.get(name).await?;
        Err(not_yet("resume"))
    }
}

fn not_yet(operation: &'static str) -> Error {
    Error::Unsupported {
        operation,
        detail: "the tenant lifecycle (VM, network, agent, route) is not wired up in this version",
    }
}

/// Runs blocking registry work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(out) => out,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}
