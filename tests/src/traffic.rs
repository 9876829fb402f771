//! Requests a user's application would send the predictor: predictions, suggestions and the
//! feedback on them, so that the online metrics (latency, error against feedback, acceptance)
//! have something to report.

use crate::models::predictor_url;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::time::Duration;

/// `POST url` with a JSON body: `(status code, body as JSON or as a string)`.
pub async fn post_json(url: &str, body: &Value) -> Result<(u16, Value), String> {
    post_json_as(url, body, None).await
}

/// `post_json` with `Authorization: Bearer <token>` when a token is given.
pub async fn post_json_as(
    url: &str,
    body: &Value,
    token: Option<&str>,
) -> Result<(u16, Value), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = hyper::Request::post(url).header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| format!("{url}: {e}"))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let code = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("POST {url}: reading the body: {e}"))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Ok((
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| Err(format!("POST {url}: no answer within 10 s")))
}

/// For `users` MovieLens users: a prediction, ten suggestions, and feedback on each suggestion
/// (rated 4, so some count as accepted) and on one item that was not suggested. Panics on any
/// answer that is not 200.
pub async fn predictor_traffic(client: &kube::Client, ns: &str, model: &str, users: u32) {
    let base = predictor_url(client, ns, model).await;
    let ok = |what: &str, answer: Result<(u16, Value), String>| match answer {
        Ok((200, body)) => body,
        other => panic!("{what} on the predictor of {ns}/{model}: {other:?}"),
    };
    for user in 1..=users {
        ok(
            "a prediction",
            crate::get_json(&format!("{base}/v1/predict?user={user}&item=50")).await,
        );
        let suggestions = ok(
            "suggestions",
            crate::get_json(&format!("{base}/v1/users/{user}/recommendations?n=10")).await,
        );
        let items: Vec<String> = suggestions["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|i| i["item"].as_str().map(String::from))
            .collect();
        assert!(
            !items.is_empty(),
            "no suggestions for user {user}: {suggestions}"
        );
        for (n, item) in items.iter().enumerate() {
            let rating = if n % 2 == 0 { 4 } else { 2 };
            let body = json!({"user": user.to_string(), "item": item, "rating": rating, "suggested": true});
            ok(
                "feedback",
                post_json(&format!("{base}/v1/feedback"), &body).await,
            );
        }
        let body = json!({"user": user.to_string(), "item": "1", "rating": 3});
        ok(
            "feedback",
            post_json(&format!("{base}/v1/feedback"), &body).await,
        );
    }
}
