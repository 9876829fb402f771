//! Command line and environment configuration.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

/// Serves a trainer artifact over HTTP.
#[derive(Parser, Debug, Clone)]
#[command(name = "recommender-predictor", version, about)]
pub struct Config {
    /// Model artifact written by `recommender-trainer train --out`.
    #[arg(long, env = "MODEL_PATH")]
    pub model: PathBuf,

    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// How often to check whether the file at --model was replaced.
    #[arg(long, env = "RELOAD_POLL", default_value = "2s", value_parser = parse_duration)]
    pub reload_poll: Duration,

    /// Largest number of pairs accepted by /v1/predict/batch.
    #[arg(long, env = "MAX_BATCH", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch: u32,

    /// Largest `n` accepted for recommendations.
    #[arg(long, env = "MAX_RECOMMENDATIONS", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_recommendations: u32,

    /// Suggestions ranked in advance per user at each model load; deeper requests rank live.
    /// 0 ranks every request live.
    #[arg(long, env = "PRECOMPUTE_DEPTH", default_value_t = 100)]
    pub precompute_depth: usize,

    /// Memory the precomputed rankings may take; a larger model ranks every request live.
    #[arg(long, env = "PRECOMPUTE_MAX_BYTES", default_value_t = 16 << 20)]
    pub precompute_max_bytes: usize,

    /// Largest /v1/predict/batch body in bytes. Bodies of one pair (predict, feedback) are held
    /// to what two ids of --max-id-bytes need.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,

    /// Longest user or item id in bytes; a longer one is refused with 400.
    #[arg(long, env = "MAX_ID_BYTES", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_id_bytes: u32,

    /// Time allowed for one request, including reading its body.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// A suggested item rated at least this high counts as an accepted suggestion.
    #[arg(long, env = "ACCEPT_THRESHOLD", default_value_t = 4.0)]
    pub accept_threshold: f64,

    /// Users who sent feedback within this window count as active.
    #[arg(long, env = "ACTIVE_WINDOW", default_value = "24h", value_parser = parse_duration)]
    pub active_window: Duration,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

impl Config {
    /// Settings for tests and embedding: everything at its default except the model path.
    pub fn with_model(model: impl Into<PathBuf>) -> Self {
        Config::parse_from([
            "recommender-predictor".as_ref(),
            "--model".as_ref(),
            model.into().as_os_str(),
        ])
    }
}

/// Accepts `250ms`, `2s`, `5m`, `24h` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 500ms, 2s, 5m or 24h"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn defaults_match_the_contract() {
        let config = Config::with_model("/models/m/v1.model");
        assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(config.model, PathBuf::from("/models/m/v1.model"));
    }
}
