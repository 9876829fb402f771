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

type ApiHandle = Handle<Request<Body>, Response<Body>>;

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

fn context() -> (Arc<Context>, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let defaults = Defaults {
        trainer_image: "local/recommender-trainer:test".into(),
        predictor_image: "local/recommender-predictor:test".into(),
        cluster_domain: "cluster.local".into(),
    };
    let metrics = Arc::new(Metrics::new().unwrap());
    (
        Arc::new(Context::new(client, metrics, defaults, Some("test".into()))),
        handle,
    )
}

/// Waits for the next request, checks its method and URI, and returns its JSON body.
async fn expect(
    handle: &mut ApiHandle,
    method: Method,
    uri: &str,
) -> (Value, SendResponse<Response<Body>>) {
    let (request, send) = handle.next_request().await.unwrap_or_else(|| {
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

fn respond(send: SendResponse<Response<Body>>, code: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

fn not_found(send: SendResponse<Response<Body>>) {
    respond(
        send,
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    );
}

/// What the API server returns for a status patch: the whole object with the new status.
fn respond_with_status(send: SendResponse<Response<Body>>, patch: &Value) {
    let mut object = serde_json::to_value(model(None)).unwrap();
    object["status"] = patch["status"].clone();
    respond(send, StatusCode::OK, &object);
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": "v1", "metadata": {}, "items": items})
}

async fn expect_events(handle: &mut ApiHandle, reasons: &[&str]) {
    for reason in reasons {
        let (body, send) = expect(
            handle,
            Method::POST,
            &format!("/apis/events.k8s.io/v1/namespaces/{NS}/events?"),
        )
        .await;
        assert_eq!(body["reason"], *reason);
        assert_eq!(body["regarding"]["name"], "movies");
        respond(send, StatusCode::CREATED, &body);
    }
}

/// The controller has dropped its client: nothing more will come.
async fn expect_no_more(mut handle: ApiHandle) {
    if let Some((request, _)) = handle.next_request().await {
        panic!(
            "unexpected extra request {} {}",
            request.method(),
            request.uri()
        );
    }
}

const JOBS: &str =
    "/apis/batch/v1/namespaces/ml/jobs?&labelSelector=recommender.dev%2Fmodel%3Dmovies";
const PODS: &str = "/api/v1/namespaces/ml/pods?&labelSelector=recommender.dev%2Fmodel%3Dmovies";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/ml/deployments/movies-predictor";
const MODEL: &str = "/apis/recommender.dev/v1alpha1/namespaces/ml/recommendermodels/movies";
const STATUS: &str = "/apis/recommender.dev/v1alpha1/namespaces/ml/recommendermodels/movies/status";

/// Every reconcile starts by reading the resource afresh; the server answers with `model`.
async fn expect_fresh_read(handle: &mut ApiHandle, model: &RecommenderModel) {
    let (_, send) = expect(handle, Method::GET, MODEL).await;
    respond(send, StatusCode::OK, &serde_json::to_value(model).unwrap());
}

#[tokio::test]
async fn no_model_creates_the_first_trainer_job() {
    let (ctx, mut handle) = context();
    let verifier = tokio::spawn(async move {
        expect_fresh_read(&mut handle, &model(None)).await;
        let (_, send) = expect(&mut handle, Method::GET, JOBS).await;
        respond(send, StatusCode::OK, &list("JobList", vec![]));
        let (_, send) = expect(&mut handle, Method::GET, DEPLOYMENT).await;
        not_found(send);

        let (job, send) = expect(
            &mut handle,
            Method::PATCH,
            &format!("/apis/batch/v1/namespaces/ml/jobs/movies-train-1{APPLY}"),
        )
        .await;
        assert_eq!(job["kind"], "Job");
        assert_eq!(job["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(
            job["metadata"]["annotations"]["recommender.dev/trigger"],
            "NoModel"
        );
        let args = &job["spec"]["template"]["spec"]["containers"][0]["args"];
        assert_eq!(args[0], "train");
        assert!(
            args.as_array()
                .unwrap()
                .contains(&json!("/models/movies/v1.model"))
        );
        respond(send, StatusCode::OK, &job);

        let (patch, send) = expect(&mut handle, Method::PATCH, &format!("{STATUS}{APPLY}")).await;
        assert_eq!(patch["apiVersion"], "recommender.dev/v1alpha1");
        assert_eq!(patch["kind"], "RecommenderModel");
        let status = &patch["status"];
        assert_eq!(status["phase"], "Training");
        assert_eq!(status["runs"]["last"], 1);
        assert_eq!(status["runs"]["active"]["job"], "movies-train-1");
        assert_eq!(status["observedGeneration"], 1);
        respond_with_status(send, &patch);

        expect_events(&mut handle, &["TrainingStarted", "NotReady", "NoModel"]).await;
        handle
    });
    let action = reconcile(Arc::new(model(None)), ctx.clone()).await.unwrap();
    assert_eq!(
        action,
        Action::await_change(),
        "a running Job wakes us by its watch"
    );
    drop(ctx);
    expect_no_more(verifier.await.unwrap()).await;
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
        "artifact": "/models/movies/v1.model",
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
    let (ctx, mut handle) = context();
    let verifier = tokio::spawn(async move {
        expect_fresh_read(&mut handle, &model(Some(training_status()))).await;
        let (_, send) = expect(&mut handle, Method::GET, JOBS).await;
        respond(send, StatusCode::OK, &list("JobList", vec![finished_job()]));
        let (_, send) = expect(&mut handle, Method::GET, PODS).await;
        respond(
            send,
            StatusCode::OK,
            &list(
                "PodList",
                vec![trainer_pod("Succeeded", &report_json(0.9387, 0.7403))],
            ),
        );
        let (_, send) = expect(&mut handle, Method::GET, DEPLOYMENT).await;
        not_found(send);

        let (service, send) = expect(
            &mut handle,
            Method::PATCH,
            &format!("/api/v1/namespaces/ml/services/movies-predictor{APPLY}"),
        )
        .await;
        assert_eq!(service["spec"]["ports"][0]["port"], 8080);
        assert_eq!(
            service["spec"]["selector"]["recommender.dev/model"],
            "movies"
        );
        respond(send, StatusCode::OK, &service);

        let (deployment, send) =
            expect(&mut handle, Method::PATCH, &format!("{DEPLOYMENT}{APPLY}")).await;
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "local/recommender-predictor:test");
        assert_eq!(
            container["args"],
            json!([
                "--model",
                "/models/movies/v1.model",
                "--listen",
                "[::]:8080"
            ])
        );
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["labels"]["recommender.dev/version"],
            "v1"
        );
        respond(send, StatusCode::OK, &deployment);

        let (patch, send) = expect(&mut handle, Method::PATCH, &format!("{STATUS}{APPLY}")).await;
        let status = &patch["status"];
        assert_eq!(status["serving"]["version"], "v1");
        assert_eq!(status["serving"]["metrics"]["rmse"], 0.9387);
        assert_eq!(status["history"][0]["outcome"], "Succeeded");
        assert_eq!(status["runs"]["lastCompleted"], 1);
        assert!(status["runs"].get("active").is_none());
        let promoted = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Promoted")
            .unwrap();
        assert_eq!(
            (promoted["status"].as_str(), promoted["reason"].as_str()),
            (Some("True"), Some("Promoted"))
        );
        respond_with_status(send, &patch);

        expect_events(&mut handle, &["Promoted", "NotReady", "RollingOut"]).await;
        handle
    });
    let action = reconcile(Arc::new(model(Some(training_status()))), ctx.clone())
        .await
        .unwrap();
    // v1 turns stale 168h after it was trained: the only timer left.
    assert_ne!(action, Action::await_change());
    drop(ctx);
    expect_no_more(verifier.await.unwrap()).await;
}

#[tokio::test]
async fn rejected_candidate_is_kept_out_with_the_reason() {
    let (ctx, mut handle) = context();
    let verifier = tokio::spawn(async move {
        expect_fresh_read(&mut handle, &model(Some(training_status()))).await;
        let (_, send) = expect(&mut handle, Method::GET, JOBS).await;
        respond(send, StatusCode::OK, &list("JobList", vec![finished_job()]));
        let (_, send) = expect(&mut handle, Method::GET, PODS).await;
        respond(
            send,
            StatusCode::OK,
            &list(
                "PodList",
                vec![trainer_pod("Succeeded", &report_json(1.0312, 0.7))],
            ),
        );
        let (_, send) = expect(&mut handle, Method::GET, DEPLOYMENT).await;
        not_found(send);
        // No model passed the gate: no Service or Deployment. Nothing serves, so nothing can
        // load the rejected artifact: a cleanup Job deletes it at once.
        let (job, send) = expect(
            &mut handle,
            Method::PATCH,
            &format!("/apis/batch/v1/namespaces/ml/jobs/movies-cleanup-1{APPLY}"),
        )
        .await;
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["prune", "--dir", "/models/movies", "--through-run", "1"])
        );
        assert_eq!(
            job["metadata"]["labels"]["app.kubernetes.io/component"],
            "cleanup"
        );
        respond(send, StatusCode::OK, &job);
        let (patch, send) = expect(&mut handle, Method::PATCH, &format!("{STATUS}{APPLY}")).await;
        let status = &patch["status"];
        assert!(status.get("serving").is_none());
        assert_eq!(status["runs"]["cleanedThrough"], 1);
        let promoted = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Promoted")
            .unwrap();
        assert_eq!(promoted["reason"], "GateFailed");
        assert_eq!(
            promoted["message"],
            "v1 not promoted: rmse 1.0312 exceeds maxRmse 1.0 by 0.0312"
        );
        respond_with_status(send, &patch);
        expect_events(
            &mut handle,
            &["GateFailed", "CleanupStarted", "NotReady", "NoModel"],
        )
        .await;
        handle
    });
    reconcile(Arc::new(model(Some(training_status()))), ctx.clone())
        .await
        .unwrap();
    drop(ctx);
    expect_no_more(verifier.await.unwrap()).await;
}

#[tokio::test]
async fn api_errors_are_returned_with_a_metric_label() {
    let (ctx, mut handle) = context();
    let verifier = tokio::spawn(async move {
        expect_fresh_read(&mut handle, &model(None)).await;
        let (_, send) = expect(&mut handle, Method::GET, JOBS).await;
        respond(
            send,
            StatusCode::CONFLICT,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "conflict"}),
        );
        handle
    });
    let m = Arc::new(model(None));
    let err = reconcile(m.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(err.metric_label(), "conflict");
    assert_eq!(
        error_policy(m.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
    assert_eq!(
        error_policy(m, &err, ctx.clone()),
        Action::requeue(Duration::from_secs(2)),
        "backs off"
    );
    assert!(
        ctx.metrics
            .render(jiff::Timestamp::now())
            .contains(r#"recommender_operator_reconcile_errors_total{error="conflict"} 2"#)
    );
    drop(ctx);
    expect_no_more(verifier.await.unwrap()).await;
}

#[tokio::test]
async fn a_deleted_recreated_or_deleting_resource_is_left_alone() {
    let (ctx, mut handle) = context();
    let verifier = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, MODEL).await;
        not_found(send);
        let mut recreated = model(None);
        recreated.metadata.uid = Some("uid-2".into());
        expect_fresh_read(&mut handle, &recreated).await;
        // Being deleted in the foreground: its children are going, nothing is re-applied.
        let mut deleting = model(None);
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-11-27T12:00:00Z".parse().unwrap(),
            ));
        expect_fresh_read(&mut handle, &deleting).await;
        handle
    });
    let m = Arc::new(model(None));
    for _ in 0..3 {
        assert_eq!(
            reconcile(m.clone(), ctx.clone()).await.unwrap(),
            Action::await_change()
        );
    }
    drop(ctx);
    expect_no_more(verifier.await.unwrap()).await;
}

#[tokio::test]
async fn an_invalid_spec_is_reported_without_touching_children() {
    let mut invalid = model(None);
    invalid.spec.freshness.max_age = "7d".into();
    let (ctx, mut handle) = context();
    let served = invalid.clone();
    let verifier = tokio::spawn(async move {
        expect_fresh_read(&mut handle, &served).await;
        // No Job, Pod or Deployment read, nothing applied: straight to the status.
        let (patch, send) = expect(&mut handle, Method::PATCH, &format!("{STATUS}{APPLY}")).await;
        let ready = patch["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert_eq!(ready["reason"], "InvalidSpec");
        assert_eq!(
            ready["message"],
            "spec.freshness.maxAge: \"7d\" is not a duration such as 168h or 90m"
        );
        assert_eq!(patch["status"]["phase"], "Failed");
        respond_with_status(send, &patch);
        expect_events(&mut handle, &["InvalidSpec"]).await;
        handle
    });
    assert_eq!(
        reconcile(Arc::new(invalid), ctx.clone()).await.unwrap(),
        Action::await_change()
    );
    drop(ctx);
    expect_no_more(verifier.await.unwrap()).await;
}

/// A model serving v1, at rest, with the given predictor settings.
fn serving_model(predictor: Value) -> RecommenderModel {
    serving_model_with(predictor, |spec_hash| {
        json!({"runs": {"last": 1, "lastCompleted": 1, "trainedSpecHash": spec_hash,
            "lastAttemptStartedAt": minutes_ago(60)}})
    })
}

/// A model serving v1 whose status has, beside the model, the `bookkeeping` fields made from the
/// training-spec hash.
fn serving_model_with(predictor: Value, bookkeeping: impl Fn(&str) -> Value) -> RecommenderModel {
    let mut m = model(None);
    m.spec.predictor = serde_json::from_value(predictor).unwrap();
    let mut status = bookkeeping(&children::training_spec_hash(&m.spec));
    status["models"] = json!([{"version": "v1", "run": 1, "trainedAt": minutes_ago(60),
        "metrics": {"folds": 4, "rmse": 0.94, "mae": 0.74, "rmseStd": 0.0, "maeStd": 0.0,
            "accuracy": 0.72, "precisionAt10": 0.0, "recallAt10": 0.0, "ndcgAt10": 0.0}}]);
    m.status = Some(serde_json::from_value(status).unwrap());
    m
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

/// Answers every remaining request as an event, until the controller lets go of the client.
async fn drain_events(mut handle: ApiHandle) {
    while let Some((request, send)) = handle.next_request().await {
        assert_eq!(
            request.uri().path(),
            format!("/apis/events.k8s.io/v1/namespaces/{NS}/events")
        );
        respond(send, StatusCode::CREATED, &json!({}));
    }
}

#[tokio::test]
async fn turning_autoscaling_on_hands_the_replicas_over_before_applying_without_them() {
    let m = serving_model(
        json!({"replicas": 3, "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "targetCpuUtilization": 75}}),
    );
    let (ctx, mut handle) = context();
    let served = m.clone();
    let verifier = tokio::spawn(async move {
        expect_fresh_read(&mut handle, &served).await;
        let (_, send) = expect(&mut handle, Method::GET, JOBS).await;
        respond(send, StatusCode::OK, &list("JobList", vec![]));
        let (_, send) = expect(&mut handle, Method::GET, DEPLOYMENT).await;
        respond(send, StatusCode::OK, &existing_deployment(true));
        let service = format!("/api/v1/namespaces/ml/services/movies-predictor{APPLY}");
        let (body, send) = expect(&mut handle, Method::PATCH, &service).await;
        respond(send, StatusCode::OK, &body);

        let handover = "?&force=true&fieldManager=recommender-operator-handover";
        let (held, send) = expect(
            &mut handle,
            Method::PATCH,
            &format!("{DEPLOYMENT}{handover}"),
        )
        .await;
        assert_eq!(
            held["spec"],
            json!({"replicas": 3}),
            "only the count, at its value"
        );
        respond(send, StatusCode::OK, &existing_deployment(true));
        let (applied, send) =
            expect(&mut handle, Method::PATCH, &format!("{DEPLOYMENT}{APPLY}")).await;
        assert!(
            applied["spec"].get("replicas").is_none(),
            "{}",
            applied["spec"]
        );
        respond(send, StatusCode::OK, &existing_deployment(false));

        let hpa = "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers/movies-predictor";
        let (body, send) = expect(&mut handle, Method::PATCH, &format!("{hpa}{APPLY}")).await;
        assert_eq!(body["spec"]["scaleTargetRef"]["name"], "movies-predictor");
        assert_eq!(
            (
                body["spec"]["minReplicas"].as_i64(),
                body["spec"]["maxReplicas"].as_i64()
            ),
            (Some(2), Some(5))
        );
        respond(send, StatusCode::OK, &body);
        let pdb = "/apis/policy/v1/namespaces/ml/poddisruptionbudgets/movies-predictor";
        let (body, send) = expect(&mut handle, Method::PATCH, &format!("{pdb}{APPLY}")).await;
        assert_eq!(body["spec"]["maxUnavailable"], 1);
        respond(send, StatusCode::OK, &body);

        let (patch, send) = expect(&mut handle, Method::PATCH, &format!("{STATUS}{APPLY}")).await;
        assert_eq!(patch["status"]["predictor"]["desiredReplicas"], 3);
        respond_with_status(send, &patch);
        handle
    });
    reconcile(Arc::new(m), ctx.clone()).await.unwrap();
    drop(ctx);
    drain_events(verifier.await.unwrap()).await;
}

#[tokio::test]
async fn turning_autoscaling_off_deletes_the_autoscaler_then_takes_the_replicas_back() {
    let m = serving_model(json!({"replicas": 1}));
    let (ctx, mut handle) = context();
    let served = m.clone();
    let verifier = tokio::spawn(async move {
        expect_fresh_read(&mut handle, &served).await;
        let (_, send) = expect(&mut handle, Method::GET, JOBS).await;
        respond(send, StatusCode::OK, &list("JobList", vec![]));
        let (_, send) = expect(&mut handle, Method::GET, DEPLOYMENT).await;
        respond(send, StatusCode::OK, &existing_deployment(false));
        let service = format!("/api/v1/namespaces/ml/services/movies-predictor{APPLY}");
        let (body, send) = expect(&mut handle, Method::PATCH, &service).await;
        respond(send, StatusCode::OK, &body);

        let hpa = "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers/movies-predictor?";
        let (_, send) = expect(&mut handle, Method::DELETE, hpa).await;
        not_found(send); // already gone: fine
        let (applied, send) =
            expect(&mut handle, Method::PATCH, &format!("{DEPLOYMENT}{APPLY}")).await;
        assert_eq!(applied["spec"]["replicas"], 1, "taken back, with force");
        respond(send, StatusCode::OK, &existing_deployment(true));
        let pdb = "/apis/policy/v1/namespaces/ml/poddisruptionbudgets/movies-predictor?";
        let (_, send) = expect(&mut handle, Method::DELETE, pdb).await;
        respond(
            send,
            StatusCode::OK,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        );

        let (patch, send) = expect(&mut handle, Method::PATCH, &format!("{STATUS}{APPLY}")).await;
        respond_with_status(send, &patch);
        handle
    });
    reconcile(Arc::new(m), ctx.clone()).await.unwrap();
    drop(ctx);
    drain_events(verifier.await.unwrap()).await;
}

/// An object whose status an operator version before the ledgers wrote: the bookkeeping is read
/// from the old top-level fields, and the status apply names none of them (so server-side apply
/// removes them: this field manager wrote them) and carries the ledgers instead.
#[tokio::test]
async fn a_status_from_before_the_ledgers_is_applied_in_the_new_shape() {
    let m = serving_model_with(json!({"replicas": 3}), |spec_hash| {
        json!({"lastRun": 2, "lastCompletedRun": 2, "cleanedThroughRun": 2,
            "trainedSpecHash": spec_hash, "lastAttemptStartedAt": minutes_ago(60),
            "handledRetrainRequest": "monday", "lastEvaluation": 3,
            "lastEvaluationStartedAt": minutes_ago(30),
            "lastEvaluationError": "forward evaluation movies-eval-3 failed: no report"})
    });
    assert_eq!(m.status.as_ref().unwrap().previous.last_run, Some(2));
    let (ctx, mut handle) = context();
    let served = m.clone();
    let verifier = tokio::spawn(async move {
        expect_fresh_read(&mut handle, &served).await;
        let (_, send) = expect(&mut handle, Method::GET, JOBS).await;
        respond(send, StatusCode::OK, &list("JobList", vec![]));
        let (_, send) = expect(&mut handle, Method::GET, DEPLOYMENT).await;
        respond(send, StatusCode::OK, &existing_deployment(true));
        let service = format!("/api/v1/namespaces/ml/services/movies-predictor{APPLY}");
        let (body, send) = expect(&mut handle, Method::PATCH, &service).await;
        respond(send, StatusCode::OK, &body);
        let (_, send) = expect(&mut handle, Method::PATCH, &format!("{DEPLOYMENT}{APPLY}")).await;
        respond(send, StatusCode::OK, &existing_deployment(true));
        let pdb = "/apis/policy/v1/namespaces/ml/poddisruptionbudgets/movies-predictor";
        let (body, send) = expect(&mut handle, Method::PATCH, &format!("{pdb}{APPLY}")).await;
        respond(send, StatusCode::OK, &body);

        let (patch, send) = expect(&mut handle, Method::PATCH, &format!("{STATUS}{APPLY}")).await;
        let status = &patch["status"];
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
        respond_with_status(send, &patch);
        handle
    });
    reconcile(Arc::new(m), ctx.clone()).await.unwrap();
    drop(ctx);
    drain_events(verifier.await.unwrap()).await;
}
