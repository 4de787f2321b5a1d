//! `lobster.Host`: the entry point, one method per core operation.
//!
//! Every operation comes in twins: `list()` blocks with the GIL released,
//! `list_async()` returns an awaitable. Both run on the one shared runtime
//! (see `runtime.rs`) and contain no logic: they call the core and convert.

use std::path::PathBuf;

use lobster_core::tenant::EvictOptions;
use lobster_core::Host;
use pyo3::prelude::*;

use crate::errors::IntoPyResult;
use crate::json::Plain;
use crate::logs::{self, PyLogStream};
use crate::progress;
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

    /// Creates and starts a tenant; `progress`, if given, is called with
    /// each step as a dict (typed `lobster.health.ProgressEvent`).
    #[pyo3(signature = (spec, *, progress = None))]
    fn spawn(
        &self,
        py: Python<'_>,
        spec: &Bound<'_, PyTenantSpec>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<PyTenant> {
        let host = &self.inner;
        let spec = spec.get().spec().clone();
        let sink = progress::sink(py, progress, false)?;
        block_on(py, async {
            let tenant = host.spawn_with_progress(spec, sink).await;
            tenant.map(PyTenant::from).py()
        })
    }

    /// Awaitable twin of `spawn()` (`progress` runs on the caller's loop).
    #[pyo3(signature = (spec, *, progress = None))]
    fn spawn_async<'py>(
        &self,
        py: Python<'py>,
        spec: &Bound<'py, PyTenantSpec>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let host = self.inner.clone();
        let spec = spec.get().spec().clone();
        let sink = progress::sink(py, progress, true)?;
        awaitable(py, async move {
            let tenant = host.spawn_with_progress(spec, sink).await;
            tenant.map(PyTenant::from).py()
        })
    }

    /// Removes a tenant and everything it holds (`keep_overlay=True`
    /// leaves its overlay disk in place).
    #[pyo3(signature = (name, *, keep_overlay = false))]
    fn evict(&self, py: Python<'_>, name: String, keep_overlay: bool) -> PyResult<()> {
        let host = &self.inner;
        let options = EvictOptions { keep_overlay };
        block_on(py, async { host.evict_with(&name, options).await.py() })
    }

    /// Awaitable twin of `evict()`.
    #[pyo3(signature = (name, *, keep_overlay = false))]
    fn evict_async<'py>(
        &self,
        py: Python<'py>,
        name: String,
        keep_overlay: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let host = self.inner.clone();
        let options = EvictOptions { keep_overlay };
        awaitable(
            py,
            async move { host.evict_with(&name, options).await.py() },
        )
    }

    /// The last `lines` lines of a tenant's `workload` (or `agent`) log,
    /// sanitised for a terminal; a suspended tenant is resumed first.
    #[pyo3(signature = (name, *, source = "workload", lines = 100))]
    fn logs(
        &self,
        py: Python<'_>,
        name: String,
        source: &str,
        lines: u32,
    ) -> PyResult<Vec<String>> {
        let (host, source) = (&self.inner, logs::source(source)?);
        block_on(py, async { host.logs(&name, source, lines).await.py() })
    }

    /// Awaitable twin of `logs()`.
    #[pyo3(signature = (name, *, source = "workload", lines = 100))]
    fn logs_async<'py>(
        &self,
        py: Python<'py>,
        name: String,
        source: &str,
        lines: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (host, source) = (self.inner.clone(), logs::source(source)?);
        awaitable(
            py,
            async move { host.logs(&name, source, lines).await.py() },
        )
    }

    /// Follows a tenant's log: the last `lines` lines, then new ones as
    /// they come, as an iterator (and async iterator) of strings. The
    /// tenant is held awake until the stream is closed.
    #[pyo3(signature = (name, *, source = "workload", lines = 10))]
    fn follow_logs(
        &self,
        py: Python<'_>,
        name: String,
        source: &str,
        lines: u32,
    ) -> PyResult<PyLogStream> {
        let (host, source) = (&self.inner, logs::source(source)?);
        block_on(py, async {
            host.follow_logs(&name, source, lines)
                .await
                .map(PyLogStream::new)
                .py()
        })
    }

    /// Awaitable twin of `follow_logs()`.
    #[pyo3(signature = (name, *, source = "workload", lines = 10))]
    fn follow_logs_async<'py>(
        &self,
        py: Python<'py>,
        name: String,
        source: &str,
        lines: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (host, source) = (self.inner.clone(), logs::source(source)?);
        awaitable(py, async move {
            host.follow_logs(&name, source, lines)
                .await
                .map(PyLogStream::new)
                .py()
        })
    }

    /// Writes a compressed archive of a tenant's disk to `output` (or the
    /// snapshots directory); its report as a dict (`path`, `disk_bytes`,
    /// `archive_bytes`, `paused_ms`). `TenantSpec(from_snap=path)` restores it.
    #[pyo3(signature = (name, output = None))]
    fn snap(&self, py: Python<'_>, name: String, output: Option<PathBuf>) -> PyResult<Plain> {
        let host = &self.inner;
        block_on(py, async {
            host.snap(&name, output).await.map(Plain::of).py()
        })
    }

    /// Awaitable twin of `snap()`.
    #[pyo3(signature = (name, output = None))]
    fn snap_async<'py>(
        &self,
        py: Python<'py>,
        name: String,
        output: Option<PathBuf>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let host = self.inner.clone();
        awaitable(py, async move {
            host.snap(&name, output).await.map(Plain::of).py()
        })
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

    /// Writes a running tenant's memory and device state to disk and stops
    /// its VM; `progress` as for `spawn()`.
    #[pyo3(signature = (name, *, progress = None))]
    fn suspend(
        &self,
        py: Python<'_>,
        name: String,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<PyTenant> {
        let host = &self.inner;
        let sink = progress::sink(py, progress, false)?;
        block_on(py, async {
            let tenant = host.suspend_with_progress(&name, sink).await;
            tenant.map(PyTenant::from).py()
        })
    }

    /// Awaitable twin of `suspend()`.
    #[pyo3(signature = (name, *, progress = None))]
    fn suspend_async<'py>(
        &self,
        py: Python<'py>,
        name: String,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let host = self.inner.clone();
        let sink = progress::sink(py, progress, true)?;
        awaitable(py, async move {
            let tenant = host.suspend_with_progress(&name, sink).await;
            tenant.map(PyTenant::from).py()
        })
    }

    /// Starts a suspended tenant again from its snapshot; `progress` as for
    /// `spawn()`.
    #[pyo3(signature = (name, *, progress = None))]
    fn resume(
        &self,
        py: Python<'_>,
        name: String,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<PyTenant> {
        let host = &self.inner;
        let sink = progress::sink(py, progress, false)?;
        block_on(py, async {
            let tenant = host.resume_with_progress(&name, sink).await;
            tenant.map(PyTenant::from).py()
        })
    }

    /// Awaitable twin of `resume()`.
    #[pyo3(signature = (name, *, progress = None))]
    fn resume_async<'py>(
        &self,
        py: Python<'py>,
        name: String,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let host = self.inner.clone();
        let sink = progress::sink(py, progress, true)?;
        awaitable(py, async move {
            let tenant = host.resume_with_progress(&name, sink).await;
            tenant.map(PyTenant::from).py()
        })
    }

    /// Gives a running tenant new agent and gateway tokens (the old ones
    /// stop working); the tenant with its new tokens.
    fn rotate_tokens(&self, py: Python<'_>, name: String) -> PyResult<PyTenant> {
        let host = &self.inner;
        block_on(py, async {
            host.rotate_tokens(&name).await.map(PyTenant::from).py()
        })
    }

    /// Awaitable twin of `rotate_tokens()`.
    fn rotate_tokens_async<'py>(
        &self,
        py: Python<'py>,
        name: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let host = self.inner.clone();
        awaitable(py, async move {
            host.rotate_tokens(&name).await.map(PyTenant::from).py()
        })
    }

    /// The last `lines` lines of the detached watchdog's log.
    #[pyo3(signature = (lines = 100))]
    fn watchdog_log(&self, py: Python<'_>, lines: u32) -> PyResult<Vec<String>> {
        let host = &self.inner;
        block_on(py, async { host.watchdog_log(lines).await.py() })
    }

    /// Awaitable twin of `watchdog_log()`.
    #[pyo3(signature = (lines = 100))]
    fn watchdog_log_async<'py>(&self, py: Python<'py>, lines: u32) -> PyResult<Bound<'py, PyAny>> {
        let host = self.inner.clone();
        awaitable(py, async move { host.watchdog_log(lines).await.py() })
    }

    fn __repr__(&self) -> String {
        match self.inner.config_path() {
            Some(path) => format!("Host(config_path={:?})", path.display().to_string()),
            None => "Host(config_path=None)".to_owned(),
        }
    }
}
