//! What a platform team sets around a model: pod settings, and (in their own functions) the
//! rules the schema states too, re-checked so an object stored before a schema change still
//! gets one condition naming the field rather than a child the API server refuses.

use crate::children::{PREDICTOR_ENV, TRAINER_ENV};
use crate::crd::{PgSslMode, PodSettings, RecommenderModelSpec, reserved_key};

/// `spec.source.postgres`: a CA bundle is what verify-full checks against, and nothing else
/// reads it.
pub(super) fn tls(spec: &RecommenderModelSpec, problem: &mut impl FnMut(&'static str, String)) {
    if let Some(pg) = &spec.source.postgres
        && pg.ca_secret_ref.is_some()
        && pg.ssl_mode != PgSslMode::VerifyFull
    {
        problem(
            "spec.source.postgres.caSecretRef",
            format!(
                "is used with sslMode verify-full, not {}",
                pg.ssl_mode.tls()
            ),
        );
    }
}

/// `spec.modelStore`: a claim or a bucket, and a bucket's settings as the trainer and the
/// predictor will check them (`recommender_store::StoreArgs`), so a setting they would refuse is
/// refused here first, naming the field.
pub(super) fn model_store(
    spec: &RecommenderModelSpec,
    problem: &mut impl FnMut(&'static str, String),
) {
    let store = &spec.model_store;
    if store.claim_name.is_some() == store.s3.is_some() {
        problem(
            "spec.modelStore",
            "exactly one of spec.modelStore.claimName or spec.modelStore.s3 must be set".into(),
        );
        return;
    }
    if let Some(file) = &spec.source.file
        && store.s3.is_some()
        && let Err(why) = recommender_store::key::check(&file.path)
    {
        problem(
            "spec.source.file.path",
            format!(
                "{:?} cannot name an object in the model's folder: the key {why}",
                file.path
            ),
        );
    }
    // The model's name is a DNS label, a valid key segment: any stands in for it.
    let flags = crate::children::store_flags(store, "model");
    let placeholder = || recommender_store::Credentials::new("id".into(), "secret".into());
    if let Err(e) = flags.config_with(placeholder) {
        let field = match e.field {
            "--store-endpoint" => "spec.modelStore.s3.endpoint",
            "--store-region" => "spec.modelStore.s3.region",
            "--store-ca-file" => "spec.modelStore.s3.caSecret",
            _ => "spec.modelStore.s3",
        };
        // The value as written for the endpoint and region; the bucket's folder holds the
        // placeholder name and the CA file is the operator's mount, so neither is repeated.
        let value = match (e.field, &e.value) {
            ("--store-endpoint" | "--store-region", Some(value)) => format!("{value:?}: "),
            _ => String::new(),
        };
        // The store speaks in flags; the spec's author reads fields.
        let why = e
            .why
            .replace("--store-path-style", "pathStyle: true")
            .replace("--store-endpoint", "the endpoint");
        problem(field, format!("{value}{why}"));
    }
}

/// `spec.predictor.autoscaling`: a range the autoscaler can move in, and something to follow.
pub(super) fn autoscaling(
    spec: &RecommenderModelSpec,
    problem: &mut impl FnMut(&'static str, String),
) {
    let Some(a) = &spec.predictor.autoscaling else {
        return;
    };
    let field = "spec.predictor.autoscaling";
    if a.min_replicas < 1 || a.max_replicas < 2 || a.min_replicas > a.max_replicas {
        problem(
            field,
            format!(
                "minReplicas {} and maxReplicas {} must satisfy 1 <= minReplicas <= maxReplicas, maxReplicas >= 2",
                a.min_replicas, a.max_replicas
            ),
        );
    }
    if a.target_cpu_utilization.is_none() && a.target_requests_per_second.is_none() {
        problem(
            field,
            "set targetCpuUtilization, targetRequestsPerSecond or both".into(),
        );
    }
}

/// Checks both components' pod settings.
pub(super) fn pod_settings(
    spec: &RecommenderModelSpec,
    problem: &mut impl FnMut(&'static str, String),
) {
    let trainer = Fields {
        labels: "spec.trainer.labels",
        annotations: "spec.trainer.annotations",
        env: "spec.trainer.env",
        reserved_env: &TRAINER_ENV,
    };
    let predictor = Fields {
        labels: "spec.predictor.labels",
        annotations: "spec.predictor.annotations",
        env: "spec.predictor.env",
        reserved_env: &PREDICTOR_ENV,
    };
    check(&spec.trainer.pod, &trainer, problem);
    check(&spec.predictor.pod, &predictor, problem);
}

struct Fields {
    labels: &'static str,
    annotations: &'static str,
    env: &'static str,
    reserved_env: &'static [&'static str],
}

fn check(pod: &PodSettings, fields: &Fields, problem: &mut impl FnMut(&'static str, String)) {
    for (key, value) in &pod.labels {
        if reserved_key(key) {
            problem(fields.labels, format!("{key:?} is set by the operator"));
        } else if !qualified_name(key) {
            problem(fields.labels, format!("{key:?} is not a valid label key"));
        } else if !label_value(value) {
            problem(
                fields.labels,
                format!("{value:?} (of {key:?}) is not a valid label value"),
            );
        }
    }
    for key in pod.annotations.keys() {
        if reserved_key(key) {
            problem(
                fields.annotations,
                format!("{key:?} is reserved for the operator"),
            );
        } else if !qualified_name(key) {
            problem(
                fields.annotations,
                format!("{key:?} is not a valid annotation key"),
            );
        }
    }
    for var in &pod.env {
        if fields.reserved_env.contains(&var.name.as_str()) {
            problem(fields.env, format!("{} is set by the operator", var.name));
        } else if var.name.is_empty() {
            problem(fields.env, "a variable has no name".into());
        }
    }
}

/// A label or annotation key: `[prefix/]name`, the prefix a DNS subdomain, the name at most 63
/// alphanumerics, `-`, `_` or `.` starting and ending alphanumeric.
fn qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    prefix_ok && !name.is_empty() && label_value(name)
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_` or `.`, starting and ending
/// alphanumeric.
fn label_value(value: &str) -> bool {
    let edge = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && edge(value.chars().next())
        && edge(value.chars().last())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::spec;
    use crate::validate::validate;

    const FILE: &str = "source: {file: {path: movies/u.data}}\nmodelStore: {claimName: models}\n";

    #[test]
    fn autoscaling_needs_a_range_and_a_target() {
        let bad = spec(&format!(
            "{FILE}predictor: {{autoscaling: {{minReplicas: 4, maxReplicas: 3}}}}\n"
        ));
        let messages: Vec<String> = validate(&bad)
            .unwrap_err()
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect();
        assert_eq!(
            messages,
            [
                "spec.predictor.autoscaling: minReplicas 4 and maxReplicas 3 must satisfy 1 <= minReplicas <= maxReplicas, maxReplicas >= 2",
                "spec.predictor.autoscaling: set targetCpuUtilization, targetRequestsPerSecond or both"
            ]
        );
        let good = spec(&format!(
            "{FILE}predictor: {{autoscaling: {{maxReplicas: 3, targetRequestsPerSecond: 200}}}}\n"
        ));
        assert_eq!(
            validate(&good).unwrap().training.folds,
            recommender_contract::defaults::FOLDS
        );
    }

    #[test]
    fn a_ca_without_verify_full_names_the_field() {
        let source = "source: {postgres: {host: db, database: d, user: u, query: SELECT 1, \
                      passwordSecretRef: {name: s}, caSecretRef: {name: ca}";
        let bad = spec(&format!(
            "{source}, sslMode: require}}}}\nmodelStore: {{claimName: m}}\n"
        ));
        assert_eq!(
            validate(&bad).unwrap_err().to_string(),
            "spec.source.postgres.caSecretRef: is used with sslMode verify-full, not require"
        );
        let good = spec(&format!(
            "{source}, sslMode: verify-full}}}}\nmodelStore: {{claimName: m}}\n"
        ));
        assert!(validate(&good).is_ok());
    }

    #[test]
    fn label_syntax() {
        for good in ["team", "example.com/team", "a.b-c_d", "x/y"] {
            assert!(qualified_name(good), "{good}");
        }
        for bad in [
            "",
            "-team",
            "team-",
            "Example.com/team",
            "a b",
            "/x",
            &"x".repeat(64),
        ] {
            assert!(!qualified_name(bad), "{bad}");
        }
        assert!(label_value("") && label_value("v1.2") && !label_value("a/b"));
    }

    #[test]
    fn reserved_keys_and_env_are_refused_naming_the_field() {
        let bad = spec(&format!(
            "{FILE}trainer:\n  labels: {{recommender.dev/run: '9', team: recs}}\n  env: [{{name: PGPASSWORD, value: x}}]\n\
             predictor:\n  labels: {{'bad key': x}}\n  annotations: {{recommender.dev/x: y}}\n  env: [{{name: MODEL_PATH, value: /tmp/m}}]\n"
        ));
        let invalid = validate(&bad).unwrap_err();
        let found: Vec<(&str, &str)> = invalid
            .problems
            .iter()
            .map(|p| (p.field, p.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "spec.trainer.labels",
                    "\"recommender.dev/run\" is set by the operator"
                ),
                ("spec.trainer.env", "PGPASSWORD is set by the operator"),
                (
                    "spec.predictor.labels",
                    "\"bad key\" is not a valid label key"
                ),
                (
                    "spec.predictor.annotations",
                    "\"recommender.dev/x\" is reserved for the operator"
                ),
                ("spec.predictor.env", "MODEL_PATH is set by the operator"),
            ]
        );

        let fine = spec(&format!(
            "{FILE}trainer:\n  nodeSelector: {{pool: gpu}}\n  labels: {{team: recs}}\n  env: [{{name: RUST_LOG, value: debug}}]\n"
        ));
        assert!(validate(&fine).is_ok());
    }

    /// The store's own parser judges a bucket's settings, so what a pod would refuse is refused
    /// here, naming the field.
    #[test]
    fn a_model_store_is_one_claim_or_one_valid_bucket() {
        let source = "source: {file: {path: ratings.csv}}\n";
        let problems = |store: &str| -> Vec<String> {
            match validate(&spec(&format!("{source}modelStore: {store}\n"))) {
                Ok(_) => Vec::new(),
                Err(invalid) => invalid
                    .problems
                    .iter()
                    .map(|p| format!("{}: {}", p.field, p.message))
                    .collect(),
            }
        };
        assert_eq!(problems("{claimName: m}"), Vec::<String>::new());
        assert_eq!(
            problems(
                "{s3: {endpoint: 'http://s3.store.svc:8333/', bucket: models, prefix: team-a, pathStyle: true, credentialsSecret: k}}"
            ),
            Vec::<String>::new()
        );
        let both = "spec.modelStore: exactly one of spec.modelStore.claimName or spec.modelStore.s3 must be set";
        assert_eq!(problems("{keep: 3}"), [both]);
        assert_eq!(
            problems("{claimName: m, s3: {bucket: models, credentialsSecret: k}}"),
            [both]
        );
        assert_eq!(
            problems(
                "{s3: {endpoint: 'http://10.0.0.1:8333', bucket: models, credentialsSecret: k}}"
            ),
            [
                "spec.modelStore.s3.endpoint: \"http://10.0.0.1:8333/\": is an IP address, which cannot carry the bucket in its host name: add pathStyle: true"
            ]
        );
        assert_eq!(
            problems("{s3: {bucket: My_Bucket, credentialsSecret: k}}"),
            [
                "spec.modelStore.s3: the bucket name may hold lowercase letters, digits, '.' and '-' only"
            ]
        );
        assert_eq!(
            problems(
                "{s3: {endpoint: 'http://s3.svc', bucket: models, credentialsSecret: k, caSecret: {name: ca}}}"
            ),
            [
                "spec.modelStore.s3.caSecret: is for an https:// endpoint, and the endpoint is http://"
            ]
        );
        assert_eq!(
            problems("{s3: {bucket: models, region: US, credentialsSecret: k}}"),
            [
                "spec.modelStore.s3.region: \"US\": must be lowercase letters, digits and '-' (e.g. us-east-1)"
            ]
        );
    }
}
