//! Plain HTTP GETs from the host to pod and Service addresses.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;

/// `GET url`: `(status code, body)`, or why it could not be had within 10 s.
pub async fn get(url: &str) -> Result<(u16, String), String> {
    let (code, _, body) = exchange(url).await?;
    Ok((code, body))
}

/// An answer with the headers that name who produced it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub code: u16,
    /// `x-model-version`: the version that answered.
    pub version: Option<String>,
    /// `x-rollout-arm`: the user's arm, during a rollout.
    pub arm: Option<String>,
    /// The body as JSON (a body that is not JSON comes back as a string).
    pub body: Value,
}

/// [`get_json`] with the answer's version and arm headers.
pub async fn get_answer(url: &str) -> Result<Answer, String> {
    let (code, headers, body) = exchange(url).await?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    Ok(Answer {
        code,
        version: header("x-model-version"),
        arm: header("x-rollout-arm"),
        body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
    })
}

async fn exchange(url: &str) -> Result<(u16, http::HeaderMap, String), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let exchange = async {
        let response = client
            .get(uri)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let code = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("GET {url}: reading the body: {e}"))?
            .to_bytes();
        Ok((code, headers, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| Err(format!("GET {url}: no answer within 10 s")))
}

/// [`get`] with the body parsed as JSON (a body that is not JSON comes back as a string).
pub async fn get_json(url: &str) -> Result<(u16, Value), String> {
    let (code, body) = get(url).await?;
    Ok((
        code,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    ))
}
