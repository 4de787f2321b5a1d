//! The reverse proxy: a Caddy admin API client that keeps one route per
//! tenant (`<name>.<domain>` to the guest's gateway).
//!
//! Lobster owns one HTTP server inside Caddy's config (`proxy.server_name`)
//! and only ever creates missing keys or replaces its own routes by `@id`;
//! it never loads a whole config over existing routes, so re-running `init`
//! or `reconcile` cannot drop tenants. Routes are planned as JSON by pure
//! functions ([`route_json`], [`server_json`]). Every admin call has a
//! timeout, and every error names the admin address.
//!
//! Security: the admin API is a unix socket in Caddy's private directory
//! (root and Caddy only); the Caddy lobster starts runs as `proxy.user`
//! with nothing but the capability to bind low ports ([`caddy_uid`] names
//! that user's uid for the firewall); tenant hosts are served over HTTPS by
//! default from a local CA that never enters the system trust store
//! ([`ca_root`]). A suspended tenant's route goes to its wake socket
//! ([`WakeListener`]), reachable by root and Caddy's user only.

mod admin;
mod caddy;
#[cfg(any(test, feature = "testing"))]
mod fake;
mod routes;
mod start;
mod wake;

pub use admin::AdminClient;
pub use caddy::{BoxFuture, Caddy, ReconcileReport, RouteOps};
#[cfg(any(test, feature = "testing"))]
pub use fake::FakeRoutes;
pub use routes::{route_json, server_json, ProxySettings, RouteInfo, TenantRoute, Upstream};
pub use start::{
    ca_root, caddy_ids, caddy_uid, ensure_installed, ensure_running, prepare, CaddyStart,
    SpawnOptions,
};
pub use wake::{
    bind_group_socket, bind_wake_socket, ReportFn, WakeFn, WakeLimits, WakeListener, WakeReport,
    AFTER_WAKE_GRACE,
};

use crate::base::{Classify, ErrorKind};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// An I/O error on a named path or device.
    #[error("{context}")]
    Io {
        /// What was being done, naming the path or device.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Nothing answers at the admin address (Caddy down or not started).
    #[error("caddy admin api at {admin} is not reachable")]
    Unreachable {
        /// The admin address.
        admin: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The admin API did not answer in time.
    #[error("caddy admin api at {admin}: {method} {path} did not answer within {timeout_ms} ms")]
    Timeout {
        /// The admin address.
        admin: String,
        /// The HTTP method.
        method: &'static str,
        /// The request path.
        path: String,
        /// The bound that expired.
        timeout_ms: u64,
    },
    /// The HTTP exchange itself failed.
    #[error("caddy admin api at {admin}: {method} {path} failed")]
    Http {
        /// The admin address.
        admin: String,
        /// The HTTP method.
        method: &'static str,
        /// The request path.
        path: String,
        /// The cause.
        #[source]
        source: hyper::Error,
    },
    /// Caddy answered with an error status.
    #[error("caddy admin api at {admin} refused {method} {path}: {status} {message}")]
    Refused {
        /// The admin address.
        admin: String,
        /// The HTTP method.
        method: &'static str,
        /// The request path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// Caddy's error text.
        message: String,
    },
    /// Caddy's answer was not the JSON expected.
    #[error("caddy admin api at {admin}: unexpected answer to GET {path}")]
    BadReply {
        /// The admin address.
        admin: String,
        /// The request path.
        path: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// An argument is malformed (tenant name, address).
    #[error("proxy field `{field}`: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Caddy could not be installed or started.
    #[error("cannot start caddy: {reason}")]
    Start {
        /// What went wrong (with a log excerpt when there is one).
        reason: String,
        /// The cause, when an I/O call failed.
        #[source]
        source: Option<std::io::Error>,
    },
}

impl Classify for ProxyError {
    fn kind(&self) -> ErrorKind {
        match self {
            ProxyError::Io { source, .. } => ErrorKind::from_io(source),
            ProxyError::Unreachable { .. } | ProxyError::Http { .. } => ErrorKind::HostFailure,
            ProxyError::Timeout { .. } => ErrorKind::Timeout,
            ProxyError::Refused { status: 404, .. } => ErrorKind::NotFound,
            ProxyError::Refused { status: 403, .. } => ErrorKind::PermissionDenied,
            ProxyError::Refused { .. } | ProxyError::BadReply { .. } => ErrorKind::HostFailure,
            ProxyError::Invalid { .. } => ErrorKind::InvalidArgument,
            ProxyError::Start { source, .. } => match source {
                Some(e) if e.kind() == std::io::ErrorKind::NotFound => ErrorKind::Unsupported,
                Some(e) => ErrorKind::from_io(e),
                None => ErrorKind::HostFailure,
            },
        }
    }
}
