//! [`Doctor`]: runs the checks of one tenant against the host and carries
//! out repairs. The host-wide reads (the ruleset, the proxy's routes) are
//! made once per run ([`Doctor::survey`]) and shared by every tenant.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::base::blocking;
use crate::context::{Context, Services};
use crate::error::{Error, Result};
use crate::network::firewall::TenantIndex;
use crate::proxy::{ProxySettings, RouteInfo};
use crate::store::TenantRecord;
use crate::tenant::plan;

use super::check::{evaluate, CheckResult, Observation, RouteObservation};
use super::probe::{GuestOps, SystemGuests};
use super::repair::Repair;

/// Host-wide state read once per check run.
#[derive(Debug, Clone)]
pub struct HostView {
    /// The lobster part of the ruleset, split by tenant.
    pub firewall: std::result::Result<TenantIndex, String>,
    /// Lobster's routes in the proxy.
    pub routes: std::result::Result<Vec<RouteInfo>, String>,
}

/// How one repair went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepairOutcome {
    /// The repair.
    pub repair: Repair,
    /// Whether it succeeded.
    pub ok: bool,
    /// The error, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it took.
    pub elapsed_ms: u64,
}

/// Checks and repairs tenants of one host.
#[derive(Debug, Clone)]
pub struct Doctor {
    context: Context,
    services: Arc<Services>,
    guests: Arc<dyn GuestOps>,
    settings: ProxySettings,
}

impl Doctor {
    /// A doctor acting through the context's real seams (`context`: a
    /// [`crate::Host`] or its [`Context`]).
    pub async fn new(context: impl AsRef<Context>) -> Result<Doctor> {
        let context = context.as_ref();
        let services = context.services().await?;
        let guests = Arc::new(SystemGuests::new(
            context.config().clone(),
            services.clone(),
        ));
        Ok(Doctor::with_guests(context, services, guests))
    }

    /// A doctor acting through the given seams (fakes in tests).
    pub fn with_guests(
        context: impl AsRef<Context>,
        services: Arc<Services>,
        guests: Arc<dyn GuestOps>,
    ) -> Doctor {
        let context = context.as_ref();
        Doctor {
            settings: ProxySettings::from_config(context.config()),
            context: context.clone(),
            services,
            guests,
        }
    }

    /// The configuration, registry and seams this doctor works on.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The system seams it acts through.
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// The guest operations it acts through.
    pub(crate) fn guests(&self) -> &Arc<dyn GuestOps> {
        &self.guests
    }

    /// Reads the ruleset and the proxy's routes once.
    pub async fn survey(&self) -> HostView {
        let firewall = self.services.firewall.clone();
        let ruleset = blocking(move || firewall.current().map(|r| TenantIndex::new(&r)))
            .await
            .map_err(|e| Error::from(e).chain().to_string());
        let routes = self
            .services
            .routes
            .list_routes()
            .await
            .map_err(|e| Error::from(e).chain().to_string());
        HostView {
            firewall: ruleset,
            routes,
        }
    }

    /// Observes one tenant.
    pub async fn observe(&self, view: &HostView, record: &TenantRecord) -> Observation {
        let config = self.context.config();
        let overlay_present = plan::overlay(config, record).check().present;
        let net = plan::tenant_net(record);
        let (tap, firewall_changes) = match &net {
            Ok(net) => {
                let tap = self
                    .services
                    .network
                    .check(net)
                    .await
                    .map_err(|e| Error::from(e).chain().to_string());
                let changes = match &view.firewall {
                    Ok(index) => Ok(self
                        .services
                        .firewall
                        .drift(&index.view(&net.id), net)
                        .len()),
                    Err(e) => Err(e.clone()),
                };
                (tap, changes)
            }
            Err(e) => (Err(e.to_string()), Err(e.to_string())),
        };
        let vm = self.guests.observe_vm(record).await;
        let guest = match vm {
            super::check::VmObservation::Alive { api: Ok(true) } => {
                self.guests.observe_guest(record).await
            }
            _ => super::check::GuestObservation::NotProbed,
        };
        let route = self.route_observation(view, record);
        Observation {
            overlay_present,
            tap,
            firewall_changes,
            vm,
            guest,
            route,
        }
    }

    fn route_observation(&self, view: &HostView, record: &TenantRecord) -> RouteObservation {
        let routes = match &view.routes {
            Ok(routes) => routes,
            Err(e) => return RouteObservation::Unknown(e.clone()),
        };
        let Some(found) = routes.iter().find(|r| r.name == record.name) else {
            return RouteObservation::Missing;
        };
        let want = match plan::route(self.context.config(), record) {
            Ok(route) => route,
            Err(e) => return RouteObservation::Wrong(e.to_string()),
        };
        let host = self.settings.host(&record.name);
        let upstream = want.upstream.to_string();
        if !found.hosts.contains(&host) {
            RouteObservation::Wrong(format!("route matches {:?}, not {host}", found.hosts))
        } else if !found.upstreams.contains(&upstream) {
            RouteObservation::Wrong(format!(
                "route goes to {:?}, not {upstream}",
                found.upstreams
            ))
        } else {
            RouteObservation::Present
        }
    }

    /// Observes one tenant and judges every check.
    pub async fn examine(
        &self,
        view: &HostView,
        record: &TenantRecord,
    ) -> (Observation, Vec<CheckResult>) {
        let observation = self.observe(view, record).await;
        let results = evaluate(&observation);
        (observation, results)
    }

    /// Carries out `repairs` in order, stopping at the first that fails
    /// (the ones after it depend on it). The caller holds the tenant's lock.
    pub async fn treat(&self, record: &TenantRecord, repairs: &[Repair]) -> Vec<RepairOutcome> {
        let mut outcomes = Vec::new();
        let mut record = record.clone();
        for &repair in repairs {
            let started = Instant::now();
            let result = self.apply(&mut record, repair).await;
            let ok = result.is_ok();
            outcomes.push(RepairOutcome {
                repair,
                ok,
                error: result.err().map(|e| e.chain().to_string()),
                elapsed_ms: started.elapsed().as_millis() as u64,
            });
            if !ok {
                break;
            }
        }
        outcomes
    }

    async fn apply(&self, record: &mut TenantRecord, repair: Repair) -> Result<()> {
        let config = self.context.config();
        match repair {
            Repair::EnsureTap => {
                let net = plan::tenant_net(record)?;
                Ok(self.services.network.ensure(&net).await?)
            }
            Repair::ApplyFirewall => {
                let net = plan::tenant_net(record)?;
                let firewall = self.services.firewall.clone();
                Ok(blocking(move || firewall.apply_tenant(&net)).await?)
            }
            Repair::ResumeVm => self.guests.resume_vm(record).await,
            Repair::RestartVm => {
                let running = self.guests.launch_vm(record).await?;
                *record = self
                    .context
                    .modify(&record.name, move |r| r.vm = Some(running))
                    .await?;
                self.guests.wait_agent(record).await
            }
            Repair::RelaunchWorkload => self.guests.relaunch_workload(record).await,
            Repair::PutRoute => {
                let route = plan::route(config, record)?;
                self.services.routes.put_route(&route).await?;
                Ok(())
            }
        }
    }
}
