//! What one predictor replica reports for aggregation (`GET /v1/stats`), the contract between the
//! predictor and the operator's collector: counters, so replicas are summed before any ratio is
//! taken; a latency histogram, merged bucket by bucket; and distinct users as mergeable
//! HyperLogLog++ sketches, since a user may reach several replicas. During a rollout it also
//! carries each arm's figures and the paired errors of the two models ([`RolloutStats`]), an
//! optional field older operators ignore.

mod wire;

use crate::rollout::Stage;

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, de::Error as _};
use std::hash::BuildHasher;

/// Precision of the user sketches: 2^14 registers.
pub const USER_SKETCH_PRECISION: u8 = 14;
/// Relative standard error of a distinct-user count from the sketches, 1.04 / sqrt(2^14); small
/// counts (sparse sketches) are close to exact.
pub const USER_COUNT_RELATIVE_ERROR: f64 = 0.0081;

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PredictorStats {
    /// The version this replica serves, if any.
    pub model_version: Option<String>,
    /// Inference requests (predictions, batches, suggestions) since the replica started.
    pub requests: LatencyHistogram,
    pub feedback: FeedbackSums,
    pub suggestions: SuggestionCounts,
    pub users: UserSketches,
    /// While the replica holds a rollout config; absent otherwise, and from predictors that
    /// predate rollouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStats>,
}

/// A replica's figures of the rollout its config names, since that config's `rolloutId` took
/// effect on the replica: sums, so the collector adds the replicas that report the same rollout
/// id and versions before any test reads them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStats {
    pub rollout_id: String,
    pub stage: Stage,
    /// The share of users the replica sends to the candidate (0 in shadow, and while the
    /// candidate is not loaded).
    pub candidate_share: f64,
    pub stable_version: Option<String>,
    /// `None` while the candidate is not served (still loading, or refused): every user is on
    /// the stable arm.
    pub candidate_version: Option<String>,
    /// Users on the stable arm: answered by the stable model.
    pub stable: ArmStats,
    /// Users on the candidate arm: answered by the candidate (canary only).
    pub candidate: ArmStats,
    /// Every feedback rating predicted by both models, whichever arm its user is on.
    pub paired: PairedSums,
}

impl RolloutStats {
    /// Whether two replicas' figures are of one rollout and may be added.
    pub fn same_rollout(&self, other: &RolloutStats) -> bool {
        self.rollout_id == other.rollout_id
            && self.stable_version == other.stable_version
            && self.candidate_version == other.candidate_version
    }

    /// Adds another replica's sums (see [`RolloutStats::same_rollout`]); the stage and the share
    /// stay this one's.
    pub fn add(&mut self, other: &RolloutStats) {
        self.stable.add(&other.stable);
        self.candidate.add(&other.candidate);
        self.paired.add(&other.paired);
    }
}

/// What the users of one arm did: the latency of the inference requests the arm's model answered
/// (batches are in neither arm: their pairs may be of both), the error of its predictions against
/// its users' feedback, and its suggestions.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArmStats {
    pub requests: LatencyHistogram,
    pub feedback: FeedbackSums,
    pub suggestions: SuggestionCounts,
}

impl ArmStats {
    pub fn add(&mut self, other: &ArmStats) {
        self.requests.add(&other.requests);
        self.feedback.add(&other.feedback);
        self.suggestions.add(&other.suggestions);
    }
}

/// The two models' errors on the same feedback ratings: per rating, the difference
/// `d = (rating - candidate)² - (rating - stable)²` (positive: the candidate erred more), summed
/// with its square, which is all the paired sequential test needs (`recommender_rollout`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PairedSums {
    pub n: u64,
    pub sum_difference: f64,
    pub sum_squared_difference: f64,
    pub stable_sum_squared_error: f64,
    pub candidate_sum_squared_error: f64,
}

impl PairedSums {
    /// One rating's errors, `rating - prediction`, of each model.
    pub fn record(&mut self, stable_error: f64, candidate_error: f64) {
        let (s, c) = (
            stable_error * stable_error,
            candidate_error * candidate_error,
        );
        let d = c - s;
        self.n = self.n.saturating_add(1);
        self.sum_difference += d;
        self.sum_squared_difference += d * d;
        self.stable_sum_squared_error += s;
        self.candidate_sum_squared_error += c;
    }

    /// Counts saturate, as the histogram's do.
    pub fn add(&mut self, other: &PairedSums) {
        self.n = self.n.saturating_add(other.n);
        self.sum_difference += other.sum_difference;
        self.sum_squared_difference += other.sum_squared_difference;
        self.stable_sum_squared_error += other.stable_sum_squared_error;
        self.candidate_sum_squared_error += other.candidate_sum_squared_error;
    }
}

/// A cumulative histogram of server-side latency, as Prometheus keeps one.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LatencyHistogram {
    pub count: u64,
    pub sum_seconds: f64,
    /// Cumulative counts at each upper bound, ascending; observations above the last bound are
    /// only in `count`.
    pub buckets: Vec<Bucket>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// Upper bound in seconds.
    pub le: f64,
    pub count: u64,
}

impl LatencyHistogram {
    /// Adds `other`'s counts; bounds missing on one side are taken from the other. Counts
    /// saturate: they come from pods, and a forged reply must not overflow the collector.
    pub fn add(&mut self, other: &LatencyHistogram) {
        self.count = self.count.saturating_add(other.count);
        self.sum_seconds += other.sum_seconds;
        if self.buckets.is_empty() {
            self.buckets = other.buckets.clone();
            return;
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            if mine.le == theirs.le {
                mine.count = mine.count.saturating_add(theirs.count);
            }
        }
    }

    /// What was observed since `earlier` (a previous reading of the same replica); `None` when
    /// the replica restarted in between (its counters went down).
    pub fn since(&self, earlier: &LatencyHistogram) -> Option<LatencyHistogram> {
        let count = self.count.checked_sub(earlier.count)?;
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (now, then) in self.buckets.iter().zip(&earlier.buckets) {
            buckets.push(Bucket {
                le: now.le,
                count: now.count.checked_sub(then.count)?,
            });
        }
        Some(LatencyHistogram {
            count,
            sum_seconds: (self.sum_seconds - earlier.sum_seconds).max(0.0),
            buckets,
        })
    }

    /// The `q` quantile by linear interpolation inside its bucket (as PromQL's
    /// `histogram_quantile`); `None` without observations. Beyond the last bound it answers that
    /// bound: the latency is at least that.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut lower = (0.0, 0u64);
        for b in &self.buckets {
            if b.count as f64 >= rank {
                // Saturating: a forged histogram need not be cumulative.
                let in_bucket = b.count.saturating_sub(lower.1) as f64;
                let fraction = if in_bucket > 0.0 {
                    (rank - lower.1 as f64) / in_bucket
                } else {
                    0.0
                };
                return Some(lower.0 + (b.le - lower.0) * fraction);
            }
            lower = (b.le, b.count);
        }
        self.buckets.last().map(|b| b.le)
    }
}

/// Feedback on the predictions of the version the replica serves (it starts over when the
/// served version changes).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackSums {
    pub model_version: Option<String>,
    pub n: u64,
    pub sum_squared_error: f64,
    pub sum_absolute_error: f64,
    /// Ratings within one star of their prediction.
    pub within_one: u64,
    pub sum_predicted: f64,
    pub sum_actual: f64,
}

impl FeedbackSums {
    /// One rating and the prediction it is compared with.
    pub fn record(&mut self, predicted: f64, actual: f64) {
        let error = actual - predicted;
        self.n = self.n.saturating_add(1);
        self.sum_squared_error += error * error;
        self.sum_absolute_error += error.abs();
        self.within_one += u64::from(error.abs() <= 1.0);
        self.sum_predicted += predicted;
        self.sum_actual += actual;
    }

    /// Counts saturate, as the histogram's do.
    pub fn add(&mut self, other: &FeedbackSums) {
        self.n = self.n.saturating_add(other.n);
        self.sum_squared_error += other.sum_squared_error;
        self.sum_absolute_error += other.sum_absolute_error;
        self.within_one = self.within_one.saturating_add(other.within_one);
        self.sum_predicted += other.sum_predicted;
        self.sum_actual += other.sum_actual;
    }
}

/// Suggestions since the replica started, whatever version made them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SuggestionCounts {
    /// Items returned by the suggestion endpoint.
    pub shown: u64,
    /// Feedback ratings on suggested items: suggestions the user went on to rate.
    pub rated: u64,
    /// Of those, rated at or above the acceptance threshold.
    pub accepted: u64,
}

impl SuggestionCounts {
    /// Counts saturate, as the histogram's do.
    pub fn add(&mut self, other: &SuggestionCounts) {
        self.shown = self.shown.saturating_add(other.shown);
        self.rated = self.rated.saturating_add(other.rated);
        self.accepted = self.accepted.saturating_add(other.accepted);
    }
}

/// Users seen in the replica's activity window (active: any feedback; engaged: rated a
/// suggestion at or above the threshold).
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct UserSketches {
    pub window_seconds: u64,
    pub active: UserSketch,
    pub engaged: UserSketch,
}

/// A fixed SipHash-1-3 key: sketches from different processes (and builds) must hash a user
/// alike to be merged.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default)]
pub struct StableHasher;

impl BuildHasher for StableHasher {
    type Hasher = siphasher::sip::SipHasher13;

    fn build_hasher(&self) -> Self::Hasher {
        siphasher::sip::SipHasher13::new_with_keys(0x7265_636f_6d6d_656e, 0x6465_722d_7573_6572)
    }
}

/// A distinct count of user ids that merges across replicas. On the wire it is the sketch crate's
/// own serialisation, checked when read (`wire`): a sketch from a pod is untrusted input.
#[derive(Serialize, Clone, Debug)]
#[serde(transparent)]
pub struct UserSketch(HyperLogLogPlus<String, StableHasher>);

impl<'de> Deserialize<'de> for UserSketch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = wire::SketchWire::deserialize(d)?;
        wire.check()
            .map_err(|e| D::Error::custom(format!("user sketch: {e}")))?;
        // The checked state, read by the sketch crate's own deserialiser.
        let value = serde_json::to_value(&wire).map_err(D::Error::custom)?;
        HyperLogLogPlus::deserialize(value)
            .map(UserSketch)
            .map_err(D::Error::custom)
    }
}

impl Default for UserSketch {
    fn default() -> Self {
        Self(
            HyperLogLogPlus::new(USER_SKETCH_PRECISION, StableHasher)
                .expect("a precision within the sketch's bounds"),
        )
    }
}

impl UserSketch {
    pub fn insert(&mut self, user: &str) {
        self.0.insert(user);
    }

    /// Adds `other`'s users; sketches of another precision are refused.
    pub fn merge(&mut self, other: &UserSketch) -> Result<(), String> {
        self.0.merge(&other.0).map_err(|e| format!("{e:?}"))
    }

    pub fn count(&mut self) -> u64 {
        self.0.count().round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(counts: &[u64], above: u64) -> LatencyHistogram {
        let bounds = [0.001, 0.005, 0.01];
        let mut cumulative = 0;
        let buckets = bounds
            .iter()
            .zip(counts)
            .map(|(&le, &c)| {
                cumulative += c;
                Bucket {
                    le,
                    count: cumulative,
                }
            })
            .collect();
        LatencyHistogram {
            count: cumulative + above,
            sum_seconds: 0.0,
            buckets,
        }
    }

    /// Counts near u64::MAX, as a forged reply may carry, saturate when merged instead of
    /// overflowing (a panic in the debug builds the suite runs), and a histogram that is not
    /// cumulative still answers a quantile.
    #[test]
    fn forged_counts_saturate_when_merged() {
        let mut total = histogram(&[1, 1, 1], 0);
        let mut forged = histogram(&[u64::MAX, 0, 0], 0);
        forged.count = u64::MAX;
        total.add(&forged);
        assert_eq!(total.count, u64::MAX);
        assert_eq!(total.buckets[0].count, u64::MAX);
        assert!(total.quantile(0.99).is_some());

        let mut feedback = FeedbackSums {
            n: 1,
            within_one: 1,
            ..Default::default()
        };
        feedback.add(&FeedbackSums {
            n: u64::MAX,
            within_one: u64::MAX,
            ..Default::default()
        });
        assert_eq!((feedback.n, feedback.within_one), (u64::MAX, u64::MAX));

        let mut shown = SuggestionCounts {
            shown: 2,
            rated: 2,
            accepted: 2,
        };
        shown.add(&SuggestionCounts {
            shown: u64::MAX,
            rated: u64::MAX,
            accepted: u64::MAX,
        });
        assert_eq!(shown.shown, u64::MAX);
        assert_eq!((shown.rated, shown.accepted), (u64::MAX, u64::MAX));

        let mut paired = PairedSums::default();
        paired.record(1.0, 2.0);
        paired.add(&PairedSums {
            n: u64::MAX,
            ..Default::default()
        });
        assert_eq!(paired.n, u64::MAX);
    }

    /// Paired errors of two replicas add up to those of one replica that saw all the ratings.
    #[test]
    fn paired_sums_of_replicas_add_up() {
        let errors = [(0.5, -1.0), (1.5, 0.5), (-2.0, -2.5), (0.0, 1.0)];
        let (mut one, mut a, mut b) = (
            PairedSums::default(),
            PairedSums::default(),
            PairedSums::default(),
        );
        for (i, &(s, c)) in errors.iter().enumerate() {
            one.record(s, c);
            if i % 2 == 0 {
                a.record(s, c)
            } else {
                b.record(s, c)
            }
        }
        let mut sum = a;
        sum.add(&b);
        assert_eq!(sum, one);
        // d = 0.75, -2.0, 2.25, 1.0
        assert_eq!((one.n, one.sum_difference), (4, 2.0));
        assert_eq!(one.sum_squared_difference, 0.5625 + 4.0 + 5.0625 + 1.0);
        assert_eq!(
            (
                one.stable_sum_squared_error,
                one.candidate_sum_squared_error
            ),
            (6.5, 8.5)
        );
    }

    /// A reply without `rollout` (an older predictor) still reads, and one with it reads back.
    #[test]
    fn the_rollout_field_is_optional_on_the_wire() {
        let stats = PredictorStats {
            model_version: Some("v1".into()),
            requests: LatencyHistogram::default(),
            feedback: FeedbackSums::default(),
            suggestions: SuggestionCounts::default(),
            users: UserSketches {
                window_seconds: 60,
                active: UserSketch::default(),
                engaged: UserSketch::default(),
            },
            rollout: None,
        };
        let old = serde_json::to_value(&stats).unwrap();
        assert!(old.get("rollout").is_none(), "{old}");
        let back: PredictorStats = serde_json::from_value(old).unwrap();
        assert!(back.rollout.is_none());
        let with = PredictorStats {
            rollout: Some(RolloutStats {
                rollout_id: "r1".into(),
                stage: Stage::Canary,
                candidate_share: 0.25,
                stable_version: Some("v1".into()),
                candidate_version: Some("v2".into()),
                stable: ArmStats::default(),
                candidate: ArmStats::default(),
                paired: PairedSums::default(),
            }),
            ..stats
        };
        let wire = serde_json::to_value(&with).unwrap();
        assert_eq!(wire["rollout"]["stage"], "canary");
        assert_eq!(wire["rollout"]["paired"]["sumSquaredDifference"], 0.0);
        let back: PredictorStats = serde_json::from_value(wire).unwrap();
        assert_eq!(back.rollout, with.rollout);
    }

    #[test]
    fn quantiles_interpolate_like_histogram_quantile() {
        // 100 requests: 90 under 1 ms, 8 in (1, 5] ms, 2 in (5, 10] ms.
        let h = histogram(&[90, 8, 2], 0);
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50 - 0.001 * 50.0 / 90.0).abs() < 1e-12, "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((p99 - (0.005 + 0.005 * 0.5)).abs() < 1e-12, "{p99}");
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
        assert_eq!(
            histogram(&[0, 0, 0], 10).quantile(0.99),
            Some(0.01),
            "beyond the last bound"
        );
    }

    #[test]
    fn replicas_add_and_readings_subtract() {
        let mut sum = histogram(&[10, 0, 0], 0);
        sum.add(&histogram(&[0, 0, 10], 0));
        assert_eq!(sum.count, 20);
        assert_eq!(sum.quantile(0.5), Some(0.001));
        let later = histogram(&[15, 5, 0], 0);
        let delta = later.since(&histogram(&[10, 0, 0], 0)).unwrap();
        assert_eq!(
            (delta.count, delta.buckets[0].count, delta.buckets[1].count),
            (10, 5, 10)
        );
        assert_eq!(histogram(&[1, 0, 0], 0).since(&later), None, "a restart");
    }

    #[test]
    fn user_sketches_count_distinct_users_across_replicas() {
        let (mut a, mut b) = (UserSketch::default(), UserSketch::default());
        for u in 0..3000 {
            a.insert(&format!("user-{u}"));
        }
        for u in 2000..5000 {
            b.insert(&format!("user-{u}"));
        }
        // Over the wire and back, as the operator receives them.
        let b: UserSketch = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        a.merge(&b).unwrap();
        let n = a.count() as f64;
        assert!(
            (n - 5000.0).abs() / 5000.0 < 3.0 * USER_COUNT_RELATIVE_ERROR,
            "5000 distinct users counted as {n}"
        );
        let mut small = UserSketch::default();
        for u in ["a", "b", "a", "c"] {
            small.insert(u);
        }
        assert_eq!(small.count(), 3, "small sets are exact");
    }

    fn wire_of(users: usize) -> serde_json::Value {
        let mut s = UserSketch::default();
        for u in 0..users {
            s.insert(&format!("user-{u}"));
        }
        serde_json::to_value(&s).unwrap()
    }

    fn read(wire: serde_json::Value) -> Result<UserSketch, String> {
        serde_json::from_value(wire).map_err(|e| e.to_string())
    }

    /// Real sketches, sparse and dense, read back as they were written.
    #[test]
    fn sketches_of_every_form_read_back() {
        for users in [0, 1, 100, 7000] {
            let mut back = read(wire_of(users)).unwrap();
            let n = back.count() as f64;
            assert!(
                (n - users as f64).abs() <= 0.02 * users as f64,
                "{users}: {n}"
            );
        }
        assert!(
            wire_of(7000)["registers"].is_object(),
            "7000 users are dense"
        );
        assert!(wire_of(100)["registers"].is_null(), "100 users are sparse");
    }

    /// States the sketch crate never writes. Read unchecked, the wrong sizes, the cut-off varint
    /// and the short register buffer panic its merge (an index out of range), and registers set
    /// behind the zero count make the merged count depend on the order; now each is refused when
    /// read, with what is wrong.
    #[test]
    fn forged_sketches_are_refused() {
        type Forge = fn(&mut serde_json::Value);
        let cases: [(&str, Forge); 9] = [
            ("precision", |w| w["precision"] = 30.into()),
            ("sizes", |w| w["counts"][0] = 15.into()),
            ("cut off", |w| {
                w["sparse"]["buf"].as_array_mut().unwrap().push(0x80.into())
            }),
            ("ending at", |w| w["sparse"]["count"] = 1000.into()),
            ("not one precision", |w| {
                w["tmpset"] = serde_json::json!([0x7fff_ffffu32])
            }),
            ("registers in", |w| {
                w["tmpset"] = serde_json::json!([]);
                w["registers"] = serde_json::json!({"buf": [0], "count": 16384, "zeros": 16384})
            }),
            ("allows 51", |w| {
                let mut buf = vec![0u32; 3277];
                buf[0] = 0x3f;
                w["tmpset"] = serde_json::json!([]);
                w["registers"] = serde_json::json!({"buf": buf, "count": 16384, "zeros": 16383})
            }),
            // The fuzz target's first finding: registers set behind the zero count's back.
            ("the sketch says", |w| {
                let mut buf = vec![0u32; 3277];
                buf[7] = 0x0404_0404;
                w["tmpset"] = serde_json::json!([]);
                w["registers"] = serde_json::json!({"buf": buf, "count": 16384, "zeros": 16384})
            }),
            (
                "still holds sparse",
                |w| {
                    w["registers"] =
                        serde_json::json!({"buf": vec![0u32; 3277], "count": 16384, "zeros": 16384})
                },
            ),
        ];
        for (expected, forge) in cases {
            let mut wire = wire_of(3);
            forge(&mut wire);
            let err = read(wire).unwrap_err();
            assert!(err.contains(expected), "{expected}: {err}");
        }
        let mut dense = wire_of(7000);
        dense["registers"]["zeros"] = 0.into();
        assert!(read(dense).unwrap_err().contains("registers are zero"));
    }
}
