//! Every command against a mocked API server: the requests in order, what is printed, and the one
//! line an error makes.

use crate::testing::{MODEL, NS, Ran, model, record, run, serving_status};
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// The error of a run the API server refused to `verb` the model: one line naming the verb, the
/// resource and the namespace.
fn forbidden(ran: Ran, verb: &str) -> String {
    let err = ran.result.unwrap_err().to_string();
    let said = format!(
        "forbidden: you may not {verb} recommendermodels.recommender.dev in namespace shop (RBAC): "
    );
    assert!(err.starts_with(&said), "{err}");
    err
}

fn serving() -> Value {
    model(serving_status())
}

#[tokio::test]
async fn status_prints_the_tree() {
    let ran = run(&["status", "movies"], |mut server| async move {
        server.get(&serving()).await;
        server
    })
    .await;
    ran.result.unwrap();
    assert!(
        ran.stdout
            .starts_with("Name:           movies\nNamespace:      shop\n"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("\nServing:        v2 (run 2, trained 3d ago)\n")
    );
}

#[tokio::test]
async fn status_as_json_is_the_status_object() {
    let ran = run(
        &["status", "movies", "-o", "json"],
        |mut server| async move {
            server.get(&serving()).await;
            server
        },
    )
    .await;
    ran.result.unwrap();
    let printed: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(printed["serving"]["version"], "v2");
    assert_eq!(printed["phase"], "Serving");
    assert_eq!(printed["online"]["feedback"], 1234);
    let none = run(
        &["status", "movies", "-o", "json"],
        |mut server| async move {
            server.get(&model(Value::Null)).await;
            server
        },
    )
    .await;
    assert_eq!(none.stdout, "{}\n");
}

#[tokio::test]
async fn the_namespace_flag_picks_the_namespace() {
    let ran = run(&["status", "movies", "-n", "ml"], |mut server| async move {
        let path = MODEL.replace(&format!("/namespaces/{NS}/"), "/namespaces/ml/");
        let (_, _, send) = server.expect(Method::GET, &path).await;
        let mut stored = serving();
        stored["metadata"]["namespace"] = json!("ml");
        crate::testing::respond(send, StatusCode::OK, &stored);
        server
    })
    .await;
    ran.result.unwrap();
    assert!(
        ran.stdout.contains("Namespace:      ml\n"),
        "{}",
        ran.stdout
    );
}

#[tokio::test]
async fn a_missing_model_is_one_clear_line() {
    let ran = run(&["status", "movies"], |mut server| async move {
        server.get_fails(StatusCode::NOT_FOUND, "NotFound").await;
        server
    })
    .await;
    assert_eq!(
        ran.result.unwrap_err().to_string(),
        "RecommenderModel shop/movies not found"
    );
    assert_eq!(ran.stdout, "");
}

#[tokio::test]
async fn a_forbidden_read_names_the_verb_and_resource() {
    let ran = run(&["history", "movies"], |mut server| async move {
        server.get_fails(StatusCode::FORBIDDEN, "get").await;
        server
    })
    .await;
    let err = forbidden(ran, "get");
    assert!(err.contains("User \"dev\" cannot get resource"), "{err}");
}

#[tokio::test]
async fn history_prints_the_runs() {
    let ran = run(&["history", "movies"], |mut server| async move {
        server.get(&serving()).await;
        server
    })
    .await;
    ran.result.unwrap();
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", ran.stdout);
    assert!(lines[0].starts_with("RUN  VERSION  TRIGGER"));
    assert!(lines[3].starts_with("3    v3       Requested  Failed"));
}

#[tokio::test]
async fn retrain_writes_a_fresh_annotation() {
    let ran = run(&["retrain", "movies"], |mut server| async move {
        let patch = server.merge_patch(&serving()).await;
        assert_eq!(
            patch,
            json!({"metadata": {"annotations": {"recommender.dev/retrain": "2026-12-07T12:00:00.5Z"}}})
        );
        server
    })
    .await;
    ran.result.unwrap();
    assert_eq!(
        ran.stdout,
        "shop/movies: training run requested (recommender.dev/retrain=2026-12-07T12:00:00.5Z); \
         run 4 is in flight, the new one follows it\n"
    );
}

#[tokio::test]
async fn retrain_of_a_suspended_model_says_it_waits() {
    let ran = run(&["retrain", "movies"], |mut server| async move {
        let mut stored = serving();
        stored["spec"]["suspend"] = json!(true);
        server.merge_patch(&stored).await;
        server
    })
    .await;
    ran.result.unwrap();
    assert!(
        ran.stdout
            .ends_with("; the model is suspended (spec.suspend): it starts once resumed\n"),
        "{}",
        ran.stdout
    );
}

#[tokio::test]
async fn a_forbidden_write_names_the_patch_verb() {
    let ran = run(&["retrain", "movies"], |mut server| async move {
        server
            .merge_patch_fails(StatusCode::FORBIDDEN, "patch")
            .await;
        server
    })
    .await;
    forbidden(ran, "patch");
}

#[tokio::test]
async fn rollback_checks_the_version_then_pins_it() {
    let ran = run(&["rollback", "movies", "v1"], |mut server| async move {
        server.get(&serving()).await;
        let mut pinned = serving();
        pinned["spec"]["pinnedVersion"] = json!("v1");
        let patch = server.merge_patch(&pinned).await;
        assert_eq!(patch, json!({"spec": {"pinnedVersion": "v1"}}));
        server
    })
    .await;
    ran.result.unwrap();
    assert_eq!(
        ran.stdout,
        "shop/movies: pinned to v1 (spec.pinnedVersion); v2 serves until the predictor has \
         rolled over\n"
    );
}

#[tokio::test]
async fn rollback_to_an_unknown_version_writes_nothing() {
    let ran = run(&["rollback", "movies", "v7"], |mut server| async move {
        server.get(&serving()).await;
        server
    })
    .await;
    assert_eq!(
        ran.result.unwrap_err().to_string(),
        "shop/movies has no promoted version v7; it can be rolled back to: v1, v2"
    );
}

#[tokio::test]
async fn rollback_to_the_pinned_version_changes_nothing() {
    let ran = run(&["rollback", "movies", "v1"], |mut server| async move {
        let mut pinned = serving();
        pinned["spec"]["pinnedVersion"] = json!("v1");
        server.get(&pinned).await;
        server
    })
    .await;
    ran.result.unwrap();
    assert_eq!(
        ran.stdout,
        "shop/movies: already pinned to v1, nothing changed\n"
    );
}

#[tokio::test]
async fn rollback_clear_removes_the_pin() {
    let ran = run(
        &["rollback", "movies", "--clear"],
        |mut server| async move {
            let mut status = serving_status();
            status["models"]
                .as_array_mut()
                .unwrap()
                .push(record("v3", 5, 0.92, 10));
            let patch = server.merge_patch(&model(status)).await;
            assert_eq!(patch, json!({"spec": {"pinnedVersion": null}}));
            server
        },
    )
    .await;
    ran.result.unwrap();
    assert_eq!(
        ran.stdout,
        "shop/movies: pin removed; v3 serves once the predictor has rolled over\n"
    );
}

#[tokio::test]
async fn pause_and_resume_patch_the_spec() {
    for (verb, paused) in [("pause", true), ("resume", false)] {
        let ran = run(&[verb, "movies"], move |mut server| async move {
            let patch = server.merge_patch(&serving()).await;
            assert_eq!(patch, json!({"spec": {"rollout": {"paused": paused}}}));
            server
        })
        .await;
        ran.result.unwrap();
        assert!(
            ran.stdout
                .contains(&format!("spec.rollout.paused={paused}")),
            "{}",
            ran.stdout
        );
    }
}

/// The model in a rollout at `stage` under `Progressive`, with these annotations.
fn rolling(stage: &str, annotations: Value) -> Value {
    let mut status = serving_status();
    status["rollout"] = crate::testing::rollout(stage);
    let mut m = model(status);
    m["spec"]["rollout"] = json!({"strategy": "Progressive"});
    m["metadata"]["annotations"] = annotations;
    m
}

#[tokio::test]
async fn promote_annotates_with_the_rollout_id() {
    let ran = run(&["promote", "movies"], |mut server| async move {
        server.get(&rolling("Canary", json!({}))).await;
        let patch = server
            .merge_patch(&rolling("Canary", json!({"recommender.dev/promote": "movies-v3-1796126400"})))
            .await;
        assert_eq!(
            patch,
            json!({"metadata": {"annotations": {"recommender.dev/promote": "movies-v3-1796126400"}}})
        );
        server
    })
    .await;
    ran.result.unwrap();
    assert_eq!(
        ran.stdout,
        "shop/movies: promote of rollout movies-v3-1796126400 (Canary step 2/3 at 25.0%) \
         requested (recommender.dev/promote); the operator skips the remaining steps and v3 \
         serves everyone\n"
    );
}

#[tokio::test]
async fn abort_annotates_with_the_rollout_id() {
    let ran = run(&["abort", "movies"], |mut server| async move {
        // A request left from an earlier rollout is overwritten with this one's id.
        server
            .get(&rolling(
                "Shadow",
                json!({"recommender.dev/abort": "movies-v2-1796000000"}),
            ))
            .await;
        let patch = server.merge_patch(&rolling("Shadow", json!({}))).await;
        assert_eq!(
            patch,
            json!({"metadata": {"annotations": {"recommender.dev/abort": "movies-v3-1796126400"}}})
        );
        server
    })
    .await;
    ran.result.unwrap();
    assert_eq!(
        ran.stdout,
        "shop/movies: abort of rollout movies-v3-1796126400 (Shadow) requested \
         (recommender.dev/abort); the operator sets the share to 0 and v2 serves everyone again\n"
    );
}

#[tokio::test]
async fn abort_without_a_running_rollout_writes_nothing() {
    let ran = run(&["abort", "movies"], |mut server| async move {
        server.get(&rolling("Aborted", json!({}))).await;
        server
    })
    .await;
    assert_eq!(
        ran.result.unwrap_err().to_string(),
        "no rollout is running on shop/movies, nothing to abort (the last, \
         movies-v3-1796126400, ended Aborted: WorseAccuracy)"
    );
    assert_eq!(ran.stdout, "");
}

#[tokio::test]
async fn a_pending_request_is_not_written_twice() {
    let ran = run(&["promote", "movies"], |mut server| async move {
        server
            .get(&rolling(
                "Canary",
                json!({"recommender.dev/promote": "movies-v3-1796126400"}),
            ))
            .await;
        server
    })
    .await;
    ran.result.unwrap();
    assert_eq!(
        ran.stdout,
        "shop/movies: promote of rollout movies-v3-1796126400 already requested \
         (recommender.dev/promote); waiting for the operator\n"
    );
}

#[tokio::test]
async fn promote_after_an_abort_request_is_refused() {
    let ran = run(&["promote", "movies"], |mut server| async move {
        server
            .get(&rolling(
                "Canary",
                json!({"recommender.dev/abort": "movies-v3-1796126400"}),
            ))
            .await;
        server
    })
    .await;
    let err = ran.result.unwrap_err().to_string();
    assert!(
        err.starts_with("cannot promote shop/movies: rollout movies-v3-1796126400"),
        "{err}"
    );
}

#[tokio::test]
async fn a_forbidden_promote_names_the_patch_verb() {
    let ran = run(&["promote", "movies"], |mut server| async move {
        server.get(&rolling("Canary", json!({}))).await;
        server
            .merge_patch_fails(StatusCode::FORBIDDEN, "patch")
            .await;
        server
    })
    .await;
    forbidden(ran, "patch");
}

#[tokio::test]
async fn pause_names_where_the_rollout_holds() {
    let ran = run(&["pause", "movies"], |mut server| async move {
        let mut paused = rolling("Canary", json!({}));
        paused["spec"]["rollout"]["paused"] = json!(true);
        let patch = server.merge_patch(&paused).await;
        assert_eq!(patch, json!({"spec": {"rollout": {"paused": true}}}));
        server
    })
    .await;
    ran.result.unwrap();
    assert_eq!(
        ran.stdout,
        "shop/movies: rollout movies-v3-1796126400 paused at Canary step 2/3 at 25.0% \
         (spec.rollout.paused=true)\n"
    );
}

#[tokio::test]
async fn pause_under_immediate_says_there_is_nothing_to_hold() {
    let ran = run(&["pause", "movies"], |mut server| async move {
        server.merge_patch(&serving()).await;
        server
    })
    .await;
    ran.result.unwrap();
    assert_eq!(
        ran.stdout,
        "shop/movies: spec.rollout.paused=true; no rollout is running and spec.rollout.strategy \
         is Immediate, so there is none to hold\n"
    );
}

#[tokio::test]
async fn rollback_during_a_rollout_says_it_ends_it() {
    let ran = run(&["rollback", "movies", "v1"], |mut server| async move {
        server.get(&rolling("Canary", json!({}))).await;
        server.merge_patch(&rolling("Canary", json!({}))).await;
        server
    })
    .await;
    ran.result.unwrap();
    assert!(
        ran.stdout.ends_with(
            "; rollout movies-v3-1796126400 (Canary step 2/3 at 25.0%) ends aborted (Pinned)\n"
        ),
        "{}",
        ran.stdout
    );
}

const LIST: &str = "/apis/recommender.dev/v1alpha1/namespaces/shop/recommendermodels?\
                    &fieldSelector=metadata.name%3Dmovies&limit=500";
const WATCH: &str = "/apis/recommender.dev/v1alpha1/namespaces/shop/recommendermodels?\
                     &watch=true&timeoutSeconds=290&fieldSelector=metadata.name%3Dmovies\
                     &allowWatchBookmarks=true&resourceVersion=100";

/// A watch response: these events, one JSON object a line, then the end of the stream.
fn events(events: &[(&str, &Value)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, object) in events {
        serde_json::to_writer(&mut body, &json!({"type": kind, "object": object})).unwrap();
        body.push(b'\n');
    }
    body
}

fn changed() -> Value {
    let mut status = serving_status();
    status["serving"] = record("v3", 5, 0.9201, 1);
    let mut m = model(status);
    m["metadata"]["resourceVersion"] = json!("101");
    m
}

#[tokio::test]
async fn watch_redraws_on_change_until_the_model_is_deleted() {
    let ran = run(&["status", "movies", "--watch"], |mut server| async move {
        server.get(&serving()).await;
        // The watcher lists the one object, then watches from the list's version.
        let (_, _, send) = server.expect(Method::GET, LIST).await;
        let list = json!({"kind": "RecommenderModelList", "apiVersion": "recommender.dev/v1alpha1",
            "metadata": {"resourceVersion": "100"}, "items": [serving()]});
        crate::testing::respond(send, StatusCode::OK, &list);
        let (_, _, send) = server.expect(Method::GET, WATCH).await;
        let body = events(&[("MODIFIED", &changed()), ("DELETED", &changed())]);
        send.send_response(http::Response::new(kube::client::Body::from(body)));
        server
    })
    .await;
    assert_eq!(
        ran.result.unwrap_err().to_string(),
        "RecommenderModel shop/movies was deleted"
    );
    // Drawn twice: the listed object changed nothing shown, the modified one did.
    let drawings: Vec<&str> = ran.stdout.split("\n\nName:").collect();
    assert_eq!(drawings.len(), 2, "{}", ran.stdout);
    assert!(
        drawings[0].contains("\nServing:        v2 (run 2,"),
        "{}",
        ran.stdout
    );
    assert!(
        drawings[1].contains("\nServing:        v3 (run 5,"),
        "{}",
        ran.stdout
    );
}

#[tokio::test]
async fn watch_as_json_prints_each_changed_status() {
    let ran = run(&["status", "movies", "-w", "-o", "json"], |mut server| async move {
        server.get(&serving()).await;
        let (_, _, send) = server.expect(Method::GET, LIST).await;
        let list = json!({"kind": "RecommenderModelList", "apiVersion": "recommender.dev/v1alpha1",
            "metadata": {"resourceVersion": "100"}, "items": [serving()]});
        crate::testing::respond(send, StatusCode::OK, &list);
        let (_, _, send) = server.expect(Method::GET, WATCH).await;
        let body = events(&[("MODIFIED", &changed()), ("DELETED", &changed())]);
        send.send_response(http::Response::new(kube::client::Body::from(body)));
        server
    })
    .await;
    assert!(ran.result.is_err());
    let versions: Vec<String> = serde_json::Deserializer::from_str(&ran.stdout)
        .into_iter::<Value>()
        .map(|doc| {
            doc.unwrap()["serving"]["version"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(versions, ["v2", "v3"]);
}

#[tokio::test]
async fn watch_of_a_model_gone_while_listing_ends() {
    let ran = run(&["status", "movies", "--watch"], |mut server| async move {
        server.get(&serving()).await;
        let (_, _, send) = server.expect(Method::GET, LIST).await;
        let list = json!({"kind": "RecommenderModelList", "apiVersion": "recommender.dev/v1alpha1",
            "metadata": {"resourceVersion": "100"}, "items": []});
        crate::testing::respond(send, StatusCode::OK, &list);
        server
    })
    .await;
    assert_eq!(
        ran.result.unwrap_err().to_string(),
        "RecommenderModel shop/movies was deleted"
    );
}

#[tokio::test]
async fn watch_without_the_watch_permission_says_so() {
    let ran = run(&["status", "movies", "--watch"], |mut server| async move {
        server.get(&serving()).await;
        let (_, _, send) = server.expect(Method::GET, LIST).await;
        crate::testing::failure(send, StatusCode::FORBIDDEN, "list");
        server
    })
    .await;
    forbidden(ran, "list");
}

#[tokio::test]
async fn an_unreachable_server_is_said_as_such() {
    let ran = run(&["status", "movies"], |mut server| async move {
        // No answer at all: the connection is gone.
        let (_, _, send) = server.expect(Method::GET, MODEL).await;
        drop(send);
        server
    })
    .await;
    let err = ran.result.unwrap_err().to_string();
    assert!(
        err.starts_with(
            "get RecommenderModel shop/movies failed: cannot reach the Kubernetes API server"
        ),
        "{err}"
    );
}
