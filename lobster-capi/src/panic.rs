//! The panic boundary: every exported function runs its body here.
//!
//! An unwind out of `extern "C"` aborts the whole process (since Rust 1.81),
//! taking a C or Go host with it. Instead, a panic is caught, reported as
//! `LOBSTER_RESULT_PANIC` with an error object, and the call returns.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{lobster_error, lobster_result, Failure};
use crate::ffi;

/// Runs a fallible body: `Ok` on success; otherwise the failure's code,
/// with an error object stored in `err_out` when that is not NULL.
pub fn boundary(
    function: &'static str,
    err_out: *mut *mut lobster_error,
    body: impl FnOnce() -> Result<(), Failure>,
) -> lobster_result {
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return lobster_result::Ok,
        Ok(Err(failure)) => failure,
        Err(payload) => Failure::Panic(payload_text(payload.as_ref())),
    };
    let result = failure.result();
    // Building the error object allocates; if even that panics there is
    // nothing better to do than return the code alone.
    if let Ok(err) = catch_unwind(AssertUnwindSafe(|| lobster_error::new(function, &failure))) {
        ffi::store_error(err_out, err);
    }
    result
}

/// Runs an infallible body (accessors, frees); `fallback` if it panicked.
pub fn boundary_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-text panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_code_and_an_error_object() {
        let mut err: *mut lobster_error = std::ptr::null_mut();
        let result = boundary("lobster_test", &mut err, || panic!("boom {}", 42));
        assert_eq!(result, lobster_result::Panic);
        let err = ffi::take(err, "err").expect("error object stored");
        let message = crate::error::tests::message_of(&err);
        assert!(
            message.contains("lobster_test") && message.contains("boom 42"),
            "{message}"
        );
    }

    #[test]
    fn success_leaves_err_out_untouched() {
        let mut err: *mut lobster_error = std::ptr::null_mut();
        assert_eq!(
            boundary("lobster_test", &mut err, || Ok(())),
            lobster_result::Ok
        );
        assert!(err.is_null());
    }

    #[test]
    fn a_failure_without_err_out_still_returns_its_code() {
        let result = boundary("lobster_test", std::ptr::null_mut(), || {
            Err(Failure::NullParameter("host"))
        });
        assert_eq!(result, lobster_result::NullParameter);
    }

    #[test]
    fn an_accessor_panic_returns_the_fallback() {
        assert_eq!(boundary_value(7, || panic!("boom")), 7);
    }
}
