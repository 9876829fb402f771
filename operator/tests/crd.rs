//! The generated CRD: checked-in copies are current, and the schema is one the API server takes.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;
use recommender_contract::defaults::{BASELINE, FOLDS, SVD};
use recommender_operator::crd::{RecommenderModel, RecommenderModelSpec};
use std::path::Path;

const REGENERATE: &str = "cargo run -q -p recommender-operator --bin crdgen > crds/recommendermodels.yaml && cp crds/recommendermodels.yaml charts/recommender-operator/crds/recommendermodels.yaml";

fn workspace_file(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

#[test]
fn checked_in_crds_match_crdgen() {
    let expected = RecommenderModel::crd_yaml().unwrap();
    for file in [
        "crds/recommendermodels.yaml",
        "charts/recommender-operator/crds/recommendermodels.yaml",
    ] {
        let actual = std::fs::read_to_string(workspace_file(file)).unwrap_or_default();
        assert!(
            actual == expected,
            "{file} is out of date with the Rust types; regenerate it with:\n  {REGENERATE}"
        );
    }
}

#[test]
fn crd_yaml_loads_as_a_custom_resource_definition() {
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&RecommenderModel::crd_yaml().unwrap()).unwrap();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("recommendermodels.recommender.dev")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    let names = crd.spec.names.short_names.clone().unwrap();
    assert!(names.contains(&"rm".to_string()) && names.contains(&"recmodel".to_string()));
    let version = &crd.spec.versions[0];
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<_> = version
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Phase", "Ready", "Version", "Rollout", "RMSE", "MAE", "Accuracy", "Stale", "Age",
            "Tuned", "URL"
        ]
    );
    let schema = version
        .schema
        .as_ref()
        .unwrap()
        .open_api_v3_schema
        .as_ref()
        .unwrap();
    assert_structural(schema, "");
}

/// The rules of a structural schema that derive output can break: every node has a type (or is
/// int-or-string / preserves unknown fields) and no `$ref`, `anyOf`/`oneOf` with types, or
/// `additionalProperties` next to `properties`.
fn assert_structural(schema: &JSONSchemaProps, path: &str) {
    let typed = schema.type_.is_some()
        || schema.x_kubernetes_int_or_string == Some(true)
        || schema.x_kubernetes_preserve_unknown_fields == Some(true);
    assert!(typed, "{path}: schema node without a type");
    assert!(schema.ref_path.is_none(), "{path}: $ref is not allowed");
    for branch in schema.any_of.iter().chain(schema.one_of.iter()).flatten() {
        assert!(branch.type_.is_none(), "{path}: typed anyOf/oneOf branch");
    }
    if let Some(props) = &schema.properties {
        assert!(
            schema.additional_properties.is_none(),
            "{path}: properties and additionalProperties together"
        );
        for (name, child) in props {
            assert_structural(child, &format!("{path}.{name}"));
        }
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(items)) =
        &schema.items
    {
        assert_structural(items, &format!("{path}[]"));
    }
    if let Some(
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrBool::Schema(
            inner,
        ),
    ) = &schema.additional_properties
    {
        assert_structural(inner, &format!("{path}{{}}"));
    }
}

#[test]
fn minimal_manifest_gets_the_trainer_defaults() {
    let spec: RecommenderModelSpec = serde_yaml::from_str(
        "source: {file: {path: ratings/u.data}}\nmodelStore: {claimName: models}\n",
    )
    .unwrap();
    assert_eq!(spec.folds, FOLDS);
    assert_eq!(spec.hyperparameters.factors, SVD.factors);
    assert_eq!(
        spec.hyperparameters.epochs, None,
        "resolved per algorithm by the operator"
    );
    assert_eq!(spec.hyperparameters.lr_all, SVD.lr_all);
    assert_eq!(spec.hyperparameters.reg_all, SVD.reg_all);
    assert_eq!(spec.hyperparameters.init_mean, SVD.init_mean);
    assert_eq!(spec.hyperparameters.init_std, SVD.init_std);
    assert_eq!(spec.hyperparameters.biased, SVD.biased);
    assert_eq!(spec.promotion.max_rmse, 1.0);
    assert_eq!(spec.promotion.max_mae, 0.8);
    assert_eq!(spec.freshness.max_age, "168h");
    assert!(spec.freshness.retrain_when_stale);
    assert_eq!(spec.predictor.port, 8080);
}

/// The API server fills defaults from the schema: they must be the defaults table's, which the
/// trainer CLI reads too (its side is tested in `trainer/tests/cli.rs`).
#[test]
fn schema_defaults_are_the_defaults_table() {
    let crd = serde_json::to_value(RecommenderModel::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(spec["folds"]["default"], FOLDS);
    assert_eq!(spec["promotion"]["default"]["maxRmse"], 1.0);
    assert_eq!(spec["freshness"]["default"]["maxAge"], "168h");
    let h = &spec["hyperparameters"];
    for (field, want) in [
        ("factors", serde_json::json!(SVD.factors)),
        ("lrAll", serde_json::json!(SVD.lr_all)),
        ("regAll", serde_json::json!(SVD.reg_all)),
        ("initMean", serde_json::json!(SVD.init_mean)),
        ("initStd", serde_json::json!(SVD.init_std)),
        ("biased", serde_json::json!(SVD.biased)),
    ] {
        assert_eq!(h["default"][field], want, "hyperparameters.default.{field}");
        assert_eq!(
            h["properties"][field]["default"], want,
            "hyperparameters.{field}.default"
        );
    }
    for algorithm_specific in ["epochs", "regU", "regI"] {
        assert!(
            h["default"].get(algorithm_specific).is_none()
                && h["properties"][algorithm_specific].get("default").is_none(),
            "{algorithm_specific} has no schema default: it depends on the algorithm"
        );
    }
    assert_eq!(BASELINE.epochs, 10, "Surprise's BaselineOnly default");
}

/// The API server rejects a CRD whose defaults break their own schema (a default of 0 under
/// `minimum: 10` once slipped through): check every default against its node.
#[test]
fn schema_defaults_satisfy_their_own_schema() {
    fn check(schema: &serde_json::Value, value: &serde_json::Value, path: &str) {
        if let (Some(n), Some(min)) = (value.as_f64(), schema["minimum"].as_f64()) {
            assert!(n >= min, "{path}: default {n} is below minimum {min}");
        }
        if let (Some(n), Some(max)) = (value.as_f64(), schema["maximum"].as_f64()) {
            assert!(n <= max, "{path}: default {n} is above maximum {max}");
        }
        if let Some(allowed) = schema["enum"].as_array() {
            assert!(
                allowed.contains(value),
                "{path}: default {value} not in {allowed:?}"
            );
        }
        if let (Some(s), Some(min)) = (value.as_str(), schema["minLength"].as_u64()) {
            assert!(
                s.chars().count() as u64 >= min,
                "{path}: default {s:?} too short"
            );
        }
        if let (Some(object), Some(props)) = (value.as_object(), schema["properties"].as_object()) {
            for (key, child) in object {
                let child_schema = props.get(key).unwrap_or_else(|| {
                    panic!("{path}.{key}: default has a field the schema lacks")
                });
                check(child_schema, child, &format!("{path}.{key}"));
            }
        }
    }
    fn walk(schema: &serde_json::Value, path: &str, seen: &mut usize) {
        if let Some(default) = schema.get("default") {
            *seen += 1;
            check(schema, default, path);
        }
        if let Some(props) = schema["properties"].as_object() {
            for (key, child) in props {
                walk(child, &format!("{path}.{key}"), seen);
            }
        }
        if schema["items"].is_object() {
            walk(&schema["items"], &format!("{path}[]"), seen);
        }
    }
    let crd = serde_json::to_value(RecommenderModel::crd()).unwrap();
    let mut seen = 0;
    walk(
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        "",
        &mut seen,
    );
    assert!(
        seen > 20,
        "expected the spec's defaults to be checked, saw {seen}"
    );
}
