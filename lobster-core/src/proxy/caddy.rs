//! Lobster's routes in a running Caddy: ensure the server (and that the
//! local CA stays out of the system trust store), add, replace, remove and
//! list tenant routes by `@id`, and reconcile them with the registry. Only
//! missing keys are created and only lobster's own settings and routes are
//! written; the one exception is lobster's own server, which holds nothing
//! but lobster's routes: a foreign route there (one placed ahead of a
//! tenant's would take its traffic) is reported and removed by `reconcile`.

use serde_json::{json, Value};

use super::admin::AdminClient;
use super::routes::{
    pki_json, route_json, server_json, tls_policy_json, ProxySettings, RouteInfo, TenantRoute,
};
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
    /// Routes that were not lobster's but sat in lobster's server (where
    /// they could take a tenant's traffic), removed; each as Caddy held it
    /// (compact JSON).
    pub foreign: Vec<String>,
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

    /// Makes sure Caddy's local CA never touches the system trust store,
    /// lobster's TLS policy is in place, and lobster's HTTP server exists
    /// with the configured listen addresses and TLS switch. Creates only
    /// what is missing (never loads a whole config), so existing routes
    /// survive. Returns true if it changed anything.
    pub async fn ensure_server(&self) -> Result<bool, ProxyError> {
        let mut config = self.client.get_json("/config/").await?;
        let install_trust = [
            "apps",
            "pki",
            "certificate_authorities",
            "local",
            "install_trust",
        ];
        let want = pointer(&pki_json(), &install_trust[2..])
            .expect("pki_json sets install_trust")
            .clone();
        let mut changed = self.ensure_at(&mut config, &install_trust, want).await?;
        changed |= self.ensure_tls_policy(&mut config).await?;
        let name = self.settings.server_name.as_str();
        let server = ["apps", "http", "servers", name];
        if pointer(&config, &server).is_none_or(Value::is_null) {
            let created = self
                .ensure_at(&mut config, &server, server_json(&self.settings))
                .await?;
            return Ok(created || changed);
        }
        let field = |key: &'static str| ["apps", "http", "servers", name, key];
        changed |= self
            .ensure_at(&mut config, &field("listen"), json!(self.settings.listen))
            .await?;
        let disabled = pointer(&config, &field("automatic_https"))
            .and_then(|v| v.get("disable"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if disabled == self.settings.automatic_https {
            let value = json!({ "disable": !self.settings.automatic_https });
            changed |= self
                .ensure_at(&mut config, &field("automatic_https"), value)
                .await?;
        }
        if pointer(&config, &field("routes")).is_none_or(Value::is_null) {
            changed |= self
                .ensure_at(&mut config, &field("routes"), json!([]))
                .await?;
        }
        Ok(changed)
    }

    /// Makes the config hold `want` at `segments`, judged on `config` (the
    /// config as last read, read again after a change): creates the
    /// missing keys in one request, or replaces a differing value. Returns
    /// true if it changed anything.
    async fn ensure_at(
        &self,
        config: &mut Value,
        segments: &[&str],
        want: Value,
    ) -> Result<bool, ProxyError> {
        // The deepest existing key; the rest is created in one request.
        let mut depth = 0;
        let mut existing = &*config;
        while depth < segments.len() {
            match existing.get(segments[depth]) {
                Some(v) if !v.is_null() => {
                    existing = v;
                    depth += 1;
                }
                _ => break,
            }
        }
        if depth == segments.len() {
            if *existing == want {
                return Ok(false);
            }
            let path = format!("/config/{}", segments.join("/"));
            self.client.call("PATCH", &path, Some(&want)).await?;
        } else if config.is_null() {
            let value = segments
                .iter()
                .rev()
                .fold(want, |v, key| json!({ *key: v }));
            self.client.call("POST", "/config/", Some(&value)).await?;
        } else {
            let value = segments[depth + 1..]
                .iter()
                .rev()
                .fold(want, |v, key| json!({ *key: v }));
            let path = format!("/config/{}", segments[..=depth].join("/"));
            self.client.call("PUT", &path, Some(&value)).await?;
        }
        *config = self.client.get_json("/config/").await?;
        Ok(true)
    }

    /// Puts lobster's TLS automation policy first (so no broader policy
    /// shadows it), replaces it when it differs, or removes it when Caddy's
    /// own issuer choice applies. Returns true if it changed anything.
    async fn ensure_tls_policy(&self, config: &mut Value) -> Result<bool, ProxyError> {
        let policies = ["apps", "tls", "automation", "policies"];
        let id = self.settings.tls_policy_id();
        let list = pointer(config, &policies).and_then(Value::as_array);
        let current = list.and_then(|l| {
            l.iter()
                .position(|p| p.get("@id").and_then(Value::as_str) == Some(id.as_str()))
        });
        let at = |index: usize| format!("/config/{}/{index}", policies.join("/"));
        match (tls_policy_json(&self.settings), current) {
            (None, None) => return Ok(false),
            (None, Some(index)) => self.client.call("DELETE", &at(index), None).await?,
            (Some(want), Some(index)) => {
                if list.and_then(|l| l.get(index)) == Some(&want) {
                    return Ok(false);
                }
                self.client.call("PATCH", &at(index), Some(&want)).await?
            }
            // PUT on an array index inserts there.
            (Some(want), None) if list.is_some() => {
                self.client.call("PUT", &at(0), Some(&want)).await?
            }
            (Some(want), None) => return self.ensure_at(config, &policies, json!([want])).await,
        };
        *config = self.client.get_json("/config/").await?;
        Ok(true)
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

    /// Removes lobster's HTTP server (and every route in it) and lobster's
    /// TLS automation policy (`uninit`); the rest of Caddy's config stays
    /// as it is. Returns true if it removed anything.
    pub async fn remove_server(&self) -> Result<bool, ProxyError> {
        let config = self.client.get_json("/config/").await?;
        let mut removed = false;
        let policies = ["apps", "tls", "automation", "policies"];
        let id = self.settings.tls_policy_id();
        let ours = pointer(&config, &policies)
            .and_then(Value::as_array)
            .and_then(|l| {
                l.iter()
                    .position(|p| p.get("@id").and_then(Value::as_str) == Some(id.as_str()))
            });
        if let Some(index) = ours {
            let path = format!("/config/{}/{index}", policies.join("/"));
            self.client.call("DELETE", &path, None).await?;
            removed = true;
        }
        let server = [
            "apps",
            "http",
            "servers",
            self.settings.server_name.as_str(),
        ];
        if pointer(&config, &server).is_some_and(|v| !v.is_null()) {
            self.client
                .call("DELETE", &self.server_path(), None)
                .await?;
            removed = true;
        }
        Ok(removed)
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
    /// is ensured, foreign routes in it removed (and reported), missing
    /// routes added, differing ones replaced, routes of tenants not listed
    /// removed. Other servers are left alone.
    pub async fn reconcile(&self, routes: &[TenantRoute]) -> Result<ReconcileReport, ProxyError> {
        self.ensure_server().await?;
        let mut report = ReconcileReport {
            foreign: self.remove_foreign_routes().await?,
            ..ReconcileReport::default()
        };
        let current = self.list_routes().await?;
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

    /// Removes every route in lobster's server that is not a tenant route
    /// (last first, so the indices of the others hold); returns them as
    /// compact JSON.
    async fn remove_foreign_routes(&self) -> Result<Vec<String>, ProxyError> {
        let path = format!("{}/routes", self.server_path());
        let routes = self.client.get_json(&path).await?;
        let foreign: Vec<(usize, String)> = routes
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(_, r)| RouteInfo::parse(r, &self.settings).is_none())
            .map(|(i, r)| (i, r.to_string()))
            .collect();
        for (index, _) in foreign.iter().rev() {
            self.client
                .call("DELETE", &format!("{path}/{index}"), None)
                .await?;
        }
        Ok(foreign.into_iter().map(|(_, r)| r).collect())
    }
}

/// The value at `segments` inside `config`, if there is one.
fn pointer<'a>(config: &'a Value, segments: &[&str]) -> Option<&'a Value> {
    segments.iter().try_fold(config, |v, key| v.get(*key))
}
