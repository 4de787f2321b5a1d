//! Tenants as C sees them: `lobster_tenant` (one snapshot) and
//! `lobster_tenant_list` (the result of `lobster_host_list`).
//!
//! Every string accessor returns a borrowed `const char *` owned by the
//! tenant: valid until the tenant, or the list it came from, is freed. A
//! tenant borrowed from a list (`const lobster_tenant *`) is never freed on
//! its own; one a host call returns (`lobster_host_get`, `_spawn`, ...) is
//! owned and freed with `lobster_tenant_free`.

use std::ffi::{c_char, CString};

use lobster_core::config::Backend;
use lobster_core::Tenant;

use crate::error::{lobster_error, lobster_result, Failure};
use crate::ffi;
use crate::panic::{boundary, boundary_value};

/// One tenant as the registry last recorded it (read-only snapshot).
#[derive(Debug)]
pub struct lobster_tenant {
    tenant: Tenant,
    name: CString,
    id: CString,
    status: CString,
    route: CString,
    guest_ip: CString,
    host_ip: CString,
    subnet: CString,
    mac: CString,
    tap: CString,
    backend: Option<CString>,
    last_error: Option<CString>,
}

impl lobster_tenant {
    /// The C view of a core tenant (its strings rendered once, here).
    pub fn new(tenant: Tenant) -> Result<lobster_tenant, Failure> {
        let c = |text: String, what: &'static str| {
            CString::new(text).map_err(|_| Failure::InteriorNul(what))
        };
        let a = tenant.allocation();
        Ok(lobster_tenant {
            name: c(tenant.name().to_owned(), "tenant name")?,
            id: c(tenant.id().to_owned(), "tenant id")?,
            status: c(tenant.status().as_str().to_owned(), "tenant status")?,
            route: c(tenant.route().to_owned(), "tenant route")?,
            guest_ip: c(a.guest_ip.to_string(), "guest ip")?,
            host_ip: c(a.host_ip.to_string(), "host ip")?,
            subnet: c(a.subnet.to_string(), "subnet")?,
            mac: c(a.mac.clone(), "mac")?,
            tap: c(a.tap.clone(), "tap")?,
            backend: match tenant.resources().backend {
                Some(backend) => Some(c(backend_name(backend), "backend")?),
                None => None,
            },
            last_error: match &tenant.record().last_error {
                Some(text) => Some(c(text.clone(), "last error")?),
                None => None,
            },
            tenant,
        })
    }
}

/// A backend's configuration name (`"qemu"`, ...).
fn backend_name(backend: Backend) -> String {
    match serde_json::to_value(backend) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{backend:?}").to_lowercase(),
    }
}

/// Tenants returned by `lobster_host_list`, sorted by name.
#[derive(Debug)]
pub struct lobster_tenant_list {
    tenants: Vec<lobster_tenant>,
}

impl lobster_tenant_list {
    /// The C view of a list of core tenants.
    pub fn new(tenants: Vec<Tenant>) -> Result<lobster_tenant_list, Failure> {
        Ok(lobster_tenant_list {
            tenants: tenants
                .into_iter()
                .map(lobster_tenant::new)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The number of tenants in a list (0 if `list` is NULL).
#[no_mangle]
pub extern "C" fn lobster_tenant_list_len(list: *const lobster_tenant_list) -> usize {
    boundary_value(0, || {
        ffi::borrow(list, "list").map_or(0, |l| l.tenants.len())
    })
}

/// The tenant at `index`, borrowed from the list (valid until the list is
/// freed; do not free it). NULL if `list` is NULL or `index` out of range.
#[no_mangle]
pub extern "C" fn lobster_tenant_list_get(
    list: *const lobster_tenant_list,
    index: usize,
) -> *const lobster_tenant {
    boundary_value(std::ptr::null(), || {
        ffi::borrow(list, "list")
            .ok()
            .and_then(|l| l.tenants.get(index))
            .map_or(std::ptr::null(), |t| t as *const lobster_tenant)
    })
}

/// Frees a list and every tenant borrowed from it. NULL is ignored.
#[no_mangle]
pub extern "C" fn lobster_tenant_list_free(list: *mut lobster_tenant_list) {
    boundary_value((), || ffi::free(list));
}

/// Frees a tenant a call returned as owned (`lobster_host_get`, `_spawn`,
/// `_suspend`, `_resume`, `_rotate_tokens`, the `_with_progress` calls).
/// NULL is ignored. Never pass a tenant borrowed from a list.
#[no_mangle]
pub extern "C" fn lobster_tenant_free(tenant: *mut lobster_tenant) {
    boundary_value((), || ffi::free(tenant));
}

/// The tenant as JSON (the `lobsterd list --json` document, no tokens), as an
/// owned string freed with `lobster_string_free`.
#[no_mangle]
pub extern "C" fn lobster_tenant_json(
    tenant: *const lobster_tenant,
    out: *mut *mut c_char,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_tenant_json", err_out, || {
        let tenant = ffi::borrow(tenant, "tenant")?;
        let out = ffi::out(out, "out")?;
        let json = serde_json::to_string(&tenant.tenant).expect("a tenant serialises");
        out.set(ffi::string_into_raw(json, "tenant JSON")?);
        Ok(())
    })
}

// Accessors are written out one by one (no macro): cbindgen does not expand
// macros, and each needs its own line in the header.

/// A borrowed string field of a tenant, or NULL if `tenant` is NULL.
fn string_field(
    tenant: *const lobster_tenant,
    field: fn(&lobster_tenant) -> &CString,
) -> *const c_char {
    boundary_value(std::ptr::null(), || {
        ffi::borrow(tenant, "tenant").map_or(std::ptr::null(), |t| field(t).as_ptr())
    })
}

/// A borrowed string field a tenant may lack: NULL then, or if `tenant` is NULL.
fn optional_field(
    tenant: *const lobster_tenant,
    field: fn(&lobster_tenant) -> Option<&CString>,
) -> *const c_char {
    boundary_value(std::ptr::null(), || {
        ffi::borrow(tenant, "tenant")
            .ok()
            .and_then(field)
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// A number field of a tenant, or 0 if `tenant` is NULL.
fn number_field<T: Default>(tenant: *const lobster_tenant, field: fn(&lobster_tenant) -> T) -> T {
    boundary_value(T::default(), || {
        ffi::borrow(tenant, "tenant").map_or(T::default(), field)
    })
}

/// The tenant name (a DNS label).
/// Borrowed: valid while the tenant (or its list) lives; NULL if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_name(tenant: *const lobster_tenant) -> *const c_char {
    string_field(tenant, |t| &t.name)
}

/// Short id naming the tenant's interfaces and jail.
/// Borrowed: valid while the tenant (or its list) lives; NULL if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_id(tenant: *const lobster_tenant) -> *const c_char {
    string_field(tenant, |t| &t.id)
}

/// Lifecycle state: creating, running, suspended, stopped, failed or evicting.
/// Borrowed: valid while the tenant (or its list) lives; NULL if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_status(tenant: *const lobster_tenant) -> *const c_char {
    string_field(tenant, |t| &t.status)
}

/// The host name routed to the tenant: `<name>.<domain>`.
/// Borrowed: valid while the tenant (or its list) lives; NULL if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_route(tenant: *const lobster_tenant) -> *const c_char {
    string_field(tenant, |t| &t.route)
}

/// The guest's IPv4 address on its /30, dotted quad.
/// Borrowed: valid while the tenant (or its list) lives; NULL if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_guest_ip(tenant: *const lobster_tenant) -> *const c_char {
    string_field(tenant, |t| &t.guest_ip)
}

/// The host side of the tenant's /30, dotted quad.
/// Borrowed: valid while the tenant (or its list) lives; NULL if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_host_ip(tenant: *const lobster_tenant) -> *const c_char {
    string_field(tenant, |t| &t.host_ip)
}

/// The tenant's /30 network address, dotted quad.
/// Borrowed: valid while the tenant (or its list) lives; NULL if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_subnet(tenant: *const lobster_tenant) -> *const c_char {
    string_field(tenant, |t| &t.subnet)
}

/// The guest NIC's MAC address.
/// Borrowed: valid while the tenant (or its list) lives; NULL if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_mac(tenant: *const lobster_tenant) -> *const c_char {
    string_field(tenant, |t| &t.mac)
}

/// The host TAP device name.
/// Borrowed: valid while the tenant (or its list) lives; NULL if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_tap(tenant: *const lobster_tenant) -> *const c_char {
    string_field(tenant, |t| &t.tap)
}

/// Virtual CPUs. 0 if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_vcpus(tenant: *const lobster_tenant) -> u8 {
    number_field(tenant, |t| t.tenant.resources().vcpus)
}

/// Guest memory in MiB. 0 if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_memory_mib(tenant: *const lobster_tenant) -> u32 {
    number_field(tenant, |t| t.tenant.resources().memory_mib)
}

/// Overlay disk size in MiB. 0 if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_overlay_size_mib(tenant: *const lobster_tenant) -> u32 {
    number_field(tenant, |t| t.tenant.resources().overlay_size_mib)
}

/// Host TCP port reserved for the tenant. 0 if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_host_port(tenant: *const lobster_tenant) -> u16 {
    number_field(tenant, |t| t.tenant.allocation().host_port)
}

/// Uid of the tenant's VMM process. 0 if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_jail_uid(tenant: *const lobster_tenant) -> u32 {
    number_field(tenant, |t| t.tenant.allocation().jail_uid)
}

/// Seconds since the Unix epoch at creation. 0 if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_created_at(tenant: *const lobster_tenant) -> u64 {
    number_field(tenant, |t| t.tenant.created_at())
}

/// The VMM backend chosen for this tenant (`"firecracker"`, `"qemu"`,
/// `"auto"`), or NULL when it follows the host's configuration.
/// Borrowed: valid while the tenant (or its list) lives; NULL if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_backend(tenant: *const lobster_tenant) -> *const c_char {
    optional_field(tenant, |t| t.backend.as_ref())
}

/// Why the tenant failed, or what its last operation reported; NULL if
/// nothing was. Borrowed: valid while the tenant (or its list) lives; NULL
/// if `tenant` is NULL.
#[no_mangle]
pub extern "C" fn lobster_tenant_last_error(tenant: *const lobster_tenant) -> *const c_char {
    optional_field(tenant, |t| t.last_error.as_ref())
}

/// Process id of the tenant's VMM as last recorded; 0 when none runs (or
/// `tenant` is NULL).
#[no_mangle]
pub extern "C" fn lobster_tenant_vm_pid(tenant: *const lobster_tenant) -> u32 {
    number_field(tenant, |t| {
        t.tenant
            .record()
            .vm
            .as_ref()
            .map_or(0, |vm| vm.identity.pid.unsigned_abs())
    })
}
