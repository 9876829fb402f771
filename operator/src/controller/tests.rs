//! `reconcile` against a mocked API server: every request the controller makes is asserted in
//! order (method, path and query, body), so a missing or extra call fails the test.

use super::*;
use crate::children;
use crate::crd::{ActiveRun, RecommenderModelSpec, RecommenderModelStatus, RunLedger, RunTrigger};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};
use std::sync::LazyLock;
use tower_test::mock::{self, Handle, SendResponse};

const NS: &str = "ml";
const APPLY: &str = "?&force=true&fieldManager=recommender-operator";
const JOBS: &str =
    "/apis/batch/v1/namespaces/ml/jobs?&labelSelector=recommender.dev%2Fmodel%3Dmovies";
const PODS: &str = "/api/v1/namespaces/ml/pods?&labelSelector=recommender.dev%2Fmodel%3Dmovies";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/ml/deployments/movies-predictor";
const SERVICE: &str = "/api/v1/namespaces/ml/services/movies-predictor";
const HPA: &str = "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers/movies-predictor";
const PDB: &str = "/apis/policy/v1/namespaces/ml/poddisruptionbudgets/movies-predictor";
const MODEL: &str = "/apis/recommender.dev/v1alpha1/namespaces/ml/recommendermodels/movies";
const STATUS: &str = "/apis/recommender.dev/v1alpha1/namespaces/ml/recommendermodels/movies/status";

/// `minutes` before the test started, as the status writes times. The controller reads the real
/// clock, so the fixtures' times follow it (a fixed date would, as days pass, make the models
/// stale and the tests start runs they do not expect).
fn minutes_ago(minutes: i64) -> String {
    static START: LazyLock<jiff::Timestamp> =
        LazyLock::new(|| crate::time::whole(jiff::Timestamp::now()));
    (*START - jiff::SignedDuration::from_mins(minutes)).to_string()
}

fn model(status: Option<RecommenderModelStatus>) -> RecommenderModel {
    let spec: RecommenderModelSpec = serde_yaml::from_str(
        "source: {file: {path: movies/u.data}}\nmodelStore: {claimName: models}",
    )
    .unwrap();
    let mut m = RecommenderModel::new("movies", spec);
    m.metadata.namespace = Some(NS.into());
    m.metadata.uid = Some("uid-1".into());
    m.metadata.generation = Some(1);
    m.status = status;
    m
}

fn context() -> (Arc<Context>, Server) {
    context_with(Lease::unelected())
}

fn context_with(lease: Lease) -> (Arc<Context>, Server) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let defaults = Defaults {
        trainer_image: "local/recommender-trainer:test".into(),
        predictor_image: "local/recommender-predictor:test".into(),
        cluster_domain: "cluster.local".into(),
        operator_pods: None,
    };
    let metrics = Arc::new(Metrics::new().unwrap());
    let ctx = Context::new(client, metrics, defaults, Some("test".into()), lease);
    (Arc::new(ctx.with_backoff_seed(0)), Server(handle))
}

type Answer = SendResponse<Response<Body>>;

/// The API server's side of the mock: each method waits for the next request, checks it is the
/// one expected and answers it.
struct Server(Handle<Request<Body>, Response<Body>>);

impl Server {
    /// The next request, which must be `method uri`, with its JSON body.
    async fn expect(&mut self, method: Method, uri: &str) -> (Value, Answer) {
        let (request, send) = self.0.next_request().await.unwrap_or_else(|| {
            panic!("expected {method} {uri}, but the controller made no more requests")
        });
        assert_eq!(
            (request.method(), request.uri().to_string().as_str()),
            (&method, uri),
            "unexpected request"
        );
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (body, send)
    }

    /// Every reconcile starts by reading the resource afresh; answered with `model`.
    async fn fresh_read(&mut self, model: &RecommenderModel) {
        self.fresh_read_stored(&serde_json::to_value(model).unwrap())
            .await;
    }

    /// The fresh read, answered with the object as stored (fields the types no longer write).
    async fn fresh_read_stored(&mut self, object: &Value) {
        let (_, send) = self.expect(Method::GET, MODEL).await;
        respond(send, StatusCode::OK, object);
    }

    /// The model's Jobs are listed; these exist.
    async fn jobs(&mut self, jobs: Vec<Value>) {
        let (_, send) = self.expect(Method::GET, JOBS).await;
        respond(send, StatusCode::OK, &list("JobList", jobs));
    }

    /// The pods of runs still to be recorded are listed; these exist.
    async fn pods(&mut self, pods: Vec<Value>) {
        let (_, send) = self.expect(Method::GET, PODS).await;
        respond(send, StatusCode::OK, &list("PodList", pods));
    }

    /// The predictor Deployment is read; this one exists, or none.
    async fn deployment(&mut self, existing: Option<Value>) {
        let (_, send) = self.expect(Method::GET, DEPLOYMENT).await;
        match existing {
            Some(deployment) => respond(send, StatusCode::OK, &deployment),
            None => not_found(send),
        }
    }

    /// The reads of a reconcile that finds run 1 of `model` succeeded with a report of
    /// `(rmse, mae)`, and no predictor yet.
    async fn finished_run(&mut self, model: &RecommenderModel, (rmse, mae): (f64, f64)) {
        self.fresh_read(model).await;
        self.jobs(vec![finished_job()]).await;
        let pod = trainer_pod("Succeeded", &report_json(rmse, mae));
        self.pods(vec![pod]).await;
        self.deployment(None).await;
    }

    /// A server-side apply to `path`, answered with what was applied; returns it.
    async fn apply(&mut self, path: &str) -> Value {
        let (body, send) = self.expect(Method::PATCH, &format!("{path}{APPLY}")).await;
        respond(send, StatusCode::OK, &body);
        body
    }

    /// A server-side apply to `path`, answered with `stored`; returns what was applied.
    async fn apply_stored(&mut self, path: &str, stored: &Value) -> Value {
        let (body, send) = self.expect(Method::PATCH, &format!("{path}{APPLY}")).await;
        respond(send, StatusCode::OK, stored);
        body
    }

    /// The status apply, answered with the whole object; returns the status applied.
    async fn status(&mut self) -> Value {
        let (patch, send) = self
            .expect(Method::PATCH, &format!("{STATUS}{APPLY}"))
            .await;
        assert_eq!(
            (&patch["apiVersion"], &patch["kind"]),
            (
                &json!("recommender.dev/v1alpha1"),
                &json!("RecommenderModel")
            )
        );
        let mut object = serde_json::to_value(model(None)).unwrap();
        object["status"] = patch["status"].clone();
        respond(send, StatusCode::OK, &object);
        patch["status"].clone()
    }

    /// Events with these reasons, in this order.
    async fn events(&mut self, reasons: &[&str]) {
        for reason in reasons {
            let events = format!("/apis/events.k8s.io/v1/namespaces/{NS}/events?");
            let (body, send) = self.expect(Method::POST, &events).await;
            assert_eq!(body["reason"], *reason);
            assert_eq!(body["regarding"]["name"], "movies");
            respond(send, StatusCode::CREATED, &body);
        }
    }

    /// The controller has dropped its client: nothing more will come.
    async fn no_more(mut self) {
        if let Some((request, _)) = self.0.next_request().await {
            panic!(
                "unexpected extra request {} {}",
                request.method(),
                request.uri()
            );
        }
    }

    /// Answers every remaining request as an event, until the controller lets go of the client.
    async fn drain_events(mut self) {
        while let Some((request, send)) = self.0.next_request().await {
            assert_eq!(
                request.uri().path(),
                format!("/apis/events.k8s.io/v1/namespaces/{NS}/events")
            );
            respond(send, StatusCode::CREATED, &json!({}));
        }
    }
}

fn respond(send: Answer, code: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

fn failure(send: Answer, code: StatusCode, reason: &str) {
    respond(
        send,
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
            "code": code.as_u16(), "message": reason.to_lowercase()}),
    );
}

fn not_found(send: Answer) {
    failure(send, StatusCode::NOT_FOUND, "NotFound");
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": "v1", "metadata": {}, "items": items})
}

/// The condition of `type_` in an applied status.
fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

/// Reconciles `model` once while `serve` plays the API server, and returns the action with the
/// server once the controller has let go of its client.
async fn reconcile_with<F>(
    model: RecommenderModel,
    serve: impl FnOnce(Server) -> F,
) -> (Action, Server)
where
    F: Future<Output = Server> + Send + 'static,
{
    let (ctx, server) = context();
    let verifier = tokio::spawn(serve(server));
    let action = reconcile(Arc::new(model), ctx.clone()).await.unwrap();
    drop(ctx);
    (action, verifier.await.unwrap())
}

#[tokio::test]
async fn no_model_creates_the_first_trainer_job() {
    let (action, server) = reconcile_with(model(None), |mut server| async move {
        server.fresh_read(&model(None)).await;
        server.jobs(vec![]).await;
        server.deployment(None).await;
        let job = server
            .apply("/apis/batch/v1/namespaces/ml/jobs/movies-train-1")
            .await;
        assert_eq!(job["kind"], "Job");
        assert_eq!(job["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(
            job["metadata"]["annotations"]["recommender.dev/trigger"],
            "NoModel"
        );
        let args = &job["spec"]["template"]["spec"]["containers"][0]["args"];
        assert_eq!(args[0], "train");
        let args: Vec<&str> = args
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        let store = args.iter().position(|a| *a == "--store").expect("--store");
        assert_eq!(
            (args[store + 1], args[store + 2], args[store + 3]),
            ("/models/movies", "--version", "v1")
        );

        let status = server.status().await;
        assert_eq!(status["phase"], "Training");
        assert_eq!(status["runs"]["last"], 1);
        assert_eq!(status["runs"]["active"]["job"], "movies-train-1");
        assert_eq!(status["observedGeneration"], 1);
        server
            .events(&["TrainingStarted", "NotReady", "NoModel"])
            .await;
        server
    })
    .await;
    assert_eq!(
        action,
        Action::await_change(),
        "a running Job wakes us by its watch"
    );
    server.no_more().await;
}

fn finished_job() -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": "movies-train-1", "namespace": NS,
            "ownerReferences": [{"apiVersion": "recommender.dev/v1alpha1", "kind": "RecommenderModel",
                "name": "movies", "uid": "uid-1", "controller": true}],
            "labels": {"recommender.dev/model": "movies", "recommender.dev/run": "1"},
            "annotations": {"recommender.dev/trigger": "NoModel", "recommender.dev/started-at": minutes_ago(10),
                "recommender.dev/spec-hash": children::training_spec_hash(&model(None).spec)}
        },
        "spec": {"template": {"spec": {"containers": [{"name": "trainer"}]}}},
        "status": {
            "completionTime": minutes_ago(1),
            "conditions": [{"type": "Complete", "status": "True"}]
        }
    })
}

fn trainer_pod(phase: &str, message: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "movies-train-1-abcde", "namespace": NS,
            "labels": {"recommender.dev/model": "movies", "job-name": "movies-train-1"}},
        "status": {"phase": phase, "containerStatuses": [{
            "name": "trainer", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "message": message, "finishedAt": minutes_ago(1)}}
        }]}
    })
}

fn report_json(rmse: f64, mae: f64) -> String {
    json!({
        "format": 1, "outcome": "Succeeded", "version": "v1", "algorithm": "svd",
        "artifact": "/models/movies/v1.model", "artifactBytes": 456789,
        "artifactSha256": "ab".repeat(32),
        "metrics": {"folds": 4, "rmse": rmse, "rmseStd": 0.01, "mae": mae, "maeStd": 0.01, "accuracy": 0.7,
            "precisionAt10": 0.5, "recallAt10": 0.4, "ndcgAt10": 0.6},
        "data": {"rows": 100000, "users": 943, "items": 1682, "contentHash": "ab", "skipped": 0},
        "durations": {"loadSeconds": 1.0, "cvSeconds": 5.0, "fitSeconds": 2.0, "totalSeconds": 8.0},
        "finishedAt": minutes_ago(1)
    })
    .to_string()
}

fn training_status() -> RecommenderModelStatus {
    RecommenderModelStatus {
        runs: RunLedger {
            last: 1,
            active: Some(ActiveRun {
                run: 1,
                job: "movies-train-1".into(),
                trigger: RunTrigger::NoModel,
                started_at: minutes_ago(10).parse().unwrap(),
                spec_hash: children::training_spec_hash(&model(None).spec),
            }),
            ..RunLedger::default()
        },
        ..RecommenderModelStatus::default()
    }
}

#[tokio::test]
async fn succeeded_job_is_promoted_and_served() {
    let training = model(Some(training_status()));
    let (action, server) = reconcile_with(training.clone(), |mut server| async move {
        server.finished_run(&training, (0.9387, 0.7403)).await;

        let service = server.apply(SERVICE).await;
        assert_eq!(service["spec"]["ports"][0]["port"], 8080);
        assert_eq!(
            service["spec"]["selector"]["recommender.dev/model"],
            "movies"
        );
        let deployment = server.apply(DEPLOYMENT).await;
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "local/recommender-predictor:test");
        assert_eq!(
            container["args"],
            json!([
                "--store",
                "/models/movies",
                "--model-version",
                "v1",
                "--model-sha256",
                "ab".repeat(32),
                "--listen",
                "[::]:8080"
            ])
        );
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["labels"]["recommender.dev/version"],
            "v1"
        );

        let status = server.status().await;
        assert_eq!(status["serving"]["version"], "v1");
        assert_eq!(status["serving"]["metrics"]["rmse"], 0.9387);
        assert_eq!(status["history"][0]["outcome"], "Succeeded");
        assert_eq!(status["runs"]["lastCompleted"], 1);
        assert!(status["runs"].get("active").is_none());
        let promoted = condition(&status, "Promoted");
        assert_eq!(
            (promoted["status"].as_str(), promoted["reason"].as_str()),
            (Some("True"), Some("Promoted"))
        );
        server.events(&["Promoted", "NotReady", "RollingOut"]).await;
        server
    })
    .await;
    // v1 turns stale 168h after it was trained: the only timer left.
    assert_ne!(action, Action::await_change());
    server.no_more().await;
}

#[tokio::test]
async fn rejected_candidate_is_kept_out_with_the_reason() {
    let training = model(Some(training_status()));
    let (_, server) = reconcile_with(training.clone(), |mut server| async move {
        server.finished_run(&training, (1.0312, 0.7)).await;
        // No model passed the gate: no Service or Deployment. Nothing serves, so nothing can
        // load the rejected artifact: a cleanup Job deletes it at once.
        let job = server
            .apply("/apis/batch/v1/namespaces/ml/jobs/movies-cleanup-1")
            .await;
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["prune", "--store", "/models/movies", "--through-run", "1"])
        );
        assert_eq!(
            job["metadata"]["labels"]["app.kubernetes.io/component"],
            "cleanup"
        );
        let status = server.status().await;
        assert!(status.get("serving").is_none());
        assert_eq!(status["runs"]["cleanedThrough"], 1);
        let promoted = condition(&status, "Promoted");
        assert_eq!(promoted["reason"], "GateFailed");
        assert_eq!(
            promoted["message"],
            "v1 not promoted: rmse 1.0312 exceeds maxRmse 1.0 by 0.0312"
        );
        server
            .events(&["GateFailed", "CleanupStarted", "NotReady", "NoModel"])
            .await;
        server
    })
    .await;
    server.no_more().await;
}

#[tokio::test]
async fn api_errors_are_returned_with_a_metric_label() {
    let (ctx, mut server) = context();
    let verifier = tokio::spawn(async move {
        server.fresh_read(&model(None)).await;
        let (_, send) = server.expect(Method::GET, JOBS).await;
        failure(send, StatusCode::CONFLICT, "Conflict");
        server
    });
    let m = Arc::new(model(None));
    let err = reconcile(m.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(err.metric_label(), "conflict");
    // The context's jitter is seeded with 0: the same delays as a backoff seeded alike.
    let mut expected = Backoff::new(0);
    let key = ObjectRef::from_obj(m.as_ref());
    let first = expected.failed(key.clone());
    let second = expected.failed(key);
    assert!(first <= Duration::from_secs(1) && second > Duration::from_secs(1));
    assert_eq!(
        error_policy(m.clone(), &err, ctx.clone()),
        Action::requeue(first)
    );
    assert_eq!(
        error_policy(m, &err, ctx.clone()),
        Action::requeue(second),
        "backs off"
    );
    assert!(
        ctx.metrics
            .render(jiff::Timestamp::now())
            .contains(r#"recommender_operator_reconcile_errors_total{error="conflict"} 2"#)
    );
    drop(ctx);
    verifier.await.unwrap().no_more().await;
}

#[tokio::test]
async fn a_deleted_recreated_or_deleting_resource_is_left_alone() {
    let (ctx, mut server) = context();
    let verifier = tokio::spawn(async move {
        let (_, send) = server.expect(Method::GET, MODEL).await;
        not_found(send);
        let mut recreated = model(None);
        recreated.metadata.uid = Some("uid-2".into());
        server.fresh_read(&recreated).await;
        // Being deleted in the foreground: its children are going, nothing is re-applied.
        let mut deleting = model(None);
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-11-27T12:00:00Z".parse().unwrap(),
            ));
        server.fresh_read(&deleting).await;
        server
    });
    let m = Arc::new(model(None));
    for _ in 0..3 {
        assert_eq!(
            reconcile(m.clone(), ctx.clone()).await.unwrap(),
            Action::await_change()
        );
    }
    drop(ctx);
    verifier.await.unwrap().no_more().await;
}

#[tokio::test]
async fn an_invalid_spec_is_reported_without_touching_children() {
    let mut invalid = model(None);
    invalid.spec.freshness.max_age = "7d".into();
    let served = invalid.clone();
    let (action, server) = reconcile_with(invalid, |mut server| async move {
        server.fresh_read(&served).await;
        // No Job, Pod or Deployment read, nothing applied: straight to the status.
        let status = server.status().await;
        let ready = condition(&status, "Ready");
        assert_eq!(ready["reason"], "InvalidSpec");
        assert_eq!(
            ready["message"],
            "spec.freshness.maxAge: \"7d\" is not a duration such as 168h or 90m"
        );
        assert_eq!(status["phase"], "Failed");
        server.events(&["InvalidSpec"]).await;
        server
    })
    .await;
    assert_eq!(action, Action::await_change());
    server.no_more().await;
}

/// A model serving v1, at rest, with the given predictor settings.
fn serving_model(predictor: Value) -> RecommenderModel {
    let stored = serving_object(predictor, |spec_hash| {
        json!({"runs": {"last": 1, "lastCompleted": 1, "trainedSpecHash": spec_hash,
            "lastAttemptStartedAt": minutes_ago(60)}})
    });
    serde_json::from_value(stored).unwrap()
}

/// A model serving v1 as the API server stores it: beside the model, its status has the
/// `bookkeeping` fields made from the training-spec hash.
fn serving_object(predictor: Value, bookkeeping: impl Fn(&str) -> Value) -> Value {
    let mut m = model(None);
    m.spec.predictor = serde_json::from_value(predictor).unwrap();
    let mut status = bookkeeping(&children::training_spec_hash(&m.spec));
    status["models"] = json!([{"version": "v1", "run": 1, "trainedAt": minutes_ago(60),
        "metrics": {"folds": 4, "rmse": 0.94, "mae": 0.74, "rmseStd": 0.0, "maeStd": 0.0,
            "accuracy": 0.72, "precisionAt10": 0.0, "recallAt10": 0.0, "ndcgAt10": 0.0}}]);
    let mut object = serde_json::to_value(m).unwrap();
    object["status"] = status;
    object
}

/// The predictor Deployment as the API server returns it: 3 replicas of v1, all available,
/// `spec.replicas` owned by the operator's apply or not.
fn existing_deployment(operator_owns_replicas: bool) -> Value {
    let mut fields = json!({"f:spec": {"f:template": {}}});
    if operator_owns_replicas {
        fields["f:spec"]["f:replicas"] = json!({});
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "movies-predictor", "namespace": NS, "generation": 2,
            "managedFields": [{"manager": "recommender-operator", "operation": "Apply",
                "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": fields}]},
        "spec": {"replicas": 3, "selector": {},
            "template": {"metadata": {"labels": {"recommender.dev/version": "v1"}}}},
        "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}
    })
}

#[tokio::test]
async fn turning_autoscaling_on_hands_the_replicas_over_before_applying_without_them() {
    let m = serving_model(
        json!({"replicas": 3, "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "targetCpuUtilization": 75}}),
    );
    let served = m.clone();
    let (_, server) = reconcile_with(m, |mut server| async move {
        server.fresh_read(&served).await;
        server.jobs(vec![]).await;
        server.deployment(Some(existing_deployment(true))).await;
        server.apply(SERVICE).await;

        let handover = "?&force=true&fieldManager=recommender-operator-handover";
        let (held, send) = server
            .expect(Method::PATCH, &format!("{DEPLOYMENT}{handover}"))
            .await;
        assert_eq!(
            held["spec"],
            json!({"replicas": 3}),
            "only the count, at its value"
        );
        respond(send, StatusCode::OK, &existing_deployment(true));
        let applied = server
            .apply_stored(DEPLOYMENT, &existing_deployment(false))
            .await;
        assert!(
            applied["spec"].get("replicas").is_none(),
            "{}",
            applied["spec"]
        );

        let body = server.apply(HPA).await;
        assert_eq!(body["spec"]["scaleTargetRef"]["name"], "movies-predictor");
        assert_eq!(
            (
                body["spec"]["minReplicas"].as_i64(),
                body["spec"]["maxReplicas"].as_i64()
            ),
            (Some(2), Some(5))
        );
        let body = server.apply(PDB).await;
        assert_eq!(body["spec"]["maxUnavailable"], 1);

        let status = server.status().await;
        assert_eq!(status["predictor"]["desiredReplicas"], 3);
        server
    })
    .await;
    server.drain_events().await;
}

#[tokio::test]
async fn turning_autoscaling_off_deletes_the_autoscaler_then_takes_the_replicas_back() {
    let m = serving_model(json!({"replicas": 1}));
    let served = m.clone();
    let (_, server) = reconcile_with(m, |mut server| async move {
        server.fresh_read(&served).await;
        server.jobs(vec![]).await;
        server.deployment(Some(existing_deployment(false))).await;
        server.apply(SERVICE).await;

        let (_, send) = server.expect(Method::DELETE, &format!("{HPA}?")).await;
        not_found(send); // already gone: fine
        let applied = server
            .apply_stored(DEPLOYMENT, &existing_deployment(true))
            .await;
        assert_eq!(applied["spec"]["replicas"], 1, "taken back, with force");
        let (_, send) = server.expect(Method::DELETE, &format!("{PDB}?")).await;
        respond(
            send,
            StatusCode::OK,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        );
        server.status().await;
        server
    })
    .await;
    server.drain_events().await;
}

/// An object whose status an operator version before the ledgers wrote: the bookkeeping is read
/// from the old top-level fields, and the status apply names none of them (so server-side apply
/// removes them: this field manager wrote them) and carries the ledgers instead.
#[tokio::test]
async fn a_status_from_before_the_ledgers_is_applied_in_the_new_shape() {
    let stored = serving_object(json!({"replicas": 3}), |spec_hash| {
        json!({"lastRun": 2, "lastCompletedRun": 2, "cleanedThroughRun": 2,
            "trainedSpecHash": spec_hash, "lastAttemptStartedAt": minutes_ago(60),
            "handledRetrainRequest": "monday", "lastEvaluation": 3,
            "lastEvaluationStartedAt": minutes_ago(30),
            "lastEvaluationError": "forward evaluation movies-eval-3 failed: no report"})
    });
    let m: RecommenderModel = serde_json::from_value(stored.clone()).unwrap();
    assert_eq!(m.status.as_ref().unwrap().previous.last_run, Some(2));
    let (_, server) = reconcile_with(m, |mut server| async move {
        server.fresh_read_stored(&stored).await;
        server.jobs(vec![]).await;
        server.deployment(Some(existing_deployment(true))).await;
        server.apply(SERVICE).await;
        server
            .apply_stored(DEPLOYMENT, &existing_deployment(true))
            .await;
        server.apply(PDB).await;

        let status = server.status().await;
        assert_eq!(
            (&status["runs"], &status["evaluations"]),
            (
                &json!({"last": 2, "lastCompleted": 2, "cleanedThrough": 2,
                    "trainedSpecHash": children::training_spec_hash(&model(None).spec),
                    "lastAttemptStartedAt": minutes_ago(60), "consecutiveFailures": 0,
                    "handledRetrainRequest": "monday"}),
                &json!({"last": 3, "lastStartedAt": minutes_ago(30),
                    "lastError": "forward evaluation movies-eval-3 failed: no report"})
            )
        );
        let mut keys: Vec<&str> = status
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "address",
                "conditions",
                "evaluations",
                "history",
                "models",
                "observedGeneration",
                "phase",
                "predictor",
                "runCounts",
                "runs",
                "serving",
                "stale",
                "url"
            ],
            "the user-facing fields and the two ledgers, nothing of the old shape"
        );
        server
    })
    .await;
    server.drain_events().await;
}

#[tokio::test]
async fn a_replica_without_the_lease_reconciles_nothing() {
    let lease = Lease::unelected();
    lease.lose();
    let (ctx, server) = context_with(lease);
    let err = reconcile(Arc::new(model(None)), ctx.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeadershipLost), "{err}");
    drop(ctx);
    server.no_more().await;
}

#[tokio::test]
async fn a_replica_losing_the_lease_mid_reconcile_creates_no_job_and_writes_no_status() {
    let lease = Lease::unelected();
    let (ctx, mut server) = context_with(lease.clone());
    // The reads that would start run 1; the Lease is lost before the first write.
    let verifier = tokio::spawn(async move {
        server.fresh_read(&model(None)).await;
        server.jobs(vec![]).await;
        let (_, send) = server.expect(Method::GET, DEPLOYMENT).await;
        lease.lose();
        not_found(send);
        // No Job apply, no status apply, no event: an extra request fails here (and, unanswered,
        // fails the reconcile with another error) instead of waiting for an answer forever.
        server.no_more().await;
    });
    let err = reconcile(Arc::new(model(None)), ctx.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeadershipLost), "{err}");
    drop(ctx);
    verifier.await.unwrap();
}

/// A bucket whose key pair's Secret is not opted in: the probe reads the Secret (and nothing
/// else: no request to the store), no Job is created, and the condition says which Secret.
#[tokio::test]
async fn a_store_secret_not_allowed_is_said_and_starts_no_job() {
    let mut m = model(None);
    m.spec.model_store = serde_yaml::from_str(
        "{s3: {endpoint: 'http://127.0.0.1:9', bucket: models, pathStyle: true, credentialsSecret: model-store}}",
    )
    .unwrap();
    let stored = m.clone();
    let (action, server) = reconcile_with(m, |mut server| async move {
        server.fresh_read(&stored).await;
        server.jobs(vec![]).await;
        server.deployment(None).await;
        let (_, send) = server
            .expect(Method::GET, "/api/v1/namespaces/ml/secrets/model-store")
            .await;
        respond(
            send,
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "model-store", "namespace": NS},
                "data": {"accessKeyId": "aWQ=", "secretAccessKey": "c2VjcmV0"}}),
        );
        let status = server.status().await;
        let store = condition(&status, "ModelStoreReachable");
        assert_eq!((&store["status"], &store["reason"]), (&json!("False"), &json!("SecretNotAllowed")));
        let message = store["message"].as_str().unwrap();
        assert!(
            message.starts_with("Secret ml/model-store (spec.modelStore.s3.credentialsSecret) is not labelled recommender.dev/allow=true"),
            "{message}"
        );
        assert!(!message.contains("secret\""), "{message}");
        assert_eq!(status["runs"]["last"], 0, "no run started");
        server.events(&["NotReady", "NoModel", "SecretNotAllowed"]).await;
        server
    })
    .await;
    assert_eq!(
        action,
        Action::requeue(crate::decide::STORE_PROBE_INTERVAL),
        "labelling the Secret wakes nothing: the probe looks again"
    );
    server.no_more().await;
}

/// `model(status)` with a random search of 3 trials over the learning rate.
fn tuned_model(status: Option<RecommenderModelStatus>) -> RecommenderModel {
    let mut m = model(status);
    m.spec.tuning = Some(
        serde_yaml::from_str(
            "space: {lrAll: {values: [0.005, 0.01, 0.02]}}\ntrials: 3\nparallelism: 3\nseed: 7",
        )
        .unwrap(),
    );
    m
}

/// The Indexed Job of rung 0 of search 1, complete (one index failed: it ran out of memory).
fn finished_rung() -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": "movies-search-1-0", "namespace": NS,
            "ownerReferences": [{"apiVersion": "recommender.dev/v1alpha1", "kind": "RecommenderModel",
                "name": "movies", "uid": "uid-1", "controller": true}],
            "labels": {"recommender.dev/model": "movies", "recommender.dev/search": "1",
                "recommender.dev/rung": "0", "app.kubernetes.io/component": "trial"}
        },
        "spec": {"template": {"spec": {"containers": [{"name": "trial"}]}}},
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "FailedIndexes"}],
            "failedIndexes": "1"}
    })
}

fn trial_pod(index: u32, phase: &str, terminated: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("movies-search-1-0-{index}-abcde"), "namespace": NS,
            "labels": {"recommender.dev/model": "movies", "batch.kubernetes.io/job-name": "movies-search-1-0"},
            "annotations": {"batch.kubernetes.io/job-completion-index": index.to_string()}},
        "status": {"phase": phase, "containerStatuses": [{
            "name": "trial", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": terminated}
        }]}
    })
}

#[tokio::test]
async fn a_tuned_model_searches_before_its_first_run() {
    let fresh = tuned_model(None);
    let read = fresh.clone();
    let (action, server) = reconcile_with(fresh, |mut server| async move {
        server.fresh_read(&read).await;
        server.jobs(vec![]).await;
        server.deployment(None).await;
        // The Job, then its plan owned by it (the Job as stored has a uid); no trainer Job yet.
        let mut stored = json!(null);
        let (job, send) = server
            .expect(
                Method::PATCH,
                &format!("/apis/batch/v1/namespaces/ml/jobs/movies-search-1-0{APPLY}"),
            )
            .await;
        stored.clone_from(&job);
        stored["metadata"]["uid"] = json!("job-uid");
        respond(send, StatusCode::OK, &stored);
        assert_eq!(
            (
                &job["spec"]["completionMode"],
                &job["spec"]["completions"],
                &job["spec"]["backoffLimitPerIndex"]
            ),
            (&json!("Indexed"), &json!(3), &json!(0))
        );
        let plan = server
            .apply("/api/v1/namespaces/ml/configmaps/movies-search-1-0")
            .await;
        assert_eq!(plan["metadata"]["ownerReferences"][0]["uid"], "job-uid");
        let trials: Value =
            serde_json::from_str(plan["data"]["plan.json"].as_str().unwrap()).unwrap();
        assert_eq!(trials["trials"].as_array().unwrap().len(), 3);
        let status = server.status().await;
        assert_eq!(status["tuning"]["state"], "Searching");
        assert_eq!(status["tuning"]["running"].as_array().unwrap().len(), 3);
        assert_eq!(condition(&status, "Tuned")["reason"], "Searching");
        assert_eq!(status["runs"]["last"], 0);
        server
            .events(&["SearchStarted", "NotReady", "NoModel"])
            .await;
        server
    })
    .await;
    assert_eq!(action, Action::await_change(), "the Job's watch wakes us");
    server.no_more().await;
}

#[tokio::test]
async fn a_finished_rung_is_read_from_its_pods_and_its_best_trained() {
    // The status the first reconcile wrote.
    let planned = {
        let (ctx, mut server) = context();
        let fresh = tuned_model(None);
        let read = fresh.clone();
        let verifier = tokio::spawn(async move {
            server.fresh_read(&read).await;
            server.jobs(vec![]).await;
            server.deployment(None).await;
            server
                .apply("/apis/batch/v1/namespaces/ml/jobs/movies-search-1-0")
                .await;
            server
                .apply("/api/v1/namespaces/ml/configmaps/movies-search-1-0")
                .await;
            let status = server.status().await;
            server.drain_events().await;
            status
        });
        reconcile(Arc::new(fresh), ctx.clone()).await.unwrap();
        drop(ctx);
        verifier.await.unwrap()
    };
    let status: RecommenderModelStatus = serde_json::from_value(planned.clone()).unwrap();
    let running = status.tuning.as_ref().unwrap().running.clone();
    let result = |i: usize, rmse: f64| {
        use recommender_contract::tuning::{Score, TrialResult};
        TrialResult::scored(&running[i], Score { rmse, mae: 0.7 }, 2.0).to_json()
    };
    let pods = vec![
        trial_pod(
            0,
            "Succeeded",
            json!({"exitCode": 0, "message": result(0, 0.93), "finishedAt": minutes_ago(1)}),
        ),
        trial_pod(
            1,
            "Failed",
            json!({"exitCode": 137, "reason": "OOMKilled", "finishedAt": minutes_ago(1)}),
        ),
        trial_pod(
            2,
            "Succeeded",
            json!({"exitCode": 0, "message": result(2, 0.91), "finishedAt": minutes_ago(1)}),
        ),
    ];
    let searching = tuned_model(Some(status));
    let read = searching.clone();
    let best = running[2].params.clone();
    let (_, server) = reconcile_with(searching, |mut server| async move {
        server.fresh_read(&read).await;
        server.jobs(vec![finished_rung()]).await;
        server.pods(pods).await;
        server.deployment(None).await;
        // The trainer Job, then the search's record owned by it.
        let (job, send) = server
            .expect(
                Method::PATCH,
                &format!("/apis/batch/v1/namespaces/ml/jobs/movies-train-1{APPLY}"),
            )
            .await;
        let mut stored = job.clone();
        stored["metadata"]["uid"] = json!("train-uid");
        respond(send, StatusCode::OK, &stored);
        assert_eq!(
            job["metadata"]["annotations"]["recommender.dev/search"],
            "1"
        );
        let record = server
            .apply("/api/v1/namespaces/ml/configmaps/movies-search-1-record")
            .await;
        assert_eq!(record["metadata"]["ownerReferences"][0]["uid"], "train-uid");
        let record = recommender_contract::tuning::SearchRecord::parse(
            record["data"]["record.json"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!((record.trials.len(), record.failed()), (3, 1));
        assert_eq!(record.best.as_ref().unwrap().params, best);
        let args: Vec<String> = serde_json::from_value(
            job["spec"]["template"]["spec"]["containers"][0]["args"].clone(),
        )
        .unwrap();
        let line = args.join(" ");
        assert!(line.contains(&best.train_args().join(" ")), "{line}");
        assert!(
            line.ends_with("--search-record /etc/recommender/search/record.json"),
            "{line}"
        );
        let status = server.status().await;
        let tuning = &status["tuning"];
        assert_eq!(tuning["state"], "BestFound");
        assert_eq!(
            (&tuning["trialsDone"], &tuning["trialsFailed"]),
            (&json!(3), &json!(1))
        );
        assert_eq!(tuning["best"]["score"]["rmse"], 0.91);
        let failed = tuning["trials"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t.get("error").is_some())
            .unwrap();
        assert_eq!(failed["error"]["reason"], "OOMKilled");
        assert_eq!(status["runs"]["active"]["job"], "movies-train-1");
        assert_eq!(condition(&status, "Tuned")["reason"], "BestFound");
        server.events(&["SearchFinished", "TrainingStarted"]).await;
        server
    })
    .await;
    server.no_more().await;
}

const ROLLOUT_CONFIG: &str = "/api/v1/namespaces/ml/configmaps/movies-rollout";

/// A progressive model serving v1 (one replica) as stored, with `more` merged into its status.
fn progressive_object(more: Value) -> Value {
    let mut object = serving_object(json!({"replicas": 1}), |spec_hash| {
        json!({"runs": {"last": 2, "lastCompleted": 1, "trainedSpecHash": spec_hash,
            "lastAttemptStartedAt": minutes_ago(60)}})
    });
    object["spec"]["rollout"] = json!({"strategy": "Progressive"});
    object["status"]["serving"] = object["status"]["models"][0].clone();
    for (key, value) in more.as_object().unwrap() {
        object["status"][key] = value.clone();
    }
    object
}

/// The predictor Deployment as stored: one available replica of v1, with the candidate's flags
/// or without.
fn one_replica(args: &[&str]) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "movies-predictor", "namespace": NS, "generation": 1},
        "spec": {"replicas": 1, "selector": {},
            "template": {"metadata": {"labels": {"recommender.dev/version": "v1"}},
                "spec": {"containers": [{"name": "predictor", "args": args}]}}},
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
    })
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect()
}

/// Run 2's candidate passes the gate under `Progressive`: the rollout's ConfigMap is applied
/// before the Deployment that mounts it, which gets the candidate beside v1; v1 keeps serving.
#[tokio::test]
async fn a_rollout_starts_with_its_config_before_the_deployment() {
    let stored = progressive_object(json!({"runs": {"last": 2, "lastCompleted": 1,
        "trainedSpecHash": "old", "lastAttemptStartedAt": minutes_ago(60),
        "active": {"run": 2, "job": "movies-train-2", "trigger": "SpecChanged",
            "startedAt": minutes_ago(10), "specHash": "new"}}}));
    let m: RecommenderModel = serde_json::from_value(stored.clone()).unwrap();
    let mut job = finished_job();
    job["metadata"]["name"] = json!("movies-train-2");
    job["metadata"]["labels"]["recommender.dev/run"] = json!("2");
    let mut pod = trainer_pod("Succeeded", &report_json(0.91, 0.72).replace("v1", "v2"));
    pod["metadata"]["name"] = json!("movies-train-2-abcde");
    pod["metadata"]["labels"]["job-name"] = json!("movies-train-2");
    let (action, server) = reconcile_with(m, |mut server| async move {
        server.fresh_read_stored(&stored).await;
        server.jobs(vec![job]).await;
        server.pods(vec![pod]).await;
        server.deployment(Some(one_replica(&[]))).await;
        server.apply(SERVICE).await;

        let config = server.apply(ROLLOUT_CONFIG).await;
        let text = config["data"]["rollout.json"].as_str().unwrap();
        let rollout = recommender_contract::rollout::RolloutConfig::parse(text).unwrap();
        assert_eq!(
            (
                rollout.stage,
                rollout.candidate_version.as_str(),
                rollout.candidate_share
            ),
            (recommender_contract::rollout::Stage::Shadow, "v2", 0.0)
        );
        let deployment = server.apply(DEPLOYMENT).await;
        let pod = &deployment["spec"]["template"];
        assert_eq!(pod["metadata"]["labels"]["recommender.dev/version"], "v1");
        let args = strings(&pod["spec"]["containers"][0]["args"]);
        let at = args
            .iter()
            .position(|a| *a == "--candidate-version")
            .unwrap();
        assert_eq!(
            &args[at..],
            [
                "--candidate-version",
                "v2",
                "--candidate-sha256",
                &"ab".repeat(32),
                "--rollout-config",
                "/etc/recommender/rollout/rollout.json"
            ]
        );
        let volumes = pod["spec"]["volumes"].as_array().unwrap();
        assert!(
            volumes
                .iter()
                .any(|v| v["configMap"]["name"] == "movies-rollout")
        );

        let status = server.status().await;
        assert_eq!(status["serving"]["version"], "v1");
        assert_eq!(status["models"].as_array().unwrap().len(), 1);
        assert_eq!(status["rollout"]["stage"], "Shadow");
        assert_eq!(status["rollout"]["id"], rollout.rollout_id);
        assert_eq!(status["history"][0]["reason"], "RollingOut");
        assert_eq!(condition(&status, "RollingOut")["reason"], "Shadow");
        server.events(&["RolloutStarted"]).await;
        server
    })
    .await;
    assert_eq!(
        action,
        Action::requeue(decide::ROLLOUT_RECHECK),
        "looked at again while the rollout runs"
    );
    server.no_more().await;
}

/// `recommender.dev/abort` naming the rollout: share 0 in the ConfigMap first, then the
/// Deployment without the candidate, the run recorded rejected online, a Warning event.
#[tokio::test]
async fn an_aborted_rollout_zeroes_the_share_before_dropping_the_candidate() {
    let id = "movies-v2-1795780200";
    let spec_hash = children::training_spec_hash(&model(None).spec);
    let mut stored = progressive_object(json!({
        "runs": {"last": 2, "lastCompleted": 2, "trainedSpecHash": spec_hash,
            "lastAttemptStartedAt": minutes_ago(30)},
        "history": [{"run": 2, "version": "v2", "trigger": "SpecChanged",
            "startedAt": minutes_ago(40), "finishedAt": minutes_ago(30), "outcome": "Succeeded",
            "reason": "RollingOut", "message": "v2 passed the gate: rolling out"}],
        "rollout": {"id": id, "stableVersion": "v1", "candidateVersion": "v2",
            "candidateModel": {"version": "v2", "run": 2, "trainedAt": minutes_ago(30),
                "metrics": {"folds": 4, "rmse": 0.91, "mae": 0.72, "rmseStd": 0.0, "maeStd": 0.0,
                    "accuracy": 0.72, "precisionAt10": 0.0, "recallAt10": 0.0, "ndcgAt10": 0.0},
                "artifact": {"path": "v2.model", "bytes": 10, "sha256": "cd".repeat(32)}},
            "stage": "Canary", "step": 1, "share": 0.25,
            "startedAt": minutes_ago(20), "stepStartedAt": minutes_ago(5)}
    }));
    stored["metadata"]["annotations"] = json!({"recommender.dev/abort": id});
    let m: RecommenderModel = serde_json::from_value(stored.clone()).unwrap();
    let candidate = ["--candidate-version", "v2"];
    let (_, server) = reconcile_with(m, |mut server| async move {
        server.fresh_read_stored(&stored).await;
        server.jobs(vec![]).await;
        server.deployment(Some(one_replica(&candidate))).await;
        server.apply(SERVICE).await;
        let config = server.apply(ROLLOUT_CONFIG).await;
        let text = config["data"]["rollout.json"].as_str().unwrap();
        let rollout = recommender_contract::rollout::RolloutConfig::parse(text).unwrap();
        assert_eq!(
            (rollout.rollout_id.as_str(), rollout.candidate_share),
            (id, 0.0)
        );
        let deployment = server.apply(DEPLOYMENT).await;
        let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
        assert!(!args.contains(&"--candidate-version"), "{args:?}");
        assert!(
            deployment["spec"]["template"]["spec"]
                .get("volumes")
                .is_none_or(|v| {
                    !v.as_array()
                        .unwrap()
                        .iter()
                        .any(|v| v["configMap"]["name"] == "movies-rollout")
                })
        );

        let status = server.status().await;
        assert_eq!(
            (&status["rollout"]["stage"], &status["rollout"]["endReason"]),
            (&json!("Aborted"), &json!("ManualAbort"))
        );
        assert_eq!(status["rollout"]["share"], 0.0);
        assert_eq!(
            (
                &status["history"][0]["outcome"],
                &status["history"][0]["reason"]
            ),
            (&json!("Rejected"), &json!("RejectedOnline"))
        );
        assert_eq!(status["runCounts"]["rejected"], 1);
        assert_eq!(status["serving"]["version"], "v1");
        let rolling_out = condition(&status, "RollingOut");
        assert_eq!(
            (&rolling_out["status"], &rolling_out["reason"]),
            (&json!("False"), &json!("Aborted"))
        );
        server.events(&["RolloutAborted"]).await;
        server
    })
    .await;
    server.no_more().await;
}
