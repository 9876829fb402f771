//! The predictor's request parsing, through its real router: query strings
//! (`input::parse_query`), JSON bodies (`input::parse_json`, borrowed ids), path segments, and the
//! handlers' checks behind them, on a served fixture model.
//!
//! Input: one byte picks the request, the rest is its variable part:
//! 0 `GET /v1/predict?REST`, 1 `POST /v1/predict`, 2 `POST /v1/predict/batch`,
//! 3 `POST /v1/feedback` (bodies: REST), 4 `GET /v1/users/SEGMENT/recommendations?QUERY` with
//! REST split at its first `?`. Bytes that no client could put in a URI are refused by `http`
//! before the router, as hyper would.
//!
//! Every answer is a 200 or a 4xx with the JSON error body, never a 5xx; a query that
//! `parse_query` or `parse_json` accepts with ids within the limit is answered 200, its user
//! echoed back.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode, Uri, header};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use recommender_fuzz::write_seeds_if_asked;
use recommender_model::fixtures::{self, Shape};
use recommender_model::{Artifact, Hyperparameters, SvdParams};
use recommender_predictor::handlers::predict::Pair;
use recommender_predictor::input::{parse_json, parse_query};
use recommender_predictor::{AppState, Config, reload, router};
use serde_json::Value;
use tower::ServiceExt;

struct App {
    runtime: tokio::runtime::Runtime,
    state: Arc<AppState>,
    router: axum::Router,
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let path =
            std::env::temp_dir().join(format!("recommender-fuzz-{}.model", std::process::id()));
        recommender_model::artifact::save(&path, &artifact()).expect("fixture saved");
        let state = AppState::new(&Config::with_model(&path)).expect("default config");
        runtime
            .block_on(reload::reload(&state))
            .expect("fixture loads");
        let _ = std::fs::remove_file(&path);
        let router = router(state.clone());
        App {
            runtime,
            state,
            router,
        }
    })
}

fuzz_target!(init: write_seeds_if_asked(seeds), |data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let app = app();
    let (method, uri, body) = match which % 5 {
        0 => ("GET", [b"/v1/predict?", rest].concat(), Vec::new()),
        1 => ("POST", b"/v1/predict".to_vec(), rest.to_vec()),
        2 => ("POST", b"/v1/predict/batch".to_vec(), rest.to_vec()),
        3 => ("POST", b"/v1/feedback".to_vec(), rest.to_vec()),
        _ => {
            let (segment, query) = match rest.iter().position(|&b| b == b'?') {
                Some(at) => (&rest[..at], &rest[at..]),
                None => (rest, &b""[..]),
            };
            let uri = [b"/v1/users/", segment, b"/recommendations", query].concat();
            ("GET", uri, Vec::new())
        }
    };
    // The parsers on their own, on text no URI or client would carry too.
    if let Ok(text) = std::str::from_utf8(rest) {
        let _ = parse_query::<Pair>(Some(text));
        let _ = parse_json::<Pair>(text.as_bytes());
    }
    let Ok(uri) = Uri::try_from(uri) else {
        return;
    };
    // What the handler must answer 200 to: the user of a pair the parser accepts within limits.
    let max = app.state.limits.max_id_bytes;
    let within = |p: Pair| {
        (p.user.as_str().len() <= max && p.item.as_str().len() <= max)
            .then(|| p.user.as_str().to_owned())
    };
    let expect_ok = match which % 5 {
        0 => parse_query::<Pair>(uri.query()).ok().and_then(within),
        1 => parse_json::<Pair>(&body).ok().and_then(within),
        _ => None,
    };
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("request");
    let (status, json) = app.runtime.block_on(async {
        let response = app.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice::<Value>(&bytes))
    });
    assert!(!status.is_server_error(), "{status}: {json:?}");
    let json = json.expect("every answer is JSON");
    if status == StatusCode::OK {
        if let Some(user) = expect_ok {
            assert_eq!(json["user"].as_str(), Some(user.as_str()));
        }
    } else {
        assert!(status.is_client_error(), "{status}");
        assert!(json["error"].is_string() && json["message"].is_string(), "{json}");
        assert!(expect_ok.is_none(), "a valid query was refused: {status} {json}");
    }
});

fn artifact() -> Artifact {
    let shape = Shape {
        users: 20,
        items: 30,
        factors: 4,
        seed: 1,
    };
    let rated = (0..20u32).flat_map(|u| (0..6).map(move |k| (u, (u + 3 * k) % 30)));
    let model = fixtures::model(shape, rated);
    let hyperparameters = Hyperparameters::Svd(SvdParams {
        n_factors: 4,
        ..SvdParams::default()
    });
    Artifact {
        meta: fixtures::meta(&model, hyperparameters),
        model,
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let seed = |which: u8, rest: &str| [&[which][..], rest.as_bytes()].concat();
    vec![
        seed(0, "user=u1&item=i2"),
        seed(0, "user=a%20b&item=caf%C3%A9"),
        seed(0, "item=i3&user=nobody"),
        seed(1, r#"{"user": "u1", "item": "i2"}"#),
        seed(1, r#"{"user": 7, "item": "i\u00e9"}"#),
        seed(
            2,
            r#"{"pairs": [{"user": "u1", "item": "i2"}, {"user": 3, "item": "x"}]}"#,
        ),
        seed(
            3,
            r#"{"user": "u1", "item": "i2", "rating": 4.5, "suggested": true}"#,
        ),
        seed(3, r#"{"user": "new", "item": "i9", "rating": 1}"#),
        seed(4, "u1?n=5"),
        seed(4, "stranger%2Fx"),
        seed(4, "u2?n=1000"),
    ]
}
