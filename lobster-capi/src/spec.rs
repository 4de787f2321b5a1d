//! `lobster_tenant_spec_builder` and `lobster_tenant_spec`: what a spawn
//! asks for. Setters record values; `_build` validates them all (the error
//! names the first bad field) and consumes the builder.

use std::ffi::c_char;

use lobster_core::config::Backend;
use lobster_core::tenant::{TenantError, TenantSpec, TenantSpecBuilder};

use crate::error::{lobster_error, lobster_result};
use crate::ffi;
use crate::panic::{boundary, boundary_value};

/// A tenant spec under construction (owned; consumed by `_build`).
#[derive(Debug)]
pub struct lobster_tenant_spec_builder {
    /// `None` only while a setter runs.
    builder: Option<TenantSpecBuilder>,
}

/// A validated tenant spec (owned; read-only once built).
#[derive(Debug)]
pub struct lobster_tenant_spec {
    spec: TenantSpec,
}

impl lobster_tenant_spec {
    /// The core spec.
    pub fn spec(&self) -> &TenantSpec {
        &self.spec
    }
}

impl lobster_tenant_spec_builder {
    fn apply(&mut self, change: impl FnOnce(TenantSpecBuilder) -> TenantSpecBuilder) {
        let builder = self.builder.take().expect("builder present between calls");
        self.builder = Some(change(builder));
    }
}

/// Starts a spec for a tenant called `name` (checked by `_build`).
#[no_mangle]
pub extern "C" fn lobster_tenant_spec_builder_new(
    name: *const c_char,
    out: *mut *mut lobster_tenant_spec_builder,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_tenant_spec_builder_new", err_out, || {
        let name = ffi::str_arg(name, "name")?;
        let out = ffi::out(out, "out")?;
        out.set(ffi::into_raw(lobster_tenant_spec_builder {
            builder: Some(TenantSpec::builder(name)),
        }));
        Ok(())
    })
}

/// Sets the virtual CPUs (1..=32, checked by `_build`).
#[no_mangle]
pub extern "C" fn lobster_tenant_spec_builder_set_vcpus(
    builder: *mut lobster_tenant_spec_builder,
    vcpus: u8,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_tenant_spec_builder_set_vcpus", err_out, || {
        ffi::borrow_mut(builder, "builder")?.apply(|b| b.vcpus(vcpus));
        Ok(())
    })
}

/// Sets the guest memory in MiB (128..=262144, checked by `_build`).
#[no_mangle]
pub extern "C" fn lobster_tenant_spec_builder_set_memory_mib(
    builder: *mut lobster_tenant_spec_builder,
    memory_mib: u32,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary(
        "lobster_tenant_spec_builder_set_memory_mib",
        err_out,
        || {
            ffi::borrow_mut(builder, "builder")?.apply(|b| b.memory_mib(memory_mib));
            Ok(())
        },
    )
}

/// Sets the overlay disk size in MiB (64..=1048576, checked by `_build`).
#[no_mangle]
pub extern "C" fn lobster_tenant_spec_builder_set_overlay_size_mib(
    builder: *mut lobster_tenant_spec_builder,
    overlay_size_mib: u32,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary(
        "lobster_tenant_spec_builder_set_overlay_size_mib",
        err_out,
        || {
            ffi::borrow_mut(builder, "builder")?.apply(|b| b.overlay_size_mib(overlay_size_mib));
            Ok(())
        },
    )
}

/// Sets the VMM backend: `"auto"`, `"firecracker"` or `"qemu"`.
#[no_mangle]
pub extern "C" fn lobster_tenant_spec_builder_set_backend(
    builder: *mut lobster_tenant_spec_builder,
    backend: *const c_char,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_tenant_spec_builder_set_backend", err_out, || {
        let builder = ffi::borrow_mut(builder, "builder")?;
        let name = ffi::str_arg(backend, "backend")?;
        // serde's message lists the variants, so no list is kept here.
        let backend: Backend = serde_json::from_value(serde_json::Value::String(name.into()))
            .map_err(|e| TenantError::InvalidSpec {
                field: "backend",
                reason: e.to_string(),
            })?;
        builder.apply(|b| b.backend(backend));
        Ok(())
    })
}

/// Adds a workload environment variable (name checked by `_build`).
#[no_mangle]
pub extern "C" fn lobster_tenant_spec_builder_add_env(
    builder: *mut lobster_tenant_spec_builder,
    key: *const c_char,
    value: *const c_char,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_tenant_spec_builder_add_env", err_out, || {
        let builder = ffi::borrow_mut(builder, "builder")?;
        let (key, value) = (ffi::str_arg(key, "key")?, ffi::str_arg(value, "value")?);
        builder.apply(|b| b.env(key, value));
        Ok(())
    })
}

/// Adds a workload secret such as an API key (never logged or printed).
#[no_mangle]
pub extern "C" fn lobster_tenant_spec_builder_add_secret(
    builder: *mut lobster_tenant_spec_builder,
    key: *const c_char,
    value: *const c_char,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_tenant_spec_builder_add_secret", err_out, || {
        let builder = ffi::borrow_mut(builder, "builder")?;
        let (key, value) = (ffi::str_arg(key, "key")?, ffi::str_arg(value, "value")?);
        builder.apply(|b| b.secret(key, value));
        Ok(())
    })
}

/// Sets the workload's command instead of the OpenClaw gateway: `argc`
/// arguments at `argv` (each UTF-8; `argv[0]` the program). `argc` 0
/// restores the default workload (`argv` may then be NULL).
#[no_mangle]
pub extern "C" fn lobster_tenant_spec_builder_set_command(
    builder: *mut lobster_tenant_spec_builder,
    argv: *const *const c_char,
    argc: usize,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_tenant_spec_builder_set_command", err_out, || {
        let builder = ffi::borrow_mut(builder, "builder")?;
        let command = ffi::str_array_arg(argv, argc, "argv")?;
        builder.apply(|b| b.command(command));
        Ok(())
    })
}

/// Restores the disk of the `snap` archive at `archive` instead of a blank
/// overlay (its size becomes the overlay's; tokens and secrets are made
/// afresh). The archive is checked by the spawn, before anything is made.
#[no_mangle]
pub extern "C" fn lobster_tenant_spec_builder_set_from_snap(
    builder: *mut lobster_tenant_spec_builder,
    archive: *const c_char,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_tenant_spec_builder_set_from_snap", err_out, || {
        let builder = ffi::borrow_mut(builder, "builder")?;
        let archive = ffi::path_arg(archive, "archive")?;
        builder.apply(|b| b.from_snap(archive));
        Ok(())
    })
}

/// Validates the spec. Consumes `builder` whatever the outcome: do not use
/// or free it afterwards. On success `*out` is an owned spec.
#[no_mangle]
pub extern "C" fn lobster_tenant_spec_builder_build(
    builder: *mut lobster_tenant_spec_builder,
    out: *mut *mut lobster_tenant_spec,
    err_out: *mut *mut lobster_error,
) -> lobster_result {
    boundary("lobster_tenant_spec_builder_build", err_out, || {
        let builder = ffi::take(builder, "builder")?;
        let out = ffi::out(out, "out")?;
        let builder = builder.builder.expect("builder present between calls");
        out.set(ffi::into_raw(lobster_tenant_spec {
            spec: builder.build()?,
        }));
        Ok(())
    })
}

/// Frees a builder that was never built. NULL is ignored.
#[no_mangle]
pub extern "C" fn lobster_tenant_spec_builder_free(builder: *mut lobster_tenant_spec_builder) {
    boundary_value((), || ffi::free(builder));
}

/// Frees a spec. NULL is ignored.
#[no_mangle]
pub extern "C" fn lobster_tenant_spec_free(spec: *mut lobster_tenant_spec) {
    boundary_value((), || ffi::free(spec));
}
