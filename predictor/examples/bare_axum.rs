//! The floor of the predictor benchmark: axum on the same runtime with one handler that returns a
//! fixed JSON body, without a model, middleware, metrics or query parsing. What this server cannot
//! do on the benchmark machine (e.g. a p99 at a given rate with the load generator on the same
//! cores) no handler behind axum can.
//!
//! `cargo run --release -p recommender-predictor --example bare_axum -- 127.0.0.1:8090`

use axum::{Router, http::header, routing::get};

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let app = Router::new().fallback(get(|| async {
        (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"model_version":"v1","user":"1","item":"1","rating":3.5,"user_known":true,"item_known":true}"#,
        )
    }));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            axum::serve(listener, app).await
        })
}
