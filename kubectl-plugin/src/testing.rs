//! Commands against a mocked API server, as the operator's controller tests do it
//! (operator/src/controller/tests.rs, whose harness is private to the controller): every request
//! is asserted in order (method, path and query, content type, body), so a missing, extra or
//! reordered call fails the test.

use crate::cli::Cli;
use crate::commands::{self, Context};
use crate::error::Result;
use clap::Parser;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

pub const NS: &str = "shop";
pub const MODEL: &str = "/apis/recommender.dev/v1alpha1/namespaces/shop/recommendermodels/movies";
/// The query of the plugin's merge patches.
pub const PATCHED: &str = "?&fieldManager=kubectl-recommender";

/// The fixed time the commands see (ages, retrain values).
pub fn now() -> jiff::Timestamp {
    "2026-12-07T12:00:00.5Z".parse().unwrap()
}

/// `minutes` before [`now`], as the status writes times.
pub fn minutes_ago(minutes: i64) -> String {
    let at = now().as_second() - minutes * 60;
    jiff::Timestamp::from_second(at).unwrap().to_string()
}

/// The stored model `movies` in `shop`, with `status` (JSON null for none).
pub fn model(status: Value) -> Value {
    let mut m = json!({
        "apiVersion": "recommender.dev/v1alpha1", "kind": "RecommenderModel",
        "metadata": {"name": "movies", "namespace": NS, "uid": "uid-1", "generation": 3,
            "resourceVersion": "100", "creationTimestamp": minutes_ago(600)},
        "spec": {"source": {"file": {"path": "movies/u.data"}}, "modelStore": {"claimName": "models"}},
    });
    if !status.is_null() {
        m["status"] = status;
    }
    m
}

pub type Answer = SendResponse<Response<Body>>;

/// The API server's side of the mock.
pub struct Server(Handle<Request<Body>, Response<Body>>);

impl Server {
    /// The next request, which must be `method uri`; its content type and JSON body.
    pub async fn expect(&mut self, method: Method, uri: &str) -> (Option<String>, Value, Answer) {
        let (request, send) = self.0.next_request().await.unwrap_or_else(|| {
            panic!("expected {method} {uri}, but the plugin made no more requests")
        });
        assert_eq!(
            (request.method(), request.uri().to_string().as_str()),
            (&method, uri),
            "unexpected request"
        );
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (content_type, body, send)
    }

    /// The model is read; answered with `stored`.
    pub async fn get(&mut self, stored: &Value) {
        let (_, _, send) = self.expect(Method::GET, MODEL).await;
        respond(send, StatusCode::OK, stored);
    }

    /// The model is read; answered with an API error.
    pub async fn get_fails(&mut self, code: StatusCode, reason: &str) {
        let (_, _, send) = self.expect(Method::GET, MODEL).await;
        failure(send, code, reason);
    }

    /// A JSON merge patch of the model, answered with `stored` as it is after the patch;
    /// returns the patch.
    pub async fn merge_patch(&mut self, stored: &Value) -> Value {
        let (content_type, patch, send) = self
            .expect(Method::PATCH, &format!("{MODEL}{PATCHED}"))
            .await;
        assert_eq!(
            content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        respond(send, StatusCode::OK, stored);
        patch
    }

    /// The patch is refused with an API error; returns the patch.
    pub async fn merge_patch_fails(&mut self, code: StatusCode, reason: &str) -> Value {
        let (_, patch, send) = self
            .expect(Method::PATCH, &format!("{MODEL}{PATCHED}"))
            .await;
        failure(send, code, reason);
        patch
    }

    /// The plugin has dropped its client: nothing more will come.
    pub async fn no_more(mut self) {
        if let Some((request, _)) = self.0.next_request().await {
            panic!(
                "unexpected extra request {} {}",
                request.method(),
                request.uri()
            );
        }
    }
}

pub fn respond(send: Answer, code: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

/// An API error as the API server words it (`kind: Status`).
pub fn failure(send: Answer, code: StatusCode, reason: &str) {
    let message = match code {
        StatusCode::FORBIDDEN => format!(
            "recommendermodels.recommender.dev \"movies\" is forbidden: User \"dev\" cannot \
             {} resource \"recommendermodels\" in API group \"recommender.dev\" in the \
             namespace \"shop\"",
            reason
        ),
        _ => reason.to_lowercase(),
    };
    respond(
        send,
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": if code == StatusCode::FORBIDDEN { "Forbidden" } else { reason },
            "code": code.as_u16(), "message": message}),
    );
}

/// What a command printed and how it ended.
pub struct Ran {
    pub result: Result<()>,
    pub stdout: String,
}

/// Runs the command line `args` (as typed after `kubectl recommender`) while `serve` plays the
/// API server; returns once the plugin has let go of its client and `serve` is done.
pub async fn run<F>(args: &[&str], serve: impl FnOnce(Server) -> F) -> Ran
where
    F: Future<Output = Server> + Send + 'static,
{
    let cli =
        Cli::try_parse_from(std::iter::once("kubectl-recommender").chain(args.iter().copied()))
            .unwrap();
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let ctx = Context {
        client: Client::new(service, NS),
        namespace: cli.namespace.clone().unwrap_or_else(|| NS.into()),
        clock: now,
        redraw_in_place: false,
    };
    let verifier = tokio::spawn(serve(Server(handle)));
    let mut out = Vec::new();
    // A command that waits for a request the server will never answer (a watch retrying after
    // the verifier panicked) fails the test instead of hanging it.
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        commands::run(&ctx, &cli.command, &mut out),
    )
    .await
    .expect("the command did not finish within 10 s");
    drop(ctx);
    verifier.await.unwrap().no_more().await;
    Ran {
        result,
        stdout: String::from_utf8(out).unwrap(),
    }
}

fn metrics(rmse: f64, mae: f64, accuracy: f64) -> Value {
    json!({"folds": 4, "rmse": rmse, "rmseStd": 0.01, "mae": mae, "maeStd": 0.01,
        "accuracy": accuracy, "precisionAt10": 0.5, "recallAt10": 0.4, "ndcgAt10": 0.6})
}

/// A promoted model record.
pub fn record(version: &str, run: u32, rmse: f64, trained_minutes_ago: i64) -> Value {
    json!({"version": version, "run": run, "metrics": metrics(rmse, 0.7412, 0.7243),
        "trainedAt": minutes_ago(trained_minutes_ago)})
}

/// A model serving v2 (v1 kept), with a predictor, online figures, a run in flight, history and
/// conditions: what a healthy model's status holds.
pub fn serving_status() -> Value {
    let mut serving = record("v2", 2, 0.9312, 3 * 24 * 60);
    serving["forward"] = json!({"since": 893_286_638, "ratings": 1234, "rmse": 0.9511,
        "mae": 0.7512, "accuracy": 0.7102, "unknownUsers": 3, "unknownItems": 1,
        "evaluatedAt": minutes_ago(120)});
    json!({
        "observedGeneration": 3,
        "phase": "Serving",
        "stale": false,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready",
             "message": "serving, database reachable, workers healthy",
             "lastTransitionTime": minutes_ago(3 * 24 * 60)},
            {"type": "Training", "status": "True", "reason": "Running",
             "message": "run 3 (movies-train-3) started (Requested)",
             "lastTransitionTime": minutes_ago(2)},
            {"type": "Stale", "status": "False", "reason": "Fresh", "message": "",
             "lastTransitionTime": minutes_ago(3 * 24 * 60)},
        ],
        "serving": serving,
        "models": [record("v1", 1, 0.9403, 4 * 24 * 60), record("v2", 2, 0.9312, 3 * 24 * 60)],
        "history": [
            {"run": 1, "version": "v1", "trigger": "NoModel", "startedAt": minutes_ago(4 * 24 * 60 + 5),
             "finishedAt": minutes_ago(4 * 24 * 60), "outcome": "Succeeded", "reason": "Promoted",
             "message": "v1 promoted: rmse 0.9403, mae 0.7412",
             "metrics": metrics(0.9403, 0.7412, 0.7243)},
            {"run": 2, "version": "v2", "trigger": "Stale", "startedAt": minutes_ago(3 * 24 * 60 + 5),
             "finishedAt": minutes_ago(3 * 24 * 60), "outcome": "Succeeded", "reason": "Promoted",
             "message": "v2 promoted: rmse 0.9312, mae 0.7412", "search": 1,
             "metrics": metrics(0.9312, 0.7412, 0.7243)},
            {"run": 3, "version": "v3", "trigger": "Requested", "startedAt": minutes_ago(30),
             "finishedAt": minutes_ago(25), "outcome": "Failed", "reason": "DeadlineExceeded",
             "message": "Job was active longer than specified deadline"},
        ],
        "runCounts": {"succeeded": 2, "failed": 1, "rejected": 0},
        "runs": {"last": 4, "lastCompleted": 3,
            "active": {"run": 4, "job": "movies-train-4", "trigger": "Requested",
                "startedAt": minutes_ago(2), "specHash": "0123456789abcdef"}},
        "predictor": {"version": "v2", "desiredReplicas": 2, "availableReplicas": 2},
        "url": "http://movies-predictor.shop.svc.cluster.local:8080",
        "online": {"observedAt": minutes_ago(0), "version": "v2", "replicas": 2,
            "requestsPerSecond": 12.34, "latencyP50Seconds": 0.0012, "latencyP99Seconds": 0.0045,
            "feedback": 1234, "rmse": 0.95, "mae": 0.74, "accuracy": 0.721,
            "averageDifference": 0.03, "suggestionsShown": 1000, "suggestionsRated": 300,
            "suggestionsAccepted": 210, "acceptedOfRated": 0.7, "activeUsers": 120,
            "engagedUsers": 40, "usersWindowSeconds": 3600, "userCountRelativeError": 0.0081},
    })
}

/// `model(serving_status())` as the typed resource, for the renderers.
pub fn serving_model() -> recommender_operator::crd::RecommenderModel {
    serde_json::from_value(model(serving_status())).unwrap()
}

/// `status.rollout` of v3 against v2 in `stage`, with the figures each stage has: arms and the
/// shadow test always, guardrails from the canary on, an end reason once terminal.
pub fn rollout(stage: &str) -> Value {
    let mut r = json!({
        "id": "movies-v3-1796126400",
        "stableVersion": "v2",
        "candidateVersion": "v3",
        "candidateModel": record("v3", 5, 0.9201, 40),
        "stage": stage,
        "step": 0,
        "share": 0.0,
        "startedAt": minutes_ago(40),
        "stepStartedAt": minutes_ago(12),
        "verdict": "Continue",
        "message": "",
        "arms": {
            "stable": {"requests": 5000, "feedback": 900, "rmse": 0.9402,
                "acceptedOfRated": 0.71, "latencyP99Seconds": 0.0045},
            "candidate": {"requests": 0, "feedback": 0},
        },
        "test": {"samples": 900, "meanDifference": -0.0123, "standardError": 0.004,
            "logRatioWorse": -2.1, "logRatioNoWorse": 3.5},
    });
    match stage {
        "Canary" => {
            r["step"] = json!(1);
            r["share"] = json!(0.25);
            r["stepStartedAt"] = json!(minutes_ago(3));
            r["stepStartFeedback"] = json!(40);
            r["stepStartRequests"] = json!(300);
            r["arms"]["candidate"] = json!({"requests": 420, "feedback": 120, "rmse": 0.9301,
                "acceptedOfRated": 0.68, "latencyP99Seconds": 0.0049});
            r["guardrails"] = json!({
                "accuracy": {"estimate": -0.01, "logRatio": 0.2, "failed": false},
                "acceptance": {"estimate": 0.03, "logRatio": -1.25, "failed": false},
                "latency": {},
            });
        }
        "Aborted" => {
            r["endedAt"] = json!(minutes_ago(2));
            r["endReason"] = json!("WorseAccuracy");
            r["verdict"] = json!("Abort");
            r["message"] = json!("the candidate's MSE exceeds the stable model's by 0.0400");
        }
        _ => {}
    }
    r
}
