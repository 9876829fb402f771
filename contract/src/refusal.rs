//! Why a predictor refused the model version it was told to serve: the predictor writes it as
//! compact JSON to its container's termination-message path and exits, so the pod never becomes
//! ready, the old ReplicaSet's pods keep serving, and the operator reads the reason from the
//! container's last state (as it reads the trainer's [`crate::report`]).

use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning or a required field is added.
pub const REFUSAL_FORMAT: u32 = 1;

/// Kubernetes truncates termination messages beyond this many bytes.
pub const MAX_REFUSAL_BYTES: usize = crate::report::MAX_REPORT_BYTES;

/// Why the artifact was refused. The store's reasons (`recommender-store`'s `Reason`) for what a
/// read can fail with, and the artifact's own check.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// Its bytes are not the ones recorded for the version: another sha256.
    Corrupt,
    /// No artifact under the version's key.
    NotFound,
    /// The bytes are not a readable artifact (format, internal checksum, inconsistent model).
    InvalidArtifact,
    /// Larger than the predictor may hold (`--max-model-bytes`).
    TooLarge,
    /// The store did not answer.
    Unreachable,
    BucketMissing,
    CredentialsRefused,
    /// The predictor's store settings cannot be used (a flag, the key pair's variables).
    InvalidConfig,
    Other,
}

impl RefusalReason {
    pub const ALL: [Self; 9] = [
        Self::Corrupt,
        Self::NotFound,
        Self::InvalidArtifact,
        Self::TooLarge,
        Self::Unreachable,
        Self::BucketMissing,
        Self::CredentialsRefused,
        Self::InvalidConfig,
        Self::Other,
    ];

    /// CamelCase, as a condition reason and a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Corrupt => "Corrupt",
            Self::NotFound => "NotFound",
            Self::InvalidArtifact => "InvalidArtifact",
            Self::TooLarge => "TooLarge",
            Self::Unreachable => "Unreachable",
            Self::BucketMissing => "BucketMissing",
            Self::CredentialsRefused => "CredentialsRefused",
            Self::InvalidConfig => "InvalidConfig",
            Self::Other => "Other",
        }
    }
}

/// The predictor's last word.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// [`REFUSAL_FORMAT`] of the writer.
    pub format: u32,
    pub reason: RefusalReason,
    /// The version it was told to serve.
    pub version: String,
    /// Where the artifact is: a path, or `s3://BUCKET/PREFIX/KEY`.
    pub artifact: String,
    /// The whole story: the key, the store, the digests or the server's words.
    pub message: String,
}

impl Refusal {
    /// Compact JSON of at most [`MAX_REFUSAL_BYTES`], the message cut (on a character boundary)
    /// if it must be.
    pub fn to_json(&self) -> String {
        let mut refusal = self.clone();
        loop {
            let json = serde_json::to_string(&refusal).expect("plain strings serialise");
            let excess = json.len().saturating_sub(MAX_REFUSAL_BYTES);
            if excess == 0 || refusal.message.is_empty() {
                return json;
            }
            let mut cut = refusal.message.len().saturating_sub(excess + 8);
            while !refusal.message.is_char_boundary(cut) {
                cut -= 1;
            }
            refusal.message.truncate(cut);
            refusal.message.push('…');
        }
    }

    /// Parses a refusal, refusing formats newer than this build knows.
    pub fn parse(text: &str) -> Result<Self, String> {
        let refusal: Self = serde_json::from_str(text.trim()).map_err(|e| e.to_string())?;
        if refusal.format > REFUSAL_FORMAT {
            return Err(format!(
                "refusal format {} is newer than this reader understands ({REFUSAL_FORMAT})",
                refusal.format
            ));
        }
        Ok(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(message: String) -> Refusal {
        Refusal {
            format: REFUSAL_FORMAT,
            reason: RefusalReason::Corrupt,
            version: "v3".into(),
            artifact: "s3://models/movies/v3.model".into(),
            message,
        }
    }

    #[test]
    fn round_trips_and_names_the_reason_as_a_condition_would() {
        let refusal = sample("its sha256 is 05…, expected 32…".into());
        let json = refusal.to_json();
        assert!(json.contains(r#""reason":"Corrupt""#), "{json}");
        assert_eq!(Refusal::parse(&json).unwrap(), refusal);
        for reason in RefusalReason::ALL {
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
        }
        let newer = json.replace(r#""format":1"#, r#""format":2"#);
        assert!(Refusal::parse(&newer).unwrap_err().contains("newer"));
    }

    #[test]
    fn a_long_message_is_cut_to_fit_a_termination_message() {
        let refusal = sample("é".repeat(5000));
        let json = refusal.to_json();
        assert!(json.len() <= MAX_REFUSAL_BYTES, "{}", json.len());
        let parsed = Refusal::parse(&json).unwrap();
        assert!(parsed.message.ends_with('…'));
        assert_eq!(parsed.reason, RefusalReason::Corrupt);
    }
}
