//! Who may reach and write to a predictor (issue 22): a write token from a Secret the owner opted
//! in guards `POST /v1/feedback` (so only accepted feedback moves `status.online`), a Secret not
//! opted in leaves the predictor Deployment alone with `Serving` saying why, and
//! `spec.predictor.networkPolicy` gives the model a NetworkPolicy it owns. The local cluster's
//! bridge CNI does not enforce NetworkPolicies, so the test checks the object the operator writes
//! (selectors, peers, port, owner), not dropped packets.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use kube::api::Api;
use kube::{Client, ResourceExt};
use recommender_e2e::*;
use recommender_operator::crd::{PredictorNetworkPolicy, WriteTokenRef};
use serde_json::json;
use std::time::Duration;

const TOKEN: &str = "e2e-feedback-token-0123456789";
const TOKEN_SECRET: &str = "feedback-token";
const INTERVAL: &str = "--online-interval=3";

async fn token_secret(client: &Client, ns: &str, allowed: bool) {
    let labels = if allowed {
        json!({"recommender.dev/allow": "true"})
    } else {
        json!({})
    };
    apply_json(
        client,
        &json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": TOKEN_SECRET, "namespace": ns, "labels": labels},
            // As `kubectl create secret --from-file` leaves it: with a trailing newline.
            "stringData": {"token": format!("{TOKEN}\n")},
        }),
    )
    .await;
}

fn feedback(item: u32) -> serde_json::Value {
    json!({"user": "196", "item": item.to_string(), "rating": 4})
}

#[tokio::test]
async fn a_write_token_from_an_opted_in_secret_guards_feedback_and_the_online_status() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-token").await;
    let interval = format!("extraArgs={{{INTERVAL}}}");
    // The chart's RBAC names the Secrets the operator may read: the database's and the token's.
    let secrets = format!("rbac.secrets.resourceNames={{{DB_SECRET},{TOKEN_SECRET}}}");
    Operator::install(
        &client,
        &env.repo,
        &ns.name,
        &ns.name,
        &[&interval, &secrets],
    )
    .await;
    token_secret(&client, &ns.name, false).await;
    let model = postgres_model(&env, &ns, "movies", |s| {
        s.predictor.write_token = Some(WriteTokenRef {
            secret_name: TOKEN_SECRET.into(),
            key: "token".into(),
        });
    });
    apply_model(&client, &model).await;

    // v1 is promoted, but the Secret is not opted in: no predictor, and `Serving` says why.
    let status = wait_status(
        &models(&client, &ns.name),
        "movies",
        TRAIN_TIMEOUT,
        "Serving reason WriteTokenNotAllowed",
        |s| {
            condition(s, "Serving").is_some_and(|c| c.reason == "WriteTokenNotAllowed")
                && serving_version(s) == Some("v1")
        },
    )
    .await;
    let serving = condition(&status, "Serving").unwrap();
    assert_eq!(serving.status, "False", "{serving:?}");
    let secret_named = format!(
        "Secret {}/{TOKEN_SECRET} (spec.predictor.writeToken)",
        ns.name
    );
    assert!(serving.message.starts_with(&secret_named), "{serving:?}");
    assert!(
        !serving.message.contains(TOKEN),
        "never the value: {serving:?}"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        deployments
            .get_opt("movies-predictor")
            .await
            .unwrap()
            .is_none(),
        "no Deployment is created around a Secret that is not opted in"
    );

    // Labelled: looked at again without any change to the model, and mounted.
    token_secret(&client, &ns.name, true).await;
    wait_serving(&client, &ns.name, "movies", "v1").await;
    let deployment = deployments.get("movies-predictor").await.unwrap();
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap();
    assert!(
        args.windows(2)
            .any(|w| w == ["--write-token-file", "/etc/recommender/write-token/token"]),
        "{args:?}"
    );

    let base = predictor_url(&client, &ns.name, "movies").await;
    let url = format!("{base}/v1/feedback");
    // Reads stay open.
    assert_served_by(&client, &ns.name, "movies", "v1").await;
    for (token, what) in [
        (None, "no token"),
        (Some("not-the-write-token-at-all"), "another token"),
    ] {
        let (code, body) = post_json_as(&url, &feedback(1), token).await.unwrap();
        assert_eq!(code, 401, "{what}: {body}");
        assert_eq!(body["error"], "unauthorized", "{what}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    let (code, body) = post_json_as(&url, &feedback(2), Some(TOKEN)).await.unwrap();
    assert_eq!(code, 200, "{body}");

    // Only the accepted feedback counts, on the predictor and in the status.
    let status = wait_status(
        &models(&client, &ns.name),
        "movies",
        Duration::from_secs(60),
        "status.online with the accepted feedback",
        |s| s.online.as_ref().is_some_and(|o| o.feedback >= 1),
    )
    .await;
    assert_eq!(
        status.online.unwrap().feedback,
        1,
        "the refused writes count for nothing"
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    assert!(secrets.get(TOKEN_SECRET).await.is_ok());
}

#[tokio::test]
async fn a_predictor_network_policy_is_owned_by_its_model_and_goes_with_the_field() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-netpol").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    let shop: NetworkPolicyPeer = serde_json::from_value(json!({
        "namespaceSelector": {"matchLabels": {"team": "shop"}},
        "podSelector": {"matchLabels": {"app": "storefront"}}
    }))
    .unwrap();
    let model = postgres_model(&env, &ns, "movies", |s| {
        s.predictor.network_policy = Some(PredictorNetworkPolicy {
            from: vec![shop.clone()],
        });
    });
    apply_model(&client, &model).await;
    wait_serving(&client, &ns.name, "movies", "v1").await;

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    let policy = policies.get("movies-predictor").await.unwrap();
    let owner = models(&client, &ns.name).get("movies").await.unwrap();
    let refs = policy.owner_references();
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_eq!(
        (
            refs[0].kind.as_str(),
            Some(&refs[0].uid),
            refs[0].controller
        ),
        ("RecommenderModel", owner.uid().as_ref(), Some(true))
    );
    let spec = policy.spec.unwrap();
    let selected = spec.pod_selector.unwrap().match_labels.unwrap();
    assert_eq!(selected["recommender.dev/model"], "movies");
    assert_eq!(selected["app.kubernetes.io/component"], "predictor");
    // It selects the predictor pods that run.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns.name);
    let selector = selected
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let running = pods
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .unwrap();
    assert!(!running.items.is_empty(), "the policy selects no pod");
    assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
    let rules = spec.ingress.unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    let from = rules[0].from.clone().unwrap();
    assert_eq!(from[0], shop);
    // The operator's pods (installed in the test's namespace by the chart) come next.
    let operator = serde_json::to_value(&from[1]).unwrap();
    assert_eq!(
        operator,
        json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns.name}},
            "podSelector": {"matchLabels": {
                "app.kubernetes.io/component": "operator",
                "app.kubernetes.io/instance": "rec",
                "app.kubernetes.io/name": "recommender-operator"}}
        })
    );
    let peer = operator["podSelector"]["matchLabels"].as_object().unwrap();
    let peer_selector = peer
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
        .collect::<Vec<_>>()
        .join(",");
    let operators = pods
        .list(&kube::api::ListParams::default().labels(&peer_selector))
        .await
        .unwrap();
    assert!(
        operators.items.iter().any(is_ready),
        "the operator's pods are the ones its peer selects"
    );
    let port = rules[0].ports.clone().unwrap();
    assert_eq!(
        serde_json::to_value(&port).unwrap(),
        json!([{"port": 8080, "protocol": "TCP"}])
    );

    // Dropped from the spec: deleted (the Deployment remembered it).
    update_spec(&client, &ns.name, "movies", |s| {
        s.predictor.network_policy = None
    })
    .await;
    wait_until(
        Duration::from_secs(60),
        "the NetworkPolicy to be deleted",
        || async {
            policies
                .get_opt("movies-predictor")
                .await
                .unwrap()
                .is_none()
        },
    )
    .await;
    assert_served_by(&client, &ns.name, "movies", "v1").await;
}
