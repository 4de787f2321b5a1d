//! Request and reply envelopes, error codes, and the request parser.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest accepted method name.
pub const MAX_METHOD_LEN: usize = 64;

/// One request line: `{"id":N,"method":"...","params":{...},"token":"..."}`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Chosen by the client; echoed in every reply line for this request.
    pub id: u64,
    /// Method name, e.g. `workload.status`.
    pub method: String,
    /// Method parameters (an object; `null` or absent means none).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
    /// The tenant's agent token, for callers that skip `hello`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Parameters may hold secrets and the token is one: show neither.
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Why a request line was rejected before dispatch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Not a JSON request object of the expected shape.
    #[error("malformed request")]
    Malformed(#[source] serde_json::Error),
    /// The method name is empty, too long or not `[a-z0-9._]`.
    #[error("invalid method name")]
    BadMethod,
    /// `params` is neither an object nor null.
    #[error("params must be an object")]
    BadParams,
}

/// Parses and validates one request line (the fuzzed entry point).
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    let request: Request = serde_json::from_slice(line).map_err(RequestError::Malformed)?;
    let m = &request.method;
    if m.is_empty()
        || m.len() > MAX_METHOD_LEN
        || !m
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
    {
        return Err(RequestError::BadMethod);
    }
    if !(request.params.is_object() || request.params.is_null()) {
        return Err(RequestError::BadParams);
    }
    Ok(request)
}

/// One reply line: `{"id":N,"ok":...}`, `{"id":N,"error":{...}}` or
/// `{"id":N,"event":...}` (a streamed item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The id of the request this answers (0 for connection-level errors).
    pub id: u64,
    /// The outcome.
    #[serde(flatten)]
    pub body: ReplyBody,
}

/// The outcome carried by a [`Reply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyBody {
    /// Success, with the method's result.
    Ok(Value),
    /// Failure.
    Error(RemoteError),
    /// One item of a stream; more may follow.
    Event(Value),
}

impl Reply {
    /// A success reply.
    pub fn ok(id: u64, result: Value) -> Reply {
        Reply {
            id,
            body: ReplyBody::Ok(result),
        }
    }

    /// A failure reply.
    pub fn error(id: u64, code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply {
            id,
            body: ReplyBody::Error(RemoteError {
                code,
                message: message.into(),
            }),
        }
    }

    /// A stream item.
    pub fn event(id: u64, item: Value) -> Reply {
        Reply {
            id,
            body: ReplyBody::Event(item),
        }
    }
}

/// A structured error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable detail (never contains secrets).
    pub message: String,
}

/// Stable error codes of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request line or its parameters are malformed.
    BadRequest,
    /// Token missing or wrong; the connection is closed after this reply.
    Unauthorized,
    /// The client's protocol version is not supported.
    UnsupportedVersion,
    /// No such method (on this port).
    UnknownMethod,
    /// A line exceeded the size cap; the connection is closed.
    TooLarge,
    /// The named thing (hold, log file) does not exist.
    NotFound,
    /// The request does not fit the current state (start an unconfigured workload).
    InvalidState,
    /// Too many connections or holds; try again later.
    Busy,
    /// The agent failed (I/O error in the guest).
    Internal,
    /// A code this client does not know (a newer agent).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The wire name of this code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownMethod => "unknown_method",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::Busy => "busy",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_round_trips_and_omits_empty_fields() {
        let r = Request {
            id: 7,
            method: "stats".into(),
            params: Value::Null,
            token: None,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"id":7,"method":"stats"}"#);
        assert_eq!(parse_request(text.as_bytes()).unwrap(), r);
    }

    #[test]
    fn replies_have_the_documented_shape() {
        let ok = serde_json::to_value(Reply::ok(3, json!({"a": 1}))).unwrap();
        assert_eq!(ok, json!({"id": 3, "ok": {"a": 1}}));
        let err =
            serde_json::to_value(Reply::error(4, ErrorCode::Unauthorized, "bad token")).unwrap();
        assert_eq!(
            err,
            json!({"id": 4, "error": {"code": "unauthorized", "message": "bad token"}})
        );
        let ev = serde_json::to_value(Reply::event(5, json!({"line": "x"}))).unwrap();
        assert_eq!(ev, json!({"id": 5, "event": {"line": "x"}}));
        let back: Reply = serde_json::from_value(err).unwrap();
        assert_eq!(back, Reply::error(4, ErrorCode::Unauthorized, "bad token"));
    }

    #[test]
    fn unknown_error_codes_decode_as_unknown() {
        let r: Reply =
            serde_json::from_str(r#"{"id":1,"error":{"code":"from_the_future","message":"m"}}"#)
                .unwrap();
        assert_eq!(
            r.body,
            ReplyBody::Error(RemoteError {
                code: ErrorCode::Unknown,
                message: "m".into()
            })
        );
    }

    #[test]
    fn parser_rejects_bad_shapes() {
        for bad in [
            &b"not json"[..],
            br#"{"method":"x"}"#,
            br#"{"id":-1,"method":"x"}"#,
            br#"{"id":1,"method":"x","extra":1}"#,
            br#"{"id":1,"method":""}"#,
            br#"{"id":1,"method":"Stats"}"#,
            br#"{"id":1,"method":"x","params":[1]}"#,
        ] {
            assert!(
                parse_request(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!(
            r#"{{"id":1,"method":"{}"}}"#,
            "a".repeat(MAX_METHOD_LEN + 1)
        );
        assert!(matches!(
            parse_request(long.as_bytes()),
            Err(RequestError::BadMethod)
        ));
    }

    #[test]
    fn debug_output_hides_token_and_params() {
        let r = Request {
            id: 1,
            method: "secrets.inject".into(),
            params: json!({"env": {"API_KEY": "sk-secret"}}),
            token: Some("tok-secret".into()),
        };
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("sk-secret") && !shown.contains("tok-secret"),
            "{shown}"
        );
    }
}
