//! `lobster.LogStream`: a followed tenant log as a Python iterator and
//! async iterator (`Host.follow_logs`). Each line is sanitised for a
//! terminal by the core; the guest is held awake while the stream lives.
//! `close()` (or leaving a `with` block) ends it at once; a stream that
//! breaks raises the core error's exception.

use std::sync::Arc;
use std::time::Duration;

use lobster_core::agent::{LogFollow, LogSource};
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::errors::{invalid_argument, IntoPyResult};
use crate::runtime::{awaitable, block_on};

/// How long a blocking `next()` waits before it checks for Ctrl-C.
const SIGNAL_POLL: Duration = Duration::from_millis(200);

/// How long an awaited line may take before the wait starts over (the
/// stream stays usable; a cancelled task stops waiting at once).
const ASYNC_POLL: Duration = Duration::from_secs(3600);

/// A log source by name (`workload` or `agent`).
pub fn source(name: &str) -> PyResult<LogSource> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| invalid_argument(format!("source `{name}`: not `workload` or `agent`")))
}

type Shared = Arc<tokio::sync::Mutex<Option<LogFollow>>>;

/// A tenant's log, followed: new lines as they come.
#[pyclass(name = "LogStream", module = "lobster._lobster", frozen)]
#[derive(Debug)]
pub struct PyLogStream {
    follow: Shared,
    /// Cancelled by `close()`: a waiting `next` gives up the stream at once.
    closed: CancellationToken,
}

impl PyLogStream {
    pub fn new(follow: LogFollow) -> PyLogStream {
        PyLogStream {
            follow: Arc::new(tokio::sync::Mutex::new(Some(follow))),
            closed: CancellationToken::new(),
        }
    }
}

/// One wait on the stream.
enum Next {
    Line(String),
    Quiet,
    Closed,
}

async fn next(follow: &Shared, closed: &CancellationToken, within: Duration) -> PyResult<Next> {
    let mut guard = tokio::select! {
        guard = follow.lock() => guard,
        () = closed.cancelled() => return Ok(Next::Closed),
    };
    let Some(stream) = guard.as_mut() else {
        return Ok(Next::Closed);
    };
    let line = tokio::select! {
        line = stream.next_line(within) => line,
        () = closed.cancelled() => {
            *guard = None;
            return Ok(Next::Closed);
        }
    };
    match line {
        Ok(Some(line)) => Ok(Next::Line(line)),
        Ok(None) => Ok(Next::Quiet),
        Err(e) => {
            *guard = None;
            Err(e).py()
        }
    }
}

#[pymethods]
impl PyLogStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next line; blocks (GIL released, Ctrl-C honoured) until one comes.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        loop {
            match block_on(py, next(&self.follow, &self.closed, SIGNAL_POLL))? {
                Next::Line(line) => return Ok(Some(line)),
                Next::Closed => return Ok(None),
                Next::Quiet => py.check_signals()?,
            }
        }
    }

    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Awaitable of the next line.
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (follow, closed) = (self.follow.clone(), self.closed.clone());
        awaitable(py, async move {
            loop {
                match next(&follow, &closed, ASYNC_POLL).await? {
                    Next::Line(line) => return Ok(line),
                    Next::Closed => return Err(PyStopAsyncIteration::new_err(())),
                    Next::Quiet => {}
                }
            }
        })
    }

    /// Ends the stream (and the hold on the guest); iterating stops.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.closed.cancel();
        block_on(py, async {
            self.follow.lock().await.take();
            Ok(())
        })
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        self.close(py)
    }
}
