//! `lobster_host`: the entry point, one function per core operation.
//!
//! A host is opened from a configuration file and freed with
//! `lobster_host_free`. Operations take a `const lobster_host *`: a host is
//! thread-safe and may be used from several threads at once. Each call
//! blocks on the shared runtime and holds no logic of its own.

use std::ffi::c_char;

use lobster_core::Host;

use crate::error::{lobster_error, lobster_result};
use crate::ffi;
use crate::panic::{boundary, boundary_value};
use crate::runtime::block_on;
use crate::spec::lobster_tenant_spec;
use crate::tenant::{lobster_tenant, lobster_tenant_list};

/// An open lobster host (owned; thread-safe).
#[derive(Debug)]
pub struct lobster_host {
    host: Host,
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
        let host = &ffi::borrow(host, "host")?.host;
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
        let host = &ffi::borrow(host, "host")?.host;
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
        let host = &ffi::borrow(host, "host")?.host;
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
        let host = &ffi::borrow(host, "host")?.host;
        let name = ffi::str_arg(name, "name")?;
        let out = ffi::out(out, "out")?;
        let token = block_on(host.token(name))??;
        out.set(ffi::string_into_raw(token, "token")?);
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
        let host = &ffi::borrow(host, "host")?.host;
        let spec = ffi::borrow(spec, "spec")?.spec().clone();
        let out = ffi::out(out, "out")?;
        let tenant = lobster_tenant::new(block_on(host.spawn(spec))??)?;
        out.set(ffi::into_raw(tenant));
        Ok(())
    })
}

/// Removes a tenant and everything it holds.
#[no_mangle]
pub extern "C" fn lobster_host_evict(
    host: *const lobster_host,
    name: *const c_char,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_host_evict", err_out, || {
        let host = &ffi::borrow(host, "host")?.host;
        let name = ffi::str_arg(name, "name")?;
        Ok(block_on(host.evict(name))??)
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
        let host = &ffi::borrow(host, "host")?.host;
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
        let host = &ffi::borrow(host, "host")?.host;
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
        let host = &ffi::borrow(host, "host")?.host;
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
        let host = &ffi::borrow(host, "host")?.host;
        let name = ffi::str_arg(name, "name")?;
        let out = ffi::out(out, "out")?;
        let tenant = lobster_tenant::new(block_on(host.resume(name))??)?;
        out.set(ffi::into_raw(tenant));
        Ok(())
    })
}
