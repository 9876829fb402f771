//! A CRD's OpenAPI schema as the tests compare two versions of it: every path with its type,
//! what is required where, and a manifest pruned to what a schema declares (as the API server
//! prunes what an older CRD does not know).

use crate::command::kubectl;
use serde_json::Value;
use std::path::Path;

/// Removes from `value` what `schema` does not declare, the way the API server would refuse
/// it; returns the removed fields' paths.
pub fn prune_to_schema(value: &mut Value, schema: &Value, path: &str) -> Vec<String> {
    let mut dropped = Vec::new();
    match value {
        Value::Object(map) if schema.get("properties").is_some() => {
            let props = &schema["properties"];
            map.retain(|key, _| {
                let known = props.get(key).is_some();
                if !known {
                    dropped.push(format!("{path}.{key}"));
                }
                known
            });
            for (key, v) in map.iter_mut() {
                dropped.extend(prune_to_schema(v, &props[key], &format!("{path}.{key}")));
            }
        }
        Value::Array(items) if schema.get("items").is_some() => {
            for (i, v) in items.iter_mut().enumerate() {
                dropped.extend(prune_to_schema(
                    v,
                    &schema["items"],
                    &format!("{path}[{i}]"),
                ));
            }
        }
        _ => {}
    }
    dropped
}

/// Whether the CRD the API server has is this tree's (the previous one had no scale subresource).
pub fn crd_has_scale() -> bool {
    let (_, out) = kubectl(&[
        "get",
        "crd",
        "recommendermodels.recommender.dev",
        "-o",
        "jsonpath={.spec.versions[0].subresources.scale.specReplicasPath}",
    ]);
    out.trim() == ".spec.predictor.replicas"
}

/// Every property path of `schema` with its type, to compare two versions of the schema.
pub fn schema_paths(schema: &Value, path: &str, out: &mut Vec<(String, String)>) {
    let kind = schema["type"].as_str().unwrap_or("").to_string();
    out.push((path.to_string(), kind));
    if let Some(props) = schema["properties"].as_object() {
        for (key, sub) in props {
            schema_paths(sub, &format!("{path}.{key}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        schema_paths(items, &format!("{path}[]"), out);
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        schema_paths(values, &format!("{path}{{}}"), out);
    }
}

/// The `required` lists of `schema`, by path.
pub fn required_fields(schema: &Value, path: &str, out: &mut Vec<String>) {
    for r in schema["required"].as_array().into_iter().flatten() {
        out.push(format!("{path}.{}", r.as_str().unwrap()));
    }
    if let Some(props) = schema["properties"].as_object() {
        for (key, sub) in props {
            required_fields(sub, &format!("{path}.{key}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        required_fields(items, &format!("{path}[]"), out);
    }
}

/// The OpenAPI schema of the first version of the CRD in `file`, as kubectl reads the file.
pub fn crd_schema(file: &Path) -> Value {
    let (ok, out) = kubectl(&[
        "create",
        "--dry-run=client",
        "-o",
        "json",
        "-f",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let crd: Value = serde_json::from_str(&out).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "required": ["spec"], "properties": {
            "spec": {"type": "object", "required": ["source"], "properties": {
                "source": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "object", "properties": {
                    "key": {"type": "string"}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            }},
        }})
    }

    #[test]
    fn paths_name_every_property_with_its_type() {
        let mut paths = Vec::new();
        schema_paths(&schema(), "", &mut paths);
        let paths: Vec<(&str, &str)> = paths
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        assert_eq!(
            paths,
            [
                ("", "object"),
                (".spec", "object"),
                (".spec.labels", "object"),
                (".spec.labels{}", "string"),
                (".spec.source", "string"),
                (".spec.tags", "array"),
                (".spec.tags[]", "object"),
                (".spec.tags[].key", "string"),
            ]
        );
    }

    #[test]
    fn required_fields_are_listed_by_path() {
        let mut required = Vec::new();
        required_fields(&schema(), "", &mut required);
        assert_eq!(required, [".spec", ".spec.source"]);
    }

    #[test]
    fn pruning_drops_what_the_schema_does_not_declare_and_names_it() {
        let mut manifest = json!({"spec": {"source": "db", "extra": 1,
            "tags": [{"key": "a", "value": "b"}]}});
        let dropped = prune_to_schema(&mut manifest, &schema(), "");
        assert_eq!(dropped, [".spec.extra", ".spec.tags[0].value"]);
        assert_eq!(
            manifest,
            json!({"spec": {"source": "db", "tags": [{"key": "a"}]}})
        );
    }
}
