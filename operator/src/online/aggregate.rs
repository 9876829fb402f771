//! From what each replica of the serving version reports to one `status.online`: counters summed
//! over replicas before any ratio is taken, latency and request rate from what changed since the
//! previous collection, users merged as sketches. Pure, so every figure is a unit test.

use crate::crd::{OnlineStatus, RolloutStatus};
use jiff::Timestamp;
use recommender_contract::stats::{
    FeedbackSums, LatencyHistogram, PredictorStats, RolloutStats, SuggestionCounts,
    USER_COUNT_RELATIVE_ERROR, UserSketch,
};
use std::collections::HashMap;

/// One replica's answer.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The pod's uid: readings of one pod are subtracted from each other, never across pods.
    pub pod: String,
    pub stats: PredictorStats,
}

/// The previous reading of each pod, to turn cumulative counters into rates.
#[derive(Debug, Default)]
pub struct Readings {
    last: HashMap<String, (Timestamp, LatencyHistogram)>,
}

impl Readings {
    /// Forgets pods that did not answer this time (gone, or not of the serving version).
    fn keep_only(&mut self, pods: &[&str]) {
        self.last.retain(|pod, _| pods.contains(&pod.as_str()));
    }
}

/// Rounds for a status that people read and that should not churn on noise.
fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0).then(|| round(numerator / denominator, 4))
}

pub fn aggregate(
    version: &str,
    samples: &[Sample],
    readings: &mut Readings,
    now: Timestamp,
) -> OnlineStatus {
    let (rate, window) = traffic(samples, readings, now);
    let mut feedback = FeedbackSums::default();
    let mut suggestions = SuggestionCounts::default();
    let (mut active, mut engaged) = (UserSketch::default(), UserSketch::default());
    let mut users_window_seconds = 0;
    for sample in samples {
        let stats = &sample.stats;
        if stats.feedback.model_version.as_deref() == Some(version) {
            feedback.add(&stats.feedback);
        }
        suggestions.add(&stats.suggestions);
        // A sketch of another precision is from another build; its users are left out rather
        // than counted wrongly.
        let _ = active.merge(&stats.users.active);
        let _ = engaged.merge(&stats.users.engaged);
        users_window_seconds = users_window_seconds.max(stats.users.window_seconds);
    }
    let n = feedback.n as f64;
    let mean = |sum: f64| ratio(sum, n);
    let (active, engaged) = (active.count(), engaged.count());
    OnlineStatus {
        observed_at: crate::time::whole(now),
        version: version.to_string(),
        replicas: samples.len() as u32,
        // No requests and not yet measured read alike: a model at rest is not rewritten when its
        // second reading turns "unknown" into "zero".
        requests_per_second: rate.map(|r| round(r, 2)).filter(|r| *r > 0.0),
        latency_p50_seconds: window
            .as_ref()
            .and_then(|w| w.quantile(0.5))
            .map(|q| round(q, 6)),
        latency_p99_seconds: window
            .as_ref()
            .and_then(|w| w.quantile(0.99))
            .map(|q| round(q, 6)),
        feedback: feedback.n,
        rmse: mean(feedback.sum_squared_error).map(|m| round(m.sqrt(), 4)),
        mae: mean(feedback.sum_absolute_error),
        accuracy: ratio(feedback.within_one as f64, n),
        average_predicted: mean(feedback.sum_predicted),
        average_actual: mean(feedback.sum_actual),
        average_difference: mean(feedback.sum_predicted - feedback.sum_actual),
        suggestions_shown: suggestions.shown,
        suggestions_rated: suggestions.rated,
        suggestions_accepted: suggestions.accepted,
        acceptance_rate: ratio(suggestions.rated as f64, suggestions.shown as f64),
        accepted_of_rated: ratio(suggestions.accepted as f64, suggestions.rated as f64),
        active_users: active,
        engaged_users: engaged,
        engagement_rate: ratio(engaged as f64, active as f64),
        users_window_seconds,
        user_count_relative_error: USER_COUNT_RELATIVE_ERROR,
        rollout: None,
    }
}

/// The figures of the rollout in progress (`status.online.rollout`): the sum of the replicas
/// that report its id and stable version with its candidate loaded, or, when none has it
/// loaded, of those without it (they refused it, which the rollout reads). Replicas of another
/// rollout, or with another candidate, are left out: their counts are not of this one.
pub fn rollout(samples: &[Sample], rollout: &RolloutStatus) -> Option<RolloutStats> {
    if rollout.stage.is_terminal() {
        return None;
    }
    let ours: Vec<&RolloutStats> = samples
        .iter()
        .filter_map(|s| s.stats.rollout.as_ref())
        .filter(|r| {
            r.rollout_id == rollout.id
                && r.stable_version.as_deref() == Some(rollout.stable_version.as_str())
        })
        .collect();
    let holding = |candidate: Option<&str>| -> Vec<&RolloutStats> {
        ours.iter()
            .copied()
            .filter(|r| r.candidate_version.as_deref() == candidate)
            .collect()
    };
    let mut group = holding(Some(rollout.candidate_version.as_str()));
    if group.is_empty() {
        group = holding(None);
    }
    let (first, rest) = group.split_first()?;
    let mut sum = (*first).clone();
    for other in rest {
        sum.add(other);
    }
    Some(sum)
}

/// Requests per second and the latency histogram of what happened since each pod's previous
/// reading; `None` until some pod has been read twice.
fn traffic(
    samples: &[Sample],
    readings: &mut Readings,
    now: Timestamp,
) -> (Option<f64>, Option<LatencyHistogram>) {
    let mut rate = None;
    let mut window: Option<LatencyHistogram> = None;
    for sample in samples {
        let current = &sample.stats.requests;
        if let Some((then, earlier)) = readings.last.get(&sample.pod)
            && let Some(delta) = current.since(earlier)
        {
            let seconds = now.duration_since(*then).as_secs_f64();
            if seconds > 0.0 {
                *rate.get_or_insert(0.0) += delta.count as f64 / seconds;
            }
            window
                .get_or_insert_with(LatencyHistogram::default)
                .add(&delta);
        }
        readings
            .last
            .insert(sample.pod.clone(), (now, current.clone()));
    }
    let pods: Vec<&str> = samples.iter().map(|s| s.pod.as_str()).collect();
    readings.keep_only(&pods);
    // Without requests in the interval there is no latency to speak of.
    (rate, window.filter(|w| w.count > 0))
}

/// The figures without the time they were taken: what decides whether a new status is news.
pub fn same_figures(a: &OnlineStatus, b: &OnlineStatus) -> bool {
    let mut b = b.clone();
    b.observed_at = a.observed_at;
    *a == b
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use recommender_contract::stats::{Bucket, UserSketches};

    pub(in crate::online) fn stats(
        version: &str,
        requests: u64,
        fast: u64,
        users: &[&str],
    ) -> PredictorStats {
        let mut active = UserSketch::default();
        for u in users {
            active.insert(u);
        }
        let mut engaged = UserSketch::default();
        engaged.insert(users[0]);
        PredictorStats {
            model_version: Some(version.into()),
            requests: LatencyHistogram {
                count: requests,
                sum_seconds: 0.0,
                buckets: vec![
                    Bucket {
                        le: 0.001,
                        count: fast,
                    },
                    Bucket {
                        le: 0.01,
                        count: requests,
                    },
                ],
            },
            feedback: FeedbackSums {
                model_version: Some(version.into()),
                n: 4,
                sum_squared_error: 4.0,
                sum_absolute_error: 3.0,
                within_one: 3,
                sum_predicted: 14.0,
                sum_actual: 13.0,
            },
            suggestions: SuggestionCounts {
                shown: 10,
                rated: 4,
                accepted: 1,
            },
            users: UserSketches {
                window_seconds: 3600,
                active,
                engaged,
            },
            rollout: None,
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn replicas_are_summed_before_ratios_are_taken() {
        let mut readings = Readings::default();
        let a = Sample {
            pod: "a".into(),
            stats: stats("v2", 100, 90, &["u1", "u2"]),
        };
        let mut b_stats = stats("v2", 50, 50, &["u2", "u3"]);
        b_stats.feedback.n = 12;
        b_stats.feedback.sum_squared_error = 0.0;
        b_stats.feedback.sum_absolute_error = 1.0;
        b_stats.feedback.within_one = 12;
        b_stats.feedback.sum_predicted = 48.0;
        b_stats.feedback.sum_actual = 49.0;
        let b = Sample {
            pod: "b".into(),
            stats: b_stats,
        };
        let online = aggregate("v2", &[a, b], &mut readings, at("2026-12-01T10:00:00Z"));
        assert_eq!(online.replicas, 2);
        assert_eq!(online.feedback, 16);
        // sqrt((4 + 0) / 16), not the mean of sqrt(4/4) and 0.
        assert_eq!(online.rmse, Some(0.5));
        assert_eq!(online.mae, Some(0.25));
        assert_eq!(online.accuracy, Some(0.9375));
        assert_eq!(
            (online.average_predicted, online.average_actual),
            (Some(3.875), Some(3.875))
        );
        assert_eq!(online.average_difference, Some(0.0));
        assert_eq!(
            (online.suggestions_shown, online.suggestions_rated),
            (20, 8)
        );
        assert_eq!(online.acceptance_rate, Some(0.4));
        assert_eq!(online.accepted_of_rated, Some(0.25));
        assert_eq!(
            (online.active_users, online.engaged_users),
            (3, 2),
            "u2 counted once"
        );
        assert_eq!(online.engagement_rate, Some(0.6667));
        assert_eq!(
            online.requests_per_second, None,
            "no rate from a first reading"
        );
        assert_eq!(online.latency_p99_seconds, None);
    }

    #[test]
    fn rate_and_latency_come_from_what_changed_since_the_last_reading() {
        let mut readings = Readings::default();
        let t0 = at("2026-12-01T10:00:00Z");
        let first = |pod: &str, n, fast| Sample {
            pod: pod.into(),
            stats: stats("v1", n, fast, &["u"]),
        };
        aggregate(
            "v1",
            &[first("a", 1000, 1000), first("b", 10, 10)],
            &mut readings,
            t0,
        );
        // 10 s later: a served 300 more (all slow), b restarted (its counters went down).
        let t1 = at("2026-12-01T10:00:10Z");
        let online = aggregate(
            "v1",
            &[first("a", 1300, 1000), first("b", 5, 5)],
            &mut readings,
            t1,
        );
        assert_eq!(online.requests_per_second, Some(30.0));
        let p99 = online.latency_p99_seconds.unwrap();
        assert!(
            p99 > 0.001 && p99 <= 0.01,
            "only the slow requests since t0: {p99}"
        );
        // Nothing since: no request rate and no latency to speak of, as before any reading.
        let t2 = at("2026-12-01T10:00:20Z");
        let idle = aggregate("v1", &[first("a", 1300, 1000)], &mut readings, t2);
        assert_eq!(idle.requests_per_second, None);
        assert_eq!(idle.latency_p99_seconds, None);
        assert!(same_figures(
            &idle,
            &aggregate(
                "v1",
                &[first("a", 1300, 1000)],
                &mut readings,
                at("2026-12-01T10:00:30Z")
            )
        ));
    }

    fn arm(feedback: u64, rated: u64, requests: u64) -> recommender_contract::stats::ArmStats {
        recommender_contract::stats::ArmStats {
            requests: LatencyHistogram {
                count: requests,
                sum_seconds: 0.0,
                buckets: vec![Bucket {
                    le: 0.01,
                    count: requests,
                }],
            },
            feedback: FeedbackSums {
                n: feedback,
                sum_squared_error: feedback as f64,
                ..Default::default()
            },
            suggestions: SuggestionCounts {
                shown: 0,
                rated,
                accepted: rated / 2,
            },
        }
    }

    fn replica(pod: &str, id: &str, candidate: Option<&str>, n: u64) -> Sample {
        let mut s = stats("v1", 0, 0, &["u"]);
        let mut paired = recommender_contract::stats::PairedSums::default();
        for _ in 0..n {
            paired.record(1.0, 0.5);
        }
        s.rollout = Some(RolloutStats {
            rollout_id: id.into(),
            stage: recommender_contract::rollout::Stage::Canary,
            candidate_share: 0.25,
            stable_version: Some("v1".into()),
            candidate_version: candidate.map(Into::into),
            stable: arm(n, n, 10 * n),
            candidate: arm(n / 2, n / 2, 5 * n),
            paired,
        });
        Sample {
            pod: pod.into(),
            stats: s,
        }
    }

    fn in_progress() -> RolloutStatus {
        serde_json::from_value(serde_json::json!({
            "id": "movies-v2-1", "stableVersion": "v1", "candidateVersion": "v2",
            "candidateModel": {"version": "v2", "run": 2, "trainedAt": "2026-12-01T09:00:00Z",
                "metrics": {"folds": 4, "rmse": 0.9, "mae": 0.7, "rmseStd": 0.0, "maeStd": 0.0,
                    "accuracy": 0.75, "precisionAt10": 0.0, "recallAt10": 0.0, "ndcgAt10": 0.0}},
            "stage": "Canary", "startedAt": "2026-12-01T09:00:00Z",
            "stepStartedAt": "2026-12-01T09:00:00Z"
        }))
        .unwrap()
    }

    /// Replicas of the rollout with its candidate are summed; those of another rollout, or that
    /// refused the candidate while others hold it, are left out.
    #[test]
    fn rollout_figures_sum_the_replicas_of_this_rollout() {
        let r = in_progress();
        let samples = [
            replica("a", "movies-v2-1", Some("v2"), 100),
            replica("b", "movies-v2-1", Some("v2"), 300),
            replica("c", "movies-v2-1", None, 1000),
            replica("d", "movies-v3-9", Some("v2"), 5000),
            Sample {
                pod: "e".into(),
                stats: stats("v1", 0, 0, &["u"]),
            },
        ];
        let sum = rollout(&samples, &r).unwrap();
        assert_eq!(sum.paired.n, 400);
        assert_eq!(sum.stable.feedback.n, 400);
        assert_eq!(sum.candidate.suggestions.rated, 200);
        assert_eq!(sum.candidate.requests.count, 2000);
        assert_eq!(sum.paired.sum_difference, 400.0 * (0.25 - 1.0));
        assert_eq!(sum.candidate_version.as_deref(), Some("v2"));

        // Every replica refused the candidate: their figures say so.
        let refused = rollout(&samples[2..3], &r).unwrap();
        assert_eq!(refused.candidate_version, None);
        assert_eq!(rollout(&samples[3..], &r), None, "another rollout's");
        let mut ended = r.clone();
        ended.stage = crate::crd::RolloutStage::Aborted;
        assert_eq!(
            rollout(&samples, &ended),
            None,
            "an ended rollout reads nothing"
        );
    }

    #[test]
    fn feedback_for_another_version_is_left_out() {
        let mut readings = Readings::default();
        let old = Sample {
            pod: "a".into(),
            stats: stats("v1", 0, 0, &["u"]),
        };
        let online = aggregate("v2", &[old], &mut readings, at("2026-12-01T10:00:00Z"));
        assert_eq!((online.feedback, online.rmse), (0, None));
        assert_eq!(
            online.suggestions_shown, 10,
            "suggestions are about the product, not a version"
        );
    }
}
