//! [`Context`]: what tenant operations and health act on (the
//! configuration, the tenant registry and the system seams), handed to them
//! by the [`crate::Host`] façade instead of the façade itself.

mod services;

use std::sync::Arc;
use std::time::Duration;

pub use services::{FirewallOps, Services, VmmFactory};

use crate::config::Config;
use crate::error::Result;
use crate::store::{Registry, Store, StoreError, TenantLock, TenantRecord};

/// A host's configuration, registry and seams. A cheap `Clone` (`Arc`
/// inside); the seams are made on first use.
#[derive(Debug, Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    store: Store,
    services: tokio::sync::OnceCell<Arc<Services>>,
}

/// So whatever takes `impl AsRef<Context>` takes a [`crate::Host`] or a `Context`.
impl AsRef<Context> for Context {
    fn as_ref(&self) -> &Context {
        self
    }
}

impl Context {
    /// A context for a validated `config`; the real seams are made on first use.
    pub(crate) fn new(config: Config) -> Context {
        Context::build(config, tokio::sync::OnceCell::new())
    }

    /// A context acting through `services` (fakes, or seams made for
    /// another network namespace).
    pub(crate) fn with_services(config: Config, services: Services) -> Context {
        let cell = tokio::sync::OnceCell::new_with(Some(Arc::new(services)));
        Context::build(config, cell)
    }

    fn build(config: Config, services: tokio::sync::OnceCell<Arc<Services>>) -> Context {
        let store = Store::new(&config.paths.state_dir);
        Context {
            inner: Arc::new(Inner {
                config,
                store,
                services,
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The tenant registry.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The system seams, made on first use (in the calling task's network
    /// namespace and runtime).
    pub async fn services(&self) -> Result<Arc<Services>> {
        let config = &self.inner.config;
        let services = self
            .inner
            .services
            .get_or_try_init(|| async { Services::system(config).map(Arc::new) })
            .await?;
        Ok(services.clone())
    }

    /// Reads the whole registry.
    pub(crate) async fn registry(&self) -> Result<Registry> {
        let store = self.store().clone();
        Ok(crate::base::blocking(move || store.read()).await?)
    }

    /// The record of tenant `name`.
    pub(crate) async fn record(&self, name: &str) -> Result<TenantRecord> {
        let mut registry = self.registry().await?;
        Ok(registry
            .tenants
            .remove(name)
            .ok_or_else(|| StoreError::NotFound(name.to_owned()))?)
    }

    /// Changes tenant `name`'s record under the registry lock; returns it changed.
    pub(crate) async fn modify(
        &self,
        name: &str,
        change: impl FnOnce(&mut TenantRecord) + Send + 'static,
    ) -> Result<TenantRecord> {
        let store = self.store().clone();
        let name = name.to_owned();
        Ok(crate::base::blocking(move || store.modify(&name, change)).await?)
    }

    /// Takes tenant `name`'s operation lock, waiting at most `wait`;
    /// `None` when another operation held it all that time.
    pub(crate) async fn lock_tenant(
        &self,
        name: &str,
        wait: Duration,
    ) -> Result<Option<TenantLock>> {
        let store = self.store().clone();
        let name = name.to_owned();
        Ok(crate::base::blocking(move || store.lock_tenant(&name, wait)).await?)
    }
}
