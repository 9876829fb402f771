//! Time in the status: `jiff::Timestamp`s written as whole-second RFC 3339 strings, so that
//! re-rendering the same state gives byte-identical status (no reconcile storms from sub-second
//! jitter), and read strictly (a malformed time is an error, never a silent 1970).

use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// `ts` truncated to whole seconds.
pub fn whole(ts: Timestamp) -> Timestamp {
    Timestamp::from_second(ts.as_second()).unwrap_or(ts)
}

pub fn add(ts: Timestamp, by: Duration) -> Timestamp {
    SignedDuration::try_from(by)
        .ok()
        .and_then(|d| ts.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// How long from `now` until `at`; zero when `at` has passed.
pub fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// A Go duration (`168h`, `90m`, `1h30m`) as the API server's CEL `duration()` reads it.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let parsed: kube::core::Duration = text.parse().ok()?;
    if parsed.is_negative() {
        return None;
    }
    Some(parsed.into())
}

/// Serde for a status timestamp: `#[serde(with = "crate::time::whole_seconds")]`.
pub mod whole_seconds {
    use super::whole;
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(ts: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&whole(*ts))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map_err(|e| D::Error::custom(format!("{text:?} is not an RFC 3339 time: {e}")))
    }
}

/// [`whole_seconds`] for an optional timestamp (use with `default` and
/// `skip_serializing_if = "Option::is_none"`).
pub mod whole_seconds_opt {
    use jiff::Timestamp;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        ts: &Option<Timestamp>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => super::whole_seconds::serialize(ts, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Timestamp>, D::Error> {
        super::whole_seconds::deserialize(deserializer).map(Some)
    }
}

/// The schema of a timestamp field: `#[schemars(with = "crate::time::Rfc3339")]`.
pub struct Rfc3339;

impl schemars::JsonSchema for Rfc3339 {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Rfc3339".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "date-time"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct At {
        #[serde(with = "whole_seconds")]
        at: Timestamp,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "whole_seconds_opt"
        )]
        maybe: Option<Timestamp>,
    }

    #[test]
    fn written_as_whole_seconds_and_read_strictly() {
        let at: Timestamp = "2026-11-27T23:00:00.75Z".parse().unwrap();
        let json = serde_json::to_string(&At { at, maybe: None }).unwrap();
        assert_eq!(json, r#"{"at":"2026-11-27T23:00:00Z"}"#);
        let back: At = serde_json::from_str(&json).unwrap();
        assert_eq!(back.at, whole(at));
        let err = serde_json::from_str::<At>(r#"{"at":"yesterday"}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"yesterday\" is not an RFC 3339 time"),
            "{err}"
        );
        let both: At =
            serde_json::from_str(r#"{"at":"2026-11-27T23:00:00Z","maybe":"2026-11-28T00:00:00Z"}"#)
                .unwrap();
        assert_eq!(both.maybe, Some("2026-11-28T00:00:00Z".parse().unwrap()));
    }

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_go_duration("168h"),
            Some(Duration::from_secs(168 * 3600))
        );
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("7d"), None);
        assert_eq!(parse_go_duration("-5s"), None);
    }

    #[test]
    fn until_is_zero_in_the_past() {
        let now: Timestamp = "2026-11-27T23:00:00Z".parse().unwrap();
        assert_eq!(
            until(now, add(now, Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(until(add(now, Duration::from_secs(5)), now), Duration::ZERO);
    }
}
