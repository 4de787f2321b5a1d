//! Result codes and owned error objects.
//!
//! Every fallible call returns a `lobster_result` and, when the caller passes
//! a non-NULL `lobster_error **err_out`, stores an owned `lobster_error`
//! there on failure (never on success). Codes are numbered in blocks that
//! never change meaning: 0 is success, 100.. are failures of the C boundary
//! itself, 1000.. mirror the core's `ErrorKind` one to one. A retired code is
//! never reused. [`Failure::result`] is the one place a kind meets a code.

use std::ffi::{c_char, CStr, CString};

use lobster_core::ErrorKind;

use crate::ffi;
use crate::panic::boundary_value;

/// The outcome of a call. A `uint32_t` in C; values never change meaning.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum lobster_result {
    /// Success.
    Ok = 0,

    // 100..: failures of the C boundary itself.
    /// A panic inside lobster was caught at the boundary (a bug in lobster).
    Panic = 100,
    /// A required pointer argument was NULL; the message names it.
    NullParameter = 101,
    /// A string argument was not valid UTF-8; the message names it.
    InvalidUtf8 = 102,
    /// A string to return held a NUL byte and cannot be a C string.
    InteriorNul = 103,
    /// The shared runtime is unusable (could not start, or used after `fork()`).
    RuntimeUnavailable = 104,

    // 1000..: the core's ErrorKind, in its declaration order.
    /// A tenant, file or other named thing does not exist.
    NotFound = 1000,
    /// The thing to create exists already.
    AlreadyExists = 1001,
    /// Input was rejected; the message names the field.
    InvalidArgument = 1002,
    /// The operation does not fit the current state.
    InvalidState = 1003,
    /// The process lacks a privilege.
    PermissionDenied = 1004,
    /// Not implemented on this host or in this version.
    Unsupported = 1005,
    /// An external call or lock did not answer in time.
    Timeout = 1006,
    /// A finite pool has no free entry.
    Exhausted = 1007,
    /// Persistent state is unreadable or inconsistent; it was left untouched.
    Corrupt = 1008,
    /// A host-side system call or external service failed.
    HostFailure = 1009,
    /// The guest misbehaved or failed.
    GuestFailure = 1010,
    /// A bug in lobster, or a kind newer than this library's table.
    Internal = 1011,
}

impl lobster_result {
    /// Every code, for lookups by number.
    const ALL: [lobster_result; 18] = [
        lobster_result::Ok,
        lobster_result::Panic,
        lobster_result::NullParameter,
        lobster_result::InvalidUtf8,
        lobster_result::InteriorNul,
        lobster_result::RuntimeUnavailable,
        lobster_result::NotFound,
        lobster_result::AlreadyExists,
        lobster_result::InvalidArgument,
        lobster_result::InvalidState,
        lobster_result::PermissionDenied,
        lobster_result::Unsupported,
        lobster_result::Timeout,
        lobster_result::Exhausted,
        lobster_result::Corrupt,
        lobster_result::HostFailure,
        lobster_result::GuestFailure,
        lobster_result::Internal,
    ];

    /// The code of a core error kind.
    pub fn from_kind(kind: ErrorKind) -> lobster_result {
        match kind {
            ErrorKind::NotFound => lobster_result::NotFound,
            ErrorKind::AlreadyExists => lobster_result::AlreadyExists,
            ErrorKind::InvalidArgument => lobster_result::InvalidArgument,
            ErrorKind::InvalidState => lobster_result::InvalidState,
            ErrorKind::PermissionDenied => lobster_result::PermissionDenied,
            ErrorKind::Unsupported => lobster_result::Unsupported,
            ErrorKind::Timeout => lobster_result::Timeout,
            ErrorKind::Exhausted => lobster_result::Exhausted,
            ErrorKind::Corrupt => lobster_result::Corrupt,
            ErrorKind::HostFailure => lobster_result::HostFailure,
            ErrorKind::GuestFailure => lobster_result::GuestFailure,
            ErrorKind::Internal => lobster_result::Internal,
            // A kind newer than this table: still a failure, never success.
            _ => lobster_result::Internal,
        }
    }

    /// The stable snake_case name: the core kind's name for 1000.., else
    /// the boundary failure's own name.
    pub fn name(self) -> &'static CStr {
        match self {
            lobster_result::Ok => c"ok",
            lobster_result::Panic => c"panic",
            lobster_result::NullParameter => c"null_parameter",
            lobster_result::InvalidUtf8 => c"invalid_utf8",
            lobster_result::InteriorNul => c"interior_nul",
            lobster_result::RuntimeUnavailable => c"runtime_unavailable",
            lobster_result::NotFound => c"not_found",
            lobster_result::AlreadyExists => c"already_exists",
            lobster_result::InvalidArgument => c"invalid_argument",
            lobster_result::InvalidState => c"invalid_state",
            lobster_result::PermissionDenied => c"permission_denied",
            lobster_result::Unsupported => c"unsupported",
            lobster_result::Timeout => c"timeout",
            lobster_result::Exhausted => c"exhausted",
            lobster_result::Corrupt => c"corrupt",
            lobster_result::HostFailure => c"host_failure",
            lobster_result::GuestFailure => c"guest_failure",
            lobster_result::Internal => c"internal",
        }
    }
}

/// Why a call failed, before it becomes a code and an error object.
#[derive(Debug)]
pub enum Failure {
    /// The core reported an error.
    Core(lobster_core::Error),
    /// A required pointer argument was NULL.
    NullParameter(&'static str),
    /// A string argument was not UTF-8.
    InvalidUtf8(&'static str),
    /// A string to hand out contained NUL.
    InteriorNul(&'static str),
    /// A panic was caught; the payload's text if it had one.
    Panic(String),
    /// The runtime cannot be used.
    RuntimeUnavailable(String),
    /// An argument has a value the function does not take: its name, why.
    InvalidArgument(&'static str, String),
    /// The handle was closed (`lobster_log_follow_close`): what it was.
    Closed(&'static str),
}

impl From<lobster_core::Error> for Failure {
    fn from(err: lobster_core::Error) -> Self {
        Failure::Core(err)
    }
}

impl From<lobster_core::tenant::TenantError> for Failure {
    fn from(err: lobster_core::tenant::TenantError) -> Self {
        Failure::Core(err.into())
    }
}

impl Failure {
    /// The code this failure is reported as.
    pub fn result(&self) -> lobster_result {
        match self {
            Failure::Core(err) => lobster_result::from_kind(err.kind()),
            Failure::NullParameter(_) => lobster_result::NullParameter,
            Failure::InvalidUtf8(_) => lobster_result::InvalidUtf8,
            Failure::InteriorNul(_) => lobster_result::InteriorNul,
            Failure::Panic(_) => lobster_result::Panic,
            Failure::RuntimeUnavailable(_) => lobster_result::RuntimeUnavailable,
            Failure::InvalidArgument(..) => lobster_result::InvalidArgument,
            Failure::Closed(_) => lobster_result::InvalidState,
        }
    }

    /// The human-readable message (for core errors, the whole cause chain).
    pub fn message(&self, function: &str) -> String {
        match self {
            Failure::Core(err) => err.chain(),
            Failure::NullParameter(arg) => format!("{function}: argument `{arg}` is NULL"),
            Failure::InvalidUtf8(arg) => format!("{function}: argument `{arg}` is not UTF-8"),
            Failure::InteriorNul(what) => {
                format!(
                    "{function}: {what} contains a NUL byte and cannot be returned as a C string"
                )
            }
            Failure::Panic(payload) => {
                format!("{function}: lobster panicked (a bug, please report it): {payload}")
            }
            Failure::RuntimeUnavailable(why) => format!("{function}: {why}"),
            Failure::InvalidArgument(arg, why) => format!("{function}: argument `{arg}`: {why}"),
            Failure::Closed(what) => format!("{function}: the {what} was closed"),
        }
    }
}

/// An owned error: a code, its stable name and a message. Free it with
/// `lobster_error_free`.
#[derive(Debug)]
pub struct lobster_error {
    result: lobster_result,
    message: CString,
}

impl lobster_error {
    /// The error object describing `failure` in `function`.
    pub fn new(function: &str, failure: &Failure) -> lobster_error {
        let text = failure.message(function).replace('\0', "\\0");
        lobster_error {
            result: failure.result(),
            message: CString::new(text).unwrap_or_default(),
        }
    }
}

/// The code of an error; `LOBSTER_RESULT_NULL_PARAMETER` if `err` is NULL.
#[no_mangle]
pub extern "C" fn lobster_error_code(err: *const lobster_error) -> lobster_result {
    boundary_value(lobster_result::NullParameter, || {
        ffi::borrow(err, "err").map_or(lobster_result::NullParameter, |e| e.result)
    })
}

/// The stable snake_case name of an error's kind (`"not_found"`, ...): a
/// static string, never freed. `"null_parameter"` if `err` is NULL.
#[no_mangle]
pub extern "C" fn lobster_error_kind(err: *const lobster_error) -> *const c_char {
    boundary_value(c"panic".as_ptr(), || {
        let result = ffi::borrow(err, "err").map_or(lobster_result::NullParameter, |e| e.result);
        result.name().as_ptr()
    })
}

/// The message of an error (the whole cause chain), borrowed: valid until
/// `lobster_error_free(err)`. NULL if `err` is NULL.
#[no_mangle]
pub extern "C" fn lobster_error_message(err: *const lobster_error) -> *const c_char {
    boundary_value(std::ptr::null(), || {
        ffi::borrow(err, "err").map_or(std::ptr::null(), |e| e.message.as_ptr())
    })
}

/// Frees an error. NULL is ignored.
#[no_mangle]
pub extern "C" fn lobster_error_free(err: *mut lobster_error) {
    boundary_value((), || ffi::free(err));
}

/// The stable snake_case name of a result code (`"ok"`, `"not_found"`,
/// ...): a static string, never freed. `"unknown"` for a number that is no code.
#[no_mangle]
pub extern "C" fn lobster_result_name(code: u32) -> *const c_char {
    boundary_value(c"panic".as_ptr(), || {
        lobster_result::ALL
            .iter()
            .find(|r| **r as u32 == code)
            .map_or(c"unknown".as_ptr(), |r| r.name().as_ptr())
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The message of an error object, for tests.
    pub(crate) fn message_of(err: &lobster_error) -> String {
        err.message.to_string_lossy().into_owned()
    }

    #[test]
    fn every_kind_has_its_own_code_in_the_kind_block() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            let code = lobster_result::from_kind(kind);
            assert!((1000..2000).contains(&(code as u32)), "{kind}");
            assert_eq!(code.name().to_str().unwrap(), kind.as_str());
            assert!(seen.insert(code), "{kind} shares a code");
        }
    }

    #[test]
    fn names_are_unique_and_all_codes_listed() {
        let names: std::collections::HashSet<_> =
            lobster_result::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), lobster_result::ALL.len());
    }
}
