//! The CRD's CEL rules, evaluated the way the API server does (defaults applied first), so a
//! rule that does not compile or says the wrong thing fails here rather than in a cluster.

use kube::CustomResourceExt;
use kube_cel::{Validator, compile_schema};
use recommender_operator::crd::RecommenderModel;
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = serde_json::to_value(RecommenderModel::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn manifest(spec: Value) -> Value {
    json!({
        "apiVersion": "recommender.dev/v1alpha1",
        "kind": "RecommenderModel",
        "metadata": {"name": "movies", "namespace": "ml"},
        "spec": spec,
    })
}

fn pg() -> Value {
    json!({"host": "db", "database": "app", "user": "app", "passwordSecretRef": {"name": "db"},
           "query": "SELECT user_id, item_id, rating FROM ratings"})
}

/// The messages of the rules `object` breaks.
fn violations(object: &Value) -> Vec<String> {
    match Validator::new().validate(&schema(), object, None) {
        Ok(()) => vec![],
        Err(errors) => errors
            .as_slice()
            .iter()
            .map(|e| e.message.clone())
            .collect(),
    }
}

#[test]
fn every_rule_compiles() {
    let compiled = compile_schema(&schema());
    assert!(
        !compiled.has_errors(),
        "{:?}",
        compiled.compilation_errors()
    );
}

#[test]
fn valid_manifests_pass() {
    let store = json!({"claimName": "models"});
    for spec in [
        json!({"source": {"file": {"path": "movies/u.data"}}, "modelStore": store}),
        json!({"source": {"postgres": pg()}, "modelStore": store, "freshness": {"maxAge": "1h30m", "retrainInterval": "10m"}}),
        json!({"source": {"file": {"path": "r.csv", "format": "delimited", "delimiter": ",", "header": true, "columns": "0,1,2"}},
               "modelStore": store, "hyperparameters": {"ratingScale": {"low": 1.0, "high": 5.0}}}),
        json!({"source": {"postgres": {"host": "db", "database": "a", "user": "u", "passwordSecretRef": {"name": "s"},
                 "query": "SELECT 1", "sslMode": "verify-full", "caSecretRef": {"name": "ca"}}},
               "modelStore": {"claimName": "models", "keep": 3},
               "trainer": {"nodeSelector": {"pool": "gpu"}, "env": [{"name": "RUST_LOG", "value": "debug"}, {"name": "PGPASSWORD_FILE", "value": "x"}],
                           "labels": {"team": "recs", "app.kubernetes.io/component-owner": "ml", "app.kubernetes.io/name": "movies"},
                           "tolerations": [{"key": "pool", "operator": "Exists", "effect": "NoSchedule"}]},
               "predictor": {"autoscaling": {"minReplicas": 2, "maxReplicas": 6, "targetRequestsPerSecond": 300},
                             "annotations": {"team": "recs"}, "serviceAccountName": "predictor"}}),
        json!({"source": {"file": {"path": "ratings.csv"}},
               "modelStore": {"keep": 5, "s3": {"endpoint": "http://s3.store.svc:8333", "bucket": "models",
                   "prefix": "team-a", "pathStyle": true, "credentialsSecret": "model-store",
                   "caSecret": {"name": "store-ca"}}}}),
        json!({"source": {"file": {"path": "ratings.csv"}},
               "modelStore": {"s3": {"bucket": "models", "region": "eu-west-1", "credentialsSecret": "k"}},
               "predictor": {"topologySpreadConstraints": [{"topologyKey": "topology.kubernetes.io/zone",
                   "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]}}),
        json!({"source": {"file": {"path": "u.data"}}, "modelStore": store, "rollout": {"strategy": "Progressive"}}),
        json!({"source": {"file": {"path": "u.data"}}, "modelStore": store, "rollout": {"strategy": "Progressive",
               "paused": true,
               "shadow": {"margin": 0.05, "alpha": 0.01, "beta": 0.1, "minSamples": 500, "timeout": "1h", "onInconclusive": "Abort"},
               "canary": {"steps": [{"share": 0.1, "minDuration": "5m"}, {"share": 1.0, "minDuration": "0s"}],
                          "minFeedback": 50, "accuracy": {"margin": 0.05}, "latency": {"margin": 1.0, "alpha": 0.01},
                          "stepTimeout": "2h", "onInconclusive": "Proceed"}}}),
        // Immediate with settings: allowed, ignored.
        json!({"source": {"file": {"path": "u.data"}}, "modelStore": store, "rollout": {"shadow": {"minSamples": 20}}}),
    ] {
        assert_eq!(
            violations(&manifest(spec.clone())),
            Vec::<String>::new(),
            "{spec}"
        );
    }
}

#[test]
fn invalid_manifests_are_rejected_naming_the_field() {
    let store = json!({"claimName": "models"});
    let file = json!({"path": "u.data"});
    let cases = [
        (
            json!({"source": {}, "modelStore": store}),
            "spec.source: exactly one of spec.source.postgres or spec.source.file must be set",
        ),
        (
            json!({"source": {"file": file, "postgres": pg()}, "modelStore": store}),
            "spec.source: exactly one of",
        ),
        (
            json!({"source": {"file": {"path": "/etc/passwd"}}, "modelStore": store}),
            "spec.source.file.path must be relative",
        ),
        (
            json!({"source": {"file": {"path": "a/../../b"}}, "modelStore": store}),
            "spec.source.file.path must be relative",
        ),
        (
            json!({"source": {"file": {"path": "u.data", "delimiter": ","}}, "modelStore": store}),
            "spec.source.file: delimiter, header and columns apply only",
        ),
        (
            json!({"source": {"postgres": {"host": "db", "database": "a", "user": "u", "passwordSecretRef": {"name": "s"}, "query": "  "}}, "modelStore": store}),
            "spec.source.postgres.query must not be blank",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "freshness": {"maxAge": "0s"}}),
            "spec.freshness.maxAge must be a duration of at least 1s",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "freshness": {"retrainInterval": "30s"}}),
            "spec.freshness.retrainInterval must be a duration of at least 1m",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "hyperparameters": {"lrAll": 0.0}}),
            "spec.hyperparameters.lrAll must be in (0, 1]",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "hyperparameters": {"ratingScale": {"low": 5.0, "high": 1.0}}}),
            "spec.hyperparameters.ratingScale.low must be below high",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "promotion": {"maxRmse": 0.0}}),
            "spec.promotion.maxRmse must be positive",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "trainer": {"labels": {"recommender.dev/run": "3"}}}),
            "labels: keys under recommender.dev/ and app.kubernetes.io/managed-by",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "predictor": {"labels": {"app.kubernetes.io/component": "x"}}}),
            "labels: keys under recommender.dev/ and app.kubernetes.io/managed-by",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "predictor": {"annotations": {"recommender.dev/x": "y"}}}),
            "annotations: keys under recommender.dev/ are reserved",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "trainer": {"env": [{"name": "PGPASSWORD", "value": "x"}]}}),
            "spec.trainer.env: PGPASSWORD is set by the operator",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "predictor": {"env": [{"name": "LISTEN_ADDR", "value": "x"}]}}),
            "spec.predictor.env: MODEL_PATH and LISTEN_ADDR are set by the operator",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "predictor": {"env": [{"name": "MODEL_PATH", "value": "x"}]}}),
            "spec.predictor.env: MODEL_PATH and LISTEN_ADDR are set by the operator",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "predictor": {"autoscaling": {"minReplicas": 5, "maxReplicas": 3, "targetCpuUtilization": 50}}}),
            "spec.predictor.autoscaling: minReplicas must not exceed maxReplicas",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "predictor": {"autoscaling": {"maxReplicas": 3}}}),
            "spec.predictor.autoscaling: set targetCpuUtilization, targetRequestsPerSecond or both",
        ),
        (
            json!({"source": {"postgres": {"host": "db", "database": "a", "user": "u", "passwordSecretRef": {"name": "s"}, "query": "SELECT 1",
                "sslMode": "require", "caSecretRef": {"name": "ca"}}}, "modelStore": store}),
            "spec.source.postgres.caSecretRef is used with sslMode verify-full",
        ),
        (
            json!({"source": {"file": file}, "modelStore": {"keep": 3}}),
            "spec.modelStore: exactly one of spec.modelStore.claimName or spec.modelStore.s3 must be set",
        ),
        (
            json!({"source": {"file": file}, "modelStore": {"claimName": "m",
                "s3": {"bucket": "models", "credentialsSecret": "k"}}}),
            "spec.modelStore: exactly one of spec.modelStore.claimName or spec.modelStore.s3 must be set",
        ),
        (
            json!({"source": {"file": file}, "modelStore": {
                "s3": {"bucket": "models", "prefix": "a/../b", "credentialsSecret": "k"}}}),
            "spec.modelStore.s3.prefix must not have a '.' or '..' segment",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "rollout": {"shadow": {"alpha": 0.7}}}),
            "spec.rollout.shadow.alpha must be in (0, 0.5]",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "rollout": {"shadow": {"beta": 0.0}}}),
            "spec.rollout.shadow.beta must be in (0, 0.5]",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "rollout": {"shadow": {"margin": 0.0}}}),
            "spec.rollout.shadow.margin must be in (0, 25]",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "rollout": {"shadow": {"timeout": "30s"}}}),
            "spec.rollout.shadow.timeout must be a duration of at least 1m",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "rollout": {"canary": {"steps": [{"share": 0.5}, {"share": 0.25}]}}}),
            "spec.rollout.canary.steps: shares must be strictly increasing",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "rollout": {"canary": {"steps": [{"share": 0.5}, {"share": 0.5}]}}}),
            "spec.rollout.canary.steps: shares must be strictly increasing",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "rollout": {"canary": {"steps": [{"share": 1.5}]}}}),
            "spec.rollout.canary.steps[].share must be in (0, 1]",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "rollout": {"canary": {"acceptance": {"margin": 0.1, "alpha": 0.6}}}}),
            "spec.rollout.canary guardrail alphas must be in (0, 0.5]",
        ),
        (
            json!({"source": {"file": file}, "modelStore": store, "rollout": {"canary": {"stepTimeout": "5s"}}}),
            "spec.rollout.canary.stepTimeout must be a duration of at least 1m",
        ),
    ];
    for (spec, expected) in cases {
        let found = violations(&manifest(spec.clone()));
        assert!(
            found.iter().any(|m| m.starts_with(expected)),
            "{spec}: expected {expected:?}, got {found:?}"
        );
    }
}

/// What the schema (not CEL) refuses of `spec.rollout`: the enums, the step count, the minimum
/// sample count.
#[test]
fn rollout_schema_bounds() {
    let node = |path: &[&str]| {
        let mut n = schema()["properties"]["spec"]["properties"]["rollout"].clone();
        for p in path {
            n = n["properties"][*p].clone();
        }
        n
    };
    assert_eq!(
        node(&["strategy"])["enum"],
        json!(["Immediate", "Progressive"])
    );
    assert_eq!(
        node(&["shadow", "onInconclusive"])["enum"],
        json!(["Hold", "Abort", "Proceed"])
    );
    assert_eq!(node(&["canary", "steps"])["maxItems"], 10);
    assert_eq!(node(&["canary", "steps"])["minItems"], 1);
    assert_eq!(node(&["shadow", "minSamples"])["minimum"].as_f64(), Some(2.0));
}

#[test]
fn long_names_are_rejected() {
    let mut object =
        manifest(json!({"source": {"file": {"path": "u"}}, "modelStore": {"claimName": "m"}}));
    object["metadata"]["name"] = json!("a".repeat(41));
    let found = violations(&object);
    assert!(
        found
            .iter()
            .any(|m| m.starts_with("metadata.name must be at most 40")),
        "{found:?}"
    );
}

#[test]
fn example_manifests_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let object: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            violations(&object),
            Vec::<String>::new(),
            "{}",
            path.display()
        );
        let typed: Result<RecommenderModel, _> = serde_yaml::from_str(&text);
        assert!(typed.is_ok(), "{}: {:?}", path.display(), typed.err());
        checked += 1;
    }
    assert!(checked >= 2);
}
