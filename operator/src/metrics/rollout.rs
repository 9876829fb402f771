//! The series of progressive rollouts, set from `status.rollout` like the other per-model
//! gauges: the stage (1 for the current one, 0 for the others), the candidate's share, whether a
//! stage is held inconclusive, and aborts by end reason (what the alerts
//! `RecommenderModelRolloutAborted` and `RecommenderModelRolloutInconclusive` read).

use super::declare_metrics;
use crate::crd::{
    RecommenderModelSpec, RolloutEndReason, RolloutStage, RolloutStatus, RolloutVerdict,
};
use prometheus::{GaugeVec, IntCounterVec};

declare_metrics! {
    pub(super) struct Rollouts {
        stage: GaugeVec = "recommender_rollout_stage",
            "1 for the stage of the model's current or last rollout, 0 for the others.",
            ["namespace", "name", "stage"];
        share: GaugeVec = "recommender_rollout_candidate_share",
            "The share of the users the rollout's candidate answers.", ["namespace", "name"];
        aborts: IntCounterVec = "recommender_rollout_aborts_total",
            "Rollouts aborted, by end reason.", ["namespace", "name", "reason"];
        inconclusive: GaugeVec = "recommender_rollout_inconclusive",
            "1 while a rollout's stage is held inconclusive (onInconclusive: Hold), else 0.",
            ["namespace", "name"];
    }
}

/// The end reasons that abort (the others promote).
fn abort_reasons() -> impl Iterator<Item = RolloutEndReason> {
    RolloutEndReason::ALL
        .iter()
        .copied()
        .filter(|r| !r.promoted())
}

impl Rollouts {
    /// Sets the gauges from `rollout`; with none they go, unless the strategy is progressive
    /// (then the abort counters exist at 0 from the start, so `increase()` sees the first).
    pub(super) fn observe(
        &self,
        [namespace, name]: &[&str; 2],
        spec: &RecommenderModelSpec,
        rollout: Option<&RolloutStatus>,
    ) {
        if spec.rollout.progressive() || rollout.is_some() {
            for reason in abort_reasons() {
                self.aborts
                    .with_label_values(&[namespace, name, reason.as_str()]);
            }
        }
        let Some(r) = rollout else {
            self.forget_gauges(namespace, name);
            return;
        };
        for stage in RolloutStage::ALL {
            let value = if *stage == r.stage { 1.0 } else { 0.0 };
            self.stage
                .with_label_values(&[namespace, name, stage.as_str()])
                .set(value);
        }
        self.share
            .with_label_values(&[namespace, name])
            .set(r.share);
        let held = !r.stage.is_terminal() && r.verdict == RolloutVerdict::Inconclusive;
        self.inconclusive
            .with_label_values(&[namespace, name])
            .set(if held { 1.0 } else { 0.0 });
    }

    /// Counts rollouts that ended aborted.
    pub(super) fn ended(&self, namespace: &str, name: &str, reasons: &[RolloutEndReason]) {
        for reason in reasons.iter().filter(|r| !r.promoted()) {
            self.aborts
                .with_label_values(&[namespace, name, reason.as_str()])
                .inc();
        }
    }

    fn forget_gauges(&self, namespace: &str, name: &str) {
        for stage in RolloutStage::ALL {
            let _ = self
                .stage
                .remove_label_values(&[namespace, name, stage.as_str()]);
        }
        let _ = self.share.remove_label_values(&[namespace, name]);
        let _ = self.inconclusive.remove_label_values(&[namespace, name]);
    }

    pub(super) fn forget(&self, namespace: &str, name: &str) {
        self.forget_gauges(namespace, name);
        for reason in RolloutEndReason::ALL {
            let _ = self
                .aborts
                .remove_label_values(&[namespace, name, reason.as_str()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::crd::{
        RecommenderModelSpec, RecommenderModelStatus, RolloutEndReason, RolloutStage,
        RolloutStatus, RolloutVerdict,
    };
    use crate::decide::fixtures::{file_spec, now, record};
    use crate::metrics::Metrics;

    fn progressive() -> RecommenderModelSpec {
        let mut spec = file_spec();
        spec.rollout.strategy = crate::crd::RolloutStrategy::Progressive;
        spec
    }

    fn with_rollout(
        stage: RolloutStage,
        share: f64,
        verdict: RolloutVerdict,
    ) -> RecommenderModelStatus {
        RecommenderModelStatus {
            rollout: Some(RolloutStatus {
                stage,
                share,
                verdict,
                ..RolloutStatus::starting(
                    "movies-v2-1".into(),
                    "v1".into(),
                    record("v2", 2, 0.9, "2026-11-27T11:00:00Z"),
                    now(),
                )
            }),
            ..RecommenderModelStatus::default()
        }
    }

    fn scrape(metrics: &Metrics) -> String {
        metrics.render(now())
    }

    fn series(name: &str, labels: &str, value: &str) -> String {
        format!("{name}{{{labels}name=\"movies\",namespace=\"ml\"}} {value}")
    }

    #[test]
    fn the_stage_is_one_for_the_current_stage_and_zero_for_the_others() {
        let metrics = Metrics::new().unwrap();
        let status = with_rollout(RolloutStage::Canary, 0.25, RolloutVerdict::Continue);
        metrics.observe_targets("ml", "movies", &progressive(), &status);
        let text = scrape(&metrics);
        let stage = |s: &str, v: &str| {
            format!(
                "recommender_rollout_stage{{name=\"movies\",namespace=\"ml\",stage=\"{s}\"}} {v}"
            )
        };
        assert!(text.contains(&stage("Canary", "1")), "{text}");
        for other in ["Shadow", "Promoted", "Aborted"] {
            assert!(text.contains(&stage(other, "0")), "{other}: {text}");
        }
        // Back to Immediate with no rollout on record: the series go.
        metrics.observe_targets(
            "ml",
            "movies",
            &file_spec(),
            &RecommenderModelStatus::default(),
        );
        assert!(!scrape(&metrics).contains("recommender_rollout_stage{"));
    }

    #[test]
    fn the_candidate_share_follows_the_status() {
        let metrics = Metrics::new().unwrap();
        let status = with_rollout(RolloutStage::Canary, 0.25, RolloutVerdict::Continue);
        metrics.observe_targets("ml", "movies", &progressive(), &status);
        let text = scrape(&metrics);
        assert!(
            text.contains(&series("recommender_rollout_candidate_share", "", "0.25")),
            "{text}"
        );
        let aborted = with_rollout(RolloutStage::Aborted, 0.0, RolloutVerdict::Abort);
        metrics.observe_targets("ml", "movies", &progressive(), &aborted);
        assert!(scrape(&metrics).contains(&series("recommender_rollout_candidate_share", "", "0")));
    }

    #[test]
    fn aborts_are_counted_by_reason_from_zero() {
        let metrics = Metrics::new().unwrap();
        metrics.observe_targets(
            "ml",
            "movies",
            &progressive(),
            &RecommenderModelStatus::default(),
        );
        let aborts = |reason: &str, n: &str| {
            format!(
                "recommender_rollout_aborts_total{{name=\"movies\",namespace=\"ml\",reason=\"{reason}\"}} {n}"
            )
        };
        let text = scrape(&metrics);
        assert!(text.contains(&aborts("WorseAccuracy", "0")), "{text}");
        assert!(
            !text.contains("reason=\"Passed\""),
            "a promotion is no abort"
        );
        metrics.rollouts_ended(
            "ml",
            "movies",
            &[RolloutEndReason::LowerAcceptance, RolloutEndReason::Passed],
        );
        metrics.rollouts_ended("ml", "movies", &[RolloutEndReason::LowerAcceptance]);
        let text = scrape(&metrics);
        assert!(text.contains(&aborts("LowerAcceptance", "2")), "{text}");
        assert!(!text.contains("reason=\"Passed\""), "{text}");
        metrics.forget("ml", "movies");
        assert!(!scrape(&metrics).contains("recommender_rollout_aborts_total{"));
    }

    #[test]
    fn inconclusive_is_one_only_while_a_stage_is_held() {
        let metrics = Metrics::new().unwrap();
        let gauge = |v: &str| series("recommender_rollout_inconclusive", "", v);
        let held = with_rollout(RolloutStage::Shadow, 0.0, RolloutVerdict::Inconclusive);
        metrics.observe_targets("ml", "movies", &progressive(), &held);
        assert!(
            scrape(&metrics).contains(&gauge("1")),
            "{}",
            scrape(&metrics)
        );
        let running = with_rollout(RolloutStage::Shadow, 0.0, RolloutVerdict::Continue);
        metrics.observe_targets("ml", "movies", &progressive(), &running);
        assert!(scrape(&metrics).contains(&gauge("0")));
        let ended = with_rollout(RolloutStage::Aborted, 0.0, RolloutVerdict::Inconclusive);
        metrics.observe_targets("ml", "movies", &progressive(), &ended);
        assert!(
            scrape(&metrics).contains(&gauge("0")),
            "an ended rollout holds nothing"
        );
    }
}
