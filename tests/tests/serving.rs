//! How a served model is reached and scaled (issue 14): `status.url` is the predictor's DNS
//! name and resolves through the cluster's DNS to its Service; READY and URL are `kubectl get`
//! columns; autoscaling hands the replica count to a HorizontalPodAutoscaler and back, through the
//! resource's `scale` subresource, with a disruption budget while there are two replicas or more.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::Api;
use recommender_e2e::*;
use recommender_operator::crd::Autoscaling;
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn status_url_is_the_predictors_dns_name_and_ready_is_a_column() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-url").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    apply_model(&client, &postgres_model(&env, &ns, "movies", |_| {})).await;
    wait_serving(&client, &ns.name, "movies", "v1").await;
    let status = model_status(&client, &ns.name, "movies").await;

    let host = format!("movies-predictor.{}.svc.cluster.local", ns.name);
    let url = format!("http://{host}:8080");
    assert_eq!(status.url.as_deref(), Some(url.as_str()), "{status:?}");
    assert_eq!(
        status.address.as_ref().map(|a| a.url.as_str()),
        Some(url.as_str())
    );

    // The name resolves, through the cluster's DNS, to the predictor Service, which answers.
    let dns: std::net::Ipv4Addr = required_env("RECOMMENDER_DNS_IP").parse().unwrap();
    let ip = resolve(dns, &host).await.unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let service = services.get("movies-predictor").await.unwrap();
    assert_eq!(service.spec.unwrap().cluster_ip, Some(ip.to_string()));
    let (code, body) = predictor_get(&client, &ns.name, "movies", "/v1/model").await;
    assert_eq!(
        (code, body["model_version"].as_str()),
        (200, Some("v1")),
        "{body}"
    );

    let (ok, table) = kubectl(&["get", "rm", "-n", &ns.name, "-o", "wide"]);
    assert!(ok, "{table}");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        &rows[0][..4],
        ["NAME", "PHASE", "READY", "VERSION"],
        "{table}"
    );
    assert_eq!(rows[0].last(), Some(&"URL"), "{table}");
    assert_eq!(
        &rows[1][..4],
        ["movies", "Serving", "True", "v1"],
        "{table}"
    );
    assert_eq!(rows[1].last(), Some(&url.as_str()), "{table}");
}

async fn deployment(client: &Client, ns: &str) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.get("movies-predictor").await.unwrap()
}

/// Whether the operator's server-side apply owns the Deployment's `spec.replicas`.
fn operator_owns_replicas(d: &Deployment) -> bool {
    d.metadata.managed_fields.iter().flatten().any(|f| {
        f.manager.as_deref() == Some("recommender-operator")
            && f.operation.as_deref() == Some("Apply")
            && f.fields_v1
                .as_ref()
                .is_some_and(|v| v.0.pointer("/f:spec/f:replicas").is_some())
    })
}

async fn wait_replicas(client: &Client, ns: &str, want: i32, owned: bool, what: &str) {
    wait_until(Duration::from_secs(120), what, || async {
        let d = deployment(client, ns).await;
        d.spec.as_ref().and_then(|s| s.replicas) == Some(want)
            && operator_owns_replicas(&d) == owned
    })
    .await;
}

async fn budget_exists(client: &Client, ns: &str) -> bool {
    let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    api.get_opt("movies-predictor").await.unwrap().is_some()
}

#[tokio::test]
async fn autoscaling_takes_the_replicas_over_and_gives_them_back() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-scale").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    apply_model(&client, &postgres_model(&env, &ns, "movies", |_| {})).await;
    wait_serving(&client, &ns.name, "movies", "v1").await;
    assert!(
        !budget_exists(&client, &ns.name).await,
        "one replica: no budget"
    );

    // The resource's scale subresource sets spec.predictor.replicas.
    let (ok, out) = kubectl(&["scale", "rm", "movies", "-n", &ns.name, "--replicas=2"]);
    assert!(ok, "{out}");
    wait_replicas(&client, &ns.name, 2, true, "2 replicas, the operator's").await;
    wait_until(Duration::from_secs(60), "a disruption budget", || {
        budget_exists(&client, &ns.name)
    })
    .await;
    let scale_path = format!(
        "/apis/recommender.dev/v1alpha1/namespaces/{}/recommendermodels/movies/scale",
        ns.name
    );
    wait_until(
        Duration::from_secs(120),
        "the scale subresource at 2 of 2",
        || async {
            let (_, raw) = kubectl(&["get", "--raw", &scale_path]);
            let scale: Value = serde_json::from_str(&raw).unwrap_or_default();
            scale["spec"]["replicas"] == 2
                && scale["status"]["replicas"] == 2
                && scale["status"]["selector"]
                    == "app.kubernetes.io/component=predictor,recommender.dev/model=movies"
        },
    )
    .await;

    autoscale_then_scale_by_hand(&client, &ns.name).await;

    // Autoscaling removed: the autoscaler goes, the operator owns the count again.
    update_spec(&client, &ns.name, "movies", |s| {
        s.predictor.autoscaling = None
    })
    .await;
    wait_replicas(
        &client,
        &ns.name,
        2,
        true,
        "2 replicas again, the operator's",
    )
    .await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns.name);
    wait_until(
        Duration::from_secs(60),
        "the autoscaler deleted",
        || async { hpas.get_opt("movies-predictor").await.unwrap().is_none() },
    )
    .await;
    let (ok, out) = kubectl(&["scale", "rm", "movies", "-n", &ns.name, "--replicas=1"]);
    assert!(ok, "{out}");
    wait_replicas(&client, &ns.name, 1, true, "1 replica").await;
    wait_until(Duration::from_secs(60), "the budget deleted", || async {
        !budget_exists(&client, &ns.name).await
    })
    .await;
    wait_serving(&client, &ns.name, "movies", "v1").await;
}

/// Autoscaling on: the HorizontalPodAutoscaler exists and the operator lets go of the count; a
/// second field manager (`kubectl scale`) changes it, and a change the operator applies to the
/// Deployment leaves it as that manager set it.
async fn autoscale_then_scale_by_hand(client: &Client, ns: &str) {
    update_spec(client, ns, "movies", |s| {
        s.predictor.autoscaling = Some(Autoscaling {
            min_replicas: 2,
            max_replicas: 4,
            target_cpu_utilization: Some(80),
            target_requests_per_second: None,
        })
    })
    .await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    let hpa = wait_for(Duration::from_secs(60), "the autoscaler", || async {
        hpas.get_opt("movies-predictor").await.unwrap()
    })
    .await;
    let target = hpa.spec.unwrap().scale_target_ref;
    assert_eq!(
        (target.kind.as_str(), target.name.as_str()),
        ("Deployment", "movies-predictor")
    );
    wait_replicas(client, ns, 2, false, "2 replicas, no longer the operator's").await;

    let (ok, out) = kubectl(&[
        "scale",
        "deployment",
        "movies-predictor",
        "-n",
        ns,
        "--replicas=3",
    ]);
    assert!(ok, "{out}");
    // A template change makes the operator apply the Deployment again.
    update_spec(client, ns, "movies", |s| {
        s.predictor.pod.labels.insert("revision".into(), "2".into());
    })
    .await;
    wait_until(
        Duration::from_secs(120),
        "the new template applied",
        || async {
            let d = deployment(client, ns).await;
            let labels = d
                .spec
                .and_then(|s| s.template.metadata)
                .and_then(|m| m.labels);
            labels.is_some_and(|l| l.get("revision").map(String::as_str) == Some("2"))
        },
    )
    .await;
    // Several reconciles later (the rollout's status changes wake the operator) it is still 3.
    wait_serving(client, ns, "movies", "v1").await;
    let d = deployment(client, ns).await;
    assert_eq!(
        d.spec.as_ref().and_then(|s| s.replicas),
        Some(3),
        "not reverted"
    );
    assert!(!operator_owns_replicas(&d));
    let status = model_status(client, ns, "movies").await;
    assert_eq!(
        status.predictor.unwrap().desired_replicas,
        3,
        "Serving follows the autoscaler"
    );
}
