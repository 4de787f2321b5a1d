//! Pure planning of lobster's part of Caddy's JSON config: the server and
//! one route per tenant.
//!
//! The route is WebSocket-friendly: one route per tenant with no
//! `Connection` header matcher or rewrite (the original's case-sensitive
//! `Connection: *Upgrade*` matcher sent `Connection: upgrade` clients to a
//! route that forced `Connection: close`). Upstream keep-alive is off
//! instead, so no idle pooled connection keeps a guest looking busy, and
//! Caddy still proxies upgrades. Dials are retried for `upstream_retry_ms`
//! while a guest boots or resumes (or while the watchdog starts the wake
//! listener of a tenant just suspended).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::ProxyError;
use crate::config::{Config, TlsIssuer};

/// Everything the Caddy client needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// Caddy's admin API address (`host:port`).
    pub admin_address: String,
    /// The server lobster owns in Caddy's config.
    pub server_name: String,
    /// The server's listen addresses.
    pub listen: Vec<String>,
    /// Tenants are routed at `<name>.<domain>`.
    pub domain: String,
    /// Whether Caddy manages TLS for tenant hosts.
    pub automatic_https: bool,
    /// Who issues tenant hosts' certificates.
    pub tls_issuer: TlsIssuer,
    /// How long a request retries dialing the guest (0: once).
    pub upstream_retry: Duration,
    /// Bound on every admin API call.
    pub admin_timeout: Duration,
}

impl ProxySettings {
    /// The settings from a loaded configuration.
    pub fn from_config(config: &Config) -> ProxySettings {
        let p = &config.proxy;
        ProxySettings {
            admin_address: p.admin_address.clone(),
            server_name: p.server_name.clone(),
            listen: p.listen.clone(),
            domain: config.domain.clone(),
            automatic_https: p.automatic_https,
            tls_issuer: p.tls_issuer,
            upstream_retry: Duration::from_millis(p.upstream_retry_ms),
            admin_timeout: Duration::from_millis(p.admin_timeout_ms),
        }
    }

    /// The `@id` of a tenant's route: `<server_name>-<tenant>`.
    pub fn route_id(&self, tenant: &str) -> String {
        format!("{}-{tenant}", self.server_name)
    }

    /// The `@id` of lobster's TLS automation policy.
    pub fn tls_policy_id(&self) -> String {
        format!("{}-tls", self.server_name)
    }

    /// The host a tenant is served at.
    pub fn host(&self, tenant: &str) -> String {
        format!("{tenant}.{}", self.domain)
    }
}

/// Where a route sends its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// A TCP address: a running guest's gateway, `guest_ip:gateway_port`.
    Tcp(SocketAddr),
    /// A unix socket: a suspended tenant's wake listener.
    Unix(PathBuf),
}

/// Caddy's dial address: `ip:port`, or `unix/<path>`.
impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Tcp(addr) => write!(f, "{addr}"),
            Upstream::Unix(path) => write!(f, "unix/{}", path.display()),
        }
    }
}

/// One tenant's route: its name and where it proxies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRoute {
    /// The tenant name (a DNS label).
    pub name: String,
    /// The guest's gateway, or the wake listener of a suspended tenant.
    pub upstream: Upstream,
}

impl TenantRoute {
    /// A route for `name` to the TCP address `upstream`; the name must be a
    /// valid tenant name (a DNS label).
    pub fn new(name: &str, upstream: SocketAddr) -> Result<TenantRoute, ProxyError> {
        TenantRoute::to(name, Upstream::Tcp(upstream))
    }

    /// A route for `name` to `upstream`; the name must be a valid tenant
    /// name (a DNS label), a unix upstream an absolute path.
    pub fn to(name: &str, upstream: Upstream) -> Result<TenantRoute, ProxyError> {
        crate::store::name::validate_tenant_name(name).map_err(|reason| ProxyError::Invalid {
            field: "name",
            reason,
        })?;
        if let Upstream::Unix(path) = &upstream {
            if !path.is_absolute() {
                return Err(ProxyError::Invalid {
                    field: "upstream",
                    reason: format!("unix socket {} is not an absolute path", path.display()),
                });
            }
        }
        Ok(TenantRoute {
            name: name.to_string(),
            upstream,
        })
    }
}

/// A lobster route found in Caddy's config.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteInfo {
    /// The tenant name (from the `@id`).
    pub name: String,
    /// The matched hosts.
    pub hosts: Vec<String>,
    /// The upstream dial addresses.
    pub upstreams: Vec<String>,
    /// The route exactly as Caddy holds it.
    pub raw: Value,
}

impl RouteInfo {
    /// Reads a route if its `@id` is one of `settings`' tenant ids.
    pub fn parse(route: &Value, settings: &ProxySettings) -> Option<RouteInfo> {
        let id = route.get("@id")?.as_str()?;
        let name = id.strip_prefix(&format!("{}-", settings.server_name))?;
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let hosts = route
            .get("match")
            .and_then(Value::as_array)
            .map(|m| m.iter().flat_map(|m| strings(m.get("host"))).collect())
            .unwrap_or_default();
        let upstreams = route
            .get("handle")
            .and_then(Value::as_array)
            .map(|hs| {
                hs.iter()
                    .filter_map(|h| h.get("upstreams")?.as_array())
                    .flatten()
                    .filter_map(|u| u.get("dial")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Some(RouteInfo {
            name: name.to_string(),
            hosts,
            upstreams,
            raw: route.clone(),
        })
    }
}

fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The Caddy route for one tenant. No `flush_interval: -1`: with it Caddy
/// (2.6) ends every request in flight at each config change, any tenant's
/// spawn, evict or wake included; server-sent events are flushed at once
/// without it.
pub fn route_json(route: &TenantRoute, settings: &ProxySettings) -> Value {
    let mut proxy = json!({
        "handler": "reverse_proxy",
        "upstreams": [{ "dial": route.upstream.to_string() }],
        "transport": {
            "protocol": "http",
            "dial_timeout": "2s",
            "keep_alive": { "enabled": false },
        },
    });
    if !settings.upstream_retry.is_zero() {
        proxy["load_balancing"] = json!({
            "try_duration": go_duration(settings.upstream_retry),
            "try_interval": "250ms",
        });
    }
    json!({
        "@id": settings.route_id(&route.name),
        "match": [{ "host": [settings.host(&route.name)] }],
        "handle": [proxy],
        "terminal": true,
    })
}

/// Lobster's HTTP server as created when missing (no routes yet).
pub fn server_json(settings: &ProxySettings) -> Value {
    let mut server = json!({ "listen": settings.listen, "routes": [] });
    if !settings.automatic_https {
        server["automatic_https"] = json!({ "disable": true });
    }
    server
}

/// The PKI setting every Caddy lobster uses must hold: its local CA never
/// touches the system trust store (Caddy's default installs the root into
/// it with `update-ca-certificates`).
pub fn pki_json() -> Value {
    json!({ "certificate_authorities": { "local": { "install_trust": false } } })
}

/// Lobster's TLS automation policy: certificates for `<domain>` and
/// `*.<domain>` from Caddy's local CA. `None` when Caddy's own choice
/// applies (ACME for public names) or TLS is off.
pub fn tls_policy_json(settings: &ProxySettings) -> Option<Value> {
    if !settings.automatic_https || settings.tls_issuer != TlsIssuer::Internal {
        return None;
    }
    Some(json!({
        "@id": settings.tls_policy_id(),
        "subjects": [settings.domain, format!("*.{}", settings.domain)],
        "issuers": [{ "module": "internal" }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ProxySettings {
        ProxySettings::from_config(&Config::default())
    }

    #[test]
    fn route_is_one_websocket_friendly_route_per_tenant() {
        let route = TenantRoute::new("alice", "10.200.0.6:9000".parse().unwrap()).unwrap();
        let want = json!({
            "@id": "lobster-alice",
            "match": [{ "host": ["alice.lobster.local"] }],
            "handle": [{
                "handler": "reverse_proxy",
                "upstreams": [{ "dial": "10.200.0.6:9000" }],
                "transport": { "protocol": "http", "dial_timeout": "2s", "keep_alive": { "enabled": false } },
                "load_balancing": { "try_duration": "30000ms", "try_interval": "250ms" },
            }],
            "terminal": true,
        });
        assert_eq!(route_json(&route, &settings()), want);
        assert!(!route_json(&route, &settings())
            .to_string()
            .contains("Connection"));
    }

    #[test]
    fn a_route_reads_back_as_route_info() {
        let route = TenantRoute::new("bob", "10.200.0.10:9000".parse().unwrap()).unwrap();
        let info = RouteInfo::parse(&route_json(&route, &settings()), &settings()).unwrap();
        assert_eq!(info.name, "bob");
        assert_eq!(info.hosts, vec!["bob.lobster.local"]);
        assert_eq!(info.upstreams, vec!["10.200.0.10:9000"]);
        assert!(RouteInfo::parse(&json!({"@id": "other-bob"}), &settings()).is_none());
        assert!(RouteInfo::parse(&json!({"match": []}), &settings()).is_none());
    }

    #[test]
    fn a_unix_upstream_dials_caddy_s_unix_network() {
        let path = PathBuf::from("/run/lobsterd-wake/0a1b2c3d.sock");
        let route = TenantRoute::to("carol", Upstream::Unix(path)).unwrap();
        let json = route_json(&route, &settings());
        assert_eq!(
            json["handle"][0]["upstreams"],
            json!([{ "dial": "unix//run/lobsterd-wake/0a1b2c3d.sock" }])
        );
        let info = RouteInfo::parse(&json, &settings()).unwrap();
        assert_eq!(info.upstreams, vec![route.upstream.to_string()]);
        let relative = Upstream::Unix(PathBuf::from("wake/x.sock"));
        assert!(TenantRoute::to("carol", relative).is_err());
    }

    #[test]
    fn server_json_follows_the_tls_switch() {
        let mut s = settings();
        assert_eq!(server_json(&s), json!({"listen": [":443"], "routes": []}));
        s.automatic_https = false;
        assert_eq!(server_json(&s)["automatic_https"], json!({"disable": true}));
    }

    #[test]
    fn the_local_ca_issues_for_the_domain_unless_acme_is_chosen() {
        let mut s = settings();
        let policy = tls_policy_json(&s).unwrap();
        assert_eq!(policy["@id"], "lobster-tls");
        assert_eq!(
            policy["subjects"],
            json!(["lobster.local", "*.lobster.local"])
        );
        assert_eq!(policy["issuers"], json!([{ "module": "internal" }]));
        s.tls_issuer = TlsIssuer::Acme;
        assert_eq!(tls_policy_json(&s), None);
        s.tls_issuer = TlsIssuer::Internal;
        s.automatic_https = false;
        assert_eq!(tls_policy_json(&s), None);
        assert_eq!(
            pki_json().pointer("/certificate_authorities/local/install_trust"),
            Some(&json!(false))
        );
    }

    #[test]
    fn names_must_be_dns_labels() {
        let up: SocketAddr = "10.0.0.2:9000".parse().unwrap();
        for bad in ["", "Alice", "a.b", "-a", "a-", &"x".repeat(64)] {
            assert!(TenantRoute::new(bad, up).is_err(), "{bad}");
        }
        assert!(TenantRoute::new("a-1", up).is_ok());
    }
}
