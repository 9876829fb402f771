//! The rollout part of `status`: where the candidate is (stage, step, share, how long, what it
//! waits for), the two arms side by side, the evidence the operator decides on (the shadow test,
//! the canary's guardrails) against the levels that decide, and how it ended.

use super::fields::Fields;
use super::format::{
    age, metric, optional_latency, optional_metric, optional_percent, percent, table,
};
use jiff::Timestamp;
use recommender_operator::crd::{
    GuardrailFigures, GuardrailSpec, RecommenderModel, RolloutArms, RolloutStage, RolloutStatus,
    RolloutTest, RolloutVerdict,
};
use recommender_operator::time::parse_go_duration;

pub fn fields(f: &mut Fields, model: &RecommenderModel, r: &RolloutStatus, now: Timestamp) {
    let spec = &model.spec.rollout;
    f.field(0, "Rollout", &r.id);
    let mut candidate = format!(
        "{} (stable {}), started {} ago",
        r.candidate_version,
        r.stable_version,
        age(now, r.started_at)
    );
    if let Some(since) = r.candidate_missing_since {
        candidate.push_str(&format!(
            "; the predictors have not loaded it for {}",
            age(now, since)
        ));
    }
    f.field(1, "Candidate", candidate);
    f.field(1, "Stage", stage(model, r, now));
    if let Some(since) = r.paused_at {
        let by = if spec.paused {
            "spec.rollout.paused"
        } else if model.spec.suspend {
            "spec.suspend"
        } else {
            "the operator has not seen the resume yet"
        };
        f.field(1, "Paused", format!("for {} ({by})", age(now, since)));
    }
    if !r.stage.is_terminal() {
        f.field(1, "Verdict", verdict(r.verdict));
        if let Some(evidence) = evidence(model, r) {
            f.field(1, "Evidence", evidence);
        }
    }
    if let Some(arms) = &r.arms {
        let lines = arms_table(arms);
        let mut lines = lines.lines();
        f.field(1, "Arms", lines.next().unwrap_or_default());
        for line in lines {
            f.more(1, line);
        }
    }
    if let Some(test) = &r.test {
        shadow_test(f, model, test);
    }
    if let Some(g) = &r.guardrails {
        let canary = &spec.canary;
        let rows = vec![
            [
                "GUARDRAIL",
                "ESTIMATE",
                "MARGIN",
                "LN Λ",
                "ABORTS AT",
                "STATE",
            ]
            .map(String::from)
            .to_vec(),
            guardrail(
                "accuracy",
                &g.accuracy,
                canary.accuracy,
                |e| format!("MSE {e:+.4}"),
                |m| format!("MSE +{m:.4}"),
            ),
            guardrail(
                "acceptance",
                &g.acceptance,
                canary.acceptance,
                |e| format!("{} lower", percent(e)),
                |m| format!("{} lower", percent(m)),
            ),
            guardrail(
                "latency",
                &g.latency,
                canary.latency,
                |e| format!("{} slow", percent(e)),
                |m| format!("p99 x {:.2}", 1.0 + m),
            ),
        ];
        let text = table("", &rows);
        let mut lines = text.lines();
        f.field(1, "Guardrails", lines.next().unwrap_or_default());
        for line in lines {
            f.more(1, line);
        }
    }
    if r.stage.is_terminal() {
        let reason = r
            .end_reason
            .map(|reason| format!(": {reason}"))
            .unwrap_or_default();
        let when = r
            .ended_at
            .map(|at| format!(", {} ago", age(now, at)))
            .unwrap_or_default();
        f.field(1, "Ended", format!("{}{reason}{when}", r.stage));
    }
    if !r.message.is_empty() {
        f.field(1, "Message", &r.message);
    }
}

/// `Canary, step 2/3, share 25.0%, started 3m ago (at least 2m, times out in 27m)`.
fn stage(model: &RecommenderModel, r: &RolloutStatus, now: Timestamp) -> String {
    let spec = &model.spec.rollout;
    let started = format!("started {} ago", age(now, r.step_started_at));
    let timeout = |text: &str| {
        // A paused stage's clock stands still: no countdown to show.
        if r.paused_at.is_some() {
            return String::new();
        }
        parse_go_duration(text)
            .and_then(|d| jiff::SignedDuration::try_from(d).ok())
            .and_then(|d| r.step_started_at.checked_add(d).ok())
            .map(|end| {
                if end > now {
                    format!("times out in {}", age(end, now))
                } else {
                    "timed out".into()
                }
            })
            .unwrap_or_default()
    };
    match r.stage {
        RolloutStage::Shadow => {
            let timeout = timeout(&spec.shadow.timeout);
            let timeout = if timeout.is_empty() {
                String::new()
            } else {
                format!(" ({timeout})")
            };
            format!("Shadow, no user sees the candidate, {started}{timeout}")
        }
        RolloutStage::Canary => {
            let steps = &spec.canary.steps;
            let step = r.step as usize;
            let mut limits = Vec::new();
            if let Some(s) = steps.get(step) {
                limits.push(format!("at least {}", s.min_duration));
            }
            let timeout = timeout(&spec.canary.step_timeout);
            if !timeout.is_empty() {
                limits.push(timeout);
            }
            let limits = if limits.is_empty() {
                String::new()
            } else {
                format!(" ({})", limits.join(", "))
            };
            format!(
                "Canary, step {}/{}, share {}, {started}{limits}",
                step + 1,
                steps.len(),
                percent(r.share)
            )
        }
        RolloutStage::Promoted | RolloutStage::Aborted => {
            format!("{}, share {}", r.stage, percent(r.share))
        }
    }
}

fn verdict(v: RolloutVerdict) -> String {
    let why = match v {
        RolloutVerdict::Continue => "not enough evidence either way yet",
        RolloutVerdict::Pass => "the stage passed",
        RolloutVerdict::Abort => "the candidate does worse",
        RolloutVerdict::Inconclusive => {
            "timed out without a verdict; held until promoted, aborted or the evidence decides"
        }
    };
    format!("{v} ({why})")
}

/// In a canary step, what the step still waits for: the candidate arm's counts since the step
/// started against the step's minimums.
fn evidence(model: &RecommenderModel, r: &RolloutStatus) -> Option<String> {
    if r.stage != RolloutStage::Canary {
        return None;
    }
    let canary = &model.spec.rollout.canary;
    let candidate = &r.arms.as_ref()?.candidate;
    let mut parts = vec![
        format!(
            "{}/{} feedback",
            candidate.feedback.saturating_sub(r.step_start_feedback),
            canary.min_feedback
        ),
        format!(
            "{}/{} requests",
            candidate.requests.saturating_sub(r.step_start_requests),
            canary.min_requests
        ),
    ];
    // Rated suggestions are counted in the collector's sums, when they are this rollout's.
    if let Some(online) = model
        .status
        .as_ref()
        .and_then(|s| s.online.as_ref())
        .and_then(|o| o.rollout.as_ref())
        .filter(|o| o.rollout_id == r.id)
    {
        parts.insert(
            1,
            format!(
                "{}/{} rated suggestions",
                online
                    .candidate
                    .suggestions
                    .rated
                    .saturating_sub(r.step_start_rated_suggestions),
                canary.min_rated_suggestions
            ),
        );
    }
    Some(format!("{} since the step started", parts.join(", ")))
}

fn arms_table(arms: &RolloutArms) -> String {
    let (s, c) = (&arms.stable, &arms.candidate);
    let rows = vec![
        vec![String::new(), "STABLE".into(), "CANDIDATE".into()],
        vec![
            "requests".into(),
            s.requests.to_string(),
            c.requests.to_string(),
        ],
        vec![
            "feedback".into(),
            s.feedback.to_string(),
            c.feedback.to_string(),
        ],
        vec![
            "RMSE".into(),
            optional_metric(s.rmse),
            optional_metric(c.rmse),
        ],
        vec![
            "accepted of rated".into(),
            optional_percent(s.accepted_of_rated),
            optional_percent(c.accepted_of_rated),
        ],
        vec![
            "p99 latency".into(),
            optional_latency(s.latency_p99_seconds),
            optional_latency(c.latency_p99_seconds),
        ],
    ];
    table("", &rows)
}

fn shadow_test(f: &mut Fields, model: &RecommenderModel, t: &RolloutTest) {
    let shadow = &model.spec.rollout.shadow;
    f.field(
        1,
        "Test",
        format!(
            "{} paired ratings (a verdict from {})",
            t.samples, shadow.min_samples
        ),
    );
    if let Some(mean) = t.mean_difference {
        let se = t
            .standard_error
            .map(|se| format!(" ± {}", metric(se)))
            .unwrap_or_default();
        f.more(
            1,
            format!(
                "MSE difference {mean:+.4}{se} (candidate - stable; margin {})",
                metric(shadow.margin)
            ),
        );
    }
    let ln = |x: Option<f64>| x.map_or_else(|| "-".into(), |x| format!("{x:.2}"));
    f.more(
        1,
        format!(
            "worse:     ln Λ {}, aborts at {:.2}",
            ln(t.log_ratio_worse),
            threshold(shadow.alpha)
        ),
    );
    f.more(
        1,
        format!(
            "no worse:  ln Λ {}, passes at {:.2}",
            ln(t.log_ratio_no_worse),
            threshold(shadow.beta)
        ),
    );
}

/// The `ln Λ` at which a test at `level` rejects its null (Λ ≥ 1/level).
fn threshold(level: f64) -> f64 {
    -level.ln()
}

fn guardrail(
    name: &str,
    g: &GuardrailFigures,
    spec: GuardrailSpec,
    estimate: impl Fn(f64) -> String,
    margin: impl Fn(f64) -> String,
) -> Vec<String> {
    let state = if g.failed {
        "FAILED"
    } else if g.log_ratio.is_none() {
        "waiting for evidence"
    } else {
        "ok"
    };
    vec![
        name.into(),
        g.estimate.map_or_else(|| "-".into(), estimate),
        margin(spec.margin),
        g.log_ratio
            .map_or_else(|| "-".into(), |x| format!("{x:.2}")),
        format!("{:.2}", threshold(spec.alpha)),
        state.into(),
    ]
}

#[cfg(test)]
mod tests {
    use crate::render::status::tree;
    use crate::testing::{minutes_ago, model, now, rollout, serving_status};
    use recommender_operator::crd::RecommenderModel;
    use serde_json::json;

    fn with_rollout(stage: &str) -> RecommenderModel {
        let mut status = serving_status();
        status["rollout"] = rollout(stage);
        let mut m = model(status);
        m["spec"]["rollout"] = json!({"strategy": "Progressive"});
        serde_json::from_value(m).unwrap()
    }

    /// The rollout's lines, from `Rollout:` to the conditions.
    fn section(m: &RecommenderModel) -> Vec<String> {
        tree(m, now())
            .lines()
            .skip_while(|l| !l.starts_with("Rollout:"))
            .take_while(|l| !l.starts_with("Conditions"))
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    #[test]
    fn a_shadow_stage_shows_the_paired_test_against_its_levels() {
        let lines = section(&with_rollout("Shadow"));
        assert_eq!(
            lines,
            [
                "Rollout:        movies-v3-1796126400",
                "  Candidate:    v3 (stable v2), started 40m ago",
                "  Stage:        Shadow, no user sees the candidate, started 12m ago (times out in 18m)",
                "  Verdict:      Continue (not enough evidence either way yet)",
                "  Arms:                            STABLE  CANDIDATE",
                "                requests           5000    0",
                "                feedback           900     0",
                "                RMSE               0.9402  -",
                "                accepted of rated  71.0%   -",
                "                p99 latency        4.5ms   -",
                "  Test:         900 paired ratings (a verdict from 200)",
                "                MSE difference -0.0123 ± 0.0040 (candidate - stable; margin 0.0200)",
                "                worse:     ln Λ -2.10, aborts at 3.00",
                "                no worse:  ln Λ 3.50, passes at 3.00",
            ]
        );
    }

    #[test]
    fn a_canary_step_shows_its_share_evidence_and_guardrails() {
        let lines = section(&with_rollout("Canary"));
        let find = |start: &str| {
            lines
                .iter()
                .find(|l| l.trim_start().starts_with(start))
                .unwrap_or_else(|| panic!("no {start} in {lines:#?}"))
                .trim_start()
                .to_string()
        };
        assert_eq!(
            find("Stage:"),
            "Stage:        Canary, step 2/3, share 25.0%, started 3m ago (at least 2m, times out in 27m)"
        );
        assert_eq!(
            find("Evidence:"),
            "Evidence:     80/100 feedback, 120/200 requests since the step started"
        );
        let guardrails: Vec<&str> = lines
            .iter()
            .skip_while(|l| !l.trim_start().starts_with("Guardrails:"))
            .map(|l| l.as_str())
            .collect();
        assert_eq!(
            guardrails,
            [
                "  Guardrails:   GUARDRAIL   ESTIMATE     MARGIN       LN Λ   ABORTS AT  STATE",
                "                accuracy    MSE -0.0100  MSE +0.0200  0.20   3.00       ok",
                "                acceptance  3.0% lower   10.0% lower  -1.25  3.00       ok",
                "                latency     -            p99 x 1.50   -      3.00       waiting for evidence",
            ]
        );
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with("p99 latency        4.5ms   4.9ms")),
            "{lines:#?}"
        );
    }

    #[test]
    fn rated_suggestions_count_when_the_collector_has_this_rollout() {
        use recommender_contract::rollout::Stage;
        use recommender_contract::stats::{ArmStats, RolloutStats, SuggestionCounts};
        let mut m = with_rollout("Canary");
        let online = RolloutStats {
            rollout_id: "movies-v3-1796126400".into(),
            stage: Stage::Canary,
            candidate_share: 0.25,
            stable_version: Some("v2".into()),
            candidate_version: Some("v3".into()),
            stable: ArmStats::default(),
            candidate: ArmStats {
                suggestions: SuggestionCounts {
                    shown: 400,
                    rated: 45,
                    accepted: 30,
                },
                ..ArmStats::default()
            },
            paired: Default::default(),
        };
        let status = m.status.as_mut().unwrap();
        status.online.as_mut().unwrap().rollout = Some(online);
        status
            .rollout
            .as_mut()
            .unwrap()
            .step_start_rated_suggestions = 5;
        let text = tree(&m, now());
        assert!(
            text.contains("80/100 feedback, 40/30 rated suggestions, 120/200 requests since"),
            "{text}"
        );
        // Another rollout's sums say nothing about this one.
        let status = m.status.as_mut().unwrap();
        status
            .online
            .as_mut()
            .unwrap()
            .rollout
            .as_mut()
            .unwrap()
            .rollout_id = "other".into();
        assert!(!tree(&m, now()).contains("rated suggestions"));
    }

    #[test]
    fn a_failed_guardrail_reads_failed() {
        let mut m = with_rollout("Canary");
        let g = m.status.as_mut().unwrap().rollout.as_mut().unwrap();
        let guardrails = g.guardrails.as_mut().unwrap();
        guardrails.acceptance.failed = true;
        guardrails.acceptance.log_ratio = Some(3.4);
        let text = tree(&m, now());
        assert!(
            text.contains("acceptance  3.0% lower   10.0% lower  3.40  3.00       FAILED\n"),
            "{text}"
        );
    }

    #[test]
    fn an_aborted_rollout_says_why_and_when() {
        let lines = section(&with_rollout("Aborted"));
        assert_eq!(lines[2], "  Stage:        Aborted, share 0.0%");
        assert!(!lines.iter().any(|l| l.contains("Verdict:")), "{lines:#?}");
        assert_eq!(
            &lines[lines.len() - 2..],
            [
                "  Ended:        Aborted: WorseAccuracy, 2m ago",
                "  Message:      the candidate's MSE exceeds the stable model's by 0.0400",
            ]
        );
    }

    #[test]
    fn a_paused_rollout_shows_why_and_no_countdown() {
        let mut m = with_rollout("Canary");
        m.spec.rollout.paused = true;
        let r = m.status.as_mut().unwrap().rollout.as_mut().unwrap();
        r.paused_at = Some(minutes_ago(1).parse().unwrap());
        let lines = section(&m);
        assert_eq!(
            lines[2],
            "  Stage:        Canary, step 2/3, share 25.0%, started 3m ago (at least 2m)"
        );
        assert_eq!(lines[3], "  Paused:       for 60s (spec.rollout.paused)");
        m.spec.rollout.paused = false;
        m.spec.suspend = true;
        assert_eq!(section(&m)[3], "  Paused:       for 60s (spec.suspend)");
    }

    #[test]
    fn a_refused_candidate_is_named() {
        let mut m = with_rollout("Shadow");
        let r = m.status.as_mut().unwrap().rollout.as_mut().unwrap();
        r.candidate_missing_since = Some(minutes_ago(4).parse().unwrap());
        assert_eq!(
            section(&m)[1],
            "  Candidate:    v3 (stable v2), started 40m ago; the predictors have not loaded it for 4m"
        );
    }

    #[test]
    fn the_rollout_sits_between_runs_and_conditions() {
        let text = tree(&with_rollout("Shadow"), now());
        let heads: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with(' '))
            .filter_map(|l| l.split(':').next())
            .collect();
        assert_eq!(
            heads[heads.len() - 3..],
            ["Runs", "Rollout", "Conditions"],
            "{text}"
        );
    }
}
