//! The `/v1` routes. Each checks the caller's scope first, then its input
//! (a bad name or body is 400 naming it, before the host is touched),
//! then calls one [`Host`](lobster_core::Host) method.

use std::collections::BTreeMap;

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::Uri;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{Stream, StreamExt};
use lobster_core::agent::sanitize_for_terminal;
use lobster_core::agent::LogSource;
use lobster_core::store::name::validate_tenant_name;
use lobster_core::store::ApiScope;
use lobster_core::{Tenant, TenantSpec};
use serde::Deserialize;

use crate::auth::require;
use crate::error::{ApiError, ErrorBody};
use crate::operations::{Operation, OperationKind, OperationState};
use crate::Api;

type Answer<T> = Result<T, ApiError>;

/// Every route.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/v1/tenants", get(list).post(spawn))
        .route("/v1/tenants/{name}", get(tenant).delete(evict))
        .route("/v1/tenants/{name}/suspend", post(suspend))
        .route("/v1/tenants/{name}/resume", post(resume))
        .route("/v1/tenants/{name}/token", get(token))
        .route("/v1/tenants/{name}/rotate-tokens", post(rotate_tokens))
        .route("/v1/tenants/{name}/snap", post(snap))
        .route("/v1/tenants/{name}/molt", post(molt))
        .route("/v1/tenants/{name}/logs", get(logs))
        .route("/v1/tenants/{name}/logs/follow", get(follow_logs))
        .route("/v1/tenants/{name}/exec", get(crate::exec::exec))
        .route("/v1/molt", post(molt_all))
        .route("/v1/overview", get(overview))
        .route("/v1/watchdog/log", get(watchdog_log))
        .route("/v1/operations", get(operations))
        .route("/v1/operations/{id}", get(operation))
        .route("/v1/operations/{id}/events", get(operation_events))
        .route("/v1/operations/{id}/archive", get(archive))
        .route("/v1/events", get(events))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
}

/// Runs `work` as a task of its own and waits for it: a request dropped
/// midway (its timeout, a client gone) never cancels a recovery or a wake
/// half done.
pub(crate) async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = lobster_core::Result<T>> + Send + 'static,
) -> Answer<T> {
    match tokio::spawn(work).await {
        Ok(done) => Ok(done?),
        Err(e) => Err(ApiError::internal(format!(
            "a task of the server failed: {e}"
        ))),
    }
}

/// Room for one more event stream, or 429 at [`crate::MAX_STREAMS`].
pub(crate) fn stream_slot(api: &Api) -> Answer<tokio::sync::OwnedSemaphorePermit> {
    api.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::too_many(format!(
            "{} event streams are open; close one or try again later",
            crate::MAX_STREAMS
        ))
    })
}

/// `events` as the body of a server-sent event stream that holds `slot`
/// while it lives and ends when the server stops.
fn event_stream<S>(
    api: &Api,
    slot: tokio::sync::OwnedSemaphorePermit,
    events: S,
    keep_alive: KeepAlive,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>
where
    S: Stream<Item = Event> + Send + 'static,
{
    let events = events
        .map(move |event| {
            let _held = &slot;
            Ok(event)
        })
        .take_until(api.shutdown.clone().cancelled_owned());
    Sse::new(events).keep_alive(keep_alive)
}

/// A tenant name from a path, checked before the host sees it.
pub(crate) fn name(raw: &str) -> Answer<&str> {
    validate_tenant_name(raw).map_err(|reason| {
        ApiError::bad_request(format!(
            "tenant name `{}`: {reason}",
            sanitize_for_terminal(raw)
        ))
    })?;
    Ok(raw)
}

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants",
    responses((status = 200, description = "Every tenant, by name", body = [lobster_core::Tenant]), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope", body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub(crate) async fn list(State(api): State<Api>, headers: HeaderMap) -> Answer<Json<Vec<Tenant>>> {
    require(&api, &headers, ApiScope::Read).await?;
    let host = api.host.clone();
    Ok(Json(detached(async move { host.list().await }).await?))
}

#[utoipa::path(get, path = "/v1/tenants/{name}", tag = "tenants", params(("name" = String, Path, description = "Tenant name (a DNS label)")),
    responses((status = 200, description = "The tenant", body = lobster_core::Tenant), (status = 400, description = "Malformed input, named", body = ErrorBody), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope", body = ErrorBody), (status = 404, description = "No such tenant", body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub(crate) async fn tenant(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Answer<Json<Tenant>> {
    require(&api, &headers, ApiScope::Read).await?;
    Ok(Json(api.host.get(name(&raw)?).await?))
}

#[utoipa::path(get, path = "/v1/tenants/{name}/token", tag = "tenants", params(("name" = String, Path, description = "Tenant name (a DNS label)")),
    responses((status = 200, description = "The tenant's gateway token", body = TokenBody), (status = 400, description = "Malformed input, named", body = ErrorBody), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope", body = ErrorBody), (status = 404, description = "No such tenant", body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub(crate) async fn token(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Answer<Json<TokenBody>> {
    require(&api, &headers, ApiScope::Admin).await?;
    let name = name(&raw)?;
    let token = api.host.token(name).await?;
    Ok(Json(TokenBody {
        name: name.to_owned(),
        token,
    }))
}

#[utoipa::path(post, path = "/v1/tenants/{name}/rotate-tokens", tag = "tenants", params(("name" = String, Path, description = "Tenant name (a DNS label)")),
    responses((status = 200, description = "New agent and gateway tokens are in force (the old ones are refused); the tenant", body = lobster_core::Tenant), (status = 400, description = "Malformed input, named", body = ErrorBody), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope", body = ErrorBody), (status = 404, description = "No such tenant", body = ErrorBody), (status = 409, description = "The tenant is not running", body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub(crate) async fn rotate_tokens(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Answer<Json<Tenant>> {
    require(&api, &headers, ApiScope::Admin).await?;
    let (host, name) = (api.host.clone(), name(&raw)?.to_owned());
    // Detached: a client that leaves midway does not cut the rotation short.
    Ok(Json(
        detached(async move { host.rotate_tokens(&name).await }).await?,
    ))
}

/// A tenant's gateway token.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TokenBody {
    /// The tenant.
    pub name: String,
    /// The token its gateway's clients present.
    pub token: String,
}

/// The body of `POST /v1/tenants`: the fields of `lobsterd spawn`; unset
/// sizes follow the host's defaults.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnBody {
    /// Tenant name (a DNS label).
    name: String,
    /// Virtual CPUs.
    #[schema(minimum = 1, maximum = 32)]
    #[serde(default, deserialize_with = "whole")]
    vcpus: Option<u8>,
    /// Guest memory in MiB.
    #[schema(minimum = 128, maximum = 262144)]
    #[serde(default, deserialize_with = "whole")]
    memory_mib: Option<u32>,
    /// Overlay disk size in MiB.
    #[schema(minimum = 64, maximum = 1048576)]
    #[serde(default, deserialize_with = "whole")]
    overlay_size_mib: Option<u32>,
    /// Idle time before the watchdog suspends it, in seconds (0: never).
    #[schema(minimum = 0, maximum = 4294967295_u64, format = Int64)]
    #[serde(default, deserialize_with = "whole")]
    idle_suspend_after_s: Option<u32>,
    /// Non-secret environment of the workload.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Secret environment of the workload: kept in the tenant's private
    /// state, never returned by any route.
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    /// The VMM backend (absent: the host's).
    #[serde(default)]
    backend: Option<lobster_core::config::Backend>,
    /// The workload's argv (empty: the OpenClaw gateway).
    #[serde(default)]
    command: Vec<String>,
}

/// Secret values never reach a debug print: their names do.
impl std::fmt::Debug for SpawnBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnBody")
            .field("name", &self.name)
            .field("env", &self.env)
            .field("secret_names", &self.secrets.keys().collect::<Vec<_>>())
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

/// A JSON integer, also when written as a whole float (`5.0`): JSON
/// Schema's `integer` is any number without a fraction.
fn whole<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let value = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(f))
            .map(|f| f as u64)
    });
    let value = value.ok_or_else(|| D::Error::custom(format!("{number} is not a whole number")))?;
    T::try_from(value)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{number} is out of range")))
}

#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = SpawnBody,
    responses((status = 202, description = "Spawning: poll the operation", body = Operation), (status = 400, description = "Malformed input, named", body = ErrorBody), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope", body = ErrorBody), (status = 409, description = "Another operation on the tenant runs, or its state does not allow this one", body = ErrorBody), (status = 413, description = "Body too large"), (status = 422, description = "A field out of range, named", body = ErrorBody)),
    security(("bearer" = ["operate"])))]
pub(crate) async fn spawn(
    State(api): State<Api>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Answer<(StatusCode, Json<Operation>)> {
    require(&api, &headers, ApiScope::Operate).await?;
    // Read only now, after the token: a caller without one sends nothing
    // the server keeps.
    let body = axum::body::to_bytes(body, crate::MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::too_large())?;
    let body: SpawnBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
    name(&body.name)?;
    let mut spec = TenantSpec::builder(body.name.clone());
    if let Some(v) = body.vcpus {
        spec = spec.vcpus(v);
    }
    if let Some(v) = body.memory_mib {
        spec = spec.memory_mib(v);
    }
    if let Some(v) = body.overlay_size_mib {
        spec = spec.overlay_size_mib(v);
    }
    if let Some(v) = body.idle_suspend_after_s {
        spec = spec.idle_suspend_after_s(v);
    }
    for (k, v) in body.env {
        spec = spec.env(k, v);
    }
    for (k, v) in body.secrets {
        spec = spec.secret(k, v);
    }
    if let Some(backend) = body.backend {
        spec = spec.backend(backend);
    }
    if !body.command.is_empty() {
        spec = spec.command(body.command);
    }
    let spec = spec.build().map_err(lobster_core::Error::from)?;
    let host = api.host.clone();
    let op = api
        .operations
        .start(OperationKind::Spawn, &body.name, |sink| async move {
            let tenant = host.spawn_with_progress(spec, Some(sink)).await?;
            Ok(Some(
                serde_json::to_value(tenant).expect("a tenant serializes"),
            ))
        })?;
    Ok((StatusCode::ACCEPTED, Json(op)))
}

/// Starts `kind` on an existing tenant named in the path.
async fn on_tenant(
    api: Api,
    headers: HeaderMap,
    raw: String,
    kind: OperationKind,
) -> Answer<(StatusCode, Json<Operation>)> {
    require(&api, &headers, ApiScope::Operate).await?;
    let name = name(&raw)?.to_owned();
    api.host.get(&name).await?;
    let host = api.host.clone();
    let tenant = name.clone();
    let op = api.operations.start(kind, &name, |sink| async move {
        let done = match kind {
            OperationKind::Evict => host.evict(&tenant).await.map(|()| None)?,
            OperationKind::Suspend => Some(host.suspend_with_progress(&tenant, Some(sink)).await?),
            OperationKind::Resume => Some(host.resume_with_progress(&tenant, Some(sink)).await?),
            OperationKind::Molt => {
                // One tenant named: one report.
                let report = host.molt(Some(&tenant)).await?.into_iter().next();
                return Ok(report.map(|r| serde_json::to_value(r).expect("a report serialises")));
            }
            OperationKind::Snap => {
                let report = host.snap(&tenant, None).await?;
                return Ok(Some(
                    serde_json::to_value(report).expect("a report serialises"),
                ));
            }
            OperationKind::Spawn => unreachable!("spawn has its own route"),
        };
        Ok(done.map(|t| serde_json::to_value(t).expect("a tenant serializes")))
    })?;
    Ok((StatusCode::ACCEPTED, Json(op)))
}

#[utoipa::path(delete, path = "/v1/tenants/{name}", tag = "tenants", params(("name" = String, Path, description = "Tenant name (a DNS label)")),
    responses((status = 202, description = "Evicting: poll the operation", body = Operation), (status = 400, description = "Malformed input, named", body = ErrorBody), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope", body = ErrorBody), (status = 404, description = "No such tenant", body = ErrorBody), (status = 409, description = "Another operation on the tenant runs, or its state does not allow this one", body = ErrorBody)),
    security(("bearer" = ["operate"])))]
pub(crate) async fn evict(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Answer<(StatusCode, Json<Operation>)> {
    on_tenant(api, headers, raw, OperationKind::Evict).await
}

#[utoipa::path(post, path = "/v1/tenants/{name}/suspend", tag = "tenants", params(("name" = String, Path, description = "Tenant name (a DNS label)")),
    responses((status = 202, description = "Suspending: poll the operation", body = Operation), (status = 400, description = "Malformed input, named", body = ErrorBody), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope", body = ErrorBody), (status = 404, description = "No such tenant", body = ErrorBody), (status = 409, description = "Another operation on the tenant runs, or its state does not allow this one", body = ErrorBody)),
    security(("bearer" = ["operate"])))]
pub(crate) async fn suspend(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Answer<(StatusCode, Json<Operation>)> {
    on_tenant(api, headers, raw, OperationKind::Suspend).await
}

#[utoipa::path(post, path = "/v1/tenants/{name}/resume", tag = "tenants", params(("name" = String, Path, description = "Tenant name (a DNS label)")),
    responses((status = 202, description = "Resuming: poll the operation", body = Operation), (status = 400, description = "Malformed input, named", body = ErrorBody), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope", body = ErrorBody), (status = 404, description = "No such tenant", body = ErrorBody), (status = 409, description = "Another operation on the tenant runs, or its state does not allow this one", body = ErrorBody)),
    security(("bearer" = ["operate"])))]
pub(crate) async fn resume(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Answer<(StatusCode, Json<Operation>)> {
    on_tenant(api, headers, raw, OperationKind::Resume).await
}

#[utoipa::path(get, path = "/v1/operations", tag = "operations",
    responses((status = 200, description = "Operations, oldest first", body = [Operation]), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope", body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub(crate) async fn operations(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Answer<Json<Vec<Operation>>> {
    require(&api, &headers, ApiScope::Read).await?;
    Ok(Json(api.operations.list()))
}

#[utoipa::path(get, path = "/v1/operations/{id}", tag = "operations", params(("id" = String, Path, description = "Operation id (`op-<n>`)")),
    responses((status = 200, description = "The operation", body = Operation), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope", body = ErrorBody), (status = 404, description = "No such operation", body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub(crate) async fn operation(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer<Json<Operation>> {
    require(&api, &headers, ApiScope::Read).await?;
    api.operations.get(&id).map(Json).ok_or_else(|| {
        ApiError::not_found(format!("no operation `{}`", sanitize_for_terminal(&id)))
    })
}

/// The OpenAPI document of these routes (no token needed).
async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

#[utoipa::path(get, path = "/v1/overview", tag = "tenants",
    responses((status = 200, description = "Every tenant with the watchdog's view and its VMM's memory", body = lobster_core::health::Overview),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token lacks the scope", body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub(crate) async fn overview(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Answer<Json<lobster_core::health::Overview>> {
    require(&api, &headers, ApiScope::Read).await?;
    Ok(Json(api.host.overview().await?))
}

/// Which log and how much of it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    #[serde(default)]
    source: LogSource,
    #[serde(default = "default_lines")]
    lines: u32,
}

fn default_lines() -> u32 {
    100
}

/// Most lines a log request may ask for.
pub const MAX_LOG_LINES: u32 = 10_000;

/// The log query of `uri`, checked.
fn log_query(uri: &Uri) -> Answer<LogQuery> {
    let Query(query) = Query::<LogQuery>::try_from_uri(uri)
        .map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    check_lines(query.lines)?;
    Ok(query)
}

/// The `lines` query of `uri` (the only parameter), checked.
fn lines_query(uri: &Uri) -> Answer<u32> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct LinesQuery {
        #[serde(default = "default_lines")]
        lines: u32,
    }
    let Query(query) = Query::<LinesQuery>::try_from_uri(uri)
        .map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    check_lines(query.lines)
}

/// `lines` unless it is above [`MAX_LOG_LINES`].
fn check_lines(lines: u32) -> Answer<u32> {
    if lines > MAX_LOG_LINES {
        return Err(ApiError::bad_request(format!(
            "query: lines {lines} is above {MAX_LOG_LINES}"
        )));
    }
    Ok(lines)
}

/// The last lines of a log.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct LogLines {
    /// Oldest first, sanitised for a terminal.
    pub lines: Vec<String>,
}

#[utoipa::path(get, path = "/v1/tenants/{name}/logs", tag = "tenants",
    params(("name" = String, Path, description = "Tenant name (a DNS label)"),
        ("source" = Option<String>, Query, description = "`workload` (default) or `agent`"),
        ("lines" = Option<u32>, Query, description = "How many of the last lines (default 100, at most 10000)")),
    responses((status = 200, description = "The last lines (a suspended tenant is resumed first)", body = LogLines),
        (status = 400, description = "Malformed input, named", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token lacks the scope", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "The tenant is creating, evicting or stopped: no guest to read from", body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub(crate) async fn logs(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    uri: Uri,
) -> Answer<Json<LogLines>> {
    require(&api, &headers, ApiScope::Read).await?;
    let name = name(&raw)?;
    let query = log_query(&uri)?;
    let (host, name) = (api.host.clone(), name.to_owned());
    let lines = detached(async move { host.logs(&name, query.source, query.lines).await }).await?;
    Ok(Json(LogLines { lines }))
}

#[utoipa::path(get, path = "/v1/watchdog/log", tag = "tenants",
    params(("lines" = Option<u32>, Query, description = "How many of the last lines (default 100, at most 10000)")),
    responses((status = 200, description = "The last lines of the detached watchdog's log (JSON events; `/v1/events` follows it)", body = LogLines),
        (status = 400, description = "Malformed input, named", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token lacks the scope", body = ErrorBody),
        (status = 404, description = "No watchdog has written a log on this host", body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub(crate) async fn watchdog_log(
    State(api): State<Api>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer<Json<LogLines>> {
    require(&api, &headers, ApiScope::Read).await?;
    let lines = lines_query(&uri)?;
    Ok(Json(LogLines {
        lines: api.host.watchdog_log(lines).await?,
    }))
}

/// How long a followed log may stay silent before a keep-alive comment.
const FOLLOW_POLL: Duration = Duration::from_secs(15);

#[utoipa::path(get, path = "/v1/tenants/{name}/logs/follow", tag = "tenants",
    params(("name" = String, Path, description = "Tenant name (a DNS label)"),
        ("source" = Option<String>, Query, description = "`workload` (default) or `agent`"),
        ("lines" = Option<u32>, Query, description = "How many of the last lines first (default 100, at most 10000)")),
    responses((status = 200, description = "Server-sent events: one `line` event per log line, as they come; an `error` event ends a broken stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "Malformed input, named", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token lacks the scope", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "The tenant is creating, evicting or stopped: no guest to read from", body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub(crate) async fn follow_logs(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    uri: Uri,
) -> Answer<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>> {
    require(&api, &headers, ApiScope::Read).await?;
    let name = name(&raw)?;
    let query = log_query(&uri)?;
    let slot = stream_slot(&api)?;
    let (host, name) = (api.host.clone(), name.to_owned());
    let follow =
        detached(async move { host.follow_logs(&name, query.source, query.lines).await }).await?;
    let events = futures_util::stream::unfold(Some(follow), |state| async move {
        let mut follow = state?;
        loop {
            match follow.next_line(FOLLOW_POLL).await {
                Ok(Some(line)) => {
                    return Some((Event::default().event("line").data(line), Some(follow)))
                }
                Ok(None) => continue,
                Err(e) => {
                    let body = ErrorBody::from(&lobster_core::Error::from(e));
                    let data = serde_json::to_string(&body).expect("an error serialises");
                    return Some((Event::default().event("error").data(data), None));
                }
            }
        }
    });
    Ok(event_stream(
        &api,
        slot,
        events,
        KeepAlive::new().interval(FOLLOW_POLL),
    ))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format: requests by route and status, operation step durations, tenants by status and health, VMM resident memory", content_type = "text/plain", body = String),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token lacks the scope", body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub(crate) async fn metrics(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Answer<([(axum::http::HeaderName, &'static str); 1], String)> {
    require(&api, &headers, ApiScope::Read).await?;
    let text = api.metrics.render(&api.host).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}

/// How often an operation's stream looks for new progress.
const OPERATION_POLL: Duration = Duration::from_millis(100);

#[utoipa::path(get, path = "/v1/operations/{id}/events", tag = "operations",
    params(("id" = String, Path, description = "Operation id (`op-<n>`)")),
    responses((status = 200, description = "Server-sent events: one `progress` event per step (a ProgressEvent), then one `operation` event (the Operation, ended) and the stream ends", content_type = "text/event-stream", body = String),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token lacks the scope", body = ErrorBody),
        (status = 404, description = "No such operation", body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub(crate) async fn operation_events(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>> {
    require(&api, &headers, ApiScope::Read).await?;
    if api.operations.get(&id).is_none() {
        return Err(ApiError::not_found(format!(
            "no operation `{}`",
            sanitize_for_terminal(&id)
        )));
    }
    let slot = stream_slot(&api)?;
    let operations = api.operations.clone();
    // (sent so far, whether the final event went out)
    let events = futures_util::stream::unfold((0usize, false), move |(sent, ended)| {
        let operations = operations.clone();
        let id = id.clone();
        async move {
            if ended {
                return None;
            }
            loop {
                let op = operations.get(&id)?;
                if let Some(event) = op.progress.get(sent) {
                    let data = serde_json::to_string(event).expect("an event serialises");
                    return Some((
                        Event::default().event("progress").data(data),
                        (sent + 1, false),
                    ));
                }
                if op.state != OperationState::Running {
                    let data = serde_json::to_string(&op).expect("an operation serialises");
                    return Some((Event::default().event("operation").data(data), (sent, true)));
                }
                tokio::time::sleep(OPERATION_POLL).await;
            }
        }
    });
    Ok(event_stream(&api, slot, events, KeepAlive::default()))
}

#[utoipa::path(get, path = "/v1/events", tag = "operations",
    params(("lines" = Option<u32>, Query, description = "How many past lines first (default 100, at most 10000)")),
    responses((status = 200, description = "Server-sent events: one `watchdog` event per line of the watchdog's log (checks, repairs, suspends, wakes), as they come", content_type = "text/event-stream", body = String),
        (status = 400, description = "Malformed input, named", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token lacks the scope", body = ErrorBody),
        (status = 404, description = "No watchdog has written a log yet", body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub(crate) async fn events(
    State(api): State<Api>,
    headers: HeaderMap,
    uri: Uri,
) -> Answer<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>> {
    require(&api, &headers, ApiScope::Read).await?;
    let lines = lines_query(&uri)?;
    let slot = stream_slot(&api)?;
    // Reads only the end of the file: quick enough to do here.
    let (tail, follow) = lobster_core::health::follow_watch_log(api.host.config(), lines as usize)?;
    let first = futures_util::stream::iter(tail);
    let rest = futures_util::stream::unfold(Some(follow), |state| async move {
        let mut follow = state?;
        match follow.next_lines().await {
            Ok(lines) => Some((futures_util::stream::iter(lines), Some(follow))),
            Err(_) => None,
        }
    })
    .flatten();
    let events = first
        .chain(rest)
        .map(|line| Event::default().event("watchdog").data(line));
    Ok(event_stream(&api, slot, events, KeepAlive::default()))
}

#[utoipa::path(post, path = "/v1/tenants/{name}/snap", tag = "tenants",
    params(("name" = String, Path, description = "Tenant name (a DNS label)")),
    responses((status = 202, description = "Archiving the disk: poll the operation, then download `/v1/operations/{id}/archive` (admin)", body = Operation),
        (status = 400, description = "Malformed input, named", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token lacks the scope", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "Another operation on the tenant runs, or its state does not allow this one", body = ErrorBody)),
    security(("bearer" = ["operate"])))]
pub(crate) async fn snap(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Answer<(StatusCode, Json<Operation>)> {
    on_tenant(api, headers, raw, OperationKind::Snap).await
}

#[utoipa::path(get, path = "/v1/operations/{id}/archive", tag = "operations",
    params(("id" = String, Path, description = "A succeeded snap operation's id")),
    responses((status = 200, description = "The archive (`lobsterd spawn --from-snap` restores it): the tenant's whole disk, so admin only", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token lacks the scope", body = ErrorBody),
        (status = 404, description = "No such operation, not a snap, not finished, or its archive is gone", body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub(crate) async fn archive(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer<axum::response::Response> {
    require(&api, &headers, ApiScope::Admin).await?;
    let missing = || {
        ApiError::not_found(format!(
            "no snap archive for operation `{}`",
            sanitize_for_terminal(&id)
        ))
    };
    let op = api.operations.get(&id).ok_or_else(missing)?;
    let path = op
        .result
        .as_ref()
        .filter(|_| op.kind == OperationKind::Snap && op.state == OperationState::Succeeded)
        .and_then(|r| r["path"].as_str())
        .map(std::path::PathBuf::from)
        .ok_or_else(missing)?;
    // Only a regular file in the snapshots directory, never through a link.
    if path.parent() != Some(api.host.config().paths.snapshots_dir.as_path()) {
        return Err(missing());
    }
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(o_nofollow())
        .open(&path)
        .await
        .map_err(|_| missing())?;
    let meta = file.metadata().await.map_err(|_| missing())?;
    if !meta.is_file() {
        return Err(missing());
    }
    let length = meta.len();
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let response = axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/octet-stream")
        .header(axum::http::header::CONTENT_LENGTH, length)
        .body(body)
        .expect("a valid response");
    Ok(response)
}

/// `O_NOFOLLOW`: opening a symbolic link fails.
fn o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

#[utoipa::path(post, path = "/v1/tenants/{name}/molt", tag = "tenants",
    params(("name" = String, Path, description = "Tenant name (a DNS label)")),
    responses((status = 202, description = "Checking and repairing (a suspended tenant is resumed first): poll the operation; its result holds the checks and repairs", body = Operation),
        (status = 400, description = "Malformed input, named", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token lacks the scope", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "Another operation on the tenant runs, or its state does not allow this one", body = ErrorBody)),
    security(("bearer" = ["operate"])))]
pub(crate) async fn molt(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Answer<(StatusCode, Json<Operation>)> {
    on_tenant(api, headers, raw, OperationKind::Molt).await
}

#[utoipa::path(post, path = "/v1/molt", tag = "tenants",
    responses((status = 202, description = "Checking and repairing every tenant that should run (`lobsterd molt`): poll the operation (its tenant is `*`); its result is `{reports: [one per tenant]}`", body = Operation),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token lacks the scope", body = ErrorBody),
        (status = 409, description = "Another molt of every tenant is running", body = ErrorBody)),
    security(("bearer" = ["operate"])))]
pub(crate) async fn molt_all(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Answer<(StatusCode, Json<Operation>)> {
    require(&api, &headers, ApiScope::Operate).await?;
    let host = api.host.clone();
    let op = api
        .operations
        .start(OperationKind::Molt, EVERY_TENANT, |_| async move {
            let reports = host.molt(None).await?;
            Ok(Some(serde_json::json!({ "reports": reports })))
        })?;
    Ok((StatusCode::ACCEPTED, Json(op)))
}

/// The `tenant` of an operation on every tenant (never a tenant name: not
/// a DNS label).
pub const EVERY_TENANT: &str = "*";
