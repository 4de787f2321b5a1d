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
        routes::logs,
        routes::follow_logs,
        routes::overview,
        routes::operations,
        routes::operation,
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

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document as checked in: pretty JSON with a final newline.
pub fn document_json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("the document serialises");
    text.push('\n');
    text
}
