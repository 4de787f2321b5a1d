//! Who is calling: the `Authorization: Bearer` token, checked against the
//! host's API tokens (hashed, compared in constant time: see
//! [`lobster_core::Host::verify_api_token`]) before a route reads its
//! input, so a caller without the scope learns nothing about tenants.

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use lobster_core::store::{ApiScope, ApiToken};

use crate::error::ApiError;
use crate::Api;

/// The caller's token if it has at least `needed`: a missing or unknown
/// token is 401, a known one without the scope 403.
pub async fn require(
    api: &Api,
    headers: &HeaderMap,
    needed: ApiScope,
) -> Result<ApiToken, ApiError> {
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthorized)?;
    let token = api
        .host
        .verify_api_token(presented.trim())
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    if token.scope < needed {
        return Err(ApiError::forbidden(needed.as_str()));
    }
    Ok(token)
}
