//! The checked-in OpenAPI document is the one the code generates (as the
//! C header is the one cbindgen generates). After changing a route or a
//! type it returns: `LOBSTER_BLESS=1 cargo test -p lobster-api --test openapi`.

use std::path::Path;

#[test]
fn the_checked_in_document_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api/openapi.json");
    let generated = lobster_api::openapi::document_json();
    if std::env::var_os("LOBSTER_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/api/openapi.json differs from the generated document: run \
         LOBSTER_BLESS=1 cargo test -p lobster-api --test openapi and commit it"
    );
}

#[test]
fn the_document_is_openapi_3_1_and_names_every_route_with_its_scope() {
    let doc: serde_json::Value =
        serde_json::from_str(&lobster_api::openapi::document_json()).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in paths {
        for (method, op) in methods.as_object().unwrap() {
            let scopes = &op["security"][0]["bearer"];
            assert!(scopes.is_array(), "{method} {path} names no scope");
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {path}: no 401"
            );
            assert!(
                op["responses"]["403"].is_object(),
                "{method} {path}: no 403"
            );
        }
    }
    for schema in [
        "Tenant",
        "Operation",
        "ErrorBody",
        "SpawnBody",
        "Resources",
        "Allocation",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "no schema {schema}"
        );
    }
}
