//! The OpenAPI 3.1 document, generated from the routes' annotations and
//! the types they return (their doc comments are the descriptions).
//! `docs/api/openapi.json` holds it; a test fails when the two differ.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "lobster",
        description = "Remote control of a lobster host's microVM tenants. Every route but this document needs a bearer token (`lobsterd api-token create`) with the scope it names: read < operate < admin. Errors are `{code, message}`, `code` the stable error kind."
    ),
    paths(
        routes::list,
        routes::spawn,
        routes::tenant,
        routes::evict,
        routes::suspend,
        routes::resume,
        routes::token,
        routes::rotate_tokens,
        routes::snap,
        routes::molt,
        routes::molt_all,
        routes::logs,
        routes::follow_logs,
        crate::exec::exec,
        routes::overview,
        routes::watchdog_log,
        routes::metrics,
        routes::operations,
        routes::operation,
        routes::operation_events,
        routes::archive,
        routes::events,
    ),
    modifiers(&Bearer),
    tags(
        (name = "tenants", description = "Tenants and their lifecycle"),
        (name = "operations", description = "Long operations to poll"),
    )
)]
struct ApiDoc;

/// The `bearer` security scheme every route names.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // Every authenticated route may answer 429 (the token's budget).
        let limited = ResponseBuilder::new()
            .description("The token's request budget is spent: retry after `Retry-After` seconds")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.delete]
                .into_iter()
                .flatten()
            {
                if op.security.is_some() {
                    op.responses
                        .responses
                        .insert("429".to_owned(), limited.clone().into());
                }
            }
        }
    }
}

/// What a tenant name must be (as `validate_tenant_name` checks): one DNS
/// label of a-z, 0-9 and `-`, starting with a letter, not ending in `-`.
pub const TENANT_NAME_PATTERN: &str = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$";

/// What an environment variable's name must be.
pub const ENV_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

/// The document (JSON: it says more than utoipa's model holds, e.g.
/// `propertyNames`).
pub fn document() -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    // The rules the derive cannot say, in one place: every tenant name
    // (path parameters and the spawn body), the names of `env` and `secrets`, the log
    // sources.
    let mut value = serde_json::to_value(&doc).expect("the document serialises");
    let pattern = serde_json::json!(TENANT_NAME_PATTERN);
    for item in value["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
    {
        for op in item
            .as_object_mut()
            .into_iter()
            .flat_map(|i| i.values_mut())
        {
            let params = op.get_mut("parameters").and_then(|p| p.as_array_mut());
            for param in params.into_iter().flatten() {
                if param["name"] == "name" && param["in"] == "path" {
                    param["schema"]["pattern"] = pattern.clone();
                }
                if param["name"] == "source" && param["in"] == "query" {
                    param["schema"]["enum"] = serde_json::json!(["workload", "agent"]);
                }
                if param["name"] == "lines" && param["in"] == "query" {
                    param["schema"]["maximum"] = serde_json::json!(crate::routes::MAX_LOG_LINES);
                }
            }
            // An event stream's `schema` describes each event (OpenAPI 3.1).
            let responses = op.get_mut("responses").and_then(|r| r.as_object_mut());
            for response in responses.into_iter().flat_map(|r| r.values_mut()) {
                if let Some(stream) = response.pointer_mut("/content/text~1event-stream") {
                    stream["schema"] =
                        serde_json::json!({ "$ref": "#/components/schemas/ServerSentEvent" });
                }
            }
        }
    }
    value["components"]["schemas"]["ServerSentEvent"] = serde_json::json!({
        "type": "object",
        "description": "One server-sent event: `event` names it (progress, operation, line, watchdog, error), `data` holds it (JSON for progress, operation and error events; one text line for log and watchdog events)",
        "required": ["event", "data"],
        "properties": {
            "event": { "type": "string", "enum": ["progress", "operation", "line", "watchdog", "error"] },
            "data": { "type": "string" },
            "id": { "type": "string" },
            "retry": { "type": "integer" }
        }
    });
    let spawn = &mut value["components"]["schemas"]["SpawnBody"]["properties"];
    spawn["name"]["pattern"] = pattern;
    for map in ["env", "secrets"] {
        spawn[map]["propertyNames"] = serde_json::json!({ "pattern": ENV_NAME_PATTERN });
    }
    value
}

/// The document as checked in: pretty JSON with a final newline.
pub fn document_json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("the document serialises");
    text.push('\n');
    text
}
