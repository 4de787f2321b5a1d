//! The one tokio runtime behind every `Host` of the process.
//!
//! Blocking methods run `block_on` on it with the GIL released; `*_async`
//! methods hand futures to `pyo3-async-runtimes`, which is pointed at the
//! same runtime on first use. A runtime's threads do not survive `fork()`:
//! the runtime remembers the pid that built it, and any use from a forked
//! child raises `RuntimeError` instead of hanging.

use std::future::Future;
use std::sync::{LazyLock, Once};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use tokio::runtime::Runtime;

/// The runtime and the process that built it.
struct Shared {
    runtime: std::io::Result<Runtime>,
    pid: u32,
}

static SHARED: LazyLock<Shared> = LazyLock::new(|| Shared {
    runtime: tokio::runtime::Builder::new_multi_thread()
        .thread_name("lobster-py")
        .enable_all()
        .build(),
    pid: std::process::id(),
});

static BRIDGE: Once = Once::new();

/// The shared runtime, or `RuntimeError` after `fork()` or if it could not start.
pub fn runtime() -> PyResult<&'static Runtime> {
    let shared = &*SHARED;
    let here = std::process::id();
    if shared.pid != here {
        return Err(PyRuntimeError::new_err(format!(
            "lobster's runtime was started in process {} and cannot be used in forked child {here}; \
             use lobster only after fork(), or start children with the 'spawn' or 'forkserver' method",
            shared.pid
        )));
    }
    let runtime = shared
        .runtime
        .as_ref()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start lobster's runtime: {e}")))?;
    BRIDGE.call_once(|| {
        // Fails only if the bridge already has a runtime, which only this
        // module ever sets: ignoring the error is correct.
        let _ = pyo3_async_runtimes::tokio::init_with_runtime(runtime);
    });
    Ok(runtime)
}

/// Runs `work` to completion with the GIL released.
pub fn block_on<F, T>(py: Python<'_>, work: F) -> PyResult<T>
where
    F: Future<Output = PyResult<T>> + Send,
    T: Send,
{
    let runtime = runtime()?;
    py.detach(|| runtime.block_on(work))
}

/// Wraps `work` in a Python awaitable driven by the shared runtime.
pub fn awaitable<F, T>(py: Python<'_>, work: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    runtime()?;
    pyo3_async_runtimes::tokio::future_into_py(py, work)
}
