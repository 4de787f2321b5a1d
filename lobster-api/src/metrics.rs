//! `/metrics` in Prometheus' text format (the `prometheus-client` crate):
//! what this server saw (requests by route and status, the steps of the
//! operations it ran as histograms) and, read at each scrape from the
//! host's overview, tenants by status and by health, each VMM's resident
//! memory and the watchdog's repairs by kind and outcome.

use std::sync::{Arc, Mutex};

use lobster_core::tenant::progress::{Phase, ProgressEvent};
use lobster_core::Host;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    operation: String,
    step: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabels {
    health: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepairLabels {
    repair: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

type StepHistograms = Family<StepLabels, Histogram, fn() -> Histogram>;

#[derive(Debug)]
struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    steps: StepHistograms,
    tenants: Family<StatusLabels, Gauge>,
    health: Family<HealthLabels, Gauge>,
    rss: Family<TenantLabels, Gauge>,
    repairs: Family<RepairLabels, Gauge>,
    /// One scrape at a time sets the host gauges and encodes them.
    scrape: Mutex<()>,
}

/// The metrics of one API server.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

fn step_histogram() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("lobster");
        let requests = Family::<RequestLabels, Counter>::default();
        let steps = StepHistograms::new_with_constructor(step_histogram);
        let tenants = Family::<StatusLabels, Gauge>::default();
        let health = Family::<HealthLabels, Gauge>::default();
        let rss = Family::<TenantLabels, Gauge>::default();
        let repairs = Family::<RepairLabels, Gauge>::default();
        registry.register(
            "api_requests",
            "HTTP API requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "operation_step_seconds",
            "Duration of each step of the operations this server ran (spawn, suspend, resume)",
            steps.clone(),
        );
        registry.register("tenants", "Tenants by status", tenants.clone());
        registry.register(
            "tenants_by_health",
            "Tenants by the watchdog's health state (unchecked: none)",
            health.clone(),
        );
        registry.register(
            "vmm_resident_bytes",
            "Resident memory of each running tenant's VMM process",
            rss.clone(),
        );
        registry.register(
            "watchdog_repairs",
            "Repairs the watchdog carried out since it started, by repair and outcome (ok, failed)",
            repairs.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                steps,
                tenants,
                health,
                rss,
                repairs,
                scrape: Mutex::new(()),
            }),
        }
    }
}

impl Metrics {
    /// Counts one answered request; `route` is the matched route's
    /// template (never the raw path, so names do not become labels).
    pub fn request(&self, method: &str, route: &str, status: u16) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    /// Records a finished step of an operation.
    pub fn step(&self, event: &ProgressEvent) {
        if let Phase::Done { elapsed } = event.phase {
            self.inner
                .steps
                .get_or_create(&StepLabels {
                    operation: event.operation.to_owned(),
                    step: event.step.to_owned(),
                })
                .observe(elapsed.as_secs_f64());
        }
    }

    /// The text exposition, with the host's gauges read now.
    pub async fn render(&self, host: &Host) -> lobster_core::Result<String> {
        let overview = host.overview().await?;
        let inner = &self.inner;
        let _scrape = inner.scrape.lock().expect("metrics lock");
        inner.tenants.clear();
        inner.health.clear();
        inner.rss.clear();
        inner.repairs.clear();
        for (repair, count) in overview.watchdog.iter().flat_map(|w| &w.repairs) {
            for (outcome, n) in [("ok", count.ok), ("failed", count.failed)] {
                let labels = RepairLabels {
                    repair: repair.clone(),
                    outcome,
                };
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                inner.repairs.get_or_create(&labels).set(n);
            }
        }
        for t in &overview.tenants {
            let status = t.status.as_str().to_owned();
            inner.tenants.get_or_create(&StatusLabels { status }).inc();
            let health = t.state.map_or("none", |s| s.as_str()).to_owned();
            inner.health.get_or_create(&HealthLabels { health }).inc();
            if let Some(mib) = t.memory_used_mib {
                let bytes = i64::try_from(mib * 1024 * 1024).unwrap_or(i64::MAX);
                inner
                    .rss
                    .get_or_create(&TenantLabels {
                        tenant: t.name.clone(),
                    })
                    .set(bytes);
            }
        }
        let mut text = String::new();
        encode(&mut text, &inner.registry).expect("writing to a String");
        Ok(text)
    }
}
