//! The `/v1` routes. Each checks the caller's scope first, then its input
//! (a bad name or body is 400 naming it, before the host is touched),
//! then calls one [`Host`](lobster_core::Host) method.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use lobster_core::agent::sanitize_for_terminal;
use lobster_core::store::name::validate_tenant_name;
use lobster_core::store::ApiScope;
use lobster_core::{Tenant, TenantSpec};
use serde::Deserialize;

use crate::auth::require;
use crate::error::ApiError;
use crate::operations::{Operation, OperationKind};
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
        .route("/v1/operations", get(operations))
        .route("/v1/operations/{id}", get(operation))
}

/// A tenant name from a path, checked before the host sees it.
fn name(raw: &str) -> Answer<&str> {
    validate_tenant_name(raw).map_err(|reason| {
        ApiError::bad_request(format!(
            "tenant name `{}`: {reason}",
            sanitize_for_terminal(raw)
        ))
    })?;
    Ok(raw)
}

async fn list(State(api): State<Api>, headers: HeaderMap) -> Answer<Json<Vec<Tenant>>> {
    require(&api, &headers, ApiScope::Read).await?;
    Ok(Json(api.host.list().await?))
}

async fn tenant(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Answer<Json<Tenant>> {
    require(&api, &headers, ApiScope::Read).await?;
    Ok(Json(api.host.get(name(&raw)?).await?))
}

async fn token(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Answer<Json<serde_json::Value>> {
    require(&api, &headers, ApiScope::Admin).await?;
    let name = name(&raw)?;
    let token = api.host.token(name).await?;
    Ok(Json(serde_json::json!({ "name": name, "token": token })))
}

/// The body of `POST /v1/tenants`: the fields of `lobsterd spawn`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpawnBody {
    name: String,
    vcpus: Option<u8>,
    memory_mib: Option<u32>,
    overlay_size_mib: Option<u32>,
    idle_suspend_after_s: Option<u32>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    command: Vec<String>,
}

async fn spawn(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<(StatusCode, Json<Operation>)> {
    require(&api, &headers, ApiScope::Operate).await?;
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
            OperationKind::Spawn => unreachable!("spawn has its own route"),
        };
        Ok(done.map(|t| serde_json::to_value(t).expect("a tenant serializes")))
    })?;
    Ok((StatusCode::ACCEPTED, Json(op)))
}

async fn evict(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Answer<(StatusCode, Json<Operation>)> {
    on_tenant(api, headers, raw, OperationKind::Evict).await
}

async fn suspend(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Answer<(StatusCode, Json<Operation>)> {
    on_tenant(api, headers, raw, OperationKind::Suspend).await
}

async fn resume(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Answer<(StatusCode, Json<Operation>)> {
    on_tenant(api, headers, raw, OperationKind::Resume).await
}

async fn operations(State(api): State<Api>, headers: HeaderMap) -> Answer<Json<Vec<Operation>>> {
    require(&api, &headers, ApiScope::Read).await?;
    Ok(Json(api.operations.list()))
}

async fn operation(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer<Json<Operation>> {
    require(&api, &headers, ApiScope::Read).await?;
    api.operations.get(&id).map(Json).ok_or_else(|| {
        ApiError::not_found(format!("no operation `{}`", sanitize_for_terminal(&id)))
    })
}
