//! The crate's error type and its JSON rendering.
//!
//! Every client mistake maps to a 4xx with a body `{"error": "<code>", "message": "<what and
//! where>"}`, so callers can branch on `error` and humans can read `message`.

use std::io;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::source::LoadError;

/// What a shed request's `Retry-After` says: by then the requests ahead of it are long done
/// (they answer in microseconds), or a load balancer has picked another replica.
pub const RETRY_AFTER_SECONDS: u16 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("batch holds {got} pairs; the limit is {max}")]
    BatchTooLarge { got: usize, max: usize },
    #[error("{field} is {len} bytes long; ids may be at most {max} bytes")]
    IdTooLong {
        field: String,
        len: usize,
        max: usize,
    },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("more than {0} requests in progress; retry in {RETRY_AFTER_SECONDS} s")]
    Overloaded(usize),
    #[error("no route for {0}")]
    NotFound(String),
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    #[error("request did not complete within {0:?}")]
    Timeout(std::time::Duration),
    #[error("no verified model is loaded yet")]
    ModelNotLoaded,
    /// The model refused (crate::source).
    #[error("model refused: {0}")]
    Load(LoadError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("write token {source_name}: {message}")]
    WriteToken {
        source_name: String,
        message: String,
    },
    #[error("binding {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("installing signal handler: {0}")]
    Signal(#[source] io::Error),
    #[error("serving HTTP: {0}")]
    Serve(#[source] io::Error),
    #[error("encoding metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) | Error::InvalidJson(_) | Error::IdTooLong { .. } => {
                StatusCode::BAD_REQUEST
            }
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::PayloadTooLarge(_) | Error::BatchTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::ModelNotLoaded => StatusCode::SERVICE_UNAVAILABLE,
            Error::Load(_)
            | Error::Config(_)
            | Error::WriteToken { .. }
            | Error::Bind { .. }
            | Error::Signal(_)
            | Error::Serve(_)
            | Error::Metrics(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable name of the problem.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::InvalidJson(_) => "invalid_json",
            Error::Unprocessable(_) => "invalid_field",
            Error::UnsupportedMediaType => "unsupported_media_type",
            Error::PayloadTooLarge(_) => "payload_too_large",
            Error::BatchTooLarge { .. } => "batch_too_large",
            Error::IdTooLong { .. } => "id_too_long",
            Error::Unauthorized(_) => "unauthorized",
            Error::Overloaded(_) => "overloaded",
            Error::NotFound(_) => "not_found",
            Error::MethodNotAllowed(_) => "method_not_allowed",
            Error::Timeout(_) => "timeout",
            Error::ModelNotLoaded => "model_not_loaded",
            _ => "internal",
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    message: &'a str,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.status() == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "request failed");
        }
        let message = self.to_string();
        let body = ErrorBody {
            error: self.code(),
            message: &message,
        };
        let mut response = json_response(self.status(), &body);
        let extra = match &self {
            Error::Overloaded(_) => Some((header::RETRY_AFTER, RETRY_AFTER_SECONDS.into())),
            Error::Unauthorized(_) => {
                Some((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")))
            }
            _ => None,
        };
        if let Some((name, value)) = extra {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// Serialises `body` as the response; our own types always serialise, so the fallback is only a
/// guard.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "serialising response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
