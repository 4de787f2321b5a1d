//! Wake on request: the watchdog keeps a [`WakeListener`] on every
//! suspended tenant's wake socket (the socket its route points at, see
//! [`plan::route`]); a request there resumes the tenant ([`tenant::wake`])
//! and is answered by the workload. [`WakeListeners::sync`] runs on every
//! tick: it starts the listeners of tenants that are suspended (all of
//! them on the first tick, so after a host reboot a suspended tenant's
//! route still wakes it) and stops those of tenants that are not any more.
//!
//! The sockets are reachable by root and Caddy's user only (mode and group,
//! and the peer's uid checked on every connection); without a Caddy user
//! no listener starts (fail closed), and a request gets Caddy's 502.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::base::unix_ms;
use crate::context::Context;
use crate::proxy::{bind_wake_socket, caddy_ids, WakeLimits, WakeListener, WakeReport};
use crate::store::{Registry, TenantRecord, TenantStatus};
use crate::tenant::{self, plan};

use super::events::{Event, EventRecord, EventSink, Trigger};

/// How long requests wait for a resume before they are closed (Caddy then
/// answers 502).
pub const WAKE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a woken request retries dialing the guest's gateway.
pub const GATEWAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The watchdog's wake listeners, by tenant name.
pub struct WakeListeners {
    context: Context,
    sink: EventSink,
    limits: WakeLimits,
    listeners: Mutex<BTreeMap<String, Entry>>,
}

/// One tenant's listener, or why it could not start.
enum Entry {
    Listening {
        /// The tenant id the socket belongs to (a name reused by a new
        /// tenant gets a new listener).
        id: String,
        listener: WakeListener,
    },
    /// The last error starting it (reported once; retried every sync).
    Failed { id: String, error: String },
}

impl std::fmt::Debug for WakeListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeListeners")
            .field("limits", &self.limits)
            .finish()
    }
}

impl WakeListeners {
    /// Listeners waking tenants of `context`, reporting to `sink`; each
    /// holds at most `network.max_connections` requests.
    pub fn new(context: Context, sink: EventSink) -> WakeListeners {
        let limits = WakeLimits {
            max_connections: context.config().network.max_connections as usize,
            wake_timeout: WAKE_TIMEOUT,
            connect_timeout: GATEWAY_CONNECT_TIMEOUT,
        };
        WakeListeners::with_limits(context, sink, limits)
    }

    /// [`WakeListeners::new`] with other bounds.
    pub fn with_limits(context: Context, sink: EventSink, limits: WakeLimits) -> WakeListeners {
        WakeListeners {
            context,
            sink,
            limits,
            listeners: Mutex::new(BTreeMap::new()),
        }
    }

    /// Makes the listeners match `registry`: one per suspended tenant, none
    /// for the others. A listener whose wake succeeded has finished: it is
    /// replaced if its tenant is suspended again. Each listener started also
    /// puts its tenant's planned route (to the wake socket) in the proxy, in
    /// case the suspend could not.
    pub async fn sync(&self, registry: &Registry) {
        let started = self.sync_listeners(registry);
        if started.is_empty() {
            return;
        }
        let services = match self.context.services().await {
            Ok(services) => services,
            Err(e) => {
                tracing::warn!(error = %e.chain(), "cannot reach the proxy to route to wake sockets");
                return;
            }
        };
        for record in started {
            let put = match plan::route(self.context.config(), &record) {
                Ok(route) => services.routes.put_route(&route).await,
                Err(e) => Err(e),
            };
            if let Err(e) = put {
                tracing::warn!(tenant = %record.name, error = %crate::Error::from(e).chain(), "cannot route to the wake socket");
            }
        }
    }

    /// Starts and stops listeners; the records of the tenants whose
    /// listener started.
    fn sync_listeners(&self, registry: &Registry) -> Vec<TenantRecord> {
        let mut started = Vec::new();
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        listeners.retain(|name, entry| {
            let suspended = registry
                .tenants
                .get(name)
                .filter(|r| r.status == TenantStatus::Suspended);
            match (suspended, entry) {
                (Some(r), Entry::Listening { id, listener }) => {
                    *id == r.id && !listener.is_finished()
                }
                (Some(r), Entry::Failed { id, .. }) => *id == r.id,
                (None, _) => false,
            }
        });
        for record in registry.tenants.values() {
            if record.status != TenantStatus::Suspended {
                continue;
            }
            let failed_before = match listeners.get(&record.name) {
                Some(Entry::Listening { .. }) => continue,
                Some(Entry::Failed { error, .. }) => Some(error.clone()),
                None => None,
            };
            let entry = match self.start(record) {
                Ok(listener) => {
                    started.push(record.clone());
                    Entry::Listening {
                        id: record.id.clone(),
                        listener,
                    }
                }
                Err(error) => {
                    if failed_before.as_ref() != Some(&error) {
                        tracing::error!(tenant = %record.name, %error, "cannot listen for requests to wake this tenant");
                    }
                    Entry::Failed {
                        id: record.id.clone(),
                        error,
                    }
                }
            };
            listeners.insert(record.name.clone(), entry);
        }
        started
    }

    /// The tenants listened for.
    pub fn listening(&self) -> Vec<String> {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(
                |(_, e)| matches!(e, Entry::Listening { listener, .. } if !listener.is_finished()),
            )
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Stops every listener (their sockets go).
    pub fn stop(&self) {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn start(&self, record: &TenantRecord) -> Result<WakeListener, String> {
        let config = self.context.config();
        let (caddy_uid, caddy_gid) =
            caddy_ids(config).map_err(|e| crate::Error::from(e).chain().to_string())?;
        let path = plan::wake_socket(config, record);
        let socket = bind_wake_socket(&path, caddy_gid)
            .map_err(|e| crate::Error::from(e).chain().to_string())?;
        let (context, name) = (self.context.clone(), record.name.clone());
        let wake: crate::proxy::WakeFn = Arc::new(move || {
            let (context, name) = (context.clone(), name.clone());
            Box::pin(async move {
                let record = tenant::wake(&context, &name)
                    .await
                    .map_err(|e| e.chain().to_string())?;
                Ok(plan::gateway(context.config(), &record))
            })
        });
        let (sink, name) = (self.sink.clone(), record.name.clone());
        let report: crate::proxy::ReportFn = Arc::new(move |report| {
            let tenant = name.clone();
            let trigger = Trigger::Request;
            let event = match report {
                WakeReport::Started => Event::WakeStart { tenant, trigger },
                WakeReport::Woken { elapsed, waiting } => Event::Woken {
                    tenant,
                    trigger,
                    elapsed_ms: elapsed.as_millis() as u64,
                    waiting,
                },
                WakeReport::Failed { error, elapsed } => Event::WakeFailed {
                    tenant,
                    trigger,
                    elapsed_ms: elapsed.as_millis() as u64,
                    error,
                },
            };
            sink(&EventRecord {
                at_ms: unix_ms(),
                event,
            });
        });
        WakeListener::start(socket, path, vec![0, caddy_uid], self.limits, wake, report)
            .map_err(|e| crate::Error::from(e).chain().to_string())
    }
}
