//! The only module with `unsafe` blocks: turning C pointers into Rust
//! references and values, and back.
//!
//! Every helper NULL-checks and names the argument in its error. The
//! contract each relies on is the C API's own, stated in the header: a
//! non-NULL handle points to a live object made by this library and not yet
//! freed; a `const` handle is only read, a non-`const` one is not used from
//! two threads at once; strings are NUL-terminated. Objects handed to C are
//! `Box`es (`into_raw`) and come back exactly once (`free` / `take`).

use std::ffi::{c_char, c_void, CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use lobster_core::tenant::progress::{ProgressEvent, ProgressSink};

use crate::error::{lobster_error, Failure};

/// Borrows the object behind a handle for the length of one call.
pub fn borrow<'a, T>(ptr: *const T, name: &'static str) -> Result<&'a T, Failure> {
    // SAFETY: by the C API contract a non-NULL handle points to a live,
    // aligned `T` made by `into_raw`; `as_ref` checks for NULL.
    unsafe { ptr.as_ref() }.ok_or(Failure::NullParameter(name))
}

/// Borrows the object behind a non-`const` handle mutably for one call.
pub fn borrow_mut<'a, T>(ptr: *mut T, name: &'static str) -> Result<&'a mut T, Failure> {
    // SAFETY: as for `borrow`; in addition the contract says a non-`const`
    // handle is not used from two threads at once, so this is the only reference.
    unsafe { ptr.as_mut() }.ok_or(Failure::NullParameter(name))
}

/// Moves `value` to the heap and hands ownership to C.
pub fn into_raw<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back ownership of an object handed out by [`into_raw`].
pub fn take<T>(ptr: *mut T, name: &'static str) -> Result<T, Failure> {
    if ptr.is_null() {
        return Err(Failure::NullParameter(name));
    }
    // SAFETY: non-NULL, and by the contract it came from `into_raw` and is
    // given back exactly once (the caller must not use it afterwards).
    Ok(*unsafe { Box::from_raw(ptr) })
}

/// Drops an object handed out by [`into_raw`]; NULL is ignored.
pub fn free<T>(ptr: *mut T) {
    drop(take(ptr, "object"));
}

/// A borrowed UTF-8 string argument.
pub fn str_arg<'a>(ptr: *const c_char, name: &'static str) -> Result<&'a str, Failure> {
    cstr_arg(ptr, name)?
        .to_str()
        .map_err(|_| Failure::InvalidUtf8(name))
}

/// A borrowed UTF-8 string argument that may be NULL.
pub fn opt_str_arg<'a>(ptr: *const c_char, name: &'static str) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    str_arg(ptr, name).map(Some)
}

/// An array argument of `len` UTF-8 strings, copied (NULL allowed when
/// `len` is 0).
pub fn str_array_arg(
    ptr: *const *const c_char,
    len: usize,
    name: &'static str,
) -> Result<Vec<String>, Failure> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(Failure::NullParameter(name));
    }
    // SAFETY: non-NULL, and by the contract it points to `len` readable
    // string pointers that outlive the call.
    let items = unsafe { std::slice::from_raw_parts(ptr, len) };
    items
        .iter()
        .map(|&item| str_arg(item, name).map(str::to_owned))
        .collect()
}

/// A borrowed path argument (any bytes but NUL).
pub fn path_arg<'a>(ptr: *const c_char, name: &'static str) -> Result<&'a Path, Failure> {
    Ok(Path::new(OsStr::from_bytes(
        cstr_arg(ptr, name)?.to_bytes(),
    )))
}

/// A borrowed path argument that may be NULL (any bytes but NUL).
pub fn opt_path_arg<'a>(
    ptr: *const c_char,
    name: &'static str,
) -> Result<Option<&'a Path>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    Ok(Some(Path::new(OsStr::from_bytes(
        cstr_arg(ptr, name)?.to_bytes(),
    ))))
}

fn cstr_arg<'a>(ptr: *const c_char, name: &'static str) -> Result<&'a CStr, Failure> {
    if ptr.is_null() {
        return Err(Failure::NullParameter(name));
    }
    // SAFETY: non-NULL, and by the contract a NUL-terminated string that
    // outlives the call.
    Ok(unsafe { CStr::from_ptr(ptr) })
}

/// An out-parameter checked to be non-NULL; written only by [`Out::set`],
/// which the caller does last, once the call has succeeded.
#[derive(Debug)]
pub struct Out<T> {
    ptr: NonNull<T>,
}

/// Checks an out-parameter before any work is done.
pub fn out<T>(ptr: *mut T, name: &'static str) -> Result<Out<T>, Failure> {
    NonNull::new(ptr)
        .map(|ptr| Out { ptr })
        .ok_or(Failure::NullParameter(name))
}

impl<T: Copy> Out<T> {
    /// Stores the result. `T` is a pointer or number: nothing old is dropped.
    pub fn set(self, value: T) {
        // SAFETY: non-NULL (checked in `out`), and by the contract it points
        // to writable storage for a `T`, which may be uninitialised: `write`
        // does not read or drop the old value.
        unsafe { self.ptr.as_ptr().write(value) }
    }
}

/// Stores an error object for the caller if it asked for one (`err_out`
/// not NULL); otherwise drops it.
pub fn store_error(err_out: *mut *mut lobster_error, err: lobster_error) {
    if let Ok(slot) = out(err_out, "err_out") {
        slot.set(into_raw(err));
    }
}

/// Hands an owned C string to the caller (freed with `lobster_string_free`).
pub fn string_into_raw(text: String, what: &'static str) -> Result<*mut c_char, Failure> {
    CString::new(text)
        .map(CString::into_raw)
        .map_err(|_| Failure::InteriorNul(what))
}

/// Takes back a string made by [`string_into_raw`]; NULL is ignored.
pub fn string_free(ptr: *mut c_char) {
    if !ptr.is_null() {
        // SAFETY: by the contract it came from `CString::into_raw` in
        // `string_into_raw` and is freed exactly once.
        drop(unsafe { CString::from_raw(ptr) });
    }
}

/// A C progress callback: the event as JSON (borrowed for the call) and the
/// caller's context pointer.
pub type lobster_progress_fn = Option<unsafe extern "C" fn(*const c_char, *mut c_void)>;

/// The caller's context pointer, carried to whichever thread reports.
struct Context(*mut c_void);

// SAFETY: lobster never dereferences the pointer; it only hands it back to
// the caller's callback, whose contract (stated in the header) is that it
// may be called from any thread, one call at a time.
unsafe impl Send for Context {}

/// A progress sink calling `callback` with each event as JSON, one call at
/// a time; `None` when `callback` is NULL.
pub fn progress_sink(callback: lobster_progress_fn, context: *mut c_void) -> Option<ProgressSink> {
    let callback = callback?;
    let context = Mutex::new(Context(context));
    Some(Arc::new(move |event: &ProgressEvent| {
        let json = serde_json::to_string(event).expect("a progress event serialises");
        let Ok(json) = CString::new(json) else { return };
        let context = context
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY: the callback is the caller's, called as the header says:
        // with a NUL-terminated string valid for the call and the context
        // pointer it gave, never twice at once (the lock is held).
        unsafe { callback(json.as_ptr(), context.0) }
    }))
}
