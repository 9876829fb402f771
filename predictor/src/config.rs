//! Command line and environment configuration.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use recommender_store::{Sha256, StoreArgs};

/// Serves a trainer artifact over HTTP: a version fetched from the model store (`--store`,
/// `--model-version`, `--model-sha256`, what the operator passes), or a file (`--model`).
#[derive(Parser, Debug, Clone)]
#[command(name = "recommender-predictor", version, about)]
pub struct Config {
    /// A model artifact file, loaded again when it is replaced or on SIGHUP (development use;
    /// the operator passes --store).
    #[arg(
        long,
        env = "MODEL_PATH",
        conflicts_with = "store",
        required_unless_present = "store"
    )]
    pub model: Option<PathBuf>,

    #[command(flatten)]
    pub store: StoreArgs,

    /// The version to serve from --store, `<VERSION>.model`; fetched once at start.
    // `requires = "store"` alone lets `--model PATH --model-version V` through: clap excuses a
    // missing requirement that conflicts with an argument given (here --model).
    #[arg(
        long,
        env = "MODEL_VERSION",
        value_name = "VERSION",
        requires = "store",
        conflicts_with = "model"
    )]
    pub model_version: Option<String>,

    /// The sha256 of the artifact's bytes: any other bytes are refused (the version the
    /// operator recorded, or a file that was replaced).
    #[arg(long, env = "MODEL_SHA256", value_name = "HEX", value_parser = parse_sha256)]
    pub model_sha256: Option<Sha256>,

    /// A second version of --store to hold during a rollout, the candidate: loaded and verified
    /// as --model-version is, and served to the users --rollout-config puts on its arm. A
    /// candidate that is refused is logged and counted, and everyone stays on --model-version.
    #[arg(
        long,
        env = "CANDIDATE_VERSION",
        value_name = "VERSION",
        requires = "store",
        requires = "rollout_config",
        conflicts_with = "model"
    )]
    pub candidate_version: Option<String>,

    /// The sha256 the operator recorded for --candidate-version; any other bytes are refused.
    #[arg(long, env = "CANDIDATE_SHA256", value_name = "HEX", value_parser = parse_sha256, requires = "candidate_version")]
    pub candidate_sha256: Option<Sha256>,

    /// The rollout config (JSON: rollout id, stage, candidate share; docs/predictor-api.md),
    /// read again whenever it changes. A file that does not read keeps the last good config.
    #[arg(
        long,
        env = "ROLLOUT_CONFIG",
        value_name = "FILE",
        requires = "candidate_version"
    )]
    pub rollout_config: Option<PathBuf>,

    /// How often to check whether --rollout-config changed.
    #[arg(long, env = "ROLLOUT_POLL", default_value = "2s", value_parser = parse_duration)]
    pub rollout_poll: Duration,

    /// The largest artifact read, in bytes: it is held in memory.
    #[arg(long, env = "MAX_MODEL_BYTES", default_value_t = 4 << 30)]
    pub max_model_bytes: u64,

    /// Where the reason goes when the predictor refuses the version it was told to serve and
    /// exits (JSON, read by the operator from the container's last state).
    #[arg(long, env = "TERMINATION_LOG", default_value = "/dev/termination-log")]
    pub termination_log: PathBuf,

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

    /// Time a client has to send a request's headers, counted from the connection's start or the
    /// end of its previous response; so also how long a keep-alive connection may sit idle.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// A connection whose socket read or write waits this long without progress is closed (a
    /// client that stopped sending its body or reading its answer). Must exceed
    /// --request-timeout.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Largest request line and headers in bytes; beyond it the answer is 431.
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(8_192..=1_048_576))]
    pub max_header_bytes: u32,

    /// Connections open at once; a connection beyond it is closed as soon as it is accepted.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 4_096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// /v1 requests in progress at once; beyond it they are answered 503 with Retry-After.
    /// Health probes and /metrics are never shed.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,

    /// File holding the bearer token that write endpoints (POST /v1/feedback) require
    /// (trailing whitespace ignored). Without a token, writes are open to any client.
    #[arg(long, env = "WRITE_TOKEN_FILE", conflicts_with = "write_token_env")]
    pub write_token_file: Option<PathBuf>,

    /// Name of an environment variable holding the write token, as an alternative to
    /// --write-token-file.
    #[arg(long, env = "WRITE_TOKEN_ENV")]
    pub write_token_env: Option<String>,

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

impl Config {
    /// Settings clap cannot check one at a time.
    pub fn validate(&self) -> Result<(), String> {
        for (flag, value) in [
            ("--request-timeout", self.request_timeout),
            ("--header-read-timeout", self.header_read_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--active-window", self.active_window),
            ("--rollout-poll", self.rollout_poll),
        ] {
            if value.is_zero() {
                return Err(format!("{flag} must be longer than zero"));
            }
        }
        // A handler computing for its whole request timeout leaves the socket without progress.
        if self.idle_timeout <= self.request_timeout {
            return Err(format!(
                "--idle-timeout ({:?}) must exceed --request-timeout ({:?})",
                self.idle_timeout, self.request_timeout
            ));
        }
        Ok(())
    }
}

fn parse_sha256(text: &str) -> Result<Sha256, String> {
    text.parse()
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
        assert_eq!(config.model, Some(PathBuf::from("/models/m/v1.model")));
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn a_store_or_a_file_not_both() {
        let parse =
            |args: &[&str]| Config::try_parse_from(["recommender-predictor"].iter().chain(args));
        let digest = "ab".repeat(32);
        let c = parse(&[
            "--store",
            "s3://models/movies",
            "--store-endpoint",
            "http://s3:8333",
            "--model-version",
            "v3",
            "--model-sha256",
            &digest,
        ])
        .unwrap();
        assert_eq!(c.model, None);
        assert_eq!(c.store.store.as_deref(), Some("s3://models/movies"));
        assert_eq!(c.model_version.as_deref(), Some("v3"));
        assert_eq!(c.model_sha256.unwrap().to_string(), digest);
        assert!(parse(&[]).is_err(), "neither --model nor --store");
        let rollout = parse(&[
            "--store",
            "/models/m",
            "--model-version",
            "v3",
            "--candidate-version",
            "v4",
            "--candidate-sha256",
            &digest,
            "--rollout-config",
            "/etc/rollout/config.json",
        ])
        .unwrap();
        assert_eq!(rollout.candidate_version.as_deref(), Some("v4"));
        assert_eq!(rollout.candidate_sha256.unwrap().to_string(), digest);
        let without_config = parse(&[
            "--store",
            "/m",
            "--model-version",
            "v3",
            "--candidate-version",
            "v4",
        ]);
        assert!(
            without_config
                .unwrap_err()
                .to_string()
                .contains("--rollout-config")
        );
        assert!(
            parse(&[
                "--model",
                "m",
                "--candidate-version",
                "v4",
                "--rollout-config",
                "c"
            ])
            .is_err(),
            "a candidate comes from the store"
        );
        assert!(parse(&["--model", "m", "--store", "/models/m"]).is_err());
        assert!(parse(&["--model", "m", "--model-version", "v3"]).is_err());
        let bad = parse(&["--model", "m", "--model-sha256", "abc"]).unwrap_err();
        assert!(bad.to_string().contains("not a sha256 digest"), "{bad}");
    }

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let base = ["recommender-predictor", "--model", "m"];
        Config::try_parse_from(base.iter().chain(args))
    }

    #[test]
    fn bounds_are_checked() {
        let idle = parse(&["--idle-timeout", "5s"]).unwrap();
        let err = idle.validate().unwrap_err();
        assert!(
            err.contains("--idle-timeout") && err.contains("--request-timeout"),
            "{err}"
        );
        let zero = parse(&["--header-read-timeout", "0s"]).unwrap();
        assert!(
            zero.validate()
                .unwrap_err()
                .contains("--header-read-timeout")
        );
        assert!(
            parse(&["--max-header-bytes", "4096"]).is_err(),
            "below hyper's minimum"
        );
        assert!(parse(&["--max-in-flight", "0"]).is_err());
        assert!(parse(&["--max-connections", "0"]).is_err());
        assert!(parse(&["--max-id-bytes", "0"]).is_err());
        assert!(parse(&["--write-token-file", "/t", "--write-token-env", "T"]).is_err());
    }
}
