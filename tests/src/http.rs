//! Plain HTTP GETs from the host to pod and Service addresses.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;

/// `GET url`: `(status code, body)`, or why it could not be had within 10 s.
pub async fn get(url: &str) -> Result<(u16, String), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let exchange = async {
        let response = client
            .get(uri)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let code = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("GET {url}: reading the body: {e}"))?
            .to_bytes();
        Ok((code, String::from_utf8_lossy(&body).into_owned()))
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
