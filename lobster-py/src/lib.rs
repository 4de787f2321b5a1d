//! Python bindings of lobster: the extension module `lobster._lobster`.
//!
//! The public API is the pure-Python package `lobster` (python/lobster),
//! which re-exports these classes next to the exception hierarchy. Every
//! class wraps a core type and holds no logic of its own: `host.rs` calls
//! the core, `errors.rs` maps its errors, `runtime.rs` owns the one tokio
//! runtime, `tenant.rs` and `spec.rs` convert values, `logs.rs` makes a
//! followed log an iterator, `progress.rs` turns progress into callbacks,
//! `json.rs` turns reports into plain Python objects.

mod errors;
mod host;
mod json;
mod logs;
mod progress;
mod runtime;
mod spec;
mod tenant;

use pyo3::prelude::*;

/// The compiled half of the `lobster` package.
#[pymodule(gil_used = false)]
fn _lobster(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<host::PyHost>()?;
    m.add_class::<tenant::PyTenant>()?;
    m.add_class::<spec::PyTenantSpec>()?;
    m.add_class::<logs::PyLogStream>()?;
    m.add("ERROR_KINDS", errors::kind_names(m.py())?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
