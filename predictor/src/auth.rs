//! Who may write: an optional bearer token that the write endpoints (`POST /v1/feedback`)
//! require; reads stay open. The token comes from a file (a mounted Secret) or an environment
//! variable named on the command line, never from the command line itself, where `ps` would
//! show it. Tokens are compared by SHA-256 digest in constant time, so timing reveals neither
//! their bytes nor their length.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{config::Config, error::Error, state::AppState};

/// A write token should be a random secret; anything shorter is refused at start-up.
pub const MIN_TOKEN_BYTES: usize = 16;

pub struct WriteToken {
    digest: [u8; 32],
}

impl WriteToken {
    /// The token named by `--write-token-file` or `--write-token-env`, if either is given.
    pub fn from_config(config: &Config) -> Result<Option<Self>, Error> {
        let (source_name, read) = match (&config.write_token_file, &config.write_token_env) {
            (Some(path), _) => (
                format!("file {}", path.display()),
                std::fs::read_to_string(path).map_err(|e| e.to_string()),
            ),
            (None, Some(var)) => (
                format!("environment variable {var}"),
                std::env::var(var).map_err(|e| e.to_string()),
            ),
            (None, None) => return Ok(None),
        };
        read.and_then(|secret| WriteToken::new(&secret))
            .map(Some)
            .map_err(|message| Error::WriteToken {
                source_name,
                message,
            })
    }

    pub fn new(secret: &str) -> Result<Self, String> {
        // A Secret made with `kubectl create secret --from-file` often ends in a newline.
        let secret = secret.trim_end();
        if secret.len() < MIN_TOKEN_BYTES {
            return Err(format!(
                "is {} bytes long; a write token needs at least {MIN_TOKEN_BYTES}",
                secret.len()
            ));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "must be printable ASCII without spaces: it travels in an HTTP header".into(),
            );
        }
        Ok(WriteToken {
            digest: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    pub fn admits(&self, presented: &str) -> bool {
        let digest = Sha256::digest(presented.as_bytes());
        self.digest.as_slice().ct_eq(digest.as_slice()).into()
    }
}

/// Middleware of the write endpoints: without the token, 401 before the body is read.
pub async fn require_write_token(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.write_token else {
        return next.run(req).await;
    };
    match bearer(req.headers()) {
        Some(presented) if token.admits(presented) => next.run(req).await,
        Some(_) => Error::Unauthorized("the bearer token is not this predictor's write token")
            .into_response(),
        None => Error::Unauthorized(
            "writes need the header `Authorization: Bearer <token>` with this predictor's write token",
        )
        .into_response(),
    }
}

/// The credentials of an `Authorization: Bearer` header (the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cr3t-write-token-0123";

    #[test]
    fn only_the_same_token_is_admitted() {
        let token = WriteToken::new(&format!("{TOKEN}\n")).unwrap();
        assert!(
            token.admits(TOKEN),
            "the trailing newline of the file is not part of it"
        );
        assert!(!token.admits(&TOKEN[1..]));
        assert!(!token.admits(&format!("{TOKEN}x")));
        assert!(!token.admits(""));
    }

    #[test]
    fn weak_or_unsendable_tokens_are_refused() {
        let err = WriteToken::new("short\n").err().unwrap();
        assert!(err.contains("5 bytes") && err.contains("16"), "{err}");
        let err = WriteToken::new("a token with spaces inside").err().unwrap();
        assert!(err.contains("printable ASCII"), "{err}");
    }

    #[test]
    fn bearer_credentials_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn the_token_is_read_from_a_file_or_a_named_variable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
        let mut config = Config::with_model("m");
        assert!(WriteToken::from_config(&config).unwrap().is_none());
        config.write_token_file = Some(path.clone());
        let token = WriteToken::from_config(&config).unwrap().unwrap();
        assert!(token.admits(TOKEN));

        config.write_token_file = Some(dir.path().join("missing"));
        let err = WriteToken::from_config(&config).err().unwrap().to_string();
        assert!(err.contains("missing"), "{err}");

        config.write_token_file = None;
        config.write_token_env = Some("RECOMMENDER_TEST_TOKEN_THAT_IS_NOT_SET".into());
        let err = WriteToken::from_config(&config).err().unwrap().to_string();
        assert!(
            err.contains("environment variable RECOMMENDER_TEST_TOKEN_THAT_IS_NOT_SET"),
            "{err}"
        );
    }
}
