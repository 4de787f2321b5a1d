//! The pinned Firecracker API spec (Swagger 2.0) and a validator for
//! request bodies, as strict as Firecracker itself: types, required
//! fields, enums, minimum/maximum, integer widths, and unknown fields
//! rejected (Firecracker's request structs use `deny_unknown_fields`; only
//! schemas marked `additionalProperties: true` accept extra keys). `null`
//! stands for an absent optional field, as serde's `Option` reads it.
//!
//! The YAML is read with a YAML 1.2 loader, so `Logger.level`'s `Off`
//! stays a string (a YAML 1.1 loader would turn it into `false`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The pinned spec text (embedded: tests never read outside the repo).
pub const SPEC_YAML: &str = include_str!("spec/firecracker-api-v1.16.1.yaml");

/// The spec of Firecracker v1.14.4, the release the real-binary tests
/// (`tx_firecracker_real`) run; every body is valid for both.
pub const SPEC_V1_14_4_YAML: &str = include_str!("spec/firecracker-api-v1.14.4.yaml");

/// The parsed spec.
#[derive(Debug, Clone)]
pub struct Spec {
    doc: Value,
}

/// An operation of the spec matched by a request.
#[derive(Debug, Clone)]
pub struct Operation {
    /// The path template, e.g. `/drives/{drive_id}`.
    pub template: String,
    /// Values of the template's `{parameters}`.
    pub params: BTreeMap<String, String>,
    /// Schema of the `in: body` parameter, if any.
    pub body_schema: Option<Value>,
    /// Whether the body is required.
    pub body_required: bool,
}

impl Spec {
    /// The spec lobster is pinned to.
    pub fn pinned() -> Spec {
        Spec::parse(SPEC_YAML).expect("the pinned spec parses")
    }

    /// The spec of Firecracker v1.14.4 (see [`SPEC_V1_14_4_YAML`]).
    pub fn v1_14_4() -> Spec {
        Spec::parse(SPEC_V1_14_4_YAML).expect("the v1.14.4 spec parses")
    }

    /// Every spec lobster's requests must satisfy: the pinned one first.
    pub fn supported() -> [Spec; 2] {
        [Spec::pinned(), Spec::v1_14_4()]
    }

    /// Parses spec text.
    pub fn parse(text: &str) -> Result<Spec, String> {
        let yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let doc = yaml_to_json(yaml);
        if doc["swagger"] != "2.0" {
            return Err("not a Swagger 2.0 document".into());
        }
        Ok(Spec { doc })
    }

    /// `info.version`.
    pub fn version(&self) -> &str {
        self.doc["info"]["version"].as_str().unwrap_or("?")
    }

    /// A definition by name.
    pub fn definition(&self, name: &str) -> Option<&Value> {
        self.doc["definitions"].get(name)
    }

    /// Every (method, path template) pair of the spec.
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(paths) = self.doc["paths"].as_object() {
            for (path, item) in paths {
                for method in item.as_object().into_iter().flat_map(|m| m.keys()) {
                    out.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    /// Finds the operation for `method` and a concrete `path`.
    pub fn operation(&self, method: &str, path: &str) -> Option<Operation> {
        let paths = self.doc["paths"].as_object()?;
        for (template, item) in paths {
            let Some(params) = match_template(template, path) else {
                continue;
            };
            let op = item.get(method.to_lowercase())?;
            let body = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["in"] == "body");
            return Some(Operation {
                template: template.clone(),
                params,
                body_schema: body.map(|b| b["schema"].clone()),
                body_required: body.is_some_and(|b| b["required"] == true),
            });
        }
        None
    }

    /// Validates `value` against `schema`; the error names the field path.
    pub fn validate(&self, schema: &Value, value: &Value) -> Result<(), String> {
        self.check(schema, value, "")
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> Result<&'a Value, String> {
        match schema.get("$ref").and_then(Value::as_str) {
            None => Ok(schema),
            Some(reference) => {
                let name = reference
                    .strip_prefix("#/definitions/")
                    .ok_or_else(|| format!("unsupported $ref {reference}"))?;
                self.definition(name)
                    .ok_or_else(|| format!("unknown definition {name}"))
            }
        }
    }

    fn check(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema)?;
        let here = || {
            if at.is_empty() {
                "body".to_string()
            } else {
                format!("`{at}`")
            }
        };
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                let names: Vec<String> =
                    allowed.iter().map(|v| format!("`{}`", plain(v))).collect();
                return Err(format!(
                    "unknown variant `{}` in {}, expected one of {}",
                    plain(value),
                    here(),
                    names.join(", ")
                ));
            }
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("object") | None
                if schema.get("properties").is_some() || schema.get("type").is_some() =>
            {
                let object = value.as_object().ok_or_else(|| {
                    format!(
                        "invalid type: {} in {}, expected an object",
                        kind(value),
                        here()
                    )
                })?;
                self.check_object(schema, object, at)
            }
            Some("string") => value.is_string().then_some(()).ok_or_else(|| {
                format!(
                    "invalid type: {} in {}, expected a string",
                    kind(value),
                    here()
                )
            }),
            Some("boolean") => value.is_boolean().then_some(()).ok_or_else(|| {
                format!(
                    "invalid type: {} in {}, expected a boolean",
                    kind(value),
                    here()
                )
            }),
            Some("integer") => self.check_integer(schema, value, &here()),
            Some("number") => value.is_number().then_some(()).ok_or_else(|| {
                format!(
                    "invalid type: {} in {}, expected a number",
                    kind(value),
                    here()
                )
            }),
            Some("array") => {
                let items = value.as_array().ok_or_else(|| {
                    format!(
                        "invalid type: {} in {}, expected a sequence",
                        kind(value),
                        here()
                    )
                })?;
                for (i, item) in items.iter().enumerate() {
                    self.check(&schema["items"], item, &format!("{at}[{i}]"))?;
                }
                Ok(())
            }
            Some(other) => Err(format!("unsupported schema type {other}")),
            None => Ok(()),
        }
    }

    fn check_object(
        &self,
        schema: &Value,
        object: &Map<String, Value>,
        at: &str,
    ) -> Result<(), String> {
        let empty = Map::new();
        let properties = schema["properties"].as_object().unwrap_or(&empty);
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap_or_default();
            if object.get(name).is_none_or(Value::is_null) {
                return Err(format!("missing field `{}`", join(at, name)));
            }
        }
        for (key, value) in object {
            match properties.get(key) {
                Some(_) if value.is_null() => {}
                Some(property) => self.check(property, value, &join(at, key))?,
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(true)) => {}
                    Some(extra @ Value::Object(_)) => self.check(extra, value, &join(at, key))?,
                    _ => {
                        let known: Vec<String> =
                            properties.keys().map(|k| format!("`{k}`")).collect();
                        return Err(format!(
                            "unknown field `{}`, expected one of {}",
                            join(at, key),
                            known.join(", ")
                        ));
                    }
                },
            }
        }
        Ok(())
    }

    fn check_integer(&self, schema: &Value, value: &Value, here: &str) -> Result<(), String> {
        let n = value
            .as_i64()
            .map(i128::from)
            .or_else(|| value.as_u64().map(i128::from))
            .ok_or_else(|| {
                format!(
                    "invalid type: {} in {here}, expected an integer",
                    kind(value)
                )
            })?;
        let (lo, hi) = match schema.get("format").and_then(Value::as_str) {
            Some("int32") => (i128::from(i32::MIN), i128::from(i32::MAX)),
            _ => (i128::from(i64::MIN), i128::from(u64::MAX)),
        };
        if n < lo || n > hi {
            return Err(format!(
                "invalid value: integer `{n}` in {here}, out of range"
            ));
        }
        if let Some(min) = schema.get("minimum").and_then(Value::as_i64) {
            if n < i128::from(min) {
                return Err(format!(
                    "invalid value: integer `{n}` in {here}, below the minimum {min}"
                ));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_i64) {
            if n > i128::from(max) {
                return Err(format!(
                    "invalid value: integer `{n}` in {here}, above the maximum {max}"
                ));
            }
        }
        Ok(())
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

fn plain(value: &Value) -> String {
    value
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "map",
    }
}

fn match_template(template: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let t: Vec<&str> = template.trim_end_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    let mut params = BTreeMap::new();
    for (t, p) in t.iter().zip(&p) {
        if let Some(name) = t.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
            if p.is_empty() {
                return None;
            }
            params.insert(name.to_string(), p.to_string());
        } else if t != p {
            return None;
        }
    }
    Some(params)
}

/// YAML to JSON, with non-string keys (response codes) turned into strings.
fn yaml_to_json(value: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => serde_yaml::to_string(&other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => yaml_to_json(tagged.value),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(method: &str, path: &str, body: Value) -> Result<(), String> {
        let spec = Spec::pinned();
        let op = spec.operation(method, path).ok_or("no such operation")?;
        spec.validate(op.body_schema.as_ref().unwrap(), &body)
    }

    #[test]
    fn pinned_spec_is_v1_16_1_with_all_operations() {
        let spec = Spec::pinned();
        assert_eq!(spec.version(), "1.16.1");
        assert_eq!(spec.operations().len(), 38);
        assert_eq!(spec.doc["paths"].as_object().unwrap().len(), 26);
        assert_eq!(spec.doc["definitions"].as_object().unwrap().len(), 44);
        let old = Spec::v1_14_4();
        assert_eq!(old.version(), "1.14.4");
        assert_eq!(old.operations().len(), 37);
        assert_eq!(old.doc["definitions"].as_object().unwrap().len(), 42);
    }

    #[test]
    fn logger_level_off_is_a_string_not_false() {
        let spec = Spec::pinned();
        let levels = &spec.definition("Logger").unwrap()["properties"]["level"]["enum"];
        assert!(
            levels.as_array().unwrap().contains(&json!("Off")),
            "{levels}"
        );
        check("PUT", "/logger", json!({"level": "Off"})).unwrap();
        assert!(check("PUT", "/logger", json!({"level": false})).is_err());
    }

    #[test]
    fn validator_is_as_strict_as_firecracker() {
        check(
            "PUT",
            "/machine-config",
            json!({"vcpu_count": 2, "mem_size_mib": 512}),
        )
        .unwrap();
        let cases = [
            (
                "PUT",
                "/machine-config",
                json!({"vcpu_count": 2}),
                "missing field `mem_size_mib`",
            ),
            (
                "PUT",
                "/machine-config",
                json!({"vcpu_count": 33, "mem_size_mib": 1}),
                "above the maximum 32",
            ),
            (
                "PUT",
                "/machine-config",
                json!({"vcpu_count": 0, "mem_size_mib": 1}),
                "below the minimum 1",
            ),
            (
                "PUT",
                "/machine-config",
                json!({"vcpu_count": "2", "mem_size_mib": 1}),
                "expected an integer",
            ),
            (
                "PUT",
                "/machine-config",
                json!({"vcpu_count": 1, "mem_size_mib": 1, "vcpus": 1}),
                "unknown field `vcpus`",
            ),
            (
                "PUT",
                "/actions",
                json!({"action_type": "Reboot"}),
                "unknown variant `Reboot`",
            ),
            (
                "PUT",
                "/drives/x",
                json!({"drive_id": "x", "is_root_device": false, "rate_limiter": {"bandwidth": {"size": 1}}}),
                "missing field `rate_limiter.bandwidth.refill_time`",
            ),
            (
                "PUT",
                "/drives/x",
                json!({"drive_id": "x", "is_root_device": false, "rate_limiter": {"bandwidth": {"size": -1, "refill_time": 1}}}),
                "below the minimum 0",
            ),
            (
                "PATCH",
                "/vm",
                json!({"state": "Stopped"}),
                "unknown variant `Stopped`",
            ),
        ];
        for (method, path, body, expected) in cases {
            let err = check(method, path, body.clone()).expect_err(&body.to_string());
            assert!(err.contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn paths_match_templates_and_capture_parameters() {
        let spec = Spec::pinned();
        let op = spec.operation("PUT", "/network-interfaces/eth0").unwrap();
        assert_eq!(op.template, "/network-interfaces/{iface_id}");
        assert_eq!(op.params["iface_id"], "eth0");
        assert!(spec.operation("PUT", "/drives/").is_none());
        assert!(spec.operation("DELETE", "/drives/a").is_none());
        assert!(spec.operation("GET", "/nope").is_none());
    }
}
