//! Time helpers: status timestamps are whole-second RFC 3339 strings so that re-rendering the
//! same state gives byte-identical status (no reconcile storms from sub-second jitter).

use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// `ts` truncated to whole seconds, as RFC 3339 (`2026-11-27T23:00:00Z`).
pub fn format(ts: Timestamp) -> String {
    Timestamp::from_second(ts.as_second())
        .unwrap_or(ts)
        .to_string()
}

/// Parses an RFC 3339 timestamp written by us, the trainer or the API server.
pub fn parse(text: &str) -> Option<Timestamp> {
    text.parse().ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_seconds() {
        let ts: Timestamp = "2026-11-27T23:00:00.75Z".parse().unwrap();
        assert_eq!(format(ts), "2026-11-27T23:00:00Z");
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
