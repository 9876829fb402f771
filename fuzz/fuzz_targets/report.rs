//! The trainer's report as the operator reads it from a termination message
//! (`TrainingReport::parse`), and the writer's promise (`TrainingReport::to_json`): at most
//! `MAX_REPORT_BYTES`, cutting only the error message, and reading back as what was written.
//!
//! Input: the termination message, any bytes (Kubernetes hands over text; invalid UTF-8 is read
//! lossily, as the operator's client would).
#![no_main]

use libfuzzer_sys::fuzz_target;
use recommender_contract::metrics::Metrics;
use recommender_contract::report::{
    Challenge, DataFingerprint, Durations, Forward, MAX_REPORT_BYTES, Outcome, Paired,
    REPORT_FORMAT, ReportError, RunError, TrainingReport,
};
use recommender_fuzz::write_seeds_if_asked;

fuzz_target!(init: write_seeds_if_asked(seeds), |data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(report) = TrainingReport::parse(&text) else {
        return;
    };
    let without_message = TrainingReport {
        error: report.error.as_ref().map(|e| RunError {
            reason: e.reason.clone(),
            message: String::new(),
        }),
        ..report.clone()
    };
    match report.to_json() {
        Ok(json) => {
            assert!(json.len() <= MAX_REPORT_BYTES, "{} bytes", json.len());
            let back = TrainingReport::parse(&json).expect("what to_json wrote parses");
            let (Some(wrote), Some(read)) = (&report.error, &back.error) else {
                assert_eq!(back, report);
                return;
            };
            // Only the message may have been cut, and then it ends in the marker.
            let cut = read.message.strip_suffix('…').unwrap_or(&read.message);
            assert!(wrote.message.starts_with(cut), "message changed");
            assert_eq!(
                TrainingReport {
                    error: Some(RunError {
                        reason: read.reason.clone(),
                        message: String::new()
                    }),
                    ..back
                },
                without_message
            );
        }
        Err(ReportError::TooLarge) => {
            // Refused only when cutting the whole message would not have been enough.
            let rest = serde_json::to_string(&without_message).expect("serialises");
            assert!(
                rest.len() + "…".len() > MAX_REPORT_BYTES,
                "refused although {} bytes remain without the message",
                rest.len()
            );
        }
        Err(e) => panic!("to_json failed on a parsed report: {e}"),
    }
});

fn seeds() -> Vec<Vec<u8>> {
    let succeeded = TrainingReport {
        format: REPORT_FORMAT,
        outcome: Outcome::Succeeded,
        version: "v3".into(),
        algorithm: "svd".into(),
        artifact: Some("/models/movies/v3.model".into()),
        artifact_bytes: Some(1_234_567),
        artifact_sha256: Some("cd".repeat(32)),
        metrics: Some(Metrics {
            folds: 4,
            rmse: 0.9387,
            rmse_std: 0.003,
            mae: 0.7403,
            mae_std: 0.002,
            accuracy: 0.74,
            precision_at_10: 0.6,
            recall_at_10: 0.5,
            ndcg_at_10: 0.7,
        }),
        data: Some(DataFingerprint {
            rows: 100_000,
            users: 943,
            items: 1682,
            max_timestamp: Some(893_286_638),
            content_hash: "ab".repeat(32),
            skipped: 3,
        }),
        durations: Durations {
            load_seconds: 0.05,
            cv_seconds: 0.4,
            fit_seconds: 0.1,
            total_seconds: 0.6,
        },
        finished_at: "2026-11-27T23:00:00Z".into(),
        error: None,
        forward: None,
        challenge: None,
        fit_threads: Some(1),
    };
    let failed = TrainingReport {
        outcome: Outcome::Failed,
        artifact: None,
        artifact_bytes: None,
        artifact_sha256: None,
        metrics: None,
        error: Some(RunError {
            reason: "InvalidData".into(),
            message: "/data/u.data:2: rating 'five' is not a number \u{1}\"é".into(),
        }),
        ..succeeded.clone()
    };
    let challenged = TrainingReport {
        forward: Some(Forward {
            since: 893_286_638,
            until: Some(893_300_000),
            ratings: 1200,
            rmse: 0.95,
            mae: 0.75,
            accuracy: 0.7,
            unknown_users: 3,
            unknown_items: 4,
        }),
        challenge: Some(Challenge {
            champion: "v2".into(),
            since: 893_286_638,
            new_ratings: 5000,
            paired: Some(Paired {
                split_at: 893_290_000,
                train_ratings: 4000,
                ratings: 1000,
                champion_rmse: 0.95,
                challenger_rmse: 0.93,
                difference: -0.02,
                low: -0.03,
                high: -0.01,
                confidence: 0.95,
                resamples: 1000,
            }),
            fallback: Some("too few new ratings".into()),
        }),
        ..succeeded.clone()
    };
    // Past 4 KiB, so to_json cuts the message: multi-byte characters, and escapes that take six
    // bytes each in JSON.
    let long = |message: String| TrainingReport {
        error: Some(RunError {
            reason: "InvalidData".into(),
            message,
        }),
        ..failed.clone()
    };
    let long_utf8 = long("é".repeat(2500));
    let long_escapes = long("\u{1}\"".repeat(700));
    let json = |r: &TrainingReport| serde_json::to_vec(r).expect("serialises");
    let mut pretty = serde_json::to_vec_pretty(&challenged).expect("serialises");
    pretty.push(b'\n');
    vec![
        json(&succeeded),
        json(&failed),
        json(&challenged),
        pretty,
        json(&long_utf8),
        json(&long_escapes),
    ]
}
