//! `lobster.TenantSpec`: keyword arguments in, a validated core `TenantSpec`
//! out. Validation is the core builder's; the error names the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lobster_core::config::Backend;
use lobster_core::tenant::{TenantError, TenantSpec};
use pyo3::prelude::*;

use crate::errors::IntoPyResult;

/// What a caller asks for when spawning a tenant. Unset sizes follow the
/// host's `tenant_defaults`.
#[pyclass(name = "TenantSpec", module = "lobster._lobster", frozen)]
#[derive(Debug, Clone)]
pub struct PyTenantSpec {
    spec: TenantSpec,
    vcpus: Option<u8>,
    memory_mib: Option<u32>,
    overlay_size_mib: Option<u32>,
    backend: Option<String>,
}

impl PyTenantSpec {
    /// The validated core spec.
    pub fn spec(&self) -> &TenantSpec {
        &self.spec
    }
}

fn invalid(field: &'static str, reason: String) -> TenantError {
    TenantError::InvalidSpec { field, reason }
}

/// `value` as the integer type the core takes, or an error naming `field`.
fn sized<T: TryFrom<i64>>(
    field: &'static str,
    value: Option<i64>,
) -> Result<Option<T>, TenantError> {
    value
        .map(|v| T::try_from(v).map_err(|_| invalid(field, format!("{v} is out of range"))))
        .transpose()
}

fn parse_backend(name: &str) -> Result<Backend, TenantError> {
    // serde's message lists the variants, so no list is kept here.
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|e| invalid("backend", e.to_string()))
}

#[pymethods]
impl PyTenantSpec {
    /// Validates every field; raises `InvalidArgumentError` naming the first bad one.
    #[new]
    #[pyo3(signature = (name, *, vcpus = None, memory_mib = None, overlay_size_mib = None, backend = None, env = None, secrets = None, from_snap = None, command = None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn new(
        name: String,
        vcpus: Option<i64>,
        memory_mib: Option<i64>,
        overlay_size_mib: Option<i64>,
        backend: Option<String>,
        env: Option<BTreeMap<String, String>>,
        secrets: Option<BTreeMap<String, String>>,
        from_snap: Option<PathBuf>,
        command: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let vcpus = sized::<u8>("vcpus", vcpus).py()?;
        let memory_mib = sized::<u32>("memory_mib", memory_mib).py()?;
        let overlay_size_mib = sized::<u32>("overlay_size_mib", overlay_size_mib).py()?;
        let mut builder = TenantSpec::builder(name);
        if let Some(v) = vcpus {
            builder = builder.vcpus(v);
        }
        if let Some(m) = memory_mib {
            builder = builder.memory_mib(m);
        }
        if let Some(m) = overlay_size_mib {
            builder = builder.overlay_size_mib(m);
        }
        if let Some(name) = &backend {
            builder = builder.backend(parse_backend(name).py()?);
        }
        for (key, value) in env.unwrap_or_default() {
            builder = builder.env(key, value);
        }
        for (key, value) in secrets.unwrap_or_default() {
            builder = builder.secret(key, value);
        }
        if let Some(archive) = from_snap {
            builder = builder.from_snap(archive);
        }
        if let Some(command) = command {
            builder = builder.command(command);
        }
        Ok(PyTenantSpec {
            spec: builder.build().py()?,
            vcpus,
            memory_mib,
            overlay_size_mib,
            backend,
        })
    }

    /// The tenant name.
    #[getter]
    fn name(&self) -> &str {
        self.spec.name()
    }

    /// Virtual CPUs, or `None` for the host default.
    #[getter]
    fn vcpus(&self) -> Option<u8> {
        self.vcpus
    }

    /// Guest memory in MiB, or `None` for the host default.
    #[getter]
    fn memory_mib(&self) -> Option<u32> {
        self.memory_mib
    }

    /// Overlay disk size in MiB, or `None` for the host default.
    #[getter]
    fn overlay_size_mib(&self) -> Option<u32> {
        self.overlay_size_mib
    }

    /// VMM backend, or `None` to follow the host.
    #[getter]
    fn backend(&self) -> Option<&str> {
        self.backend.as_deref()
    }

    /// Workload environment variables (a copy).
    #[getter]
    fn env(&self) -> BTreeMap<String, String> {
        self.spec.env().clone()
    }

    /// The `snap` archive whose disk the tenant restores, or `None`.
    #[getter(from_snap)]
    fn archive(&self) -> Option<&Path> {
        self.spec.from_snap()
    }

    /// The workload's argv, or an empty list for the OpenClaw gateway.
    #[getter]
    fn command(&self) -> Vec<String> {
        self.spec.command().to_vec()
    }

    /// Names of the workload secrets; their values are not shown (no
    /// attribute, no repr: only `_api_body()` serialises them, for
    /// `lobster.connect`'s spawn).
    #[getter]
    fn secret_names(&self) -> Vec<String> {
        self.spec.secrets().keys().cloned().collect()
    }

    /// The body of `POST /v1/tenants` asking for this spec (for
    /// `lobster.connect`; secrets included, so never log it).
    fn _api_body(&self) -> String {
        let mut body = serde_json::json!({
            "name": self.spec.name(),
            "env": self.spec.env(),
            "secrets": self.spec.secrets(),
            "command": self.spec.command(),
        });
        let fields = [
            ("vcpus", self.vcpus.map(u32::from)),
            ("memory_mib", self.memory_mib),
            ("overlay_size_mib", self.overlay_size_mib),
        ];
        for (field, value) in fields {
            if let Some(value) = value {
                body[field] = value.into();
            }
        }
        if let Some(backend) = &self.backend {
            body["backend"] = backend.as_str().into();
        }
        body.to_string()
    }

    fn __repr__(&self) -> String {
        let opt = |v: Option<u32>| v.map_or("None".to_owned(), |v| v.to_string());
        format!(
            "TenantSpec(name={:?}, vcpus={}, memory_mib={}, overlay_size_mib={}, backend={}, env={:?}, secret_names={:?}, from_snap={})",
            self.spec.name(),
            opt(self.vcpus.map(u32::from)),
            opt(self.memory_mib),
            opt(self.overlay_size_mib),
            self.backend.as_ref().map_or("None".to_owned(), |b| format!("{b:?}")),
            self.spec.env(),
            self.spec.secrets().keys().collect::<Vec<_>>(),
            self.spec
                .from_snap()
                .map_or("None".to_owned(), |p| format!("{:?}", p.display().to_string())),
        )
    }
}
