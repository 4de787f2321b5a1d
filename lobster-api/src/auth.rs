//! Who is calling: the `Authorization: Bearer` token, checked against the
//! host's API tokens (hashed, compared in constant time: see
//! [`lobster_core::Host::verify_api_token`]) before a route reads its
//! input, so a caller without the scope learns nothing about tenants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(ApiError::unauthorized)?;
    // A store that cannot be read is the server's trouble; its details
    // (paths, parse errors) go to the log, not to an unauthenticated caller.
    let token = match api.host.verify_api_token(presented).await {
        Ok(token) => token.ok_or_else(ApiError::unauthorized)?,
        Err(e) => {
            tracing::error!(error = %e, "api: cannot check tokens");
            return Err(ApiError::unavailable(
                "cannot check tokens now; try again later",
            ));
        }
    };
    if token.scope < needed {
        return Err(ApiError::forbidden(needed.as_str()));
    }
    api.limiter.admit(&token.id)?;
    Ok(token)
}

/// Requests a token may make: `burst` at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once after a quiet spell.
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 50.0,
            burst: 100.0,
        }
    }
}

/// A token bucket per API token id.
#[derive(Debug, Clone, Default)]
pub struct Limiter {
    limit: RateLimit,
    buckets: Arc<Mutex<HashMap<String, (f64, Instant)>>>,
}

impl Limiter {
    /// Buckets of `limit`.
    pub fn new(limit: RateLimit) -> Limiter {
        Limiter {
            limit,
            buckets: Arc::default(),
        }
    }

    /// Takes one request from token `id`'s bucket, or 429 with how long
    /// to wait.
    pub fn admit(&self, id: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("limiter lock");
        let (tokens, at) = buckets
            .entry(id.to_owned())
            .or_insert((self.limit.burst, now));
        let refilled = (*tokens + now.duration_since(*at).as_secs_f64() * self.limit.per_second)
            .min(self.limit.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            let wait = ((1.0 - refilled) / self.limit.per_second).ceil().max(1.0) as u64;
            Err(ApiError::rate_limited(wait))
        }
    }
}
