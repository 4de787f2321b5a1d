//! `lobster_host`: the entry point, one function per core operation.
//!
//! A host is opened from a configuration file and freed with
//! `lobster_host_free`. Operations take a `const lobster_host *`: a host is
//! thread-safe and may be used from several threads at once. Each call
//! blocks on the shared runtime and holds no logic of its own.

use std::ffi::{c_char, c_void};

use lobster_core::tenant::EvictOptions;
use lobster_core::Host;

use crate::error::{lobster_error, lobster_result, Failure};
use crate::ffi::{self, lobster_progress_fn};
use crate::panic::{boundary, boundary_value};
use crate::runtime::block_on;
use crate::spec::lobster_tenant_spec;
use crate::tenant::{lobster_tenant, lobster_tenant_list};

/// An open lobster host (owned; thread-safe).
#[derive(Debug)]
pub struct lobster_host {
    host: Host,
}

impl lobster_host {
    /// The core host behind a handle.
    pub fn core<'a>(host: *const lobster_host) -> Result<&'a Host, Failure> {
        Ok(&ffi::borrow(host, "host")?.host)
    }
}

/// Opens the host described by `config_path`, else `$LOBSTERD_CONFIG`, else
/// `/etc/lobsterd/config.json` (`config_path` may be NULL). On success
/// `*out` is an owned host.
#[no_mangle]
pub extern "C" fn lobster_host_open(
    config_path: *const c_char,
    out: *mut *mut lobster_host,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_open", err_out, || {
        let path = ffi::opt_path_arg(config_path, "config_path")?;
        let out = ffi::out(out, "out")?;
        let host = Host::open(path)?;
        out.set(ffi::into_raw(lobster_host { host }));
        Ok(())
    })
}

/// Frees a host. NULL is ignored.
#[no_mangle]
pub extern "C" fn lobster_host_free(host: *mut lobster_host) {
    boundary_value((), || ffi::free(host));
}

/// Lists every tenant, sorted by name. On success `*out` is an owned list.
#[no_mangle]
pub extern "C" fn lobster_host_list(
    host: *const lobster_host,
    out: *mut *mut lobster_tenant_list,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_list", err_out, || {
        let host = lobster_host::core(host)?;
        let out = ffi::out(out, "out")?;
        let list = lobster_tenant_list::new(block_on(host.list())??)?;
        out.set(ffi::into_raw(list));
        Ok(())
    })
}

/// Lists every tenant as a JSON array (the `lobsterd list --json` document,
/// no tokens). On success `*out` is an owned string (`lobster_string_free`).
#[no_mangle]
pub extern "C" fn lobster_host_list_json(
    host: *const lobster_host,
    out: *mut *mut c_char,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_list_json", err_out, || {
        let host = lobster_host::core(host)?;
        let out = ffi::out(out, "out")?;
        let tenants = block_on(host.list())??;
        let json = serde_json::to_string(&tenants).expect("tenants serialise");
        out.set(ffi::string_into_raw(json, "tenant list JSON")?);
        Ok(())
    })
}

/// Looks a tenant up by name (`LOBSTER_RESULT_NOT_FOUND` if there is none).
/// On success `*out` is an owned tenant (`lobster_tenant_free`).
#[no_mangle]
pub extern "C" fn lobster_host_get(
    host: *const lobster_host,
    name: *const c_char,
    out: *mut *mut lobster_tenant,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_get", err_out, || {
        let host = lobster_host::core(host)?;
        let name = ffi::str_arg(name, "name")?;
        let out = ffi::out(out, "out")?;
        let tenant = lobster_tenant::new(block_on(host.get(name))??)?;
        out.set(ffi::into_raw(tenant));
        Ok(())
    })
}

/// The token clients present to a tenant's gateway (a secret). On success
/// `*out` is an owned string (`lobster_string_free`).
#[no_mangle]
pub extern "C" fn lobster_host_token(
    host: *const lobster_host,
    name: *const c_char,
    out: *mut *mut c_char,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_token", err_out, || {
        let host = lobster_host::core(host)?;
        let name = ffi::str_arg(name, "name")?;
        let out = ffi::out(out, "out")?;
        let token = block_on(host.token(name))??;
        out.set(ffi::string_into_raw(token, "token")?);
        Ok(())
    })
}

/// Gives a running tenant new agent and gateway tokens: the guest and
/// its gateway refuse the old ones afterwards. On success `*out` is the
/// tenant, owned (`lobster_tenant_free`).
#[no_mangle]
pub extern "C" fn lobster_host_rotate_tokens(
    host: *const lobster_host,
    name: *const c_char,
    out: *mut *mut lobster_tenant,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_rotate_tokens", err_out, || {
        let host = lobster_host::core(host)?;
        let name = ffi::str_arg(name, "name")?;
        let out = ffi::out(out, "out")?;
        let tenant = lobster_tenant::new(block_on(host.rotate_tokens(name))??)?;
        out.set(ffi::into_raw(tenant));
        Ok(())
    })
}

/// Creates and starts a tenant from a spec (the spec stays the caller's).
/// On success `*out` is an owned tenant (`lobster_tenant_free`).
#[no_mangle]
pub extern "C" fn lobster_host_spawn(
    host: *const lobster_host,
    spec: *const lobster_tenant_spec,
    out: *mut *mut lobster_tenant,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_spawn", err_out, || {
        let host = lobster_host::core(host)?;
        let spec = ffi::borrow(spec, "spec")?.spec().clone();
        let out = ffi::out(out, "out")?;
        let tenant = lobster_tenant::new(block_on(host.spawn(spec))??)?;
        out.set(ffi::into_raw(tenant));
        Ok(())
    })
}

/// `lobster_host_spawn`, calling `progress` (if not NULL) with each step as
/// a JSON object (`{"operation","tenant","step","phase":{"phase":
/// "started"|"done"|"failed","elapsed"?}}`, `elapsed` in microseconds, the
/// steps `lobsterd spawn` prints) and `context`. The callback may run on a
/// lobster thread, never two calls at once, all before this returns; the
/// string is borrowed for the call. It must not call back into lobster.
#[no_mangle]
pub extern "C" fn lobster_host_spawn_with_progress(
    host: *const lobster_host,
    spec: *const lobster_tenant_spec,
    progress: lobster_progress_fn,
    context: *mut c_void,
    out: *mut *mut lobster_tenant,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_spawn_with_progress", err_out, || {
        let host = lobster_host::core(host)?;
        let spec = ffi::borrow(spec, "spec")?.spec().clone();
        let out = ffi::out(out, "out")?;
        let sink = ffi::progress_sink(progress, context);
        let tenant = lobster_tenant::new(block_on(host.spawn_with_progress(spec, sink))??)?;
        out.set(ffi::into_raw(tenant));
        Ok(())
    })
}

/// `lobster_host_evict_with` flag: leave the tenant's overlay disk in place.
pub const LOBSTER_EVICT_KEEP_OVERLAY: u32 = 1;

/// Removes a tenant and everything it holds.
#[no_mangle]
pub extern "C" fn lobster_host_evict(
    host: *const lobster_host,
    name: *const c_char,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_evict", err_out, || {
        let host = lobster_host::core(host)?;
        let name = ffi::str_arg(name, "name")?;
        Ok(block_on(host.evict(name))??)
    })
}

/// `lobster_host_evict` with `flags`: 0, or `LOBSTER_EVICT_KEEP_OVERLAY`.
/// An unknown flag bit is `LOBSTER_RESULT_INVALID_ARGUMENT`, before anything is done.
#[no_mangle]
pub extern "C" fn lobster_host_evict_with(
    host: *const lobster_host,
    name: *const c_char,
    flags: u32,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_evict_with", err_out, || {
        let host = lobster_host::core(host)?;
        let name = ffi::str_arg(name, "name")?;
        let unknown = flags & !LOBSTER_EVICT_KEEP_OVERLAY;
        if unknown != 0 {
            return Err(Failure::InvalidArgument(
                "flags",
                format!("unknown flag bits {unknown:#x}"),
            ));
        }
        let options = EvictOptions {
            keep_overlay: flags & LOBSTER_EVICT_KEEP_OVERLAY != 0,
        };
        Ok(block_on(host.evict_with(name, options))??)
    })
}

/// Writes a crash-consistent, sparse, zstd-compressed copy of a tenant's
/// overlay disk (the VM is paused for the copy only) to the file `output`,
/// or to the snapshots directory when `output` is NULL. On success `*out`
/// is an owned string (`lobster_string_free`): the report as JSON
/// (`{"path","disk_bytes","archive_bytes","paused_ms"}`, the `lobsterd snap
/// --json` document).
#[no_mangle]
pub extern "C" fn lobster_host_snap(
    host: *const lobster_host,
    name: *const c_char,
    output: *const c_char,
    out: *mut *mut c_char,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_snap", err_out, || {
        let host = lobster_host::core(host)?;
        let name = ffi::str_arg(name, "name")?;
        let output = ffi::opt_path_arg(output, "output")?.map(ToOwned::to_owned);
        let out = ffi::out(out, "out")?;
        let report = block_on(host.snap(name, output))??;
        let json = serde_json::to_string(&report).expect("a snap report serialises");
        out.set(ffi::string_into_raw(json, "snap report JSON")?);
        Ok(())
    })
}

/// Health-checks one tenant, or every tenant that should run when `name`
/// is NULL, and repairs what failed. On success `*out` is an owned string
/// (`lobster_string_free`): a JSON array with one report per tenant (the
/// `lobsterd molt --json` document; `[]` when there was nothing to check).
#[no_mangle]
pub extern "C" fn lobster_host_molt(
    host: *const lobster_host,
    name: *const c_char,
    out: *mut *mut c_char,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_molt", err_out, || {
        let host = lobster_host::core(host)?;
        let name = ffi::opt_str_arg(name, "name")?;
        let out = ffi::out(out, "out")?;
        let reports = block_on(host.molt(name))??;
        let json = serde_json::to_string(&reports).expect("molt reports serialise");
        out.set(ffi::string_into_raw(json, "molt report JSON")?);
        Ok(())
    })
}

/// A snapshot of every tenant with the watchdog's view, as a JSON object
/// (the `lobsterd tank --json` document). Only reads. On success `*out` is
/// an owned string (`lobster_string_free`).
#[no_mangle]
pub extern "C" fn lobster_host_overview(
    host: *const lobster_host,
    out: *mut *mut c_char,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_overview", err_out, || {
        let host = lobster_host::core(host)?;
        let out = ffi::out(out, "out")?;
        let overview = block_on(host.overview())??;
        let json = serde_json::to_string(&overview).expect("an overview serialises");
        out.set(ffi::string_into_raw(json, "overview JSON")?);
        Ok(())
    })
}

/// Writes a running tenant's memory and device state to disk and stops its
/// VM. On success `*out` is the suspended tenant, owned
/// (`lobster_tenant_free`).
#[no_mangle]
pub extern "C" fn lobster_host_suspend(
    host: *const lobster_host,
    name: *const c_char,
    out: *mut *mut lobster_tenant,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_suspend", err_out, || {
        let host = lobster_host::core(host)?;
        let name = ffi::str_arg(name, "name")?;
        let out = ffi::out(out, "out")?;
        let tenant = lobster_tenant::new(block_on(host.suspend(name))??)?;
        out.set(ffi::into_raw(tenant));
        Ok(())
    })
}

/// Starts a suspended tenant again from its snapshot. On success `*out` is
/// the running tenant, owned (`lobster_tenant_free`).
#[no_mangle]
pub extern "C" fn lobster_host_resume(
    host: *const lobster_host,
    name: *const c_char,
    out: *mut *mut lobster_tenant,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_resume", err_out, || {
        let host = lobster_host::core(host)?;
        let name = ffi::str_arg(name, "name")?;
        let out = ffi::out(out, "out")?;
        let tenant = lobster_tenant::new(block_on(host.resume(name))??)?;
        out.set(ffi::into_raw(tenant));
        Ok(())
    })
}

/// `lobster_host_suspend`, reporting each step to `progress` as
/// `lobster_host_spawn_with_progress` does.
#[no_mangle]
pub extern "C" fn lobster_host_suspend_with_progress(
    host: *const lobster_host,
    name: *const c_char,
    progress: lobster_progress_fn,
    context: *mut c_void,
    out: *mut *mut lobster_tenant,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_suspend_with_progress", err_out, || {
        let host = lobster_host::core(host)?;
        let name = ffi::str_arg(name, "name")?;
        let out = ffi::out(out, "out")?;
        let sink = ffi::progress_sink(progress, context);
        let tenant = lobster_tenant::new(block_on(host.suspend_with_progress(name, sink))??)?;
        out.set(ffi::into_raw(tenant));
        Ok(())
    })
}

/// `lobster_host_resume`, reporting each step to `progress` as
/// `lobster_host_spawn_with_progress` does.
#[no_mangle]
pub extern "C" fn lobster_host_resume_with_progress(
    host: *const lobster_host,
    name: *const c_char,
    progress: lobster_progress_fn,
    context: *mut c_void,
    out: *mut *mut lobster_tenant,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_resume_with_progress", err_out, || {
        let host = lobster_host::core(host)?;
        let name = ffi::str_arg(name, "name")?;
        let out = ffi::out(out, "out")?;
        let sink = ffi::progress_sink(progress, context);
        let tenant = lobster_tenant::new(block_on(host.resume_with_progress(name, sink))??)?;
        out.set(ffi::into_raw(tenant));
        Ok(())
    })
}
