//! Progress callbacks: `spawn(spec, progress=f)`, `suspend(name,
//! progress=f)`, `resume(name, progress=f)` call `f` with each step as a
//! dict (`{"operation", "tenant", "step", "phase": {"phase", "elapsed"?}}`,
//! `elapsed` in microseconds; the steps `lobsterd` prints).
//!
//! The blocking twins call `f` on a lobster thread while the caller waits;
//! an exception it raises goes to `sys.unraisablehook`, as Python does for
//! callbacks it cannot propagate from. The `_async` twins schedule `f` on
//! the caller's event loop (`call_soon_threadsafe`), so it runs in the
//! loop's thread and an exception goes to the loop's exception handler.
//! Either way it cannot stop an operation halfway: the operation goes on.

use std::sync::Arc;

use lobster_core::tenant::progress::{ProgressEvent, ProgressSink};
use pyo3::prelude::*;

use crate::json::json_to_py;

/// Where a callback runs.
enum Runs {
    /// On the reporting thread, at once.
    Here,
    /// On this event loop, scheduled.
    On(Py<PyAny>),
}

/// A sink calling `callback` (checked callable) with each event; `None`
/// for no callback.
pub fn sink(
    py: Python<'_>,
    callback: Option<Py<PyAny>>,
    asynchronous: bool,
) -> PyResult<Option<ProgressSink>> {
    let Some(callback) = callback else {
        return Ok(None);
    };
    if !callback.bind(py).is_callable() {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "progress: expected a callable taking one dict",
        ));
    }
    let runs = if asynchronous {
        let locals = pyo3_async_runtimes::tokio::get_current_locals(py)?;
        Runs::On(locals.event_loop(py).unbind())
    } else {
        Runs::Here
    };
    Ok(Some(Arc::new(move |event: &ProgressEvent| {
        Python::attach(|py| {
            let report = || -> PyResult<()> {
                let value = serde_json::to_value(event).expect("a progress event serialises");
                let event = json_to_py(py, &value)?;
                match &runs {
                    Runs::Here => callback.call1(py, (event,)).map(drop),
                    Runs::On(event_loop) => event_loop
                        .call_method1(py, "call_soon_threadsafe", (&callback, event))
                        .map(drop),
                }
            };
            if let Err(e) = report() {
                e.write_unraisable(py, Some(callback.bind(py)));
            }
        })
    })))
}
