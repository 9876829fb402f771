//! Parsing of request input without copying ids: query strings and JSON bodies deserialise into
//! borrowed [`Id`]s that point into the request itself.

use std::{borrow::Cow, fmt};

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::{HeaderMap, header},
};
use serde::{
    Deserialize, Deserializer,
    de::{self, Visitor},
};

use crate::error::Error;

/// A user or item id. Borrowed from the request when it needed no unescaping; JSON integers are
/// accepted too since many applications keep numeric ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id<'a>(pub Cow<'a, str>);

impl Id<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Refuses an id longer than `max` bytes; `field` names where it was, for the message.
    pub fn check_len(&self, field: impl FnOnce() -> String, max: usize) -> Result<(), Error> {
        check_id_len(&self.0, field, max)
    }
}

/// Ids are bounded so that nothing a client sends can make one large: every answer echoes them,
/// and feedback hashes them into the user sketches.
pub fn check_id_len(id: &str, field: impl FnOnce() -> String, max: usize) -> Result<(), Error> {
    if id.len() > max {
        return Err(Error::IdTooLong {
            field: field(),
            len: id.len(),
            max,
        });
    }
    Ok(())
}

impl<'de: 'a, 'a> Deserialize<'de> for Id<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl<'de> Visitor<'de> for IdVisitor {
            type Value = Id<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-empty string or integer id")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                non_empty(v)?;
                Ok(Id(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                non_empty(v)?;
                Ok(Id(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                non_empty(&v)?;
                Ok(Id(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Id(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Id(Cow::Owned(v.to_string())))
            }
        }
        fn non_empty<E: de::Error>(v: &str) -> Result<(), E> {
            if v.is_empty() {
                Err(E::custom("id must not be empty"))
            } else {
                Ok(())
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

/// Deserialises a query string. `serde_urlencoded` replaces invalid UTF-8 with U+FFFD, which
/// would silently look up a different id, so percent-escapes are checked first.
pub fn parse_query<'a, T: Deserialize<'a>>(raw: Option<&'a str>) -> Result<T, Error> {
    let raw = raw.unwrap_or("");
    if raw.contains('%') {
        check_percent_utf8(raw)?;
    }
    serde_urlencoded::from_str(raw).map_err(|e| Error::BadRequest(format!("query string: {e}")))
}

fn check_percent_utf8(raw: &str) -> Result<(), Error> {
    for part in raw.split('&') {
        let bytes = part.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        decoded.push(b);
                        i += 3;
                        continue;
                    }
                    None => {
                        return Err(Error::BadRequest(format!(
                            "query string: malformed percent-escape in `{part}`"
                        )));
                    }
                }
            }
            decoded.push(bytes[i]);
            i += 1;
        }
        if std::str::from_utf8(&decoded).is_err() {
            return Err(Error::BadRequest(format!(
                "query string: `{part}` is not valid UTF-8 once unescaped"
            )));
        }
    }
    Ok(())
}

/// Deserialises a JSON body; syntax errors are 400, well-formed JSON of the wrong shape 422.
pub fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        // Checked only on failure, so valid requests are not scanned twice.
        if let Err(bad) = std::str::from_utf8(body) {
            return Error::InvalidJson(format!(
                "request body is not valid UTF-8 (byte {})",
                bad.valid_up_to()
            ));
        }
        match e.classify() {
            Category::Data => Error::Unprocessable(format!("request body: {e}")),
            Category::Syntax | Category::Eof | Category::Io => {
                Error::InvalidJson(format!("request body is not valid JSON: {e}"))
            }
        }
    })
}

/// The raw bytes of a JSON request body, after the Content-Type check and the size limit. Handlers
/// deserialise from it with [`parse_json`] so ids can borrow from the body.
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(Error::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge(format!(
                    "request body is larger than the limit: {}",
                    rejection.body_text()
                ))
            } else {
                Error::BadRequest(format!("reading request body: {}", rejection.body_text()))
            }
        })?;
        Ok(JsonBody(bytes))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5
            && essence[..essence.len() - 5].starts_with("application/")
            && essence[essence.len() - 5..].eq_ignore_ascii_case("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Pair<'a> {
        #[serde(borrow)]
        user: Id<'a>,
        #[serde(borrow)]
        item: Id<'a>,
    }

    #[test]
    fn plain_ids_borrow_from_the_query() {
        let pair: Pair = parse_query(Some("user=196&item=242")).unwrap();
        assert!(matches!(pair.user.0, Cow::Borrowed("196")));
        assert_eq!(pair.item.as_str(), "242");
    }

    #[test]
    fn escaped_ids_are_unescaped() {
        let pair: Pair = parse_query(Some("user=a%20b&item=caf%C3%A9")).unwrap();
        assert_eq!(pair.user.as_str(), "a b");
        assert_eq!(pair.item.as_str(), "café");
    }

    #[test]
    fn invalid_utf8_in_query_is_refused() {
        let err = parse_query::<Pair>(Some("user=%FF&item=1")).unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");
        let err = parse_query::<Pair>(Some("user=%G1&item=1")).unwrap_err();
        assert!(err.to_string().contains("percent-escape"), "{err}");
    }

    #[test]
    fn json_accepts_integer_ids_and_names_unknown_fields() {
        let pair: Pair = parse_json(br#"{"user": 7, "item": "x"}"#).unwrap();
        assert_eq!(pair.user.as_str(), "7");
        let err = parse_json::<Pair>(br#"{"user": "1", "item": "2", "iten": 3}"#).unwrap_err();
        assert!(matches!(err, Error::Unprocessable(_)));
        assert!(err.to_string().contains("iten"), "{err}");
        let err = parse_json::<Pair>(br#"{"user": "#).unwrap_err();
        assert!(matches!(err, Error::InvalidJson(_)));
        let err = parse_json::<Pair>(br#"{"user": "", "item": "2"}"#).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn json_content_types() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(is_json(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            "application/vnd.api+json".parse().unwrap(),
        );
        assert!(is_json(&headers));
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json(&headers));
    }
}
