//! Lobster's routes in a running Caddy: ensure the server, add, replace,
//! remove and list tenant routes by `@id`, and reconcile them with the
//! registry. Only missing keys are created and only lobster's own routes
//! are written, so nothing else in Caddy's config is ever replaced.

use serde_json::{json, Value};

use super::admin::AdminClient;
use super::routes::{route_json, server_json, ProxySettings, RouteInfo, TenantRoute};
use super::ProxyError;

/// A boxed future, so [`RouteOps`] stays object-safe.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The seam tenant lifecycle code calls for routes; [`Caddy`] is the real one.
pub trait RouteOps: Send + Sync + std::fmt::Debug {
    /// Adds or replaces the tenant's route; true if anything changed.
    fn put_route<'a>(&'a self, route: &'a TenantRoute) -> BoxFuture<'a, Result<bool, ProxyError>>;
    /// Removes the tenant's route; false if there was none.
    fn remove_route<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, ProxyError>>;
    /// Lobster's routes as the proxy holds them.
    fn list_routes(&self) -> BoxFuture<'_, Result<Vec<RouteInfo>, ProxyError>>;
    /// Makes the proxy hold exactly `routes` among lobster's routes.
    fn reconcile<'a>(
        &'a self,
        routes: &'a [TenantRoute],
    ) -> BoxFuture<'a, Result<ReconcileReport, ProxyError>>;
}

impl RouteOps for Caddy {
    fn put_route<'a>(&'a self, route: &'a TenantRoute) -> BoxFuture<'a, Result<bool, ProxyError>> {
        Box::pin(Caddy::put_route(self, route))
    }

    fn remove_route<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, ProxyError>> {
        Box::pin(Caddy::remove_route(self, name))
    }

    fn list_routes(&self) -> BoxFuture<'_, Result<Vec<RouteInfo>, ProxyError>> {
        Box::pin(Caddy::list_routes(self))
    }

    fn reconcile<'a>(
        &'a self,
        routes: &'a [TenantRoute],
    ) -> BoxFuture<'a, Result<ReconcileReport, ProxyError>> {
        Box::pin(Caddy::reconcile(self, routes))
    }
}

/// What `reconcile` changed, by tenant name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Routes that were missing and were added.
    pub added: Vec<String>,
    /// Routes that differed and were replaced.
    pub replaced: Vec<String>,
    /// Lobster routes of tenants no longer listed, removed.
    pub removed: Vec<String>,
}

/// A Caddy admin API client for lobster's server and routes.
#[derive(Debug, Clone)]
pub struct Caddy {
    client: AdminClient,
    settings: ProxySettings,
}

impl Caddy {
    /// A client for the Caddy at `settings.admin_address`.
    pub fn new(settings: ProxySettings) -> Caddy {
        Caddy {
            client: AdminClient::new(&settings.admin_address, settings.admin_timeout),
            settings,
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &ProxySettings {
        &self.settings
    }

    /// True when the admin API answers.
    pub async fn is_up(&self) -> bool {
        self.client.get_json("/config/").await.is_ok()
    }

    fn server_path(&self) -> String {
        format!("/config/apps/http/servers/{}", self.settings.server_name)
    }

    /// Makes sure lobster's HTTP server exists with the configured listen
    /// addresses and TLS switch. Creates only what is missing (never loads a
    /// whole config), so existing routes survive. Returns true if it changed
    /// anything.
    pub async fn ensure_server(&self) -> Result<bool, ProxyError> {
        let segments = [
            "apps",
            "http",
            "servers",
            self.settings.server_name.as_str(),
        ];
        // Find the deepest existing key, then create the rest in one PUT.
        let mut depth = 0;
        let mut existing = self.client.get_json("/config/").await?;
        if existing.is_null() {
            let mut value = server_json(&self.settings);
            for key in segments.iter().rev() {
                value = json!({ *key: value });
            }
            self.client.call("POST", "/config/", Some(&value)).await?;
            return Ok(true);
        }
        while depth < segments.len() {
            match existing.get(segments[depth]) {
                Some(v) if !v.is_null() => {
                    existing = v.clone();
                    depth += 1;
                }
                _ => break,
            }
        }
        if depth < segments.len() {
            let mut value = server_json(&self.settings);
            for key in segments[depth + 1..].iter().rev() {
                value = json!({ *key: value });
            }
            let path = format!("/config/{}", segments[..=depth].join("/"));
            self.client.call("PUT", &path, Some(&value)).await?;
            return Ok(true);
        }
        // The server exists: fix only the fields lobster manages.
        let mut changed = false;
        let want_listen = json!(self.settings.listen);
        if existing.get("listen") != Some(&want_listen) {
            let path = format!("{}/listen", self.server_path());
            let method = if existing.get("listen").is_some() {
                "PATCH"
            } else {
                "PUT"
            };
            self.client.call(method, &path, Some(&want_listen)).await?;
            changed = true;
        }
        let disabled = existing
            .pointer("/automatic_https/disable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if disabled == self.settings.automatic_https {
            let path = format!("{}/automatic_https", self.server_path());
            let value = json!({ "disable": !self.settings.automatic_https });
            let method = if existing.get("automatic_https").is_some() {
                "PATCH"
            } else {
                "PUT"
            };
            self.client.call(method, &path, Some(&value)).await?;
            changed = true;
        }
        if existing.get("routes").is_none_or(Value::is_null) {
            let path = format!("{}/routes", self.server_path());
            self.client.call("PUT", &path, Some(&json!([]))).await?;
            changed = true;
        }
        Ok(changed)
    }

    /// Adds the tenant's route, or replaces it in place (same `@id`) when it
    /// differs. Returns true if it changed anything.
    pub async fn put_route(&self, route: &TenantRoute) -> Result<bool, ProxyError> {
        let want = route_json(route, &self.settings);
        let id_path = format!("/id/{}", self.settings.route_id(&route.name));
        let reply = self.client.send("GET", &id_path, None).await?;
        match reply.status {
            404 => {
                let path = format!("{}/routes", self.server_path());
                self.client.call("POST", &path, Some(&want)).await?;
                Ok(true)
            }
            200..=299 => {
                let current: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
                if current == want {
                    return Ok(false);
                }
                self.client.call("PATCH", &id_path, Some(&want)).await?;
                Ok(true)
            }
            _ => Err(self.client.refused("GET", &id_path, &reply)),
        }
    }

    /// Removes the tenant's route. Returns false if there was none.
    pub async fn remove_route(&self, name: &str) -> Result<bool, ProxyError> {
        let id_path = format!("/id/{}", self.settings.route_id(name));
        let reply = self.client.send("DELETE", &id_path, None).await?;
        match reply.status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.client.refused("DELETE", &id_path, &reply)),
        }
    }

    /// Lobster's routes as Caddy holds them (empty if the server is missing).
    pub async fn list_routes(&self) -> Result<Vec<RouteInfo>, ProxyError> {
        let path = format!("{}/routes", self.server_path());
        let reply = self.client.send("GET", &path, None).await?;
        // A missing parent path is "no routes", not an error.
        if reply.status == 404 || reply.status == 400 {
            return Ok(Vec::new());
        }
        if !(200..300).contains(&reply.status) {
            return Err(self.client.refused("GET", &path, &reply));
        }
        let routes: Value =
            serde_json::from_slice(&reply.body).map_err(|source| ProxyError::BadReply {
                admin: self.settings.admin_address.clone(),
                path: path.clone(),
                source,
            })?;
        Ok(routes
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| RouteInfo::parse(r, &self.settings))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Makes Caddy hold exactly `routes` among lobster's routes: the server
    /// is ensured, missing routes added, differing ones replaced, routes of
    /// tenants not listed removed. Other routes are left alone.
    pub async fn reconcile(&self, routes: &[TenantRoute]) -> Result<ReconcileReport, ProxyError> {
        self.ensure_server().await?;
        let current = self.list_routes().await?;
        let mut report = ReconcileReport::default();
        for info in &current {
            if !routes.iter().any(|r| r.name == info.name) {
                self.remove_route(&info.name).await?;
                report.removed.push(info.name.clone());
            }
        }
        for route in routes {
            let want = route_json(route, &self.settings);
            match current.iter().find(|i| i.name == route.name) {
                Some(info) if info.raw == want => {}
                Some(_) => {
                    self.put_route(route).await?;
                    report.replaced.push(route.name.clone());
                }
                None => {
                    self.put_route(route).await?;
                    report.added.push(route.name.clone());
                }
            }
        }
        Ok(report)
    }
}
