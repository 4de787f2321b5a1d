//! OpenClaw gateway configuration, written as the original lobsterd does:
//! `gateway.mode = "local"`, `gateway.bind = "custom"` (all addresses, so the
//! host reaches it over the tenant network while in-guest tools connect on
//! 127.0.0.1 as "local"), the port, and token auth. OpenClaw since 2026.x
//! refuses `bind = "custom"` without `customBindHost`, so it is set to
//! `0.0.0.0`, which is what the original's `custom` without a host meant.

use std::path::{Path, PathBuf};

use lobster_agent_proto::methods::OpenClawSpec;
use serde_json::{json, Map, Value};

use crate::files::write_private;

/// `<home>/.openclaw/openclaw.json`.
pub fn config_path(home: &Path) -> PathBuf {
    home.join(".openclaw/openclaw.json")
}

/// The config document: the operator's `extra` with the gateway keys set.
pub fn config_document(spec: &OpenClawSpec) -> Value {
    let mut doc = match &spec.extra {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let gateway = doc.entry("gateway").or_insert_with(|| json!({}));
    if !gateway.is_object() {
        *gateway = json!({});
    }
    let g = gateway.as_object_mut().expect("gateway is an object");
    g.insert("mode".into(), json!("local"));
    g.insert("bind".into(), json!("custom"));
    g.insert("customBindHost".into(), json!("0.0.0.0"));
    g.insert("port".into(), json!(spec.port));
    g.insert(
        "auth".into(),
        json!({"mode": "token", "token": spec.gateway_token.expose()}),
    );
    Value::Object(doc)
}

/// Writes the config (0600, directory 0700).
pub fn write_config(home: &Path, spec: &OpenClawSpec) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(&config_document(spec)).map_err(std::io::Error::other)?;
    write_private(&config_path(home), &bytes)
}

/// Environment the gateway expects (as the original launcher set it), plus
/// a persistent V8 compile cache on the tenant disk: OpenClaw loads tens of
/// MB of JavaScript, and reusing compiled code makes every start after the
/// first much faster (decisive under TCG, where a cold start can exceed
/// OpenClaw's own 5 s worker start-up timeout).
pub fn environment(spec: &OpenClawSpec, home: &Path) -> Vec<(String, String)> {
    let cache = home.join(".cache/node-compile-cache");
    vec![
        (
            "OPENCLAW_GATEWAY_TOKEN".into(),
            spec.gateway_token.expose().to_owned(),
        ),
        ("OPENCLAW_GATEWAY_PORT".into(), spec.port.to_string()),
        ("NODE_ENV".into(), "production".into()),
        ("NODE_COMPILE_CACHE".into(), cache.display().to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use lobster_agent_proto::methods::Secret;

    #[test]
    fn default_document_matches_the_original() {
        let spec = OpenClawSpec {
            port: 9000,
            gateway_token: Secret::from("tok"),
            extra: Value::Null,
        };
        assert_eq!(
            config_document(&spec),
            json!({"gateway":{"mode":"local","bind":"custom","customBindHost":"0.0.0.0","port":9000,"auth":{"mode":"token","token":"tok"}}})
        );
    }

    #[test]
    fn operator_defaults_are_kept_and_gateway_keys_win() {
        let spec = OpenClawSpec {
            port: 9100,
            gateway_token: Secret::from("tok"),
            extra: json!({"models": {"providers": {}}, "gateway": {"port": 1, "controlUi": {"allowedOrigins": ["https://a.lobster.local"]}}}),
        };
        let doc = config_document(&spec);
        assert_eq!(doc["models"], json!({"providers": {}}));
        assert_eq!(doc["gateway"]["port"], json!(9100));
        assert_eq!(
            doc["gateway"]["controlUi"]["allowedOrigins"][0],
            json!("https://a.lobster.local")
        );
    }
}
