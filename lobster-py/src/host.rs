//! `lobster.Host`: the entry point, one method per core operation.
//!
//! Every operation comes in twins: `list()` blocks with the GIL released,
//! `list_async()` returns an awaitable. Both run on the one shared runtime
//! (see `runtime.rs`) and contain no logic: they call the core and convert.

use std::path::PathBuf;

use lobster_core::Host;
use pyo3::prelude::*;

use crate::errors::IntoPyResult;
use crate::json::Plain;
use crate::runtime::{awaitable, block_on};
use crate::spec::PyTenantSpec;
use crate::tenant::PyTenant;

/// A lobster host, opened from its configuration file.
#[pyclass(name = "Host", module = "lobster._lobster", frozen)]
#[derive(Debug, Clone)]
pub struct PyHost {
    inner: Host,
}

fn tenants(list: Vec<lobster_core::Tenant>) -> Vec<PyTenant> {
    list.into_iter().map(PyTenant::from).collect()
}

#[pymethods]
impl PyHost {
    /// Opens the host described by `config_path`, else `$LOBSTERD_CONFIG`,
    /// else `/etc/lobsterd/config.json`.
    #[new]
    #[pyo3(signature = (config_path = None))]
    fn new(py: Python<'_>, config_path: Option<PathBuf>) -> PyResult<Self> {
        let inner = py.detach(|| Host::open(config_path.as_deref())).py()?;
        Ok(PyHost { inner })
    }

    /// The file the configuration came from.
    #[getter]
    fn config_path(&self) -> Option<PathBuf> {
        self.inner.config_path().map(PathBuf::from)
    }

    /// The domain tenants are routed under.
    #[getter]
    fn domain(&self) -> &str {
        &self.inner.config().domain
    }

    /// Every tenant, sorted by name.
    fn list(&self, py: Python<'_>) -> PyResult<Vec<PyTenant>> {
        let host = &self.inner;
        block_on(py, async { host.list().await.map(tenants).py() })
    }

    /// Awaitable twin of `list()`.
    fn list_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let host = self.inner.clone();
        awaitable(py, async move { host.list().await.map(tenants).py() })
    }

    /// One tenant by name; raises `NotFoundError` if there is none.
    fn get(&self, py: Python<'_>, name: String) -> PyResult<PyTenant> {
        let host = &self.inner;
        block_on(py, async { host.get(&name).await.map(PyTenant::from).py() })
    }

    /// Awaitable twin of `get()`.
    fn get_async<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let host = self.inner.clone();
        awaitable(
            py,
            async move { host.get(&name).await.map(PyTenant::from).py() },
        )
    }

    /// The token clients present to a tenant's gateway (a secret).
    fn token(&self, py: Python<'_>, name: String) -> PyResult<String> {
        let host = &self.inner;
        block_on(py, async { host.token(&name).await.py() })
    }

    /// Awaitable twin of `token()`.
    fn token_async<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let host = self.inner.clone();
        awaitable(py, async move { host.token(&name).await.py() })
    }

    /// Creates and starts a tenant.
    fn spawn(&self, py: Python<'_>, spec: &Bound<'_, PyTenantSpec>) -> PyResult<PyTenant> {
        let host = &self.inner;
        let spec = spec.get().spec().clone();
        block_on(py, async {
            host.spawn(spec).await.map(PyTenant::from).py()
        })
    }

    /// Awaitable twin of `spawn()`.
    fn spawn_async<'py>(
        &self,
        py: Python<'py>,
        spec: &Bound<'py, PyTenantSpec>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let host = self.inner.clone();
        let spec = spec.get().spec().clone();
        awaitable(py, async move {
            host.spawn(spec).await.map(PyTenant::from).py()
        })
    }

    /// Removes a tenant and everything it holds.
    fn evict(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let host = &self.inner;
        block_on(py, async { host.evict(&name).await.py() })
    }

    /// Awaitable twin of `evict()`.
    fn evict_async<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let host = self.inner.clone();
        awaitable(py, async move { host.evict(&name).await.py() })
    }

    /// Health-checks one tenant (or every one that should run, when `name`
    /// is None) and repairs what failed; one report dict per tenant.
    #[pyo3(signature = (name = None))]
    fn molt(&self, py: Python<'_>, name: Option<String>) -> PyResult<Plain> {
        let host = &self.inner;
        block_on(py, async {
            host.molt(name.as_deref()).await.map(Plain::of).py()
        })
    }

    /// Awaitable twin of `molt()`.
    #[pyo3(signature = (name = None))]
    fn molt_async<'py>(
        &self,
        py: Python<'py>,
        name: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let host = self.inner.clone();
        awaitable(py, async move {
            host.molt(name.as_deref()).await.map(Plain::of).py()
        })
    }

    /// A snapshot of every tenant with the watchdog's view (a dict, the
    /// `lobsterd tank --json` document).
    fn overview(&self, py: Python<'_>) -> PyResult<Plain> {
        let host = &self.inner;
        block_on(py, async { host.overview().await.map(Plain::of).py() })
    }

    /// Awaitable twin of `overview()`.
    fn overview_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let host = self.inner.clone();
        awaitable(py, async move { host.overview().await.map(Plain::of).py() })
    }

    /// Writes a running tenant's memory and device state to disk and stops its VM.
    fn suspend(&self, py: Python<'_>, name: String) -> PyResult<PyTenant> {
        let host = &self.inner;
        block_on(py, async {
            host.suspend(&name).await.map(PyTenant::from).py()
        })
    }

    /// Awaitable twin of `suspend()`.
    fn suspend_async<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let host = self.inner.clone();
        awaitable(py, async move {
            host.suspend(&name).await.map(PyTenant::from).py()
        })
    }

    /// Starts a suspended tenant again from its snapshot.
    fn resume(&self, py: Python<'_>, name: String) -> PyResult<PyTenant> {
        let host = &self.inner;
        block_on(py, async {
            host.resume(&name).await.map(PyTenant::from).py()
        })
    }

    /// Awaitable twin of `resume()`.
    fn resume_async<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let host = self.inner.clone();
        awaitable(py, async move {
            host.resume(&name).await.map(PyTenant::from).py()
        })
    }

    fn __repr__(&self) -> String {
        match self.inner.config_path() {
            Some(path) => format!("Host(config_path={:?})", path.display().to_string()),
            None => "Host(config_path=None)".to_owned(),
        }
    }
}
