//! One error type, and the [`Reason`] the operator turns into a condition reason. Every failure
//! the store reports keeps the other side's own words: the S3 error code and message, or the
//! operating system's (`Connection refused (os error 111)`, `No space left on device`).
//!
//! How `object_store` (0.14) surfaces a failure, read from its source: an HTTP status becomes
//! the variant (404 `NotFound`, 403 `PermissionDenied`, 401 `Unauthenticated`, 409
//! `AlreadyExists`, 412 `Precondition`, anything else `Generic`), its source a private
//! `RetryError` whose `Display` ends with the response body, the S3 XML `<Error>`. That text is
//! the only place the S3 code is exposed, so [`classify`] reads `<Code>` and `<Message>` from it.
//! A request that got no response has an [`HttpError`] in its source chain, whose kind says
//! whether it could not connect or timed out; the directory backend's failures carry the
//! [`std::io::Error`].

use std::fmt;

use object_store::client::{HttpError, HttpErrorKind};

use crate::config::ConfigError;
use crate::digest::Sha256;

/// Why an operation failed, for a condition's `reason` and for tests and alerts to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No answer: connection refused, DNS failure, timeout, a connection broken mid-request, or
    /// the store's directory missing.
    Unreachable,
    /// The bucket does not exist (`NoSuchBucket`).
    BucketMissing,
    /// The key pair was refused (`InvalidAccessKeyId`, `SignatureDoesNotMatch`, or
    /// `AccessDenied` on a read).
    CredentialsRefused,
    /// The key does not exist.
    NotFound,
    /// A write-once key already holds an object.
    AlreadyExists,
    /// The object's sha256 is not the one expected.
    Corrupt,
    /// More bytes (or objects) than the caller's bound.
    TooLarge,
    /// No space: `ENOSPC`/`EDQUOT`, HTTP 507, `EntityTooLarge`.
    Full,
    /// Writes refused: `EROFS`, or `AccessDenied` on a write.
    ReadOnly,
    /// A key this store refuses to use (see [`crate::key`]).
    InvalidKey,
    /// The settings cannot be used (e.g. an unreadable CA bundle).
    InvalidConfig,
    Other,
}

impl Reason {
    pub const ALL: [Self; 12] = [
        Self::Unreachable,
        Self::BucketMissing,
        Self::CredentialsRefused,
        Self::NotFound,
        Self::AlreadyExists,
        Self::Corrupt,
        Self::TooLarge,
        Self::Full,
        Self::ReadOnly,
        Self::InvalidKey,
        Self::InvalidConfig,
        Self::Other,
    ];

    /// CamelCase, as a Kubernetes condition reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "Unreachable",
            Self::BucketMissing => "BucketMissing",
            Self::CredentialsRefused => "CredentialsRefused",
            Self::NotFound => "NotFound",
            Self::AlreadyExists => "AlreadyExists",
            Self::Corrupt => "Corrupt",
            Self::TooLarge => "TooLarge",
            Self::Full => "Full",
            Self::ReadOnly => "ReadOnly",
            Self::InvalidKey => "InvalidKey",
            Self::InvalidConfig => "InvalidConfig",
            Self::Other => "Other",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the store was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Open,
    Put,
    Get,
    Head,
    List,
    Delete,
}

impl Operation {
    /// Whether a refusal means "read-only" rather than "not allowed in at all".
    pub fn writes(self) -> bool {
        matches!(self, Self::Put | Self::Delete)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Put => "put",
            Self::Get => "get",
            Self::Head => "head",
            Self::List => "list",
            Self::Delete => "delete",
        })
    }
}

/// A failure of the store. `store` is the store's description (bucket, prefix and endpoint, or
/// the directory): never a credential.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {key:?} in {store}: {reason}: {words}")]
    Failed {
        op: Operation,
        reason: Reason,
        key: String,
        store: String,
        words: String,
    },
    #[error("{key:?} in {store} is corrupt: its sha256 is {actual}, expected {expected}")]
    Corrupt {
        key: String,
        store: String,
        expected: Sha256,
        actual: Sha256,
    },
    #[error("{key:?} in {store} is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        key: String,
        store: String,
        size: u64,
        limit: u64,
    },
    #[error("more than {limit} objects under {prefix:?} in {store}")]
    TooMany {
        prefix: String,
        store: String,
        limit: usize,
    },
    #[error("{key:?} already exists in {store}: keys are written once")]
    AlreadyExists {
        key: String,
        store: String,
        words: String,
    },
    #[error("the key {key:?} {why}")]
    InvalidKey { key: String, why: String },
    #[error("{0}")]
    Config(#[from] ConfigError),
}

impl StoreError {
    pub fn reason(&self) -> Reason {
        match self {
            Self::Failed { reason, .. } => *reason,
            Self::Corrupt { .. } => Reason::Corrupt,
            Self::TooLarge { .. } | Self::TooMany { .. } => Reason::TooLarge,
            Self::AlreadyExists { .. } => Reason::AlreadyExists,
            Self::InvalidKey { .. } => Reason::InvalidKey,
            Self::Config(_) => Reason::InvalidConfig,
        }
    }

    /// The server's or the system's own words, for a condition to quote.
    pub fn words(&self) -> Option<&str> {
        match self {
            Self::Failed { words, .. } | Self::AlreadyExists { words, .. } => Some(words),
            _ => None,
        }
    }
}

/// The most of the other side's words a message carries (S3 messages are one sentence).
const MAX_WORDS: usize = 512;

/// The reason and the other side's words for a failed `op`.
pub(crate) fn classify(op: Operation, err: &object_store::Error) -> (Reason, String) {
    let text = err.to_string();
    if let Some(body) = S3ErrorBody::find(&text) {
        let reason = match body.code.as_str() {
            "NoSuchBucket" => Reason::BucketMissing,
            "NoSuchKey" => Reason::NotFound,
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken"
            | "TokenRefreshRequired"
            | "InvalidSecurity"
            | "AuthorizationHeaderMalformed" => Reason::CredentialsRefused,
            "AccessDenied" | "AllAccessDisabled" if op.writes() => Reason::ReadOnly,
            "AccessDenied" | "AllAccessDisabled" => Reason::CredentialsRefused,
            "EntityTooLarge" | "XMinioStorageFull" | "QuotaExceeded" => Reason::Full,
            _ => from_variant(op, err, &text),
        };
        return (reason, bounded(body.words()));
    }
    (from_variant(op, err, &text), bounded(innermost(err)))
}

fn from_variant(op: Operation, err: &object_store::Error, text: &str) -> Reason {
    use object_store::Error as E;
    match err {
        E::NotFound { .. } => Reason::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => Reason::AlreadyExists,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } if op.writes() => Reason::ReadOnly,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => Reason::CredentialsRefused,
        _ => from_chain(op, err).unwrap_or(if text.contains("507 Insufficient Storage") {
            Reason::Full
        } else {
            Reason::Other
        }),
    }
}

fn from_chain(op: Operation, err: &object_store::Error) -> Option<Reason> {
    use std::io::ErrorKind as K;
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            match http.kind() {
                HttpErrorKind::Connect
                | HttpErrorKind::Timeout
                | HttpErrorKind::Request
                | HttpErrorKind::Interrupted => return Some(Reason::Unreachable),
                _ => {}
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                K::StorageFull | K::QuotaExceeded | K::FileTooLarge => return Some(Reason::Full),
                K::ReadOnlyFilesystem => return Some(Reason::ReadOnly),
                K::PermissionDenied if op.writes() => return Some(Reason::ReadOnly),
                K::NotFound => return Some(Reason::NotFound),
                K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::TimedOut
                | K::HostUnreachable
                | K::NetworkUnreachable => return Some(Reason::Unreachable),
                _ => {}
            }
        }
        current = e.source();
    }
    None
}

/// The deepest cause's message: the operating system's or the server's status line, without
/// the URL and retry bookkeeping `object_store` wraps around it.
fn innermost(err: &object_store::Error) -> String {
    let mut deepest: &(dyn std::error::Error + 'static) = err;
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    deepest.to_string().trim_end_matches([':', ' ']).to_string()
}

fn bounded(mut words: String) -> String {
    if words.len() > MAX_WORDS {
        let mut end = MAX_WORDS;
        while !words.is_char_boundary(end) {
            end -= 1;
        }
        words.truncate(end);
        words.push('…');
    }
    words
}

/// An S3 error response: `<Error><Code>…</Code><Message>…</Message>…</Error>`.
#[derive(Debug, PartialEq, serde::Deserialize)]
struct S3ErrorBody {
    #[serde(rename = "Code")]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

impl S3ErrorBody {
    fn find(text: &str) -> Option<Self> {
        Self::xml(text).or_else(|| Self::delete_failed(text))
    }

    fn xml(text: &str) -> Option<Self> {
        let start = text.find("<Error>")?;
        let end = start + text[start..].find("</Error>")? + "</Error>".len();
        quick_xml::de::from_str(&text[start..end]).ok()
    }

    /// `delete` is a `DeleteObjects` request, whose refusals come per key in a 200 answer;
    /// `object_store` prints each as "DeleteObjects request failed for key K: MESSAGE (code:
    /// CODE)" (its aws `Error::DeleteFailed`). Keys never hold ": " (see [`crate::key`]).
    fn delete_failed(text: &str) -> Option<Self> {
        let rest = &text[text.find("DeleteObjects request failed for key ")?..];
        let rest = &rest[rest.find(": ")? + 2..];
        let (message, code) = rest.rsplit_once(" (code: ")?;
        let code = code.strip_suffix(')')?;
        Some(Self {
            code: code.to_string(),
            message: message.to_string(),
        })
    }

    fn words(&self) -> String {
        match self.message.trim() {
            "" => self.code.clone(),
            message => format!("{}: {message}", self.code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(source: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source: Box::new(source),
        }
    }

    /// An error whose message is an S3 response, as `object_store` prints one.
    #[derive(Debug)]
    struct Response(&'static str);
    impl fmt::Display for Response {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "Error performing PUT http://127.0.0.1:1/b/k in 2ms - Server returned non-2xx status code: {}",
                self.0
            )
        }
    }
    impl std::error::Error for Response {}

    #[test]
    fn s3_codes_decide_with_their_words() {
        let denied = r#"403 Forbidden: <?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Access Denied &amp; more</Message><Resource>/b/k</Resource><RequestId>1</RequestId></Error>"#;
        let forbidden = |text| object_store::Error::PermissionDenied {
            path: "k".into(),
            source: Box::new(Response(text)),
        };
        assert_eq!(
            classify(Operation::Put, &forbidden(denied)),
            (
                Reason::ReadOnly,
                "AccessDenied: Access Denied & more".into()
            )
        );
        assert_eq!(
            classify(Operation::Get, &forbidden(denied)).0,
            Reason::CredentialsRefused
        );

        let cases = [
            (
                "404 Not Found: <Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>",
                Reason::BucketMissing,
            ),
            (
                "404 Not Found: <Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>",
                Reason::NotFound,
            ),
            (
                "403 Forbidden: <Error><Code>InvalidAccessKeyId</Code><Message>x</Message></Error>",
                Reason::CredentialsRefused,
            ),
            (
                "403 Forbidden: <Error><Code>SignatureDoesNotMatch</Code><Message>x</Message></Error>",
                Reason::CredentialsRefused,
            ),
            (
                "400 Bad Request: <Error><Code>EntityTooLarge</Code><Message>x</Message></Error>",
                Reason::Full,
            ),
            (
                "500 Internal Server Error: <Error><Code>InternalError</Code><Message>x</Message></Error>",
                Reason::Other,
            ),
        ];
        for (text, reason) in cases {
            assert_eq!(
                classify(Operation::Put, &generic(Response(text))).0,
                reason,
                "{text}"
            );
        }
        let (_, words) = classify(Operation::Get, &generic(Response(cases[0].0)));
        assert_eq!(words, "NoSuchBucket: The specified bucket does not exist");
    }

    #[test]
    fn bulk_delete_refusals_carry_their_code() {
        #[derive(Debug)]
        struct DeleteFailed;
        impl fmt::Display for DeleteFailed {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("DeleteObjects request failed for key p/v1/model.bin: Access Denied. (code: AccessDenied)")
            }
        }
        impl std::error::Error for DeleteFailed {}
        assert_eq!(
            classify(Operation::Delete, &generic(DeleteFailed)),
            (Reason::ReadOnly, "AccessDenied: Access Denied.".into())
        );
    }

    #[test]
    fn statuses_without_a_body_fall_back_to_the_variant() {
        let head = |variant: fn(
            String,
            Box<dyn std::error::Error + Send + Sync>,
        ) -> object_store::Error| {
            variant("k".into(), Box::new(Response("403 Forbidden: ")))
        };
        let denied = |path, source| object_store::Error::PermissionDenied { path, source };
        let missing = |path, source| object_store::Error::NotFound { path, source };
        assert_eq!(
            classify(Operation::Head, &head(denied)),
            (
                Reason::CredentialsRefused,
                "Error performing PUT http://127.0.0.1:1/b/k in 2ms - Server returned non-2xx status code: 403 Forbidden".into()
            )
        );
        assert_eq!(
            classify(Operation::Delete, &head(denied)).0,
            Reason::ReadOnly
        );
        assert_eq!(
            classify(Operation::Head, &head(missing)).0,
            Reason::NotFound
        );
        assert_eq!(
            classify(
                Operation::Put,
                &generic(Response("507 Insufficient Storage: "))
            )
            .0,
            Reason::Full
        );
    }

    #[test]
    fn transport_failures_are_unreachable_in_the_systems_words() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for kind in [
            HttpErrorKind::Connect,
            HttpErrorKind::Timeout,
            HttpErrorKind::Interrupted,
        ] {
            let err = generic(HttpError::new(
                kind,
                std::io::Error::new(refused.kind(), "Connection refused (os error 111)"),
            ));
            assert_eq!(
                classify(Operation::Get, &err),
                (
                    Reason::Unreachable,
                    "Connection refused (os error 111)".into()
                )
            );
        }
        let decode = generic(HttpError::new(
            HttpErrorKind::Decode,
            Response("200 OK: garbled"),
        ));
        assert_eq!(classify(Operation::Get, &decode).0, Reason::Other);
    }

    #[test]
    fn file_system_errors_by_errno() {
        let os = |errno| generic(std::io::Error::from_raw_os_error(errno));
        assert_eq!(
            classify(Operation::Put, &os(28)),
            (Reason::Full, "No space left on device (os error 28)".into())
        );
        assert_eq!(classify(Operation::Put, &os(122)).0, Reason::Full); // EDQUOT
        assert_eq!(
            classify(Operation::Put, &os(30)),
            (
                Reason::ReadOnly,
                "Read-only file system (os error 30)".into()
            )
        );
        assert_eq!(classify(Operation::Put, &os(13)).0, Reason::ReadOnly); // EACCES on a write
        assert_eq!(classify(Operation::Get, &os(13)).0, Reason::Other);
        assert_eq!(classify(Operation::Get, &os(2)).0, Reason::NotFound);
        assert_eq!(
            classify(Operation::Get, &os(5)),
            (Reason::Other, "Input/output error (os error 5)".into())
        );
    }

    #[test]
    fn words_are_bounded() {
        let long = format!(
            "<Error><Code>InternalError</Code><Message>{}</Message></Error>",
            "é".repeat(1000)
        );
        let leaked: &'static str = Box::leak(long.into_boxed_str());
        let (_, words) = classify(Operation::Get, &generic(Response(leaked)));
        assert!(
            words.len() <= MAX_WORDS + '…'.len_utf8() && words.ends_with('…'),
            "{}",
            words.len()
        );
    }

    #[test]
    fn reasons_print_as_condition_reasons() {
        for reason in Reason::ALL {
            let name = reason.as_str();
            assert!(
                name.chars().next().unwrap().is_ascii_uppercase()
                    && name.chars().all(|c| c.is_ascii_alphanumeric())
            );
            assert_eq!(format!("{reason:?}"), name);
        }
    }
}
