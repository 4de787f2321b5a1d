//! An in-memory [`RouteOps`] for tests of code that manages tenant routes:
//! holds routes as the JSON Caddy would get, records calls, and can be told
//! to fail (as if Caddy were down).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::caddy::{BoxFuture, RouteOps};
use super::routes::{route_json, ProxySettings, RouteInfo, TenantRoute};
use super::{ProxyError, ReconcileReport};

/// A fake proxy keeping lobster's routes in memory.
#[derive(Debug)]
pub struct FakeRoutes {
    settings: ProxySettings,
    routes: Mutex<BTreeMap<String, TenantRoute>>,
    down: Mutex<bool>,
}

impl FakeRoutes {
    /// An empty fake planning routes with `settings`.
    pub fn new(settings: ProxySettings) -> FakeRoutes {
        FakeRoutes {
            settings,
            routes: Mutex::new(BTreeMap::new()),
            down: Mutex::new(false),
        }
    }

    /// While `down`, every call fails like an unreachable Caddy.
    pub fn set_down(&self, down: bool) {
        *self.down.lock().expect("not poisoned") = down;
    }

    fn up(&self) -> Result<(), ProxyError> {
        if *self.down.lock().expect("not poisoned") {
            return Err(ProxyError::Unreachable {
                admin: self.settings.admin_address.clone(),
                source: std::io::ErrorKind::ConnectionRefused.into(),
            });
        }
        Ok(())
    }
}

impl RouteOps for FakeRoutes {
    fn put_route<'a>(&'a self, route: &'a TenantRoute) -> BoxFuture<'a, Result<bool, ProxyError>> {
        Box::pin(async move {
            self.up()?;
            let old = self
                .routes
                .lock()
                .expect("not poisoned")
                .insert(route.name.clone(), route.clone());
            Ok(old.as_ref() != Some(route))
        })
    }

    fn remove_route<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, ProxyError>> {
        Box::pin(async move {
            self.up()?;
            Ok(self
                .routes
                .lock()
                .expect("not poisoned")
                .remove(name)
                .is_some())
        })
    }

    fn list_routes(&self) -> BoxFuture<'_, Result<Vec<RouteInfo>, ProxyError>> {
        Box::pin(async move {
            self.up()?;
            let routes = self.routes.lock().expect("not poisoned");
            Ok(routes
                .values()
                .filter_map(|r| RouteInfo::parse(&route_json(r, &self.settings), &self.settings))
                .collect())
        })
    }

    fn reconcile<'a>(
        &'a self,
        routes: &'a [TenantRoute],
    ) -> BoxFuture<'a, Result<ReconcileReport, ProxyError>> {
        Box::pin(async move {
            self.up()?;
            let mut held = self.routes.lock().expect("not poisoned");
            let mut report = ReconcileReport::default();
            held.retain(|name, _| {
                let keep = routes.iter().any(|r| &r.name == name);
                if !keep {
                    report.removed.push(name.clone());
                }
                keep
            });
            for route in routes {
                match held.insert(route.name.clone(), route.clone()) {
                    None => report.added.push(route.name.clone()),
                    Some(old) if &old != route => report.replaced.push(route.name.clone()),
                    Some(_) => {}
                }
            }
            Ok(report)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[tokio::test]
    async fn fake_routes_behave_like_the_real_client() {
        let fake = FakeRoutes::new(ProxySettings::from_config(&Config::default()));
        let a = TenantRoute::new("a", "10.0.0.2:9000".parse().unwrap()).unwrap();
        let b = TenantRoute::new("b", "10.0.0.6:9000".parse().unwrap()).unwrap();
        assert!(fake.put_route(&a).await.unwrap());
        assert!(!fake.put_route(&a).await.unwrap());
        let report = fake.reconcile(std::slice::from_ref(&b)).await.unwrap();
        assert_eq!(
            (report.added, report.removed),
            (vec!["b".to_string()], vec!["a".to_string()])
        );
        assert_eq!(
            fake.list_routes().await.unwrap()[0].hosts,
            vec!["b.lobster.local"]
        );
        fake.set_down(true);
        let err = fake.remove_route("b").await.unwrap_err();
        assert!(err
            .to_string()
            .contains("/var/lib/lobster-caddy/admin.sock"));
    }
}
