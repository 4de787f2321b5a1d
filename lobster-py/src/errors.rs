//! Core errors as Python exceptions, mapped in one place.
//!
//! The classes live in `lobster/exceptions.py` so that some of them can also
//! derive from a builtin (`NotFoundError` is a `LookupError`, ...), which
//! `create_exception!` cannot express. Every error raised by this extension
//! goes through [`to_py`], whose single `match` on `ErrorKind` is the only
//! place a kind meets a class. The message is the whole cause chain.

use lobster_core::{Error, ErrorKind};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

mod classes {
    pyo3::import_exception!(lobster.exceptions, LobsterError);
    pyo3::import_exception!(lobster.exceptions, NotFoundError);
    pyo3::import_exception!(lobster.exceptions, AlreadyExistsError);
    pyo3::import_exception!(lobster.exceptions, InvalidArgumentError);
    pyo3::import_exception!(lobster.exceptions, InvalidStateError);
    pyo3::import_exception!(lobster.exceptions, PermissionDeniedError);
    pyo3::import_exception!(lobster.exceptions, UnsupportedError);
    pyo3::import_exception!(lobster.exceptions, TimedOutError);
    pyo3::import_exception!(lobster.exceptions, ExhaustedError);
    pyo3::import_exception!(lobster.exceptions, CorruptError);
    pyo3::import_exception!(lobster.exceptions, HostFailureError);
    pyo3::import_exception!(lobster.exceptions, GuestFailureError);
    pyo3::import_exception!(lobster.exceptions, InternalError);
}

/// The Python exception for a core error.
pub fn to_py(err: Error) -> PyErr {
    use classes::*;
    let message = err.chain();
    match err.kind() {
        ErrorKind::NotFound => NotFoundError::new_err(message),
        ErrorKind::AlreadyExists => AlreadyExistsError::new_err(message),
        ErrorKind::InvalidArgument => InvalidArgumentError::new_err(message),
        ErrorKind::InvalidState => InvalidStateError::new_err(message),
        ErrorKind::PermissionDenied => PermissionDeniedError::new_err(message),
        ErrorKind::Unsupported => UnsupportedError::new_err(message),
        ErrorKind::Timeout => TimedOutError::new_err(message),
        ErrorKind::Exhausted => ExhaustedError::new_err(message),
        ErrorKind::Corrupt => CorruptError::new_err(message),
        ErrorKind::HostFailure => HostFailureError::new_err(message),
        ErrorKind::GuestFailure => GuestFailureError::new_err(message),
        ErrorKind::Internal => InternalError::new_err(message),
        // A kind newer than this mapping still reaches Python as the base.
        _ => LobsterError::new_err(message),
    }
}

/// Extension trait: `result.py()?` turns a core error into its exception.
pub trait IntoPyResult<T> {
    /// The result with the error mapped by [`to_py`].
    fn py(self) -> PyResult<T>;
}

impl<T, E: Into<Error>> IntoPyResult<T> for Result<T, E> {
    fn py(self) -> PyResult<T> {
        self.map_err(|e| to_py(e.into()))
    }
}

/// Every `ErrorKind` name, in declaration order (`lobster._lobster.ERROR_KINDS`),
/// so the tests can check that each has its exception class.
pub fn kind_names(py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
    PyTuple::new(py, ErrorKind::ALL.iter().map(|k| k.as_str()))
}

/// `InvalidArgumentError(message)`, for input the extension itself refuses.
pub fn invalid_argument(message: String) -> PyErr {
    classes::InvalidArgumentError::new_err(message)
}
