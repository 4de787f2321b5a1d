//! Every error the API answers, as `{code, message}`: `code` is the
//! stable [`ErrorKind`] name (or one of the API's own: `unauthorized`,
//! `forbidden`, `conflict`, `bad_request`, `rate_limited`, `too_many`,
//! `too_large`, `unavailable`), with one HTTP status per code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lobster_core::{Error, ErrorKind};
use serde::{Deserialize, Serialize};

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    retry_after_s: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
            },
            retry_after_s: None,
        }
    }

    /// The server cannot answer now (its token store is unreadable).
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// A bug: a task of the server failed.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Internal.as_str(),
            message,
        )
    }

    /// Too much at once: open streams or running operations at their cap.
    pub fn too_many(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many", message);
        e.retry_after_s = Some(5);
        e
    }

    /// The body is over [`MAX_BODY_BYTES`](crate::MAX_BODY_BYTES).
    pub fn too_large() -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is over {} bytes", crate::MAX_BODY_BYTES),
        )
    }

    /// The token used up its request budget; retry after `seconds`.
    pub fn rate_limited(seconds: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests with this token: retry after {seconds} s"),
        );
        e.retry_after_s = Some(seconds);
        e
    }

    /// No token, or not a valid one.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    /// A valid token without the scope the route needs.
    pub fn forbidden(needed: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this route needs a token with scope `{needed}`"),
        )
    }

    /// Another operation on the tenant is running.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// Something of the API's own (an operation) is not known.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, ErrorKind::NotFound.as_str(), message)
    }

    /// Malformed input that never reached the host, naming what is wrong.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// The status answered.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body answered.
    pub fn body(&self) -> &ErrorBody {
        &self.body
    }
}

/// The one HTTP status of each kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::InvalidState => StatusCode::CONFLICT,
        ErrorKind::InvalidArgument => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Exhausted => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::GuestFailure => StatusCode::BAD_GATEWAY,
        ErrorKind::Corrupt | ErrorKind::HostFailure | ErrorKind::Internal => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let kind = e.kind();
        ApiError::new(status_of(kind), kind.as_str(), e.to_string())
    }
}

impl From<&Error> for ErrorBody {
    fn from(e: &Error) -> ErrorBody {
        ErrorBody {
            code: e.kind().as_str().to_owned(),
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_status_and_only_server_faults_are_5xx() {
        for kind in ErrorKind::ALL {
            let status = status_of(kind);
            let server_fault = matches!(
                kind,
                ErrorKind::Corrupt
                    | ErrorKind::HostFailure
                    | ErrorKind::Internal
                    | ErrorKind::Unsupported
                    | ErrorKind::Timeout
                    | ErrorKind::Exhausted
                    | ErrorKind::GuestFailure
            );
            assert_eq!(status.is_server_error(), server_fault, "{kind:?}: {status}");
        }
    }
}
