//! Every endpoint in-process, on a model written and loaded as a real artifact.

mod common;

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use common::*;
use serde_json::{Value, json};
use tower::ServiceExt;

#[tokio::test]
async fn not_ready_until_a_model_is_loaded() {
    let app = app_with(|_| {});
    let (status, body) = get(&app.router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "no_model");
    assert_eq!(body["model_version"], Value::Null);
    let (status, _) = get(&app.router, "/livez").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = get(&app.router, "/v1/predict?user=u1&item=i1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "model_not_loaded");
    let (status, body) = get(&app.router, "/v1/summary").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "no_model");

    // The file is missing: loading fails, is counted, and readiness stays false.
    assert!(
        recommender_predictor::reload::reload(&app.state)
            .await
            .is_err()
    );
    assert_eq!(
        get(&app.router, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    write(&app.path, "v1", 1);
    recommender_predictor::reload::reload(&app.state)
        .await
        .unwrap();
    let (status, body) = get(&app.router, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["model_version"], "v1");
}

#[tokio::test]
async fn predicts_a_pair_by_get_and_post() {
    let app = loaded_app().await;
    let expected = model(1).predict("u3", "i7");
    let (status, body) = get(&app.router, "/v1/predict?user=u3&item=i7").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["model_version"], "v1");
    assert_eq!(body["user"], "u3");
    assert_eq!(body["item"], "i7");
    assert!(close(body["rating"].as_f64().unwrap(), expected.rating));
    assert_eq!(body["user_known"], true);
    assert_eq!(body["item_known"], true);

    let (status, post) =
        post_json(&app.router, "/v1/predict", r#"{"user":"u3","item":"i7"}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(post, body);
}

#[tokio::test]
async fn unknown_ids_are_marked_and_fall_back() {
    let app = loaded_app().await;
    let (status, body) = get(&app.router, "/v1/predict?user=stranger&item=i0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user_known"], false);
    assert_eq!(body["item_known"], true);
    let expected = model(1).predict("stranger", "i0").rating;
    assert!(close(body["rating"].as_f64().unwrap(), expected));
    // Numeric ids in JSON are ids like any other.
    let (status, body) = post_json(&app.router, "/v1/predict", r#"{"user":5,"item":6}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["user"].as_str(), body["user_known"].as_bool()),
        (Some("5"), Some(false))
    );
}

#[tokio::test]
async fn batch_answers_in_order() {
    let app = loaded_app().await;
    let m = model(1);
    let pairs: Vec<Value> = (0..50)
        .map(|k| json!({"user": format!("u{}", k % 25), "item": format!("i{}", k % 31)}))
        .collect();
    let (status, body) = post_json(
        &app.router,
        "/v1/predict/batch",
        json!({ "pairs": pairs }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["model_version"], "v1");
    let predictions = body["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 50);
    for (pair, p) in pairs.iter().zip(predictions) {
        let (u, i) = (
            pair["user"].as_str().unwrap(),
            pair["item"].as_str().unwrap(),
        );
        assert_eq!(p["user"], u);
        assert_eq!(p["item"], i);
        let expected = m.predict(u, i);
        assert!(close(p["rating"].as_f64().unwrap(), expected.rating));
        assert_eq!(p["user_known"], expected.user_known);
        assert_eq!(p["item_known"], expected.item_known);
    }
}

#[tokio::test]
async fn batch_is_bounded() {
    let app = app_with(|c| c.max_batch = 3);
    write(&app.path, "v1", 1);
    recommender_predictor::reload::reload(&app.state)
        .await
        .unwrap();
    let pair = json!({"user": "u1", "item": "i1"});
    let (status, body) = post_json(
        &app.router,
        "/v1/predict/batch",
        json!({ "pairs": [pair, pair, pair, pair] }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"], "batch_too_large");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("4 pairs; the limit is 3")
    );
    let (status, _) = post_json(
        &app.router,
        "/v1/predict/batch",
        json!({ "pairs": [pair, pair, pair] }).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = post_json(&app.router, "/v1/predict/batch", r#"{"pairs": []}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["message"].as_str().unwrap().contains("at least one"));
}

fn ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["item"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn recommendations_exclude_rated_items_and_rank_by_score() {
    let app = loaded_app().await;
    let m = model(1);
    let rated = rated_by("u4");
    assert_eq!(rated.len(), 6);
    let (status, body) = get(&app.router, "/v1/users/u4/recommendations?n=30").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["model_version"], "v1");
    assert_eq!(body["user"], "u4");
    assert_eq!(body["cold_start"], false);
    let got = ids(&body);
    assert_eq!(
        got.len(),
        ITEMS - rated.len(),
        "every unrated item, none rated"
    );
    for item in &rated {
        assert!(!got.contains(item), "{item} was rated by u4");
    }
    let scores: Vec<f64> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    for (item, score) in got.iter().zip(&scores) {
        assert!(close(*score, m.predict("u4", item).rating));
    }

    // Default n is 10 and it is the head of the full ranking.
    let (_, top) = get(&app.router, "/v1/users/u4/recommendations").await;
    assert_eq!(ids(&top), got[..10].to_vec());
}

#[tokio::test]
async fn unknown_user_gets_a_marked_cold_start() {
    let app = loaded_app().await;
    let (status, body) = get(&app.router, "/v1/users/newcomer/recommendations?n=3").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["cold_start"], true);
    // The items with the highest bias, best first.
    let m = model(1);
    let mut by_bias: Vec<(f32, String)> = (0..ITEMS as u32)
        .map(|i| (m.factors.item_bias[i as usize], m.items.id(i).to_owned()))
        .collect();
    by_bias.sort_by(|a, b| b.0.total_cmp(&a.0));
    let expected: Vec<String> = by_bias.into_iter().take(3).map(|(_, id)| id).collect();
    assert_eq!(ids(&body), expected);
    let (_, known) = get(&app.router, "/v1/users/u10/recommendations?n=3").await;
    assert_eq!(known["cold_start"], false);
}

#[tokio::test]
async fn feedback_drives_online_error_acceptance_and_users() {
    let app = loaded_app().await;
    let m = model(1);
    let events = [
        ("u1", "i9", 5.0, true),
        ("u1", "i10", 2.0, true),
        ("u2", "i11", 4.0, true),
        ("u3", "i12", 3.0, false),
    ];
    let mut sq = 0.0;
    let mut abs = 0.0;
    for (user, item, rating, suggested) in events {
        let (status, body) = post_json(
            &app.router,
            "/v1/feedback",
            json!({"user": user, "item": item, "rating": rating, "suggested": suggested})
                .to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let predicted = m.predict(user, item).rating;
        assert!(close(body["predicted"].as_f64().unwrap(), predicted));
        assert!(close(
            body["residual"].as_f64().unwrap(),
            rating - predicted
        ));
        assert_eq!(body["model_version"], "v1");
        let expected_accept = suggested.then_some(rating >= 4.0);
        assert_eq!(body["accepted"].as_bool(), expected_accept);
        sq += (rating - predicted).powi(2);
        abs += (rating - predicted).abs();
    }
    let (status, s) = get(&app.router, "/v1/summary").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s["status"], "serving");
    assert_eq!(s["model_version"], "v1");
    assert_eq!(s["model"]["algorithm"], "svd");
    assert!(s["model"]["age_seconds"].as_f64().unwrap() > 0.0);
    assert!(close(s["model"]["cv_rmse"].as_f64().unwrap(), 0.95));
    assert_eq!(s["online"]["samples"], 4);
    assert!(close(
        s["online"]["rmse"].as_f64().unwrap(),
        (sq / 4.0).sqrt()
    ));
    assert!(close(s["online"]["mae"].as_f64().unwrap(), abs / 4.0));
    assert_eq!(s["suggestions"]["feedback"], 3);
    assert_eq!(s["suggestions"]["accepted"], 2);
    assert!(close(
        s["suggestions"]["acceptance_rate"].as_f64().unwrap(),
        2.0 / 3.0
    ));
    assert_eq!(s["users"]["active"], 3);
    assert_eq!(s["users"]["engaged"], 2);

    let (_, _, metrics) = send(
        &app.router,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert!(metrics.contains("recommender_predictor_suggestions_accepted_total 2"));
    assert!(metrics.contains(r#"recommender_predictor_feedback_total{suggested="true"} 3"#));
    assert!(metrics.contains("recommender_predictor_active_users 3"));
    let rmse_line = metrics
        .lines()
        .find(|l| l.starts_with("recommender_predictor_online_rmse "))
        .unwrap();
    let rmse: f64 = rmse_line.split(' ').nth(1).unwrap().parse().unwrap();
    assert!((rmse - (sq / 4.0).sqrt()).abs() < 1e-9);
}

#[tokio::test]
async fn suggestions_served_are_counted() {
    let app = loaded_app().await;
    get(&app.router, "/v1/users/u1/recommendations?n=5").await;
    get(&app.router, "/v1/users/nobody/recommendations?n=2").await;
    let (_, s) = get(&app.router, "/v1/summary").await;
    assert_eq!(s["suggestions"]["served"], 7);
}

#[tokio::test]
async fn model_endpoint_describes_the_artifact() {
    let app = loaded_app().await;
    let (status, body) = get(&app.router, "/v1/model").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["model_version"], "v1");
    assert_eq!(body["users"], USERS);
    assert_eq!(body["items"], ITEMS);
    assert_eq!(body["factors"], FACTORS);
    assert_eq!(body["rating_scale"], json!({"lo": 1.0, "hi": 5.0}));
    assert_eq!(body["meta"]["created_at"], "2026-11-27T22:00:00Z");
    assert_eq!(body["meta"]["hyperparameters"]["algorithm"], "svd");
    assert_eq!(body["path"], app.path.display().to_string());
}

#[tokio::test]
async fn metrics_follow_prometheus_conventions() {
    let app = loaded_app().await;
    get(&app.router, "/v1/predict?user=u1&item=i2").await;
    get(&app.router, "/v1/predict?user=u1").await;
    let (status, _, text) = send(
        &app.router,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        r#"recommender_predictor_http_requests_total{code="200",route="/v1/predict"} 1"#,
        r#"recommender_predictor_http_requests_total{code="400",route="/v1/predict"} 1"#,
        r#"recommender_predictor_http_request_duration_seconds_bucket{route="/v1/predict",le="+Inf"} 2"#,
        r#"recommender_predictor_model_info{algorithm="svd",version="v1"} 1"#,
        "recommender_predictor_model_loaded 1",
        "recommender_predictor_model_reloads_total 1",
        r#"recommender_predictor_model_load_failures_total{reason="Corrupt"} 0"#,
        "# TYPE recommender_predictor_model_age_seconds gauge",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in\n{text}");
    }
}

/// Every client mistake: a 4xx JSON body naming the problem, never a 5xx.
#[tokio::test]
async fn bad_input_is_a_4xx_naming_the_problem() {
    let app = app_with(|c| c.max_body_bytes = 256);
    write(&app.path, "v1", 1);
    recommender_predictor::reload::reload(&app.state)
        .await
        .unwrap();
    let r = &app.router;
    let json_req = |uri: &str, body: Body| {
        Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap()
    };
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            Request::get("/v1/predict?user=u1")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "missing field `item`",
        ),
        (
            Request::get("/v1/predict?item=i1")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "missing field `user`",
        ),
        (
            Request::get("/v1/predict?user=u1&item=i1&x=1")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "unknown field `x`",
        ),
        (
            Request::get("/v1/predict?user=&item=i1")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "must not be empty",
        ),
        (
            Request::get("/v1/predict?user=%FF%FE&item=i1")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "UTF-8",
        ),
        (
            Request::get("/v1/users/%FF/recommendations")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "UTF-8",
        ),
        (
            Request::get("/v1/users/u1/recommendations?n=abc")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid digit",
        ),
        (
            Request::get("/v1/users/u1/recommendations?n=0")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "between 1 and 1000",
        ),
        (
            Request::get("/v1/users/u1/recommendations?n=1001")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "between 1 and 1000",
        ),
        (
            Request::get("/v1/users/u1/recommendations?count=3")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "unknown field `count`",
        ),
        (
            json_req("/v1/predict", Body::from(r#"{"user":"u1""#)),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            json_req(
                "/v1/predict",
                Body::from(r#"{"user":"u1","item":"i1","extra":1}"#),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `extra`",
        ),
        (
            json_req("/v1/predict", Body::from(r#"{"user":"u1"}"#)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `item`",
        ),
        (
            json_req("/v1/predict", Body::from(r#"{"user":["u1"],"item":"i1"}"#)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "string or integer id",
        ),
        (
            json_req(
                "/v1/predict",
                Body::from(b"{\"user\":\"\xff\",\"item\":\"i1\"}".to_vec()),
            ),
            StatusCode::BAD_REQUEST,
            "UTF-8",
        ),
        (
            // One pair's body is held to 4 KiB whatever --max-body-bytes says.
            json_req(
                "/v1/predict",
                Body::from(format!(r#"{{"user":"{}","item":"i1"}}"#, " ".repeat(5000))),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than the limit",
        ),
        (
            json_req(
                "/v1/feedback",
                Body::from(format!(
                    r#"{{"user":"u1","item":"i1","rating":4{}}}"#,
                    " ".repeat(5000)
                )),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than the limit",
        ),
        (
            // --max-body-bytes (256 here) bounds the batch.
            json_req(
                "/v1/predict/batch",
                Body::from(
                    json!({"pairs": vec![json!({"user": "u1", "item": "i1"}); 12]}).to_string(),
                ),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than the limit",
        ),
        (
            json_req(
                "/v1/predict",
                Body::from(format!(r#"{{"user":"{}","item":"i1"}}"#, "u".repeat(257))),
            ),
            StatusCode::BAD_REQUEST,
            "request body: `user` is 257 bytes long; ids may be at most 256 bytes",
        ),
        (
            json_req(
                "/v1/feedback",
                Body::from(format!(
                    r#"{{"user":"u1","item":"{}","rating":4}}"#,
                    "i".repeat(300)
                )),
            ),
            StatusCode::BAD_REQUEST,
            "request body: `item` is 300 bytes long",
        ),
        (
            Request::get(format!("/v1/predict?user=u1&item={}", "i".repeat(257)))
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "query string: `item` is 257 bytes long",
        ),
        (
            Request::get(format!("/v1/users/{}/recommendations", "u".repeat(300)))
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "path: user id is 300 bytes long",
        ),
        (
            json_req(
                "/v1/predict/batch",
                Body::from(r#"{"pairs":{"user":"u1"}}"#),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "expected a sequence",
        ),
        (
            json_req(
                "/v1/feedback",
                Body::from(r#"{"user":"u1","item":"i1","rating":9}"#),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "outside the model's rating scale",
        ),
        (
            json_req(
                "/v1/feedback",
                Body::from(r#"{"user":"u1","item":"i1","rating":"5"}"#),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid type",
        ),
        (
            json_req("/v1/feedback", Body::from(r#"{"user":"u1","item":"i1"}"#)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `rating`",
        ),
        (
            Request::post("/v1/predict")
                .body(Body::from(r#"{"user":"u1","item":"i1"}"#))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            Request::post("/v1/predict")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("u1 i1"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            Request::get("/v1/nothing").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
            "GET /v1/nothing",
        ),
        (
            Request::delete("/v1/predict").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "DELETE",
        ),
        (
            Request::get("/v1/feedback").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "GET",
        ),
    ];
    for (request, expected, needle) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let (status, body, text) = send(r, request).await;
        assert_eq!(status, expected, "{what}: {text}");
        let message = body["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no JSON message in {text}"));
        assert!(body["error"].is_string(), "{what}: {text}");
        assert!(
            message.contains(needle),
            "{what}: `{message}` does not mention `{needle}`"
        );
    }
    // All of it counted as client errors, none as a server error.
    let (_, _, metrics) = send(r, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(
        !metrics
            .lines()
            .any(|l| l.contains(r#"code="5"#) && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_body_that_never_arrives_times_out_with_408() {
    let app = app_with(|c| c.request_timeout = std::time::Duration::from_millis(100));
    write(&app.path, "v1", 1);
    recommender_predictor::reload::reload(&app.state)
        .await
        .unwrap();
    let never = futures::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    let request = Request::post("/v1/feedback")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(never))
        .unwrap();
    let started = std::time::Instant::now();
    let (status, body, _) = send(&app.router, request).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(body["error"], "timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn precomputed_and_live_rankings_agree() {
    let shallow = app_with(|c| c.precompute_depth = 4);
    let live = app_with(|c| c.precompute_depth = 0);
    for app in [&shallow, &live] {
        write(&app.path, "v1", 1);
        recommender_predictor::reload::reload(&app.state)
            .await
            .unwrap();
    }
    assert!(live.state.model.load().as_ref().unwrap().top.is_none());
    for user in ["u0", "u7", "u19", "stranger"] {
        for n in [1, 4, 5, 24] {
            let uri = format!("/v1/users/{user}/recommendations?n={n}");
            let (_, a) = get(&shallow.router, &uri).await;
            let (_, b) = get(&live.router, &uri).await;
            assert_eq!(a, b, "{uri}");
            let expected = model(1).recommend(user, n);
            assert_eq!(
                ids(&a),
                expected
                    .items
                    .iter()
                    .map(|s| s.item.clone())
                    .collect::<Vec<_>>()
            );
        }
    }
}

#[tokio::test]
async fn an_over_long_id_is_refused_with_its_own_code_and_place() {
    let app = app_with(|c| c.max_id_bytes = 8);
    write(&app.path, "v1", 1);
    recommender_predictor::reload::reload(&app.state)
        .await
        .unwrap();
    let pairs = json!({"pairs": [
        {"user": "u1", "item": "i1"},
        {"user": "u1", "item": "i1"},
        {"user": "u1", "item": "item-0123456789"},
    ]});
    let (status, body) = post_json(&app.router, "/v1/predict/batch", pairs.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "id_too_long");
    assert_eq!(
        body["message"],
        "request body: pairs[2]: `item` is 15 bytes long; ids may be at most 8 bytes"
    );
    // Exactly at the limit is fine, and unescaping counts: `%41` is one byte.
    let (status, _) = get(&app.router, "/v1/predict?user=u1234567&item=%41").await;
    assert_eq!(status, StatusCode::OK);
    let feedback = json!({"user": "user-0123456789", "item": "i1", "rating": 4});
    let (status, body) = post_json(&app.router, "/v1/feedback", feedback.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "id_too_long");
    let (_, s) = get(&app.router, "/v1/summary").await;
    assert_eq!(
        s["online"]["feedback_total"], 0,
        "refused feedback is not counted"
    );
}

const TOKEN: &str = "write-token-0123456789abcdef";

/// An app serving `v1` that requires [`TOKEN`] for writes.
async fn guarded_app() -> (App, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let app = app_with(|c| c.write_token_file = Some(token));
    write(&app.path, "v1", 1);
    recommender_predictor::reload::reload(&app.state)
        .await
        .unwrap();
    (app, secrets)
}

fn feedback_with(authorization: Option<&str>) -> Request<Body> {
    let mut request =
        Request::post("/v1/feedback").header(header::CONTENT_TYPE, "application/json");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    request
        .body(Body::from(r#"{"user":"u1","item":"i1","rating":4}"#))
        .unwrap()
}

#[tokio::test]
async fn writes_need_the_token_and_reads_do_not() {
    let (app, _secrets) = guarded_app().await;
    let r = &app.router;
    for (authorization, needle) in [
        (None, "Authorization: Bearer"),
        (
            Some("Bearer wrong-token-0123456789abcdef"),
            "not this predictor's write token",
        ),
        (Some(&format!("Basic {TOKEN}")[..]), "Authorization: Bearer"),
        (Some(TOKEN), "Authorization: Bearer"),
    ] {
        let response = r
            .clone()
            .oneshot(feedback_with(authorization))
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{authorization:?}"
        );
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let (status, body, text) = send(r, feedback_with(authorization)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "unauthorized", "{text}");
        assert!(body["message"].as_str().unwrap().contains(needle), "{text}");
    }
    let (_, s) = get(r, "/v1/summary").await;
    assert_eq!(
        s["online"]["feedback_total"], 0,
        "refused writes changed nothing"
    );

    let (status, body, text) = send(r, feedback_with(Some(&format!("Bearer {TOKEN}")))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(body["model_version"], "v1");
    let (status, _, _) = send(r, feedback_with(Some(&format!("bearer {TOKEN}")))).await;
    assert_eq!(status, StatusCode::OK, "the scheme is case-insensitive");

    for uri in [
        "/v1/predict?user=u1&item=i1",
        "/v1/users/u1/recommendations",
        "/v1/summary",
        "/v1/stats",
        "/v1/model",
        "/metrics",
        "/readyz",
    ] {
        let (status, _) = get(r, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri} is a read and stays open");
    }
    let (status, _) = post_json(r, "/v1/predict", r#"{"user":"u1","item":"i1"}"#).await;
    assert_eq!(status, StatusCode::OK, "POST /v1/predict is a read");
    let (_, _, metrics) = send(r, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(
        metrics.contains(
            r#"recommender_predictor_http_requests_total{code="401",route="/v1/feedback"} 8"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_bad_token_source_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    let mut config = recommender_predictor::Config::with_model(dir.path().join("m"));
    config.write_token_file = Some(short.clone());
    let err = recommender_predictor::AppState::new(&config)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&short.display().to_string()) && err.contains("3 bytes"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stats_answer_while_feedback_is_written() {
    let app = loaded_app().await;
    const WRITERS: usize = 4;
    const EACH: usize = 300;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let router = app.router.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    let user = format!("writer-{w}-user-{n}");
                    let body =
                        json!({"user": user, "item": "i1", "rating": 4, "suggested": n % 2 == 0});
                    let (status, _) = post_json(&router, "/v1/feedback", body.to_string()).await;
                    assert_eq!(status, StatusCode::OK);
                }
            })
        })
        .collect();
    let mut last = 0;
    let mut reads = 0;
    while !writers.iter().all(|w| w.is_finished()) {
        let (status, stats) = get(&app.router, "/v1/stats").await;
        assert_eq!(status, StatusCode::OK);
        assert!(stats["users"]["active"].is_object(), "{stats}");
        let (status, s) = get(&app.router, "/v1/summary").await;
        assert_eq!(status, StatusCode::OK);
        let total = s["online"]["feedback_total"].as_u64().unwrap();
        assert!(
            total >= last,
            "feedback_total went back from {last} to {total}"
        );
        last = total;
        reads += 1;
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.unwrap();
    }
    assert!(reads > 0);
    let (_, s) = get(&app.router, "/v1/summary").await;
    let total = (WRITERS * EACH) as u64;
    assert_eq!(s["online"]["feedback_total"], total);
    // 1,200 distinct users: the sketch's sparse form is exact at this size, give or take one.
    let active = s["users"]["active"].as_u64().unwrap();
    assert!(active.abs_diff(total) <= 1, "{active}");
    let engaged = s["users"]["engaged"].as_u64().unwrap();
    assert!(engaged.abs_diff(total / 2) <= 1, "{engaged}");
}
