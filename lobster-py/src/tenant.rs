//! `lobster.Tenant`: an immutable snapshot of one tenant's record.
//!
//! Attributes mirror the core `Tenant` accessors; `to_dict()` and
//! `to_json()` give the same document as `lobsterd list --json` (no tokens:
//! `Host.token(name)` is the one way to read a gateway token).

use lobster_core::{Tenant, TenantJson};
use pyo3::prelude::*;
use serde_json::Value;

use crate::json::json_to_py;

/// One tenant as the registry last recorded it.
#[pyclass(name = "Tenant", module = "lobster._lobster", frozen, eq)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyTenant {
    inner: TenantJson,
}

impl From<Tenant> for PyTenant {
    fn from(tenant: Tenant) -> Self {
        PyTenant {
            inner: TenantJson::from(&tenant),
        }
    }
}

#[pymethods]
impl PyTenant {
    /// Reads a tenant back from its JSON document (one element of
    /// `lobsterd list --json`, or a tenant the HTTP API returned).
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<PyTenant> {
        serde_json::from_str(text)
            .map(|inner| PyTenant { inner })
            .map_err(|e| crate::errors::invalid_argument(format!("tenant JSON: {e}")))
    }

    /// The tenant name (a DNS label).
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// Short id naming its interfaces and jail.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }

    /// Lifecycle state: creating, running, suspended, stopped, failed or evicting.
    #[getter]
    fn status(&self) -> &'static str {
        self.inner.status.as_str()
    }

    /// The host name routed to it: `<name>.<domain>`.
    #[getter]
    fn route(&self) -> &str {
        &self.inner.route
    }

    /// The guest's IPv4 address on its /30.
    #[getter]
    fn guest_ip(&self) -> String {
        self.inner.allocation.guest_ip.to_string()
    }

    /// The host side of the tenant's /30.
    #[getter]
    fn host_ip(&self) -> String {
        self.inner.allocation.host_ip.to_string()
    }

    /// The tenant's /30 network address.
    #[getter]
    fn subnet(&self) -> String {
        self.inner.allocation.subnet.to_string()
    }

    /// Guest NIC MAC address.
    #[getter]
    fn mac(&self) -> &str {
        &self.inner.allocation.mac
    }

    /// Host TAP device name.
    #[getter]
    fn tap(&self) -> &str {
        &self.inner.allocation.tap
    }

    /// Host TCP port reserved for the tenant.
    #[getter]
    fn host_port(&self) -> u16 {
        self.inner.allocation.host_port
    }

    /// Uid of the tenant's VMM process.
    #[getter]
    fn jail_uid(&self) -> u32 {
        self.inner.allocation.jail_uid
    }

    /// Virtual CPUs.
    #[getter]
    fn vcpus(&self) -> u8 {
        self.inner.resources.vcpus
    }

    /// Guest memory in MiB.
    #[getter]
    fn memory_mib(&self) -> u32 {
        self.inner.resources.memory_mib
    }

    /// Overlay disk size in MiB.
    #[getter]
    fn overlay_size_mib(&self) -> u32 {
        self.inner.resources.overlay_size_mib
    }

    /// VMM backend chosen for this tenant, or `None` to follow the host.
    #[getter]
    fn backend(&self) -> Option<String> {
        self.inner
            .resources
            .backend
            .map(|b| match serde_json::to_value(b) {
                Ok(Value::String(name)) => name,
                _ => format!("{b:?}").to_lowercase(),
            })
    }

    /// Seconds since the Unix epoch at creation.
    #[getter]
    fn created_at(&self) -> u64 {
        self.inner.created_at
    }

    /// Process id of the running VMM, if one runs.
    #[getter]
    fn vm_pid(&self) -> Option<u32> {
        self.inner
            .vm
            .as_ref()
            .map(|vm| vm.identity.pid.unsigned_abs())
    }

    /// Why the tenant failed, or what the last operation reported.
    #[getter]
    fn last_error(&self) -> Option<&str> {
        self.inner.last_error.as_deref()
    }

    /// The tenant as a dict of plain values (the `list --json` document).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.json_value())
    }

    /// The tenant as a JSON string (the `list --json` document);
    /// `pretty=True` indents it.
    #[pyo3(signature = (*, pretty = false))]
    fn to_json(&self, pretty: bool) -> String {
        let value = self.json_value();
        if pretty {
            serde_json::to_string_pretty(&value).expect("a Value serialises")
        } else {
            value.to_string()
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Tenant(name={:?}, status={:?}, route={:?}, guest_ip={:?})",
            self.inner.name,
            self.inner.status.as_str(),
            self.inner.route,
            self.inner.allocation.guest_ip.to_string(),
        )
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.inner.name.hash(&mut hasher);
        self.inner.id.hash(&mut hasher);
        hasher.finish()
    }
}

impl PyTenant {
    fn json_value(&self) -> Value {
        serde_json::to_value(&self.inner).expect("a tenant serialises")
    }
}
