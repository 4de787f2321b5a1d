//! lobster's HTTP API: one more thin front end over [`lobster_core::Host`],
//! beside the CLI and the bindings. It holds no orchestration logic: each
//! route checks the caller's scope and the request's shape, calls one
//! `Host` method and maps its result (or its [`ErrorKind`]) to HTTP in one
//! place ([`error`]).
//!
//! - [`auth`]: bearer tokens with a scope (read < operate < admin), checked
//!   before anything else, so a caller without the scope learns nothing,
//!   not even whether a tenant exists; a request budget per token (429);
//! - [`operations`]: long operations (spawn, evict, suspend, resume) answer
//!   at once with an operation to poll, its progress the steps the CLI
//!   prints; one at a time per tenant (a second is 409);
//! - [`routes`]: the `/v1` routes; [`exec`]: a command in a guest over a
//!   WebSocket;
//! - [`metrics`]: `/metrics` for Prometheus;
//! - [`tls`]: the TCP listener, always with TLS;
//! - [`openapi`]: their OpenAPI 3.1 document, generated from the types
//!   (served at `/v1/openapi.json`, checked in as `docs/api/openapi.json`).
//!
//! [`ErrorKind`]: lobster_core::ErrorKind

pub mod auth;
pub mod error;
pub mod exec;
pub mod metrics;
pub mod openapi;
pub mod operations;
pub mod routes;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use lobster_core::Host;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest a request may take (long operations answer at once).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct Api {
    /// The host the API drives.
    pub host: Arc<Host>,
    /// Long operations, running and finished.
    pub operations: operations::Operations,
    /// Each token's request budget.
    pub limiter: auth::Limiter,
    /// What `/metrics` reports.
    pub metrics: metrics::Metrics,
    /// Room for open event streams ([`MAX_STREAMS`]).
    pub streams: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the server stops: open streams end.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Most event streams (log follows, progress, events) open at once.
pub const MAX_STREAMS: usize = 64;

impl Api {
    /// An API over `host`.
    pub fn new(host: Arc<Host>) -> Api {
        let metrics = metrics::Metrics::default();
        let steps = metrics.clone();
        Api {
            host,
            operations: operations::Operations::observed(Arc::new(move |e| steps.step(e))),
            limiter: auth::Limiter::new(auth::RateLimit::default()),
            metrics,
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// The same API with each token's budget `limit`.
    pub fn with_rate_limit(mut self, limit: auth::RateLimit) -> Api {
        self.limiter = auth::Limiter::new(limit);
        self
    }

    /// The routes, with the body limit, the request timeout and the
    /// request counter.
    pub fn router(self) -> Router {
        let metrics = self.metrics.clone();
        routes::routes()
            .with_state(self)
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let metrics = metrics.clone();
                    async move {
                        // A fixed set: a method of the client's invention
                        // must not become a label (each one a counter).
                        let method = match request.method().as_str() {
                            m @ ("GET" | "POST" | "DELETE" | "PUT" | "PATCH" | "HEAD"
                            | "OPTIONS") => m,
                            _ => "other",
                        }
                        .to_owned();
                        let route = request
                            .extensions()
                            .get::<axum::extract::MatchedPath>()
                            .map_or("unmatched".to_owned(), |p| p.as_str().to_owned());
                        let response = next.run(request).await;
                        metrics.request(&method, &route, response.status().as_u16());
                        response
                    }
                },
            ))
            .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
            .layer(TimeoutLayer::with_status_code(
                axum::http::StatusCode::GATEWAY_TIMEOUT,
                REQUEST_TIMEOUT,
            ))
    }
}

/// Serves `api` on `listener` (a unix or TCP listener) until `shutdown`
/// completes; requests in flight are finished first.
pub async fn serve<L>(
    listener: L,
    api: Api,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, api.router())
        .with_graceful_shutdown(shutdown)
        .await
}
