//! The rollout config a predictor reads: a small JSON file the operator writes into a ConfigMap
//! mounted into every predictor pod, and changes without restarting them (the predictor polls the
//! file). It says which rollout is running, at which stage, and the share of users on the
//! candidate:
//!
//! ```json
//! {"rolloutId": "movies-v7-1733590000", "stage": "canary", "candidateVersion": "v7", "candidateShare": 0.05}
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `rolloutId` | keys the users' hash, so each rollout draws its own candidate users; per-arm figures start over when it changes. 1..=128 bytes. |
//! | `stage` | `shadow`: everyone is answered by the stable model, and the candidate also predicts every feedback rating; `canary`: `candidateShare` of the users are answered by the candidate. |
//! | `candidateVersion` | the version the pod was started with as `--candidate-version`; a file naming another is refused, so a config written for the next candidate never routes users to this one. |
//! | `candidateShare` | 0..=1, the fraction of users on the candidate in `canary` (ignored in `shadow`); precision one in a million. |

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest rollout id, in bytes: it is hashed with every request's user id.
pub const MAX_ROLLOUT_ID_BYTES: usize = 128;
/// Largest rollout config file read; a real one is about 150 bytes.
pub const MAX_CONFIG_BYTES: u64 = 4096;

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Stage {
    /// No user sees the candidate; its predictions of feedback ratings are paired with the
    /// stable model's.
    Shadow,
    /// A share of the users is answered by the candidate.
    Canary,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Shadow => "shadow",
            Stage::Canary => "canary",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutConfig {
    pub rollout_id: String,
    pub stage: Stage,
    pub candidate_version: String,
    pub candidate_share: f64,
}

impl RolloutConfig {
    /// Reads and checks a config file's text; the error names the field or the line and column.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: RolloutConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    /// What the types cannot say.
    pub fn check(&self) -> Result<(), String> {
        let id = &self.rollout_id;
        if id.is_empty() || id.len() > MAX_ROLLOUT_ID_BYTES {
            return Err(format!(
                "rolloutId must be 1 to {MAX_ROLLOUT_ID_BYTES} bytes, got {}",
                id.len()
            ));
        }
        if self.candidate_version.is_empty() {
            return Err("candidateVersion must not be empty".into());
        }
        if !(0.0..=1.0).contains(&self.candidate_share) {
            return Err(format!(
                "candidateShare must be between 0 and 1, got {}",
                self.candidate_share
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_reads_and_bad_ones_say_what_is_wrong() {
        let good = r#"{"rolloutId": "r1", "stage": "canary", "candidateVersion": "v2", "candidateShare": 0.25}"#;
        let c = RolloutConfig::parse(good).unwrap();
        assert_eq!((c.stage, c.candidate_share), (Stage::Canary, 0.25));
        let cases = [
            (
                good.replace("0.25", "1.5"),
                "candidateShare must be between 0 and 1",
            ),
            (good.replace("canary", "blue"), "unknown variant `blue`"),
            (
                good.replace("\"r1\"", "\"\""),
                "rolloutId must be 1 to 128 bytes",
            ),
            (
                good.replace("\"v2\"", "\"\""),
                "candidateVersion must not be empty",
            ),
            (
                good.replace('}', ", \"share\": 1}"),
                "unknown field `share`",
            ),
            ("{\n\"rolloutId\": ".into(), "line 2 column 13"),
        ];
        for (text, expected) in cases {
            let err = RolloutConfig::parse(&text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
